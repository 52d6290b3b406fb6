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


def mean_per_class_recall(pred: np.ndarray, labels: np.ndarray) -> float:
    """Recall averaged over the classes present in `labels` (CLIP_benchmark's mean_per_class_recall)."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(labels, pred))


def weighted_per_class_recall(w: np.ndarray, hit: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The same under bootstrap draw counts w (b, n): per resample, classes drawn at least once count."""
    onehot = np.zeros((len(labels), int(labels.max()) + 1))
    onehot[np.arange(len(labels)), labels] = 1.0
    drawn = w @ onehot
    hits = w @ (onehot * hit[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(drawn > 0, hits / drawn, np.nan), axis=1)


def per_class_recall_interval(hits: "np.ndarray | list[np.ndarray]", labels: np.ndarray, spec) -> dict:
    """A bootstrap over images of mean_per_class_recall; several hit vectors (few-shot draws) are averaged."""
    from bench.metrics.uncertainty import bootstrap

    draws = [np.asarray(h, np.float64) for h in (hits if isinstance(hits, list) else [hits])]
    stat = lambda w: {"mean_per_class_recall": np.mean([weighted_per_class_recall(w, h, labels) for h in draws], axis=0)}  # noqa: E731
    return bootstrap(stat, len(labels), spec, "image")
