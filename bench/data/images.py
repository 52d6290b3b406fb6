"""Image classification datasets: ImageFolder trees, CSV/JSONL lists, and generated digits.

Each reader yields an ``ImageSplit``: paths, integer labels and class names. Images are
decoded, resized and centre-cropped to uint8 tensors; normalisation belongs to the adapter.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from bench.errors import DataError
from bench.paths import ExistingDir, ExistingFile, SuitePath, cache_dir

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}

# How class ids are numbered: `lexical` is a plain sort (torchvision's ImageFolder), `natural` compares
# digit runs as numbers, case-folded (timm's reader): for folders 1..10 the two give 9 of 10 classes other indices.
ClassOrder = Literal["natural", "lexical"]




@dataclass
class ImageSplit:
    name: str  # dataset split name, e.g. "val"
    paths: list[str]
    labels: np.ndarray  # int64, index into classes
    classes: list[str]  # class ids (folder names, or entries of the classes file)
    class_names: list[str]  # human-readable names for prompts
    templates: Optional[list[str]] = None  # zero-shot templates the dataset ships (a wds root's file)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, limit: Optional[int], seed: int) -> "ImageSplit":
        """A seeded, order-preserving sample: the first N of a class-sorted tree would be one class."""
        if not limit or limit >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:limit])
        return ImageSplit(self.name, [self.paths[i] for i in idx], self.labels[idx], self.classes, self.class_names, self.templates)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    class_names: Optional[ExistingFile] = None  # one display name per line, in class order

    def _names(self, classes: list[str]) -> list[str]:
        if not self.class_names:
            return list(classes)
        names = read_lines(self.class_names)
        if len(names) != len(classes):
            raise DataError(f"{self.class_names}: has {len(names)} names for {len(classes)} classes")
        return names


class ImageFolderSpec(_Spec):
    """root/<split>/<class>/<image>; classes are the class folder names, sorted by `class_order`."""

    format: Literal["imagefolder"]
    root: ExistingDir
    split: str = "val"
    train_split: Optional[str] = None
    # needed only where the two sorts number the class folders differently (checked here, before anything runs)
    class_order: Optional[ClassOrder] = Field(None, validate_default=True)

    @field_validator("class_order")
    @classmethod
    def _order_is_given_where_sorts_differ(cls, v, info: ValidationInfo):
        if v is not None or "root" not in info.data or not (info.context or {}).get("check_paths", True):
            return v
        for split in dict.fromkeys(s for s in (info.data.get("split"), info.data.get("train_split")) if s):
            folder = Path(info.data["root"]) / split
            try:
                problem = order_conflict(class_folders(folder)) if folder.is_dir() else None
            except DataError as e:  # an unreadable folder: say so here rather than crash validation
                raise ValueError(str(e)) from None
            if problem:
                raise ValueError(f"{folder}: {problem}")
        return v

    def load(self, role: str, with_labels: bool = True) -> ImageSplit:
        split = self.split if role == "test" else self.train_split
        folder = Path(self.root) / split
        if not folder.is_dir():
            raise DataError(f"{folder}: dataset folder does not exist")
        # unlabelled uses (OOD sets, references) do not depend on the numbering
        classes = order_classes(class_folders(folder), self.class_order if with_labels else "lexical", folder)
        paths, labels, empty = [], [], []
        for i, c in enumerate(classes):
            found = images_under(folder / c)
            if not found:
                empty.append(c)
            paths += found
            labels += [i] * len(found)
        if not paths:
            raise DataError(f"{folder}: dataset folder is empty (no class folders with images)")
        if empty:  # a class without images shifts no index here, but is a broken copy, and timm's reader drops it
            more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
            raise DataError(f"{folder / empty[0]}: class folder has no images{more}")
        return ImageSplit(split, paths, np.asarray(labels, dtype=np.int64), classes, self._names(classes))


def class_folders(folder: Path) -> list[str]:
    # scandir's entry type needs no stat per entry: cheap enough to run at validation time
    try:
        with os.scandir(folder) as it:
            return [e.name for e in it if e.is_dir() and not e.name.startswith(".")]
    except OSError as e:
        raise DataError(f"{folder}: cannot read: {e.strerror}") from None


def images_under(folder: Path) -> list[str]:
    out = []
    for dirpath, _, files in sorted(os.walk(folder)):
        out += [os.path.join(dirpath, f) for f in sorted(files) if os.path.splitext(f)[1].lower() in IMAGE_EXTS]
    return out


def natural_key(name: str) -> list:
    """timm's natural_key (timm.utils.misc): case-folded, digit runs compared as numbers."""
    return [int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", name.lower()))]


def _natural(name: str):
    return natural_key(name), name  # ties ('A' and 'a') broken by the plain sort, so the order is total


def order_conflict(names: list[str]) -> Optional[str]:
    """Why `names` need an explicit class_order (the two sorts disagree), or None."""
    lexical, natural = sorted(names), sorted(names, key=_natural)
    moved = sum(a != b for a, b in zip(lexical, natural))
    if not moved:
        return None

    def head(xs):
        return ", ".join(xs[:4]) + (", …" if len(xs) > 4 else "")

    return (
        f"{moved} of {len(names)} classes get other indices by plain sort (torchvision: {head(lexical)}) than by natural sort "
        f"(timm: {head(natural)}); set class_order: natural or lexical"
    )


def order_classes(names: list[str], order: Optional[str], where) -> list[str]:
    """Class ids in index order; without an order, the two sorts must agree."""
    if order is None:
        problem = order_conflict(names)
        if problem:
            raise DataError(f"{where}: {problem}")
    return sorted(names, key=_natural) if order == "natural" else sorted(names)


class ImageListSpec(_Spec):
    """A list of (path, label): CSV with a path,label header, JSONL {"path", "label"}, or OpenOOD's
    whitespace-separated imglist .txt ("relative/path label"), plus an optional classes file."""

    format: Literal["list"]
    file: ExistingFile
    train_file: Optional[ExistingFile] = None
    classes: Optional[ExistingFile] = None  # one class id per line; without it labels are indices, or class names
    root: Optional[SuitePath] = None  # images are relative to this (default: the list's folder)
    split: str = "val"
    train_split: str = "train"
    # labels that are class names, without a classes file: needed where the two sorts number them differently
    class_order: Optional[ClassOrder] = None

    @field_validator("class_order")
    @classmethod
    def _no_order_with_classes_file(cls, v, info: ValidationInfo):
        if v is not None and info.data.get("classes"):
            raise ValueError("the classes file already gives the class order; class_order applies to lists without one")
        return v

    def load(self, role: str, with_labels: bool = True) -> ImageSplit:
        file = self.file if role == "test" else self.train_file
        root = Path(self.root) if self.root else Path(file).parent
        rows = _read_list(file)
        if not rows:
            raise DataError(f"{file}: image list is empty")
        name = self.split if role == "test" else self.train_split
        paths = [str(root / p) for p, _, _ in rows]
        if not with_labels:  # OOD sets: labels (often -1) are not used
            return ImageSplit(name, paths, np.full(len(paths), -1, dtype=np.int64), [], [])
        if self.classes:
            classes, labels = _labels_by_classes_file(file, rows, self.classes)
        elif all(_index(lab) is not None for _, lab, _ in rows):
            classes, labels = _labels_as_indices(file, rows)
        else:
            classes, labels = _labels_as_names(file, rows, self.class_order)
        return ImageSplit(name, paths, np.asarray(labels, dtype=np.int64), classes, self._names(classes))


def _index(label) -> Optional[int]:
    """A label as a class index: an int, or a string of one; floats and booleans are not indices."""
    if isinstance(label, bool):
        return None
    if isinstance(label, int):
        return label
    if isinstance(label, str) and re.fullmatch(r"[+-]?\d+", label.strip()):
        return int(label)
    return None


def _labels_by_classes_file(file: str, rows, classes_file: str) -> tuple[list[str], list[int]]:
    classes = read_lines(classes_file)
    index: dict[str, int] = {}
    for i, c in enumerate(classes):
        if c in index:  # the second would silently take the first one's images
            raise DataError(f"{classes_file}: class {c!r} is listed twice (entries {index[c] + 1} and {i + 1})")
        index[c] = i
    labels = []
    for _, lab, line in rows:
        i = index[lab] if isinstance(lab, str) and lab in index else _index(lab)
        if i is None:
            raise DataError(f"{file}: line {line}: label {lab!r} is neither a class index nor a class in {classes_file}")
        if not 0 <= i < len(classes):
            raise DataError(f"{file}: line {line}: label {lab!r} is out of range for the {len(classes)} classes of {classes_file}")
        labels.append(i)
    return classes, labels


def _labels_as_names(file: str, rows, order: Optional[str]) -> tuple[list[str], list[int]]:
    """Labels that are class names: the classes are the distinct names, numbered by `order`."""
    for _, lab, line in rows:
        if not isinstance(lab, str) or not lab.strip():
            raise DataError(f"{file}: line {line}: label {lab!r} is neither a class index nor a class name")
    classes = order_classes(list({lab for _, lab, _ in rows}), order, file)
    index = {c: i for i, c in enumerate(classes)}
    return classes, [index[lab] for _, lab, _ in rows]


def _labels_as_indices(file: str, rows) -> tuple[list[str], list[int]]:
    """Labels 0..K-1 with K the largest + 1: a label beyond a gap (a typo, or a missing classes file) fails."""
    labels = [_index(lab) for _, lab, _ in rows]
    for (_, lab, line), i in zip(rows, labels):
        if i < 0:
            raise DataError(f"{file}: line {line}: label {lab!r} is negative")
    present = set(labels)
    gap = next(i for i in range(len(present) + 1) if i not in present)
    if gap < max(labels):
        line, lab = next((ln, lab) for (_, lab, ln), i in zip(rows, labels) if i > gap)
        raise DataError(
            f"{file}: line {line}: label {lab!r} is out of range: no image has label {gap}, so without a classes file "
            f"the classes would be 0..{max(labels)}; fix the label or give classes: FILE"
        )
    return [str(i) for i in range(max(labels) + 1)], labels


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


def read_array(path: str, what: str, modes: tuple, expected: str, size: Optional[tuple[int, int]] = None, against: str = "") -> np.ndarray:
    """A label-like image (a label map, a panoptic id PNG) as stored: its PIL mode must be one of `modes`,
    and with `size` ((W, H)) its size that; missing, unreadable or truncated files are one DataError."""
    try:
        with Image.open(path) as im:
            if im.mode not in modes:
                raise DataError(f"{path}: {what} is a {im.mode} image; expected {expected}")
            if size is not None and im.size != size:
                raise DataError(f"{path}: {what} is {im.size[0]}x{im.size[1]}, its ground truth {against} is {size[0]}x{size[1]}")
            return np.asarray(im)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except Exception as e:
        raise DataError(f"{path}: cannot read {what}: {type(e).__name__}: {e}") from None


def read_lines(path: str) -> list[str]:
    try:
        return [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None


def _read_list(path: str) -> list[tuple[str, object, int]]:
    """(image path, label, line number) per row, so a bad label can be named by its line."""
    rows = []
    try:
        if path.endswith((".jsonl", ".json")):
            with open(path) as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            r = json.loads(line)
                            rows.append((r["path"], r["label"], n))
                        except (json.JSONDecodeError, KeyError, TypeError) as e:
                            raise DataError(f"{path}: line {n}: expected a JSON object with 'path' and 'label' ({e})") from None
        elif path.endswith(".txt"):
            with open(path) as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        parts = line.strip().split(" ", 1)
                        if len(parts) != 2:
                            raise DataError(f"{path}: line {n}: expected 'path label'")
                        rows.append((parts[0], parts[1].split()[0], n))
        else:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                    raise DataError(f"{path}: CSV needs a header with 'path' and 'label' columns")
                for r in reader:
                    if r["path"] is None or r["label"] is None:
                        raise DataError(f"{path}: line {reader.line_num}: expected a path and a label")
                    rows.append((r["path"], r["label"], reader.line_num))
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text file ({e.reason} at byte {e.start})") from None
    return rows


# ---------------------------------------------------------------- decoding
def eval_transform(input_size: int, crop_pct: float, interpolation: str, resize: str = "shorter"):
    """timm's eval transform (resize shorter side to floor(size/crop_pct), centre crop) ending in uint8;
    `resize="square"` resizes both sides to input_size instead (every pixel kept, for dense probes)."""
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    mode = InterpolationMode(interpolation)
    if resize == "square":
        return T.Compose([T.Resize((input_size, input_size), interpolation=mode), T.PILToTensor()])
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
                img = im.convert("RGB")  # decodes in full: a truncated file fails here, not in a transform
        except FileNotFoundError:
            raise DataError(f"{path}: image file not found") from None
        except IsADirectoryError:
            raise DataError(f"{path}: is a folder, expected an image file") from None
        except PermissionError as e:
            raise DataError(f"{path}: cannot read: {e.strerror}") from None
        except Exception as e:  # PIL raises many types for bad files
            raise DataError(f"{path}: corrupt image: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return self.transform(img), i
