"""OOD detection: an ID dataset, OOD sets grouped into near and far, and postprocessors that all
score one cached forward pass per (model, dataset). Metrics follow OpenOOD v1.5 (bench.metrics.ood).
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any, Literal, Optional

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bench.data.formats import ImageDatasetSpec, dataset_name
from bench.data.images import ImageSplit
from bench.errors import DataError
from bench.metrics.classification import topk_correct, topk_indices
from bench.metrics.ood import CONVENTION, group_means, ood_intervals, ood_metrics
from bench.metrics.uncertainty import fill, proportions
from bench.postprocessors import POSTPROCESSORS, Head, Outputs, create_postprocessor
from bench.probes import l2_normalize, zero_shot_weights
from bench.registry import did_you_mean
from bench.paths import SuitePath
from bench.tasks.base import Task, TaskConfig, TaskResult, register_task

# Methods that run the model again (input gradients) rather than scoring cached outputs.
MODEL_METHODS = {"odin": {"temperature": 1000.0, "epsilon": 0.0014}}
NEEDS_TO_CAPS = {
    "logits": {"image_logits"},
    "features": {"image_features"},
    "head": {"image_features", "linear_head"},
    "labels": set(),
}

# OpenOOD v1.5 benchmarks: image lists under <root>/benchmark_imglist/<id>/, images under <root>/<data_dir>.
_C, _L = "images_classic", "images_largescale"
PRESETS: dict[str, dict] = {
    "cifar10": {"dir": _C, "id": "cifar10", "near": ["cifar100", "tin"], "far": ["mnist", "svhn", "texture", "places365"], "ood_val": "tin"},
    "cifar100": {"dir": _C, "id": "cifar100", "near": ["cifar10", "tin"], "far": ["mnist", "svhn", "texture", "places365"], "ood_val": "tin"},
    "imagenet200": {"dir": _L, "id": "imagenet200", "near": ["ssb_hard", "ninco"], "far": ["inaturalist", "textures", "openimage_o"], "ood_val": "openimage_o"},
    "imagenet1k": {"dir": _L, "id": "imagenet", "near": ["ssb_hard", "ninco"], "far": ["inaturalist", "textures", "openimage_o"], "ood_val": "openimage_o"},
}


def preset_config(preset: str, root: str) -> dict:
    """The dataset/near/far/sweep keys a preset stands for, as plain suite values."""
    p = PRESETS[preset]
    lists = f"{root}/benchmark_imglist/{p['id']}"

    def lst(stem, name=None, data_dir=None):
        return {"format": "list", "file": f"{lists}/{stem}.txt", "root": f"{root}/{data_dir or p['dir']}", **({"split": name} if name else {})}

    id_name = p["id"]
    out = {
        "dataset": {**lst(f"test_{id_name}", "test"), "train_file": f"{lists}/train_{id_name}.txt"},
        # ImageNet's Textures images live with the classic sets in OpenOOD's layout
        "near": [{"name": n, "dataset": lst(f"test_{n}")} for n in p["near"]],
        "far": [{"name": n, "dataset": lst(f"test_{n}", data_dir=_C if n == "textures" else None)} for n in p["far"]],
        "sweep_data": {"id_val": lst(f"val_{id_name}", "val"), "ood_val": lst(f"val_{p['ood_val']}", "val")},
    }
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OODSet(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.@+-]+$")
    dataset: ImageDatasetSpec


class SweepData(_Strict):
    """OpenOOD's APS: hyperparameters are picked by AUROC of ID-val against OOD-val."""

    id_val: ImageDatasetSpec
    ood_val: ImageDatasetSpec


class PostprocessorSpec(BaseModel):
    model_config = ConfigDict(extra="allow")  # the rest are the method's hyperparameters
    name: str
    label: Optional[str] = None  # the `method` value in rows (default: name); tells two settings apart
    sweep: dict[str, list[Any]] = {}  # hyperparameter -> candidates, needs the task's sweep_data

    @property
    def hparams(self) -> dict:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _default_label(self):
        self.label = self.label or self.name
        return self

    @model_validator(mode="after")
    def _known(self):
        if self.name in MODEL_METHODS:
            allowed = set(MODEL_METHODS[self.name])
        elif self.name in POSTPROCESSORS:
            sig = inspect.signature(POSTPROCESSORS.get(self.name).__init__)
            allowed = {p for p in sig.parameters if p != "self"}
        else:
            names = POSTPROCESSORS.list() + list(MODEL_METHODS)
            raise ValueError(f"unknown postprocessor '{self.name}'{did_you_mean(self.name, names)}")
        for key in list(self.hparams) + list(self.sweep):
            if key not in allowed:
                raise ValueError(
                    f"postprocessor '{self.name}' has no hyperparameter '{key}'{did_you_mean(key, allowed)}; it has {', '.join(sorted(allowed)) or 'none'}"
                )
        return self

    def needs(self) -> frozenset:
        if self.name in MODEL_METHODS:
            return frozenset({"input_gradients", "image_logits"})
        if self.name == "mcm":
            return frozenset({"image_features", "text_features"})
        caps: set = set()
        for need in POSTPROCESSORS.get(self.name).needs:
            caps |= NEEDS_TO_CAPS[need]
        return frozenset(caps)


class OODConfig(TaskConfig):
    type: Literal["ood"]
    preset: Optional[Literal["cifar10", "cifar100", "imagenet200", "imagenet1k"]] = None
    root: Optional[SuitePath] = None  # the preset's data root (OpenOOD v1.5 layout)
    dataset: Optional[ImageDatasetSpec] = None  # ID: train split for fitting, test split for scoring
    near: list[OODSet] = []
    far: list[OODSet] = []
    postprocessors: list[PostprocessorSpec] = Field(default_factory=lambda: [PostprocessorSpec(name="msp")], min_length=1)
    sweep_data: Optional[SweepData] = None
    templates: list[str] = ["a photo of a {}."]  # MCM's class prompts

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data):
        if isinstance(data, dict) and data.get("preset"):
            if not data.get("root"):
                raise ValueError(f"preset '{data['preset']}' needs root: the folder holding benchmark_imglist/ and the images")
            if data["preset"] in PRESETS:
                for key, value in preset_config(data["preset"], str(data["root"])).items():
                    data.setdefault(key, value)
        return data

    @field_validator("postprocessors", mode="before")
    @classmethod
    def _names_to_specs(cls, v):
        return [{"name": x} if isinstance(x, str) else x for x in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _complete(self):
        if self.dataset is None:
            raise ValueError("needs dataset (the ID data) or a preset with root")
        if not self.near and not self.far:
            raise ValueError("needs at least one OOD set under near or far")
        labels = [p.label for p in self.postprocessors]
        if len(set(labels)) != len(labels):
            dup = next(lab for lab in labels if labels.count(lab) > 1)
            raise ValueError(f"postprocessor '{dup}' is listed twice; give each setting its own label")
        names = [s.name for s in self.near + self.far]
        if len(set(names)) != len(names) or {"near", "far"} & set(names):
            raise ValueError(f"OOD set names must be unique and not 'near'/'far': {names}")
        if any(p.sweep for p in self.postprocessors) and self.sweep_data is None:
            raise ValueError("a postprocessor sweep needs sweep_data: {id_val, ood_val}")
        return self


@register_task
class OODTask(Task):
    type = "ood"
    Config = OODConfig
    description = "OOD detection (OpenOOD v1.5 metrics): AUROC, FPR95, AUPR_IN/OUT per set and near/far means"
    needs = frozenset({"image_logits", "image_features", "linear_head", "odin_scores", "input_gradients", "text_features"})
    headline = ("AUROC",)
    headline_datasets = ("near", "far")
    lower_is_better = ("FPR95", "*/FPR95", "*FPR@*")
    cost = 8.0

    @classmethod
    def required_capabilities(cls, cfg: OODConfig) -> frozenset[str]:
        caps: set = set()
        for p in cfg.postprocessors:
            caps |= p.needs()
        return frozenset(caps)

    # ---------------------------------------------------------------- outputs
    def _split(self, spec, role: str, with_labels: bool = True) -> ImageSplit:
        return spec.load(role, with_labels=with_labels).subset(self.ctx.limit, self.ctx.seed)

    def _outputs(self, adapter, split: ImageSplit, need) -> Outputs:
        out = Outputs(labels=split.labels)
        if "image_logits" in need:
            out.logits = self.ctx.outputs("image_logits", split)
        if "image_features" in need:
            out.features = self.ctx.outputs("image_features", split)
        return out

    def _mcm_logits(self, adapter, features: np.ndarray, classes: ImageSplit) -> np.ndarray:
        if self._text is None:
            prompts = [t.format(n) for n in classes.class_names for t in self.cfg.templates]
            text = np.asarray(self.ctx.outputs("text_features", prompts))
            self._text = zero_shot_weights(text, len(classes.classes), len(self.cfg.templates))
        return l2_normalize(features.astype(np.float64)) @ self._text.T  # raw cosine similarities

    def _scorer(self, adapter, spec: PostprocessorSpec, hp: dict, train: Outputs, head, id_test: ImageSplit):
        """Fit once on ID train; return split, outputs -> scores (higher = more ID)."""
        if spec.name in MODEL_METHODS:
            args = {**MODEL_METHODS[spec.name], **hp}
            return lambda split, x: self.ctx.outputs("odin_scores", split, **args).astype(np.float64)
        pp = create_postprocessor(spec.name, self.ctx.device, **hp).fit(train, head)
        if spec.name == "mcm":
            return lambda split, x: pp.score(Outputs(logits=self._mcm_logits(adapter, x.features, id_test)))
        return lambda split, x: pp.score(x)

    # ---------------------------------------------------------------- evaluate
    def evaluate(self, adapter) -> TaskResult:
        cfg = self.cfg
        self._text = None
        need = self.required_capabilities(cfg)
        id_test = self._split(cfg.dataset, "test")
        fit_needs = set().union(*(POSTPROCESSORS.get(p.name).needs for p in cfg.postprocessors if p.name in POSTPROCESSORS))
        train = Outputs()
        if fit_needs & {"features", "labels"}:
            tr = self._split(cfg.dataset, "train")
            train = self._outputs(adapter, tr, need & {"image_features"})  # fits use features only
        head = Head(*self.ctx.outputs("linear_head")) if "linear_head" in need else None
        sets = [("near", s) for s in cfg.near] + [("far", s) for s in cfg.far]
        ood_splits = {s.name: self._split(s.dataset, "test", with_labels=False) for _, s in sets}
        for name, sp in ood_splits.items():
            if len(sp) == 0:
                raise DataError(f"OOD set '{name}' is empty")
        x_id = self._outputs(adapter, id_test, need)
        x_ood = {n: self._outputs(adapter, sp, need) for n, sp in ood_splits.items()}

        rows, preds, meta = [], [], {"methods": {}}
        # ID accuracy from the model's own head, or zero-shot for text-image models
        scores = x_id.logits if x_id.logits is not None else (self._mcm_logits(adapter, x_id.features, id_test) if "text_features" in need else None)
        if scores is not None:
            correct = topk_correct(topk_indices(scores, 5), id_test.labels)
            acc = [{"metric": m, "value": float(v.mean()), "dataset": dataset_name(cfg.dataset), "split": id_test.name, "n": len(id_test)} for m, v in correct.items()]
            rows += fill(acc, proportions(correct, self.ctx.uncertainty, unit="image")) if self.ctx.uncertainty else acc

        for spec in cfg.postprocessors:
            hp, swept = dict(spec.hparams), None
            if spec.sweep:
                hp, swept = self._sweep(adapter, spec, train, head, need, id_test)
            score = self._scorer(adapter, spec, hp, train, head, id_test)
            s_id = score(id_test, x_id)
            per, s_oods, new = {}, {}, []
            for group, s in sets:
                s_ood = s_oods[s.name] = score(ood_splits[s.name], x_ood[s.name])
                per[s.name] = ood_metrics(s_id, s_ood, what=f"{spec.label} on {s.name}")
                new += [
                    {"metric": m, "value": v, "dataset": s.name, "split": group, "n": len(s_ood), "method": spec.label, "convention": CONVENTION}
                    for m, v in per[s.name].items()
                ]
                preds.append(pd.DataFrame({"method": spec.label, "set": s.name, "index": np.arange(len(s_ood)), "score": s_ood}))
            groups = {"near": [s.name for s in cfg.near], "far": [s.name for s in cfg.far]}
            for group, means in group_means(per, groups).items():
                new += [
                    {"metric": m, "value": v, "dataset": group, "split": "mean", "n": len(groups[group]), "method": spec.label, "convention": CONVENTION}
                    for m, v in means.items()
                ]
            if self.ctx.uncertainty:
                fill(new, ood_intervals(s_id, s_oods, groups, self.ctx.uncertainty), match=lambda r: f"{r['dataset']}/{r['metric']}")
            rows += new
            preds.append(pd.DataFrame({"method": spec.label, "set": "id", "index": np.arange(len(s_id)), "score": s_id}))
            meta["methods"][spec.label] = {"hparams": hp, **({"sweep": swept} if swept else {})}
        return TaskResult(rows=rows, predictions=pd.concat(preds, ignore_index=True), meta=meta)

    def _sweep(self, adapter, spec, train, head, need, id_test):
        """APS: every combination of the swept values, scored by AUROC of ID-val vs OOD-val; best kept."""
        sd = self.cfg.sweep_data
        id_val = self._split(sd.id_val, "test", with_labels=False)
        ood_val = self._split(sd.ood_val, "test", with_labels=False)
        x_idv, x_oodv = self._outputs(adapter, id_val, need), self._outputs(adapter, ood_val, need)
        keys = list(spec.sweep)
        tried = []
        for values in itertools.product(*(spec.sweep[k] for k in keys)):
            hp = {**spec.hparams, **dict(zip(keys, values, strict=True))}
            score = self._scorer(adapter, spec, hp, train, head, id_test)
            auroc = ood_metrics(score(id_val, x_idv), score(ood_val, x_oodv), what=f"{spec.label} sweep")["AUROC"]
            tried.append({"hparams": hp, "val_AUROC": auroc})
        best = max(tried, key=lambda t: t["val_AUROC"])  # first best wins ties: grid order is the user's
        return best["hparams"], tried
