"""Content-addressed cache of per-sample model outputs: arrays (features, logits) as .npy, detections as .json.

The key covers what determines the numbers: the resolved model config, its checkpoint sha256,
preprocessing, precision, library versions, the capability and its arguments, and the exact list
of input files. It never covers devices or batch sizes, so any run on the same inputs reuses it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from bench.data.images import cache_dir


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
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError):  # absent, or a torn file from a killed writer: recompute
            return None

    def put(self, key: str, value: np.ndarray) -> None:
        if self.enabled:
            self._write(self.path(key), lambda f: np.save(f, value, allow_pickle=False))

    # variable-length outputs (detections: boxes, scores, labels, RLE masks per image) as JSON
    def get_json(self, key: str):
        if not self.enabled:
            return None
        try:
            return json.loads(self.path(key).with_suffix(".json").read_text())
        except (OSError, ValueError):
            return None

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
