"""Data-parallel sharding of one job over torch.distributed ranks (torchrun-compatible).

Under torchrun (WORLD_SIZE > 1) every rank runs the same plan. A split is cut into fixed blocks
of BLOCK items; rank r computes blocks r, r + W, r + 2W, … and the blocks are gathered exactly once
with all_gather_object, so nothing is padded or duplicated and metrics are computed from the
same full arrays on every rank; rank 0 alone writes rows, predictions and the leaderboard. Blocks
are cached by their index, never by the world size, so a rerun with another rank count reuses them.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

BLOCK = int(os.environ.get("BENCH_BLOCK", "1024"))  # items per cached block (tests set a small one)


def world() -> tuple[int, int]:
    if "torch.distributed" not in sys.modules:  # no process group without it; and importing torch costs seconds
        return 0, 1
    import torch.distributed as d

    if d.is_available() and d.is_initialized():
        return d.get_rank(), d.get_world_size()
    return 0, 1


def thread_budget() -> int:
    """The job's CPU threads for scoring work outside torch (reading results files, the bootstrap):
    torch's count where torch is loaded, which the executor and each pool worker set, else this
    process's cores (a run of results files only never imports torch)."""
    if "torch" in sys.modules:
        return max(1, sys.modules["torch"].get_num_threads())
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def init_from_env(device: str) -> str:
    """Join the process group torchrun describes; returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    import torch
    import torch.distributed as d

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not d.is_initialized():
        d.init_process_group("nccl" if cuda else "gloo", timeout=dt.timedelta(minutes=30))
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def all_gather(obj):
    """Every rank's object, in rank order (the identity on one process)."""
    rank, size = world()
    if size == 1:
        return [obj]
    import torch.distributed as d

    out = [None] * size
    d.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's object on every rank."""
    rank, size = world()
    if size == 1:
        return obj
    import torch.distributed as d

    box = [obj]
    d.broadcast_object_list(box, src=0)
    return box[0]
