"""Model soups (Wortsman et al., 2022): average the weights of fine-tuned checkpoints of one architecture.

`uniform` averages every ingredient. `greedy` ranks the ingredients by their own held-out top-1,
starts from the best, and adds each next one only if the soup's held-out top-1 does not drop.
Checkpoints are read one at a time (safetensors / weights_only) and summed, so memory stays at
two copies of the weights. Integer buffers (BatchNorm's num_batches_tracked) are taken from the
first ingredient rather than averaged.
"""

from __future__ import annotations

import hashlib
from typing import Literal, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.data.formats import ImageDatasetSpec
from bench.errors import CheckpointError
from bench.paths import ExistingFile


class SoupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoints: list[ExistingFile] = Field(min_length=1)
    method: Literal["uniform", "greedy"] = "uniform"
    held_out: Optional[ImageDatasetSpec] = None  # greedy: a labelled image dataset to rank and accept ingredients

    @model_validator(mode="after")
    def _held_out(self):
        if self.method == "greedy" and self.held_out is None:
            raise ValueError("a greedy soup needs held_out: a labelled dataset to rank and accept ingredients")
        return self


def _state(adapter, path: str) -> dict[str, torch.Tensor]:
    from adapters.checkpoint import load_state_dict, remap_keys

    return remap_keys(load_state_dict(path), getattr(adapter.args, "key_map", None) or [])


def _load(adapter, module: torch.nn.Module, sd: dict, path: str, what: str) -> None:
    from adapters.checkpoint import fit_state_dict

    own = module.state_dict()
    sd = {k: v.to(own[k].dtype) if k in own else v for k, v in sd.items()}
    fit_state_dict(module, sd, path, what, strict=getattr(adapter.args, "strict", True))


def held_out_top1(adapter, spec) -> float:
    from torch.utils.data import DataLoader

    from bench.data.images import ImageDataset, eval_transform

    split = spec.load("test")
    pre = adapter.preprocess
    loader = DataLoader(ImageDataset(split, eval_transform(pre.input_size, pre.crop_pct, pre.interpolation)), batch_size=64, num_workers=0)
    hits = 0
    for images, idx in loader:
        hits += int((adapter.image_logits(images).argmax(1).cpu().numpy() == split.labels[idx.numpy()]).sum())
    return hits / max(len(split), 1)


def cook(adapter, module: torch.nn.Module, spec: SoupSpec, what: str) -> dict:
    """Load the soup into `module`; return its provenance (ingredients, order, kept, held-out top-1)."""
    from adapters.checkpoint import verify_sha256

    shas = [verify_sha256(p, None) for p in spec.checkpoints]
    accs: list[Optional[float]] = [None] * len(spec.checkpoints)
    if spec.method == "greedy":
        for i, p in enumerate(spec.checkpoints):
            _load(adapter, module, _state(adapter, p), p, what)
            accs[i] = held_out_top1(adapter, spec.held_out)
        order = sorted(range(len(accs)), key=lambda i: -accs[i])  # stable: ties keep the listed order
    else:
        order = list(range(len(spec.checkpoints)))

    total: dict[str, torch.Tensor] = {}
    first: dict[str, torch.Tensor] = {}

    def add(sd):
        for k, v in sd.items():
            if v.is_floating_point():
                total[k] = total[k] + v.double() if k in total else v.double()
            else:
                first.setdefault(k, v)
        missing = set(total) - {k for k, v in sd.items() if v.is_floating_point()}
        if missing:
            raise CheckpointError(f"soup ingredients do not share keys: {sorted(missing)[:3]} missing from one")

    def mean(n: int) -> dict:
        return {**{k: v / n for k, v in total.items()}, **first}

    kept = [order[0]]
    add(_state(adapter, spec.checkpoints[order[0]]))
    best = accs[order[0]]
    for i in order[1:]:
        sd = _state(adapter, spec.checkpoints[i])
        if spec.method == "uniform":
            add(sd)
            kept.append(i)
            continue
        saved = {k: v.clone() for k, v in total.items()}
        add(sd)
        _load(adapter, module, mean(len(kept) + 1), spec.checkpoints[i], what)
        acc = held_out_top1(adapter, spec.held_out)
        if acc >= best:
            kept.append(i)
            best = acc
        else:
            total.clear()
            total.update(saved)
    _load(adapter, module, mean(len(kept)), spec.checkpoints[kept[0]], what)
    digest = hashlib.sha256("\n".join(shas[i] for i in kept).encode()).hexdigest()
    return {
        "method": spec.method,
        "ingredients": [{"path": p, "sha256": shas[i], "held_out_top1": accs[i]} for i, p in enumerate(spec.checkpoints)],
        "order": [spec.checkpoints[i] for i in order],
        "kept": [spec.checkpoints[i] for i in kept],
        "held_out_top1": best if spec.method == "greedy" else None,
        "sha256": digest,
    }
