"""decafbench: evaluation harness for training-free video reasoning segmentation (DecAF)."""

__version__ = "0.1.0"
