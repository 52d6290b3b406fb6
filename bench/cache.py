"""Content-addressed cache of per-sample model outputs (features, logits, scores) as .npy files.

The key covers what determines the numbers: the resolved model config, its checkpoint sha256,
preprocessing, precision, library versions, the capability and its arguments, and the exact list
of input files. It never covers devices or batch sizes, so any run on the same inputs reuses it.
"""

from __future__ import annotations

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
        if not self.enabled:
            return
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, value, allow_pickle=False)
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
