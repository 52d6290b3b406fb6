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
from typing import Annotated, Literal, Optional, Union

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
        names = read_lines(self.class_names)
        if len(names) != len(classes):
            raise DataError(f"{self.class_names}: has {len(names)} names for {len(classes)} classes")
        return names


class ImageFolderSpec(_Spec):
    """root/<split>/<class>/<image>; classes are the sorted folder names."""

    format: Literal["imagefolder"]
    root: ExistingPath
    split: str = "val"
    train_split: Optional[str] = None

    def load(self, role: str, with_labels: bool = True) -> ImageSplit:
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
    """A list of (path, label): CSV with a path,label header, JSONL {"path", "label"}, or OpenOOD's
    whitespace-separated imglist .txt ("relative/path label"), plus an optional classes file."""

    format: Literal["list"]
    file: ExistingPath
    train_file: Optional[ExistingPath] = None
    classes: Optional[ExistingPath] = None  # one class id per line; without it labels are indices
    root: Optional[SuitePath] = None  # images are relative to this (default: the list's folder)
    split: str = "val"
    train_split: str = "train"

    def load(self, role: str, with_labels: bool = True) -> ImageSplit:
        file = self.file if role == "test" else self.train_file
        root = Path(self.root) if self.root else Path(file).parent
        rows = _read_list(file)
        if not rows:
            raise DataError(f"{file}: image list is empty")
        name = self.split if role == "test" else self.train_split
        paths = [str(root / p) for p, _ in rows]
        if not with_labels:  # OOD sets: labels (often -1) are not used
            return ImageSplit(name, paths, np.full(len(paths), -1, dtype=np.int64), [], [])
        classes = read_lines(self.classes) if self.classes else None
        index = {c: i for i, c in enumerate(classes or [])}
        labels = []
        for n, (_, lab) in enumerate(rows, 1):
            if isinstance(lab, str) and lab in index:
                lab = index[lab]
            else:
                try:
                    lab = int(lab)
                except (TypeError, ValueError):
                    raise DataError(f"{file}: row {n}: label {lab!r} is neither a class index nor a class in {self.classes}") from None
            if lab < 0 or (classes is not None and lab >= len(classes)):
                raise DataError(f"{file}: row {n}: label {lab} is out of range for {len(classes) if classes else 'the'} classes")
            labels.append(lab)
        classes = classes or [str(i) for i in range(max(labels) + 1)]
        return ImageSplit(name, paths, np.asarray(labels, dtype=np.int64), classes, self._names(classes))


DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class DigitsSpec(BaseModel):
    """scikit-learn's bundled 8x8 digits, written once as a 32x32 PNG ImageFolder (offline)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["sklearn_digits"]
    root: Optional[SuitePath] = None  # default: $BENCH_CACHE/datasets/digits
    split: Literal["val"] = "val"
    train_split: Literal["train"] = "train"
    digits: Optional[list[Annotated[int, Field(ge=0, le=9)]]] = None  # keep only these digits, relabelled 0..k-1

    def load(self, role: str, with_labels: bool = True) -> ImageSplit:
        root = Path(self.root) if self.root else cache_dir() / "datasets" / "digits"
        materialize_digits(root)
        out = ImageFolderSpec(format="imagefolder", root=str(root), split="val", train_split="train").load(role)
        out.class_names = list(DIGIT_NAMES)
        if self.digits:
            keep = sorted(set(self.digits))
            idx = np.flatnonzero(np.isin(out.labels, keep))
            remap = {d: i for i, d in enumerate(keep)}
            out = ImageSplit(
                out.name,
                [out.paths[i] for i in idx],
                np.asarray([remap[int(out.labels[i])] for i in idx]),
                [str(d) for d in keep],
                [DIGIT_NAMES[d] for d in keep],
            )
        return out


class NoiseSpec(BaseModel):
    """Generated far-OOD images, written once: uniform noise, or smooth random textures."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["generated_noise"]
    kind: Literal["uniform", "texture"] = "uniform"
    n: int = Field(200, gt=0)
    size: int = Field(32, gt=0)
    seed: int = 0
    root: Optional[SuitePath] = None  # default: $BENCH_CACHE/datasets/noise-<kind>-<n>-<size>-<seed>
    split: Literal["val"] = "val"

    def load(self, role: str, with_labels: bool = True) -> ImageSplit:
        root = Path(self.root) if self.root else cache_dir() / "datasets" / f"noise-{self.kind}-{self.n}-{self.size}-{self.seed}"
        if not (root / ".complete").exists():
            rng = np.random.default_rng(self.seed)
            tmp = root.with_name(root.name + f".tmp{os.getpid()}")
            (tmp / "val" / "noise").mkdir(parents=True, exist_ok=True)
            for i in range(self.n):
                if self.kind == "uniform":
                    img = rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)
                else:  # low-frequency noise upsampled: blotchy textures
                    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
                    img = np.asarray(Image.fromarray(small).resize((self.size, self.size), Image.BICUBIC))
                Image.fromarray(img).save(tmp / "val" / "noise" / f"{i:05d}.png")
            (tmp / ".complete").write_text(f"{self.kind} noise, seed {self.seed}\n")
            _publish(tmp, root)
        return ImageFolderSpec(format="imagefolder", root=str(root)).load("test")


def dataset_name(spec) -> str:
    """The `dataset` value of result rows: a folder or list name, or the generator's name."""
    if spec.format == "sklearn_digits":
        return "sklearn_digits"
    if spec.format == "generated_noise":
        return f"{spec.kind}_noise"
    if spec.format == "imagefolder":
        return spec.root.rstrip("/").split("/")[-1]
    return spec.file.rstrip("/").split("/")[-1].rsplit(".", 1)[0]


# what a task's `dataset:` key accepts, picked by `format`
ImageDatasetSpec = Annotated[Union[ImageFolderSpec, ImageListSpec, DigitsSpec, NoiseSpec], Field(discriminator="format")]


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
    _publish(tmp, root)


def _publish(tmp: Path, root: Path) -> None:
    """Move a finished temp folder into place; if another process won the race, keep theirs."""
    import shutil

    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, root)
    except OSError:
        if (root / ".complete").exists():
            shutil.rmtree(tmp, ignore_errors=True)
        else:  # a stale partial folder from a killed run
            shutil.rmtree(root, ignore_errors=True)
            os.rename(tmp, root)


def read_lines(path: str) -> list[str]:
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
        elif path.endswith(".txt"):
            with open(path) as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        parts = line.strip().split(" ", 1)
                        if len(parts) != 2:
                            raise DataError(f"{path}: line {n}: expected 'path label'")
                        rows.append((parts[0], parts[1].split()[0]))
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
