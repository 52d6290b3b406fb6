"""Content-addressed cache of per-sample model outputs: arrays (features, logits) as .npy, detections as .json.

The key covers what determines the numbers: the resolved model config, its checkpoint sha256,
preprocessing, precision, library versions, the capability and its arguments, and the exact list
of input files. It never covers devices or batch sizes, so any run on the same inputs reuses it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from bench.paths import cache_dir


class OutputCache:
    def __init__(self, root: Optional[Path] = None, enabled: bool = True):
        self.root = Path(root) if root else cache_dir() / "outputs"
        self.enabled = enabled

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> Optional[np.ndarray]:
        if not self.enabled:
            return None
        p = self.path(key)
        try:
            out = np.load(p, allow_pickle=False)
        except (OSError, ValueError):  # absent, or a torn file from a killed writer: recompute
            return None
        touch(p)
        return out

    def put(self, key: str, value: np.ndarray) -> None:
        if self.enabled:
            self._write(self.path(key), lambda f: np.save(f, value, allow_pickle=False))

    # variable-length outputs (detections: boxes, scores, labels, RLE masks per image) as JSON
    def get_json(self, key: str):
        if not self.enabled:
            return None
        p = self.path(key).with_suffix(".json")
        try:
            out = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        touch(p)
        return out

    def put_json(self, key: str, value) -> None:
        if self.enabled:
            self._write(self.path(key).with_suffix(".json"), lambda f: f.write(json.dumps(value).encode()))

    @staticmethod
    def _write(p: Path, write) -> None:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def touch(p: Path) -> None:
    """Mark an entry used, so pruning by age removes what no run has read lately."""
    try:
        os.utime(p)
    except OSError:
        pass


@dataclass
class Entry:
    path: Path
    kind: str  # outputs | inputs | datasets
    size: int  # bytes
    mtime: float  # last written or read


def _tree_size(p: Path) -> tuple[int, float]:
    if p.is_file():
        st = p.stat()
        return st.st_size, st.st_mtime
    size, newest = 0, p.stat().st_mtime
    for f in p.rglob("*"):
        if f.is_file():
            st = f.stat()
            size += st.st_size
            newest = max(newest, st.st_mtime)
    return size, newest


def entries(root: Optional[Path] = None) -> list[Entry]:
    """Everything under the cache root: one entry per output file, decoded-input file, decoded clip and generated dataset folder."""
    root = Path(root) if root else cache_dir()
    out: list[Entry] = []
    for f in sorted((root / "outputs").glob("*/*")):
        if f.suffix in (".npy", ".json"):
            st = f.stat()
            out.append(Entry(f, "outputs", st.st_size, st.st_mtime))
    for f in sorted((root / "inputs").glob("*.npy")):  # decoded-input caches (bench.inputs)
        st = f.stat()
        out.append(Entry(f, "inputs", st.st_size, st.st_mtime))
    for f in sorted((root / "clips").glob("*/*.npz")):  # decoded video views (bench.data.video)
        st = f.stat()
        out.append(Entry(f, "clips", st.st_size, st.st_mtime))
    if (root / "datasets").is_dir():
        for d in sorted((root / "datasets").iterdir()):
            size, mtime = _tree_size(d)
            out.append(Entry(d, "datasets", size, mtime))
    return out


def prune(items: list[Entry], older_than_days: Optional[float] = None, max_bytes: Optional[int] = None, now: Optional[float] = None) -> list[Entry]:
    """The entries to delete: those unused for longer than the age, then the oldest until the rest fits max_bytes."""
    import time

    now = now if now is not None else time.time()
    doomed = [e for e in items if older_than_days is not None and now - e.mtime > older_than_days * 86400]
    if max_bytes is not None:
        keep = sorted((e for e in items if e not in doomed), key=lambda e: e.mtime)
        total = sum(e.size for e in keep)
        for e in keep:
            if total <= max_bytes:
                break
            doomed.append(e)
            total -= e.size
    return doomed


def remove(e: Entry) -> None:
    import shutil

    if e.path.is_dir():
        shutil.rmtree(e.path, ignore_errors=True)
    else:
        e.path.unlink(missing_ok=True)


def parse_size(text: str) -> int:
    """'500M', '5G', '1.5T' or a byte count."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().rstrip("B")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(float(t))
