"""Detection datasets: COCO and LVIS v1 annotation files with their images, and generated shapes.

A reader yields a ``DetectionSplit``: the ground-truth JSON as a dict, the image file of each
image id, and the categories. LVIS v1 images have no file_name; like detectron2 the path is
``<images>/<dir>/<file>`` from the last two parts of ``coco_url`` (COCO's train2017/val2017).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.data.images import _publish
from bench.paths import cache_dir
from bench.errors import DataError
from bench.paths import ExistingFile, SuitePath


def read_json(path: str, what: str = "JSON"):
    """json.load with one line naming the file and where it broke (a truncated download, say)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        # the parser hit end of file: in a value, or inside a string it was still reading
        kind = "truncated" if e.pos >= os.path.getsize(path) - 1 or e.msg.startswith("Unterminated string") else "invalid"
        raise DataError(f"{path}: {kind} {what} at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None


@dataclass
class DetectionSplit:
    name: str  # split name, e.g. "val"
    annotations: str  # the GT file, named in messages and part of cache keys
    gt: dict
    image_root: Optional[str]
    lvis: bool = False

    def __post_init__(self):
        for key in ("images", "annotations", "categories"):
            if not isinstance(self.gt.get(key), list):
                raise DataError(f"{self.annotations}: not a {'LVIS' if self.lvis else 'COCO'} instances file (no '{key}' list)")
        if self.lvis:
            bad = [c.get("id") for c in self.gt["categories"] if c.get("frequency") not in ("r", "c", "f")]
            if bad:
                raise DataError(f"{self.annotations}: LVIS categories need frequency r/c/f; missing or wrong for ids {bad[:3]}")
            for im in self.gt["images"]:  # the lvis package reads both lists on every image
                if "neg_category_ids" not in im or "not_exhaustive_category_ids" not in im:
                    raise DataError(f"{self.annotations}: LVIS image {im.get('id')} lacks neg_category_ids/not_exhaustive_category_ids")
        self.categories = sorted(self.gt["categories"], key=lambda c: c["id"])
        self.images = {im["id"]: im for im in self.gt["images"]}

    @property
    def cat_ids(self) -> list[int]:
        return [c["id"] for c in self.categories]

    @property
    def class_names(self) -> list[str]:
        return [c["name"].replace("_", " ") for c in self.categories]

    def image_ids(self, limit: Optional[int] = None, seed: int = 0) -> list:
        ids = sorted(self.images)
        if limit and limit < len(ids):
            ids = sorted(np.asarray(ids)[np.random.default_rng(seed).permutation(len(ids))[:limit]].tolist())
        return ids

    def image_path(self, img_id) -> str:
        if not self.image_root:
            raise DataError(f"{self.annotations}: the dataset has no `images:` folder, so a model cannot be run on it (a predictions file can)")
        im = self.images[img_id]
        if im.get("file_name"):
            rel = im["file_name"]
        elif im.get("coco_url"):
            rel = os.path.join(*im["coco_url"].split("/")[-2:])
        else:
            raise DataError(f"{self.annotations}: image {img_id} has neither file_name nor coco_url")
        return os.path.join(self.image_root, rel)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    split: str = "val"


class CocoSpec(_Spec):
    """An instances JSON (e.g. instances_val2017.json) and the folder its file_names live in."""

    format: Literal["coco"]
    annotations: ExistingFile
    images: Optional[SuitePath] = None  # not needed when every model is a predictions file

    def load(self) -> DetectionSplit:
        return DetectionSplit(self.split, self.annotations, read_json(self.annotations, "COCO JSON"), self.images)


class LvisSpec(_Spec):
    """lvis_v1_{val,minival}.json and the COCO image root holding train2017/ and val2017/."""

    format: Literal["lvis"]
    annotations: ExistingFile
    images: Optional[SuitePath] = None

    def load(self) -> DetectionSplit:
        return DetectionSplit(self.split, self.annotations, read_json(self.annotations, "LVIS JSON"), self.images, lvis=True)


SHAPES = [
    ("red", "square"),
    ("green", "circle"),
    ("blue", "triangle"),
    ("yellow", "square"),
    ("purple", "circle"),
    ("orange", "triangle"),
    ("white", "square"),
    ("cyan", "circle"),
]
RGB = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 220, 40),
    "purple": (150, 50, 190),
    "orange": (240, 140, 30),
    "white": (245, 245, 245),
    "cyan": (40, 210, 220),
}


class ShapesSpec(_Spec):
    """Generated coloured shapes in COCO or LVIS v1 layout (offline smoke and tests), written once.

    LVIS style adds r/c/f frequencies, neg_category_ids and not_exhaustive_category_ids, and
    stores images as val2017/<id>.png addressed through coco_url like the real LVIS files.
    """

    format: Literal["shapes"]
    style: Literal["coco", "lvis"] = "coco"
    n: int = Field(24, gt=0)  # images
    size: int = Field(160, ge=64)
    seed: int = 0
    root: Optional[SuitePath] = None  # default: $BENCH_CACHE/datasets/shapes-<style>-<n>-<size>-<seed>

    def load(self) -> DetectionSplit:
        root = Path(self.root) if self.root else cache_dir() / "datasets" / f"shapes-{self.style}-{self.n}-{self.size}-{self.seed}"
        if not (root / ".complete").exists():
            write_shapes(root, self.style, self.n, self.size, self.seed)
        ann = str(root / "annotations.json")
        return DetectionSplit(self.split, ann, read_json(ann), str(root), lvis=self.style == "lvis")


def _shape_polygon(kind: str, x: float, y: float, s: float) -> list[float]:
    if kind == "square":
        pts = [(x, y), (x + s, y), (x + s, y + s), (x, y + s)]
    elif kind == "triangle":
        pts = [(x + s / 2, y), (x + s, y + s), (x, y + s)]
    else:
        pts = [(x + s / 2 + s / 2 * math.cos(a), y + s / 2 + s / 2 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    return [round(float(v), 2) for p in pts for v in p]


def _poly_area(poly: list[float]) -> float:
    x, y = np.asarray(poly[0::2]), np.asarray(poly[1::2])
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def write_shapes(root: Path, style: str, n: int, size: int, seed: int) -> None:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    lvis = style == "lvis"
    cats = [{"id": k + 1, "name": f"{c}_{s}", **({"frequency": "rcf"[k % 3]} if lvis else {})} for k, (c, s) in enumerate(SHAPES)]
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    img_dir = tmp / ("val2017" if lvis else "images")
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        iid = i + 1
        bg = rng.integers(60, 120, (size, size, 3), dtype=np.uint8)
        im = Image.fromarray(bg)
        draw = ImageDraw.Draw(im)
        present = []
        for _ in range(int(rng.integers(1, 5))):
            k = int(rng.integers(0, len(SHAPES)))
            hi = size * 0.8  # COCO's small/medium/large cut at 32² and 96² pixels
            s = float(rng.choice([rng.uniform(12, 30), rng.uniform(34, min(90, hi)), rng.uniform(min(100, hi - 1), hi)], p=[0.4, 0.45, 0.15]))
            x, y = float(rng.uniform(0, size - s)), float(rng.uniform(0, size - s))
            poly = _shape_polygon(SHAPES[k][1], x, y, s)
            draw.polygon(list(zip(poly[0::2], poly[1::2])), fill=RGB[SHAPES[k][0]])
            xs, ys = poly[0::2], poly[1::2]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            a = {
                "id": len(anns) + 1,
                "image_id": iid,
                "category_id": k + 1,
                "bbox": [round(v, 2) for v in box],
                "area": round(_poly_area(poly), 2),
                "segmentation": [poly],
            }
            if not lvis:
                a["iscrowd"] = 0
            anns.append(a)
            present.append(k + 1)
        name = f"{iid:012d}.png"
        im.save(img_dir / name)
        img = {"id": iid, "width": size, "height": size}
        if lvis:
            absent = [c["id"] for c in cats if c["id"] not in present]
            img["coco_url"] = f"http://images.cocodataset.org/val2017/{name}"
            img["neg_category_ids"] = [c for c in absent if rng.random() < 0.6]
            img["not_exhaustive_category_ids"] = sorted({c for c in present if rng.random() < 0.2})
        else:
            img["file_name"] = f"images/{name}"
        images.append(img)
    (tmp / "annotations.json").write_text(
        json.dumps({"info": {"description": f"bench shapes ({style}), seed {seed}"}, "images": images, "annotations": anns, "categories": cats})
    )
    (tmp / ".complete").write_text(f"shapes {style} n={n} size={size} seed={seed}\n")
    _publish(tmp, root)


def dataset_name(spec) -> str:
    if spec.format == "shapes":
        return f"shapes_{spec.style}"
    return Path(spec.annotations).name.rsplit(".", 1)[0]


DetectionDatasetSpec = Annotated[Union[CocoSpec, LvisSpec, ShapesSpec], Field(discriminator="format")]
