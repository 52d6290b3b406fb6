"""COCO panoptic PQ (`type: panoptic`): parity with panopticapi's pq_compute (cityscapesscripts' copy of
it, single core) on panopticapi's own example files scored against themselves and against
perturbed predictions (through the CLI), on generated images, a hand-computed case, intervals, and
every bad input as one line naming the file."""

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import bench.tasks.panoptic  # noqa: F401 — registers `panoptic` before it is wired into bench.tasks
from bench.cli import app
from bench.data.panoptic import CocoPanopticSpec, read_predictions
from bench.metrics import panoptic as M
from bench.results import load_rows
from bench.tasks.panoptic import score_images

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "tests" / "data" / "panopticapi"  # committed: these tests never skip
GT_JSON = EXAMPLES / "panoptic_examples.json"
GROUPS = {"All": "", "Things": "_th", "Stuff": "_st"}


def id2rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], -1).astype(np.uint8)


def read_ids(path) -> np.ndarray:
    return M.rgb2id(np.asarray(Image.open(path).convert("RGB")))


def write_set(json_path: Path, anns: list, categories=None, pngs: dict | None = None) -> Path:
    """A panoptic JSON (GT when categories are given) with its PNGs {file_name: id map} in the folder named like it."""
    folder = json_path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    for name, ids in (pngs or {}).items():
        Image.fromarray(id2rgb(ids)).save(folder / name)
    body = {"annotations": anns, "categories": categories} if categories is not None else {"annotations": anns}
    json_path.write_text(json.dumps(body))
    return json_path


def official(gt_json: Path, pred_json: Path, image_ids=None):
    """panopticapi's numbers: pq_compute_single_core + average_pq, and the categories it counts."""
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import average_pq, pq_compute_single_core

    gt, pred = json.loads(gt_json.read_text()), json.loads(pred_json.read_text())
    cats = {c["id"]: c for c in gt["categories"]}
    by_image = {a["image_id"]: a for a in (pred["annotations"] if isinstance(pred, dict) else pred)}
    pairs = [(copy.deepcopy(a), copy.deepcopy(by_image[a["image_id"]])) for a in gt["annotations"] if image_ids is None or a["image_id"] in image_ids]
    with contextlib.redirect_stdout(io.StringIO()):
        stat = pq_compute_single_core(0, pairs, str(gt_json.with_suffix("")), str(pred_json.with_suffix("")), cats)
    counted = {cats[c]["name"] for c, s in stat.pq_per_cat.items() if s.tp + s.fp + s.fn > 0}
    return average_pq(stat, cats), counted, cats


def ours(gt_json: Path, pred_json: Path, limit=None) -> dict:
    split = CocoPanopticSpec(format="coco_panoptic", annotations=str(gt_json)).load().subset(limit, 0)
    per_image, _ = score_images(split, read_predictions(str(pred_json)))
    got = M.scores(per_image.sum(0), split.isthing)
    out = {f"pq/{m}{s}": float(got[f"{m}{s}"]) for s in GROUPS.values() for m in ("PQ", "SQ", "RQ")}
    out.update({f"pq/PQ/{c['name']}": float(got["pq"][k]) for k, c in enumerate(split.categories) if np.isfinite(got["pq"][k])})
    return out


def assert_parity(got: dict, ref, counted: set, cats: dict) -> None:
    for group, suffix in GROUPS.items():
        for m in ("pq", "sq", "rq"):
            assert abs(got[f"pq/{m.upper()}{suffix}"] - ref[group][m]) <= 1e-9, (group, m)
    for cid, v in ref["per_class"].items():
        name = cats[cid]["name"]
        if name in counted:
            assert abs(got[f"pq/PQ/{name}"] - v["pq"]) <= 1e-9, name
        else:
            assert f"pq/PQ/{name}" not in got, name  # left out, as panopticapi leaves it out of the means
    assert {k for k in got if k.startswith("pq/PQ/")} == {f"pq/PQ/{n}" for n in counted}


def run(tmp_path, pred, gt=GT_JSON, task_extra="per_category: true", args=()):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"name: pan\nmodels:\n  - {{name: p, adapter: predictions, path: {pred}}}\ntasks:\n"
        f"  - {{name: coco_pan, type: panoptic, {task_extra}, dataset: {{format: coco_panoptic, annotations: {gt}}}}}\n"
    )
    out = tmp_path / "res"
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), *args])
    return r, (load_rows([out], with_source=True) if out.exists() else None)


# ---------- panopticapi's example files ----------


def test_example_ground_truth_against_itself_is_pq_one(tmp_path):
    ref, counted, cats = official(GT_JSON, GT_JSON)
    got = ours(GT_JSON, GT_JSON)
    assert_parity(got, ref, counted, cats)
    assert got["pq/PQ"] == got["pq/SQ"] == got["pq/RQ"] == 1.0
    assert len(counted) == ref["All"]["n"] == 8 and ref["Things"]["n"] == ref["Stuff"]["n"] == 4


def perturb(tmp_path: Path) -> Path:
    """Predictions made from the example ground truth: dropped, merged, relabelled and shifted
    segments, and false positives over a crowd region, over VOID, and on the 0.5 boundaries."""
    gt = json.loads(GT_JSON.read_text())
    names = {c["name"]: c["id"] for c in gt["categories"]}
    anns, pngs = [], {}
    for a in gt["annotations"]:
        ids = read_ids(GT_JSON.with_suffix("") / a["file_name"])
        gt_ids = ids.copy()
        cat = {s["id"]: s["category_id"] for s in a["segments_info"]}
        people = [s["id"] for s in a["segments_info"] if s["category_id"] == 1 and not s["iscrowd"]]
        crowd = next(s["id"] for s in a["segments_info"] if s["iscrowd"] and s["category_id"] == 1)
        stuff = next(s["id"] for s in a["segments_info"] if s["category_id"] == names["sky-other-merged"])
        fresh = iter(range(9_000_000, 9_000_100))

        def add(pixels, category):
            sid = next(fresh)
            ids.flat[pixels] = sid
            cat[sid] = category

        flat = gt_ids.ravel()
        on_crowd, on_void, on_stuff = (np.flatnonzero(flat == k) for k in (crowd, 0, stuff))
        if a["image_id"] == 142238:
            for sid in people[:2]:  # dropped
                ids[ids == sid] = 0
            ys, xs = np.nonzero(ids == people[2])  # shifted by 2/3 of its width: IoU < 0.5, a fn
            ids[ys, xs] = 0
            ids[ys, np.minimum(xs + (xs.max() - xs.min() + 1) * 2 // 3, ids.shape[1] - 1)] = people[2]  # mostly onto the crowd: ignored
            cat[people[3]] = names["bicycle"]  # relabelled
            add(np.r_[on_crowd[:300], on_stuff[:100]], 1)  # 75% on its category's crowd: ignored
            add(np.r_[on_crowd[300:400], on_stuff[100:400]], 1)  # 25% on crowd: a false positive
            add(on_crowd[400:700], names["bicycle"])  # on another category's crowd: a false positive
        else:
            horses = [s["id"] for s in a["segments_info"] if s["category_id"] == names["horse"] and not s["iscrowd"]]
            ids[ids == horses[1]] = horses[0]  # two horses merged into one
            cat[people[0]] = names["car"]
            add(np.r_[on_void[:400], on_stuff[:100]], names["car"])  # mostly VOID: ignored
            add(np.r_[on_void[400:600], on_stuff[100:300]], names["car"])  # exactly half VOID: not > 0.5, a false positive
            add(on_stuff[300:700], names["sky-other-merged"])  # splits the sky
        present = set(np.unique(ids).tolist()) - {0}
        info = [{"id": int(s), "category_id": int(cat[s])} for s in sorted(present)]
        anns.append({"image_id": a["image_id"], "file_name": a["file_name"], "segments_info": info})
        pngs[a["file_name"]] = ids
    return write_set(tmp_path / "pred" / "panoptic_pred.json", anns, pngs=pngs)


def test_perturbed_predictions_through_the_cli_equal_panopticapi(tmp_path):
    pred = perturb(tmp_path)
    ref, counted, cats = official(GT_JSON, pred)
    assert 0.3 < ref["All"]["pq"] < 0.95 and ref["Things"]["n"] > 0 and ref["Stuff"]["n"] > 0
    assert_parity(ours(GT_JSON, pred), ref, counted, cats)
    r, rows = run(tmp_path, pred)
    assert r.exit_code == 0, r.output
    assert rows.status.eq("ok").all(), rows.error.tolist()
    got = dict(zip(rows.metric, rows.value))
    assert_parity(got, ref, counted, cats)
    assert set(rows.dataset) == {"panoptic_examples"} and set(rows.split) == {"val"} and set(rows.n) == {2}
    assert set(rows.convention) == {"panopticapi-pq_compute"}
    # intervals: an image bootstrap around each value
    assert rows.ci_method.str.contains("unit=image").all()
    assert (rows.ci_low <= rows.value + 1e-12).all() and (rows.value <= rows.ci_high + 1e-12).all()
    assert (rows.stderr > 0).any()
    table = pd.read_parquet(Path(rows._rows_file.iloc[0]).parent.parent / "predictions" / Path(rows._rows_file.iloc[0]).name)
    assert list(table.columns) == ["image_id", "file_name", "tp", "fp", "fn"] and sorted(table.image_id) == [142238, 439180]


def test_a_folder_holding_the_json_and_its_pngs_is_read_too(tmp_path):
    pred = perturb(tmp_path)
    r, rows = run(tmp_path, pred.parent, task_extra="per_category: false")
    assert r.exit_code == 0 and rows.status.eq("ok").all(), r.output
    assert not rows.metric.str.startswith("pq/PQ/").any()
    assert abs(dict(zip(rows.metric, rows.value))["pq/PQ"] - official(GT_JSON, pred)[0]["All"]["pq"]) <= 1e-9


# ---------- generated images ----------

GEN_CATS = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 2, "name": "car", "isthing": 1},
    {"id": 5, "name": "dog", "isthing": 1},
    {"id": 20, "name": "sky", "isthing": 0},
    {"id": 21, "name": "road", "isthing": 0},
    {"id": 22, "name": "grass", "isthing": 0},
]


def generated(root: Path, seed: int, n: int = 8, h: int = 36, w: int = 48) -> tuple[Path, Path]:
    """Random rectangles as ground truth (with crowd and VOID); predictions jitter, relabel, drop and add segments."""
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in GEN_CATS]

    def rects(ids, k, id0, cats):
        for j in range(k):
            y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
            ids[y : y + rng.integers(4, h // 2), x : x + rng.integers(4, w // 2)] = id0 + j
            cats[id0 + j] = int(rng.choice(cat_ids))

    gts, preds, gt_png, pred_png = [], [], {}, {}
    for i in range(n):
        g = np.zeros((h, w), np.int64)
        g_cat: dict = {}
        rects(g, int(rng.integers(3, 10)), 1 + 1000 * i, g_cat)
        g[rng.random(g.shape) < 0.03] = 0  # scattered VOID
        segs = [{"id": int(s), "category_id": g_cat[s], "area": int((g == s).sum()), "iscrowd": int(rng.random() < 0.15)} for s in np.unique(g) if s]
        p = np.where(g > 0, g + 500_000, 0)  # other ids than the ground truth's
        p_cat = {s + 500_000: c for s, c in g_cat.items()}
        for s in list(p_cat):
            u = rng.random()
            if u < 0.15:
                p[p == s] = 0  # dropped
            elif u < 0.3:
                p_cat[s] = int(rng.choice(cat_ids))  # relabelled
            elif u < 0.45:
                ys, xs = np.nonzero(p == s)
                p[ys, xs] = 0
                p[ys, np.minimum(xs + rng.integers(1, 6), w - 1)] = s  # shifted
        rects(p, int(rng.integers(0, 4)), 900_000 + 100 * i, p_cat)  # extra segments
        p[rng.random(p.shape) < 0.05] = 0
        fname = f"{i:012d}.png"
        gts.append({"image_id": i, "file_name": fname, "segments_info": segs})
        preds.append({"image_id": i, "file_name": fname, "segments_info": [{"id": int(s), "category_id": p_cat[s]} for s in np.unique(p) if s]})
        gt_png[fname], pred_png[fname] = g, p
    return write_set(root / "gt" / "panoptic_gen.json", gts, GEN_CATS, gt_png), write_set(root / "pred" / "gen_pred.json", preds, pngs=pred_png)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_images_equal_panopticapi(tmp_path, seed):
    gt, pred = generated(tmp_path, seed)
    ref, counted, cats = official(gt, pred)
    assert 0 < ref["All"]["pq"] < 1
    assert_parity(ours(gt, pred), ref, counted, cats)


def test_limit_scores_a_seeded_subset_as_panopticapi_would(tmp_path):
    gt, pred = generated(tmp_path, 5)
    r, rows = run(tmp_path, pred, gt, args=["--limit", "3"])
    assert r.exit_code == 0 and rows.status.eq("ok").all(), r.output
    assert set(rows.n) == {3}
    f = Path(rows._rows_file.iloc[0])
    picked = set(pd.read_parquet(f.parent.parent / "predictions" / f.name).image_id.tolist())
    assert len(picked) == 3 and picked == set(CocoPanopticSpec(format="coco_panoptic", annotations=str(gt)).load().subset(3, 0).image_ids)
    ref, counted, cats = official(gt, pred, picked)
    assert_parity(dict(zip(rows.metric, rows.value)), ref, counted, cats)


def test_one_image_or_uncertainty_off_gives_no_interval(tmp_path):
    gt, pred = generated(tmp_path, 3)
    r, rows = run(tmp_path, pred, gt, args=["--limit", "1"])
    assert r.exit_code == 0 and rows.status.eq("ok").all(), r.output
    assert rows.ci_low.isna().all() and rows.stderr.isna().all()


# ---------- a hand-computed case ----------

# One row of 22 pixels. Ground truth: A (thing 1) 0-3, S (stuff 2) 4-5, C (crowd of thing 1) 6-11,
# VOID 12-17, B (stuff 2) 18-21. Predictions:
#   P (1) on 0-1: IoU with A = 2 / (2 + 4 − 2) = 0.5, not > 0.5: A is a fn, P a fp;
#   Q (2) on 4-5 and VOID 12-13: union = 4 + 2 − 2 − 2 (its VOID) = 2, IoU 1: a tp;
#   R (1) on C 6-7 and VOID 14: (1 + 2) / 3 on VOID or its category's crowd: ignored;
#   T (1) on C 8, VOID 15 and B 18-19: (1 + 1) / 4 = 0.5, not > 0.5: a fp;
#   U (2) on C 9-11: C is another category's crowd: a fp;
#   V (2) on 20-21: IoU with B = 2 / (2 + 4 − 2) = 0.5: B is a fn, V a fp.
# Thing 1: tp 0, fp 2, fn 1 → PQ 0. Stuff 2: tp 1 (IoU 1), fp 2, fn 1 → PQ = SQ·RQ = 1 · 1/2.5 = 0.4.
TINY_GT = [1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4]
TINY_PRED = [10, 10, 0, 0, 11, 11, 12, 12, 13, 14, 14, 14, 11, 11, 12, 13, 0, 0, 13, 13, 15, 15]
TINY_CATS = [{"id": 1, "name": "a", "isthing": 1}, {"id": 2, "name": "b", "isthing": 0}]


def tiny(root: Path) -> tuple[Path, Path]:
    gt_info = [{"id": k, "category_id": c, "area": a, "iscrowd": crowd} for k, c, a, crowd in ((1, 1, 4, 0), (2, 2, 2, 0), (3, 1, 6, 1), (4, 2, 4, 0))]
    pred_info = [{"id": k, "category_id": c} for k, c in ((10, 1), (11, 2), (12, 1), (13, 1), (14, 2), (15, 2))]
    gt = write_set(root / "gt" / "tiny.json", [{"image_id": 1, "file_name": "t.png", "segments_info": gt_info}], TINY_CATS, {"t.png": np.array([TINY_GT])})
    pred_ann = {"image_id": 1, "file_name": "t.png", "segments_info": pred_info}
    pred = write_set(root / "pred" / "tiny_pred.json", [pred_ann], pngs={"t.png": np.array([TINY_PRED])})
    return gt, pred


def test_hand_computed_void_crowd_and_strict_thresholds(tmp_path):
    gt_json, pred_json = tiny(tmp_path)
    gt = M.Segments(np.array([1, 2, 3, 4]), np.array([0, 1, 0, 1]), np.array([4.0, 2, 6, 4]), np.array([False, False, True, False]))
    pred = M.Segments(np.array([10, 11, 12, 13, 14, 15]), np.array([0, 1, 0, 0, 1, 1]))
    stats = M.image_stats(np.array([TINY_GT]), np.array([TINY_PRED]), gt, pred, 2)
    np.testing.assert_array_equal(stats, [[0, 2, 1, 0.0], [1, 2, 1, 1.0]])
    got = M.scores(stats, np.array([True, False]))
    assert got["PQ"] == pytest.approx(0.2, abs=1e-15) and got["SQ"] == 0.5 and got["RQ"] == pytest.approx(0.2, abs=1e-15)
    assert got["PQ_th"] == 0 and got["PQ_st"] == pytest.approx(0.4, abs=1e-15) and got["SQ_st"] == 1.0
    ref, counted, cats = official(gt_json, pred_json)
    assert ref["All"]["pq"] == pytest.approx(0.2, abs=1e-15)
    assert_parity(ours(gt_json, pred_json), ref, counted, cats)


def test_a_group_without_counted_categories_leaves_its_rows_out(tmp_path):
    # only stuff in ground truth and predictions: panopticapi divides by zero for things
    info = [{"id": 4, "category_id": 2, "area": 4, "iscrowd": 0}]
    gt_ann = {"image_id": 1, "file_name": "t.png", "segments_info": info}
    pred_ann = {"image_id": 1, "file_name": "t.png", "segments_info": [{"id": 7, "category_id": 2}]}
    gt = write_set(tmp_path / "gt" / "stuff.json", [gt_ann], TINY_CATS, {"t.png": np.array([[0, 0, 4, 4, 4, 4]])})
    pred = write_set(tmp_path / "pred" / "p.json", [pred_ann], pngs={"t.png": np.array([[0, 7, 7, 7, 7, 0]])})
    r, rows = run(tmp_path, pred, gt)
    assert r.exit_code == 0 and rows.status.eq("ok").all(), r.output
    got = dict(zip(rows.metric, rows.value))
    assert set(got) == {"pq/PQ", "pq/SQ", "pq/RQ", "pq/PQ_st", "pq/SQ_st", "pq/RQ_st", "pq/PQ/b"}
    assert got["pq/PQ"] == pytest.approx(0.75, abs=1e-15)  # IoU = 3 / (4 + 4 − 3 − 1 on VOID): a tp
    assert "no things category" in json.loads(rows.meta.iloc[0])["warnings"][0]


# ---------- bad input: the job fails with one line naming the file ----------


def fail(tmp_path, pred, gt) -> str:
    r, rows = run(tmp_path, pred, gt)
    assert rows is not None and rows.status.eq("failed").all(), r.output
    err = rows.error.iloc[0]
    assert "\n" not in err
    return err


def two_images(root: Path) -> tuple[Path, Path, dict]:
    """Two generated images with predictions equal to the ground truth, and the prediction's JSON body to spoil."""
    gt, pred = generated(root, 7, n=2)
    return gt, pred, json.loads(pred.read_text())


def test_a_png_id_missing_from_segments_info(tmp_path):
    gt, pred, body = two_images(tmp_path)
    body["annotations"][1]["segments_info"].pop(0)
    pred.write_text(json.dumps(body))
    err = fail(tmp_path, pred, gt)
    assert "gen_pred/000000000001.png (image 1)" in err and "is in the PNG but not in its segments_info" in err


def test_an_unknown_category(tmp_path):
    gt, pred, body = two_images(tmp_path)
    body["annotations"][0]["segments_info"][0]["category_id"] = 999
    pred.write_text(json.dumps(body))
    err = fail(tmp_path, pred, gt)
    assert "gen_pred.json (image 0)" in err and "category_id 999 is not a ground-truth category" in err


def test_a_segment_absent_from_the_png(tmp_path):
    gt, pred, body = two_images(tmp_path)
    body["annotations"][0]["segments_info"].append({"id": 123456, "category_id": 1})
    pred.write_text(json.dumps(body))
    err = fail(tmp_path, pred, gt)
    assert "gen_pred/000000000000.png (image 0)" in err and "[123456] are not in the PNG" in err


def test_missing_predictions_are_counted_and_fail(tmp_path):
    gt, pred = generated(tmp_path, 7, n=4)
    body = json.loads(pred.read_text())
    body["annotations"] = [a for a in body["annotations"] if a["image_id"] not in (1, 3)]
    pred.write_text(json.dumps(body))
    err = fail(tmp_path, pred, gt)
    assert err.endswith("gen_pred.json: no prediction for 2 of 4 images (first: image id 1)")


def test_a_missing_png(tmp_path):
    gt, pred, _ = two_images(tmp_path)
    (pred.with_suffix("") / "000000000001.png").unlink()
    err = fail(tmp_path, pred, gt)
    assert "gen_pred/000000000001.png: prediction PNG (image 1) not found" in err


def test_a_single_channel_png(tmp_path):
    gt, pred, _ = two_images(tmp_path)
    Image.new("L", (48, 36)).save(pred.with_suffix("") / "000000000000.png")
    err = fail(tmp_path, pred, gt)
    assert "gen_pred/000000000000.png: prediction PNG (image 0) is a L image; expected RGB" in err


def test_a_png_of_another_size(tmp_path):
    gt, pred, _ = two_images(tmp_path)
    Image.new("RGB", (40, 36)).save(pred.with_suffix("") / "000000000001.png")
    err = fail(tmp_path, pred, gt)
    assert "gen_pred/000000000001.png: prediction PNG (image 1) is 40x36, its ground truth" in err and "panoptic_gen/000000000001.png is 48x36" in err


def test_overlapping_segments(tmp_path):
    gt, pred, body = two_images(tmp_path)
    info = body["annotations"][0]["segments_info"]
    info.append({"id": info[0]["id"], "category_id": info[1]["category_id"]})  # a second segment claiming the same pixels
    pred.write_text(json.dumps(body))
    err = fail(tmp_path, pred, gt)
    assert "gen_pred.json (image 0): overlapping segments: id" in err


@pytest.mark.parametrize("which", ["pred", "gt"])
def test_a_truncated_json(tmp_path, which):
    gt, pred, _ = two_images(tmp_path)
    path = pred if which == "pred" else gt
    path.write_text(path.read_text()[:-40])
    err = fail(tmp_path, pred, gt)
    assert f"{path.name}: truncated panoptic" in err and "JSON at line 1" in err
