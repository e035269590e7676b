"""Raw driving video -> Driving Cue Triplet (paper 3.1, appendix A.2)."""

from .extract import CueReport, DrivingCues, MemorySink, extract_cues, extract_cues_in_memory

__all__ = ["CueReport", "DrivingCues", "MemorySink", "extract_cues", "extract_cues_in_memory"]
