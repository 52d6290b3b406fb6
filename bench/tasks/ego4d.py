"""Ego4D: episodic-memory NLQ and MQ, and short-term object-interaction anticipation (STA).

Each task scores a submission-format file (`predictions`) or a model: NLQ from a head on clip
features (`nlq_from_features`) or zero-shot from frames (`nlq_from_frames`); MQ from a head on
clip features (`mq_from_features`). STA takes submission files. Metrics: bench.metrics.ego4d.
State-change object detection (SCOD) is COCO box AP: run a `detection` task on its COCO files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Union

import numpy as np
import pandas as pd
from pydantic import Field

from bench.data.coco import read_json
from bench.data.ego4d import (
    MQ_CHALLENGE,
    NLQ_CHALLENGE,
    VERSION,
    MqSpec,
    NlqSpec,
    StaSpec,
    SyntheticSpec,
    check_windows,
    clip_features,
    read_mq_submission,
    read_nlq_submission,
    read_sta_submission,
)
from bench.errors import DataError
from bench.metrics import ego4d as E
from bench.metrics import uncertainty as U
from bench.tasks.base import Task, TaskConfig, TaskResult, register_task


class NlqConfig(TaskConfig):
    type: Literal["ego4d_nlq"]
    dataset: Union[NlqSpec, SyntheticSpec] = Field(discriminator="format")
    export_test: bool = False  # also predict dataset.test_annotations, for `bench export ego4d`


class MqConfig(TaskConfig):
    type: Literal["ego4d_mq"]
    dataset: Union[MqSpec, SyntheticSpec] = Field(discriminator="format")
    export_test: bool = False  # also predict dataset.test_split


class StaConfig(TaskConfig):
    type: Literal["ego4d_sta"]
    dataset: StaSpec


def _frames(spec, clip_uid: str) -> list[str]:
    if not spec.frames:
        raise DataError("the model needs frames; set dataset.frames to the folder of <clip_uid>/<frame>.jpg")
    d = Path(spec.frames) / clip_uid
    paths = sorted(str(p) for p in d.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise DataError(f"{d}: no frames")
    return paths


def _submission(task: Task, adapter, reader, what: str, data, meta: dict) -> list:
    """A predictions model's submission file, checked by `reader`; its counts and warnings go to meta."""
    path = task.ctx.outputs("predictions", task_name=task.cfg.name)
    checked = reader(read_json(path, f"{what} submission"), path, data)
    meta["counts"] = checked.counts
    if checked.warnings:
        meta.setdefault("warnings", []).extend(checked.warnings)
    return checked.entries


@register_task
class NlqTask(Task):
    type = "ego4d_nlq"
    Config = NlqConfig
    description = "Ego4D NLQ: R1/R3/R5 @ IoU 0.3/0.5 and mIoU as evaluate_ego4d_nlq.py, plus coverage"
    needs = frozenset({"predictions", "nlq_from_features", "nlq_from_frames"})
    headline = ("nlq/R1@0.5",)
    cost = 3.0
    exporter = ("ego4d", "bench.export:export_ego4d")

    @classmethod
    def required_capabilities(cls, cfg):
        return (frozenset({"predictions"}), frozenset({"nlq_from_features"}), frozenset({"nlq_from_frames"}))

    def spec(self) -> NlqSpec:
        d = self.cfg.dataset
        return d.nlq() if isinstance(d, SyntheticSpec) else d

    def predict(self, adapter, spec: NlqSpec, test: bool) -> tuple[list[dict], dict]:
        data = spec.load(test=test)
        queries = data.queries
        if self.ctx.limit:
            queries = queries[: self.ctx.limit]
        out, outside = [], 0
        cache: dict = {}
        for q in queries:
            if "nlq_from_features" in adapter.capabilities:
                if q.clip_uid not in cache:
                    cache = {q.clip_uid: clip_features(spec.features, q.clip_uid, f"task '{self.cfg.name}'")}
                (wins,) = self.ctx.outputs("nlq_from_features", [(cache[q.clip_uid], spec.feature_fps, q.text, q.duration)])
            else:
                (wins,) = self.ctx.outputs("nlq_from_frames", [(_frames(spec, q.clip_uid), spec.frame_fps, q.text, q.duration)])
            outside += check_windows(wins, q.duration, f"{q.clip_uid}/{q.annotation_uid}/{q.query_idx}", f"model '{adapter.args.name}'")
            out.append({"clip_uid": q.clip_uid, "annotation_uid": q.annotation_uid, "query_idx": q.query_idx, "predicted_times": wins})
        return out, {"windows_outside_clip": outside}

    def evaluate(self, adapter) -> TaskResult:
        spec = self.spec()
        data = spec.load()
        meta: dict = {}
        if "predictions" in adapter.capabilities:
            entries = _submission(self, adapter, read_nlq_submission, "NLQ", data, meta)
        else:
            entries, meta["counts"] = self.predict(adapter, spec, test=False)
        total = min(data.total, self.ctx.limit) if self.ctx.limit and "predictions" not in adapter.capabilities else data.total
        gold = {(q.clip_uid, q.annotation_uid, q.query_idx): q.gold for q in data.queries}
        m = E.nlq_metrics(gold, entries, total)
        rows = [{"metric": f"nlq/{k}", "value": v, "dataset": Path(data.path).stem, "split": "val", "n": len(entries)} for k, v in m.items()]
        if self.ctx.uncertainty and entries:
            per = E.nlq_per_query(gold, entries)
            names, x = list(per), np.stack(list(per.values()), axis=1)
            iv = U.bootstrap(lambda w: dict(zip(names, U.weighted_mean(w, x).T)), len(entries), self.ctx.uncertainty, unit="query")
            if total:  # coverage: a proportion of all queries
                answered = np.zeros(total, bool)
                answered[: min(len(entries), total)] = True
                iv.update(U.proportions({"coverage": answered}, self.ctx.uncertainty, unit="query"))
            U.fill(rows, iv, match=lambda r: r["metric"][len("nlq/") :])
        frames = [self._frame(entries, "val")]
        if self.cfg.export_test and "predictions" not in adapter.capabilities:
            if not spec.test_annotations:
                raise DataError(f"task '{self.cfg.name}': export_test needs dataset.test_annotations")
            frames.append(self._frame(self.predict(adapter, spec, test=True)[0], "test"))
        return TaskResult(rows=rows, predictions=pd.concat(frames, ignore_index=True), meta=meta)

    @staticmethod
    def _frame(entries: list[dict], split: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "split": split,
                "clip_uid": [e["clip_uid"] for e in entries],
                "annotation_uid": [e["annotation_uid"] for e in entries],
                "query_idx": [e["query_idx"] for e in entries],
                "predicted_times": [json.dumps(e["predicted_times"]) for e in entries],
            }
        )


@register_task
class MqTask(Task):
    type = "ego4d_mq"
    Config = MqConfig
    description = "Ego4D Moment Queries: mAP@0.1..0.5 and mAP (ActivityNet), R{1..5}x@{0.3,0.5,0.7} (official retrieval)"
    needs = frozenset({"predictions", "mq_from_features"})
    headline = ("mq/mAP",)
    cost = 3.0
    exporter = ("ego4d", "bench.export:export_ego4d")

    @classmethod
    def required_capabilities(cls, cfg):
        return (frozenset({"predictions"}), frozenset({"mq_from_features"}))

    def spec(self) -> MqSpec:
        d = self.cfg.dataset
        return d.mq() if isinstance(d, SyntheticSpec) else d

    def predict(self, adapter, spec: MqSpec, data) -> list[dict]:
        out = []
        clips = list(data.clips)[: self.ctx.limit] if self.ctx.limit else list(data.clips)
        for uid in clips:
            feats = clip_features(spec.features, uid, f"task '{self.cfg.name}'")
            dur = data.clips[uid] if data.clips[uid] != float("inf") else feats.shape[0] / spec.feature_fps
            (moments,) = self.ctx.outputs("mq_from_features", [(feats, spec.feature_fps, dur, data.vocabulary)])
            out += [{"clip": uid, **m} for m in moments]
        return out

    def evaluate(self, adapter) -> TaskResult:
        spec = self.spec()
        data = spec.load()
        meta: dict = {}
        if "predictions" in adapter.capabilities:
            preds = _submission(self, adapter, read_mq_submission, "MQ", data, meta)
        else:
            preds = self.predict(adapter, spec, data)
        det, per_class = E.mq_detection(data.moments, preds)
        ret = E.mq_retrieval(data.moments, preds)
        meta["ap_per_class"] = per_class
        name = Path(data.path).stem
        rows = [{"metric": f"mq/{k}", "value": v, "dataset": name, "split": spec.split, "n": len(data.moments)} for k, v in {**det, **ret}.items()]
        clips = list(dict.fromkeys(g["clip"] for g in data.moments))
        if self.ctx.uncertainty and clips:
            # over clips: AP's greedy matching is per clip, so a drawn clip is a renamed copy
            iv = U.bootstrap_loop(
                lambda w: E.mq_metrics(*E.mq_clip_resample(data.moments, preds, clips, w)), len(clips), self.ctx.uncertainty, unit="clip"
            )
            U.fill(rows, iv, match=lambda r: r["metric"][len("mq/") :])
        frames = [self._frame(preds, spec.split)]
        if self.cfg.export_test and "predictions" not in adapter.capabilities:
            if not spec.test_split:
                raise DataError(f"task '{self.cfg.name}': export_test needs dataset.test_split")
            test = spec.load(test=True)
            frames.append(self._frame(self.predict(adapter, spec, test), spec.test_split))
        return TaskResult(rows=rows, predictions=pd.concat(frames, ignore_index=True), meta=meta)

    @staticmethod
    def _frame(preds: list[dict], split: str) -> pd.DataFrame:
        return pd.DataFrame({"split": split, **{k: [p[k] for p in preds] for k in ("clip", "label", "start", "end", "score")}})


@register_task
class StaTask(Task):
    type = "ego4d_sta"
    Config = StaConfig
    description = "Ego4D short-term anticipation: top-5 mAP for Box+Noun, +Verb, +TTC, +Verb+TTC (sta_metrics)"
    needs = frozenset({"predictions"})
    headline = ("sta/mAP_box_noun_verb_ttc",)
    cost = 1.0

    @classmethod
    def required_capabilities(cls, cfg):
        return frozenset({"predictions"})

    def evaluate(self, adapter) -> TaskResult:
        anns = self.cfg.dataset.load()
        path = self.ctx.outputs("predictions", task_name=self.cfg.name)
        frames = read_sta_submission(read_json(path, "STA submission"), path, anns)
        m = E.sta_map(frames)
        rows = [{"metric": f"sta/{k}", "value": v, "dataset": Path(self.cfg.dataset.annotations).stem, "split": "val", "n": len(anns)} for k, v in m.items()]
        return TaskResult(rows=rows, predictions=pd.DataFrame(), meta={})


SUBMISSION_HEADERS = {"ego4d_nlq": {"version": VERSION, "challenge": NLQ_CHALLENGE}, "ego4d_mq": {"version": VERSION, "challenge": MQ_CHALLENGE}}
