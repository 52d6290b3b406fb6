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
from bench.optional import opencv


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


def code_tables(decoded: np.ndarray, num_classes: int, ignore_index: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables from raw file values to confusion rows and columns, given each raw value's decoded
    class (`decoded[v]`): label rows 0…C−1, C for ignore_index, C + 1 for anything else (invalid);
    prediction columns 0…C−1, C for anything outside the classes. The same counts as `confusion`."""
    valid = (decoded >= 0) & (decoded < num_classes)
    rows = np.where(valid, decoded, np.where(decoded == ignore_index, num_classes, num_classes + 1)).astype(np.int32)
    cols = np.where(valid, decoded, num_classes).astype(np.int32)
    return rows, cols


def coded_confusion(rows: np.ndarray, cols: np.ndarray, num_classes: int) -> np.ndarray:
    """[C + 2, C + 1] counts of coded label rows and prediction columns (code_tables): row C is the ignored
    pixels, row C + 1 the invalid ones; rows 0…C−1 are `confusion`'s matrix."""
    idx = rows.ravel() * (num_classes + 1) + cols.ravel()
    return np.bincount(idx, minlength=(num_classes + 2) * (num_classes + 1)).reshape(num_classes + 2, num_classes + 1)


def joint_histogram_u8(label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """[256, 256] counts of (label value, pred value) over two uint8 maps of one shape.
    OpenCV's calcHist where installed: about 2x np.bincount here, and it releases the GIL, so images
    score in parallel threads. Its float32 bins are exact below 2^24 pixels; larger maps use bincount."""
    cv2 = opencv()
    if cv2 is not None and label.size < (1 << 24):
        return cv2.calcHist([np.ascontiguousarray(label), np.ascontiguousarray(pred)], [0, 1], None, [256, 256], [0, 256, 0, 256])
    return np.bincount(((label.astype(np.uint16) << 8) | pred).ravel(), minlength=65536).reshape(256, 256)


def coded_confusion_u8(label: np.ndarray, pred: np.ndarray, rows: np.ndarray, cols: np.ndarray, num_classes: int) -> np.ndarray:
    """coded_confusion of uint8 maps without a per-pixel lookup: the joint histogram of raw values
    (256 x 256 bins) is counted once, then the block of values present is moved to its rows and columns."""
    joint = joint_histogram_u8(label, pred)
    lab, prd = np.flatnonzero(joint.sum(1)), np.flatnonzero(joint.sum(0))
    block = joint[np.ix_(lab, prd)].astype(np.int64)
    idx = rows[lab][:, None] * (num_classes + 1) + cols[prd][None, :]
    out = np.bincount(idx.ravel(), weights=block.ravel(), minlength=(num_classes + 2) * (num_classes + 1))
    return np.rint(out).astype(np.int64).reshape(num_classes + 2, num_classes + 1)


def areas(conf: np.ndarray) -> np.ndarray:
    """[3, C] (intersect, label area, pred area) of a [C, C + 1] matrix, or [N, 3, C] of a stack."""
    conf = np.asarray(conf)
    c = conf.shape[-2]
    inter = np.diagonal(conf[..., :c], axis1=-2, axis2=-1)
    return np.stack([inter, conf.sum(-1), conf[..., :c].sum(-2)], axis=-2)


def _from_areas(inter, label, pred) -> dict:
    union = pred + label - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
        acc = inter / label
        a_acc = inter.sum(-1) / label.sum(-1)
    return {"iou": iou, "acc": acc, "aAcc": a_acc}


def _nanmean(x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x)
    n = finite.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, np.where(finite, x, 0.0).sum(-1) / n, np.nan)


def scores(conf: np.ndarray) -> dict:
    """{"aAcc", "mIoU", "mAcc"} floats and per-class "IoU", "Acc" arrays (NaN where undefined) from a [C, C + 1] matrix."""
    inter, label, pred = areas(np.asarray(conf, dtype=np.float64))
    got = _from_areas(inter, label, pred)
    return {"aAcc": float(got["aAcc"]), "mIoU": float(_nanmean(got["iou"])), "mAcc": float(_nanmean(got["acc"])), "IoU": got["iou"], "Acc": got["acc"]}


def resampled(per_image: np.ndarray, w: np.ndarray, classes: list[str] | None = None) -> dict[str, np.ndarray]:
    """mIoU, mAcc, aAcc (and IoU/<class> when names are given) under bootstrap draw counts w [b, N],
    from per-image areas [N, 3, C]: a resample's matrix is the draw-weighted sum of its images'."""
    flat = per_image.reshape(len(per_image), -1).astype(np.float64)
    c = per_image.shape[-1]
    summed = (w @ flat).reshape(len(w), 3, c)
    got = _from_areas(summed[:, 0], summed[:, 1], summed[:, 2])
    out = {"mIoU": _nanmean(got["iou"]), "mAcc": _nanmean(got["acc"]), "aAcc": got["aAcc"]}
    for k, name in enumerate(classes or []):
        out[f"IoU/{name}"] = got["iou"][:, k]
    return out

