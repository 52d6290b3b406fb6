"""Samples/s of a bench classification job against (a) the bare forward pass and (b) timm's own
evaluation pipeline (timm.data.create_dataset + create_loader, as validate.py uses them), on the
same generated JPEG ImageFolder, model, batch size and loader workers, in one run.

    python benchmarks/classification_throughput.py [--model resnet18] [--images 768] [--device cuda]

Prints each throughput and the ratios bench/timm (target >= 1.0) and bench/bare. The bench job runs
twice: first decoding the JPEGs (which fills the decoded-input cache, bench.inputs), then with that
cache warm, which is the figure to hold against the bare forward pass (target >= 0.9 on a GPU).
The bare pass is timm's benchmark.py inference loop (random input of the model's size, fixed batch,
eval mode, no grad, synchronised on CUDA); benchmark.py itself is a script in timm's repository, not
in the package. bench runs models in channels_last (timm's validate.py and benchmark.py offer it as
--channels-last, off by default); the bare pass is also shown in that format so the data-pipeline
overhead can be read off on its own. The decoded-input cache goes to a temporary BENCH_CACHE.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_jpegs(root: Path, n: int, classes: int = 8, seed: int = 0) -> None:
    """ImageNet-like JPEGs (about 500×375, smooth content plus noise, quality 90)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = int(rng.integers(330, 420)), int(rng.integers(440, 520))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([np.sin(xx / rng.uniform(10, 60) + c) * np.cos(yy / rng.uniform(10, 60)) for c in range(3)], -1)
        img = ((base * 0.5 + 0.5) * 200 + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
        d = root / "val" / f"c{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.jpg", quality=90)


def bare_forward(model, cfg, n, bs, device, channels_last=False) -> float:
    x = torch.randn(bs, *cfg["input_size"], device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(max(1, n // bs)):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return max(1, n // bs) * bs / (time.perf_counter() - t0)


def timm_loop(model, cfg, root, bs, workers, device) -> tuple[float, int]:
    import timm.data

    ds = timm.data.create_dataset("", root=str(root / "val"), split="validation")
    loader = timm.data.create_loader(
        ds,
        input_size=cfg["input_size"],
        batch_size=bs,
        interpolation=cfg["interpolation"],
        mean=cfg["mean"],
        std=cfg["std"],
        num_workers=workers,
        crop_pct=cfg["crop_pct"],
        crop_mode=cfg.get("crop_mode"),
        pin_memory=device.type == "cuda",
        device=device,
        use_prefetcher=device.type == "cuda",
        persistent_workers=False,
    )
    correct = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x, y in loader:
            out = model(x.to(device))
            correct += int((out.argmax(1).cpu() == y.cpu()).sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(ds) / (time.perf_counter() - t0), correct


def bench_job(arch, root, bs, workers, device, out) -> float:
    from bench.cache import OutputCache
    from bench.jobs import expand
    from bench.scheduler import Scheduler
    from bench.suite import load_suite

    suite = Path(out) / "tp.yaml"
    suite.write_text(
        f"name: throughput\ndefaults: {{device: {device.type}, batch_size: {bs}, num_workers: {workers}, seed: 0}}\n"
        f"models:\n  - {{name: m, adapter: timm, arch: {arch}, num_classes: 8}}\n"
        f"tasks:\n  - {{name: head, type: classification, protocol: head, dataset: {{format: imagefolder, root: {root}}}}}\n"
    )
    s = load_suite(suite)
    # no output cache: every run must decode and forward for real
    summary = Scheduler(s, expand(s), Path(out) / "results", force=True, cache=OutputCache(enabled=False)).run(device.type)
    (o,) = summary.outcomes
    if o.status != "ok":
        raise SystemExit(f"bench job failed: {o.error}")
    return o.rows[0]["samples_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--images", type=int, default=768)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    import timm
    import timm.data

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_jpegs(root, args.images)
        torch.manual_seed(0)
        model = timm.create_model(args.model, num_classes=8).eval().to(device)
        cfg = timm.data.resolve_data_config({}, model=model, use_test_size=True)  # as validate.py and bench: the test size (288 px for resnet18)
        print(f"{args.model} on {device}, {args.images} JPEGs at {cfg['input_size'][-1]} px, batch {args.batch_size}, {args.workers} loader workers, torch threads {torch.get_num_threads()}")
        os.environ["BENCH_CACHE"] = str(Path(tmp) / "cache")  # a cold decoded-input cache, not the user's
        bench_sps = bench_job(args.model, root, args.batch_size, args.workers, device, tmp)  # decodes, fills the cache
        warm_sps = bench_job(args.model, root, args.batch_size, args.workers, device, tmp)  # reads it
        timm_sps, _ = timm_loop(model, cfg, root, args.batch_size, args.workers, device)
        bare_sps = bare_forward(model, cfg, args.images, args.batch_size, device)
        bare_cl = bare_forward(model, cfg, args.images, args.batch_size, device, channels_last=True)
    print(f"bare forward      {bare_sps:8.1f} samples/s")
    print(f"bare, channels_last {bare_cl:6.1f} samples/s   (the memory format bench runs in)")
    print(f"timm eval loop    {timm_sps:8.1f} samples/s   ({timm_sps / bare_sps:.2f} of bare)")
    print(f"bench job         {bench_sps:8.1f} samples/s   ({bench_sps / bare_sps:.2f} of bare; decoding the JPEGs)")
    print(f"bench job, warm   {warm_sps:8.1f} samples/s   ({warm_sps / bare_sps:.2f} of bare; decoded-input cache warm)")
    print(f"ratio bench/timm  {bench_sps / timm_sps:.2f}   (target >= 1.0; both decoding)")
    print(f"ratio bench/bare  {bench_sps / bare_sps:.2f}   (bench/bare channels_last {bench_sps / bare_cl:.2f})")
    print(f"ratio bench (decoded-input cache warm)/bare: {warm_sps / bare_sps:.2f}   (target >= 0.9; /bare channels_last {warm_sps / bare_cl:.2f})")


if __name__ == "__main__":
    main()
