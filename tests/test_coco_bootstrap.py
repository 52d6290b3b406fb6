"""The image bootstrap's re-accumulation equals faster-coco-eval's own accumulate, and behaves as copies of images."""

import copy

import numpy as np
import pytest

from bench.metrics import coco as M
from bench.metrics.coco_bootstrap import ImageMatches, image_bootstrap
from bench.metrics.uncertainty import Spec
from tests.test_coco_metrics import make_case


def _ev(gt, dets, iou, lvis=False, img_ids=None):
    results = M.validate_results(gt, copy.deepcopy(dets), iou, "test")
    return M.evaluate(M.load_gt(copy.deepcopy(gt)), results, iou, lvis=lvis, keep_matches=True, img_ids=img_ids)


@pytest.mark.parametrize("lvis", [False, True])
@pytest.mark.parametrize("iou", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 1])
def test_unit_weights_reproduce_the_engine(lvis, iou, seed):
    gt, dets = make_case(seed=seed, lvis=lvis, segm=iou == "segm")
    ev = _ev(gt, dets, iou, lvis=lvis)
    m = ImageMatches(ev)
    (p,), (r,) = m.accumulate(np.ones((1, m.n_i)))
    want_p, want_r = ev.eval["precision"], ev.eval["recall"]
    np.testing.assert_allclose(p, want_p[..., -1], atol=1e-12, rtol=0)
    np.testing.assert_allclose(r, want_r, atol=1e-12, rtol=0)


def test_counts_equal_copies_of_images():
    """Drawing an image twice scores like a dataset holding it twice (ids renumbered)."""
    gt, dets = make_case(seed=3, n_img=8)
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, size=len(gt["images"]))
    counts[0] = 2
    ev = _ev(gt, dets, "bbox")
    m = ImageMatches(ev)
    (p,), (r,) = m.accumulate(counts[None, :].astype(float))
    e = {"precision": np.repeat(p[..., None], len(m.max_dets), axis=-1), "recall": r}
    # build the copied dataset
    ids = sorted(im["id"] for im in gt["images"])
    g2 = {**gt, "images": [], "annotations": []}
    d2, aid = [], 1
    for i, img in enumerate(ids):
        for c in range(counts[i]):
            nid = img * 100 + c
            g2["images"].append({**next(x for x in gt["images"] if x["id"] == img), "id": nid})
            for a in gt["annotations"]:
                if a["image_id"] == img:
                    g2["annotations"].append({**a, "id": aid, "image_id": nid})
                    aid += 1
            d2 += [{**d, "image_id": nid} for d in dets if d["image_id"] == img]
    ev2 = _ev(g2, d2, "bbox")
    saved = ev.eval
    ev.eval = {**saved, **e}
    ours = M.coco_stats(ev)
    ev.eval = saved
    theirs = M.coco_stats(ev2)
    for k in ours:
        assert ours[k] == pytest.approx(theirs[k], abs=1e-9), k


def test_interval_brackets_the_point_and_is_seeded():
    gt, dets = make_case(seed=4, n_img=20)
    ev = _ev(gt, dets, "bbox")
    point = M.coco_stats(ev)
    spec = Spec(resamples=200, seed=0)
    a = image_bootstrap(ev, M.coco_stats, spec)
    b = image_bootstrap(ev, M.coco_stats, spec)
    assert a == b
    assert a["AP"].low <= point["AP"] <= a["AP"].high and a["AP"].stderr > 0
    assert a["AP"].method == "bootstrap-normal(unit=image,resamples=200,seed=0)"
    assert M.coco_stats(ev) == point  # the evaluator is left as it was


def test_lower_bound_equals_searchsorted_per_row():
    from bench.metrics.coco_bootstrap import lower_bound

    rng = np.random.default_rng(0)
    thr = np.linspace(0.0, 1.00, 101)
    for _ in range(50):
        n = rng.integers(1, 60)
        x = np.sort(rng.integers(0, n + 1, size=(7, 3, rng.integers(1, 40))) / n, axis=-1)  # ratios that hit thresholds exactly
        got = lower_bound(x, thr)
        want = np.stack([[np.searchsorted(row, thr, side="left") for row in block] for block in x])
        assert (got == want).all()


@pytest.mark.parametrize("lvis", [False, True])
def test_recall_threshold_means_give_the_same_numbers(lvis):
    """accumulate(r_mean=True), which the bootstrap reads, gives every AP the full precision array gives."""
    gt, dets = make_case(seed=5, lvis=lvis)
    ev = _ev(gt, dets, "bbox", lvis=lvis)
    m = ImageMatches(ev)
    w = np.random.default_rng(0).poisson(1.0, (3, m.n_i)).astype(float)
    (p_full, r_full), (p_mean, r_mean) = m.accumulate(w), m.accumulate(w, r_mean=True)
    np.testing.assert_array_equal(r_full, r_mean)
    numbers = M.lvis_stats if lvis else M.coco_stats
    saved = ev.eval
    for full, mean, r in zip(p_full, p_mean, r_full):
        got = []
        for p in (full, mean):
            ev.eval = {**saved, "precision": np.repeat(p[..., None], len(ev.params.maxDets), axis=-1), "recall": r}
            got.append({**numbers(ev), **M.per_category_ap(ev)})
        ev.eval = saved
        assert got[0].keys() == got[1].keys()
        for k in got[0]:
            assert got[1][k] == pytest.approx(got[0][k], abs=1e-12), k


def test_threads_give_the_same_intervals():
    gt, dets = make_case(seed=6, n_img=20)
    ev = _ev(gt, dets, "bbox")
    spec = Spec(resamples=60, seed=0)
    assert image_bootstrap(ev, M.coco_stats, spec) == image_bootstrap(ev, M.coco_stats, spec, threads=3)
