"""Semantic segmentation: mIoU, mAcc and aAcc from one confusion matrix, as mmsegmentation's IoUMetric.

Definitions, read from mmseg/evaluation/metrics/iou_metric.py (intersect_and_union and
total_area_to_metrics): pixels whose label is ignore_index are dropped; per class c,
intersect = pixels with pred == label == c, union = pred area + label area − intersect;
IoU = intersect / union, Acc = intersect / label area, aAcc = Σ intersect / Σ label area.
A class absent from both label and prediction has union 0, so IoU NaN, and np.nanmean leaves it
out of mIoU; a class absent from the labels has Acc NaN. A predicted value outside 0…C−1 counts
in no class's pred area (torch.histc's range) but its pixel still counts in its label's area.

reduce_zero_label (ADE20K's annotations): label 0 ("other") becomes ignore_index and every other
label moves down by one, as mmseg's LoadAnnotations does.

The matrix is [C, C + 1]: rows are labels, columns predictions, the last column predictions
outside the classes. It adds up over images, so a split is scored from one matrix.
"""

from __future__ import annotations

import numpy as np

from bench.errors import DataError


def reduce_zero_label(label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    out = label.astype(np.int64) - 1
    out[label == 0] = ignore_index
    out[label == ignore_index] = ignore_index
    return out


def confusion(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = 255, source: str = "") -> np.ndarray:
    """[C, C + 1] pixel counts of one image (int64); labels outside 0…C−1 that are not ignore_index raise DataError."""
    if pred.shape != label.shape:
        raise DataError(f"{source}: prediction is {pred.shape[1]}x{pred.shape[0]}, its label {label.shape[1]}x{label.shape[0]}")
    label = label.astype(np.int64).ravel()
    pred = pred.astype(np.int64).ravel()
    keep = label != ignore_index
    label, pred = label[keep], pred[keep]
    bad = (label < 0) | (label >= num_classes)
    if bad.any():
        raise DataError(f"{source}: label values {sorted(set(label[bad].tolist()))[:5]} are outside 0..{num_classes - 1} and not ignore_index {ignore_index}")
    pred = np.where((pred < 0) | (pred >= num_classes), num_classes, pred)
    return np.bincount(label * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1)).reshape(num_classes, num_classes + 1)


def scores(conf: np.ndarray) -> dict:
    """{"aAcc", "mIoU", "mAcc"} floats and per-class "IoU", "Acc" arrays (NaN where undefined) from a [C, C + 1] matrix."""
    conf = np.asarray(conf, dtype=np.float64)
    c = conf.shape[0]
    intersect = np.diag(conf[:, :c])
    area_label = conf.sum(1)
    area_pred = conf[:, :c].sum(0)
    union = area_pred + area_label - intersect
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersect / union
        acc = intersect / area_label
        a_acc = intersect.sum() / area_label.sum()
    return {
        "aAcc": float(a_acc),
        "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "mAcc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        "IoU": iou,
        "Acc": acc,
    }
