"""Metrics: pure numpy/python functions. Never import torch or an adapter here.

Which metrics are lower-is-better is each task family's declaration (bench.tasks.base.lower_is_better).
"""
