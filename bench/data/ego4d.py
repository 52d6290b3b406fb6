"""Ego4D ground truth and submission files: NLQ, MQ and STA, in the official layouts.

- NLQ: `nlq_{val,test}.json`: videos → clips → annotations → language_queries (times relative to
  the clip). Submissions: {"version": "1.0", "challenge": "ego4d_nlq_challenge", "results":
  [{clip_uid, annotation_uid, query_idx, predicted_times: [[s, e], …]}]}.
- MQ: per-clip annotations {clip_uid: {subset, duration?, annotations: [{label, start_time,
  end_time}]}} (the layout the MQ evaluation reads). Submissions: ActivityNet's detection layout
  {"version": "1.0", "results": {clip_uid: [{label, segment: [s, e], score}]}, "external_data": {}}.
- STA: `fho_sta_{val,test}.json` {"annotations": [{uid, objects: [{box, noun_category_id,
  verb_category_id, time_to_contact}]}]}. Submissions: {"version": "1.0", "challenge":
  "ego4d_short_term_object_interaction_anticipation", "results": {uid: [{box, noun_category_id,
  verb_category_id, time_to_contact, score}]}}.

Per-clip features (the feature-based path) are `<features>/<clip_uid>.pt` tensors [T, D], as Ego4D
distributes SlowFast/Omnivore/EgoVLP features; frames (the zero-shot path) are
`<frames>/<clip_uid>/*.jpg|png` sampled at `frame_fps`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.data.coco import read_json
from bench.errors import DataError
from bench.paths import ExistingFile, SuitePath

NLQ_CHALLENGE = "ego4d_nlq_challenge"
MQ_CHALLENGE = "ego4d_moment_queries"
STA_CHALLENGE = "ego4d_short_term_object_interaction_anticipation"
VERSION = "1.0"


@dataclass
class Query:
    clip_uid: str
    annotation_uid: str
    query_idx: int
    text: str
    duration: float  # clip length in seconds
    gold: Optional[tuple[float, float]]  # None on test


@dataclass
class NlqData:
    path: str
    queries: list[Query]
    clips: dict[str, float] = field(default_factory=dict)  # clip_uid -> duration

    @property
    def total(self) -> int:
        return len(self.queries)


@dataclass
class MqData:
    path: str
    moments: list[dict]  # clip, label, start, end
    clips: dict[str, float]  # clip_uid -> duration (inf when unknown)
    classes: list[str]  # the ground truth's labels, first-appearance order (what mAP averages over)
    vocabulary: list[str]  # what a model scores: the taxonomy file's classes, else `classes`


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: Optional[SuitePath] = None  # <dir>/<clip_uid>.pt, [T, D]
    feature_fps: float = Field(30 / 16, gt=0)  # features per second (Ego4D SlowFast: 30 fps, stride 16)
    frames: Optional[SuitePath] = None  # <dir>/<clip_uid>/*.jpg
    frame_fps: float = Field(1.0, gt=0)


class NlqSpec(_Spec):
    format: Literal["ego4d_nlq"]
    annotations: ExistingFile
    test_annotations: Optional[ExistingFile] = None  # nlq_test_unannotated.json, for export

    def load(self, test: bool = False) -> NlqData:
        return load_nlq(self.test_annotations if test else self.annotations, labelled=not test)


class MqSpec(_Spec):
    format: Literal["ego4d_mq"]
    annotations: ExistingFile
    split: str = "val"  # the `subset` to evaluate
    test_split: Optional[str] = None  # a subset to predict for export (e.g. test)
    classes: Optional[ExistingFile] = None  # the taxonomy: one name per line, or JSON {name: index} (ego4d_classes_idx.json)

    def load(self, test: bool = False) -> MqData:
        data = load_mq(self.annotations, self.test_split if test else self.split)
        if self.classes:
            data.vocabulary = read_classes(self.classes)
            unknown = set(data.classes) - set(data.vocabulary)
            if unknown:
                raise DataError(f"{self.annotations}: labels not in {self.classes}: {', '.join(sorted(unknown)[:3])}")
        return data


def read_classes(path: str) -> list[str]:
    if path.endswith(".json"):
        d = read_json(path, "class index JSON")
        return [k for k, _ in sorted(d.items(), key=lambda kv: kv[1])] if isinstance(d, dict) else list(d)
    from bench.data.images import read_lines

    return read_lines(path)


def load_nlq(path: str, labelled: bool = True) -> NlqData:
    data = read_json(path, "NLQ JSON")
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise DataError(f"{path}: not an Ego4D NLQ file (no 'videos' list)")
    queries, clips = [], {}
    for v in data["videos"]:
        for c in v.get("clips", []):
            uid = c["clip_uid"]
            dur = float(c.get("clip_end_sec", math.inf)) - float(c.get("clip_start_sec", 0.0))
            clips[uid] = dur
            for a in c.get("annotations", []):
                for qi, q in enumerate(a.get("language_queries", [])):
                    gold = None
                    if labelled:
                        if "clip_start_sec" not in q or "clip_end_sec" not in q:
                            raise DataError(f"{path}: clip {uid} annotation {a['annotation_uid']} query {qi} has no clip_start_sec/clip_end_sec")
                        gold = (float(q["clip_start_sec"]), float(q["clip_end_sec"]))
                    queries.append(Query(uid, a["annotation_uid"], qi, q.get("query") or "", dur, gold))
    if not queries:
        raise DataError(f"{path}: no language queries")
    return NlqData(path, queries, clips)


def load_mq(path: str, subset: str) -> MqData:
    data = read_json(path, "MQ JSON")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected {{clip_uid: {{subset, annotations}}}}")
    moments, clips = [], {}
    for uid, v in data.items():
        if v.get("subset") != subset:
            continue
        clips[uid] = float(v.get("duration", math.inf))
        for a in v.get("annotations", []):
            moments.append({"clip": uid, "label": a["label"], "start": float(a["start_time"]), "end": float(a["end_time"])})
    if not clips:
        raise DataError(f"{path}: no clips with subset '{subset}'")
    classes = list(dict.fromkeys(m["label"] for m in moments))
    return MqData(path, moments, clips, classes, classes)


# ---------------------------------------------------------------- submissions
def _check_header(sub, path: str, challenge: Optional[str], need_challenge: bool = True) -> None:
    if not isinstance(sub, dict) or "results" not in sub:
        raise DataError(f"{path}: not an Ego4D submission (no 'results')")
    if sub.get("version") != VERSION:
        raise DataError(f"{path}: version is {sub.get('version')!r}; the evaluator expects {VERSION!r}")
    if challenge and (need_challenge or "challenge" in sub) and sub.get("challenge") != challenge:
        raise DataError(f"{path}: challenge is {sub.get('challenge')!r}; expected {challenge!r}")


@dataclass
class Checked:
    entries: list
    warnings: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)


def check_windows(windows, duration: float, where: str, path: str) -> int:
    """Raise on malformed windows; return how many fall outside [0, duration] (kept, as the official scorer keeps them)."""
    if not isinstance(windows, list) or not windows:
        raise DataError(f"{path}: {where}: predicted_times must be a non-empty list of [start, end]")
    outside = 0
    for w in windows:
        if not (isinstance(w, (list, tuple)) and len(w) == 2 and all(isinstance(x, (int, float)) and math.isfinite(x) for x in w)):
            raise DataError(f"{path}: {where}: window {w!r} is not [start, end] in seconds")
        if w[0] > w[1]:
            raise DataError(f"{path}: {where}: window {list(w)} starts after it ends")
        outside += int(w[0] < 0 or w[1] > duration + 1e-6)
    return outside


def read_nlq_submission(sub, path: str, data: NlqData, k: int = 5) -> Checked:
    _check_header(sub, path, NLQ_CHALLENGE)
    index = {(q.clip_uid, q.annotation_uid, q.query_idx): q for q in data.queries}
    annotations = {(q.clip_uid, q.annotation_uid) for q in data.queries}
    seen, entries, outside, short = set(), [], 0, 0
    for i, r in enumerate(sub["results"]):
        try:
            key = (r["clip_uid"], r["annotation_uid"], int(r["query_idx"]))
            windows = r["predicted_times"]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: results[{i}] needs clip_uid, annotation_uid, query_idx and predicted_times") from None
        if key[0] not in data.clips:
            raise DataError(f"{path}: results[{i}]: unknown clip_uid {key[0]!r}")
        if key[:2] not in annotations:
            raise DataError(f"{path}: results[{i}]: unknown annotation_uid {key[1]!r} for clip {key[0]}")
        if key not in index:
            raise DataError(f"{path}: results[{i}]: query_idx {key[2]} does not exist in annotation {key[1]}")
        if key in seen:
            raise DataError(f"{path}: results[{i}]: duplicate entry for {key}")
        seen.add(key)
        outside += check_windows(windows, index[key].duration, f"results[{i}]", path)
        short += int(len(windows) < k)
        entries.append({"clip_uid": key[0], "annotation_uid": key[1], "query_idx": key[2], "predicted_times": [list(map(float, w)) for w in windows]})
    out = Checked(entries, counts={"missing": data.total - len(entries), "windows_outside_clip": outside, f"fewer_than_{k}": short})
    if out.counts["missing"]:
        out.warnings.append(
            f"{out.counts['missing']} of {data.total} queries have no prediction; the official R@k averages over the {len(entries)} predicted (nlq/coverage)"
        )
    if outside:
        out.warnings.append(f"{outside} windows fall outside their clip; scored as given, as the official script does")
    if short:
        out.warnings.append(f"{short} queries have fewer than {k} windows; R@k uses those given")
    return out


def read_mq_submission(sub, path: str, data: MqData) -> Checked:
    _check_header(sub, path, MQ_CHALLENGE, need_challenge=False)
    if not isinstance(sub["results"], dict):
        raise DataError(f"{path}: 'results' must map clip_uid to a list of {{label, segment, score}}")
    entries, outside, unknown_label = [], 0, Counter()
    for clip, preds in sub["results"].items():
        if clip not in data.clips:
            raise DataError(f"{path}: unknown clip_uid {clip!r}")
        for j, p in enumerate(preds):
            try:
                s, e = (float(x) for x in p["segment"])
                score, label = float(p["score"]), p["label"]
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: {clip}[{j}] needs label, segment [start, end] and score") from None
            if not (math.isfinite(s) and math.isfinite(e) and math.isfinite(score)):
                raise DataError(f"{path}: {clip}[{j}]: non-finite segment or score")
            if s > e:
                raise DataError(f"{path}: {clip}[{j}]: segment [{s}, {e}] starts after it ends")
            outside += int(s < 0 or e > data.clips[clip] + 1e-6)
            if label not in data.classes:
                unknown_label[label] += 1
            entries.append({"clip": clip, "label": label, "start": s, "end": e, "score": score})
    missing = len(set(data.clips) - set(sub["results"]))
    out = Checked(
        entries, counts={"clips_without_predictions": missing, "segments_outside_clip": outside, "predictions_of_unknown_classes": sum(unknown_label.values())}
    )
    if missing:
        out.warnings.append(f"{missing} of {len(data.clips)} clips have no predictions (their moments count as missed)")
    if unknown_label:
        out.warnings.append(
            f"{sum(unknown_label.values())} predictions have labels absent from the ground truth (dropped, as the official evaluator does): {', '.join(list(unknown_label)[:3])}"
        )
    if outside:
        out.warnings.append(f"{outside} segments fall outside their clip; scored as given")
    return out


class StaSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["ego4d_sta"]
    annotations: ExistingFile
    test_annotations: Optional[ExistingFile] = None

    def load(self) -> list[dict]:
        data = read_json(self.annotations, "STA JSON")
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            raise DataError(f"{self.annotations}: not an Ego4D STA file (no 'annotations' list)")
        return data["annotations"]


def read_sta_submission(sub, path: str, annotations: list[dict]) -> list[tuple[dict, dict]]:
    """(pred, gt) arrays per annotated frame; a missing uid is an error, as in the official evaluator."""
    _check_header(sub, path, STA_CHALLENGE)
    res = sub["results"]
    uids = [a["uid"] for a in annotations]
    unknown = set(res) - set(uids)
    if unknown:
        raise DataError(f"{path}: unknown uids: {', '.join(sorted(map(str, unknown))[:3])}")
    missing = [u for u in uids if u not in res]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} annotated uids have no entry (the evaluator requires every uid; give [] for none): {', '.join(map(str, missing[:3]))}"
        )
    frames = []
    for a in annotations:
        objs = a["objects"]
        gt = {
            "boxes": np.asarray([o["box"] for o in objs], dtype=np.float64),
            "nouns": np.asarray([o["noun_category_id"] for o in objs]),
            "verbs": np.asarray([o["verb_category_id"] for o in objs]),
            "ttcs": np.asarray([o["time_to_contact"] for o in objs], dtype=np.float64),
        }
        preds = res[a["uid"]]
        for j, p in enumerate(preds):
            for key in ("box", "noun_category_id", "verb_category_id", "time_to_contact", "score"):
                if key not in p:
                    raise DataError(f"{path}: {a['uid']}[{j}]: missing '{key}'")
            if not (isinstance(p["box"], list) and len(p["box"]) == 4):
                raise DataError(f"{path}: {a['uid']}[{j}]: box must be [x1, y1, x2, y2]")
            if not all(math.isfinite(float(x)) for x in [*p["box"], p["time_to_contact"], p["score"]]):
                raise DataError(f"{path}: {a['uid']}[{j}]: non-finite box, time_to_contact or score")
        pred = {}
        if preds:
            pred = {
                "boxes": np.asarray([p["box"] for p in preds], dtype=np.float64),
                "nouns": np.asarray([p["noun_category_id"] for p in preds]),
                "verbs": np.asarray([p["verb_category_id"] for p in preds]),
                "ttcs": np.asarray([p["time_to_contact"] for p in preds], dtype=np.float64),
                "scores": np.asarray([p["score"] for p in preds], dtype=np.float64),
            }
        frames.append((pred, gt))
    return frames


def clip_features(features_dir: Optional[str], clip_uid: str, where: str):
    """The [T, D] feature tensor of a clip, loaded safely (weights_only)."""
    import torch

    if not features_dir:
        raise DataError(f"{where}: the model needs per-clip features; set dataset.features to the folder of <clip_uid>.pt files")
    p = Path(features_dir) / f"{clip_uid}.pt"
    try:
        t = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{p}: feature file not found") from None
    except Exception as e:
        raise DataError(f"{p}: unreadable feature file: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        raise DataError(f"{p}: expected a [T, D] tensor, got {getattr(t, 'shape', type(t).__name__)}")
    return t.float()


class SyntheticSpec(BaseModel):
    """Generated clips with features and frames in the official layouts (offline smoke and tests)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["ego4d_synthetic"]
    clips: int = Field(8, gt=0)
    duration: int = Field(60, ge=8)  # seconds
    dim: int = Field(32, gt=0)
    fps: float = Field(1.0, gt=0)  # feature rate
    seed: int = 0
    root: Optional[SuitePath] = None  # default: $BENCH_CACHE/datasets/ego4d-synthetic-…

    def materialize(self) -> Path:
        from bench.data.ego4d_synthetic import write_synthetic
        from bench.paths import cache_dir

        root = Path(self.root) if self.root else cache_dir() / "datasets" / f"ego4d-synthetic-{self.clips}-{self.duration}-{self.dim}-{self.fps}-{self.seed}"
        if not (root / ".complete").exists():
            write_synthetic(root, self.clips, self.duration, self.dim, self.fps, self.seed)
        return root

    def common(self, root: Path) -> dict:
        return {"features": str(root / "features"), "feature_fps": self.fps, "frames": str(root / "frames"), "frame_fps": 1.0}

    def nlq(self) -> NlqSpec:
        r = self.materialize()
        return NlqSpec.model_construct(
            format="ego4d_nlq", annotations=str(r / "nlq_val.json"), test_annotations=str(r / "nlq_test_unannotated.json"), **self.common(r)
        )

    def mq(self) -> MqSpec:
        r = self.materialize()
        return MqSpec.model_construct(
            format="ego4d_mq", annotations=str(r / "moments.json"), split="val", test_split="test", classes=str(r / "classes.txt"), **self.common(r)
        )
