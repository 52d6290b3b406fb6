"""Hugging Face `datasets` for classification and retrieval: a hub name (online), a local
`save_to_disk` folder, or parquet files.

The images are written once, as files, under $BENCH_CACHE/datasets/hf/<content hash>/ (the bytes
the dataset stores, not re-encoded), so the broker decodes, caches and shards them like any image
split and `--limit` samples them. Class names come from a ClassLabel feature when there is one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from bench.data.captions import CaptionSet, build
from bench.data.images import ImageSplit, _publish
from bench.errors import DataError
from bench.filehash import sha256_tree
from bench.hashing import short_hash
from bench.paths import cache_dir, resolve


class _HfBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["hf"]
    path: str  # a hub name such as "nlphuji/flickr_1k_test_image_text_retrieval" (online), a save_to_disk folder, or parquet file(s)/folder
    name: Optional[str] = None  # the hub dataset's configuration
    split: str = "test"
    image_key: str = "image"

    @field_validator("path")
    @classmethod
    def _suite_relative(cls, v, info: ValidationInfo):
        """A path that exists relative to the suite is local; anything else is a hub name."""
        local = resolve(v, info)
        return local if os.path.exists(local) else v

    def _local(self) -> Optional[Path]:
        p = Path(os.path.expanduser(self.path))
        return p if p.exists() else None

    def _open(self, split: str):
        import datasets

        local = self._local()
        try:
            if local is not None and local.is_dir() and ((local / "state.json").exists() or (local / "dataset_dict.json").exists()):
                ds = datasets.load_from_disk(str(local))
                if isinstance(ds, datasets.DatasetDict):
                    if split not in ds:
                        raise DataError(f"{local}: no split '{split}' (splits: {', '.join(ds)})")
                    ds = ds[split]
                return ds
            if local is not None:  # parquet: one file, or a folder of them
                files = [str(local)] if local.is_file() else sorted(str(f) for f in local.rglob("*.parquet"))
                if not files:
                    raise DataError(f"{local}: neither a save_to_disk folder nor parquet files")
                return datasets.load_dataset("parquet", data_files=files, split="train")
            return datasets.load_dataset(self.path, self.name, split=split)
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{self.path}: cannot open as a Hugging Face dataset: {str(e).splitlines()[0]}") from None

    def _content_key(self, split: str, keys: list[str]) -> str:
        local = self._local()
        source = {"files": sha256_tree([str(local)]) if local else None, "path": None if local else self.path, "name": self.name}
        return short_hash({**source, "split": split, "columns": [self.image_key, *keys]})

    def _extract(self, split: str, keys: list[str]) -> tuple[Path, list[dict], dict]:
        """Image files written once; records [{image, <key>: value}] and the features' class names."""
        import datasets

        root = cache_dir() / "datasets" / "hf" / self._content_key(split, keys)
        index = root / "index.json"
        if not index.exists():
            ds = self._open(split)
            missing = [k for k in [self.image_key, *keys] if k not in ds.column_names]
            if missing:
                raise DataError(f"{self.path}: the dataset has no column '{missing[0]}' (columns: {', '.join(ds.column_names)})")
            if not isinstance(ds.features[self.image_key], datasets.Image):
                raise DataError(f"{self.path}: column '{self.image_key}' is {type(ds.features[self.image_key]).__name__}, not an Image feature")
            ds = ds.cast_column(self.image_key, datasets.Image(decode=False))  # the stored bytes, as they are
            names = {k: ds.features[k].names for k in keys if isinstance(ds.features[k], datasets.ClassLabel)}
            tmp = root.with_name(root.name + f".tmp{os.getpid()}")
            (tmp / "images").mkdir(parents=True, exist_ok=True)
            records = []
            for i, row in enumerate(ds):
                img = row[self.image_key]
                data = img.get("bytes") or (Path(img["path"]).read_bytes() if img.get("path") else None)
                if data is None:
                    raise DataError(f"{self.path}: row {i} has no image")
                ext = (Path(img.get("path") or "x.png").suffix or ".png").lower()
                name = f"images/{i:07d}{ext}"
                (tmp / name).write_bytes(data)
                records.append({"image": name, **{k: row[k] for k in keys}})
            (tmp / "index.json").write_text(json.dumps({"records": records, "names": names}))
            _publish(tmp, root)
        doc = json.loads(index.read_text())
        return root, doc["records"], doc["names"]


class HfImagesSpec(_HfBase):
    """Labelled images for classification and OOD."""

    label_key: str = "label"
    train_split: Optional[str] = None
    class_order: None = None  # labels are indices, or ClassLabel names in the feature's order

    def load(self, role: str, with_labels: bool = True) -> ImageSplit:
        split = self.train_split if role == "train" else self.split
        if split is None:
            raise DataError(f"{self.path}: no train_split given for a protocol that trains")
        root, records, names = self._extract(split, [self.label_key] if with_labels else [])
        if not with_labels:
            return ImageSplit(split, [str(root / r["image"]) for r in records], np.zeros(len(records), np.int64), ["0"], ["0"])
        raw = [r[self.label_key] for r in records]
        if not all(isinstance(v, int) for v in raw):
            raise DataError(f"{self.path}: column '{self.label_key}' holds {type(raw[0]).__name__} values, not class indices")
        labels = np.asarray(raw, np.int64)
        classes = names.get(self.label_key) or [str(i) for i in range(int(labels.max()) + 1)]
        return ImageSplit(split, [str(root / r["image"]) for r in records], labels, [str(i) for i in range(len(classes))], list(classes))


class HfCaptionsSpec(_HfBase):
    """Images with one caption or a list of captions per row, for retrieval."""

    caption_key: str = "caption"

    def load(self) -> CaptionSet:
        root, records, _ = self._extract(self.split, [self.caption_key])
        items = [(str(root / r["image"]), [r[self.caption_key]] if isinstance(r[self.caption_key], str) else list(r[self.caption_key])) for r in records]
        return build(self.path, self.split, items, [f"row {i}" for i in range(len(items))])
