"""COCO, LVIS and COCO open-vocabulary AP with faster-coco-eval as the engine.

Numbers equal pycocotools' COCOeval (COCO) and the lvis package 0.5.3 (LVIS) on the same
inputs; tests/test_coco_metrics.py proves it. Values are what those scorers return, including
their -1 for a slice with no ground truth (for example APl when no object is large).

Results are validated before scoring so bad input never becomes a quietly wrong number:
unknown image or category ids, non-finite or negative-size boxes, and NaN or missing scores
each raise one DataError naming the source. More detections per image than the scorer's
cap are handled as the official scorer does: COCO keeps the top 100 per (image, category)
inside COCOeval; LVIS keeps the top 300 per image when loading results (LVISResults).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from bench.errors import DataError

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
LVIS_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR300")
COCO_MAX_DETS = (1, 10, 100)
LVIS_MAX_DETS = 300
IOU_TYPES = ("bbox", "segm")


def _example(ids: Iterable) -> str:
    ids = sorted(set(ids), key=str)
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return ", ".join(map(str, ids[:3])) + more


_NUMBER = {int, float}


def _clean_columns(results: list, key: str):
    """(image ids, category ids, scores, geometries) when every detection is well formed, else None.

    Column-wise: type sets and numpy checks over whole columns, not a Python branch per detection.
    """
    try:
        img = [d["image_id"] for d in results]
        cat = [d["category_id"] for d in results]
        score = [d["score"] for d in results]
        geom = [d[key] for d in results]
    except (KeyError, TypeError):
        return None
    if not set(map(type, score)) <= _NUMBER:
        return None
    s = np.asarray(score, dtype=np.float64)
    if not np.isfinite(s).all():
        return None
    if key == "bbox" and results:
        if not set(map(type, geom)) <= {list, tuple} or not set(map(len, geom)) == {4}:
            return None
        if not set(map(type, itertools.chain.from_iterable(geom))) <= _NUMBER:
            return None
        b = np.asarray(geom, dtype=np.float64)
        if not np.isfinite(b).all() or (b[:, 2:] < 0).any():
            return None
    return img, cat, s.tolist(), geom


def validate_results(gt: dict, results: list, iou_type: str, source: str, fresh: bool = True) -> list[dict]:
    """Dicts with only the scored keys; raises DataError on anything a scorer would misread.

    fresh=False lets well-formed input dicts that hold exactly the scored keys be scored as they
    are (the engine writes area and id into them): for a list that is scored once. Otherwise,
    and always for the second of bbox and segm, they are fresh copies.
    """
    if not isinstance(results, list):
        raise DataError(f"{source}: results must be a JSON list of detections, got {type(results).__name__}")
    key = "bbox" if iou_type == "bbox" else "segmentation"
    cols = _clean_columns(results, key)
    if cols is not None:
        img, cat, score, geom = cols
        if not fresh and set(map(len, results)) <= {4}:
            return _check_ids(gt, results, img, cat, source)
        if key == "bbox":
            out = [{"image_id": i, "category_id": c, "score": s, "bbox": g} for i, c, s, g in zip(img, cat, score, geom)]
        else:
            out = [{"image_id": i, "category_id": c, "score": s, key: g} for i, c, s, g in zip(img, cat, score, geom)]
            for r, d in zip(out, results):
                if "bbox" in d:
                    r["bbox"] = d["bbox"]
        return _check_ids(gt, out, img, cat, source)
    # something is malformed: the per-detection pass below finds what, and where, for the message
    out = []
    bad_score, bad_box, neg_box, missing = [], [], [], []
    for i, d in enumerate(results):
        try:
            img, cat, s, geom = d["image_id"], d["category_id"], d["score"], d[key]
        except (KeyError, TypeError):
            missing.append(i)
            continue
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            bad_score.append(i)
            continue
        r = {"image_id": img, "category_id": cat, "score": float(s), key: geom}
        if key == "bbox":
            if not (isinstance(geom, (list, tuple)) and len(geom) == 4 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in geom)):
                bad_box.append(i)
                continue
            if geom[2] < 0 or geom[3] < 0:
                neg_box.append(i)
                continue
        elif "bbox" in d:
            r["bbox"] = d["bbox"]
        out.append(r)
    if missing:
        raise DataError(f"{source}: {len(missing)} detections lack image_id, category_id, score or {key} (first at index {missing[0]})")
    if bad_score:
        raise DataError(f"{source}: {len(bad_score)} detections have a NaN, infinite or non-numeric score (first at index {bad_score[0]})")
    if bad_box:
        raise DataError(f"{source}: {len(bad_box)} detections have a bbox that is not 4 finite numbers [x, y, w, h] (first at index {bad_box[0]})")
    if neg_box:
        raise DataError(f"{source}: {len(neg_box)} detections have a negative box width or height (first at index {neg_box[0]})")
    return _check_ids(gt, out, [r["image_id"] for r in out], [r["category_id"] for r in out], source)


def _check_ids(gt: dict, out: list[dict], img: list, cat: list, source: str) -> list[dict]:
    img_ids = {im["id"] for im in gt["images"]}
    cat_ids = {c["id"] for c in gt["categories"]}
    unknown_img = set(img) - img_ids
    if unknown_img:
        raise DataError(f"{source}: image ids not in the ground truth: {_example(unknown_img)}")
    unknown_cat = set(cat) - cat_ids
    if unknown_cat:
        raise DataError(f"{source}: category ids not in the ground truth: {_example(unknown_cat)} (contiguous indices instead of dataset ids?)")
    return out


def dets_over_cap(results: list[dict], cap: int) -> int:
    """How many images have more than `cap` detections (reported; the scorer applies its own rule)."""
    per = defaultdict(int)
    for r in results:
        per[r["image_id"]] += 1
    return sum(n > cap for n in per.values())


def limit_per_image(results: list[dict], max_dets: int) -> list[dict]:
    """LVISResults.limit_dets_per_image: top `max_dets` by score per image, images in first-seen order."""
    per = defaultdict(list)
    for r in results:
        per[r["image_id"]].append(r)
    out = []
    for anns in per.values():
        if len(anns) > max_dets:
            anns = sorted(anns, key=lambda a: a["score"], reverse=True)[:max_dets]
        out.extend(anns)
    return out


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def load_gt(gt: dict):
    from faster_coco_eval import COCO

    with _quiet():
        return COCO(gt)


def evaluate(
    coco_gt,
    results: list[dict],
    iou_type: str,
    *,
    img_ids: list | None = None,
    lvis: bool = False,
    max_dets: tuple | None = None,
    keep_matches: bool = False,
):
    """Run evaluate + accumulate + summarize and return the COCOeval_faster object.

    `results` must come from validate_results (the engine adds keys to them in place).
    keep_matches keeps the per-image matches for coco_bootstrap (same numbers, a little slower).
    """
    from faster_coco_eval import COCOeval_faster

    if lvis:
        results = limit_per_image(results, LVIS_MAX_DETS)
        max_dets = (LVIS_MAX_DETS,)
    with _quiet():
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval_faster(coco_gt, coco_dt, iou_type, lvis_style=lvis, print_function=lambda *a, **k: None, separate_eval=keep_matches)
        if img_ids is not None:
            ev.params.imgIds = sorted(img_ids)
        ev.params.maxDets = list(max_dets or COCO_MAX_DETS)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def coco_stats(ev) -> dict[str, float]:
    """pycocotools' 12 summary numbers, named, read from ev.eval as its summarize() reads them."""
    d = ev.params.maxDets

    def s(*a, **k) -> float:
        return float(ev._summarize(*a, **k))

    values = [s(1, maxDets=d[-1]), s(1, iouThr=0.5, maxDets=d[-1]), s(1, iouThr=0.75, maxDets=d[-1])]
    values += [s(1, areaRng=a, maxDets=d[-1]) for a in ("small", "medium", "large")]
    values += [s(0, maxDets=m) for m in d[:3]]
    values += [s(0, areaRng=a, maxDets=d[-1]) for a in ("small", "medium", "large")]
    return dict(zip(COCO_STATS, values))


def lvis_stats(ev) -> dict[str, float]:
    """The lvis package's AP…APf and AR@300 (computed from the same accumulated arrays)."""
    m = ev.params.maxDets[-1]

    def s(*a, **k) -> float:
        return float(ev._summarize(*a, **k))

    return {
        "AP": s(1, maxDets=m),
        "AP50": s(1, iouThr=0.5, maxDets=m),
        "AP75": s(1, iouThr=0.75, maxDets=m),
        "APs": s(1, areaRng="small", maxDets=m),
        "APm": s(1, areaRng="medium", maxDets=m),
        "APl": s(1, areaRng="large", maxDets=m),
        "APr": s(1, maxDets=m, freq_group_idx=0),
        "APc": s(1, maxDets=m, freq_group_idx=1),
        "APf": s(1, maxDets=m, freq_group_idx=2),
        f"AR{m}": s(0, maxDets=m),
    }


def _mean_valid(s: np.ndarray) -> float:
    v = s[s > -1]
    return float(np.mean(v)) if v.size else -1.0


def per_category_ap(ev) -> dict:
    """AP@[.5:.95] of each category at area 'all' and the largest maxDets (detectron2's per-category table)."""
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    return {cat: _mean_valid(prec[:, :, k, 0, -1]) for k, cat in enumerate(ev.params.catIds)}


def ap50_over(ev, cat_ids: Iterable) -> float:
    """AP at IoU 0.5 averaged over the given categories, as COCOeval with params.catIds set to them.

    Categories are scored independently, so one evaluation over all categories serves every subset.
    """
    wanted = set(cat_ids)
    idx = [k for k, c in enumerate(ev.params.catIds) if c in wanted]
    t = int(np.where(np.isclose(ev.params.iouThrs, 0.5))[0][0])
    if not idx:
        return -1.0
    return _mean_valid(ev.eval["precision"][t, :, idx, 0, -1])


def ovd_ap50(ev, base_ids: Iterable, novel_ids: Iterable) -> dict[str, float]:
    """OVR-CNN/ViLD's COCO open-vocabulary numbers: AP50 on novel, base and all (base ∪ novel)."""
    base, novel = list(base_ids), list(novel_ids)
    return {"AP50_novel": ap50_over(ev, novel), "AP50_base": ap50_over(ev, base), "AP50_all": ap50_over(ev, base + novel)}
