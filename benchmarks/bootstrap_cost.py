"""What the uncertainty columns cost: each job with its bootstrap against the same job without, in one run.

    python benchmarks/bootstrap_cost.py                 # COCO 5,000 images x 100 dets; classification 10,000 samples
    python benchmarks/bootstrap_cost.py --images 500    # a fast look

COCO: validate + evaluate + accumulate + stats (the detection job's scoring) vs the same plus the
image bootstrap (evaluate once, re-accumulate per resample). Classification: a 1,000-class top-1/top-5
scoring of N samples (the job's metric step, after the forward pass) vs the same plus the bootstrap;
the ratio for a whole classification job is also shown against a timed resnet18 CPU forward pass.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.coco_eval import make  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def coco(images: int, resamples: int) -> None:
    from bench.metrics import coco as M
    from bench.metrics.coco_bootstrap import image_bootstrap
    from bench.metrics.uncertainty import Spec

    gt, dets = make(images, 100, 80, lvis=False)

    def plain():
        ev = M.evaluate(M.load_gt(copy.deepcopy(gt)), M.validate_results(gt, dets, "bbox", "dets"), "bbox")
        return M.coco_stats(ev)

    def with_ci():
        ev = M.evaluate(M.load_gt(copy.deepcopy(gt)), M.validate_results(gt, dets, "bbox", "dets"), "bbox", keep_matches=True)
        return M.coco_stats(ev), image_bootstrap(ev, M.coco_stats, Spec(resamples=resamples))

    t0, a = timed(plain)
    t1, (b, iv) = timed(with_ci)
    assert a == b
    print(f"COCO bbox, {images} images x 100 dets, {resamples} resamples: scoring {t0:.1f} s, with bootstrap {t1:.1f} s -> {t1 / t0:.1f}x")
    print(f"  AP {100 * a['AP']:.2f} (95% CI {100 * iv['AP'].low:.2f} to {100 * iv['AP'].high:.2f}, se {100 * iv['AP'].stderr:.2f})")


def classification(n: int, resamples: int) -> None:
    import torch
    import timm

    from bench.metrics.classification import topk_correct, topk_indices
    from bench.metrics.uncertainty import Spec, proportions

    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=(n, 1000)).astype(np.float32), rng.integers(0, 1000, n)

    def plain():
        return {k: v.mean() for k, v in topk_correct(topk_indices(scores, 5), labels).items()}

    def with_ci():
        c = topk_correct(topk_indices(scores, 5), labels)
        return {k: v.mean() for k, v in c.items()}, proportions(c, Spec(resamples=resamples))

    t0, _ = timed(plain)
    t1, _ = timed(with_ci)
    model = timm.create_model("resnet18", num_classes=1000).eval()
    x = torch.randn(64, 3, 224, 224)
    with torch.inference_mode():
        model(x)
        tf, _ = timed(lambda: model(x))
    forward = tf / 64 * n
    print(f"classification, {n} samples, {resamples} resamples: metric step {t0:.3f} s, with bootstrap {t1:.3f} s (+{t1 - t0:.2f} s)")
    print(f"  whole job (resnet18 224px CPU forward, {forward:.0f} s est. from a timed batch + metrics): {(forward + t1) / (forward + t0):.4f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--resamples", type=int, default=1000)
    a = ap.parse_args()
    classification(a.samples, a.resamples)
    coco(a.images, a.resamples)
