"""Safe checkpoint loading: safetensors or torch.load(weights_only=True), never pickles.

Checks the sha256 before loading and reports how a state dict misfits a model
(missing, unexpected and mis-shaped keys) instead of torch's multi-page error.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import TYPE_CHECKING, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from bench.errors import CheckpointError

if TYPE_CHECKING:  # annotations only: torch is imported where it is used, so a results-file run never loads it
    import torch

_WRAPPERS = ("state_dict", "model", "module", "model_state", "ema")


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str, expected: Optional[str]) -> str:
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    got = sha256_file(path)
    if expected and not got.startswith(expected.lower()):
        raise CheckpointError(f"{path}: sha256 mismatch: expected {expected}, got {got}")
    return got


ACCEPTED = "bench reads .safetensors files, or a torch.save of tensors or a state dict of tensors (what torch.load(weights_only=True) allows)"


def sniff(path: str) -> tuple[str, str]:
    """(kind, description): kind is 'safetensors', 'torch' (zip or pickle) or 'unknown'; raises for what cannot be a checkpoint."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot open checkpoint: {e.strerror or e}") from None
    if not head:
        raise CheckpointError(f"{path}: file is empty, not a torch checkpoint or safetensors file")
    if head.startswith(b"version https://git-lfs"):
        raise CheckpointError(f"{path}: a Git LFS pointer, not the checkpoint itself (run `git lfs pull`)")
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save zip, or a pickle (legacy torch.save)
        return "torch", ""
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1:  # u64 header length, then JSON
        return "safetensors", ""
    text = head.decode("utf-8", "replace")
    if "\ufffd" not in text and text.strip():
        first = text.strip().splitlines()[0][:40]
        return "unknown", f"a text file ({first!r}{'…' if size > len(first) + 2 else ''})"
    return "unknown", f"{size} bytes starting {head[:8].hex(' ')}"


def _refused(path: str, msg: str) -> str:
    """torch's weights_only refusal, without its advice to unpickle an untrusted file."""
    m = re.search(r"Unsupported global: GLOBAL (\S+)", msg) or re.search(r"Unsupported operand (\d+)", msg)
    what = "" if m is None else (f" (it needs {m.group(1)})" if not m.group(1).isdigit() else f" (pickle opcode {m.group(1)})")
    return f"{path}: refused: it holds pickled Python objects{what}, which bench does not unpickle; {ACCEPTED}"


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    import torch

    kind, what = sniff(path)  # by content, not name: a .pt may be safetensors, a text file, an HTML error page
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            sd = load_file(path, device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch/safetensors errors are multi-line; keep the first sentence
        msg = str(e).strip()
        if kind == "unknown":
            raise CheckpointError(f"{path}: not a torch checkpoint or safetensors file: {what}") from None
        if "Weights only load failed" in msg:
            raise CheckpointError(_refused(path, msg)) from None
        first = msg.splitlines()[0].split(". ")[0] if msg else {EOFError: "ran out of data"}.get(type(e), type(e).__name__)
        raise CheckpointError(f"{path}: cannot read checkpoint ({kind} file truncated or corrupt?): {first}") from None
    # unwrap {'state_dict': {...}} style containers from training frameworks
    while isinstance(sd, dict) and len(sd) and not any(isinstance(v, torch.Tensor) for v in sd.values()):
        inner = next((sd[k] for k in _WRAPPERS if k in sd and isinstance(sd[k], dict)), None)
        if inner is None:
            break
        sd = inner
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: checkpoint holds a {type(sd).__name__}, not a state dict")
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(f"{path}: checkpoint holds no tensors; {ACCEPTED}")
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel/DDP
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _few(keys, n=3) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (", …" if len(keys) > n else "")


class Strip(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strip: str = Field(min_length=1)  # a prefix to remove where present, e.g. "backbone."


class Rename(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rename: dict[str, str] = Field(min_length=1)  # regex -> replacement (re.sub), e.g. {"^head\\.fc\\.": "fc."}


class Drop(BaseModel):
    model_config = ConfigDict(extra="forbid")
    drop: str = Field(min_length=1)  # regex: keys to leave out, e.g. "^neck\\." for an mmdet neck


KeyRule = Union[Strip, Rename, Drop]


def remap_keys(sd: dict[str, torch.Tensor], rules: list) -> dict[str, torch.Tensor]:
    """Apply strip/rename/drop rules in order, so checkpoints from other codebases (mmpretrain, mmdet) fit."""
    for rule in rules:
        if isinstance(rule, Strip):
            sd = {(k[len(rule.strip) :] if k.startswith(rule.strip) else k): v for k, v in sd.items()}
        elif isinstance(rule, Rename):
            for pat, rep in rule.rename.items():
                sd = {re.sub(pat, rep, k): v for k, v in sd.items()}
        else:
            sd = {k: v for k, v in sd.items() if not re.search(rule.drop, k)}
    return sd


def fit_state_dict(module: torch.nn.Module, sd: dict[str, torch.Tensor], path: str, what: str, strict: bool = True) -> dict:
    """Load strictly, or raise one line saying how many keys are missing/unexpected/mis-shaped.

    With strict=False, missing and unexpected keys are allowed (a classifier head a backbone
    checkpoint lacks, say) and returned as a report; mis-shaped keys always fail.
    """
    own = module.state_dict()
    missing = set(own) - set(sd)
    unexpected = set(sd) - set(own)
    shapes = [k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape)]
    if not strict and not shapes:
        module.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
        return {"missing_keys": sorted(missing), "unexpected_keys": sorted(unexpected), "loaded_keys": len(set(own) & set(sd))}
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        if shapes:
            k = sorted(shapes)[0]
            parts.append(f"{len(shapes)} shape mismatches ({k}: checkpoint {list(sd[k].shape)} vs model {list(own[k].shape)})")
        raise CheckpointError(f"{path}: checkpoint does not fit {what}: " + "; ".join(parts))
    module.load_state_dict(sd, strict=True)
    return {"missing_keys": [], "unexpected_keys": [], "loaded_keys": len(own)}


def load_checkpoint(
    module: torch.nn.Module, path: str, sha256: Optional[str], what: str, key_map: Optional[list] = None, strict: bool = True, report: Optional[dict] = None
) -> str:
    """Verify, read, remap and fit a checkpoint; returns its sha256. `report` receives the key report."""
    digest = verify_sha256(path, sha256)
    sd = remap_keys(load_state_dict(path), key_map or [])
    got = fit_state_dict(module, sd, path, what, strict=strict)
    if report is not None:
        report.update(got)
    return digest
