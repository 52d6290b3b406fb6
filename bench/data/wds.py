"""WebDataset shards in CLIP_benchmark's hosted layout, for classification and retrieval.

    root/<split>/nshards.txt, root/<split>/0.tar … (n-1).tar
    root/classnames.txt, root/zeroshot_classification_templates.txt

A sample is an image (.webp/.png/.jpg/.jpeg) with a label in .cls or captions in .txt (one per
line). Shards are read with `webdataset` and their images written once, as files, under
$BENCH_CACHE/datasets/wds/<content hash>/, so the broker decodes, caches and shards them like any
image split and `--limit` samples them. A local shard is checked whole first: webdataset and
tarfile both stop quietly at a cut, so a truncated shard would silently lose samples.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from bench.data.captions import CaptionSet, build
from bench.data.images import ImageSplit, _publish
from bench.errors import DataError
from bench.filehash import sha256_of
from bench.hashing import short_hash
from bench.paths import cache_dir, resolve, resolve_existing

IMAGE_EXTS = ("webp", "png", "jpg", "jpeg")


def check_shard(path: str) -> None:
    """One line naming the shard if it is not a whole tar archive."""
    try:
        with tarfile.open(path, "r:") as t:
            members = t.getmembers()
            end = t.offset
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{path}: not a readable tar shard ({e})") from None
    size = os.path.getsize(path)
    cut = [m.name for m in members if m.offset_data + m.size > size]
    with open(path, "rb") as f:
        f.seek(end)
        tail = f.read(1024)
    if cut or len(tail) < 1024:
        last = cut[0] if cut else (members[-1].name if members else "its start")
        raise DataError(f"{path}: truncated tar shard (it ends after {last}, without the end-of-archive blocks)")


class _WdsBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["wds"]
    root: Optional[str] = None  # a folder or URL in CLIP_benchmark's layout (above)
    shards: Optional[list[str]] = None  # or explicit shard paths / URLs (brace patterns allowed: "s-{0..9}.tar")
    split: str = "test"

    @field_validator("root")
    @classmethod
    def _local_root(cls, v, info: ValidationInfo):
        return v if v is None or "://" in v else resolve_existing(v, info, "dir")  # relative to the suite, like every path

    @field_validator("shards")
    @classmethod
    def _local_shards(cls, v, info: ValidationInfo):
        return v if v is None else [u if "://" in u else resolve(u, info) for u in v]

    @model_validator(mode="after")
    def _one_source(self):
        if (self.root is None) == (self.shards is None):
            raise ValueError("give root: (CLIP_benchmark's layout) or shards: [...], not both")
        return self

    def _urls(self, split: str) -> list[str]:
        import braceexpand

        if self.shards:
            return [u for s in self.shards for u in braceexpand.braceexpand(s)]
        where = f"{self.root.rstrip('/')}/{split}"
        if "://" in where:
            return [f"{where}/{{0..{int(_read_remote(where + '/nshards.txt')) - 1}}}.tar"]
        nfile = Path(where) / "nshards.txt"
        if nfile.exists():
            n = int(nfile.read_text().strip())
            return [str(Path(where) / f"{i}.tar") for i in range(n)]
        found = sorted(Path(where).glob("*.tar"), key=lambda p: (len(p.stem), p.stem))
        if not found:
            raise DataError(f"{where}: no nshards.txt and no .tar shards")
        return [str(p) for p in found]

    def _extract(self, split: str, need: str) -> tuple[Path, list[dict]]:
        """Images written as files once per shard content; records [{key, image, cls?, txt?}]."""
        import webdataset as wds

        urls = self._urls(split)
        local = [u for u in urls if "://" not in u]
        for u in local:
            if not os.path.isfile(u):
                raise DataError(f"{u}: shard not found")
            check_shard(u)
        key = short_hash([sha256_of(u) if "://" not in u else u for u in urls])
        root = cache_dir() / "datasets" / "wds" / key
        index = root / "index.json"
        if not index.exists():
            tmp = root.with_name(root.name + f".tmp{os.getpid()}")
            (tmp / "images").mkdir(parents=True, exist_ok=True)
            records = []
            for u in urls:
                try:
                    for n, s in enumerate(wds.WebDataset(u, shardshuffle=False, empty_check=False)):
                        ext = next((e for e in IMAGE_EXTS if e in s), None)
                        if ext is None:
                            raise DataError(f"{u}: sample {s['__key__']} has no image ({', '.join(IMAGE_EXTS)})")
                        name = f"images/{len(records):07d}.{ext}"
                        (tmp / name).write_bytes(s[ext])
                        rec = {"key": s["__key__"], "image": name}
                        for field in ("cls", "txt"):
                            if field in s:
                                rec[field] = s[field].decode("utf-8")
                        records.append(rec)
                except DataError:
                    raise
                except Exception as e:  # a remote shard cut short, a corrupt member
                    raise DataError(f"{u}: cannot read shard: {str(e).splitlines()[0]}") from None
            (tmp / "index.json").write_text(json.dumps(records))
            _publish(tmp, root)
        records = json.loads(index.read_text())
        missing = [r["key"] for r in records if need not in r]
        if missing:
            raise DataError(f"{urls[0]}: sample {missing[0]} has no .{need} ({len(missing)} of {len(records)} samples)")
        return root, records

    def _root_text(self, name: str) -> Optional[list[str]]:
        if not self.root:
            return None
        where = f"{self.root.rstrip('/')}/{name}"
        try:
            text = _read_remote(where) if "://" in where else Path(where).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _read_remote(url: str) -> str:
    from urllib.request import urlopen

    try:
        with urlopen(url, timeout=30) as r:
            return r.read().decode("utf-8")
    except OSError as e:
        raise DataError(f"{url}: cannot fetch ({e})") from None


class WdsImagesSpec(_WdsBase):
    """Labelled images (.cls) for classification and OOD."""

    train_split: Optional[str] = None
    class_order: None = None  # labels are indices into classnames.txt: no folder order to choose

    def load(self, role: str, with_labels: bool = True) -> ImageSplit:
        split = self.train_split if role == "train" else self.split
        if split is None:
            raise DataError(f"{self.root or self.shards[0]}: no train_split given for a protocol that trains")
        root, records = self._extract(split, "cls" if with_labels else "key")
        labels = np.asarray([int(r["cls"]) for r in records] if with_labels else [0] * len(records), np.int64)
        names = self._root_text("classnames.txt")
        n = max(int(labels.max()) + 1 if len(labels) else 0, len(names or []))
        if names is not None and len(names) < n:
            raise DataError(f"{self.root}/classnames.txt: {len(names)} names, but labels go up to {n - 1}")
        classes = [str(i) for i in range(n)]
        out = ImageSplit(split, [str(root / r["image"]) for r in records], labels, classes, list(names) if names else classes)
        out.templates = self._root_text("zeroshot_classification_templates.txt")
        return out


class WdsCaptionsSpec(_WdsBase):
    """Images with captions (.txt, one per line) for retrieval."""

    def load(self) -> CaptionSet:
        root, records = self._extract(self.split, "txt")
        items = [(str(root / r["image"]), r["txt"].splitlines()) for r in records]
        return build(str(self.root or self.shards[0]), self.split, items, [f"sample {r['key']}" for r in records])
