"""Semantic segmentation (`type: segmentation`): mIoU, mAcc, aAcc and per-class IoU, as mmsegmentation's IoUMetric.

Class maps come from a model (capability `seg_logits`: the broker runs the inference mode —
whole, slide, resized, multi-scale, flipped — and returns maps at each label's size) or from a
results folder of PNG label maps named by image stem, encoded like the dataset's label files
(mmsegmentation's `--format-only`, detectron2's sem_seg output). One [C, C + 1] confusion matrix
per image (on the model's device for model outputs) gives the split's numbers, and the per-image
areas give an image bootstrap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.data.formats import SegDatasetSpec
from bench.data.segmentation import SegSplit, read_label_map
from bench.dist import thread_budget
from bench.errors import DataError
from bench.metrics import segmentation as M
from bench.metrics.uncertainty import bootstrap, fill
from bench.tasks.base import Task, TaskConfig, TaskResult, register_task

CONVENTION = "mmseg-IoUMetric"


class InferenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["whole", "slide"] = "whole"
    crop_size: Optional[tuple[int, int]] = None  # (h, w) of slide windows
    stride: Optional[tuple[int, int]] = None  # (h, w) between slide windows
    scale: Optional[tuple[int, int]] = None  # keep_ratio: (long, short) edge maxima, as mmseg's (2048, 512); else (w, h)
    keep_ratio: bool = True
    ratios: list[float] = Field([1.0], min_length=1)  # multi-scale: scale × each ratio
    flip: bool = False  # add horizontally flipped views
    merge: Literal["softmax", "logits"] = "softmax"  # how views are averaged (mmseg's TTA: softmax)

    @model_validator(mode="after")
    def _slide_has_windows(self):
        if self.mode == "slide":
            if not self.crop_size or not self.stride:
                raise ValueError("mode slide needs crop_size and stride")
            if any(s <= 0 or s > c for s, c in zip(self.stride, self.crop_size)):
                raise ValueError("stride must be positive and at most crop_size")
        elif self.crop_size or self.stride:
            raise ValueError("crop_size and stride apply to mode slide only")
        return self

    def as_inference(self):
        from bench.dense import Inference

        return Inference(self.mode, self.crop_size, self.stride, self.scale, self.keep_ratio, tuple(self.ratios), self.flip, self.merge)


class LinearSegConfig(BaseModel):
    """DINOv2's linear protocol: a 1×1 conv on a frozen backbone's patch features, trained on `train`."""

    model_config = ConfigDict(extra="forbid")
    train: SegDatasetSpec
    input_size: int = Field(224, gt=0)  # train and val images resized (no crop) to this square for features
    steps: int = Field(1000, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(16, gt=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"


class ZeroShotSegConfig(BaseModel):
    """Open-vocabulary baseline (MaskCLIP): patch embeddings scored against the class names' text embeddings."""

    model_config = ConfigDict(extra="forbid")
    templates: list[str] = Field(["a photo of a {}."], min_length=1)  # each with {} for the class name
    input_size: int = Field(448, gt=0)  # images resized (no crop) to this square


class SegmentationConfig(TaskConfig):
    type: Literal["segmentation"]
    dataset: SegDatasetSpec
    protocol: Literal["model", "linear_seg", "zero_shot"] = "model"  # model: its seg_logits or a results folder; linear_seg: a head on patch_features; zero_shot: dense_embeddings vs class names
    inference: InferenceConfig = InferenceConfig()
    linear: Optional[LinearSegConfig] = None  # protocol linear_seg
    zero_shot: ZeroShotSegConfig = ZeroShotSegConfig()  # protocol zero_shot
    per_category: bool = True  # one `seg/IoU/<class>` row per class present in labels or predictions

    @model_validator(mode="after")
    def _linear_has_train(self):
        if (self.protocol == "linear_seg") != (self.linear is not None):
            raise ValueError("protocol linear_seg needs a linear: {train: ...} block, and linear applies to it only")
        return self


def prompt_name(name: str) -> str:
    """A class name as prompts use it: ADE-847's "building, edifice" lists synonyms, the first is the name."""
    return name.split(", ")[0].strip()


def label_size(path: str) -> tuple[int, int]:
    """(H, W) of a label map without decoding it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception as e:
        raise DataError(f"{path}: cannot read label map: {type(e).__name__}: {e}") from None


def check_labels(label: np.ndarray, split: SegSplit, path: str) -> None:
    bad = (label != split.ignore_index) & ((label < 0) | (label >= split.num_classes))
    if bad.any():
        vals = sorted(set(np.unique(label[bad]).tolist()))[:5]
        raise DataError(f"{path}: label values {vals} are outside 0..{split.num_classes - 1} and not ignore_index {split.ignore_index}")


def check_size(pred: np.ndarray, label: np.ndarray, source: str, label_path: str) -> None:
    if pred.shape != label.shape:
        raise DataError(f"{source}: prediction is {pred.shape[1]}x{pred.shape[0]}, its label {label_path} is {label.shape[1]}x{label.shape[0]}")


def file_confusions(split: SegSplit, files: list[str], threads: int = 1):
    """Per-image [C, C + 1] matrices of a results folder, in image order, counted from the raw file values
    (uint8: their joint histogram; uint16: through lookup tables), so no int64 copies of the maps are made.
    Images are read and counted in `threads` threads: OpenCV's PNG decoder and histogram release the GIL
    (PIL's decoder gains little from a second thread: measured 1.2x on 2 cores)."""
    c = split.num_classes
    rows, cols = M.code_tables(split.decoded_values(), c, split.ignore_index)

    def one(i: int) -> np.ndarray:
        label = read_label_map(split.labels[i], raw=True)
        pred = read_label_map(files[i], "prediction", raw=True)
        check_size(pred, label, files[i], split.labels[i])
        if label.dtype == np.uint8 and pred.dtype == np.uint8:
            conf = M.coded_confusion_u8(label, pred, rows, cols, c)
        elif label.dtype.kind == "u" and label.dtype.itemsize <= 2 and pred.dtype.kind == "u" and pred.dtype.itemsize <= 2:
            conf = M.coded_confusion(rows[label], cols[pred], c)
        else:
            conf = None
        if conf is not None:
            if conf[c + 1].any():  # invalid label values: the slow path names them
                check_labels(split.decode(label.astype(np.int64)), split, split.labels[i])
            return conf[:c]
        decoded = split.decode(label.astype(np.int64))
        check_labels(decoded, split, split.labels[i])
        return M.confusion(split.decode(pred.astype(np.int64)), decoded, c, split.ignore_index)

    yield from in_order(one, len(split), threads)


def in_order(fn, n: int, threads: int):
    """fn(0), fn(1), … fn(n − 1) in order, computed in `threads` threads with a bounded window ahead."""
    if threads <= 1:
        yield from map(fn, range(n))
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        ahead: deque = deque()
        for i in range(n):
            ahead.append(pool.submit(fn, i))
            if len(ahead) >= 4 * threads:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def prediction_files(folder: str, split: SegSplit) -> list[str]:
    """The prediction of each image, <stem>.png (or .tif); missing ones are counted and fail the job."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{folder}: expected a folder of PNG label maps named by image stem")
    out, missing = [], []
    for stem in split.stems:
        hit = next((p for p in (root / f"{stem}.png", root / f"{stem}.tif") if p.is_file()), None)
        (out.append(str(hit)) if hit else missing.append(stem))
    if missing:
        raise DataError(f"{folder}: no prediction for {len(missing)} of {len(split)} images (first: {missing[0]}.png)")
    return out


@register_task
class SegmentationTask(Task):
    type = "segmentation"
    Config = SegmentationConfig
    description = "semantic segmentation mIoU/mAcc/aAcc + per-class IoU (mmseg IoUMetric; whole/slide/multi-scale/flip) from a model or PNG label maps"
    needs = frozenset({"seg_logits", "predictions", "patch_features", "dense_embeddings", "text_features"})
    headline = ("seg/mIoU",)
    per_category = "seg/IoU/*"
    cost = 3.0

    @classmethod
    def required_capabilities(cls, cfg: SegmentationConfig) -> "frozenset | tuple[frozenset, ...]":
        if cfg.protocol == "linear_seg":
            return frozenset({"patch_features"})
        if cfg.protocol == "zero_shot":
            return frozenset({"dense_embeddings", "text_features"})
        return (frozenset({"seg_logits"}), frozenset({"predictions"}))

    def evaluate(self, adapter) -> TaskResult:
        cfg = self.cfg
        split: SegSplit = cfg.dataset.load().subset(self.ctx.limit, self.ctx.seed)
        c = split.num_classes
        meta: dict = {"images": len(split), "classes": c}
        if cfg.protocol == "linear_seg":
            preds, files = self._linear_seg(adapter, split, meta)
            on_device = self.ctx.device
        elif cfg.protocol == "zero_shot":
            preds, files = self._zero_shot(adapter, split, meta)
            on_device = self.ctx.device
        elif "predictions" in adapter.capabilities:
            folder = self.ctx.outputs("predictions", task_name=cfg.name)
            files = prediction_files(folder, split)
            preds = None
            meta["inference"] = "results folder"
            on_device = None
        else:
            inf = cfg.inference.as_inference()
            sizes = [label_size(p) for p in split.labels]
            preds = iter(self.ctx.outputs("seg_logits", (split.image_split(), sizes, inf)))
            files = [f"model '{adapter.args.name}' on {p}" for p in split.images]
            meta["inference"] = cfg.inference.model_dump(mode="json")
            on_device = self.ctx.device
        per_image = np.zeros((len(split), 3, c), np.int64)
        total = np.zeros((c, c + 1), np.int64)
        confs = file_confusions(split, files, thread_budget()) if preds is None else self._map_confusions(split, preds, files, on_device)
        for i, conf in enumerate(confs):
            total += conf
            per_image[i] = M.areas(conf)
        got = M.scores(total)
        rows = [{"metric": f"seg/{k}", "value": got[k]} for k in ("mIoU", "mAcc", "aAcc")]
        present = np.isfinite(got["IoU"])
        if cfg.per_category:
            rows += [{"metric": f"seg/IoU/{n}", "value": float(v)} for n, v, ok in zip(split.classes, got["IoU"], present) if ok]
        meta["absent_classes"] = int((~present).sum())  # in neither labels nor predictions: NaN, left out of the mean
        spec = self.ctx.uncertainty
        if spec is not None and len(split) > 1:
            shown = {f"IoU/{n}" for n, ok in zip(split.classes, present) if ok} if cfg.per_category else set()

            def stat(w):
                got = M.resampled(per_image, w, split.classes if shown else None)
                return {k: v for k, v in got.items() if not k.startswith("IoU/") or k in shown}

            fill(rows, bootstrap(stat, len(split), spec, "image"), match=lambda r: r["metric"][len("seg/") :])
        for r in rows:
            r.update(dataset=split.dataset, split=split.name, n=len(split), convention=CONVENTION)
        inter, lab, prd = per_image[:, 0], per_image[:, 1], per_image[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            img_iou = inter / (lab + prd - inter)
        table = pd.DataFrame(
            {
                "image": split.stems,
                "label": split.labels,
                "pixels": lab.sum(1),
                "correct": inter.sum(1),
                "mIoU": [float(np.nanmean(r)) if np.isfinite(r).any() else float("nan") for r in img_iou],
            }
        )
        return TaskResult(rows=rows, predictions=table, meta=meta)

    def _linear_seg(self, adapter, split: SegSplit, meta: dict):
        """Fit the head on the train split's cached patch features, then predict the val maps."""
        import dataclasses

        from PIL import Image

        from bench.probes import fit_linear_seg, linear_seg_maps

        lin = self.cfg.linear
        train: SegSplit = lin.train.load()
        if train.num_classes != split.num_classes:
            raise DataError(f"task '{self.cfg.name}': train set has {train.num_classes} classes, the evaluated set {split.num_classes}")
        pre = dataclasses.replace(adapter.preprocess, input_size=lin.input_size, resize="square")
        feats = np.asarray(self.ctx.outputs("patch_features", train.image_split(), preprocess=pre))
        labels = np.empty((len(train), lin.input_size, lin.input_size), np.int64)
        for i in range(len(train)):
            lab = train.label(i)
            check_labels(lab, train, train.labels[i])
            labels[i] = np.asarray(Image.fromarray(lab.astype(np.int32)).resize((lin.input_size, lin.input_size), Image.NEAREST))
        head = fit_linear_seg(feats, labels, train.num_classes, train.ignore_index, lin.steps, lin.lr, lin.weight_decay, lin.batch_size, lin.optimizer, self.ctx.seed, self.ctx.device)
        val = np.asarray(self.ctx.outputs("patch_features", split.image_split(), preprocess=pre))
        sizes = [label_size(p) for p in split.labels]
        meta.update(protocol="linear_seg", linear={**lin.model_dump(mode="json", exclude={"train"}), "train_images": len(train), "feature_grid": list(feats.shape[-2:]), "final_loss": head["loss"]})
        return iter(linear_seg_maps(head, val, sizes, self.ctx.device)), [f"model '{adapter.args.name}' on {p}" for p in split.images]

    def _zero_shot(self, adapter, split: SegSplit, meta: dict):
        """MaskCLIP: cosine of each patch embedding with each class's mean template embedding, upsampled to the label."""
        import dataclasses

        from bench.probes import linear_seg_maps, zero_shot_weights

        zs = self.cfg.zero_shot
        names = [prompt_name(c) for c in split.classes]
        prompts = [t.replace("{}", n) for n in names for t in zs.templates]
        text = zero_shot_weights(np.asarray(self.ctx.outputs("text_features", prompts)), len(names), len(zs.templates))
        pre = dataclasses.replace(adapter.preprocess, input_size=zs.input_size, resize="square")
        emb = np.asarray(self.ctx.outputs("dense_embeddings", split.image_split(), preprocess=pre))
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = emb / np.where(norm > 0, norm, 1.0)
        d = emb.shape[1]
        head = {"weight": text.astype(np.float32), "bias": np.zeros(len(names), np.float32), "mean": np.zeros(d, np.float32), "std": np.ones(d, np.float32)}
        sizes = [label_size(p) for p in split.labels]
        meta.update(protocol="zero_shot", zero_shot={**zs.model_dump(mode="json"), "prompts": len(prompts), "feature_grid": list(emb.shape[-2:])})
        return iter(linear_seg_maps(head, emb, sizes, self.ctx.device)), [f"model '{adapter.args.name}' on {p}" for p in split.images]

    @staticmethod
    def _map_confusions(split: SegSplit, preds, files: list[str], device):
        """Per-image [C, C + 1] matrices of class maps, counted on the model's device."""
        import torch

        from bench.dense import confusion_on_device

        for i, pred in enumerate(preds):
            label = split.label(i)
            check_labels(label, split, split.labels[i])
            check_size(pred, label, files[i], split.labels[i])
            if pred.size and int(pred.max()) >= split.num_classes:  # a head for another vocabulary
                raise DataError(f"{files[i]}: the model predicts class {int(pred.max())}, but {split.dataset} has {split.num_classes} classes")
            t = confusion_on_device(torch.from_numpy(pred.astype(np.int64)).to(device), torch.from_numpy(label).to(device), split.num_classes, split.ignore_index)
            yield t.cpu().numpy()
