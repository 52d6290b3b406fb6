"""Open-vocabulary detection by classifying regions with open_clip (ViLD-image / F-VLM style).

Boxes come from a proposals file (COCO results layout: image_id, bbox [x, y, w, h], score) or
from a detector entry. Each box is cropped at every `crop_scales` factor (ViLD: 1× and 1.5×
around the box centre), the normalised crop embeddings are summed and renormalised, and the
region is classified against the vocabulary's text embeddings (class names × templates, CLIP's
mean of normalised template embeddings) with a softmax at the model's logit scale.

F-VLM fusion: with `fusion: {base: α, novel: β}` the score of class c is
``s_det^(1-γ) · s_vlm^γ`` with γ = α for base and β for novel classes, a geometric mean of the
class-agnostic detector score and the VLM score.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Literal, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.base import Adapter, AdapterArgs, register_adapter
from adapters.detectors import DetectorAdapter, DetectorArgs
from adapters.open_clip import OpenClipAdapter, OpenClipArgs
from adapters.timm import SHA256
from bench.errors import DataError
from bench.paths import ExistingFile


class Fusion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: float = Field(0.35, ge=0, le=1)  # F-VLM's α
    novel: float = Field(0.65, ge=0, le=1)  # F-VLM's β


class DetectorEntry(DetectorArgs):
    name: str = "detector"


class RegionClipArgs(AdapterArgs):
    adapter: Literal["region_clip"] = "region_clip"
    arch: str
    pretrained: Optional[str] = None
    checkpoint: Optional[ExistingFile] = None
    sha256: Optional[str] = SHA256
    image_size: Optional[int] = Field(None, gt=0)
    proposals: Optional[ExistingFile] = None  # COCO results JSON; category_id, if any, is ignored
    detector: Optional[DetectorEntry] = None  # or boxes from a detector (class-agnostic)
    templates: list[str] = Field(["a photo of a {}."], min_length=1)
    templates_file: Optional[ExistingFile] = None  # one template per line, with {}
    crop_scales: list[float] = Field([1.0, 1.5], min_length=1)
    fusion: Optional[Fusion] = None
    max_proposals: int = Field(300, gt=0)  # per image, highest scores first
    detections_per_img: int = Field(100, gt=0)

    @model_validator(mode="after")
    def _one_box_source(self):
        if (self.proposals is None) == (self.detector is None):
            raise ValueError("give exactly one of proposals: FILE or detector: {...}")
        return self


def load_proposals(path: str, limit: int) -> dict:
    from bench.data.coco import read_json

    data = read_json(path, "proposals JSON")
    if not isinstance(data, list):
        raise DataError(f"{path}: proposals must be a JSON list of {{image_id, bbox, score}}")
    per = defaultdict(list)
    for i, d in enumerate(data):
        try:
            x, y, w, h = (float(v) for v in d["bbox"])
            s = float(d.get("score", 1.0))
            img = d["image_id"]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: entry {i} needs image_id and bbox [x, y, w, h]") from None
        if not all(map(math.isfinite, (x, y, w, h, s))) or w < 0 or h < 0:
            raise DataError(f"{path}: entry {i} has a non-finite score or box, or a negative size")
        per[img].append((s, x, y, x + w, y + h))
    out = {}
    for img, rows in per.items():
        rows.sort(key=lambda r: -r[0])
        a = np.asarray(rows[:limit], dtype=np.float64)
        out[img] = (a[:, 1:5], a[:, 0])
    return out


def scale_boxes(boxes: torch.Tensor, factor: float, w: int, h: int) -> torch.Tensor:
    """Enlarge xyxy boxes around their centres and clip to the image."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * factor / 2
    out = torch.cat([c - half, c + half], dim=1)
    return torch.stack([out[:, 0].clamp(0, w), out[:, 1].clamp(0, h), out[:, 2].clamp(0, w), out[:, 3].clamp(0, h)], dim=1)


@register_adapter
class RegionClipAdapter(Adapter):
    provides = frozenset({"detections", "region_scores"})  # every capability capabilities_for may offer
    name = "region_clip"
    Args = RegionClipArgs
    description = "open-vocabulary detection: open_clip classifies proposal/detector boxes (ViLD crops, F-VLM fusion)"
    offers = "detections (open vocabulary), region_scores"

    @classmethod
    def capabilities_for(cls, args: RegionClipArgs) -> frozenset[str]:
        return frozenset({"detections", "region_scores"})

    def __init__(self, args: RegionClipArgs, **kw):
        super().__init__(args, **kw)
        clip_args = OpenClipArgs(
            name=args.name, arch=args.arch, pretrained=args.pretrained, checkpoint=args.checkpoint, sha256=args.sha256, image_size=args.image_size
        )
        self.clip = OpenClipAdapter(clip_args, **kw)
        self.checkpoint_sha256 = self.clip.checkpoint_sha256
        self.preprocess = self.clip.preprocess
        self.detector = DetectorAdapter(args.detector, **kw) if args.detector else None
        self._proposals = None
        self._text: dict = {}
        from bench.data.images import read_lines

        self.templates = read_lines(args.templates_file) if args.templates_file else list(args.templates)
        scale = getattr(self.clip.model, "logit_scale", None)
        self.logit_scale = float(scale.detach().exp()) if scale is not None else 100.0

    def _boxes(self, images: list, image_ids: list) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.detector is not None:
            k = self.detector.args.num_classes
            dets = self.detector.detections(images, image_ids, [str(i) for i in range(k)])
            return [(d["boxes"].astype(np.float64), d["scores"].astype(np.float64)) for d in dets]
        if self._proposals is None:
            self._proposals = load_proposals(self.args.proposals, self.args.max_proposals)
        empty = (np.zeros((0, 4)), np.zeros(0))
        return [self._proposals.get(i, empty) for i in image_ids]

    def _class_embeddings(self, vocabulary: list[str]) -> torch.Tensor:
        key = tuple(vocabulary)
        if key not in self._text:
            from bench.probes import zero_shot_weights

            prompts = [t.replace("{}", c) if "{}" in t else f"{t} {c}" for c in vocabulary for t in self.templates]
            tf = self.clip.text_features(prompts).cpu().numpy()
            self._text[key] = torch.as_tensor(zero_shot_weights(tf, len(vocabulary), len(self.templates)), dtype=torch.float32, device=self.device)
        return self._text[key]

    def region_scores(self, image: torch.Tensor, boxes: np.ndarray, vocabulary: list[str]) -> torch.Tensor:
        """Softmax over the vocabulary for each xyxy box of one uint8 CHW image: [n, C]."""
        from torchvision.ops import roi_align

        text = self._class_embeddings(vocabulary)
        if len(boxes) == 0:
            return torch.zeros((0, len(vocabulary)), device=self.device)
        img = image.to(self.device).float()[None]
        h, w = img.shape[-2:]
        b = torch.as_tensor(boxes, dtype=torch.float32, device=self.device)
        size = self.preprocess.input_size
        emb = 0
        for factor in self.args.crop_scales:
            crops = roi_align(img, [scale_boxes(b, factor, w, h)], output_size=(size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)
            f = self.clip.image_features(crops)
            emb = emb + f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
        emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.softmax(self.logit_scale * emb @ text.T, dim=1)

    def detections(self, images: list, image_ids: list, vocabulary: list[str], novel: Optional[list[bool]] = None) -> list[dict]:
        out = []
        novel_mask = np.asarray(novel if novel is not None else [False] * len(vocabulary), dtype=bool)
        for image, (boxes, det_scores) in zip(images, self._boxes(images, image_ids)):
            p = self.region_scores(image, boxes, vocabulary).double().cpu().numpy()
            if self.args.fusion is not None:
                gamma = np.where(novel_mask, self.args.fusion.novel, self.args.fusion.base)[None, :]
                p = det_scores[:, None] ** (1 - gamma) * p**gamma
            flat = p.ravel()
            k = min(self.args.detections_per_img, flat.size)
            top = np.argsort(-flat, kind="stable")[:k]
            rows, cls = np.divmod(top, len(vocabulary))
            out.append({"boxes": boxes[rows].astype(np.float32), "scores": flat[top].astype(np.float32), "labels": cls.astype(np.int64)})
        return out

    def metadata(self) -> dict[str, Any]:
        return {
            **self.clip.metadata(),
            "crop_scales": self.args.crop_scales,
            "fusion": self.args.fusion.model_dump() if self.args.fusion else None,
            "templates": len(self.templates),
            "box_source": "detector" if self.detector else self.args.proposals,
        }
