"""Video classification (`type: video_classification`): top-1/top-5 and mean class accuracy with multi-view testing.

A video is `views.clips` temporal views × `views.crops` spatial views (bench.data.video: mmaction2's
test-mode SampleFrames / UniformSample, CenterCrop / ThreeCrop); the model's per-view outputs come
through the broker (`video_logits`, or `video_features` scored against class-name prompts for
zero-shot) and are averaged over views — their softmax (mmaction2's average_clips='prob') or
their logits ('score'). The views are part of the task, hence of its task_hash.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bench.data.formats import VideoCaptionDatasetSpec, VideoDatasetSpec
from bench.data.video import VideoSplit, Views, probe
from bench.errors import DataError
from bench.metrics.classification import mean_per_class_recall, per_class_recall_interval, topk_correct, topk_indices
from bench.metrics.uncertainty import fill, proportions
from bench.tasks.base import Task, TaskConfig, TaskResult, register_task


class ViewsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clips: int = Field(1, gt=0)  # temporal views
    crops: Literal[1, 3] = 1  # spatial views: centre, or three along the long side


class SamplingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["dense", "uniform"] = "dense"
    num_frames: int = Field(16, gt=0)
    stride: int = Field(4, gt=0)  # dense: frames between sampled frames (mmaction2's frame_interval)


def _decoder_installed(v: str) -> str:
    import importlib.util

    if v == "decord" and importlib.util.find_spec("decord") is None:
        raise ValueError("decoder 'decord' is not installed (pip install decord), or use the default pyav")
    return v


Decoder = Annotated[Literal["pyav", "decord"], AfterValidator(_decoder_installed)]


class ZeroShotVideoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    templates: list[str] = Field(["a video of a person {}.", "a video of {}."], min_length=1)


class VideoConfig(TaskConfig):
    type: Literal["video_classification"]
    dataset: VideoDatasetSpec
    protocol: Literal["model", "zero_shot"] = "model"  # model: video_logits; zero_shot: video_features vs class-name prompts
    views: ViewsConfig = ViewsConfig()
    sampling: SamplingConfig = SamplingConfig()
    average: Literal["softmax", "logits"] = "softmax"  # over views: mmaction2's 'prob' or 'score'
    size: Optional[int] = Field(None, gt=0)  # crop size (default: the model's preprocess input_size)
    short_side: Optional[int] = Field(None, gt=0)  # resize before cropping (default: input_size / crop_pct)
    skip_unreadable: bool = False  # count and skip corrupt or missing videos instead of failing
    decoder: Decoder = "pyav"  # or decord, where installed
    zero_shot: ZeroShotVideoConfig = ZeroShotVideoConfig()


def views_for(cfg, adapter) -> Views:
    """The task's views at the model's size: crop `size` (default its input_size) of a `short_side` resize."""
    pre = adapter.preprocess
    size = cfg.size or pre.input_size
    short = cfg.short_side or max(size, math.floor(size / pre.crop_pct))
    return Views(cfg.sampling.mode, cfg.sampling.num_frames, cfg.sampling.stride, cfg.views.clips, cfg.views.crops, size, short, cfg.decoder)


def fail_fast(split: VideoSplit, decoder: str = "pyav") -> None:
    """Open every video once (its frame count, nothing decoded): a missing or dead one fails the job before
    any model runs, with one line naming it. With skip_unreadable the broker's decode errors are counted instead."""
    for p in split.paths:
        probe(p, decoder)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@register_task
class VideoClassificationTask(Task):
    type = "video_classification"
    Config = VideoConfig
    description = "video classification top1/top5/mean class accuracy with clips x crops views (mmaction2 test sampling), or zero-shot from frame embeddings"
    needs = frozenset({"video_logits", "video_features", "text_features"})
    headline = ("top1",)
    cost = 3.0

    @classmethod
    def required_capabilities(cls, cfg: VideoConfig) -> frozenset:
        return frozenset({"video_features", "text_features"}) if cfg.protocol == "zero_shot" else frozenset({"video_logits"})

    def evaluate(self, adapter) -> TaskResult:
        cfg = self.cfg
        split = cfg.dataset.load().subset(self.ctx.limit, self.ctx.seed)
        if not cfg.skip_unreadable:
            fail_fast(split, cfg.decoder)
        skipped: list[str] = []
        views = views_for(cfg, adapter)
        if cfg.protocol == "zero_shot":
            feats, errors, short = self.ctx.outputs("video_features", (split, views))
            names = [c.replace("_", " ") for c in split.classes]
            prompts = [t.replace("{}", n) for n in names for t in cfg.zero_shot.templates]
            from bench.probes import l2_normalize, zero_shot_weights

            text = zero_shot_weights(np.asarray(self.ctx.outputs("text_features", prompts)), len(names), len(cfg.zero_shot.templates))
            per_view = 100.0 * l2_normalize(feats.astype(np.float64)) @ text.T
        else:
            per_view, errors, short = self.ctx.outputs("video_logits", (split, views))
        if errors:  # missing, empty or corrupt videos the broker could not decode
            if not cfg.skip_unreadable:
                i = min(errors)
                raise DataError(errors[i])
            skipped += [errors[i] for i in sorted(errors)]
            keep = [i for i in range(len(split)) if i not in errors]
            split, per_view, short = split.keep(keep), per_view[keep], short[keep]
        if not len(split):
            raise DataError(f"task '{cfg.name}': no readable videos ({len(skipped)} skipped)")
        scores = (_softmax(per_view.astype(np.float64)) if cfg.average == "softmax" else per_view.astype(np.float64)).mean(1)
        top = topk_indices(scores, 5)
        correct = topk_correct(top, split.labels)
        metrics = {k: float(v.mean()) for k, v in correct.items()}
        metrics["mean_class_acc"] = mean_per_class_recall(top[:, 0], split.labels)
        rows = [{"metric": m, "value": v, "dataset": split.dataset, "split": split.name, "n": len(split)} for m, v in metrics.items()]
        if self.ctx.uncertainty:
            fill(rows, proportions(correct, self.ctx.uncertainty, unit="video"))
            iv = per_class_recall_interval(top[:, 0] == split.labels, split.labels, self.ctx.uncertainty)
            fill(rows, {"mean_class_acc": iv["mean_per_class_recall"]})
        warnings = []
        if skipped:
            warnings.append(f"{len(skipped)} unreadable videos skipped (skip_unreadable); first: {skipped[0]}")
        if short.any():
            first = split.paths[int(np.flatnonzero(short)[0])]
            warnings.append(f"{int(short.sum())} videos are shorter than one view ({'looped' if views.mode == 'dense' else 'frames repeated'}, as mmaction2 does); first: {first}")
        meta = {"views": {"clips": views.clips, "crops": views.crops, "total": views.count}, "sampling": cfg.sampling.model_dump(), "size": views.size, "short_side": views.short_side, "decoder": views.decoder, "average": cfg.average, "skipped": len(skipped), "short_videos": int(short.sum())}
        if warnings:
            meta["warnings"] = warnings
        preds = pd.DataFrame({"path": split.paths, "label": split.labels, "top5": list(top.astype(np.int32)), "score": scores[np.arange(len(split)), top[:, 0]]})
        return TaskResult(rows=rows, predictions=preds, meta=meta)


class VideoRetrievalConfig(TaskConfig):
    type: Literal["video_retrieval"]
    dataset: VideoCaptionDatasetSpec
    views: ViewsConfig = ViewsConfig()
    sampling: SamplingConfig = SamplingConfig(mode="uniform", num_frames=12)  # CLIP4Clip's 12 frames
    size: Optional[int] = Field(None, gt=0)
    short_side: Optional[int] = Field(None, gt=0)
    decoder: Decoder = "pyav"
    memory_mb: int = Field(256, gt=0)  # scores held at once per block of queries


def median_rank_rows(v2t: np.ndarray, t2v: np.ndarray, text_video: np.ndarray, spec, dataset: str, split: str) -> list[dict]:
    """MdR both ways: the median of 1-based ranks (np.median, as CLIP4Clip's metrics), with a video bootstrap
    (a video is drawn with all its captions)."""
    from bench.metrics.uncertainty import bootstrap_loop

    rows = [
        {"metric": "v2t/MdR", "value": float(np.median(v2t + 1)), "dataset": dataset, "split": split, "n": len(v2t)},
        {"metric": "t2v/MdR", "value": float(np.median(t2v + 1)), "dataset": dataset, "split": split, "n": len(t2v)},
    ]
    if spec is not None and len(v2t) > 1:

        def stat(w: np.ndarray) -> dict[str, float]:
            k = np.rint(w).astype(np.int64)
            return {"v2t/MdR": float(np.median(np.repeat(v2t + 1, k))), "t2v/MdR": float(np.median(np.repeat(t2v + 1, k[text_video])))}

        fill(rows, bootstrap_loop(stat, len(v2t), spec, "video"))
    return rows


@register_task
class VideoRetrievalTask(Task):
    type = "video_retrieval"
    Config = VideoRetrievalConfig
    description = "zero-shot video-text retrieval: t2v and v2t R@1/5/10, median rank, mean recall (MSR-VTT 1k-A, DiDeMo, ActivityNet paragraphs)"
    needs = frozenset({"video_features", "text_features"})
    headline = ("mean_recall",)
    lower_is_better = ("*/MdR",)
    unscaled = ("*/MdR",)  # a rank, printed as it is
    cost = 3.0

    @classmethod
    def required_capabilities(cls, cfg: VideoRetrievalConfig) -> frozenset:
        return frozenset({"video_features", "text_features"})

    def evaluate(self, adapter) -> TaskResult:
        from bench.metrics.retrieval import KS, retrieval_rows
        from bench.tasks.retrieval import ranks_on_device

        cfg = self.cfg
        data = cfg.dataset.load().subset(self.ctx.limit, self.ctx.seed)
        fail_fast(data.videos, cfg.decoder)  # retrieval sets are fixed: no video may be skipped
        views = views_for(cfg, adapter)
        feats, errors, _ = self.ctx.outputs("video_features", (data.videos, views))
        if errors:
            raise DataError(errors[min(errors)])
        from bench.probes import l2_normalize

        video = l2_normalize(feats.astype(np.float64)).mean(1)  # views averaged
        text = np.asarray(self.ctx.outputs("text_features", data.captions))
        v2t, t2v, _, _ = ranks_on_device(video, text, data.text_video, self.ctx.device, cfg.memory_mb)
        rows = retrieval_rows(v2t, t2v, data.text_video, self.ctx.uncertainty, data.videos.dataset, data.videos.name, KS)
        for r in rows:
            r["metric"] = r["metric"].replace("i2t/", "v2t/").replace("t2i/", "t2v/")
            if r.get("ci_method"):
                r["ci_method"] = r["ci_method"].replace("unit=image", "unit=video")
        rows += median_rank_rows(v2t, t2v, data.text_video, self.ctx.uncertainty, data.videos.dataset, data.videos.name)
        preds = pd.DataFrame({"caption": data.captions, "video": data.text_video, "rank": t2v})
        meta = {"videos": len(v2t), "captions": len(t2v), "views": {"clips": views.clips, "crops": views.crops}, "sampling": cfg.sampling.model_dump()}
        return TaskResult(rows=rows, predictions=preds, meta=meta)
