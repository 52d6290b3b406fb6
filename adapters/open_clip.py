"""open_clip image and text towers: an architecture name plus a local checkpoint or a pretrained tag."""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from pydantic import Field

from adapters.base import Adapter, AdapterArgs, Preprocess, PreprocessArgs, frames_averaged, param_count, register_adapter
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
    provides = frozenset({"image_features", "text_features", "dense_embeddings", "video_features"})  # every capability capabilities_for may offer
    name = "open_clip"
    Args = OpenClipArgs
    description = "open_clip CLIP models: image + text towers and tokenizer (zero-shot)"
    offers = "image_features, text_features, video_features (frames averaged), dense_embeddings (ViT towers)"

    @classmethod
    def capabilities_for(cls, args: OpenClipArgs) -> frozenset[str]:
        vit = args.arch.startswith("ViT-") and "CoCa" not in args.arch  # MaskCLIP's value path needs open_clip's own ViT
        return frozenset({"image_features", "text_features", "video_features"} | ({"dense_embeddings"} if vit else set()))

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

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """MaskCLIP's patch embeddings [B, D, h, w] in the image-text space: the last block's attention is
        replaced by its value path (value projection, then out_proj; no residual, no MLP), then ln_post and proj.
        The position embeddings are resampled bicubically to the input's patch grid."""
        import torch.nn.functional as F

        v = self.model.visual
        x = self.normalize(images)
        ph, pw = v.conv1.kernel_size
        gh, gw = x.shape[-2] // ph, x.shape[-1] // pw
        with torch.inference_mode(), self.autocast():
            t = v.conv1(x).flatten(2).transpose(1, 2)
            t = torch.cat([v.class_embedding.to(t.dtype).expand(t.shape[0], 1, -1), t], dim=1)
            pos = v.positional_embedding.to(t.dtype)
            g = int(round((pos.shape[0] - 1) ** 0.5))
            if (g, g) != (gh, gw):
                grid = pos[1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
                grid = F.interpolate(grid.float(), size=(gh, gw), mode="bicubic", align_corners=False).to(pos.dtype)
                pos = torch.cat([pos[:1], grid[0].flatten(1).T])
            t = v.ln_pre(t + pos)
            blocks = v.transformer.resblocks
            first = getattr(v.transformer, "batch_first", True)
            if not first:
                t = t.transpose(0, 1)
            for blk in blocks[:-1]:
                t = blk(t)
            last = blocks[-1]
            e = last.attn.embed_dim
            val = F.linear(last.ln_1(t), last.attn.in_proj_weight[2 * e :], last.attn.in_proj_bias[2 * e :])
            t = last.ls_1(F.linear(val, last.attn.out_proj.weight, last.attn.out_proj.bias))
            if not first:
                t = t.transpose(0, 1)
            tokens = v.ln_post(t[:, 1:]) @ v.proj
        out = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], gh, gw)
        return self.check_finite(out.float(), "dense_embeddings", self.args.name)

    def video_features(self, clips: torch.Tensor) -> torch.Tensor:
        return frames_averaged(self.image_features, clips)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        with torch.inference_mode(), self.autocast():
            f = self.model.encode_text(tokens)
        return self.check_finite(f.float(), "text_features", self.args.name)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "arch": self.args.arch, "pretrained": self.args.pretrained, "params": param_count(self.model)}
