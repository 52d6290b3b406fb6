"""Semantic segmentation datasets: images paired with single-channel label maps.

Every reader yields a ``SegSplit``: image paths (served to models through an ``ImageSplit``),
label-map paths, class names and how raw label values become class indices
(``ignore_index``, ADE20K's ``reduce_zero_label``, Cityscapes' labelId → trainId table).
Predictions in a results folder are encoded like the dataset's label files (what
mmsegmentation's ``--format-only`` writes), so they go through the same decoding.

Layouts, as mmsegmentation and detectron2's preparation scripts leave them:
- ``ade20k``: ``images/validation/*.jpg``, ``annotations/validation/*.png`` (150 classes, 0 = other);
- ``ade847``: ``images_detectron2/validation/*.jpg``, ``annotations_detectron2/validation/*.tif`` (uint16, 65535 ignored);
- ``cityscapes``: ``leftImg8bit/val/<city>/*_leftImg8bit.png``, ``gtFine/val/<city>/*_gtFine_labelIds.png``;
- ``pascal_context``: 59 classes as mmseg's VOC2010 (``JPEGImages``, ``SegmentationClassContext``,
  ``ImageSets/SegmentationContext/val.txt``, 0 = background, reduced); 459 as detectron2's
  (``annotations_detectron2/pc459_val/*.tif``, 65535 ignored);
- ``coco_stuff``: ``images/val2017/*.jpg``, ``annotations/val2017/*_labelTrainIds.png`` (171 classes);
- ``seg_folder``: any two folders paired by file stem, with a classes file;
- ``seg_shapes``: generated coloured shapes for smoke and tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.data.images import IMAGE_EXTS, ImageSplit, _publish, read_array, read_lines
from bench.errors import DataError
from bench.optional import opencv
from bench.paths import ExistingDir, ExistingFile, SuitePath, cache_dir

# Cityscapes labelId → trainId (cityscapesscripts/helpers/labels.py; tests check it against the package)
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LABEL_MODES = {"L", "P", "I", "I;16", "I;16L", "I;16B"}


def shipped_classes(name: str) -> list[str]:
    """Class names shipped as package data (bench/catalogue/segmentation/<name>.txt)."""
    text = resources.files("bench.catalogue").joinpath("segmentation", f"{name}.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_label_map(path: str, what: str = "label map", raw: bool = False) -> np.ndarray:
    """A single-channel PNG/TIFF as an int64 array (raw: as stored, uint8/uint16/int32); RGB, unreadable
    or truncated files are one DataError."""
    arr = _gray_png(path)
    if arr is None:
        arr = read_array(path, what, LABEL_MODES, "one channel of class values (mode L, P or I;16)")
    return arr if raw else arr.astype(np.int64)


def _gray_png(path: str) -> Optional[np.ndarray]:
    """An 8- or 16-bit grayscale PNG decoded by OpenCV where it is installed (it releases the GIL, so
    scoring threads run in parallel; PIL's decoder gives the same values, tested), else None. Anything
    else (palette, RGB, other bit depths, a damaged file, no cv2) is left to PIL and its one-line errors;
    chunk CRCs are checked first because libpng prints its own line on stderr for a damaged file."""
    cv2 = opencv()
    if cv2 is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # IHDR: bit depth at byte 24, colour type (0 = gray) at 25
    if len(data) < 45 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[24] not in (8, 16) or data[25] != 0 or not _chunks_intact(data):
        return None
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return arr if arr is not None and arr.ndim == 2 else None


def _chunks_intact(data: bytes) -> bool:
    """Every chunk's CRC holds and the last is IEND (a truncated or bit-flipped file fails)."""
    import zlib

    view, o = memoryview(data), 8
    while o + 12 <= len(data):
        n = int.from_bytes(view[o : o + 4], "big")
        end = o + 8 + n
        if end + 4 > len(data) or zlib.crc32(view[o + 4 : end]) != int.from_bytes(view[end : end + 4], "big"):
            return False
        if view[o + 4 : o + 8] == b"IEND":
            return end + 4 == len(data)
        o = end + 4
    return False


@dataclass
class SegSplit:
    name: str  # split name, e.g. "validation"
    dataset: str  # the rows' dataset
    images: list[str]
    labels: list[str]
    classes: list[str]
    ignore_index: int = 255
    reduce_zero_label: bool = False
    label_map: Optional[dict[int, int]] = None  # raw value → class index; values not in it are ignored
    stems: list[str] = field(default_factory=list)  # what a prediction file is named by (the image's stem)

    def __post_init__(self):
        if not self.stems:
            self.stems = [Path(p).stem for p in self.images]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def image_split(self) -> ImageSplit:
        return ImageSplit(self.name, self.images, np.zeros(len(self.images), np.int64), self.classes, self.classes)

    def subset(self, limit: Optional[int], seed: int) -> "SegSplit":
        if not limit or limit >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:limit])
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return SegSplit(self.name, self.dataset, pick(self.images), pick(self.labels), self.classes, self.ignore_index, self.reduce_zero_label, self.label_map, pick(self.stems))

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Raw file values → class indices 0…C−1, or ignore_index."""
        if self.label_map is not None:
            lut = np.full(max(int(raw.max(initial=0)) + 1, 256), self.ignore_index, np.int64)
            for k, v in self.label_map.items():
                lut[k] = v
            return lut[raw]
        if self.reduce_zero_label:
            out = raw - 1
            out[raw == 0] = self.ignore_index
            out[raw == self.ignore_index] = self.ignore_index
            return out
        return raw

    def decoded_values(self, n: int = 65536) -> np.ndarray:
        """decode() of every raw value 0…n−1: a lookup table for uint8/uint16 files."""
        return self.decode(np.arange(n, dtype=np.int64))

    def label(self, i: int) -> np.ndarray:
        return self.decode(read_label_map(self.labels[i]))


def pair_folders(images: Path, labels: Path, image_suffix: Optional[str], label_suffix: str, only: Optional[set] = None) -> tuple[list[str], list[str], list[str]]:
    """(images, labels, stems): every image under `images` (recursively) with its label at the same relative place."""
    found = []
    for p in sorted(images.rglob("*")):
        name = p.name
        if image_suffix is not None:
            if not name.endswith(image_suffix):
                continue
            base = name[: -len(image_suffix)]
        elif p.suffix.lower() in IMAGE_EXTS:
            base = p.stem
        else:
            continue
        if only is not None and base not in only:
            continue
        found.append((p, base))
    if not found:
        raise DataError(f"{images}: no images{f' ending in {image_suffix}' if image_suffix else ''}")
    imgs, labs, stems, missing = [], [], [], []
    for p, base in found:
        lab = labels / p.parent.relative_to(images) / f"{base}{label_suffix}"
        if not lab.is_file():
            missing.append(str(lab))
            continue
        imgs.append(str(p))
        labs.append(str(lab))
        stems.append(p.stem)
    if missing:
        raise DataError(f"{missing[0]}: label map missing for its image ({len(missing)} of {len(found)} images under {images} have none)")
    return imgs, labs, stems


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegFolderSpec(_Spec):
    format: Literal["seg_folder"]
    images: ExistingDir
    labels: ExistingDir
    classes: ExistingFile  # one class name per line, in index order
    ignore_index: int = 255
    reduce_zero_label: bool = False  # label 0 is "other": ignored, the rest move down by one (ADE20K)
    image_suffix: Optional[str] = None  # e.g. "_leftImg8bit.png"; default: any image extension
    label_suffix: str = ".png"  # the label of image <base><image_suffix> is <base><label_suffix>
    split: str = "val"

    def load(self) -> SegSplit:
        imgs, labs, stems = pair_folders(Path(self.images), Path(self.labels), self.image_suffix, self.label_suffix)
        name = Path(self.images.rstrip("/")).name
        return SegSplit(self.split, name, imgs, labs, read_lines(self.classes), self.ignore_index, self.reduce_zero_label, None, stems)


class Ade20kSpec(_Spec):
    format: Literal["ade20k"]
    root: ExistingDir  # ADEChallengeData2016
    split: str = "validation"

    def load(self) -> SegSplit:
        root = Path(self.root)
        imgs, labs, stems = pair_folders(root / "images" / self.split, root / "annotations" / self.split, ".jpg", ".png")
        return SegSplit(self.split, "ade20k", imgs, labs, shipped_classes("ade20k_150"), 255, True, None, stems)


class Ade847Spec(_Spec):
    format: Literal["ade847"]
    root: ExistingDir  # ADE20K_2021_17_01 after detectron2's prepare_ade20k_full_sem_seg.py
    split: str = "validation"

    def load(self) -> SegSplit:
        root = Path(self.root)
        imgs, labs, stems = pair_folders(root / "images_detectron2" / self.split, root / "annotations_detectron2" / self.split, ".jpg", ".tif")
        return SegSplit(self.split, "ade20k_847", imgs, labs, shipped_classes("ade20k_847"), 65535, False, None, stems)


class CityscapesSpec(_Spec):
    format: Literal["cityscapes"]
    root: ExistingDir  # holds leftImg8bit/ and gtFine/
    split: str = "val"

    def load(self) -> SegSplit:
        root = Path(self.root)
        imgs, labs, stems = pair_folders(root / "leftImg8bit" / self.split, root / "gtFine" / self.split, "_leftImg8bit.png", "_gtFine_labelIds.png")
        return SegSplit(self.split, "cityscapes", imgs, labs, shipped_classes("cityscapes_19"), 255, False, CITYSCAPES_TRAIN_IDS, stems)


class PascalContextSpec(_Spec):
    format: Literal["pascal_context"]
    root: ExistingDir  # VOCdevkit/VOC2010
    classes: Literal[59, 459] = 59
    split: str = "val"

    def load(self) -> SegSplit:
        root = Path(self.root)
        if self.classes == 59:
            ids = root / "ImageSets" / "SegmentationContext" / f"{self.split}.txt"
            if not ids.is_file():
                raise DataError(f"{ids}: split file not found")
            imgs, labs, stems = pair_folders(root / "JPEGImages", root / "SegmentationClassContext", ".jpg", ".png", only=set(read_lines(str(ids))))
            return SegSplit(self.split, "pascal_context_59", imgs, labs, shipped_classes("pascal_context_59"), 255, True, None, stems)
        labels = root / "annotations_detectron2" / f"pc459_{self.split}"
        stems_wanted = {p.stem for p in labels.glob("*.tif")} if labels.is_dir() else set()
        if not stems_wanted:
            raise DataError(f"{labels}: no .tif label maps (run detectron2's PASCAL-Context 459 preparation)")
        imgs, labs, stems = pair_folders(root / "JPEGImages", labels, ".jpg", ".tif", only=stems_wanted)
        return SegSplit(self.split, "pascal_context_459", imgs, labs, shipped_classes("pascal_context_459"), 65535, False, None, stems)


class CocoStuffSpec(_Spec):
    format: Literal["coco_stuff"]
    root: ExistingDir  # holds images/val2017 and annotations/val2017 (mmseg's coco_stuff164k conversion)
    split: str = "val2017"

    def load(self) -> SegSplit:
        root = Path(self.root)
        imgs, labs, stems = pair_folders(root / "images" / self.split, root / "annotations" / self.split, ".jpg", "_labelTrainIds.png")
        return SegSplit(self.split, "coco_stuff", imgs, labs, shipped_classes("coco_stuff_171"), 255, False, None, stems)


SHAPE_CLASSES = ["background", "red_square", "green_circle", "blue_triangle", "yellow_square"]
_RGB = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 70, 220), "yellow": (230, 210, 40)}


class SegShapesSpec(_Spec):
    """Generated coloured shapes on a textured background, with a 1-pixel ignore band on every outline."""

    format: Literal["seg_shapes"]
    split: Literal["train", "val"] = "val"  # train: other images (seed + 1000), for linear_seg's head
    n: int = Field(16, gt=0)
    size: int = Field(64, ge=16)
    seed: int = 0
    root: Optional[SuitePath] = None  # default: $BENCH_CACHE/datasets/seg-shapes-<n>-<size>-<seed>

    def load(self) -> SegSplit:
        seed = self.seed + (1000 if self.split == "train" else 0)
        root = Path(self.root) if self.root else cache_dir() / "datasets" / f"seg-shapes-{self.n}-{self.size}-{seed}"
        if not (root / ".complete").exists():
            write_seg_shapes(root, self.n, self.size, seed)
        imgs, labs, stems = pair_folders(root / "images", root / "labels", ".png", ".png")
        return SegSplit(self.split, "seg_shapes", imgs, labs, SHAPE_CLASSES, 255, False, None, stems)


def write_seg_shapes(root: Path, n: int, size: int, seed: int) -> None:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    (tmp / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = Image.fromarray(rng.integers(60, 120, (size, size, 3), dtype=np.uint8))
        lab = Image.new("L", (size, size), 0)
        d_im, d_lab = ImageDraw.Draw(im), ImageDraw.Draw(lab)
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(1, len(SHAPE_CLASSES)))
            colour, kind = SHAPE_CLASSES[k].split("_")
            s = float(rng.uniform(size * 0.2, size * 0.5))
            x, y = float(rng.uniform(0, size - s)), float(rng.uniform(0, size - s))
            box = [x, y, x + s, y + s]
            draw = {"square": "rectangle", "circle": "ellipse"}.get(kind)
            for d, fill in ((d_im, _RGB[colour]), (d_lab, k)):
                if draw:
                    getattr(d, draw)(box, fill=fill, outline=None if d is d_im else 255)
                else:
                    pts = [(x + s / 2, y), (x + s, y + s), (x, y + s)]
                    d.polygon(pts, fill=fill, outline=None if d is d_im else 255)
        stem = f"shape_{i:04d}"
        im.save(tmp / "images" / f"{stem}.png")
        lab.save(tmp / "labels" / f"{stem}.png")
    (tmp / "classes.txt").write_text("\n".join(SHAPE_CLASSES) + "\n")
    (tmp / ".complete").write_text(f"seg_shapes n={n} size={size} seed={seed}\n")
    _publish(tmp, root)
