"""Scale-out figures, each measured in one run on this machine:

    python benchmarks/scaling.py

1. A suite of 8 small CPU jobs (2 small timm models × head/k-NN/linear/few-shot on scikit-learn's
   digits) with `--workers 1` and then `--workers 2`, each from a cold output cache: the speed-up.
2. The same suite run again unchanged: the second run's wall time (everything resumes).
3. The decoded-input cache: on generated JPEGs, a second model with the same preprocessing as the
   first reads the memory-mapped uint8 cache; its samples/s against its bare forward pass on
   tensors already in memory (target >= 0.9), and against decoding the JPEGs again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

SUITE = """\
name: scaling
defaults: {device: cpu, batch_size: 64, num_workers: 0, seed: 0}
models:
  - {name: r18, adapter: timm, arch: resnet18, num_classes: 10, preprocess: {input_size: 48, crop_pct: 1.0}}
  - {name: r26, adapter: timm, arch: resnet26, num_classes: 10, preprocess: {input_size: 48, crop_pct: 1.0}}
tasks:
  - {name: head, type: classification, protocol: head, dataset: {format: sklearn_digits}}
  - {name: knn, type: classification, protocol: knn, dataset: {format: sklearn_digits}}
  - {name: linear, type: classification, protocol: linear_probe, dataset: {format: sklearn_digits}}
  - {name: fewshot, type: classification, protocol: few_shot, few_shot: {shots: 5, seeds: 3}, dataset: {format: sklearn_digits}}
"""


def bench_run(suite: Path, out: Path, cache: Path, *args) -> float:
    env = {**os.environ, "BENCH_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", "run", str(suite), "--out", str(out), *args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def workers_figures(tmp: Path) -> None:
    suite = tmp / "scaling.yaml"
    suite.write_text(SUITE)
    digits = tmp / "digits-cache"
    bench_run(suite, tmp / "warm", digits)  # writes the digits PNGs once, outside the timings
    import shutil

    shutil.rmtree(digits / "outputs", ignore_errors=True)
    shutil.rmtree(digits / "inputs", ignore_errors=True)
    times = {}
    for w in (1, 2):
        cache = tmp / f"cache{w}"
        shutil.copytree(digits / "datasets", cache / "datasets")
        times[w] = bench_run(suite, tmp / f"out{w}", cache, "--workers", str(w))
    again = bench_run(suite, tmp / "out2", tmp / "cache2", "--workers", "2")
    print(f"8 jobs, cold output cache ({os.cpu_count()} cores):")
    print(f"  --workers 1: {times[1]:6.1f} s   --workers 2: {times[2]:6.1f} s   speed-up {times[1] / times[2]:.2f}x (target >= 1.7)")
    print(f"  second run of the unchanged suite: {again:.1f} s (every job resumes)")


def input_cache_figures(tmp: Path, n: int = 1024) -> None:
    import torch
    from PIL import Image

    from bench.cache import OutputCache
    from bench.jobs import expand
    from bench.scheduler import Scheduler
    from bench.suite import load_suite

    os.environ["BENCH_CACHE"] = str(tmp / "ic-cache")
    rng = np.random.default_rng(0)
    root = tmp / "jpegs" / "val"
    for c in range(4):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n // 4):
            small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(small).resize((320, 320), Image.BICUBIC).save(root / f"c{c}" / f"{i}.jpg", quality=90)
    suite = tmp / "ic.yaml"
    suite.write_text(
        f"""name: ic
defaults: {{device: cpu, batch_size: 64, num_workers: 2, seed: 0}}
models:
  - {{name: first, adapter: timm, arch: resnet10t, num_classes: 4, preprocess: {{input_size: 112, crop_pct: 0.875}}}}
  - {{name: second, adapter: timm, arch: resnet14t, num_classes: 4, preprocess: {{input_size: 112, crop_pct: 0.875}}}}
tasks:
  - {{name: head, type: classification, dataset: {{format: imagefolder, root: {tmp / 'jpegs'}}}}}
"""
    )

    def second_rate(decoded: bool) -> float:
        os.environ["BENCH_DECODED_CACHE"] = "1" if decoded else "0"
        s = load_suite(suite)
        plan = expand(s)
        r = Scheduler(s, plan, tmp / f"ic-out-{decoded}", force=True, cache=OutputCache(enabled=False))
        r.run("cpu")
        import pandas as pd

        rows = pd.concat([pd.read_parquet(p) for p in (tmp / f"ic-out-{decoded}" / "ic").glob("*/rows/*.parquet")])
        return float(rows[rows.model == "second"].samples_per_s.iloc[0])

    with_cache = second_rate(True)
    without = second_rate(False)
    # the bare forward of the second model on the same uint8 inputs, already in memory
    from adapters.timm import TimmAdapter, TimmArgs

    a = TimmAdapter(TimmArgs(name="second", arch="resnet14t", num_classes=4, preprocess={"input_size": 112, "crop_pct": 0.875}))
    x = torch.randint(0, 256, (n, 3, 112, 112), dtype=torch.uint8)
    a.image_logits(x[:64])  # warm-up
    t = time.perf_counter()
    for i in range(0, n, 64):
        a.image_logits(x[i : i + 64])
    bare = n / (time.perf_counter() - t)
    print(f"decoded-input cache, {n} 320 px JPEGs -> 112 px, second model (resnet14t), 2 loader workers:")
    print(f"  bare forward on in-memory tensors: {bare:7.1f} img/s")
    print(f"  bench, reading the decoded cache:  {with_cache:7.1f} img/s = {with_cache / bare:.2f} of bare (target >= 0.9)")
    print(f"  bench, decoding the JPEGs again:   {without:7.1f} img/s = {without / bare:.2f} of bare")


def main():
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        workers_figures(tmp)
        input_cache_figures(tmp)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
