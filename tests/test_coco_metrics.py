"""bench.metrics.coco against the official scorers: pycocotools' COCOeval and lvis 0.5.3."""

import copy
import json

import numpy as np
import pytest

from bench.errors import DataError
from bench.metrics import coco as M


def _poly(x, y, w, h, rng):
    # an irregular 6-gon inside the box, so segm IoU differs from bbox IoU
    cx, cy = x + w / 2, y + h / 2
    ang = np.sort(rng.uniform(0, 2 * np.pi, 6))
    r = rng.uniform(0.6, 1.0, 6)
    return [float(v) for a, k in zip(ang, r) for v in (cx + k * w / 2 * np.cos(a), cy + k * h / 2 * np.sin(a))]


def make_case(seed=0, n_img=12, n_cat=5, lvis=False, segm=False, dets_per_img=40, crowd=True):
    """GT with crowd regions, ignore flags, an empty category, and dets that overlap GT at many IoUs."""
    rng = np.random.default_rng(seed)
    W = H = 200
    freqs = ["r", "c", "f"]
    cats = [{"id": 10 + 3 * k, "name": f"c{k}", **({"frequency": freqs[k % 3]} if lvis else {})} for k in range(n_cat)]
    empty_cat = cats[-1]["id"]  # no GT anywhere
    images, anns, dets = [], [], []
    aid = 1
    for i in range(n_img):
        iid = 100 + i
        img = {"id": iid, "width": W, "height": H, "file_name": f"{iid}.png"}
        present = set()
        for _ in range(rng.integers(0, 7)):
            c = cats[rng.integers(0, n_cat - 1)]["id"]
            w, h = rng.uniform(4, 180, 2)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            is_crowd = int(crowd and not lvis and rng.random() < 0.1)
            seg = _poly(x, y, w, h, rng)
            a = {"id": aid, "image_id": iid, "category_id": c, "bbox": [x, y, w, h], "area": float(w * h * 0.7), "iscrowd": is_crowd, "segmentation": [seg]}
            if not lvis and rng.random() < 0.1:
                a["ignore"] = 1  # pycocotools overrides this with iscrowd
            if is_crowd:
                from pycocotools import mask as mu

                rle = mu.frPyObjects([seg], H, W)
                a["segmentation"] = {"size": [H, W], "counts": mu.merge(rle)["counts"].decode()}
            anns.append(a)
            aid += 1
            present.add(c)
            for _ in range(rng.integers(0, 3)):  # jittered true positives
                jx, jy, jw, jh = rng.normal(0, 0.15, 4) * np.array([w, h, w, h])
                box = [x + jx, y + jy, max(1.0, w + jw), max(1.0, h + jh)]
                dets.append({"image_id": iid, "category_id": c, "bbox": box, "score": float(rng.random()), "seg": _poly(*box, rng)})
        for _ in range(dets_per_img):  # background false positives, some on the empty category
            c = cats[rng.integers(0, n_cat)]["id"]
            w, h = rng.uniform(2, 100, 2)
            box = [float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h)), float(w), float(h)]
            dets.append({"image_id": iid, "category_id": c, "bbox": box, "score": float(np.round(rng.random(), 2)), "seg": _poly(*box, rng)})
        if lvis:
            absent = [c["id"] for c in cats if c["id"] not in present]
            img["neg_category_ids"] = [c for c in absent if rng.random() < 0.5]
            img["not_exhaustive_category_ids"] = [c for c in present if rng.random() < 0.3]
        images.append(img)
    gt = {"images": images, "annotations": anns, "categories": cats}
    if lvis:
        gt["annotations"] = [{k: v for k, v in a.items() if k != "iscrowd"} for a in anns]
    out = []
    for d in dets:
        r = {"image_id": d["image_id"], "category_id": d["category_id"], "score": d["score"]}
        if segm:
            from pycocotools import mask as mu

            rle = mu.merge(mu.frPyObjects([d["seg"]], H, W))
            r["segmentation"] = {"size": [H, W], "counts": rle["counts"].decode()}
        else:
            r["bbox"] = d["bbox"]
        out.append(r)
    assert empty_cat not in {a["category_id"] for a in gt["annotations"]}
    return gt, out


def pycoco_stats(gt, dets, iou_type, tmp_path, img_ids=None, cat_ids=None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    p = tmp_path / "gt.json"
    p.write_text(json.dumps(gt))
    g = COCO(str(p))
    d = g.loadRes(copy.deepcopy(dets))
    ev = COCOeval(g, d, iou_type)
    if img_ids is not None:
        ev.params.imgIds = img_ids
    if cat_ids is not None:
        ev.params.catIds = cat_ids
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


def ours(gt, dets, iou_type, **kw):
    clean = M.validate_results(gt, dets, iou_type, "dets.json")
    return M.evaluate(M.load_gt(copy.deepcopy(gt)), clean, iou_type, **kw)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_parity_with_pycocotools(tmp_path, iou_type, seed):
    gt, dets = make_case(seed, segm=iou_type == "segm", dets_per_img=60 if seed == 2 else 30)
    if seed == 2:  # one image with far more than 100 detections of one category: the per-(image, category) cap
        dets += [{**dets[0], "score": float(s)} for s in np.linspace(0.01, 0.99, 150)]
    ref = pycoco_stats(gt, dets, iou_type, tmp_path)
    ev = ours(gt, dets, iou_type)
    got = M.coco_stats(ev)
    np.testing.assert_allclose([got[k] for k in M.COCO_STATS], ref.stats, rtol=0, atol=1e-9)
    # per-category AP as detectron2 derives it from pycocotools' precision array
    prec = ref.eval["precision"]
    for k, cat in enumerate(ref.params.catIds):
        p = prec[:, :, k, 0, -1]
        want = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
        assert abs(M.per_category_ap(ev)[cat] - want) <= 1e-9


def test_coco_subset_of_images(tmp_path):
    gt, dets = make_case(3)
    ids = [100, 103, 104, 108]
    ref = pycoco_stats(gt, dets, "bbox", tmp_path, img_ids=ids)
    np.testing.assert_allclose(list(M.coco_stats(ours(gt, dets, "bbox", img_ids=ids)).values()), ref.stats, atol=1e-9, rtol=0)


def test_segm_polygon_results_equal_rle(tmp_path):
    """Polygon segmentation in GT is scored as pycocotools does (converted to RLE at image size)."""
    gt, dets = make_case(4, segm=True, crowd=False)
    ref = pycoco_stats(gt, dets, "segm", tmp_path)
    np.testing.assert_allclose(list(M.coco_stats(ours(gt, dets, "segm")).values()), ref.stats, atol=1e-9, rtol=0)


@pytest.fixture
def lvis_pkg(monkeypatch):
    # lvis 0.5.3 still says np.float; restore the alias for this test only
    monkeypatch.setattr(np, "float", float, raising=False)
    import lvis

    return lvis


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 5])
def test_lvis_parity_with_lvis_package(tmp_path, lvis_pkg, iou_type, seed):
    gt, dets = make_case(seed, lvis=True, segm=iou_type == "segm", dets_per_img=80 if seed == 5 else 30, n_cat=7)
    if seed == 5:  # > 300 detections on one image: LVISResults keeps the top 300 by score
        dets += [{**dets[1], "score": float(s)} for s in np.linspace(0.001, 0.999, 400)]
    p = tmp_path / "lvis.json"
    p.write_text(json.dumps(gt))
    ref_gt = lvis_pkg.LVIS(str(p))
    ev_ref = lvis_pkg.LVISEval(ref_gt, lvis_pkg.LVISResults(ref_gt, copy.deepcopy(dets)), iou_type)
    ev_ref.run()
    ref = ev_ref.get_results()
    got = M.lvis_stats(ours(gt, dets, iou_type, lvis=True))
    for k in M.LVIS_STATS:
        want = ref["AR@300" if k == "AR300" else k]
        assert abs(got[k] - want) <= 1e-9, (k, got[k], want)


def test_ovd_split_arithmetic_hand_made():
    """3 categories, one image each, one GT each: AP50 is 1 (hit), 0.5 (FP ranked above TP) or 0 (miss)."""
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}]
    images = [{"id": i, "width": 100, "height": 100} for i in (1, 2, 3)]
    anns = [{"id": i, "image_id": i, "category_id": i, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0} for i in (1, 2, 3)]
    gt = {"images": images, "annotations": anns, "categories": cats}
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9},  # a: AP50 = 1
        {"image_id": 2, "category_id": 2, "bbox": [70, 70, 20, 20], "score": 0.9},  # b: FP first ...
        {"image_id": 2, "category_id": 2, "bbox": [12, 12, 50, 50], "score": 0.8},  # ... then TP: precision 1/2 at recall 1
        {"image_id": 3, "category_id": 3, "bbox": [60, 60, 30, 30], "score": 0.9},  # c: miss, AP50 = 0
    ]
    ev = ours(gt, dets, "bbox")
    got = M.ovd_ap50(ev, base_ids=[1, 2], novel_ids=[3])
    assert got == pytest.approx({"AP50_base": 0.75, "AP50_novel": 0.0, "AP50_all": 0.5}, abs=1e-12)


def test_ovd_subset_equals_pycocotools_catids(tmp_path):
    gt, dets = make_case(6, n_cat=6)
    ev = ours(gt, dets, "bbox")
    base, novel = [10, 13, 16], [19, 22]
    for ids, key in ((base, "AP50_base"), (novel, "AP50_novel"), (base + novel, "AP50_all")):
        ref = pycoco_stats(gt, dets, "bbox", tmp_path, cat_ids=ids)
        assert abs(M.ovd_ap50(ev, base, novel)[key] - ref.stats[1]) <= 1e-9


# ---------------------------------------------------------------- bad input
def _gt():
    return make_case(7, n_img=3)[0]


@pytest.mark.parametrize(
    "det, match",
    [
        ({"image_id": 999, "category_id": 10, "bbox": [0, 0, 5, 5], "score": 0.5}, "image ids not in the ground truth: 999"),
        ({"image_id": 100, "category_id": 0, "bbox": [0, 0, 5, 5], "score": 0.5}, "category ids not in the ground truth: 0"),
        ({"image_id": 100, "category_id": 10, "bbox": [0, 0, -5, 5], "score": 0.5}, "negative box width or height"),
        ({"image_id": 100, "category_id": 10, "bbox": [0, 0, 5, 5], "score": float("nan")}, "NaN"),
        ({"image_id": 100, "category_id": 10, "bbox": [0, 0, 5, 5]}, "lack image_id, category_id, score"),
        ({"image_id": 100, "category_id": 10, "bbox": [0, 0, 5], "score": 0.5}, "not 4 finite numbers"),
    ],
)
def test_bad_results_raise_one_clear_line(det, match):
    with pytest.raises(DataError, match=match) as e:
        M.validate_results(_gt(), [det], "bbox", "dets.json")
    assert str(e.value).startswith("dets.json: ") and "\n" not in str(e.value)


def test_empty_results_score_zero_where_gt_exists(tmp_path):
    gt = _gt()
    stats = M.coco_stats(ours(gt, [], "bbox"))
    # pycocotools cannot load [] (IndexError); with no detections every AP/AR with GT is 0
    assert stats["AP"] == 0.0 and stats["AR100"] == 0.0


def test_dets_over_cap_counts_images():
    rs = [{"image_id": 1}] * 101 + [{"image_id": 2}] * 100
    assert M.dets_over_cap(rs, 100) == 1
