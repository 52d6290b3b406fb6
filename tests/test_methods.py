"""The methods papers publish: resolution sweeps, weighted prompt ensembles, label hierarchies, few-shot probes."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.probes import l2_normalize, zpe_weights

TESTS = Path(__file__).parent


def run(path, out):
    return CliRunner().invoke(app, ["run", str(path), "--out", str(out)])


def rows(out) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(Path(out).glob("m/*/rows/*.parquet"))], ignore_index=True)


def suite(tmp_path, models: str, tasks: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(f"name: m\ndefaults: {{device: cpu, batch_size: 8, num_workers: 0, seed: 0}}\nmodels:\n{models}tasks:\n{tasks}")
    return p


def test_resolution_sweep_of_a_vit_at_two_resolutions(tmp_path, small_folder):
    vit = "  - name: vit\n    adapter: timm\n    arch: vit_tiny_patch16_224\n    num_classes: 3\n    kwargs: {img_size: 32, dynamic_img_size: true}\n    preprocess: {crop_pct: 1.0}\n"
    fixed = "  - name: vit-fixed\n    adapter: timm\n    arch: vit_tiny_patch16_224\n    num_classes: 3\n    kwargs: {img_size: 32}\n    preprocess: {crop_pct: 1.0}\n"
    task = f"  - name: res\n    type: classification\n    resolutions: [32, 48]\n    dataset: {{format: imagefolder, root: {small_folder}}}\n"
    r = run(suite(tmp_path, vit + fixed, task), tmp_path / "res")
    df = rows(tmp_path / "res")
    ok = df[df.model == "vit"]
    assert set(ok.metric) == {"top1@32", "top1@48", "mean_per_class_recall@32", "mean_per_class_recall@48"} and (ok.status == "ok").all()
    # the two resolutions really ran different inputs: position embeddings interpolated by timm
    preds = pd.read_parquet(next(p for p in (tmp_path / "res").glob("m/*/predictions/*.parquet") if "resolution" in pd.read_parquet(p)))
    assert sorted(preds.resolution.unique()) == [32, 48]
    a, b = (preds[preds.resolution == r].score.to_numpy() for r in (32, 48))
    assert not np.allclose(a, b)
    bad = df[df.model == "vit-fixed"]
    assert r.exit_code == 1 and "cannot run at 48px" in bad.error.iloc[0] and "dynamic_img_size" in bad.error.iloc[0]
    # compare --format html plots accuracy against resolution
    html = tmp_path / "c.html"
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "res" / "m"), "--format", "html", "-o", str(html)])
    assert r.exit_code == 0, r.output
    text = html.read_text()
    assert "<svg" in text and "accuracy vs resolution" in text and "vit" in text


def test_zpe_weights_equal_their_formula_on_a_small_case():
    # 2 classes, 2 prompts, 2-d embeddings; test images, reference images
    t = np.array([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [1.0, -1.0]]])  # [C, P, D]
    x = np.array([[1.0, 0.2], [0.1, 1.0]])
    r = np.array([[1.0, 1.0], [1.0, -1.0]])
    emb, w, s = zpe_weights(x, r, t.reshape(4, 2), num_classes=2, num_templates=2, scale=10.0, temperature=2.0)
    tn, xn, rn = l2_normalize(t), l2_normalize(x), l2_normalize(r)
    want_s = []
    for p in range(2):
        bias = 10 * np.array([np.mean([rn[m] @ tn[c, p] for m in range(2)]) for c in range(2)])
        want_s.append(np.mean([max(10 * xn[i] @ tn[c, p] - bias[c] for c in range(2)) for i in range(2)]))
    want_w = np.exp(np.array(want_s) / 2) / np.exp(np.array(want_s) / 2).sum()
    np.testing.assert_allclose(s, want_s, rtol=0, atol=1e-12)
    np.testing.assert_allclose(w, want_w, rtol=0, atol=1e-12)
    want_emb = l2_normalize(want_w[0] * tn[:, 0] + want_w[1] * tn[:, 1])
    np.testing.assert_allclose(emb, want_emb, rtol=0, atol=1e-12)


def test_zero_shot_zpe_through_a_run_records_weights_and_template_hash(tmp_path, small_folder):
    clip = "  - name: clip\n    adapter: open_clip\n    arch: ViT-S-32\n    image_size: 32\n"
    pool = tmp_path / "templates.txt"
    pool.write_text("a photo of a {}.\na drawing of a {}.\na {} in the wild.\n")
    task = (
        f"  - name: zs\n    type: classification\n    protocol: zero_shot\n    dataset: {{format: imagefolder, root: {small_folder}}}\n"
        f"    zero_shot: {{templates_file: {pool}, weighting: zpe, reference: {{format: generated_noise, n: 8, size: 32}}}}\n"
    )
    r = run(suite(tmp_path, clip, task), tmp_path / "res")
    assert r.exit_code == 0, r.output
    meta = json.loads(rows(tmp_path / "res").meta.iloc[0])
    assert meta["weighting"] == "zpe" and len(meta["prompt_weights"]) == 3 and abs(sum(meta["prompt_weights"]) - 1) < 1e-5
    assert len(meta["templates_sha256"]) == 16


def test_label_hierarchy_reports_fine_and_coarse(tmp_path, small_folder):
    from bench.data.images import ImageFolderSpec
    from bench.tasks.classification import coarse_index

    split = ImageFolderSpec(format="imagefolder", root=str(small_folder)).load("test")
    m = tmp_path / "coarse.csv"
    m.write_text("cat,mammal\ndog,mammal\nfox,mammal\n")
    assert coarse_index(str(m), split).tolist() == [0, 0, 0]
    m.write_text("cat,pet\ndog,pet\nfox,wild\n")
    assert coarse_index(str(m), split).tolist() == [0, 0, 1]
    j = tmp_path / "coarse.json"
    j.write_text(json.dumps({"cat": "pet", "dog": "pet"}))
    with pytest.raises(Exception, match="no coarse class for 1 fine classes \\(fox\\)"):
        coarse_index(str(j), split)
    tiny = f"  - name: tiny\n    adapter: python\n    factory: tests.factories:tiny\n    python_path: [{TESTS.parent}]\n    capabilities: [image_logits]\n    preprocess: {{input_size: 16}}\n"
    task = f"  - name: h\n    type: classification\n    hierarchy: {m}\n    dataset: {{format: imagefolder, root: {small_folder}}}\n"
    r = run(suite(tmp_path, tiny, task), tmp_path / "res")
    assert r.exit_code == 0, r.output
    df = rows(tmp_path / "res").set_index("metric")
    preds = pd.read_parquet(next((tmp_path / "res").glob("m/*/predictions/*.parquet")))
    fine = np.stack(preds.topk)[:, 0]
    coarse = np.array([0, 0, 1])
    assert df.value["top1"] == pytest.approx(np.mean(fine == preds.label))
    assert df.value["coarse/top1"] == pytest.approx(np.mean(coarse[fine] == coarse[preds.label]))


def test_few_shot_probe_mean_and_std_over_draws(tmp_path, small_folder):
    rn = "  - name: rn\n    adapter: timm\n    arch: resnet10t\n    num_classes: 0\n    preprocess: {input_size: 16}\n"
    task = f"  - name: fs\n    type: classification\n    protocol: few_shot\n    few_shot: {{shots: 2, seeds: 3}}\n    dataset: {{format: imagefolder, root: {small_folder}, train_split: train}}\n"
    r = run(suite(tmp_path, rn, task), tmp_path / "res")
    assert r.exit_code == 0, r.output
    df = rows(tmp_path / "res").set_index("metric")
    meta = json.loads(df.meta.iloc[0])
    draws = np.asarray(meta["top1_per_draw"])
    assert len(draws) == 3 and meta["shots"] == 2
    assert df.value["top1"] == pytest.approx(draws.mean()) and meta["std_over_draws"]["top1"] == pytest.approx(draws.std(ddof=1))
    # the interval is over test images of the draws' mean hit rate, and brackets the mean
    assert df.ci_method["top1"].startswith("bootstrap(unit=image") and df.ci_low["top1"] <= df.value["top1"] <= df.ci_high["top1"]
    preds = pd.read_parquet(next((tmp_path / "res").glob("m/*/predictions/*.parquet")))
    assert sorted(preds.draw.unique()) == [0, 1, 2]
