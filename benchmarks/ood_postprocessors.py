"""Cost of each OOD postprocessor on cached outputs, against the forward pass that produced them.

    python benchmarks/ood_postprocessors.py [--model resnet18] [--size 64]

One backbone, ID = digits 0-4 (train + val), OOD = digits 5-9 and generated noise. The forward pass
(features and logits of every split, one pass each) is timed once; each postprocessor is then fit
and scored on the cached arrays. Prints each postprocessor's time as a fraction of that forward
pass (target: under 5% each). ODIN runs the model again with input gradients, so it is reported apart.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("BENCH_CACHE", tempfile.mkdtemp())
    from torch.utils.data import DataLoader

    from adapters.timm import TimmAdapter, TimmArgs
    from bench.data.images import DigitsSpec, ImageDataset, NoiseSpec, eval_transform
    from bench.metrics.ood import ood_metrics
    from bench.postprocessors import Head, Outputs, create_postprocessor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    args_ = TimmArgs(name="m", adapter="timm", arch=args.model, num_classes=5, preprocess={"input_size": args.size, "crop_pct": 1.0})
    adapter = TimmAdapter(args_, device=device)
    splits = {
        "train": DigitsSpec(format="sklearn_digits", digits=[0, 1, 2, 3, 4]).load("train"),
        "id": DigitsSpec(format="sklearn_digits", digits=[0, 1, 2, 3, 4]).load("test"),
        "near": DigitsSpec(format="sklearn_digits", digits=[5, 6, 7, 8, 9]).load("test"),
        "far": NoiseSpec(format="generated_noise", n=400, size=32).load("test"),
    }
    tf = eval_transform(adapter.preprocess.input_size, 1.0, adapter.preprocess.interpolation)

    def loader(split):
        return DataLoader(ImageDataset(split, tf), batch_size=args.batch_size, num_workers=0)

    # decode once up front so the timings below are model and method work only
    batches = {k: [b for b, _ in loader(v)] for k, v in splits.items()}
    t0 = time.perf_counter()
    outs = {}
    for k, bs in batches.items():
        pairs = [adapter.features_and_logits(b) for b in bs]
        outs[k] = Outputs(
            features=torch.cat([p[0] for p in pairs]).cpu().numpy(), logits=torch.cat([p[1] for p in pairs]).cpu().numpy(), labels=splits[k].labels
        )
    forward = time.perf_counter() - t0
    head = Head(*adapter.linear_head())
    n = sum(len(v) for v in splits.values())
    print(f"{args.model} at {args.size}px on {adapter.device}, {n} images, torch threads {torch.get_num_threads()}")
    print(f"forward pass (features + logits, all splits): {forward:.3f} s")
    methods = {
        "msp": {},
        "maxlogit": {},
        "energy": {},
        "gen": {"M": 5},
        "mahalanobis": {},
        "relative_mahalanobis": {},
        "knn": {"k": 10},
        "vim": {"dim": 32},
        "react": {},
        "ash_p": {},
        "ash_b": {},
        "ash_s": {},
    }
    total = 0.0
    for name, hp in methods.items():
        t0 = time.perf_counter()
        pp = create_postprocessor(name, **hp).fit(outs["train"], head)
        s_id = pp.score(outs["id"])
        auroc = [ood_metrics(s_id, pp.score(outs[g]))["AUROC"] for g in ("near", "far")]
        dt = time.perf_counter() - t0
        total += dt
        print(f"  {name:22s} {dt * 1000:8.1f} ms  {dt / forward:6.1%} of the forward pass   AUROC near/far {auroc[0]:.3f}/{auroc[1]:.3f}")
    print(f"all {len(methods)} postprocessors: {total:.3f} s = {total / forward:.1%} of one forward pass")
    t0 = time.perf_counter()
    for k in ("id", "near", "far"):
        np.concatenate([adapter.odin_scores(b).cpu().numpy() for b in batches[k]])
    odin = time.perf_counter() - t0
    print(f"  odin (runs the model with input gradients, apart): {odin:.3f} s = {odin / forward:.2f}× the forward pass")


if __name__ == "__main__":
    main()
