"""COCO panoptic quality: PQ, SQ and RQ over all, thing and stuff categories, as panopticapi's pq_compute.

Definitions, read from cocodataset/panopticapi panopticapi/evaluation.py (commit 7bb4655) and
cityscapesscripts 2.3.0's evaluation/evalPanopticSemanticLabeling.py (the same code):
- a PNG holds one segment id per pixel, R + 256·G + 256²·B; 0 is VOID. A predicted segment's area is
  its pixel count, a ground-truth segment's the `area` of its JSON entry;
- a (ground truth, prediction) pair of the same category, the ground truth not crowd, matches when
  IoU > 0.5 (strict), with union = pred area + gt area − intersection − the prediction's VOID pixels;
  a match is a tp and adds its IoU to the category's sum;
- an unmatched non-crowd ground truth is a fn; an unmatched prediction is a fp unless more than
  half of it lies on VOID or on the crowd segment of its category (the last one listed, if several);
- per category PQ = ΣIoU / (tp + fp/2 + fn/2), SQ = ΣIoU / tp (0 without tp), RQ = tp / (tp + fp/2 + fn/2);
  All / things / stuff are unweighted means over the categories with tp + fp + fn > 0.

Per image and category, tp, fp, fn and ΣIoU add up, so a split — or a bootstrap resample, its
draw-weighted sum — is scored from one (categories × 4) array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.errors import DataError

OFFSET = 256**3
VOID = 0
TP, FP, FN, IOU = range(4)
GROUPS = (("", None), ("_th", True), ("_st", False))  # metric suffix, isthing


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """[H, W, ≥3] colours → [H, W] int64 segment ids."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


@dataclass(frozen=True)
class Segments:
    """One image's segments_info: ids, category indices (0…C−1), and for ground truth area and iscrowd."""

    ids: np.ndarray
    cats: np.ndarray
    area: np.ndarray | None = None
    crowd: np.ndarray | None = None


def _lookup(ids: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each query in ids, −1 where absent."""
    if ids.size == 0:
        return np.full(query.shape, -1, np.int64)
    order = np.argsort(ids, kind="stable")
    pos = np.clip(np.searchsorted(ids[order], query), 0, ids.size - 1)
    return np.where(ids[order][pos] == query, order[pos], -1)


def image_stats(gt_map: np.ndarray, pred_map: np.ndarray, gt: Segments, pred: Segments, num_categories: int, source: str = "") -> np.ndarray:
    """[C, 4] (tp, fp, fn, ΣIoU) of one image from its id maps; an id in the PNG but not in the
    prediction's segments, or a segment absent from the PNG, is a DataError naming `source`."""
    out = np.zeros((num_categories, 4), np.float64)
    p_ids, p_count = np.unique(pred_map, return_counts=True)
    stray = p_ids[(_lookup(pred.ids, p_ids) < 0) & (p_ids != VOID)]
    if stray.size:
        raise DataError(f"{source}: segment id {int(stray[0])} is in the PNG but not in its segments_info ({stray.size} such ids)")
    absent = pred.ids[_lookup(p_ids, pred.ids) < 0]
    if absent.size:
        raise DataError(f"{source}: segments_info ids {absent[:5].tolist()} are not in the PNG")
    pred_area = p_count[_lookup(p_ids, pred.ids)].astype(np.float64)

    joint, inter = np.unique(gt_map.astype(np.uint64) * np.uint64(OFFSET) + pred_map.astype(np.uint64), return_counts=True)
    g_id, p_id = (joint // OFFSET).astype(np.int64), (joint % OFFSET).astype(np.int64)
    gi, pi = _lookup(gt.ids, g_id), _lookup(pred.ids, p_id)
    inter = inter.astype(np.float64)
    pred_void = np.zeros(len(pred.ids))
    on_void = (g_id == VOID) & (pi >= 0)
    pred_void[pi[on_void]] = inter[on_void]

    pair = np.flatnonzero((gi >= 0) & (pi >= 0))
    pair = pair[~gt.crowd[gi[pair]] & (gt.cats[gi[pair]] == pred.cats[pi[pair]])]
    g, p = gi[pair], pi[pair]
    iou = inter[pair] / (pred_area[p] + gt.area[g] - inter[pair] - pred_void[p])
    hit = iou > 0.5
    np.add.at(out[:, TP], gt.cats[g[hit]], 1)
    np.add.at(out[:, IOU], gt.cats[g[hit]], iou[hit])
    gt_matched = np.zeros(len(gt.ids), bool)
    gt_matched[g[hit]] = True
    pred_matched = np.zeros(len(pred.ids), bool)
    pred_matched[p[hit]] = True

    np.add.at(out[:, FN], gt.cats[~gt_matched & ~gt.crowd], 1)
    crowd_of = np.full(num_categories, -1, np.int64)  # per category, the id of its last crowd segment
    for k in np.flatnonzero(gt.crowd):
        crowd_of[gt.cats[k]] = gt.ids[k]
    crowd_pix = np.zeros(len(pred.ids))
    on_crowd = np.flatnonzero(pi >= 0)
    on_crowd = on_crowd[(crowd_of[pred.cats[pi[on_crowd]]] == g_id[on_crowd]) & (g_id[on_crowd] != VOID)]
    crowd_pix[pi[on_crowd]] = inter[on_crowd]
    ignored = (pred_void + crowd_pix) / pred_area > 0.5
    np.add.at(out[:, FP], pred.cats[~pred_matched & ~ignored], 1)
    return out


def scores(totals: np.ndarray, isthing: np.ndarray) -> dict[str, np.ndarray]:
    """From [..., C, 4] sums: per-category "pq", "sq", "rq" [..., C] (NaN where tp + fp + fn = 0) and
    "PQ", "SQ", "RQ" with suffixes "", "_th", "_st" [...] (NaN where the group has no counted category),
    plus "n", "n_th", "n_st": the counted categories."""
    tp, fp, fn, iou = (totals[..., k] for k in range(4))
    counted = tp + fp + fn > 0
    denom = np.where(counted, tp + 0.5 * fp + 0.5 * fn, 1.0)
    per = {
        "pq": np.where(counted, iou / denom, np.nan),
        "sq": np.where(counted, np.where(tp > 0, iou / np.where(tp > 0, tp, 1.0), 0.0), np.nan),
        "rq": np.where(counted, tp / denom, np.nan),
    }
    out: dict[str, np.ndarray] = dict(per)
    isthing = np.asarray(isthing, bool)
    for suffix, thing in GROUPS:
        mask = counted if thing is None else counted & (isthing == thing)
        n = mask.sum(-1)
        out[f"n{suffix}"] = n
        for k, v in per.items():
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"{k.upper()}{suffix}"] = np.where(n > 0, np.where(mask, v, 0.0).sum(-1) / n, np.nan)
    return out


def resampled(per_image: np.ndarray, w: np.ndarray, isthing: np.ndarray, categories: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """PQ/SQ/RQ (all, _th, _st) and PQ/<name> for each {name: category index} under draw counts w
    [b, N], from per-image sums [N, C, 4]: a resample's sums are the draw-weighted sums of its images'."""
    n, c = per_image.shape[:2]
    summed = (w @ per_image.reshape(n, -1)).reshape(len(w), c, 4)
    got = scores(summed, isthing)
    out = {f"{m}{s}": got[f"{m}{s}"] for s, _ in GROUPS for m in ("PQ", "SQ", "RQ")}
    for name, k in (categories or {}).items():
        out[f"PQ/{name}"] = got["pq"][:, k]
    return out
