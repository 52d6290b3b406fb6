"""The ood task end to end on generated data: rows, conventions, sweep, presets and bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.errors import SuiteError
from bench.jobs import expand
from bench.metrics.ood import CONVENTION, ood_metrics
from bench.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent


def suite_text(
    extra_task: str = "", postprocessors: str = "[msp, energy, {name: knn, k: 5}, {name: vim, dim: 4}, {name: react}, {name: odin, epsilon: 0.001}]"
) -> str:
    return f"""\
name: o
defaults: {{device: cpu, batch_size: 64, num_workers: 0, seed: 0, limit: 60}}
models:
  - name: tiny
    adapter: python
    factory: tests.factories:tiny
    kwargs: {{num_classes: 3}}
    python_path: [{ROOT}]
    capabilities: [image_logits, image_features, linear_head, input_gradients]
    preprocess: {{input_size: 16, crop_pct: 1.0}}
tasks:
  - name: ood
    type: ood
    dataset: {{format: sklearn_digits, digits: [0, 1, 2]}}
    near: [{{name: digits-3-5, dataset: {{format: sklearn_digits, digits: [3, 4, 5]}}}}]
    far:
      - {{name: noise, dataset: {{format: generated_noise, n: 40}}}}
      - {{name: blobs, dataset: {{format: generated_noise, kind: texture, n: 30}}}}
    postprocessors: {postprocessors}
{extra_task}"""


def run(tmp_path, text, *args):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    r = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), *args])
    rows = pd.concat([pd.read_parquet(p) for p in (tmp_path / "out" / "o").glob("*/rows/*.parquet")]) if (tmp_path / "out" / "o").exists() else None
    return r, rows


def test_ood_rows_and_rescoring(tmp_path):
    r, rows = run(tmp_path, suite_text())
    assert r.exit_code == 0, r.output
    assert (rows.status == "ok").all()
    top1 = rows[rows.metric == "top1"]
    assert len(top1) == 1 and top1.method.isna().all() and top1.n.iat[0] == 60
    ood = rows[rows.method.notna()]
    assert set(ood.method) == {"msp", "energy", "knn", "vim", "react", "odin"}
    assert (ood.convention == CONVENTION).all()
    per_method = 3 * 4 + 2 * 4  # 3 sets, near and far means
    assert len(ood) == 6 * per_method
    assert set(ood[ood.split == "mean"].dataset) == {"near", "far"}
    # per-sample scores re-score to the stored rows, and group means are the mean of their sets
    preds = pd.read_parquet(next((tmp_path / "out" / "o").glob("*/predictions/*.parquet")))
    for method in ("knn", "odin"):
        p = preds[preds.method == method]
        got = ood_metrics(p[p.set == "id"].score, p[p.set == "noise"].score)
        stored = ood[(ood.method == method) & (ood.dataset == "noise")].set_index("metric").value
        for m, v in got.items():
            assert stored[m] == pytest.approx(v, abs=1e-12)
        far = ood[(ood.method == method) & (ood.split == "far")].groupby("metric").value.mean()
        far_mean = ood[(ood.method == method) & (ood.dataset == "far")].set_index("metric").value
        for m in far.index:
            assert far_mean[m] == pytest.approx(far[m], abs=1e-12)


def test_sweep_picks_and_records(tmp_path):
    text = suite_text(postprocessors="[{name: knn, sweep: {k: [1, 3, 7]}}]").replace(
        "    postprocessors:",
        "    sweep_data: {id_val: {format: sklearn_digits, digits: [0, 1, 2]}, ood_val: {format: generated_noise, n: 20, seed: 5}}\n    postprocessors:",
    )
    r, rows = run(tmp_path, text)
    assert r.exit_code == 0, r.output
    import json

    meta = json.loads(rows[rows.method == "knn"].meta.iat[0])["methods"]["knn"]
    tried = meta["sweep"]
    assert [t["hparams"]["k"] for t in tried] == [1, 3, 7]
    assert meta["hparams"]["k"] == max(tried, key=lambda t: t["val_AUROC"])["hparams"]["k"]


def test_validation_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(suite_text(postprocessors="[msp, {name: knnn}, {name: knn, kk: 3}]"))
    with pytest.raises(SuiteError) as e:
        load_suite(path)
    text = "\n".join(e.value.problems)
    assert "unknown postprocessor 'knnn' (did you mean 'knn'?)" in text
    assert "postprocessor 'knn' has no hyperparameter 'kk' (did you mean 'k'?)" in text
    assert all(p.startswith(f"{path}:") for p in e.value.problems)
    path.write_text(suite_text(postprocessors="[{name: energy, sweep: {temperature: [1, 2]}}]"))
    with pytest.raises(SuiteError, match="a postprocessor sweep needs sweep_data"):
        load_suite(path)


def test_capabilities_decide_pairs(tmp_path):
    text = suite_text().replace("capabilities: [image_logits, image_features, linear_head, input_gradients]", "capabilities: [image_logits, image_features]")
    text = text.replace("  - name: ood\n", "  - name: ood\n    models: [tiny]\n")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError, match="model lacks input_gradients, linear_head"):
        expand(load_suite(path))


def test_preset_expands_to_openood_layout(tmp_path):
    root = tmp_path / "openood"
    lists = root / "benchmark_imglist" / "imagenet"
    lists.mkdir(parents=True)
    for stem in (
        "train_imagenet",
        "test_imagenet",
        "val_imagenet",
        "val_openimage_o",
        "test_ssb_hard",
        "test_ninco",
        "test_inaturalist",
        "test_textures",
        "test_openimage_o",
    ):
        (lists / f"{stem}.txt").write_text("a/b.JPEG 0\n")
    for d in ("images_largescale", "images_classic"):
        (root / d).mkdir()
    path = tmp_path / "p.yaml"
    path.write_text(suite_text().split("tasks:")[0] + f"tasks:\n  - {{name: in1k-ood, type: ood, preset: imagenet1k, root: {root}, postprocessors: [msp]}}\n")
    task = load_suite(path).tasks[0]
    assert [s.name for s in task.near] == ["ssb_hard", "ninco"]
    assert [s.name for s in task.far] == ["inaturalist", "textures", "openimage_o"]
    assert task.dataset.file == str(lists / "test_imagenet.txt") and task.dataset.train_file == str(lists / "train_imagenet.txt")
    assert task.far[1].dataset.root == str(root / "images_classic")  # Textures lives with the classic sets
    assert task.sweep_data.ood_val.file == str(lists / "val_openimage_o.txt")
    # a missing list is a validation error naming the path
    (lists / "test_ninco.txt").unlink()
    with pytest.raises(SuiteError, match="test_ninco.txt"):
        load_suite(path)


def test_bad_ood_inputs_fail_the_job_with_one_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    text = suite_text(postprocessors="[msp]").replace(
        "{name: noise, dataset: {format: generated_noise, n: 40}}", f"{{name: noise, dataset: {{format: list, file: {empty}}}}}"
    )
    r, rows = run(tmp_path, text)
    assert r.exit_code == 1
    assert rows.error.iat[0] == f"{empty}: image list is empty"
    # NaN outputs
    text = suite_text(postprocessors="[msp]").replace("factory: tests.factories:tiny", "factory: tests.factories:nan_logits")
    (tmp_path / "n").mkdir()
    r, rows = run(tmp_path / "n", text)
    assert r.exit_code == 1 and rows.error.iat[0] == "model 'tiny' produced NaN in image_logits"


def test_identical_ood_set_is_chance(tmp_path):
    text = suite_text(postprocessors="[msp, {name: knn, k: 3}]").replace(
        "near: [{name: digits-3-5, dataset: {format: sklearn_digits, digits: [3, 4, 5]}}]",
        "near: [{name: same, dataset: {format: sklearn_digits, digits: [0, 1, 2]}}]",
    )
    r, rows = run(tmp_path, text)
    assert r.exit_code == 0, r.output
    same = rows[(rows.dataset == "same")].set_index(["method", "metric"]).value
    assert same[("msp", "AUROC")] == pytest.approx(0.5, abs=1e-12) and same[("msp", "FPR95")] == 1.0
    assert np.isfinite(same.to_numpy()).all()


def test_adding_a_postprocessor_reuses_the_forward_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))  # other tests fill the shared cache with the same outputs
    first = suite_text(postprocessors="[msp, {name: knn, k: 3}, {name: odin, epsilon: 0.001}]")
    r, rows = run(tmp_path, first)
    assert r.exit_code == 0 and rows.samples_per_s.notna().all()  # first run: real forward passes
    # the new methods need only features, logits and ODIN scores already computed for these splits
    r, rows = run(tmp_path, first.replace("postprocessors: [msp,", "postprocessors: [msp, energy, mahalanobis, {name: vim, dim: 4}, react,"))
    assert r.exit_code == 0, r.output
    latest = rows[rows.started_at == rows.started_at.max()]
    assert {"energy", "mahalanobis", "vim", "react"} <= set(latest.method)
    assert latest.samples_per_s.isna().all()  # every output came from the cache: no forward pass ran


def test_two_settings_of_one_method_need_labels(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(suite_text(postprocessors="[{name: knn, k: 1}, {name: knn, k: 5}]"))
    with pytest.raises(SuiteError, match="postprocessor 'knn' is listed twice; give each setting its own label"):
        load_suite(path)
    r, rows = run(tmp_path, suite_text(postprocessors="[{name: knn, k: 1, label: knn-1}, {name: knn, k: 5, label: knn-5}]"))
    assert r.exit_code == 0, r.output
    assert set(rows.method.dropna()) == {"knn-1", "knn-5"}
    auroc = rows[(rows.metric == "AUROC") & (rows.dataset == "noise")].set_index("method").value
    assert auroc["knn-1"] != auroc["knn-5"]
