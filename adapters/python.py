"""Any torch.nn.Module from a factory `pkg.module:build`, with declared capabilities.

Contract for the module the factory returns:
- image_logits:   module(x) -> [B, num_classes]
- image_features: module.forward_features(x) -> [B, D]
- text_features:  module.encode_text(list[str]) -> [B, D]
- linear_head:    module.get_classifier() -> nn.Linear mapping forward_features to forward
- input_gradients: forward(x) is differentiable in x (for ODIN)
- video_logits:   module(x) -> [B, num_classes], x the normalised clips [B, C, T, H, W]
- video_features: module.forward_features(x) -> [B, D], x as for video_logits
- seg_logits:     module(x) -> [B, num_classes, h, w] at any stride, or torchvision's {"out": ...}
                  (segmentation; x is the
                  normalised image at the size the task's inference mode gives, not preprocess's)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Literal, Optional

import torch
from pydantic import Field, model_validator

from adapters.base import Adapter, AdapterArgs, Preprocess, PreprocessArgs, param_count, register_adapter
from adapters.checkpoint import KeyRule
from adapters.soup import SoupSpec
from adapters.timm import SHA256
from bench.errors import OutputError
from bench.paths import ExistingFile, ExistingPath


class PythonArgs(AdapterArgs):
    adapter: Literal["python"] = "python"
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    python_path: list[ExistingPath] = []  # folders put on sys.path first, relative to the suite
    kwargs: dict[str, Any] = {}
    capabilities: list[Literal["image_logits", "image_features", "text_features", "linear_head", "input_gradients", "seg_logits", "video_logits", "video_features"]] = Field(min_length=1)
    checkpoint: Optional[ExistingFile] = None
    sha256: Optional[str] = SHA256
    key_map: list[KeyRule] = []  # strip/rename/drop rules applied to checkpoint keys, in order
    strict: bool = True  # False: load what matches, report missing/unexpected keys (shapes must still fit)
    soup: Optional[SoupSpec] = None  # average several fine-tuned checkpoints (uniform or greedy) instead of one checkpoint
    preprocess: PreprocessArgs = PreprocessArgs()

    @model_validator(mode="after")
    def _importable(self):
        add_python_path(self.python_path)
        module = self.factory.split(":")[0]
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise ValueError(f"factory: cannot import module '{module}' (set python_path to the folder that holds it)")
        return self


def add_python_path(folders: list[str]) -> None:
    for folder in reversed(folders):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def resolve_factory(spec: str):
    module, attr = spec.split(":")
    fn = getattr(importlib.import_module(module), attr, None)
    if not callable(fn):
        raise OutputError(f"factory '{spec}': '{attr}' is not a callable in module '{module}'")
    return fn


@register_adapter
class PythonAdapter(Adapter):
    provides = frozenset({"image_logits", "image_features", "text_features", "linear_head", "input_gradients", "odin_scores", "seg_logits", "video_logits", "video_features"})  # every capability capabilities_for may offer
    name = "python"
    Args = PythonArgs
    description = "any torch.nn.Module from factory: 'pkg.module:build' with declared capabilities"
    offers = "as declared in the suite"

    @classmethod
    def capabilities_for(cls, args: PythonArgs) -> frozenset[str]:
        return frozenset(args.capabilities)

    def __init__(self, args: PythonArgs, **kw):
        super().__init__(args, **kw)
        add_python_path(args.python_path)
        torch.manual_seed(self.seed)
        model = resolve_factory(args.factory)(**args.kwargs)
        if not isinstance(model, torch.nn.Module):
            raise OutputError(f"factory '{args.factory}' returned {type(model).__name__}, not a torch.nn.Module")
        if args.checkpoint:
            self.load_weights(model, f"factory '{args.factory}'")
        self.preprocess = args.preprocess.apply(Preprocess())
        self.model = self._prepare_module(model)
        self.cook_soup(f"factory '{args.factory}'")

    def _check(self, out: torch.Tensor, what: str) -> torch.Tensor:
        return self.check_finite(self.check_shape(out, what, self.args.name).float(), what, self.args.name)

    def image_logits(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        with torch.inference_mode(), self.autocast():
            return self._check(self.model(x), "image_logits")

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        with torch.inference_mode(), self.autocast():
            return self._check(self.model.forward_features(x), "image_features")

    def seg_logits(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        with torch.inference_mode(), self.autocast():
            out = self.model(x)
            if isinstance(out, dict):  # torchvision's segmentation models return {"out": logits, "aux": ...}
                out = out["out"]
            return self._check(out, "seg_logits")

    def _clips(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, T, H, W] → normalised float on the device (the preprocess mean/std per channel)."""
        mean = torch.tensor(self.preprocess.mean, device=self.device).view(1, 3, 1, 1, 1)
        std = torch.tensor(self.preprocess.std, device=self.device).view(1, 3, 1, 1, 1)
        return (clips.to(self.device).float() / 255 - mean) / std

    def video_logits(self, clips: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self.autocast():
            return self._check(self.model(self._clips(clips)), "video_logits")

    def video_features(self, clips: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self.autocast():
            return self._check(self.model.forward_features(self._clips(clips)), "video_features")

    def text_features(self, texts: list[str]) -> torch.Tensor:
        with torch.inference_mode(), self.autocast():
            return self._check(self.model.encode_text(texts), "text_features")

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "factory": self.args.factory, "params": param_count(self.model)}
