"""Time bench's COCO and LVIS scoring against the engines and the official scorers, in one run.

    python benchmarks/coco_eval.py            # COCO: 5,000 images x 100 detections; LVIS: 2,000 x 100
    python benchmarks/coco_eval.py --quick    # 500 / 200 images, for a fast look

COCO: bench (validate + faster-coco-eval + 12 stats + per-category AP) vs faster-coco-eval called
directly vs pycocotools. Target: within 1.2x of faster-coco-eval, at least 4x faster than pycocotools.
LVIS: bench (lvis_style) vs faster-coco-eval vs the lvis 0.5.3 package (np.float restored here only).
Each scorer runs in its own forked process so its peak RSS is its own; the stats are checked equal.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make(n_img: int, dets_per_img: int, n_cat: int, lvis: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    cats = [{"id": k + 1, "name": f"c{k}", **({"frequency": "rcf"[k % 3]} if lvis else {})} for k in range(n_cat)]
    images, anns, dets = [], [], []
    for i in range(n_img):
        iid = i + 1
        W, H = 640, 480
        present = set()
        for _ in range(int(rng.integers(1, 12))):
            c = int(rng.integers(1, n_cat + 1))
            w, h = rng.uniform(8, 300, 2)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            a = {"id": len(anns) + 1, "image_id": iid, "category_id": c, "bbox": [x, y, w, h], "area": float(w * h)}
            if not lvis:
                a["iscrowd"] = int(rng.random() < 0.01)
            anns.append(a)
            present.add(c)
            if len(dets) < (i + 1) * dets_per_img and rng.random() < 0.8:
                j = rng.normal(0, 0.1, 4) * [w, h, w, h]
                dets.append({"image_id": iid, "category_id": c, "bbox": [x + j[0], y + j[1], abs(w + j[2]), abs(h + j[3])], "score": float(rng.random())})
        while len(dets) < (i + 1) * dets_per_img:
            w, h = rng.uniform(4, 200, 2)
            dets.append(
                {
                    "image_id": iid,
                    "category_id": int(rng.integers(1, n_cat + 1)),
                    "bbox": [float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h)), float(w), float(h)],
                    "score": float(rng.random()),
                }
            )
        img = {"id": iid, "width": W, "height": H}
        if lvis:
            img["neg_category_ids"] = [c for c in range(1, n_cat + 1) if c not in present and rng.random() < 0.3]
            img["not_exhaustive_category_ids"] = [c for c in present if rng.random() < 0.1]
        images.append(img)
    return {"images": images, "annotations": anns, "categories": cats}, dets


def bench_coco(gt, dets, gt_path):
    from bench.metrics import coco as M

    ev = M.evaluate(M.load_gt(copy.deepcopy(gt)), M.validate_results(gt, dets, "bbox", "dets"), "bbox")
    M.per_category_ap(ev)
    return list(M.coco_stats(ev).values())


def bench_lvis(gt, dets, gt_path):
    from bench.metrics import coco as M

    ev = M.evaluate(M.load_gt(copy.deepcopy(gt)), M.validate_results(gt, dets, "bbox", "dets"), "bbox", lvis=True)
    return list(M.lvis_stats(ev).values())


def fce(gt, dets, gt_path, lvis=False):
    from faster_coco_eval import COCO, COCOeval_faster

    g = COCO(copy.deepcopy(gt))
    ev = COCOeval_faster(g, g.loadRes(copy.deepcopy(dets)), "bbox", lvis_style=lvis, print_function=lambda *a: None)
    if lvis:
        ev.params.maxDets = [300]
    ev.evaluate(), ev.accumulate(), ev.summarize()
    return list(ev.stats[:12])


def fce_lvis(gt, dets, gt_path):
    return fce(gt, dets, gt_path, lvis=True)


def pycoco(gt, dets, gt_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO(gt_path)
        ev = COCOeval(g, g.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return list(ev.stats)


def lvis_pkg(gt, dets, gt_path):
    import logging

    np.float = float  # lvis 0.5.3 predates numpy 2; this process only
    import lvis

    logging.getLogger("lvis").setLevel(logging.ERROR)
    g = lvis.LVIS(gt_path)
    ev = lvis.LVISEval(g, lvis.LVISResults(g, copy.deepcopy(dets)), "bbox")
    ev.run()
    r = ev.get_results()
    return [r[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR@300")]


def _child(fn, gt, dets, gt_path, q):
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    stats = fn(gt, dets, gt_path)
    dt = time.perf_counter() - t
    q.put((dt, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, [float(s) for s in stats]))


def timed(fn, gt, dets, gt_path):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, gt, dets, gt_path, q))
    p.start()
    out = q.get()
    p.join()
    return out


def compare(title, runs, gt, dets, gt_path, stats_of=None):
    print(f"\n{title}")
    res = {name: timed(fn, gt, dets, gt_path) for name, fn in runs}
    ref = res[runs[0][0]][2]
    for name, (dt, mem, stats) in res.items():
        same = stats_of(name, stats, ref) if stats_of else np.allclose(stats, ref, atol=1e-12, rtol=0)
        print(f"  {name:<18} {dt:7.2f} s   peak +{mem:7.0f} MiB   stats equal to bench: {same}")
    return {k: v[0] for k, v in res.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    n_coco, n_lvis = (500, 200) if a.quick else (5000, 2000)
    with tempfile.TemporaryDirectory() as tmp:
        gt, dets = make(n_coco, 100, 80, lvis=False)
        path = os.path.join(tmp, "coco.json")
        Path(path).write_text(json.dumps(gt))
        t = compare(
            f"COCO bbox: {n_coco} images x 100 detections ({len(dets)} detections, {len(gt['annotations'])} GT)",
            [("bench", bench_coco), ("faster-coco-eval", fce), ("pycocotools", pycoco)],
            gt,
            dets,
            path,
        )
        print(
            f"  bench / faster-coco-eval = {t['bench'] / t['faster-coco-eval']:.2f}x (target <= 1.2)   pycocotools / bench = {t['pycocotools'] / t['bench']:.1f}x (target >= 4)"
        )

        gt, dets = make(n_lvis, 100, 300, lvis=True, seed=1)
        path = os.path.join(tmp, "lvis.json")
        Path(path).write_text(json.dumps(gt))
        # faster-coco-eval's stats array has a different layout: compare AP/AP50 only for it
        same = lambda name, s, ref: np.allclose(s[:2], ref[:2], atol=1e-12, rtol=0) if name == "faster-coco-eval" else np.allclose(s, ref, atol=1e-12, rtol=0)  # noqa: E731
        t = compare(
            f"LVIS bbox: {n_lvis} images x 100 detections",
            [("bench", bench_lvis), ("faster-coco-eval", fce_lvis), ("lvis 0.5.3", lvis_pkg)],
            gt,
            dets,
            path,
            same,
        )
        print(f"  bench / faster-coco-eval = {t['bench'] / t['faster-coco-eval']:.2f}x   lvis / bench = {t['lvis 0.5.3'] / t['bench']:.1f}x")


if __name__ == "__main__":
    main()
