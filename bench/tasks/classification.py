"""Image classification with four protocols: head, linear_probe, knn, zero_shot."""

from __future__ import annotations

import hashlib
from typing import Literal, Optional

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.data.images import ImageDatasetSpec, ImageSplit, read_lines, dataset_name
from bench.errors import DataError
from bench.metrics.classification import topk_accuracy, topk_indices
from bench.probes import knn_scores, l2_normalize, linear_probe, zero_shot_weights
from bench.suite import ExistingPath
from bench.tasks.base import Task, TaskConfig, TaskResult, register_task

CAPS = {
    "head": {"image_logits"},
    "linear_probe": {"image_features"},
    "knn": {"image_features"},
    "zero_shot": {"image_features", "text_features"},
}
DEFAULT_TEMPLATES = ["a photo of a {}."]


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KnnOpts(_Opts):
    k: int = Field(20, gt=0)
    temperature: float = Field(0.07, gt=0)


class LinearProbeOpts(_Opts):
    held_out: float = Field(0.2, gt=0, lt=1)
    max_iter: int = Field(1000, gt=0)


class ZeroShotOpts(_Opts):
    templates: Optional[list[str]] = None
    templates_file: Optional[ExistingPath] = None  # one template per line, with {} for the class name


class ClassificationConfig(TaskConfig):
    type: Literal["classification"]
    protocol: Literal["head", "linear_probe", "knn", "zero_shot"] = "head"
    dataset: ImageDatasetSpec
    # head only: line i holds the model output index of dataset class i (e.g. ImageNet-R's 200 of 1000)
    label_map: Optional[ExistingPath] = None
    knn: KnnOpts = KnnOpts()
    linear_probe: LinearProbeOpts = LinearProbeOpts()
    zero_shot: ZeroShotOpts = ZeroShotOpts()

    @model_validator(mode="after")
    def _train_split_needed(self):
        if self.protocol in ("linear_probe", "knn"):
            has_train = getattr(self.dataset, "train_split", None) if self.dataset.format != "list" else self.dataset.train_file
            if not has_train:
                key = "train_file" if self.dataset.format == "list" else "train_split"
                raise ValueError(f"protocol '{self.protocol}' needs dataset.{key}")
        if self.label_map and self.protocol != "head":
            raise ValueError("label_map applies to protocol 'head' only")
        return self


@register_task
class ClassificationTask(Task):
    type = "classification"
    Config = ClassificationConfig
    description = "top-1/top-5 with protocols head | linear_probe | knn | zero_shot"

    @classmethod
    def required_capabilities(cls, cfg: ClassificationConfig) -> frozenset[str]:
        return frozenset(CAPS[cfg.protocol])

    def _split(self, role: str) -> ImageSplit:
        return self.cfg.dataset.load(role).subset(self.ctx.limit, self.ctx.seed)

    def evaluate(self, adapter) -> TaskResult:
        cfg = self.cfg
        test = self._split("test")
        meta: dict = {}
        if cfg.protocol == "head":
            scores = self.ctx.image_outputs(adapter, test, "image_logits")
            if cfg.label_map:
                idx = np.asarray([int(x) for x in read_lines(cfg.label_map)])
                if len(idx) != len(test.classes) or idx.max() >= scores.shape[1]:
                    raise DataError(
                        f"{cfg.label_map}: label map has {len(idx)} entries (max {idx.max()}) for {len(test.classes)} classes and {scores.shape[1]} model outputs"
                    )
                scores = scores[:, idx]
            elif scores.shape[1] != len(test.classes):
                raise DataError(
                    f"model '{adapter.args.name}' has {scores.shape[1]} outputs but dataset has {len(test.classes)} classes; set num_classes or a label_map"
                )
        elif cfg.protocol in ("linear_probe", "knn"):
            train = self._split("train")
            if train.classes != test.classes:
                raise DataError(f"train split '{train.name}' and test split '{test.name}' have different classes")
            f_train = self.ctx.image_outputs(adapter, train, "image_features")
            f_test = self.ctx.image_outputs(adapter, test, "image_features")
            if cfg.protocol == "knn":
                scores = knn_scores(f_train, train.labels, f_test, len(test.classes), cfg.knn.k, cfg.knn.temperature)
                meta = {"k": cfg.knn.k, "temperature": cfg.knn.temperature}
            else:
                scores, c, held = linear_probe(f_train, train.labels, f_test, cfg.linear_probe.held_out, cfg.linear_probe.max_iter, self.ctx.seed)
                meta = {"C": c, "held_out_top1": held}
        else:  # zero_shot
            templates = self._templates()
            prompts = [t.format(name) for name in test.class_names for t in templates]
            text = adapter.text_features(prompts).cpu().numpy()
            weights = zero_shot_weights(text, len(test.classes), len(templates))
            image = l2_normalize(self.ctx.image_outputs(adapter, test, "image_features").astype(np.float64))
            scores = 100.0 * image @ weights.T
            meta = {"templates": len(templates), "templates_sha256": hashlib.sha256("\n".join(templates).encode()).hexdigest()[:16]}

        top = topk_indices(scores, 5)
        metrics = topk_accuracy(top, test.labels)
        preds = pd.DataFrame(
            {
                "index": np.arange(len(test)),
                "path": test.paths,
                "label": test.labels,
                "topk": list(top.astype(np.int32)),
                "score": scores[np.arange(len(test)), top[:, 0]].astype(np.float64),
            }
        )
        rows = [{"metric": m, "value": v, "dataset": dataset_name(cfg.dataset), "split": test.name, "n": len(test)} for m, v in metrics.items()]
        return TaskResult(rows=rows, predictions=preds, meta=meta)

    def _templates(self) -> list[str]:
        z = self.cfg.zero_shot
        templates = list(z.templates or [])
        if z.templates_file:
            templates += read_lines(z.templates_file)
        templates = templates or DEFAULT_TEMPLATES
        bad = [t for t in templates if "{}" not in t]
        if bad:
            raise DataError(f"zero-shot template {bad[0]!r} has no '{{}}' for the class name")
        return templates
