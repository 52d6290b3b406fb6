"""Time bench's COCO and LVIS scoring against the engines and the official scorers, in one run.

    python benchmarks/coco_eval.py            # COCO: 5,000 images x 100 detections; LVIS: 2,000 x 100
    python benchmarks/coco_eval.py --quick    # 500 / 200 images, for a fast look

Engine: bench's metric pass (validate + faster-coco-eval + 12 stats + per-category AP) vs
faster-coco-eval called directly vs pycocotools (COCO) or the lvis 0.5.3 package (LVIS, np.float
restored here only). Each scorer runs in its own forked process so its peak RSS is its own; the
stats are checked equal. Target: within 1.2x of faster-coco-eval, at least 4x faster than pycocotools.

CLI: the whole `bench run` of a suite with one predictions model and one task, in a fresh process
with an empty BENCH_CACHE and `uncertainty: off`, against a fresh process that loads the same two
files and scores them with faster-coco-eval (COCO: 5,000 x 100; LVIS: 2,000 x 300). Target <= 1.1x.
The bootstrap that `uncertainty` adds by default is timed separately (benchmarks/bootstrap_cost.py).
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import resource
import subprocess
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


FCE_SCRIPT = """
import json, sys
from faster_coco_eval import COCO, COCOeval_faster
gt, dets, lvis = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
g = COCO(gt)
ev = COCOeval_faster(g, g.loadRes(dets), "bbox", lvis_style=lvis, print_function=lambda *a: None)
ev.params.maxDets = [300] if lvis else [1, 10, 100]
ev.evaluate(), ev.accumulate(), ev.summarize()
print(json.dumps([float(v) for v in ev.stats[:2]]))
"""


def _wall(cmd, env=None) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return dt, p.stdout


def cli(tmp: str, gt_path: str, dets, lvis: bool):
    """Seconds for `bench run` and for plain faster-coco-eval, each a fresh process on the same files."""
    import pandas as pd

    kind = "lvis" if lvis else "coco"
    dets_path = os.path.join(tmp, f"{kind}_dets.json")
    Path(dets_path).write_text(json.dumps(dets))
    suite = os.path.join(tmp, f"{kind}_cli.yaml")
    Path(suite).write_text(
        f"name: {kind}-cli\nuncertainty: off\nmodels:\n  - name: dets\n    adapter: predictions\n    path: {dets_path}\n"
        f"tasks:\n  - name: {kind}\n    type: {'lvis' if lvis else 'detection'}\n    iou_types: [bbox]\n"
        f"    dataset: {{format: {kind}, annotations: {gt_path}}}\n"
    )
    out = os.path.join(tmp, f"{kind}_res")
    env = {**os.environ, "BENCH_CACHE": os.path.join(tmp, f"{kind}_cache")}
    t_bench, _ = _wall([sys.executable, "-m", "bench", "run", suite, "--out", out], env)
    t_fce, text = _wall([sys.executable, "-c", FCE_SCRIPT, gt_path, dets_path, "1" if lvis else "0"])
    rows = pd.concat([pd.read_parquet(p) for p in Path(out).rglob("leaderboard*.parquet")])
    ap = float(rows.loc[rows.metric == "bbox/AP", "value"].iloc[0])
    same = abs(ap - json.loads(text)[0]) < 1e-12
    return t_bench, t_fce, same


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cli-only", action="store_true", help="time only the whole-run CLI against faster-coco-eval")
    a = ap.parse_args()
    n_coco, n_lvis = (500, 200) if a.quick else (5000, 2000)
    with tempfile.TemporaryDirectory() as tmp:
        gt, dets = make(n_coco, 100, 80, lvis=False)
        path = os.path.join(tmp, "coco.json")
        Path(path).write_text(json.dumps(gt))
        tb, tf, same = cli(tmp, path, dets, lvis=False)
        print(f"\nCOCO CLI: bench run {tb:.2f} s   faster-coco-eval (own process, same files) {tf:.2f} s   AP equal: {same}")
        print(f"  bench run / faster-coco-eval = {tb / tf:.2f}x (target <= 1.1)")
        gl, dl = make(n_lvis, 300, 300, lvis=True, seed=1)
        lpath = os.path.join(tmp, "lvis.json")
        Path(lpath).write_text(json.dumps(gl))
        tb, tf, same = cli(tmp, lpath, dl, lvis=True)
        print(f"LVIS CLI ({n_lvis} x 300): bench run {tb:.2f} s   faster-coco-eval {tf:.2f} s   AP equal: {same}")
        print(f"  bench run / faster-coco-eval = {tb / tf:.2f}x (target <= 1.1)")
        if a.cli_only:
            return
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
