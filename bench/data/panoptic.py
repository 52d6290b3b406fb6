"""COCO panoptic segmentation: the ground-truth JSON with its PNG folder, and results in the same format.

The format (cocodataset.org/#format-data, panopticapi): a JSON whose `annotations` give, per image,
`image_id`, the `file_name` of its PNG and `segments_info` [{id, category_id, area, iscrowd}], and
whose `categories` give id, name and isthing; each PNG stores a segment id per pixel as
R + 256·G + 256²·B, 0 = VOID. Results are the same annotations (area and iscrowd unused) in a JSON
whose PNGs lie in the folder named like it without `.json` (panopticapi's default), or a folder
holding that one JSON and its PNG folder. Every bad file is one DataError naming it (and the image).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict

from bench.data.coco import read_json
from bench.data.images import read_array
from bench.errors import DataError
from bench.metrics.panoptic import VOID, Segments, rgb2id
from bench.paths import ExistingDir, ExistingFile


def read_id_map(path: str, what: str, size: Optional[tuple[int, int]] = None, against: str = "") -> np.ndarray:
    """An RGB(A) PNG as [H, W] int64 segment ids; missing, unreadable, single-channel or (with `size`, (W, H)) wrong-size files are one DataError."""
    return rgb2id(read_array(path, what, ("RGB", "RGBA"), "RGB segment ids (R + 256·G + 256²·B)", size, against))


def _segments(ann: dict, cat_index: dict, source: str, gt: bool) -> Segments:
    """An annotation's segments_info as arrays; a missing key, id 0, a repeated id or an unknown category is one DataError."""
    info = ann.get("segments_info")
    if not isinstance(info, list):
        raise DataError(f"{source}: no segments_info list")
    keys = ("id", "category_id", "area", "iscrowd") if gt else ("id", "category_id")
    try:
        cols = [[s[k] for s in info] for k in keys]
        ids = np.asarray(cols[0], np.int64).reshape(-1)
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{source}: every segments_info entry needs {', '.join(keys)} (integer ids)") from None
    seen, first = np.unique(ids, return_index=True)
    if seen.size < ids.size:
        dup = int(ids[np.setdiff1d(np.arange(ids.size), first)[0]])
        raise DataError(f"{source}: overlapping segments: id {dup} is listed more than once in segments_info")
    if (ids == VOID).any():
        raise DataError(f"{source}: segment id 0 is VOID and cannot be a segment")
    unknown = [c for c in cols[1] if c not in cat_index]
    if unknown:
        raise DataError(f"{source}: category_id {unknown[0]} is not a ground-truth category")
    cats = np.asarray([cat_index[c] for c in cols[1]], np.int64).reshape(-1)
    if not gt:
        return Segments(ids, cats)
    return Segments(ids, cats, np.asarray(cols[2], np.float64).reshape(-1), np.asarray(cols[3]).reshape(-1) == 1)


@dataclass
class PanopticSplit:
    name: str  # the rows' split
    dataset: str  # the rows' dataset: the annotations file's stem
    annotations: str  # the ground-truth JSON, named in messages
    folder: str  # its PNGs
    categories: list[dict]  # id, name, isthing, in file order
    images: list[dict]  # the ground-truth annotations, in file order

    def __len__(self) -> int:
        return len(self.images)

    def __post_init__(self):
        self.cat_index = {c["id"]: k for k, c in enumerate(self.categories)}
        self.isthing = np.array([c.get("isthing") == 1 for c in self.categories], bool)
        self.image_ids = [a["image_id"] for a in self.images]

    def subset(self, limit: Optional[int], seed: int) -> "PanopticSplit":
        if not limit or limit >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:limit])
        return PanopticSplit(self.name, self.dataset, self.annotations, self.folder, self.categories, [self.images[i] for i in idx])

    def png(self, i: int) -> str:
        return os.path.join(self.folder, self.images[i]["file_name"])

    def ground_truth(self, i: int) -> tuple[np.ndarray, Segments]:
        ann = self.images[i]
        segs = _segments(ann, self.cat_index, f"{self.annotations} (image {ann['image_id']})", gt=True)
        return read_id_map(self.png(i), "ground-truth PNG"), segs


class CocoPanopticSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["coco_panoptic"]
    annotations: ExistingFile  # panoptic_val2017.json
    folder: Optional[ExistingDir] = None  # its PNGs; default: the JSON's path without .json
    split: str = "val"

    def load(self) -> PanopticSplit:
        gt = read_json(self.annotations, "panoptic annotations JSON")
        if not isinstance(gt, dict) or not isinstance(gt.get("annotations"), list) or not isinstance(gt.get("categories"), list):
            raise DataError(f"{self.annotations}: expected a COCO panoptic JSON with 'annotations' and 'categories' lists")
        for c in gt["categories"]:
            if not isinstance(c, dict) or not {"id", "name", "isthing"} <= set(c):
                raise DataError(f"{self.annotations}: every category needs id, name and isthing")
        _check_annotations(gt["annotations"], self.annotations)
        folder = self.folder or os.path.splitext(self.annotations)[0]
        if not os.path.isdir(folder):
            raise DataError(f"{folder}: ground-truth PNG folder not found (set dataset.folder)")
        return PanopticSplit(self.split, Path(self.annotations).stem, self.annotations, folder, gt["categories"], gt["annotations"])


def _check_annotations(anns: list, path: str) -> None:
    seen = set()
    for a in anns:
        if not isinstance(a, dict) or "image_id" not in a or "file_name" not in a:
            raise DataError(f"{path}: every annotation needs image_id, file_name and segments_info")
        if a["image_id"] in seen:
            raise DataError(f"{path}: image {a['image_id']} has more than one annotation")
        seen.add(a["image_id"])


@dataclass
class PanopticPredictions:
    json: str
    folder: str  # the PNGs
    by_image: dict  # image_id → annotation

    def for_split(self, split: PanopticSplit) -> list[dict]:
        """The prediction of each image of the split; missing ones are counted first, then fail."""
        missing = [i for i in split.image_ids if i not in self.by_image]
        if missing:
            raise DataError(f"{self.json}: no prediction for {len(missing)} of {len(split)} images (first: image id {missing[0]})")
        return [self.by_image[i] for i in split.image_ids]

    def segments(self, ann: dict, split: PanopticSplit) -> Segments:
        return _segments(ann, split.cat_index, f"{self.json} (image {ann['image_id']})", gt=False)

    def png(self, ann: dict) -> str:
        return os.path.join(self.folder, ann["file_name"])


def read_predictions(path: str) -> PanopticPredictions:
    """A results JSON ({"annotations": [...]} or a bare list) with its PNG folder, or a folder holding exactly one JSON."""
    if os.path.isdir(path):
        found = sorted(str(p) for p in Path(path).glob("*.json"))
        if len(found) != 1:
            raise DataError(f"{path}: expected one panoptic predictions JSON in the folder, found {len(found)}")
        path = found[0]
    data = read_json(path, "panoptic predictions JSON")
    anns = data.get("annotations") if isinstance(data, dict) else data
    if not isinstance(anns, list):
        raise DataError(f"{path}: expected a COCO panoptic results JSON: {{\"annotations\": [...]}} or a list of annotations")
    _check_annotations(anns, path)
    folder = os.path.splitext(path)[0]
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: prediction PNG folder not found (the folder named like {Path(path).name} without .json)")
    return PanopticPredictions(path, folder, {a["image_id"]: a for a in anns})
