"""SuperGLUE metrics on hand-computed cases, and the leaderboard aggregate."""

import numpy as np
import pytest

from bench.metrics import superglue as S


def test_vega_v2_published_test_numbers_aggregate_to_91_3():
    vega = {
        "boolq": {"acc": 90.5},
        "cb": {"f1": 98.6, "acc": 99.2},
        "copa": {"acc": 99.4},
        "multirc": {"f1a": 88.2, "em": 62.4},
        "record": {"f1": 94.4, "em": 93.9},
        "rte": {"acc": 96.0},
        "wic": {"acc": 77.4},
        "wsc": {"acc": 98.6},
    }
    # (90.5 + 98.9 + 99.4 + 75.3 + 94.15 + 96.0 + 77.4 + 98.6) / 8 = 91.28125
    assert S.superglue_score(vega) == pytest.approx(91.28125, abs=1e-12)
    assert round(S.superglue_score(vega), 1) == 91.3
    with pytest.raises(ValueError, match="missing wsc"):
        S.superglue_score({k: v for k, v in vega.items() if k != "wsc"})


def test_cb_macro_f1_counts_an_absent_class_as_zero():
    gold = [0, 0, 1, 1]
    pred = [0, 1, 1, 1]
    # class 0: P=1, R=1/2, F1=2/3; class 1: P=2/3, R=1, F1=4/5; class 2 absent everywhere: 0
    assert S.cb_macro_f1(pred, gold) == pytest.approx((2 / 3 + 4 / 5 + 0) / 3, abs=1e-12)
    assert S.cb_macro_f1([0, 1, 2], [0, 1, 2]) == 1.0
    # a class predicted but never gold: P = 0, F1 = 0
    assert S.cb_macro_f1([2, 1, 2], [0, 1, 2]) == pytest.approx((0 + 1 + 2 / 3) / 3, abs=1e-12)


def test_multirc_f1a_and_question_em():
    q = ["p0-q0", "p0-q0", "p0-q0", "p0-q1", "p0-q1", "p1-q0"]
    gold = [1, 0, 1, 0, 1, 0]
    pred = [1, 0, 0, 0, 1, 1]
    # answer level: TP 2, FP 1, FN 1 -> F1a = 2*2/(2*2+1+1) = 2/3; questions right: only p0-q1 -> EM 1/3
    out = S.multirc_scores(q, pred, gold)
    assert out["f1a"] == pytest.approx(2 / 3, abs=1e-12) and out["em"] == pytest.approx(1 / 3, abs=1e-12)


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("The  Eiffel Tower!", "eiffel tower"),
        ("an apple, a pear", "apple pear"),
        ("Theatre", "theatre"),  # 'the' only as a word
        ("U.S.A.", "usa"),
        ("  ", ""),
    ],
)
def test_record_normalisation(raw, norm):
    assert S.normalize_answer(raw) == norm


def test_record_f1_em_max_over_golds_and_empty_prediction():
    golds = [["Barack Obama", "Obama"], ["New York City"], ["Paris"]]
    preds = ["obama", "New York", ""]
    out = S.record_scores(preds, golds)
    # q1: EM 1 (matches "Obama"); q2: F1 = 2*(1)*(2/3)/(1+2/3) = 0.8, EM 0; q3: empty prediction -> 0
    assert out["em"] == pytest.approx(1 / 3, abs=1e-12)
    assert out["f1"] == pytest.approx((1 + 0.8 + 0) / 3, abs=1e-12)
    # a missing prediction counts as wrong and stays in the denominator
    assert S.record_scores(["obama", None, None], golds)["f1"] == pytest.approx(1 / 3, abs=1e-12)


def test_matthews_and_gender_parity():
    # TP=2, TN=1, FP=1, FN=0: (2*1 - 1*0) / sqrt(3*2*2*1) = 2/sqrt(12)
    assert S.matthews([1, 1, 1, 0], [1, 1, 0, 0]) == pytest.approx(2 / 12**0.5, abs=1e-12)
    assert S.gender_parity([7, 7, 8, 8, 9, 9], [1, 1, 0, 1, 0, 0]) == pytest.approx(2 / 3, abs=1e-12)


def test_accuracy():
    assert S.accuracy([1, 0, 1], [1, 1, 1]) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- weighted versions (bootstrap resamples)
def _data(seed: int, n: int = 40):
    """Random predictions with a missing one (-1) and, for CB, a class that is never predicted."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.6, gold, rng.integers(0, 2, n))
    pred[3] = -1
    return pred, gold


def _multirc(seed: int, n_questions: int = 12):
    rng = np.random.default_rng(seed)
    q = np.repeat(np.arange(n_questions), rng.integers(1, 5, n_questions))
    gold = rng.integers(0, 2, len(q))
    pred = np.where(rng.random(len(q)) < 0.7, gold, 1 - gold)
    pred[0] = -1
    return q, pred, gold


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_metrics_with_unit_weights_equal_the_plain_ones(seed):
    pred, gold = _data(seed)
    ones = np.ones(len(gold))
    b_pred, b_gold = (pred == 1).astype(int) - (pred == -1), gold % 2  # binary labels, the missing one kept
    assert S.weighted_accuracy(pred, gold, ones) == pytest.approx(S.accuracy(pred, gold), abs=1e-12)
    assert S.weighted_cb_macro_f1(pred, gold, ones) == pytest.approx(S.cb_macro_f1(pred, gold), abs=1e-12)
    assert S.weighted_matthews(pred, gold, ones) == pytest.approx(S.matthews(pred, gold), abs=1e-12)
    assert S.weighted_binary_f1(b_pred, b_gold, ones) == pytest.approx(S.binary_f1(b_pred, b_gold), abs=1e-12)
    q, mp, mg = _multirc(seed)
    plain, weighted = S.multirc_scores(q, mp, mg), S.weighted_multirc_scores(q, mp, mg, np.ones(len(q)))
    assert weighted == pytest.approx(plain, abs=1e-12)
    golds = [["Barack Obama", "Obama"], ["New York City"], ["Paris"], ["the Eiffel Tower"]]
    preds = ["obama", "New York", "", None]
    assert S.weighted_record_scores(preds, golds, np.ones(4)) == pytest.approx(S.record_scores(preds, golds), abs=1e-12)
    pairs, gp = [7, 7, 8, 8, 9, 9, 10], [1, 1, 0, 1, 0, 0, 1]  # pair 10 is incomplete: left out of both
    assert S.weighted_gender_parity(pairs, gp, np.ones(7)) == pytest.approx(S.gender_parity(pairs, gp), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_integer_weights_equal_duplicating_items(seed):
    rng = np.random.default_rng(100 + seed)
    pred, gold = _data(seed)
    w = rng.integers(0, 4, len(gold)).astype(float)
    rep = np.repeat(np.arange(len(gold)), w.astype(int))
    assert S.weighted_accuracy(pred, gold, w) == pytest.approx(S.accuracy(pred[rep], gold[rep]), abs=1e-12)
    assert S.weighted_cb_macro_f1(pred, gold, w) == pytest.approx(S.cb_macro_f1(pred[rep], gold[rep]), abs=1e-12)
    assert S.weighted_matthews(pred, gold, w) == pytest.approx(S.matthews(pred[rep], gold[rep]), abs=1e-12)
    b_pred, b_gold = (pred == 1).astype(int), gold % 2
    assert S.weighted_binary_f1(b_pred, b_gold, w) == pytest.approx(S.binary_f1(b_pred[rep], b_gold[rep]), abs=1e-12)
    # MultiRC: a question's weight is on all its answers; each copy of a question is a new question
    q, mp, mg = _multirc(seed)
    wq = rng.integers(0, 4, q.max() + 1)
    copies = [(k, c) for k in range(q.max() + 1) for c in range(wq[k])]
    idx = np.concatenate([np.flatnonzero(q == k) for k, _ in copies])
    new_q = np.concatenate([np.full((q == k).sum(), n) for n, (k, _) in enumerate(copies)])
    assert S.weighted_multirc_scores(q, mp, mg, wq[q].astype(float)) == pytest.approx(S.multirc_scores(new_q, mp[idx], mg[idx]), abs=1e-12)
    golds, preds = [["Obama"], ["New York City"], ["Paris"]], ["obama", "New York", "Lyon"]
    wr = np.array([2.0, 0.0, 3.0])
    dup = [0, 0, 2, 2, 2]
    assert S.weighted_record_scores(preds, golds, wr) == pytest.approx(S.record_scores([preds[i] for i in dup], [golds[i] for i in dup]), abs=1e-12)
    pairs, gp, wp = [7, 7, 8, 8, 9, 9], [1, 1, 0, 1, 0, 0], np.array([2.0, 2.0, 1.0, 1.0, 0.0, 0.0])
    assert S.weighted_gender_parity(pairs, gp, wp) == pytest.approx(S.gender_parity([7, 7, 17, 17, 8, 8], [1, 1, 1, 1, 0, 1]), abs=1e-12)


def test_weight_matrix_gives_one_value_per_resample():
    pred, gold = _data(5)
    w = np.random.default_rng(0).integers(0, 3, (6, len(gold))).astype(float)
    for f in (S.weighted_accuracy, S.weighted_cb_macro_f1, S.weighted_matthews, S.weighted_binary_f1):
        many = f(pred, gold, w)
        assert many.shape == (6,)
        np.testing.assert_allclose(many, [f(pred, gold, row) for row in w], atol=1e-12)
    q, mp, mg = _multirc(5)
    wq = np.random.default_rng(1).integers(0, 3, (4, q.max() + 1)).astype(float)[:, q]
    many = S.weighted_multirc_scores(q, mp, mg, wq)
    for b in range(4):
        assert {k: v[b] for k, v in many.items()} == pytest.approx(S.weighted_multirc_scores(q, mp, mg, wq[b]), abs=1e-12)


def test_multirc_f1a_counts_a_missing_prediction_as_negative():
    # sklearn's binary average refuses a third label (-1): it is a negative, so a right answer missed
    assert S.binary_f1([1, -1, 0], [1, 1, 0]) == pytest.approx(2 / 3, abs=1e-12)
    assert S.multirc_scores(["a", "a", "b"], [1, -1, 0], [1, 1, 0]) == pytest.approx({"f1a": 2 / 3, "em": 0.5}, abs=1e-12)
