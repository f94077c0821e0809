"""genseg-bench: a benchmark suite for medical image segmentation with very few labels."""

__version__ = "0.1.0"
