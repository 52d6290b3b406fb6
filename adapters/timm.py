"""Any timm model: `pretrained: true` through timm's own loader, or a local checkpoint."""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from pydantic import Field

from adapters.base import Adapter, AdapterArgs, Preprocess, PreprocessArgs, param_count, register_adapter
from adapters.checkpoint import KeyRule
from adapters.soup import SoupSpec
from bench.paths import ExistingFile

SHA256 = Field(None, pattern=r"^[0-9a-fA-F]{8,64}$")


class TimmArgs(AdapterArgs):
    adapter: Literal["timm"] = "timm"
    arch: str
    pretrained: bool = False
    checkpoint: Optional[ExistingFile] = None
    sha256: Optional[str] = SHA256
    key_map: list[KeyRule] = []  # strip/rename/drop rules applied to checkpoint keys, in order
    strict: bool = True  # False: load what matches, report missing/unexpected keys (shapes must still fit)
    num_classes: Optional[int] = Field(None, ge=0)
    kwargs: dict[str, Any] = {}  # passed to timm.create_model, e.g. {img_size: 64}
    soup: Optional[SoupSpec] = None  # average several fine-tuned checkpoints (uniform or greedy) instead of one checkpoint
    preprocess: PreprocessArgs = PreprocessArgs()


def timm_preprocess(model: torch.nn.Module, kwargs: dict) -> Preprocess:
    """The model's eval preprocessing as timm's validate.py resolves it: at the pretrained config's test
    size and crop (test_input_size, test_crop_pct) where it has them, at kwargs.img_size if the model was built so."""
    import timm.data

    size = kwargs.get("img_size")
    args = {} if size is None else {"input_size": (3, *((size, size) if isinstance(size, int) else tuple(size)[-2:]))}
    cfg = timm.data.resolve_data_config(args, model=model, use_test_size=True)
    return Preprocess(
        input_size=int(cfg["input_size"][-1]),
        crop_pct=float(cfg.get("crop_pct") or 0.875),
        interpolation=cfg["interpolation"],
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )


@register_adapter
class TimmAdapter(Adapter):
    provides = frozenset({"image_features", "image_logits", "linear_head", "input_gradients", "odin_scores", "patch_features"})  # every capability capabilities_for may offer
    name = "timm"
    Args = TimmArgs
    description = "any timm model name; pretrained via timm (online) or checkpoint: PATH (.safetensors/.pth/.bin)"
    offers = "image_features, image_logits, patch_features"

    @classmethod
    def capabilities_for(cls, args: TimmArgs) -> frozenset[str]:
        caps = {"image_features", "patch_features"}
        if args.num_classes != 0:
            caps |= {"image_logits", "linear_head", "input_gradients"}
        return frozenset(caps)

    def __init__(self, args: TimmArgs, **kw):
        super().__init__(args, **kw)
        import timm

        create_kw = dict(args.kwargs)
        if args.num_classes is not None:
            create_kw["num_classes"] = args.num_classes
        torch.manual_seed(self.seed)  # random init is reproducible
        model = timm.create_model(args.arch, pretrained=args.pretrained, **create_kw)
        if args.checkpoint:
            self.load_weights(model, f"timm '{args.arch}'")
        self.preprocess = args.preprocess.apply(timm_preprocess(model, create_kw))
        self.model = self._prepare_module(model)
        self.cook_soup(f"timm '{args.arch}'")

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        with torch.inference_mode(), self.autocast():
            f = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return self.check_finite(f.float(), "image_features", self.args.name)

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map [B, D, h, w]: a CNN's as it is, a ViT's patch tokens (prefix tokens dropped) on their grid."""
        x = self.normalize(images)
        with torch.inference_mode(), self.autocast():
            f = self.model.forward_features(x)
        if f.ndim == 3:
            tokens = f[:, getattr(self.model, "num_prefix_tokens", 0) :]
            h = x.shape[-2] // self.model.patch_embed.patch_size[0]
            w = tokens.shape[1] // h
            f = tokens.transpose(1, 2).reshape(f.shape[0], f.shape[2], h, w)
        elif getattr(self.model, "output_fmt", "NCHW") == "NHWC":  # Swin-style stages
            f = f.permute(0, 3, 1, 2)
        return self.check_finite(self.check_shape(f.float(), "patch_features", self.args.name), "patch_features", self.args.name)

    def image_logits(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        with torch.inference_mode(), self.autocast():
            out = self.model(x)
        return self.check_finite(out.float(), "image_logits", self.args.name)

    def features_and_logits(self, images: torch.Tensor):
        """Pre-logits features and logits sharing one forward_features pass (model(x) is forward_head of it)."""
        x = self.normalize(images)
        with torch.inference_mode(), self.autocast():
            fmap = self.model.forward_features(x)
            f = self.model.forward_head(fmap, pre_logits=True)
            out = self.model.forward_head(fmap)
        return self.check_finite(f.float(), "image_features", self.args.name), self.check_finite(out.float(), "image_logits", self.args.name)

    def metadata(self) -> dict[str, Any]:
        # the preprocessing used (test size unless overridden): rows of one model at two sizes must be told apart
        return {**super().metadata(), "arch": self.args.arch, "params": param_count(self.model), "preprocess": self.preprocess.as_dict()}
