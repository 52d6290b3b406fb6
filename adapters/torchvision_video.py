"""torchvision's video classifiers: r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v1_b, mvit_v2_s, swin3d_t/s/b.

Weights from a local checkpoint (a state dict of the whole model; random init without one) or,
online, torchvision's Kinetics-400 weights (`pretrained: true`). Clips arrive as uint8
[B, 3, T, H, W] at the task's views; normalisation, size and short side follow each model's
torchvision transforms (r3d/mc3/r2plus1d: 112 crops of a 128 short side; the rest 224 of 256).
`video_features` is the classifier's input (pooled), taken with a forward pre-hook.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from pydantic import Field

from adapters.base import Adapter, AdapterArgs, Preprocess, PreprocessArgs, param_count, register_adapter
from adapters.checkpoint import KeyRule
from adapters.timm import SHA256
from bench.paths import ExistingFile

KINETICS = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))
ARCHS = {
    # arch: (crop, short side, mean/std, the classifier module's attribute path)
    "r3d_18": (112, 128, KINETICS, "fc"),
    "mc3_18": (112, 128, KINETICS, "fc"),
    "r2plus1d_18": (112, 128, KINETICS, "fc"),
    "s3d": (224, 256, KINETICS, "classifier"),
    "mvit_v1_b": (224, 256, ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)), "head"),
    "mvit_v2_s": (224, 256, ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)), "head"),
    "swin3d_t": (224, 256, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "head"),
    "swin3d_s": (224, 256, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "head"),
    "swin3d_b": (224, 256, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "head"),
}


class TorchvisionVideoArgs(AdapterArgs):
    adapter: Literal["torchvision_video"] = "torchvision_video"
    arch: Literal[tuple(ARCHS)]  # type: ignore[valid-type]
    num_classes: int = Field(400, gt=0)
    pretrained: bool = False  # torchvision's Kinetics-400 weights (online)
    checkpoint: Optional[ExistingFile] = None
    sha256: Optional[str] = SHA256
    key_map: list[KeyRule] = []
    strict: bool = True
    kwargs: dict[str, Any] = {}  # passed to the torchvision builder
    preprocess: PreprocessArgs = PreprocessArgs()


@register_adapter
class TorchvisionVideoAdapter(Adapter):
    provides = frozenset({"video_logits", "video_features"})
    name = "torchvision_video"
    Args = TorchvisionVideoArgs
    description = "torchvision video classifiers (r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v1_b/v2_s, swin3d_t/s/b); checkpoint: PATH"
    offers = "video_logits, video_features"

    @classmethod
    def capabilities_for(cls, args: TorchvisionVideoArgs) -> frozenset[str]:
        return frozenset({"video_logits", "video_features"})

    def __init__(self, args: TorchvisionVideoArgs, **kw):
        super().__init__(args, **kw)
        from torchvision.models import get_model, get_model_weights

        torch.manual_seed(self.seed)
        weights = get_model_weights(args.arch).DEFAULT if args.pretrained else None
        model = get_model(args.arch, weights=weights, **({} if weights else {"num_classes": args.num_classes}), **args.kwargs)
        if args.checkpoint:
            self.load_weights(model, f"torchvision '{args.arch}'")
        crop, short, (mean, std), self._head = ARCHS[args.arch]
        self.preprocess = args.preprocess.apply(Preprocess(input_size=crop, crop_pct=crop / short, interpolation="bilinear", mean=mean, std=std))
        self.model = model.eval().to(self.device)
        self._mean = torch.tensor(self.preprocess.mean, device=self.device).view(1, 3, 1, 1, 1)
        self._std = torch.tensor(self.preprocess.std, device=self.device).view(1, 3, 1, 1, 1)

    def _normalize(self, clips: torch.Tensor) -> torch.Tensor:
        return (clips.to(self.device, non_blocking=True).float().div_(255) - self._mean) / self._std

    def video_logits(self, clips: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self.autocast():
            out = self.model(self._normalize(clips))
        return self.check_finite(out.float(), "video_logits", self.args.name)

    def video_features(self, clips: torch.Tensor) -> torch.Tensor:
        head = self.model.get_submodule(self._head)
        got = {}
        hook = head.register_forward_pre_hook(lambda m, a: got.__setitem__("x", a[0]))
        try:
            with torch.inference_mode(), self.autocast():
                self.model(self._normalize(clips))
        finally:
            hook.remove()
        x = got["x"].float()
        f = x.flatten(2).mean(-1) if x.ndim > 2 else x  # s3d's classifier is a conv on [B, C, T', 1, 1]
        return self.check_finite(f, "video_features", self.args.name)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "arch": self.args.arch, "params": param_count(self.model)}
