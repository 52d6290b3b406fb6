"""Ego4D metrics on hand-computed cases (the official scripts are not installable packages)."""

import math

import numpy as np
import pytest

from bench.metrics import ego4d as E


def nlq(preds, gold=(2.0, 6.0), total=None):
    g = {("c", "a", 0): gold}
    entries = [{"clip_uid": "c", "annotation_uid": "a", "query_idx": 0, "predicted_times": preds}]
    return E.nlq_metrics(g, entries, total or 1)


def test_nlq_hull_iou_strict_threshold_and_first_window_miou():
    # IoUs with [2, 6]: 1.0, 0, 2/4, 0, 2/4
    m = nlq([[2, 6], [0, 1], [3, 5], [10, 12], [2, 4]])
    assert m["R1@0.3"] == m["R1@0.5"] == 1.0 and m["mIoU"] == 1.0
    # first window IoU exactly 0.5: a hit at 0.3, not at 0.5 (strictly greater); later windows do not help R1
    m = nlq([[0, 10], [1, 5]], gold=(0.0, 5.0))  # second window: 4 over the hull [0, 5] = 0.8
    assert m["R1@0.3"] == 1.0 and m["R1@0.5"] == 0.0 and m["R3@0.5"] == 1.0 and m["mIoU"] == 0.5
    # hull, not union: [0,1] vs [3,4] intersects nothing; [0,4] vs [2,6]: 2 over the hull [0,6]
    assert E.hull_iou([[0, 4]], [[2, 6]])[0, 0] == pytest.approx(2 / 6)


def test_nlq_zero_length_windows_and_fewer_than_k():
    # identical zero-length windows: 0/0 is NaN in the official code, never a hit, and mIoU becomes NaN
    m = nlq([[4, 4]], gold=(4.0, 4.0))
    assert m["R5@0.3"] == 0.0 and math.isnan(m["mIoU"])
    # a zero-length window inside the gold one has IoU 0; only 2 windows: R5 looks at those 2
    m = nlq([[3, 3], [2, 5]], gold=(2.0, 6.0))
    assert m["R1@0.3"] == 0.0 and m["R5@0.5"] == 1.0


def test_nlq_coverage_counts_missing_queries():
    g = {("c", "a", 0): (0.0, 1.0), ("c", "a", 1): (2.0, 3.0)}
    m = E.nlq_metrics(g, [{"clip_uid": "c", "annotation_uid": "a", "query_idx": 0, "predicted_times": [[0, 1]]}], total_queries=2)
    assert m["R1@0.5"] == 1.0 and m["coverage"] == 0.5  # the official number averages over predicted queries only


def mq_case():
    gt = [
        {"clip": "c1", "label": "A", "start": 0, "end": 10},
        {"clip": "c1", "label": "A", "start": 20, "end": 30},
        {"clip": "c2", "label": "B", "start": 0, "end": 4},
    ]
    preds = [  # unsorted on purpose; C exists only in the predictions
        {"clip": "c1", "label": "A", "start": 50, "end": 60, "score": 0.7},
        {"clip": "c2", "label": "B", "start": 0, "end": 2, "score": 0.5},
        {"clip": "c1", "label": "A", "start": 0, "end": 10, "score": 0.9},
        {"clip": "c1", "label": "C", "start": 0, "end": 10, "score": 1.0},
        {"clip": "c1", "label": "A", "start": 20, "end": 23.5, "score": 0.8},
        {"clip": "c2", "label": "B", "start": 10, "end": 12, "score": 0.99},
    ]
    return gt, preds


def test_mq_detection_map_hand_computed():
    gt, preds = mq_case()
    m, per_class = E.mq_detection(gt, preds)
    # A: [0,10] TP; [20,23.5] has tIoU 0.35: TP up to 0.3, FP above; [50,60] FP.
    #   t <= 0.3: P = 1, 1, 2/3 at R = .5, 1, 1 -> AP 1;  t >= 0.4: TP at rank 1 only -> AP .5
    # B: FP (0.99) then [0,2] with tIoU exactly 0.5 (a match needs >= t) -> P = 0, 1/2 at R = 0, 1 -> AP .5
    assert [m[f"mAP@{t}"] for t in E.MQ_THRESHOLDS] == pytest.approx([0.75, 0.75, 0.75, 0.5, 0.5], abs=1e-12)
    assert m["mAP"] == pytest.approx((0.75 * 3 + 0.5 * 2) / 5, abs=1e-12)
    assert set(per_class) == {"A", "B"}  # C is dropped, as the official importer drops unknown labels


def test_mq_retrieval_file_order_hand_computed():
    gt, preds = mq_case()
    r = E.mq_retrieval(gt, preds)
    # A (2 moments): file order [50,60], [0,10], [20,23.5]; B (1 moment): [0,2], [10,12]
    # R1x: A looks at 2 -> [0,10] hits moment 1; B looks at 1 -> [0,2] (hull IoU .5): > .3 yes, > .5 no
    assert r["R1x@0.3"] == pytest.approx(2 / 3) and r["R1x@0.5"] == pytest.approx(1 / 3)
    # R2x: A looks at 4 -> [20,23.5] (hull IoU .35) hits moment 2 at .3
    assert r["R2x@0.3"] == 1.0 and r["R2x@0.5"] == pytest.approx(1 / 3) and r["R5x@0.7"] == pytest.approx(1 / 3)


def test_mq_retrieval_ignores_scores():
    gt, preds = mq_case()
    a = [p for p in preds if p["label"] == "A"]
    flipped = [dict(p, score=1 - p["score"]) for p in a]
    assert E.mq_retrieval(gt, a) == E.mq_retrieval(gt, flipped)


def frame(boxes, nouns, verbs, ttcs, scores=None):
    d = {"boxes": np.asarray(boxes, float), "nouns": np.asarray(nouns), "verbs": np.asarray(verbs), "ttcs": np.asarray(ttcs, float)}
    if scores is not None:
        d["scores"] = np.asarray(scores, float)
    return d


def test_sta_top5_map_hand_computed():
    box, far = [0, 0, 9, 9], [50, 50, 60, 60]
    f1 = (
        frame([box, box, far], [1, 1, 9], [3, 2, 2], [1.1, 2.0, 1.0], [0.9, 0.8, 0.7]),  # noun 9: a class only in predictions
        frame([box], [1], [2], [1.0]),
    )
    f2 = (frame([far] * 6, [1] * 6, [2] * 6, [1.0] * 6, [0.95, 0.6, 0.5, 0.4, 0.3, 0.2]), frame([box], [1], [2], [1.0]))
    f3 = ({}, frame([box], [7], [2], [1.0]))  # no predictions: adds no ground truth (official behaviour)
    m = E.sta_map([f1, f2, f3])
    # box+noun: f1's best prediction is a TP; f2's 4 highest FPs are forgiven (k-1 = 4 per gold box),
    # leaving FPs at .3 and .2: P = 1, 1/2, 1/3 at R = 1/2 -> AP 1/2 for noun 1, the only scored noun
    assert m["mAP_box_noun"] == pytest.approx(0.5, abs=1e-12)
    # +verb: the .8 prediction (verb 2) is the TP; +ttc: the .9 one (|1.1 - 1.0| <= .25); both: none -> 0
    assert m["mAP_box_noun_verb"] == pytest.approx(0.5, abs=1e-12)
    assert m["mAP_box_noun_ttc"] == pytest.approx(0.5, abs=1e-12)
    assert m["mAP_box_noun_verb_ttc"] == 0.0


def test_sta_box_iou_is_pixel_inclusive():
    # 10x10 pixels each ([0, 9]), overlap 5x10 -> 50 / (100 + 100 - 50)
    assert E.box_iou_inclusive([[0, 0, 9, 9]], [[5, 0, 14, 9]])[0, 0] == pytest.approx(50 / 150, abs=1e-9)


def test_voc_ap():
    assert E.voc_ap(np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_mq_zero_length_moment_matches_itself_as_officially():
    # tIoU of two identical zero-length segments is 0/0 = NaN; the official `tiou < thr` test is False for NaN,
    # so the prediction is matched (a TP) — reproduced, not "fixed"
    gt = [{"clip": "c", "label": "A", "start": 5.0, "end": 5.0}]
    m, _ = E.mq_detection(gt, [{"clip": "c", "label": "A", "start": 5.0, "end": 5.0, "score": 1.0}])
    assert m["mAP"] == 1.0
    # so does any other zero-length prediction in that clip (0/0 again) ...
    m, _ = E.mq_detection(gt, [{"clip": "c", "label": "A", "start": 6.0, "end": 6.0, "score": 1.0}])
    assert m["mAP"] == 1.0
    # ... while a prediction with length has tIoU 0 with it
    m, _ = E.mq_detection(gt, [{"clip": "c", "label": "A", "start": 4.0, "end": 6.0, "score": 1.0}])
    assert m["mAP"] == 0.0
