"""Data-parallel sharding through torch.distributed: 2 ranks (gloo, CPU, via torchrun) equal 1 rank exactly."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from bench.cli import app

TESTS = Path(__file__).parent


def suite(data) -> str:
    return f"""\
name: t
defaults: {{device: cpu, batch_size: 3, num_workers: 0, seed: 0}}
models:
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
"""


def test_two_ranks_equal_one_rank_and_blocks_are_shared(small_folder, make_suite, tmp_path, monkeypatch):
    from bench import dist

    monkeypatch.setattr(dist, "BLOCK", 4)  # several blocks per split even on tiny data (in this process)
    s = make_suite(suite(small_folder))
    one = CliRunner().invoke(app, ["run", str(s), "--out", str(tmp_path / "one"), "--no-cache"])
    assert one.exit_code == 0, one.output
    env = {**os.environ, "BENCH_BLOCK": "4", "BENCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(TESTS.parent)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "bench",
        "run",
        str(s),
        "--out",
        str(tmp_path / "two"),
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a = pd.read_parquet(tmp_path / "one" / "t" / "leaderboard.parquet").sort_values(["task", "metric"])
    b = pd.read_parquet(tmp_path / "two" / "t" / "leaderboard.parquet").sort_values(["task", "metric"])
    assert len(b) == len(a) == 4 and (b.status == "ok").all()  # top1 and mean_per_class_recall of head and knn (3 classes: no top5)
    np.testing.assert_array_equal(a.value.to_numpy(), b.value.to_numpy())
    assert len(list((tmp_path / "two" / "t").glob("*/rows/*.parquet"))) == 2  # rank 0 alone wrote rows
    # the per-sample predictions are the same, in the same order: gathered once, no padding duplicates
    pa = {p.name: pd.read_parquet(p) for p in (tmp_path / "one" / "t").glob("*/predictions/*.parquet")}
    pb = {p.name: pd.read_parquet(p) for p in (tmp_path / "two" / "t").glob("*/predictions/*.parquet")}
    assert pa.keys() == pb.keys()
    for k in pa:
        pd.testing.assert_frame_equal(pa[k].drop(columns=["path"]), pb[k].drop(columns=["path"]))
    # blocks are cached by index, not world size: a 1-rank rerun on the same cache recomputes nothing
    env1 = {**env}
    r = subprocess.run([sys.executable, "-m", "bench", "run", str(s), "--out", str(tmp_path / "three")], env=env1, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    c = pd.read_parquet(tmp_path / "three" / "t" / "leaderboard.parquet")
    assert c.samples_per_s.isna().all()  # no forward pass ran
