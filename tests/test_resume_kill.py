"""Kill -9 at random moments, rerun with any worker count: no duplicate or partial rows, and the
final leaderboard equals the uninterrupted run's."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

TESTS = Path(__file__).parent


def suite(data) -> str:
    return f"""\
name: t
defaults: {{device: cpu, batch_size: 2, num_workers: 0, seed: 0}}
models:
  - name: tiny
    adapter: python
    factory: tests.factories:tiny
    python_path: [{TESTS.parent}]
    capabilities: [image_logits, image_features]
    preprocess: {{input_size: 16}}
  - name: rn
    adapter: timm
    arch: resnet10t
    num_classes: 3
    preprocess: {{input_size: 16}}
tasks:
  - name: head
    type: classification
    dataset: {{format: imagefolder, root: {data}, train_split: train}}
  - name: knn
    type: classification
    protocol: knn
    knn: {{k: 3}}
    dataset: {{format: imagefolder, root: {data}, train_split: train}}
  - name: linear
    type: classification
    protocol: linear_probe
    dataset: {{format: imagefolder, root: {data}, train_split: train}}
"""


def board(out: Path) -> pd.DataFrame:
    df = pd.read_parquet(out / "t" / "leaderboard.parquet")
    return df[["model", "task", "metric", "status", "value"]].sort_values(["model", "task", "metric"]).reset_index(drop=True)


def bench(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "bench", "run", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_9_then_resume_equals_an_uninterrupted_run(small_folder, make_suite, tmp_path, seed):
    s = make_suite(suite(small_folder))
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "BENCH_BLOCK": "2", "BENCH_CACHE": str(tmp_path / "cache")}
    clean = {**env, "BENCH_CACHE": str(tmp_path / "cache-clean")}
    assert bench([str(s), "--out", str(tmp_path / "clean")], clean).wait(timeout=300) == 0
    rng = np.random.default_rng(seed)
    out = tmp_path / "killed"
    for attempt in range(2):  # kill twice at random moments, with one or two workers
        workers = ["--workers", "2"] if (seed + attempt) % 2 else []
        p = bench([str(s), "--out", str(out), *workers], env, start_new_session=True)
        time.sleep(float(rng.uniform(1.0, 8.0)))
        os.killpg(p.pid, signal.SIGKILL)  # the run and any workers, without warning
        p.wait()
    final = ["--workers", "2"] if seed % 2 == 0 else []
    assert bench([str(s), "--out", str(out), *final], env).wait(timeout=300) == 0
    pd.testing.assert_frame_equal(board(out), board(tmp_path / "clean"))
    rows = pd.concat([pd.read_parquet(p) for p in out.glob("t/*/rows/*.parquet")])
    ok = rows[rows.status == "ok"]
    assert not ok.duplicated(["job_hash", "metric"]).any()  # each finished job was written once, never redone
