"""On-disk datasets: the clip folder format and its manifest."""
