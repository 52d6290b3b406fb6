"""The scorers' own public example files, scored end to end by bench and by the official package.

The files are cocoapi's fake results on faster-coco-eval's instances_val2014_100.json, and
lvis-api's lvis_val_100.json, committed under tests/data/ (sources, licences and sha256 in
tests/data/SOURCES.md), so these tests run everywhere and never skip.
"""

import contextlib
import copy
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.results import load_rows

REPO = Path(__file__).resolve().parent.parent
OFFICIAL = REPO / "tests" / "data" / "cocoapi"
GT = OFFICIAL / "instances_val2014_100.json"


def pycoco(gt_path: Path, res_path: Path, iou: str, img_ids=None) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(str(res_path)), iou)
        if img_ids is not None:
            ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats)


def bench_stats(tmp_path, gt_path: Path, res_path: Path, iou: str, *extra) -> dict:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: official\ndefaults: {device: cpu}\n"
        f"models:\n  - {{name: fake, adapter: predictions, path: {res_path}}}\n"
        f"tasks:\n  - {{name: det, type: detection, iou_types: [{iou}], dataset: {{format: coco, annotations: {gt_path}}}}}\n"
    )
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "res"), *extra])
    assert r.exit_code == 0, r.output
    df = load_rows([tmp_path / "res"])
    return {m.split("/", 1)[1]: v for m, v in zip(df.metric, df.value) if m.count("/") == 1}


@pytest.mark.parametrize("iou, results", [("bbox", "instances_val2014_fakebbox100_results.json"), ("segm", "instances_val2014_fakesegm100_results.json")])
def test_cocoapi_fake_results_score_as_pycocotools(tmp_path, iou, results):
    ours = bench_stats(tmp_path, GT, OFFICIAL / results, iou)
    theirs = pycoco(GT, OFFICIAL / results, iou)
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    for name, want in zip(names, theirs):
        assert ours[name] == pytest.approx(want, abs=1e-9), name


def rle_without_bbox_case(tmp_path):
    """Generated results in the format mmdet and detectron2 write for segm: RLE masks and no bbox key."""
    from pycocotools import mask as mask_util

    rng = np.random.default_rng(0)
    images = [{"id": i, "width": 64, "height": 48, "file_name": f"{i}.png"} for i in (1, 2, 3)]
    cats = [{"id": 7, "name": "blob"}, {"id": 9, "name": "bar"}]
    anns, res = [], []
    for img in images:
        for cat in cats:
            m = np.zeros((48, 64), np.uint8, order="F")
            x, y = rng.integers(0, 30, 2)
            m[y : y + 15, x : x + 20] = 1
            rle = mask_util.encode(m)
            box = [float(v) for v in mask_util.toBbox(rle)]
            rle["counts"] = rle["counts"].decode()
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": cat["id"], "segmentation": rle, "area": float(m.sum()), "bbox": box, "iscrowd": 0})
            p = np.roll(m, int(rng.integers(-3, 4)), axis=1)
            prle = mask_util.encode(np.asfortranarray(p))
            prle["counts"] = prle["counts"].decode()
            res.append({"image_id": img["id"], "category_id": cat["id"], "segmentation": prle, "score": float(rng.random())})
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "categories": cats, "annotations": anns}))
    rp = tmp_path / "res.json"
    rp.write_text(json.dumps(res))
    return gt, rp


def test_segm_results_without_bbox_score_as_pycocotools(tmp_path):
    gt, res = rle_without_bbox_case(tmp_path)
    ours = bench_stats(tmp_path, gt, res, "segm")
    assert ours["AP"] == pytest.approx(pycoco(gt, res, "segm")[0], abs=1e-9)


def test_limit_does_not_hide_unknown_image_ids(tmp_path):
    """Ids missing from the ground truth fail the job with --limit too, not only without it."""
    gt, res = rle_without_bbox_case(tmp_path)
    dets = json.loads(res.read_text())
    dets.append({**copy.deepcopy(dets[0]), "image_id": 999})
    res.write_text(json.dumps(dets))
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: official\ndefaults: {device: cpu}\n"
        f"models:\n  - {{name: fake, adapter: predictions, path: {res}}}\n"
        f"tasks:\n  - {{name: det, type: detection, iou_types: [segm], dataset: {{format: coco, annotations: {gt}}}}}\n"
    )
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "res"), "--limit", "2"])
    assert r.exit_code == 1 and "image ids not in the ground truth: 999" in r.output


LVIS_GT = REPO / "tests" / "data" / "lvis" / "lvis_val_100.json"


@pytest.fixture
def lvis_pkg(monkeypatch):
    monkeypatch.setattr(np, "float", float, raising=False)  # lvis 0.5.3 still says np.float
    import lvis

    return lvis


@pytest.mark.parametrize("iou", ["bbox", "segm"])
def test_lvis_val_100_scores_as_the_lvis_package(tmp_path, lvis_pkg, iou):
    """lvis-api's own 100-image ground truth (federated lists, real polygons); results: its boxes jittered, plus negatives."""
    gt = json.loads(LVIS_GT.read_text())
    rng = np.random.default_rng(0)
    cats = [c["id"] for c in gt["categories"]]
    res = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        d = rng.normal(0, 0.08, 4) * [w, h, w, h]
        box = [x + d[0], y + d[1], max(1.0, w + d[2]), max(1.0, h + d[3])]
        r = {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": box, "score": float(rng.random())}
        if iou == "segm":
            r["segmentation"] = a["segmentation"]
        res.append(r)
        if rng.random() < 0.5:  # a confusion: the same box under another category (possibly one of the image's negatives)
            res.append({**r, "category_id": int(rng.choice(cats)), "score": float(rng.random())})
    rp = tmp_path / "res.json"
    rp.write_text(json.dumps(res))
    ref_gt = lvis_pkg.LVIS(str(LVIS_GT))
    ev = lvis_pkg.LVISEval(ref_gt, lvis_pkg.LVISResults(ref_gt, str(rp)), iou)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.run()
    want = ev.get_results()
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: official\ndefaults: {device: cpu}\n"
        f"models:\n  - {{name: fake, adapter: predictions, path: {rp}}}\n"
        f"tasks:\n  - {{name: lv, type: lvis, iou_types: [{iou}], dataset: {{format: lvis, annotations: {LVIS_GT}}}}}\n"
    )
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    df = load_rows([tmp_path / "out"])
    got = {m.split("/", 1)[1]: v for m, v in zip(df.metric, df.value)}
    for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR300"):
        assert got[k] == pytest.approx(want["AR@300" if k == "AR300" else k], abs=1e-9), k
