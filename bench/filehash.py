"""Content hashes of the files a job reads, so results are keyed by content and never only by a path.

A file is hashed once per (path, size, mtime) and remembered in $BENCH_CACHE/file_sha256.json,
so reruns of an unchanged suite stay fast and a file overwritten in place is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

_memo: dict[str, str] = {}


def _store() -> Path:
    return Path(os.path.expanduser(os.environ.get("BENCH_CACHE", "~/.cache/bench"))) / "file_sha256.json"


def _read_store() -> dict:
    try:
        return json.loads(_store().read_text())
    except (OSError, ValueError):
        return {}


def sha256_of(path: str) -> str:
    st = os.stat(path)
    key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    if key in _memo:
        return _memo[key]
    stored = _read_store()
    if key not in stored:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        stored[key] = h.hexdigest()
        _write_store(stored)
    _memo[key] = stored[key]
    return stored[key]


def _write_store(data: dict) -> None:
    from bench.results import atomic_write_bytes

    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f)

    try:
        atomic_write_bytes(_store(), w)
    except OSError:
        pass  # a read-only cache only costs rehashing


def files_in(obj: Any) -> list[str]:
    """Every absolute path to an existing file among the string values of a (nested) config dump."""
    out: list[str] = []
    if isinstance(obj, dict):
        for v in obj.values():
            out += files_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            out += files_in(v)
    elif isinstance(obj, str) and os.path.isabs(obj) and os.path.isfile(obj):
        out.append(obj)
    return out


def stat_identity(paths: list[str]) -> str:
    """One hash of every file's (size, mtime) in order: what a split's decoded inputs and model outputs
    are keyed by besides the paths, so an image overwritten in place is decoded and run again. Stats,
    not sha256, because a split is up to millions of images (this store's memo trusts the same stats);
    a missing file counts as None and its reader names it."""
    out = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            out.update(f"{st.st_size} {st.st_mtime_ns}\n".encode())
        except OSError:
            out.update(b"-\n")
    return out.hexdigest()


def content_of(*configs: Any) -> dict[str, str]:
    """{path: sha256} for every file the configs name (folders such as ImageFolders are not hashed)."""
    return {p: sha256_of(p) for c in configs for p in sorted(set(files_in(c)))}


def sha256_tree(paths) -> Optional[str]:
    """One hash of local files and folders (a model folder: every file's sha256 with its relative
    name), so outputs of a folder overwritten in place are not served from the cache. None when no
    path is local (a hub name)."""
    parts = []
    for root in paths:
        p = Path(root)
        if p.is_file():
            parts.append(f"{p.name} {sha256_of(str(p))}")
        elif p.is_dir():
            parts += [f"{f.relative_to(p)} {sha256_of(str(f))}" for f in sorted(p.rglob("*")) if f.is_file()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest() if parts else None
