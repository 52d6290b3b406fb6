"""Content hashes of the files a job reads, so results are keyed by content and never only by a path.

A file is hashed once per (path, size, mtime) and remembered in $BENCH_CACHE/file_sha256.jsonl,
so reruns of an unchanged suite stay fast and a file overwritten in place is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

_memo: dict[str, str] = {}
_loaded: dict[Path, dict] = {}  # each store file's entries, read once per process
_torn: dict[Path, bool] = {}  # the store ends mid-line: the next append starts a new one


def _store() -> Path:
    return Path(os.path.expanduser(os.environ.get("BENCH_CACHE", "~/.cache/bench"))) / "file_sha256.jsonl"


def _known(store: Path) -> dict:
    """The store's [key, sha256] lines; a torn last line (a killed writer) is skipped."""
    if store not in _loaded:
        known = {}
        try:
            text = store.read_text()
        except OSError:
            text = ""
        for line in text.splitlines():
            try:
                k, v = json.loads(line)
                known[k] = v
            except (ValueError, TypeError):
                pass
        _loaded[store] = known
        _torn[store] = bool(text) and not text.endswith("\n")
    return _loaded[store]


def _hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def sha256_of(path: str) -> str:
    st = os.stat(path)
    key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    if key in _memo:
        return _memo[key]
    store = _store()
    known = _known(store)
    if key not in known:
        known[key] = _hash_file(path)
        try:  # appended, not rewritten: hashing N new files (a video dataset) stays linear
            store.parent.mkdir(parents=True, exist_ok=True)
            with open(store, "a") as f:
                f.write(("\n" if _torn.pop(store, False) else "") + json.dumps([key, known[key]]) + "\n")
        except OSError:
            pass  # a read-only cache only costs rehashing
    _memo[key] = known[key]
    return known[key]


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


def folders_in(obj: Any, skip: tuple = ("python_path",)) -> list[str]:
    """Every absolute path to an existing folder among a config dump's string values, outside `skip` keys."""
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in skip:
                out += folders_in(v, skip)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            out += folders_in(v, skip)
    elif isinstance(obj, str) and os.path.isabs(obj) and os.path.isdir(obj):
        out.append(obj)
    return out


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
