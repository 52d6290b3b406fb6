"""open_clip image and text towers: an architecture name plus a local checkpoint or a pretrained tag."""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from pydantic import Field

from adapters.base import Adapter, AdapterArgs, Preprocess, PreprocessArgs, param_count, register_adapter
from adapters.checkpoint import KeyRule
from adapters.timm import SHA256
from bench.paths import ExistingFile


class OpenClipArgs(AdapterArgs):
    adapter: Literal["open_clip"] = "open_clip"
    arch: str
    pretrained: Optional[str] = None  # an open_clip tag such as laion2b_s34b_b79k (online)
    checkpoint: Optional[ExistingFile] = None
    sha256: Optional[str] = SHA256
    key_map: list[KeyRule] = []  # strip/rename/drop rules applied to checkpoint keys, in order
    strict: bool = True  # False: load what matches, report missing/unexpected keys (shapes must still fit)
    image_size: Optional[int] = Field(None, gt=0)  # force_image_size, e.g. 64 for the smoke suite
    preprocess: PreprocessArgs = PreprocessArgs()


@register_adapter
class OpenClipAdapter(Adapter):
    provides = frozenset({"image_features", "text_features"})  # every capability capabilities_for may offer
    name = "open_clip"
    Args = OpenClipArgs
    description = "open_clip CLIP models: image + text towers and tokenizer (zero-shot)"
    offers = "image_features, text_features"

    @classmethod
    def capabilities_for(cls, args: OpenClipArgs) -> frozenset[str]:
        return frozenset({"image_features", "text_features"})

    def __init__(self, args: OpenClipArgs, **kw):
        super().__init__(args, **kw)
        import open_clip

        torch.manual_seed(self.seed)
        model = open_clip.create_model(
            args.arch,
            pretrained=args.pretrained,
            force_image_size=args.image_size,
            require_pretrained=bool(args.pretrained),
        )
        if args.checkpoint:
            self.load_weights(model, f"open_clip '{args.arch}'")
        cfg = model.visual.preprocess_cfg
        size = cfg["size"] if isinstance(cfg["size"], int) else cfg["size"][-1]
        # open_clip evaluates with a full-image resize of the shorter side then a centre crop: crop_pct 1.0
        base = Preprocess(input_size=int(size), crop_pct=1.0, interpolation=cfg["interpolation"], mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))
        self.preprocess = args.preprocess.apply(base)
        self.tokenizer = open_clip.get_tokenizer(args.arch)
        self.model = self._prepare_module(model)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        with torch.inference_mode(), self.autocast():
            f = self.model.encode_image(x)
        return self.check_finite(f.float(), "image_features", self.args.name)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        with torch.inference_mode(), self.autocast():
            f = self.model.encode_text(tokens)
        return self.check_finite(f.float(), "text_features", self.args.name)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "arch": self.args.arch, "pretrained": self.args.pretrained, "params": param_count(self.model)}
