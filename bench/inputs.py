"""Decoded-input cache: resized and cropped uint8 images, stored once per (split and its files'
sizes and mtimes, size, crop, interpolation) as a .npy file under $BENCH_CACHE/inputs and
memory-mapped by later passes.

The first model to run on a split with a given preprocessing decodes its JPEGs and writes them
here as it goes; every later model with the same preprocessing reads the uint8 tensors instead of
decoding again. Normalisation stays in the adapter, after the cache. BENCH_DECODED_CACHE=0 turns
it off (a large dataset at a large size needs disk: ImageNet val at 224 px is 7.5 GB).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from bench.cache import touch
from bench.paths import cache_dir


def enabled() -> bool:
    return os.environ.get("BENCH_DECODED_CACHE", "1") != "0"


def key_for(paths: list[str], pre) -> str:
    from bench.filehash import stat_identity
    from bench.hashing import short_hash

    key = {"paths": paths, "files": stat_identity(paths), "size": pre.input_size, "crop": pre.crop_pct, "interp": pre.interpolation, "v": 1}
    if pre.resize != "shorter":
        key["resize"] = pre.resize
    return short_hash(key)


def path_for(key: str) -> Path:
    return cache_dir() / "inputs" / f"{key}.npy"


class DecodedDataset:
    """Items of a finished decoded cache; the file is opened lazily in each DataLoader worker."""

    def __init__(self, path: Path, n: int):
        self.path, self.n = path, n
        self._arr = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        import torch

        if self._arr is None:
            self._arr = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(np.array(self._arr[i])), i

    def __getstate__(self):
        return {"path": self.path, "n": self.n, "_arr": None}


def open_cached(paths: list[str], pre) -> Optional[DecodedDataset]:
    if not enabled():
        return None
    p = path_for(key_for(paths, pre))
    if not p.exists():
        return None
    try:
        arr = np.load(p, mmap_mode="r")
    except (OSError, ValueError):  # torn: rebuild
        return None
    if arr.shape[0] != len(paths) or arr.shape[1:] != (3, pre.input_size, pre.input_size):
        return None
    touch(p)  # used: pruning by age keeps it
    return DecodedDataset(p, len(paths))


class Builder:
    """Fills a new decoded cache while a forward pass decodes; published only when every item was written."""

    def __init__(self, paths: list[str], pre):
        self.final = path_for(key_for(paths, pre))
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final.with_suffix(f".tmp{os.getpid()}.npy")
        self.arr = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, pre.input_size, pre.input_size))
        self.filled = np.zeros(len(paths), dtype=bool)

    def write(self, start: int, images) -> None:
        if images.ndim != 4 or tuple(images.shape[1:]) != self.arr.shape[1:]:
            raise ValueError("decoded images do not have the cache's shape")
        self.arr[start : start + len(images)] = images.numpy()
        self.filled[start : start + len(images)] = True

    def finish(self) -> None:
        complete = bool(self.filled.all())
        self.arr.flush()
        del self.arr
        if complete:
            os.replace(self.tmp, self.final)
        else:
            self.tmp.unlink(missing_ok=True)
