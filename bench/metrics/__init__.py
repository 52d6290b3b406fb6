"""Metrics: pure numpy/python functions. Never import torch or an adapter here."""

import fnmatch

# Metrics where a smaller value is better; every other metric is higher-is-better.
LOWER_IS_BETTER = ("FPR95", "*/FPR95", "*FPR@*")


def higher_is_better(metric: str) -> bool:
    return not any(fnmatch.fnmatch(metric, p) for p in LOWER_IS_BETTER)
