"""Evaluation metrics (paper 4.1, appendix A.4)."""
