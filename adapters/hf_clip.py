"""Hugging Face CLIP, SigLIP and other dual encoders (transformers' get_image_features / get_text_features).

`model` is a local folder (saved with save_pretrained; its content keys the output cache) or a hub
name (online). bench resizes and crops images itself, so the model's image processor config is
translated into a `Preprocess`; SigLIP's squash resize has no exact equivalent (see preprocess_from).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from pydantic import ValidationInfo, field_validator

from adapters.base import Adapter, AdapterArgs, Preprocess, PreprocessArgs, frames_averaged, param_count, register_adapter
from bench.errors import CheckpointError
from bench.filehash import sha256_tree

# PIL resample codes, as image processor configs store them
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}

# what a local folder must hold: each entry is satisfied by any one of its names
NEEDED = [
    ("config.json",),
    ("preprocessor_config.json", "processor_config.json"),
    ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"),
    ("tokenizer.json", "vocab.json", "spiece.model", "vocab.txt"),
]

SQUASH_NOTE = "the processor resizes to {h}x{w} without keeping the aspect ratio; bench resizes the shorter side to {h} and centre-crops (an approximation)"


class HfClipArgs(AdapterArgs):
    adapter: Literal["hf_clip"] = "hf_clip"
    model: str  # a local folder (relative to the suite) or a hub name (online)
    kind: Literal["auto", "clip", "siglip"] = "auto"  # auto: from config.json's model_type
    preprocess: PreprocessArgs = PreprocessArgs()

    @field_validator("model")
    @classmethod
    def _local(cls, v: str, info: ValidationInfo) -> str:
        """A folder, resolved against the suite's folder as other paths are; anything else is a hub name."""
        ctx = info.context or {}
        p = Path(os.path.expanduser(v))
        path = str(p if p.is_absolute() else (Path(ctx.get("base", ".")) / p).resolve())
        if os.path.exists(path):
            return path
        if v.startswith(("/", ".", "~")):  # clearly meant as a path, not a hub name
            if ctx.get("check_paths", True):
                raise ValueError(f"path does not exist: {path}")
            return path
        return v


def _crop_pct(crop: int, short: int) -> float:
    """crop/short, nudged down so that bench's floor(crop / crop_pct) gives `short` exactly."""
    pct = crop / short
    while math.floor(crop / pct) < short:
        pct = math.nextafter(pct, 0)
    return pct


def preprocess_from(cfg: dict) -> tuple[Preprocess, Optional[str]]:
    """A Preprocess from an image processor config (its to_dict()), and a note when it is only approximate."""
    size, crop = cfg.get("size"), cfg.get("crop_size")
    note = None
    if isinstance(size, int):  # old configs: an int is the shorter side
        size = {"shortest_edge": size}
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    if "shortest_edge" in size:  # CLIP: resize the shorter side, then centre-crop
        short = int(size["shortest_edge"])
        side = int(crop["height"]) if cfg.get("do_center_crop", False) and crop else short
        pct = _crop_pct(side, short)
    else:  # SigLIP: resize to exactly (height, width), aspect ratio lost, no crop
        side, pct = int(size["height"]), 1.0
        note = SQUASH_NOTE.format(h=size["height"], w=size["width"])
    normalize = cfg.get("do_normalize", True)
    mean = tuple(float(m) for m in cfg.get("image_mean", (0.5,) * 3)) if normalize else (0.0,) * 3
    std = tuple(float(s) for s in cfg.get("image_std", (0.5,) * 3)) if normalize else (1.0,) * 3
    interp = RESAMPLE.get(int(cfg.get("resample", 3)), "bicubic")
    return Preprocess(input_size=side, crop_pct=pct, interpolation=interp, mean=mean, std=std), note


def _pooled(out) -> torch.Tensor:
    # transformers < 5 returns the projected embedding; 5 returns an output whose pooler_output it is
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@register_adapter
class HfClipAdapter(Adapter):
    provides = frozenset({"image_features", "text_features", "video_features"})
    name = "hf_clip"
    Args = HfClipArgs
    description = "Hugging Face CLIP / SigLIP dual encoders (transformers): image + text towers (zero-shot, retrieval)"
    offers = "image_features, text_features, video_features (frames averaged)"

    @classmethod
    def capabilities_for(cls, args: HfClipArgs) -> frozenset[str]:
        return cls.provides

    def __init__(self, args: HfClipArgs, **kw):
        super().__init__(args, **kw)
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer, CLIPModel, SiglipModel

        torch.manual_seed(self.seed)
        path = args.model
        local = os.path.isdir(path)
        if local:
            names = set(os.listdir(path))
            missing = [" or ".join(group) for group in NEEDED if not names.intersection(group)]
            if missing:
                raise CheckpointError(f"{path}: not a Hugging Face model folder: missing {'; '.join(missing)}")
        try:
            config = AutoConfig.from_pretrained(path)
            self.kind = args.kind if args.kind != "auto" else {"clip": "clip", "siglip": "siglip"}.get(config.model_type, "other")
            cls = {"clip": CLIPModel, "siglip": SiglipModel}.get(self.kind, AutoModel)
            model = cls.from_pretrained(path).float()  # fp32 weights; bf16/fp16 run under autocast
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            image_cfg = AutoImageProcessor.from_pretrained(path).to_dict()
        except OSError as e:  # a hub name offline, an unreadable file: transformers' first line names it
            raise CheckpointError(f"{path}: cannot load: {str(e).strip().splitlines()[0]}") from None
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise CheckpointError(f"{path}: {type(model).__name__} is not a dual encoder (no get_image_features / get_text_features)")
        self.path, self.model_type = path, config.model_type
        self.checkpoint_sha256 = sha256_tree([path]) if local else None  # hub names: None (not keyed by content)
        base, self.preprocess_note = preprocess_from(image_cfg)
        self.preprocess = args.preprocess.apply(base)
        trained = getattr(getattr(config, "vision_config", config), "image_size", None)
        # another input size than the model's needs its position embeddings interpolated
        self._image_kw = {"interpolate_pos_encoding": True} if trained and self.preprocess.input_size != trained else {}
        text_cfg = getattr(config, "text_config", config)
        self.max_length = min(int(self.tokenizer.model_max_length), int(getattr(text_cfg, "max_position_embeddings", 10**6)))
        # SigLIP was trained on text padded to max_length (and pools the last token): "longest" lowers its scores
        self.padding = "max_length" if self.kind == "siglip" else "longest"
        self.model = self._prepare_module(model)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        with torch.inference_mode(), self.autocast():
            f = _pooled(self.model.get_image_features(pixel_values=x, **self._image_kw))
        return self.check_finite(self.check_shape(f.float(), "image_features", self.args.name), "image_features", self.args.name)

    def video_features(self, clips: torch.Tensor) -> torch.Tensor:
        return frames_averaged(self.image_features, clips)

    def tokenize(self, texts: list[str]) -> dict:
        enc = self.tokenizer(list(texts), padding=self.padding, truncation=True, max_length=self.max_length, return_tensors="pt")
        # only what the text tower reads; SigLIP's tokenizer gives no attention_mask, as it was trained
        return {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask") if k in enc}

    def text_features(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenize(texts)
        with torch.inference_mode(), self.autocast():
            f = _pooled(self.model.get_text_features(**enc))
        return self.check_finite(self.check_shape(f.float(), "text_features", self.args.name), "text_features", self.args.name)

    def metadata(self) -> dict[str, Any]:
        m = self.model
        meta = {**super().metadata(), "model": self.path, "kind": self.kind, "model_type": self.model_type, "params": param_count(m)}
        # ranking uses cosine similarity, which sigmoid(scale·cos + bias) or softmax(scale·cos) keep in order;
        # scale and bias are recorded so probabilities can be reproduced
        if getattr(m, "logit_scale", None) is not None:
            meta["logit_scale"] = float(m.logit_scale.detach().float().exp().reshape(-1)[0])
        bias = getattr(m, "logit_bias", None)
        if bias is not None:
            meta["logit_bias"] = float(bias.detach().float().reshape(-1)[0])
        meta["scoring"] = "sigmoid" if self.kind == "siglip" or bias is not None else "softmax"
        if self.preprocess_note:
            meta["preprocess_approximation"] = self.preprocess_note
        return meta
