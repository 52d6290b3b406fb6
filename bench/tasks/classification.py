"""Image classification with four protocols: head, linear_probe, knn, zero_shot."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Annotated, Literal, Optional

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bench import catalogue as zs_catalogue
from bench.data.formats import ImageDatasetSpec, dataset_name
from bench.data.images import ImageSplit, read_lines
from bench.errors import DataError, read_text
from bench.metrics.classification import mean_per_class_recall, per_class_recall_interval, topk_correct, topk_indices
from bench.metrics.uncertainty import fill, proportions
from bench.errors import OutputError
from bench.probes import class_weights, knn_scores, l2_normalize, linear_probe, zero_shot_weights, zpe_weights
from bench.paths import ExistingFile, resolve_existing
from bench.tasks.base import Task, TaskConfig, TaskResult, register_task

CAPS = {
    "head": {"image_logits"},
    "linear_probe": {"image_features"},
    "few_shot": {"image_features"},
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


class FewShotOpts(_Opts):
    shots: int = Field(5, gt=0)  # train images per class
    seeds: int = Field(3, gt=0)  # independent draws (seed, seed+1, …); the mean and std are reported
    C: float = Field(1.0, gt=0)  # inverse L2 strength: too few shots to sweep it on held-out data
    max_iter: int = Field(1000, gt=0)


class ZeroShotOpts(_Opts):
    templates: Optional[list[str]] = None
    templates_file: Optional[ExistingFile] = None  # one template per line, with {} (or CLIP_benchmark's {c}) for the class name
    catalogue: Optional[Annotated[str, AfterValidator(zs_catalogue.check)]] = None  # class names and templates of a known dataset
    prompts_file: Optional[ExistingFile] = None  # CuPL-style JSON {class name: [prompts]}: per-class prompts instead of templates
    cupl: bool = False  # the catalogue's CuPL prompts (ImageNet-1k) instead of its templates
    weighting: Literal["mean", "zpe"] = "mean"  # CLIP's equal-weight mean, or Allingham et al.'s label-free weights
    reference: Optional[ImageDatasetSpec] = None  # zpe: pre-training-like images for the bias correction
    temperature: float = Field(1.0, gt=0)  # zpe: softmax temperature over prompt scores

    @model_validator(mode="after")
    def _reference(self):
        if self.weighting == "zpe" and self.reference is None:
            raise ValueError("weighting 'zpe' needs reference: a dataset of pre-training-like images for its bias correction")
        if self.cupl and not self.catalogue:
            raise ValueError("cupl: true takes the catalogue's CuPL prompts, so it needs catalogue: NAME")
        if (self.cupl or self.prompts_file) and self.weighting == "zpe":
            raise ValueError("zpe weights one shared set of templates; per-class prompts (cupl, prompts_file) have none")
        return self


def _label_map(value: str, info) -> str:
    """A catalogue dataset with a label map is named as `catalogue:<name>`; anything else is a file."""
    if value in zs_catalogue.names() and zs_catalogue.entry(value).label_map:
        return f"catalogue:{value}"
    return resolve_existing(value, info, "file")


class ClassificationConfig(TaskConfig):
    type: Literal["classification"]
    protocol: Literal["head", "linear_probe", "few_shot", "knn", "zero_shot"] = "head"
    dataset: ImageDatasetSpec
    # head only: line i holds the model output index of dataset class i (e.g. ImageNet-R's 200 of 1000)
    label_map: Optional[Annotated[str, AfterValidator(_label_map)]] = None  # or a catalogue name with a map (imagenet-a, imagenet-r)
    knn: KnnOpts = KnnOpts()
    linear_probe: LinearProbeOpts = LinearProbeOpts()
    few_shot: FewShotOpts = FewShotOpts()
    zero_shot: ZeroShotOpts = ZeroShotOpts()
    # fine -> coarse classes: lines "fine,coarse" (class ids or names) or JSON {fine: coarse}; adds coarse/top1
    hierarchy: Optional[ExistingFile] = None
    # evaluate at each test resolution (input_size); rows are named top1@<res>. timm ViTs need kwargs {dynamic_img_size: true}
    resolutions: Optional[list[Annotated[int, Field(gt=0)]]] = None

    @model_validator(mode="after")
    def _train_split_needed(self):
        if self.protocol in ("linear_probe", "knn", "few_shot"):
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
    description = "top-1/top-5 with protocols head | linear_probe | few_shot | knn | zero_shot; resolution sweeps; coarse labels"
    needs = frozenset({"image_logits", "image_features", "text_features"})
    headline = ("top1", "top1@*")
    cost = 2.0
    _pre = None  # a resolution sweep's preprocessing for the current size (None: the model's own)

    @classmethod
    def required_capabilities(cls, cfg: ClassificationConfig) -> frozenset[str]:
        return frozenset(CAPS[cfg.protocol])

    def _split(self, role: str) -> ImageSplit:
        return self.cfg.dataset.load(role).subset(self.ctx.limit, self.ctx.seed)

    def evaluate(self, adapter) -> TaskResult:
        cfg = self.cfg
        rows, frames, meta = [], [], {}
        for res in cfg.resolutions or [None]:
            # the broker prepares images at this size; the adapter itself is left as it is
            self._pre = replace(adapter.preprocess, input_size=res) if res else None
            test = self._split("test")
            try:
                if cfg.protocol == "few_shot":
                    r, pred, m = self._few_shot(adapter, test)
                else:
                    scores, m = self._scores(adapter, test)
                    r, pred, _ = self._rows(scores, test)
            except (RuntimeError, AssertionError) as e:  # e.g. timm asserting a fixed ViT input size
                if not res:
                    raise
                raise OutputError(
                    f"model '{adapter.args.name}' cannot run at {res}px: {str(e).splitlines()[0]} (timm ViTs need kwargs: {{dynamic_img_size: true}})"
                ) from None
            suffix = f"@{res}" if res else ""
            for row in r:
                row["metric"] += suffix
            rows += r
            frames.append(pred.assign(resolution=res) if res else pred)
            meta.update({f"{k}{suffix}": v for k, v in m.items()})
        return TaskResult(rows=rows, predictions=pd.concat(frames, ignore_index=True), meta=meta)

    def _images(self, capability: str, split: ImageSplit) -> np.ndarray:
        """Image outputs at the sweep's current resolution (the model's own preprocessing otherwise)."""
        if self._pre is None:
            return self.ctx.outputs(capability, split)
        return self.ctx.outputs(capability, split, preprocess=self._pre)

    def _scores(self, adapter, test: ImageSplit) -> tuple[np.ndarray, dict]:
        cfg = self.cfg
        meta: dict = {}
        if cfg.protocol == "head":
            scores = self._images("image_logits", test)
            if cfg.label_map:
                name = cfg.label_map.removeprefix("catalogue:")
                idx = np.asarray(zs_catalogue.entry(name).label_map if name != cfg.label_map else [int(x) for x in read_lines(cfg.label_map)])
                if len(idx) != len(test.classes) or idx.max() >= scores.shape[1]:
                    raise DataError(
                        f"{cfg.label_map}: label map has {len(idx)} entries (max {idx.max()}) for {len(test.classes)} classes and {scores.shape[1]} model outputs"
                    )
                scores = scores[:, idx]
            elif scores.shape[1] != len(test.classes):
                d = cfg.dataset
                source = getattr(d, "file", None) or getattr(d, "root", None) or d.format
                raise DataError(
                    f"model '{adapter.args.name}' has {scores.shape[1]} outputs but {source} has {len(test.classes)} classes "
                    f"(labels {test.classes[0]}..{test.classes[-1]}); set num_classes, a label_map, or the dataset's classes file"
                )
        elif cfg.protocol in ("linear_probe", "knn"):
            train, f_train, f_test = self._train_features(adapter, test)
            if cfg.protocol == "knn":
                scores = knn_scores(f_train, train.labels, f_test, len(test.classes), cfg.knn.k, cfg.knn.temperature, self.ctx.device)
                meta = {"k": cfg.knn.k, "temperature": cfg.knn.temperature}
            else:
                scores, c, held = linear_probe(
                    f_train, train.labels, f_test, cfg.linear_probe.held_out, cfg.linear_probe.max_iter, self.ctx.seed, device=self.ctx.device
                )
                meta = {"C": c, "held_out_top1": held}
        else:  # zero_shot
            z = cfg.zero_shot
            names = zero_shot_class_names(z, test)
            per_class = per_class_prompts(z, names)
            if per_class is None:
                templates = zero_shot_templates(z, test)
                per_class = [[zs_catalogue.fill(t, name) for t in templates] for name in names]
            else:
                templates = [p for ps in per_class for p in ps]
            prompts = [p for ps in per_class for p in ps]
            text = np.asarray(self.ctx.outputs("text_features", prompts))
            image = self._images("image_features", test)
            meta = {"templates": len(templates), "templates_sha256": hashlib.sha256("\n".join(templates).encode()).hexdigest()[:16], "weighting": z.weighting}
            if z.catalogue:
                meta["catalogue"] = z.catalogue
            if z.cupl or z.prompts_file:
                weights = class_weights(text, [len(ps) for ps in per_class])
            elif z.weighting == "zpe":
                ref = self._images("image_features", z.reference.load("test", with_labels=False))
                weights, w, s = zpe_weights(image, ref, text, len(test.classes), len(templates), temperature=z.temperature)
                meta |= {"prompt_weights": [round(float(x), 6) for x in w], "prompt_scores": [round(float(x), 6) for x in s]}
            else:
                weights = zero_shot_weights(text, len(test.classes), len(templates))
            scores = 100.0 * l2_normalize(image.astype(np.float64)) @ weights.T
        return scores, meta

    def _train_features(self, adapter, test: ImageSplit):
        train = self._split("train")
        if train.classes != test.classes:
            raise DataError(f"train split '{train.name}' and test split '{test.name}' have different classes")
        return train, self._images("image_features", train), self._images("image_features", test)

    def _rows(self, scores: np.ndarray, test: ImageSplit) -> tuple[list[dict], pd.DataFrame, dict]:
        top = topk_indices(scores, 5)
        correct = topk_correct(top, test.labels)
        if self.cfg.hierarchy:
            coarse = coarse_index(self.cfg.hierarchy, test)
            correct["coarse/top1"] = coarse[top[:, 0]] == coarse[test.labels]
        metrics = {m: float(np.mean(v)) for m, v in correct.items()}
        preds = pd.DataFrame(
            {
                "index": np.arange(len(test)),
                "path": test.paths,
                "label": test.labels,
                "topk": list(top.astype(np.int32)),
                "score": scores[np.arange(len(test)), top[:, 0]].astype(np.float64),
            }
        )
        if len(test):
            metrics["mean_per_class_recall"] = mean_per_class_recall(top[:, 0], test.labels)
        rows = [{"metric": m, "value": v, "dataset": dataset_name(self.cfg.dataset), "split": test.name, "n": len(test)} for m, v in metrics.items()]
        if self.ctx.uncertainty and len(test):
            fill(rows, proportions(correct, self.ctx.uncertainty, unit="image"))
            fill(rows, per_class_recall_interval(top[:, 0] == test.labels, test.labels, self.ctx.uncertainty))
        return rows, preds, correct

    def _few_shot(self, adapter, test: ImageSplit) -> tuple[list[dict], pd.DataFrame, dict]:
        """k shots per class, several seeded draws: mean with the standard deviation over draws as stderr."""
        from sklearn.linear_model import LogisticRegression

        fs = self.cfg.few_shot
        train, f_train, f_test = self._train_features(adapter, test)
        per_seed, frames, hits = [], [], []
        for s in range(fs.seeds):
            rng = np.random.default_rng(self.ctx.seed + s)
            idx = np.concatenate([rng.permutation(np.flatnonzero(train.labels == c))[: fs.shots] for c in range(len(train.classes))])
            clf = LogisticRegression(C=fs.C, max_iter=fs.max_iter)
            clf.fit(l2_normalize(f_train[idx].astype(np.float64)), train.labels[idx])
            scores = np.full((len(test), len(test.classes)), -np.inf)
            scores[:, clf.classes_] = clf.decision_function(l2_normalize(f_test.astype(np.float64))).reshape(len(test), -1)
            r, pred, correct = self._rows(scores, test)
            per_seed.append({row["metric"]: row["value"] for row in r})
            hits.append(correct)
            frames.append(pred.assign(draw=s))
        rows = []
        for m in per_seed[0]:
            vals = np.asarray([d[m] for d in per_seed])
            std = float(vals.std(ddof=1)) if len(vals) > 1 else None
            rows.append({"metric": m, "value": float(vals.mean()), "dataset": dataset_name(self.cfg.dataset), "split": test.name, "n": len(test)})
            rows[-1]["draws_std"] = std
        if self.ctx.uncertainty and len(test):
            # over test images of each image's hit rate across draws; the draws' own spread is in meta
            spec = self.ctx.uncertainty
            mean_hits = {m: np.mean([h[m] for h in hits], axis=0) for m in hits[0]}
            fill(rows, proportions(mean_hits, replace(spec, method="bootstrap"), unit="image"))
            fill(rows, per_class_recall_interval([h["top1"] for h in hits], test.labels, spec))
        meta = {
            "shots": fs.shots,
            "seeds": fs.seeds,
            "C": fs.C,
            "top1_per_draw": [d["top1"] for d in per_seed],
            "std_over_draws": {r["metric"]: r.pop("draws_std") for r in rows},
        }
        return rows, pd.concat(frames, ignore_index=True), meta


def zero_shot_templates(z: ZeroShotOpts, test: Optional[ImageSplit] = None) -> list[str]:
    """The task's templates, else the catalogue's, else the dataset's own, else CLIP's default."""
    templates = list(z.templates or [])
    if z.templates_file:
        templates += read_lines(z.templates_file)
    if not templates and z.catalogue:
        templates = list(zs_catalogue.entry(z.catalogue).templates)
    # then the dataset's own (a wds root's zeroshot_classification_templates.txt), then CLIP's default
    templates = templates or list(getattr(test, "templates", None) or []) or DEFAULT_TEMPLATES
    bad = [t for t in templates if "{}" not in t and "{c}" not in t]
    if bad:
        raise DataError(f"zero-shot template {bad[0]!r} has no '{{}}' or '{{c}}' for the class name")
    return templates

def zero_shot_class_names(z: ZeroShotOpts, test: ImageSplit) -> list[str]:
    """The catalogue's names where it has them (their count must match the dataset's), else the dataset's."""
    names = zs_catalogue.entry(z.catalogue).classnames if z.catalogue else None
    if names is None:
        return list(test.class_names)
    if len(names) != len(test.classes):
        raise DataError(f"catalogue '{z.catalogue}' has {len(names)} class names, the dataset {len(test.classes)} classes")
    return list(names)

def per_class_prompts(z: ZeroShotOpts, names: list[str]) -> Optional[list[list[str]]]:
    """CuPL-style prompts per class (a prompts_file, or the catalogue's), or None for templates."""
    if not (z.cupl or z.prompts_file):
        return None
    import json

    source = z.prompts_file or f"the catalogue's CuPL prompts for {z.catalogue}"
    if z.prompts_file:
        try:
            table = json.loads(read_text(z.prompts_file))
        except json.JSONDecodeError as e:
            raise DataError(f"{z.prompts_file}:{e.lineno}: not valid JSON ({e.msg})") from None
    else:
        table = zs_catalogue.cupl(z.catalogue)
    missing = [n for n in names if not table.get(n)]
    if missing:
        raise DataError(f"{source}: no prompts for class '{missing[0]}' ({len(missing)} classes without)")
    return [list(table[n]) for n in names]


def coarse_index(path: str, split: ImageSplit) -> np.ndarray:
    """For each fine class of the split, the index of its coarse class, from a 'fine,coarse' or JSON mapping."""
    import json

    if path.endswith(".json"):
        try:
            with open(path) as f:
                mapping = {str(k): str(v) for k, v in json.load(f).items()}
        except (OSError, ValueError, AttributeError) as e:
            raise DataError(f"{path}: cannot read the fine->coarse JSON mapping: {e}") from None
    else:
        mapping = {}
        for n, line in enumerate(read_lines(path), 1):
            parts = [p.strip() for p in line.replace("\t", ",").split(",")]
            if len(parts) != 2:
                raise DataError(f"{path}: line {n}: expected 'fine,coarse'")
            mapping[parts[0]] = parts[1]
    coarse, missing = [], []
    for cid, name in zip(split.classes, split.class_names):
        c = mapping.get(str(cid), mapping.get(str(name)))
        (coarse if c is not None else missing).append(c if c is not None else cid)
    if missing:
        raise DataError(f"{path}: no coarse class for {len(missing)} fine classes ({', '.join(map(str, missing[:3]))})")
    names = sorted(set(coarse))
    return np.asarray([names.index(c) for c in coarse])
