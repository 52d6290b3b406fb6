"""Dense inference as mmsegmentation's test configs run it, and confusion matrices on the device.

A view is the image resized (`scale` with `keep_ratio`, times a multi-scale `ratio`) and maybe
flipped; its logits come from the whole image or from overlapping crops (`slide`), are resized
bilinearly to the label's size, and views are averaged (their softmax, as mmseg's TTA does, or
their logits). Definitions read from mmseg/models/segmentors/encoder_decoder.py (whole_inference,
slide_inference), mmcv's rescale_size and mmseg's SegTTAModel.

`model(uint8 [B, 3, h, w])` returns logits [B, C, h', w'] at any stride; they are upsampled to
the crop (align_corners=False) as mmseg's decode heads are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional



@dataclass(frozen=True)
class Inference:
    mode: str = "whole"  # whole | slide
    crop_size: Optional[tuple[int, int]] = None  # (h, w), slide only
    stride: Optional[tuple[int, int]] = None  # (h, w), slide only
    scale: Optional[tuple[int, int]] = None  # keep_ratio: (long, short) maxima; else (w, h); None: native size
    keep_ratio: bool = True
    ratios: tuple[float, ...] = (1.0,)
    flip: bool = False
    merge: str = "softmax"  # how views are averaged: softmax | logits

    @property
    def views(self) -> int:
        return len(self.ratios) * (2 if self.flip else 1)


def rescale_size(w: int, h: int, scale: tuple[int, int], keep_ratio: bool) -> tuple[int, int]:
    """(w, h) after mmcv's imrescale: the largest size with long edge ≤ max(scale) and short ≤ min(scale)."""
    if not keep_ratio:
        return int(scale[0]), int(scale[1])
    factor = min(max(scale) / max(w, h), min(scale) / min(w, h))
    return int(w * factor + 0.5), int(h * factor + 0.5)


def view_size(w: int, h: int, inf: Inference, ratio: float) -> tuple[int, int]:
    if inf.scale is None:
        return (w, h) if ratio == 1.0 else (int(w * ratio + 0.5), int(h * ratio + 0.5))
    return rescale_size(w, h, (int(inf.scale[0] * ratio), int(inf.scale[1] * ratio)), inf.keep_ratio)


def slide_windows(h: int, w: int, crop: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) of mmseg's sliding windows: a grid of strides, the last window flush with the edge."""
    ch, cw = crop
    sh, sw = stride
    rows = max(h - ch + sh - 1, 0) // sh + 1
    cols = max(w - cw + sw - 1, 0) // sw + 1
    out = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * sh + ch, h), min(c * sw + cw, w)
            out.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return out


def _resize(x, size: tuple[int, int]):
    import torch.nn.functional as F

    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _logits(model: Callable, img):
    """Logits [1, C, h, w] of one uint8 image [1, 3, h, w], whole."""
    import torch

    out = model(img)
    return _resize(torch.as_tensor(out).float(), tuple(img.shape[-2:]))


def _slide(model: Callable, img, crop, stride, batch: int):
    """mmseg's slide_inference: crops in batches, logits summed where they overlap and divided by the count."""
    import torch

    _, _, h, w = img.shape
    wins = slide_windows(h, w, crop, stride)
    total = count = None
    for lo in range(0, len(wins), batch):
        part = wins[lo : lo + batch]
        sizes = {(y2 - y1, x2 - x1) for y1, y2, x1, x2 in part}
        groups = [part] if len(sizes) == 1 else [[win] for win in part]  # crops of a smaller image than the crop may differ
        for g in groups:
            crops = torch.cat([img[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in g])
            out = _resize(torch.as_tensor(model(crops)).float(), tuple(crops.shape[-2:]))
            if total is None:
                total = torch.zeros((1, out.shape[1], h, w), dtype=out.dtype, device=out.device)
                count = torch.zeros((1, 1, h, w), dtype=out.dtype, device=out.device)
            for (y1, y2, x1, x2), o in zip(g, out):
                total[0, :, y1:y2, x1:x2] += o
                count[0, :, y1:y2, x1:x2] += 1
    return total / count


def predict(model: Callable, image, out_size: tuple[int, int], inf: Inference, batch: int = 8):
    """Class index map [H, W] (torch int64) of one uint8 image [3, h, w] for a label of size out_size."""
    import torch

    img = image[None]
    _, _, h, w = img.shape
    acc = None
    for ratio in inf.ratios:
        vw, vh = view_size(w, h, inf, ratio)
        scaled = img if (vh, vw) == (h, w) else _resize(img.float(), (vh, vw)).round().clamp(0, 255).to(torch.uint8)
        for flip in (False, True) if inf.flip else (False,):
            x = scaled.flip(-1) if flip else scaled
            if inf.mode == "slide":
                logits = _slide(model, x, inf.crop_size, inf.stride, batch)
            else:
                logits = _logits(model, x)
            if flip:
                logits = logits.flip(-1)
            logits = _resize(logits, tuple(out_size))
            if inf.views > 1 and inf.merge == "softmax":
                logits = logits.softmax(1)
            acc = logits if acc is None else acc + logits
    return acc[0].argmax(0)


def confusion_on_device(pred, label, num_classes: int, ignore_index: int):
    """bench.metrics.segmentation.confusion with torch.bincount on the tensors' device: [C, C + 1] int64."""
    import torch

    label = label.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = label != ignore_index
    label, pred = label[keep], pred[keep]
    pred = torch.where((pred < 0) | (pred >= num_classes), torch.full_like(pred, num_classes), pred)
    return torch.bincount(label * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1)).reshape(num_classes, num_classes + 1)

