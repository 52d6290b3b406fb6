"""bench: one harness for evaluating vision and language foundation models."""

__version__ = "0.1.0"
