"""The adapter interface: capabilities (bench.capabilities), preprocessing, metadata, and a registry.

An adapter wraps one model behind named capabilities. It never knows which task
calls it. Image inputs arrive as uint8 NCHW batches already resized and cropped
per ``adapter.preprocess``; the adapter normalises them on its device.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from bench.errors import CheckpointError, OutputError
from bench.registry import Registry

if TYPE_CHECKING:  # annotations only: torch is imported where it is used, so a results-file run never loads it
    import torch


# the output shape of each tensor capability, for OutputError messages
OUTPUT_SHAPES = {"image_logits": "[batch, classes]", "image_features": "[batch, dim]", "text_features": "[batch, dim]", "seg_logits": "[batch, classes, height, width]", "patch_features": "[batch, dim, height, width]", "dense_embeddings": "[batch, dim, height, width]", "video_logits": "[batch, classes]", "video_features": "[batch, dim]"}


@dataclass(frozen=True)
class Preprocess:
    """How images must be prepared: resize shorter side to floor(size/crop_pct), centre-crop size."""

    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    resize: str = "shorter"  # shorter side + centre crop (timm); "square": both sides to input_size, no crop (dense probes)

    def as_dict(self) -> dict:
        d = asdict(self)
        if d["resize"] == "shorter":  # the default stays out, so cache keys made before it existed still match
            del d["resize"]
        return d


class PreprocessArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_size: Optional[int] = Field(None, gt=0)
    crop_pct: Optional[float] = Field(None, gt=0, le=1)
    interpolation: Optional[Literal["bilinear", "bicubic", "nearest", "lanczos"]] = None
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None

    def apply(self, base: Preprocess) -> Preprocess:
        over = {k: v for k, v in self.model_dump().items() if v is not None}
        return Preprocess(**{**base.as_dict(), **over})


def memory_format() -> torch.memory_format:
    """channels_last unless BENCH_CHANNELS_LAST=0 (for checking that numbers do not hang on the layout)."""
    import torch

    return torch.contiguous_format if os.environ.get("BENCH_CHANNELS_LAST", "1") == "0" else torch.channels_last


class AdapterArgs(BaseModel):
    """Keys every model entry has; each adapter subclasses this with its own keys."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    name: str = Field(pattern=r"^[A-Za-z0-9_.@+-]+$")
    adapter: str


class Adapter:
    name: ClassVar[str]
    Args: ClassVar[type[AdapterArgs]] = AdapterArgs
    description: ClassVar[str] = ""
    offers: ClassVar[str] = ""  # capabilities in words, for `bench list adapters`
    provides: ClassVar[frozenset] = frozenset()  # every capability it may offer (checked at registration)
    runs_model: ClassVar[bool] = True  # False: it reads results files, so a run of only such models needs no torch or device

    preprocess: Preprocess = Preprocess()

    @classmethod
    def capabilities_for(cls, args: AdapterArgs) -> frozenset[str]:
        raise NotImplementedError

    @classmethod
    def serves(cls, args: AdapterArgs, task) -> "bool | str":
        """True, or the reason this model has nothing for `task` (a predictions file per task, say)."""
        return True

    def __init__(self, args: AdapterArgs, device: str = "cpu", precision: str = "fp32", seed: int = 0):
        self.args = args
        if self.runs_model:
            import torch

            self.device = torch.device(device)
        else:
            self.device = device  # a name only: nothing runs, and torch is never imported
        self.precision = precision
        self.seed = seed
        self.capabilities = self.capabilities_for(args)
        self.checkpoint_sha256: Optional[str] = None

    # ---- helpers shared by torch adapters
    @property
    def dtype(self) -> Optional[torch.dtype]:
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self):
        import torch

        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _prepare_module(self, module: torch.nn.Module) -> torch.nn.Module:
        # channels_last speeds up convolutions on CUDA and on CPU (oneDNN): +30% for resnet18 on 2 cores
        return module.eval().to(self.device, memory_format=memory_format())

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW → normalised float on the adapter's device."""
        import torch

        x = images.to(self.device, non_blocking=True).contiguous(memory_format=memory_format())
        key = (self.preprocess.mean, self.preprocess.std)
        if getattr(self, "_norm_key", None) != key:
            # made once: a per-batch torch.tensor(..., device=cuda) is a blocking copy that stalls the stream
            self._norm_key = key
            self._mean = torch.tensor(self.preprocess.mean, device=self.device).view(1, 3, 1, 1) * 255
            self._std = torch.tensor(self.preprocess.std, device=self.device).view(1, 3, 1, 1) * 255
        return (x.float() - self._mean) / self._std

    @staticmethod
    def check_shape(t: torch.Tensor, what: str, model: str) -> torch.Tensor:
        """A [batch, ...] output of the expected rank, or one line naming capability, expected and actual shape."""
        want = OUTPUT_SHAPES.get(what, "[batch, dim]")
        if t.ndim != want.count(",") + 1:
            raise OutputError(f"model '{model}': {what} must have shape {want}, got shape {list(t.shape)}")
        return t

    @staticmethod
    def check_finite(t: torch.Tensor, what: str, model: str) -> torch.Tensor:
        import torch

        if not torch.isfinite(t).all():
            bad = "NaN" if torch.isnan(t).any() else "Inf"
            raise OutputError(f"model '{model}' produced {bad} in {what}")
        return t

    # ---- capabilities (override what you offer)
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def image_logits(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def text_features(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def detections(self, images: list, image_ids: list, vocabulary: list[str], novel: Optional[list[bool]] = None) -> list[dict]:
        """Detect objects in full-size uint8 CHW images, one dict per image with numpy arrays:
        boxes [n, 4] xyxy in input pixels, scores [n], labels [n] (indices into `vocabulary`), and
        optionally masks: a list of n COCO RLE dicts. `novel` marks open-vocabulary classes."""
        raise NotImplementedError

    def linear_head(self):
        """(weight [C, D], bias [C]) as numpy, mapping image_features to image_logits.

        Default: the wrapped module's get_classifier() (timm's convention), which must be one nn.Linear.
        """
        import torch

        get = getattr(getattr(self, "model", None), "get_classifier", None)
        head = get() if get else None
        if not isinstance(head, torch.nn.Linear):
            raise OutputError(f"model '{self.args.name}': its classifier is {type(head).__name__}, not one nn.Linear, so it has no linear_head")
        return head.weight.detach().float().cpu().numpy(), head.bias.detach().float().cpu().numpy()

    def logits_with_grad(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of an already-normalised input, with autograd on (default: the wrapped module's forward)."""
        with self.autocast():
            return self.model(x)

    def odin_scores(self, images: torch.Tensor, temperature: float = 1000.0, epsilon: float = 0.0014) -> torch.Tensor:
        """ODIN (Liang et al., 2018) as OpenOOD computes it: one signed-gradient step against the
        temperature-scaled loss of the predicted class, scaled by 1/std per channel, then the max
        softmax of the temperature-scaled logits of the perturbed input."""
        import torch

        x = self.normalize(images).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.logits_with_grad(x).float()
            loss = torch.nn.functional.cross_entropy(logits / temperature, logits.detach().argmax(1))
            (grad,) = torch.autograd.grad(loss, x)
        step = (torch.ge(grad, 0).float() - 0.5) * 2 / (self._std / 255)
        with torch.inference_mode():
            out = self.logits_with_grad(x.detach() - epsilon * step).float() / temperature
        return self.check_finite(torch.softmax(out, dim=1).max(dim=1).values, "odin_scores", self.args.name)

    def load_weights(self, module: torch.nn.Module, what: str) -> None:
        """Load args.checkpoint into module (sha256, key_map and strict from the args); keep the key report."""
        from adapters.checkpoint import load_checkpoint

        a = self.args
        report: dict = {}
        self.checkpoint_sha256 = load_checkpoint(module, a.checkpoint, a.sha256, what, getattr(a, "key_map", None), getattr(a, "strict", True), report)
        self.key_report = report

    def cook_soup(self, what: str) -> None:
        """If args.soup is set, average its ingredients into self.model (adapters.soup) and keep the provenance."""
        spec = getattr(self.args, "soup", None)
        self.soup = None
        if spec is None:
            return
        if self.args.checkpoint:
            raise CheckpointError(f"model '{self.args.name}': give checkpoint or soup, not both")
        from adapters.soup import cook

        self.soup = cook(self, self.model, spec, what)
        self.checkpoint_sha256 = self.soup["sha256"]

    def metadata(self) -> dict[str, Any]:
        meta = {"checkpoint_sha256": self.checkpoint_sha256}
        if getattr(self, "soup", None):  # provenance of a model soup: ingredients, their order, what was kept
            meta["soup"] = self.soup
        report = getattr(self, "key_report", None)
        if report and (report["missing_keys"] or report["unexpected_keys"]):  # a non-strict load: say what did not match
            meta["checkpoint_keys"] = {
                "loaded": report["loaded_keys"],
                "missing": len(report["missing_keys"]),
                "unexpected": len(report["unexpected_keys"]),
                "missing_first": report["missing_keys"][:5],
                "unexpected_first": report["unexpected_keys"][:5],
            }
        return meta


ADAPTERS: Registry[type[Adapter]] = Registry("adapter")


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    """Register an adapter, checking that every capability it provides exists and has its method."""
    from bench.capabilities import CAPABILITIES

    problems = []
    for cap in sorted(cls.provides):
        if cap not in CAPABILITIES:
            problems.append(f"provides unknown capability '{cap}'")
        elif not _implements(cls, CAPABILITIES.get(cap).method):
            problems.append(f"provides '{cap}' but does not implement {CAPABILITIES.get(cap).method}()")
    if not getattr(cls, "description", ""):
        problems.append("has no description")
    if problems:
        raise TypeError(f"adapter '{getattr(cls, 'name', cls.__name__)}': " + "; ".join(problems))
    return ADAPTERS.register(cls.name)(cls)


def _implements(cls, method: str) -> bool:
    """The class has `method`, and it is not one of Adapter's NotImplementedError stubs."""
    fn = getattr(cls, method, None)
    return callable(fn) and not (fn is getattr(Adapter, method, None) and method in _STUBS)


_STUBS = {"image_features", "image_logits", "text_features", "detections"}


def create_adapter(args: AdapterArgs, **kw) -> Adapter:
    return ADAPTERS.get(args.adapter)(args, **kw)


def list_adapters(pattern: str = "*") -> list[str]:
    return ADAPTERS.list(pattern)


def param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def frames_averaged(image_features, clips):
    """Zero-shot video for an image-text model: each frame's L2-normalised embedding, averaged over time.
    clips uint8 [B, C, T, H, W] → [B, D]."""
    import torch.nn.functional as F

    b, c, t, h, w = clips.shape
    f = F.normalize(image_features(clips.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)), dim=-1)
    return f.reshape(b, t, -1).mean(1)
