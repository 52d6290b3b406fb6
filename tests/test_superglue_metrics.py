"""SuperGLUE metrics on hand-computed cases, and the leaderboard aggregate."""

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
