"""Image-caption datasets for retrieval: COCO captions JSON, Karpathy splits, caption lists, generated.

Every reader returns a CaptionSet: the images as an ImageSplit (so the broker decodes, caches and
shards them like any image split), the captions, and the image each caption describes. An image
file that does not exist, or an image without a caption, fails with one line naming the file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field

from bench.data.images import ImageSplit, _publish
from bench.errors import DataError, read_text
from bench.paths import ExistingDir, ExistingFile, SuitePath, cache_dir


@dataclass
class CaptionSet:
    images: ImageSplit  # labels are the image indices
    captions: list[str]
    text_image: np.ndarray  # int64: the image index of each caption
    source: str  # the file, for messages

    def subset(self, limit: Optional[int], seed: int) -> "CaptionSet":
        """A seeded sample of images, each with all its captions."""
        if not limit or limit >= len(self.images.paths):
            return self
        keep = np.sort(np.random.default_rng(seed).permutation(len(self.images.paths))[:limit])
        new = -np.ones(len(self.images.paths), np.int64)
        new[keep] = np.arange(len(keep))
        mask = new[self.text_image] >= 0
        images = ImageSplit(self.images.name, [self.images.paths[i] for i in keep], np.arange(len(keep)), self.images.classes, self.images.class_names)
        return CaptionSet(images, [c for c, m in zip(self.captions, mask) if m], new[self.text_image[mask]], self.source)


def build(source: str, split: str, items: list[tuple[str, list[str]]], names: Optional[list[str]] = None) -> CaptionSet:
    """From (image path, captions) pairs, checking every image exists and has a caption; `names`
    say which sample an image is in messages (a shard's key, a row) where its path would not."""
    if not items:
        raise DataError(f"{source}: no images in split '{split}'")
    paths, captions, owner = [], [], []
    for i, (path, caps) in enumerate(items):
        what = names[i] if names else f"image {path}"
        if not os.path.isfile(path):
            raise DataError(f"{source}: {what} does not exist")
        caps = [c for c in caps if isinstance(c, str) and c.strip()]
        if not caps:
            raise DataError(f"{source}: {what} has no captions")
        paths.append(path)
        captions += caps
        owner += [i] * len(caps)
    idx = np.arange(len(paths))
    return CaptionSet(ImageSplit(split, paths, idx, [str(i) for i in idx], [str(i) for i in idx]), captions, np.asarray(owner, np.int64), source)


def _json(path: str):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CocoCaptionsSpec(_Spec):
    """`captions_val2017.json` and its images folder, read as torchvision's CocoCaptions reads them."""

    format: Literal["coco_captions"]
    annotations: ExistingFile
    images: ExistingDir
    split: str = "val"

    def load(self) -> CaptionSet:
        doc = _json(self.annotations)
        try:
            files = {int(im["id"]): im["file_name"] for im in doc["images"]}
            caps: dict[int, list[str]] = {i: [] for i in files}
            for a in doc["annotations"]:
                caps.setdefault(int(a["image_id"]), []).append(a["caption"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{self.annotations}: not a COCO captions file (images[].id/file_name, annotations[].image_id/caption): {e!r}") from None
        unknown = sorted(set(caps) - set(files))
        if unknown:
            raise DataError(f"{self.annotations}: captions for image_id {unknown[0]}, which is not in images")
        # sorted ids and captions in file order, as CocoCaptions gives them
        return build(self.annotations, self.split, [(os.path.join(self.images, files[i]), caps[i]) for i in sorted(files)])


class KarpathySpec(_Spec):
    """Karpathy's split files (`dataset_coco.json`, `dataset_flickr30k.json`): test is 5k / 1k images."""

    format: Literal["karpathy"]
    file: ExistingFile
    images: ExistingDir  # COCO: the folder holding val2014/ (each entry's filepath); Flickr30k: the images
    split: Literal["train", "val", "test", "restval"] = "test"

    def load(self) -> CaptionSet:
        doc = _json(self.file)
        try:
            entries = [im for im in doc["images"] if im["split"] == self.split]
            items = [(os.path.join(self.images, im.get("filepath", ""), im["filename"]), [s["raw"] for s in im["sentences"]]) for im in entries]
        except (KeyError, TypeError) as e:
            raise DataError(f"{self.file}: not a Karpathy split file (images[].split/filename/sentences[].raw): {e!r}") from None
        return build(self.file, self.split, items)


class CaptionListSpec(_Spec):
    """JSONL lines `{"image": path, "captions": [...]}`, or a CSV with `image,caption` (one row per caption)."""

    format: Literal["caption_list"]
    file: ExistingFile
    root: Optional[ExistingDir] = None  # images are relative to it (default: the list's folder)
    split: str = "test"

    def load(self) -> CaptionSet:
        root = self.root or os.path.dirname(self.file)
        text = read_text(self.file)
        grouped: dict[str, list[str]] = {}
        if self.file.endswith(".csv"):
            reader = csv.DictReader(io.StringIO(text))
            if not reader.fieldnames or not {"image", "caption"} <= set(reader.fieldnames):
                raise DataError(f"{self.file}: a caption CSV needs the header image,caption")
            for row in reader:
                grouped.setdefault(row["image"], []).append(row["caption"])
        else:
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    image, caps = rec["image"], rec["captions"]
                except (ValueError, KeyError, TypeError):
                    raise DataError(f"{self.file}:{n}: not a JSON object with image and captions") from None
                grouped.setdefault(image, []).extend([caps] if isinstance(caps, str) else caps)
        return build(self.file, self.split, [(os.path.join(root, k), v) for k, v in grouped.items()])


COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (235, 210, 40), "purple": (140, 60, 170), "orange": (240, 140, 30)}
SHAPES = ("square", "circle", "triangle")
PLACES = ("top left", "top right", "bottom left", "bottom right")


def draw_shape(d: ImageDraw.ImageDraw, shape: str, box: tuple, fill) -> None:
    """A filled square, circle or (upward) triangle in box (x0, y0, x1, y1)."""
    if shape == "square":
        d.rectangle(box, fill=fill)
    elif shape == "circle":
        d.ellipse(box, fill=fill)
    else:
        d.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=fill)


class SyntheticCaptionsSpec(_Spec):
    """Generated shapes with one to five captions each, written once (offline smoke and tests)."""

    format: Literal["captions_synthetic"]
    n: int = Field(24, gt=0, le=len(COLOURS) * len(SHAPES) * len(PLACES))
    size: int = Field(64, gt=7)
    seed: int = 0
    root: Optional[SuitePath] = None  # default: $BENCH_CACHE/datasets/captions-<n>-<size>-<seed>
    split: Literal["test"] = "test"

    def load(self) -> CaptionSet:
        root = Path(self.root) if self.root else cache_dir() / "datasets" / f"captions-{self.n}-{self.size}-{self.seed}"
        if not (root / ".complete").exists():
            self._write(root)
        return CaptionListSpec(format="caption_list", file=str(root / "captions.jsonl"), split=self.split).load()

    def _write(self, root: Path) -> None:
        rng = np.random.default_rng(self.seed)
        combos = [(c, s, p) for c in COLOURS for s in SHAPES for p in PLACES]
        picks = rng.permutation(len(combos))[: self.n]
        tmp = root.with_name(root.name + f".tmp{os.getpid()}")
        (tmp / "images").mkdir(parents=True, exist_ok=True)
        lines = []
        for i, j in enumerate(picks):
            colour, shape, place = combos[j]
            img = Image.new("RGB", (self.size, self.size), (245, 245, 245))
            d, h = ImageDraw.Draw(img), self.size // 2
            x0, y0 = (h if "right" in place else 0) + 4, (h if "bottom" in place else 0) + 4
            box = (x0, y0, x0 + h - 8, y0 + h - 8)
            draw_shape(d, shape, box, COLOURS[colour])
            name = f"images/{i:04d}.png"
            img.save(tmp / name)
            phrasings = [
                f"a {colour} {shape} in the {place}",
                f"a {shape} coloured {colour}, {place}",
                f"{place}: one {colour} {shape}",
                f"a picture of a {colour} {shape} at the {place}",
                f"the {place} corner holds a {colour} {shape}",
            ]
            lines.append(json.dumps({"image": name, "captions": phrasings[: 1 + i % 5]}))
        (tmp / "captions.jsonl").write_text("\n".join(lines) + "\n")
        (tmp / ".complete").write_text(f"{self.n} shapes, seed {self.seed}\n")
        _publish(tmp, root)
