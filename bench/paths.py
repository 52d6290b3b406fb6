"""Paths in suites and the cache folder: a leaf module that readers, adapters and tasks share.

Suite paths are resolved against the suite file's folder (the validation context's `base`);
ExistingPath must exist (file or folder), ExistingFile must be a file and ExistingDir a folder.
`check_paths: False` in the context skips the existence checks (bench compare/check read suites
on machines without the data).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo


def resolve(value: str, info: ValidationInfo) -> str:
    base = (info.context or {}).get("base", ".")
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (Path(base) / p).resolve())


def resolve_existing(value: str, info: ValidationInfo, kind: str = "") -> str:
    path = resolve(value, info)
    if (info.context or {}).get("check_paths", True):
        if not os.path.exists(path):
            raise ValueError(f"path does not exist: {path}")
        if kind == "file" and os.path.isdir(path):
            raise ValueError(f"path is a folder, not a file: {path}")
        if kind == "dir" and not os.path.isdir(path):
            raise ValueError(f"path is a file, not a folder: {path}")
    return path


SuitePath = Annotated[str, AfterValidator(resolve)]
ExistingPath = Annotated[str, AfterValidator(resolve_existing)]
ExistingFile = Annotated[str, AfterValidator(lambda v, info: resolve_existing(v, info, "file"))]
ExistingDir = Annotated[str, AfterValidator(lambda v, info: resolve_existing(v, info, "dir"))]


def cache_dir() -> Path:
    """$BENCH_CACHE, default ~/.cache/bench: outputs, decoded inputs, generated datasets, hashes."""
    return Path(os.path.expanduser(os.environ.get("BENCH_CACHE", "~/.cache/bench")))
