"""`bench run` end to end: rows with provenance, predictions, resume, --force and failures."""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from bench.cli import app
from bench.results import COLUMNS
from tests.factories import Tiny

TESTS = Path(__file__).parent


def suite_text(data: Path, extra_models: str = "", workers: int = 0) -> str:
    return f"""\
name: t
defaults: {{device: cpu, batch_size: 4, num_workers: {workers}, seed: 0}}
models:
  - name: tiny
    adapter: python
    factory: tests.factories:tiny
    python_path: [{TESTS.parent}]
    capabilities: [image_logits, image_features]
    preprocess: {{input_size: 16, crop_pct: 1.0}}
  - name: rn
    adapter: timm
    arch: resnet10t
    num_classes: 3
    preprocess: {{input_size: 16}}
{extra_models}tasks:
  - name: head
    type: classification
    dataset: {{format: imagefolder, root: {data}, train_split: train}}
  - name: knn
    type: classification
    protocol: knn
    knn: {{k: 3}}
    dataset: {{format: imagefolder, root: {data}, train_split: train}}
"""


def run(*args):
    r = CliRunner().invoke(app, ["run", *map(str, args)])
    return r


def rows_of(out: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(out.glob("t/*/rows/*.parquet"))], ignore_index=True)


def test_run_writes_rows_predictions_and_resumes(small_folder, make_suite, tmp_path):
    suite = make_suite(suite_text(small_folder))
    out = tmp_path / "results"
    r = run(suite, "--out", out)
    assert r.exit_code == 0, r.output
    rows = rows_of(out)
    assert list(rows.columns) == COLUMNS
    assert len(rows) == 2 * 2 * 2  # models × tasks × (top1, mean_per_class_recall); 3 classes, so no top5
    assert set(rows.metric) == {"top1", "mean_per_class_recall"}
    ok = rows[rows.status == "ok"]
    assert len(ok) == len(rows)
    for col in ("bench_version", "job_hash", "task_hash", "torch", "timm", "open_clip", "device", "precision", "started_at"):
        assert ok[col].notna().all(), col
    assert (ok.device == "cpu").all() and (ok.batch_size == 4).all() and (ok.n == 9).all()
    assert (ok.wall_s > 0).all() and (ok.samples_per_s > 0).all()
    # predictions re-score to the stored top1
    run_dir = next(out.glob("t/*/"))
    for job_hash, grp in ok.groupby("job_hash"):
        preds = pd.read_parquet(run_dir / "predictions" / f"{job_hash}.parquet")
        top1 = float((np.stack(preds.topk)[:, 0] == preds.label).mean())
        assert top1 == pytest.approx(grp[grp.metric == "top1"].value.iat[0], abs=1e-12)
    assert (out / "t" / "leaderboard.parquet").exists()

    # rerun: everything resumes
    r = run(suite, "--out", out)
    assert r.exit_code == 0 and r.output.count("skipped") == 4, r.output
    # delete one job's rows: only that job is recomputed
    victim = sorted(run_dir.glob("rows/*.parquet"))[0]
    victim.unlink()
    r = run(suite, "--out", out)
    assert r.exit_code == 0, r.output
    new_dirs = sorted(d for d in out.glob("t/*/") if d != run_dir)
    assert [p.name for p in new_dirs[-1].glob("rows/*.parquet")] == [victim.name]
    # --force recomputes all, with identical numbers
    r = run(suite, "--out", out, "--force")
    assert r.exit_code == 0
    latest = sorted(d for d in out.glob("t/*/"))[-1]
    assert len(list(latest.glob("rows/*.parquet"))) == 4
    again = pd.concat([pd.read_parquet(p) for p in latest.glob("rows/*.parquet")]).sort_values(["job_hash", "metric"])
    first = ok.sort_values(["job_hash", "metric"])
    np.testing.assert_array_equal(again.value.to_numpy(), first.value.to_numpy())


def test_dry_run_lists_jobs(small_folder, make_suite, tmp_path):
    r = run(make_suite(suite_text(small_folder)), "--out", tmp_path / "o", "--dry-run")
    assert r.exit_code == 0
    assert "4 jobs" in r.output and "to run" in r.output
    assert not (tmp_path / "o").exists()


def test_failures_are_recorded_and_others_go_on(small_folder, make_suite, tmp_path):
    out = tmp_path / "results"
    suite = make_suite(suite_text(small_folder))
    assert run(suite, "--out", out).exit_code == 0
    before = {p: p.read_bytes() for p in out.glob("t/*/rows/*.parquet")}

    good = tmp_path / "good.safetensors"
    save_file(Tiny().state_dict(), good)
    misfit = tmp_path / "misfit.safetensors"
    save_file(Tiny(num_classes=7).state_dict(), misfit)
    extra = f"""\
  - name: nan
    adapter: python
    factory: tests.factories:nan_logits
    python_path: [{TESTS.parent}]
    capabilities: [image_logits]
    preprocess: {{input_size: 16}}
  - name: misfit
    adapter: python
    factory: tests.factories:tiny
    python_path: [{TESTS.parent}]
    checkpoint: {misfit}
    capabilities: [image_logits]
  - name: badsha
    adapter: python
    factory: tests.factories:tiny
    python_path: [{TESTS.parent}]
    checkpoint: {good}
    sha256: {"ab" * 32}
    capabilities: [image_logits]
"""
    broken = make_suite(suite_text(small_folder, extra), "broken.yaml")
    r = run(broken, "--out", out)
    assert r.exit_code == 1, r.output
    rows = pd.concat([pd.read_parquet(p) for p in out.glob("t/*/rows/*.parquet")])
    failed = rows[rows.status == "failed"].set_index("model").error
    assert failed["nan"] == "model 'nan' produced NaN in image_logits"
    assert failed["misfit"].startswith(f"{misfit}: checkpoint does not fit factory 'tests.factories:tiny': 2 shape mismatches")
    assert failed["badsha"] == f"{good}: sha256 mismatch: expected {'ab' * 32}, got {hashlib.sha256(good.read_bytes()).hexdigest()}"
    assert all("\n" not in e for e in failed)
    # earlier results intact, and the good jobs of this suite resumed from them
    for p, data in before.items():
        assert p.read_bytes() == data
    assert "FAILED" in r.output


def test_corrupt_image_fails_job_in_worker(small_folder, make_suite, tmp_path):
    bad = small_folder / "val" / "dog" / "1.png"
    bad.write_bytes(b"\x89PNG garbage")
    r = run(make_suite(suite_text(small_folder, workers=2)), "--out", tmp_path / "o")
    assert r.exit_code == 1
    rows = rows_of(tmp_path / "o")
    assert (rows.status == "failed").all()
    assert set(rows.error) == {f"{bad}: corrupt image: cannot identify image file '{bad}'"}


def test_device_fallback_and_override(small_folder, make_suite, tmp_path):
    text = suite_text(small_folder).replace("device: cpu", "device: auto")
    r = run(make_suite(text), "--out", tmp_path / "o", "--limit", "5")
    assert r.exit_code == 0, r.output
    rows = rows_of(tmp_path / "o")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert (rows.device == expected).all() and (rows.n == 5).all()
    if not torch.cuda.is_available():
        r = run(make_suite(text), "--out", tmp_path / "o2", "--device", "cuda")
        assert r.exit_code == 2 and "CUDA is not available" in r.output


def test_label_map_restricts_outputs(small_folder, make_suite, tmp_path):
    """A 5-way model scored on 3 dataset classes through a label map (as ImageNet-R uses 200 of 1000)."""
    from adapters import create_adapter
    from bench.data.images import ImageDataset, eval_transform
    from bench.suite import load_suite

    label_map = tmp_path / "map.txt"
    label_map.write_text("4\n0\n2\n")
    text = suite_text(small_folder).replace("factory: tests.factories:tiny", "factory: tests.factories:tiny\n    kwargs: {num_classes: 5}")
    text = text.replace(
        "    dataset: {format: imagefolder, root: " + str(small_folder) + ", train_split: train}\n  - name: knn",
        f"    label_map: {label_map}\n    models: [tiny]\n    dataset: {{format: imagefolder, root: {small_folder}, train_split: train}}\n  - name: knn",
    )
    suite = make_suite(text)
    r = run(suite, "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    run_dir = next((tmp_path / "o" / "t").glob("*/"))
    rows = rows_of(tmp_path / "o")
    head = rows[(rows.task == "head")]
    preds = pd.read_parquet(run_dir / "predictions" / f"{head.job_hash.iat[0]}.parquet")
    # recompute: the model's 5 logits, columns 4, 0, 2 in that order
    s = load_suite(suite)
    adapter = create_adapter(s.models[0], device="cpu", seed=0)
    ds = ImageDataset(s.tasks[0].dataset.load("test"), eval_transform(16, 1.0, adapter.preprocess.interpolation))
    logits = torch.cat([adapter.image_logits(ds[i][0][None]) for i in range(len(ds))]).numpy()[:, [4, 0, 2]]
    np.testing.assert_array_equal(np.stack(preds.topk)[:, 0], logits.argmax(1))
    assert head.value.iat[0] == pytest.approx((logits.argmax(1) == preds.label.to_numpy()).mean(), abs=1e-12)
    # a map that does not fit the dataset fails the job with one line naming the file
    label_map.write_text("4\n0\n")
    r = run(suite, "--out", tmp_path / "o2")
    assert r.exit_code == 1
    err = rows_of(tmp_path / "o2").query("task == 'head'").error.iat[0]
    assert err.startswith(f"{label_map}: label map has 2 entries")


def test_bf16_autocast_on_cpu(small_folder, make_suite, tmp_path):
    r = run(make_suite(suite_text(small_folder)), "--out", tmp_path / "o", "--precision", "bf16")
    assert r.exit_code == 0, r.output
    rows = rows_of(tmp_path / "o")
    assert (rows.precision == "bf16").all() and (rows.status == "ok").all()


def test_second_run_on_the_same_results_is_refused_while_the_first_holds_the_lock(small_folder, make_suite, tmp_path):
    import fcntl

    suite = make_suite(suite_text(small_folder))
    out = tmp_path / "results"
    (out / "t").mkdir(parents=True)
    with open(out / "t" / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("bench run 20260101T000000-abcd (pid 4242)")
        held.flush()
        r = run(suite, "--out", out)
        assert r.exit_code == 2 and "bench run 20260101T000000-abcd (pid 4242) is writing these results" in r.output
        assert not list((out / "t").glob("*/rows/*.parquet"))  # nothing was written
    r = run(suite, "--out", out)  # released: the run goes ahead
    assert r.exit_code == 0, r.output


def test_out_of_memory_halves_the_batch_and_goes_on(small_folder, make_suite, tmp_path, bench_cache):
    oom = f"""\
name: t
defaults: {{device: cpu, batch_size: auto, num_workers: 0, seed: 0}}
models:
  - name: oom
    adapter: python
    factory: tests.factories:oom_tiny
    python_path: [{TESTS.parent}]
    kwargs: {{fits: 5}}
    capabilities: [image_logits]
    preprocess: {{input_size: 16}}
tasks:
  - name: head
    type: classification
    dataset: {{format: imagefolder, root: {small_folder}, train_split: train}}
"""
    (bench_cache / "batch_sizes.json").unlink(missing_ok=True)
    r = run(make_suite(oom), "--out", tmp_path / "a", "--no-cache")
    assert r.exit_code == 0, r.output
    assert "out of memory" in r.output and "batch size 4" in r.output  # 64 -> 32 -> 16 -> 8 -> 4 fits
    rows = pd.read_parquet(next((tmp_path / "a").glob("t/*/rows/*.parquet")))
    assert (rows.batch_size == 4).all() and (rows.status == "ok").all()
    import json

    assert 4 in json.loads((bench_cache / "batch_sizes.json").read_text()).values()
    # the next run starts from the remembered size: no out-of-memory on the way
    r = run(make_suite(oom), "--out", tmp_path / "b", "--no-cache")
    assert r.exit_code == 0 and "out of memory" not in r.output


def test_decoded_inputs_are_written_once_and_reused_by_the_next_model(small_folder, make_suite, tmp_path, bench_cache, monkeypatch):
    """Two models with the same preprocessing: the second reads the memory-mapped uint8 cache, with the same numbers."""
    from bench import inputs

    two = f"""\
name: t
defaults: {{device: cpu, batch_size: 4, num_workers: 0, seed: 0}}
models:
  - {{name: a, adapter: timm, arch: resnet10t, num_classes: 3, preprocess: {{input_size: 20, crop_pct: 0.9}}}}
  - {{name: b, adapter: timm, arch: resnet18, num_classes: 3, preprocess: {{input_size: 20, crop_pct: 0.9}}}}
tasks:
  - name: head
    type: classification
    dataset: {{format: imagefolder, root: {small_folder}}}
"""
    s = make_suite(two)
    calls = []
    real = inputs.open_cached
    monkeypatch.setattr(inputs, "open_cached", lambda paths, pre: calls.append(real(paths, pre)) or calls[-1])
    r = run(s, "--out", tmp_path / "on", "--no-cache")
    assert r.exit_code == 0, r.output
    assert calls[0] is None and calls[1] is not None  # model a decoded, model b read the cache
    arr = np.load(calls[1].path, mmap_mode="r")
    assert arr.dtype == np.uint8 and arr.shape == (9, 3, 20, 20)
    monkeypatch.setenv("BENCH_DECODED_CACHE", "0")
    r = run(s, "--out", tmp_path / "off", "--no-cache")
    on = pd.read_parquet(tmp_path / "on" / "t" / "leaderboard.parquet").sort_values("model").value.to_numpy()
    off = pd.read_parquet(tmp_path / "off" / "t" / "leaderboard.parquet").sort_values("model").value.to_numpy()
    np.testing.assert_array_equal(on, off)
