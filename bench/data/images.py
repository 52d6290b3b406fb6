"""Image classification datasets: ImageFolder trees, CSV/JSONL lists, and generated digits.

Each reader yields an ``ImageSplit``: paths, integer labels and class names. Images are
decoded, resized and centre-cropped to uint8 tensors; normalisation belongs to the adapter.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from bench.errors import DataError
from bench.suite import ExistingPath, SuitePath

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass
class ImageSplit:
    name: str  # dataset split name, e.g. "val"
    paths: list[str]
    labels: np.ndarray  # int64, index into classes
    classes: list[str]  # class ids (folder names, or entries of the classes file)
    class_names: list[str]  # human-readable names for prompts

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, limit: Optional[int], seed: int) -> "ImageSplit":
        """A seeded, order-preserving sample: the first N of a class-sorted tree would be one class."""
        if not limit or limit >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:limit])
        return ImageSplit(self.name, [self.paths[i] for i in idx], self.labels[idx], self.classes, self.class_names)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    class_names: Optional[ExistingPath] = None  # one display name per line, in class order

    def _names(self, classes: list[str]) -> list[str]:
        if not self.class_names:
            return list(classes)
        names = _read_lines(self.class_names)
        if len(names) != len(classes):
            raise DataError(f"{self.class_names}: has {len(names)} names for {len(classes)} classes")
        return names


class ImageFolderSpec(_Spec):
    """root/<split>/<class>/<image>; classes are the sorted folder names."""

    format: Literal["imagefolder"]
    root: ExistingPath
    split: str = "val"
    train_split: Optional[str] = None

    def load(self, role: str) -> ImageSplit:
        split = self.split if role == "test" else self.train_split
        folder = Path(self.root) / split
        if not folder.is_dir():
            raise DataError(f"{folder}: dataset folder does not exist")
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        paths, labels = [], []
        for i, c in enumerate(classes):
            for dirpath, _, files in sorted(os.walk(folder / c)):
                for f in sorted(files):
                    if os.path.splitext(f)[1].lower() in IMAGE_EXTS:
                        paths.append(os.path.join(dirpath, f))
                        labels.append(i)
        if not paths:
            raise DataError(f"{folder}: dataset folder is empty (no class folders with images)")
        return ImageSplit(split, paths, np.asarray(labels, dtype=np.int64), classes, self._names(classes))


class ImageListSpec(_Spec):
    """A CSV (path,label header) or JSONL ({"path", "label"}) list plus a classes file."""

    format: Literal["list"]
    file: ExistingPath
    train_file: Optional[ExistingPath] = None
    classes: ExistingPath  # one class id per line; labels are indices or these ids
    root: Optional[SuitePath] = None  # images are relative to this (default: the list's folder)
    split: str = "val"
    train_split: str = "train"

    def load(self, role: str) -> ImageSplit:
        file = self.file if role == "test" else self.train_file
        classes = _read_lines(self.classes)
        index = {c: i for i, c in enumerate(classes)}
        root = Path(self.root) if self.root else Path(file).parent
        rows = _read_list(file)
        if not rows:
            raise DataError(f"{file}: image list is empty")
        paths, labels = [], []
        for n, (p, lab) in enumerate(rows, 1):
            if isinstance(lab, str) and lab in index:
                lab = index[lab]
            else:
                try:
                    lab = int(lab)
                except (TypeError, ValueError):
                    raise DataError(f"{file}: row {n}: label {lab!r} is neither a class index nor a class in {self.classes}") from None
            if not 0 <= lab < len(classes):
                raise DataError(f"{file}: row {n}: label {lab} is out of range for {len(classes)} classes")
            paths.append(str(root / p))
            labels.append(lab)
        name = self.split if role == "test" else self.train_split
        return ImageSplit(name, paths, np.asarray(labels, dtype=np.int64), classes, self._names(classes))


DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class DigitsSpec(BaseModel):
    """scikit-learn's bundled 8x8 digits, written once as a 32x32 PNG ImageFolder (offline)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["sklearn_digits"]
    root: Optional[SuitePath] = None  # default: $BENCH_CACHE/datasets/digits
    split: Literal["val"] = "val"
    train_split: Literal["train"] = "train"

    def load(self, role: str) -> ImageSplit:
        root = Path(self.root) if self.root else cache_dir() / "datasets" / "digits"
        materialize_digits(root)
        split = ImageFolderSpec(format="imagefolder", root=str(root), split="val", train_split="train")
        out = split.load(role)
        out.class_names = DIGIT_NAMES
        return out


DatasetSpec = Union[ImageFolderSpec, ImageListSpec, DigitsSpec]
DatasetField = Field(discriminator="format")


def cache_dir() -> Path:
    return Path(os.path.expanduser(os.environ.get("BENCH_CACHE", "~/.cache/bench")))


def materialize_digits(root: Path) -> None:
    """Write digits as root/{train,val}/<digit>/<idx>.png once; a marker makes it idempotent."""
    marker = root / ".complete"
    if marker.exists():
        return
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = np.arange(len(d.target))
    train, val = train_test_split(idx, test_size=0.25, random_state=0, stratify=d.target)
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    for split, ids in (("train", train), ("val", val)):
        for i in ids:
            img = (d.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
            folder = tmp / split / str(d.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).convert("RGB").resize((32, 32), Image.BICUBIC).save(folder / f"{i:04d}.png")
    (tmp / ".complete").write_text("sklearn digits, 25% stratified val, random_state=0\n")
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, root)
    except OSError:  # another process won the race, or a stale partial root exists
        if not marker.exists():
            import shutil

            shutil.rmtree(root, ignore_errors=True)
            os.rename(tmp, root)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def _read_lines(path: str) -> list[str]:
    try:
        return [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None


def _read_list(path: str) -> list[tuple[str, object]]:
    rows = []
    try:
        if path.endswith((".jsonl", ".json")):
            with open(path) as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            r = json.loads(line)
                            rows.append((r["path"], r["label"]))
                        except (json.JSONDecodeError, KeyError, TypeError) as e:
                            raise DataError(f"{path}: line {n}: expected a JSON object with 'path' and 'label' ({e})") from None
        else:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                    raise DataError(f"{path}: CSV needs a header with 'path' and 'label' columns")
                rows = [(r["path"], r["label"]) for r in reader]
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None
    return rows


# ---------------------------------------------------------------- decoding
def eval_transform(input_size: int, crop_pct: float, interpolation: str):
    """timm's eval transform (resize shorter side to floor(size/crop_pct), centre crop) ending in uint8."""
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    mode = InterpolationMode(interpolation)
    return T.Compose([T.Resize(math.floor(input_size / crop_pct), interpolation=mode), T.CenterCrop(input_size), T.PILToTensor()])


class ImageDataset:
    """Map-style dataset of uint8 CHW tensors; a corrupt file raises one line naming it."""

    def __init__(self, split: ImageSplit, transform):
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        path = self.split.paths[i]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except FileNotFoundError:
            raise DataError(f"{path}: image file not found") from None
        except Exception as e:  # PIL raises many types for bad files
            raise DataError(f"{path}: corrupt image: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return self.transform(img), i
