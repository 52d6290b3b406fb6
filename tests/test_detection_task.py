"""Detection tasks end to end: predictions files and detector adapters through `bench run`."""

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.data.coco import ShapesSpec
from examples.shapes_predictions import fake_results

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A 6-image shapes set (COCO and LVIS style) and a results file for each."""
    root = tmp_path_factory.mktemp("shapes")
    out = {}
    for style in ("coco", "lvis"):
        split = ShapesSpec(format="shapes", style=style, n=6, size=96, root=str(root / style)).load()
        dets = root / f"{style}_dets.json"
        dets.write_text(json.dumps(fake_results(split, 0)))
        out[style] = (root / style, dets, split)
    return out


def run(suite: Path, out: Path, *extra):
    return CliRunner().invoke(app, ["run", str(suite), "--out", str(out), *extra])


def rows_of(out: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(out.glob("*/*/rows/*.parquet"))], ignore_index=True)


def write_suite(tmp_path, models: str, tasks: str) -> Path:
    p = tmp_path / "suite.yaml"
    p.write_text(f"name: det\ndefaults: {{device: cpu, num_workers: 0, seed: 0}}\nmodels:\n{models}tasks:\n{tasks}")
    return p


def coco_task(root, name="coco", iou="[bbox, segm]"):
    return f"  - name: {name}\n    type: detection\n    iou_types: {iou}\n    dataset: {{format: shapes, style: coco, n: 6, size: 96, root: {root}}}\n"


def test_predictions_file_scores_like_pycocotools(shapes, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root, dets, split = shapes["coco"]
    suite = write_suite(tmp_path, f"  - name: ext\n    adapter: predictions\n    path: {dets}\n", coco_task(root))
    r = run(suite, tmp_path / "res")
    assert r.exit_code == 0, r.output
    rows = rows_of(tmp_path / "res").set_index("metric")
    gt = COCO(str(root / "annotations.json"))
    for iou in ("bbox", "segm"):
        ev = COCOeval(gt, gt.loadRes(str(dets)), iou)
        ev.evaluate(), ev.accumulate(), ev.summarize()
        got = [rows.loc[f"{iou}/{k}", "value"] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")]
        np.testing.assert_allclose(got, ev.stats, rtol=0, atol=1e-9)
    assert rows.loc["bbox/AP/red_square", "value"] >= -1
    assert (rows.n == 6).all() and rows.checkpoint_sha256.notna().all()  # sha256 of the scored file
    preds = pd.read_parquet(next((tmp_path / "res").glob("det/*/predictions/*.parquet")))
    assert len(preds) == len(json.loads(dets.read_text()))


def test_lvis_task_matches_lvis_package(shapes, tmp_path, monkeypatch):
    monkeypatch.setattr(np, "float", float, raising=False)  # lvis 0.5.3 needs the old alias
    import lvis

    root, dets, _ = shapes["lvis"]
    task = f"  - name: lv\n    type: lvis\n    dataset: {{format: shapes, style: lvis, n: 6, size: 96, root: {root}}}\n"
    suite = write_suite(tmp_path, f"  - name: ext\n    adapter: predictions\n    path: {{lv: {dets}}}\n", task)
    r = run(suite, tmp_path / "res")
    assert r.exit_code == 0, r.output
    rows = rows_of(tmp_path / "res").set_index("metric")
    g = lvis.LVIS(str(root / "annotations.json"))
    ev = lvis.LVISEval(g, lvis.LVISResults(g, str(dets)), "bbox")
    ev.run()
    for k in ("AP", "AP50", "APr", "APc", "APf"):
        assert abs(rows.loc[f"bbox/{k}", "value"] - ev.get_results()[k]) <= 1e-9
    assert abs(rows.loc["bbox/AR300", "value"] - ev.get_results()["AR@300"]) <= 1e-9


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda text: text[: len(text) // 2], "truncated results JSON at line 1"),
        (lambda text: json.dumps([{**json.loads(text)[0], "image_id": 4242}]), "image ids not in the ground truth: 4242"),
        (lambda text: json.dumps([{**json.loads(text)[0], "score": None}]), "NaN, infinite or non-numeric score"),
        (lambda text: json.dumps([{**json.loads(text)[0], "bbox": [1, 1, -3, 4]}]), "negative box width or height"),
    ],
)
def test_bad_results_file_fails_its_job_only(shapes, tmp_path, mutate, message):
    root, dets, _ = shapes["coco"]
    bad = tmp_path / "bad.json"
    bad.write_text(mutate(dets.read_text()))
    models = f"  - name: good\n    adapter: predictions\n    path: {dets}\n  - name: bad\n    adapter: predictions\n    path: {bad}\n"
    r = run(write_suite(tmp_path, models, coco_task(root, iou="[bbox]")), tmp_path / "res")
    assert r.exit_code == 1
    rows = rows_of(tmp_path / "res")
    failed = rows[rows.status == "failed"]
    assert list(failed.model) == ["bad"]
    err = failed.error.iloc[0]
    assert message in err and str(bad) in err and "\n" not in err
    assert (rows[rows.model == "good"].status == "ok").all()


def test_empty_results_score_zero(shapes, tmp_path):
    root, _, _ = shapes["coco"]
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    r = run(write_suite(tmp_path, f"  - name: none\n    adapter: predictions\n    path: {empty}\n", coco_task(root, iou="[bbox]")), tmp_path / "res")
    assert r.exit_code == 0, r.output
    rows = rows_of(tmp_path / "res").set_index("metric")
    assert rows.loc["bbox/AP", "value"] == 0.0 and rows.loc["bbox/AR100", "value"] == 0.0


def test_truncated_annotations_name_the_file(tmp_path, shapes):
    _, dets, _ = shapes["coco"]
    ann = tmp_path / "instances.json"
    ann.write_text('{"images": [{"id": 1, "wid')
    task = f"  - name: coco\n    type: detection\n    dataset: {{format: coco, annotations: {ann}}}\n"
    r = run(write_suite(tmp_path, f"  - name: ext\n    adapter: predictions\n    path: {dets}\n", task), tmp_path / "res")
    assert r.exit_code == 1
    err = rows_of(tmp_path / "res").error.iloc[0]
    assert err.startswith(f"{ann}: truncated COCO JSON at line 1")


def test_predictions_mapping_skips_tasks_without_a_file(shapes, tmp_path):
    root, dets, _ = shapes["coco"]
    models = f"  - name: ext\n    adapter: predictions\n    path: {{coco: {dets}}}\n"
    tasks = coco_task(root) + coco_task(root, name="other")
    r = CliRunner().invoke(app, ["run", str(write_suite(tmp_path, models, tasks)), "--dry-run"])
    assert "no predictions file for task 'other'" in r.output


def test_detector_adapter_runs_caches_and_checks_classes(shapes, tmp_path):
    root, _, _ = shapes["coco"]
    det = "  - name: frcnn\n    adapter: torchvision_detector\n    arch: fasterrcnn\n    backbone: resnet10t\n    num_classes: {k}\n    min_size: 64\n    max_size: 96\n    score_thresh: 0.0\n"
    suite = write_suite(tmp_path, det.format(k=8), coco_task(root, iou="[bbox]"))
    r = run(suite, tmp_path / "res")
    assert r.exit_code == 0, r.output
    rows = rows_of(tmp_path / "res")
    assert (rows.status == "ok").all() and "bbox/AP" in set(rows.metric)
    assert rows.samples_per_s.notna().all()
    # the second run reads detections from the output cache: same numbers, no forward pass
    r2 = run(suite, tmp_path / "res2")
    assert r2.exit_code == 0
    again = rows_of(tmp_path / "res2")
    assert again.samples_per_s.isna().all()
    pd.testing.assert_series_equal(rows.set_index("metric").value, again.set_index("metric").value)
    # a detector trained for another label set is refused with both counts
    assert run(write_suite(tmp_path, det.format(k=5), coco_task(root, iou="[bbox]")), tmp_path / "res3").exit_code == 1
    assert "detects 5 classes but the dataset has 8" in rows_of(tmp_path / "res3").error.iloc[0]


def test_segm_needs_masks(shapes, tmp_path):
    root, _, _ = shapes["coco"]
    det = "  - name: retina\n    adapter: torchvision_detector\n    arch: retinanet\n    backbone: resnet10t\n    num_classes: 8\n    min_size: 64\n    max_size: 96\n    score_thresh: 0.0\n"
    assert run(write_suite(tmp_path, det, coco_task(root, iou="[segm]")), tmp_path / "res").exit_code == 1
    assert "gives no masks" in rows_of(tmp_path / "res").error.iloc[0]


def test_lvis_task_refuses_coco_data(shapes, tmp_path):
    root, dets, _ = shapes["coco"]
    task = f"  - name: lv\n    type: lvis\n    dataset: {{format: shapes, style: coco, n: 6, size: 96, root: {root}}}\n"
    run(write_suite(tmp_path, f"  - name: ext\n    adapter: predictions\n    path: {dets}\n", task), tmp_path / "res")
    assert "needs an LVIS dataset" in rows_of(tmp_path / "res").error.iloc[0]


def ovd_task(root, split):
    return f"  - name: ovd\n    type: ovd_coco\n    dataset: {{format: shapes, style: coco, n: 6, size: 96, root: {root}}}\n    {split}\n"


def test_ovd_split_from_file_and_unknown_names(shapes, tmp_path):
    root, dets, split = shapes["coco"]
    names = [c["name"] for c in split.categories]
    f = tmp_path / "split.json"
    f.write_text(json.dumps({"base": names[:5], "novel": [split.categories[k]["id"] for k in (5, 6, 7)]}))  # names or ids
    model = f"  - name: ext\n    adapter: predictions\n    path: {dets}\n"
    r = run(write_suite(tmp_path, model, ovd_task(root, f"split_file: {f}")), tmp_path / "res")
    assert r.exit_code == 0, r.output
    rows = rows_of(tmp_path / "res").set_index("metric").value
    assert set(rows.index) == {"bbox/AP50_novel", "bbox/AP50_base", "bbox/AP50_all"}
    from bench.metrics import coco as M

    ev = M.evaluate(M.load_gt(copy.deepcopy(split.gt)), M.validate_results(split.gt, json.loads(dets.read_text()), "bbox", "x"), "bbox")
    want = M.ovd_ap50(ev, [c["id"] for c in split.categories[:5]], [c["id"] for c in split.categories[5:]])
    assert all(abs(rows[f"bbox/{k}"] - v) <= 1e-12 for k, v in want.items())
    # the default split is COCO's 48/17, whose names the shapes set lacks: one clear line
    r = run(write_suite(tmp_path, model, ovd_task(root, "iou_types: [bbox]")), tmp_path / "res2")
    assert "the OVR-CNN 48/17 split: categories not in" in rows_of(tmp_path / "res2").error.iloc[0]


def test_region_clip_fvlm_fusion_and_crops(shapes, tmp_path):
    """Scores are s_det^(1-γ)·p^γ with γ = base/novel exponent; top detections come from every (box, class)."""
    from adapters.region_clip import RegionClipAdapter, RegionClipArgs, scale_boxes

    props = tmp_path / "props.json"
    props.write_text(json.dumps([{"image_id": 1, "bbox": [10, 10, 20, 20], "score": 0.5}, {"image_id": 1, "bbox": [0, 0, 40, 30], "score": 0.9}]))
    args = RegionClipArgs(name="rc", arch="ViT-S-32", image_size=32, proposals=str(props), fusion={"base": 0.25, "novel": 0.75}, detections_per_img=3)
    a = RegionClipAdapter(args)
    p = torch.tensor([[0.6, 0.4], [0.2, 0.8]], dtype=torch.float64)
    a.region_scores = lambda image, boxes, vocab: p
    out = a.detections([torch.zeros(3, 48, 48, dtype=torch.uint8)], [1], ["a", "b"], novel=[False, True])[0]
    s_det = np.array([0.9, 0.5])  # proposals sorted by score: the 40x30 box first
    fused = np.stack([s_det**0.75 * p[:, 0].numpy() ** 0.25, s_det**0.25 * p[:, 1].numpy() ** 0.75], axis=1)
    order = np.argsort(-fused.ravel(), kind="stable")[:3]
    np.testing.assert_allclose(out["scores"], fused.ravel()[order], rtol=1e-6)
    np.testing.assert_array_equal(out["labels"], order % 2)
    np.testing.assert_allclose(out["boxes"][0], [0, 0, 40, 30] if order[0] // 2 == 0 else [10, 10, 30, 30])
    # the 1.5x crop of a box grows around its centre and stays inside the image
    np.testing.assert_allclose(scale_boxes(torch.tensor([[10.0, 10, 30, 30]]), 1.5, 48, 48).numpy(), [[5, 5, 35, 35]])
    np.testing.assert_allclose(scale_boxes(torch.tensor([[0.0, 0, 40, 30]]), 1.5, 48, 48).numpy(), [[0, 0, 48, 37.5]])
    # the real region classifier gives a distribution over the vocabulary per box
    real = RegionClipAdapter(args).region_scores(torch.randint(0, 255, (3, 48, 48), dtype=torch.uint8), np.array([[0, 0, 20, 20.0]]), ["a", "b", "c"])
    assert real.shape == (1, 3) and abs(float(real.sum()) - 1) < 1e-5


@pytest.mark.parametrize("arch", ["fasterrcnn", "retinanet", "fcos", "maskrcnn"])
def test_every_detector_arch_builds_on_a_timm_backbone_and_reloads_its_checkpoint(tmp_path, arch):
    from safetensors.torch import save_file

    from adapters.checkpoint import sha256_file
    from adapters.detectors import DetectorAdapter, DetectorArgs

    args = dict(name="d", arch=arch, backbone="resnet10t", num_classes=3, min_size=64, max_size=64, score_thresh=0.0, detections_per_img=20)
    a = DetectorAdapter(DetectorArgs(**args), seed=1)
    imgs = [torch.randint(0, 255, (3, 64, 80), dtype=torch.uint8)]
    out = a.detections(imgs, [1], ["a", "b", "c"])[0]
    assert out["boxes"].shape[1] == 4 and len(out["boxes"]) <= 20 and set(out["labels"]) <= {0, 1, 2}
    assert (out["boxes"][:, 2] <= 80 + 1e-3).all() and (out["boxes"][:, 3] <= 64 + 1e-3).all()  # in input pixels
    assert ("masks" in out) == (arch == "maskrcnn")
    # a whole-detector safetensors checkpoint loads (seed 2 would otherwise give other weights) and reproduces the outputs
    ck = tmp_path / "det.safetensors"
    save_file({k: v.contiguous() for k, v in a.model.state_dict().items()}, ck)
    b = DetectorAdapter(DetectorArgs(**args, checkpoint=str(ck), sha256=sha256_file(str(ck))), seed=2)
    np.testing.assert_allclose(b.detections(imgs, [1], ["a", "b", "c"])[0]["scores"], out["scores"], rtol=1e-5)


def test_region_clip_takes_boxes_from_a_detector(shapes):
    from adapters.region_clip import RegionClipAdapter, RegionClipArgs

    det = {"arch": "fcos", "backbone": "resnet10t", "num_classes": 2, "min_size": 64, "max_size": 96, "score_thresh": 0.0, "detections_per_img": 5}
    a = RegionClipAdapter(RegionClipArgs(name="rc", arch="ViT-S-32", image_size=32, detector=det, detections_per_img=7, fusion={"base": 0.3, "novel": 0.7}))
    out = a.detections(
        [torch.randint(0, 255, (3, 96, 96), dtype=torch.uint8)], [1], ["red square", "green circle", "blue triangle"], novel=[False, False, True]
    )[0]
    assert len(out["scores"]) == 7 and set(out["labels"]) <= {0, 1, 2} and (np.diff(out["scores"]) <= 0).all()
