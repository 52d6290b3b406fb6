"""Top-k accuracy as timm's validate.py computes it, from a score matrix."""

from __future__ import annotations

import numpy as np


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first (stable on ties: lower index wins)."""
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def topk_correct(topk: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict[str, np.ndarray]:
    """Per sample, whether its label is among the first k predictions; k > classes is left out."""
    hits = topk == np.asarray(labels)[:, None]
    return {f"top{k}": hits[:, :k].any(axis=1) for k in ks if k <= topk.shape[1]}


def topk_accuracy(topk: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict[str, float]:
    """Fraction of samples whose label is among the first k predictions; k > classes is left out."""
    return {k: float(v.mean()) for k, v in topk_correct(topk, labels, ks).items()}
