"""Image-text retrieval recall as CLIP-style papers and CLIP_benchmark report it.

Scores are a (captions × images) similarity matrix; `text_image[t]` is the image caption t
describes, so an image may have any number of captions (at least one).

- i2t R@k: an image is a hit if *any* of its captions is among the k highest-scoring captions.
- t2i R@k: a caption is a hit if its image is among the k highest-scoring images.

Both reduce to the 0-based rank of a query's best positive: a hit at k is rank < k. Ties are
broken towards the lower index, as a stable descending sort would. `rsum` is the sum of the six
recalls and `mean_recall` their mean (fractions: rsum ≤ 6).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from bench.metrics.uncertainty import Interval, Spec, bootstrap

KS = (1, 5, 10)


def t2i_ranks(scores: np.ndarray, text_image: np.ndarray) -> np.ndarray:
    """For each caption, how many images rank above its own (ties: lower image index first)."""
    scores = np.asarray(scores)
    t = np.arange(len(scores))
    pos = scores[t, text_image][:, None]
    cols = np.arange(scores.shape[1])[None, :]
    return ((scores > pos) | ((scores == pos) & (cols < text_image[:, None]))).sum(axis=1)


def i2t_ranks(scores: np.ndarray, text_image: np.ndarray) -> np.ndarray:
    """For each image, how many non-matching captions rank above its best caption."""
    s = np.asarray(scores).T  # images × captions
    positive = text_image[None, :] == np.arange(s.shape[0])[:, None]
    if not positive.any(axis=1).all():
        raise ValueError("every image needs at least one caption")
    best = np.where(positive, s, -np.inf).max(axis=1, keepdims=True)
    # the lowest-index caption reaching the best score stands for the image
    first = np.argmax(positive & (s == best), axis=1)[:, None]
    cols = np.arange(s.shape[1])[None, :]
    above = (s > best) | ((s == best) & (cols < first))
    return (above & ~positive).sum(axis=1)


def recalls(i2t_rank: np.ndarray, t2i_rank: np.ndarray, ks=KS) -> dict[str, float]:
    out = {f"i2t/R@{k}": float(np.mean(i2t_rank < k)) for k in ks}
    out.update({f"t2i/R@{k}": float(np.mean(t2i_rank < k)) for k in ks})
    out["rsum"] = float(sum(out.values()))
    out["mean_recall"] = out["rsum"] / (2 * len(ks))
    return out


def recall_intervals(i2t_rank: np.ndarray, t2i_rank: np.ndarray, text_image: np.ndarray, spec: Spec, ks=KS) -> dict[str, Interval]:
    """A bootstrap over images: an image is drawn with all its captions, since they are not independent."""
    n = len(i2t_rank)
    img_hits = np.stack([i2t_rank < k for k in ks], axis=1).astype(np.float64)  # images × ks
    # per image: how many of its captions hit at each k, and how many captions it has
    cap_hits = np.zeros((n, len(ks)))
    for j, k in enumerate(ks):
        np.add.at(cap_hits[:, j], text_image, (t2i_rank < k).astype(np.float64))
    n_caps = np.bincount(text_image, minlength=n).astype(np.float64)

    def stat(w: np.ndarray) -> dict[str, np.ndarray]:
        i2t = (w @ img_hits) / w.sum(axis=1, keepdims=True)
        t2i = (w @ cap_hits) / (w @ n_caps)[:, None]
        out = {f"i2t/R@{k}": i2t[:, j] for j, k in enumerate(ks)}
        out.update({f"t2i/R@{k}": t2i[:, j] for j, k in enumerate(ks)})
        out["rsum"] = i2t.sum(axis=1) + t2i.sum(axis=1)
        out["mean_recall"] = out["rsum"] / (2 * len(ks))
        return out

    return bootstrap(stat, n, spec, "image")


def retrieval_rows(i2t_rank: np.ndarray, t2i_rank: np.ndarray, text_image: np.ndarray, spec: Optional[Spec], dataset: str, split: str, ks=KS) -> list[dict]:
    values = recalls(i2t_rank, t2i_rank, ks)
    ivs = recall_intervals(i2t_rank, t2i_rank, text_image, spec, ks) if spec else {}
    rows = []
    for metric, v in values.items():
        n = len(i2t_rank) if metric.startswith("i2t") or metric in ("rsum", "mean_recall") else len(t2i_rank)
        row = {"metric": metric, "value": v, "dataset": dataset, "split": split, "n": n}
        if metric in ivs:
            row.update(ivs[metric].row())
        rows.append(row)
    return rows
