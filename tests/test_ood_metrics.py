"""OOD metrics: OpenOOD's formula (its evaluator, written out), known answers, and bad input."""

import numpy as np
import pytest
from sklearn import metrics

from bench.metrics.ood import OODInputError, group_means, ood_metrics


def openood_reference(id_scores, ood_scores):
    """OpenOOD v1.5 `auc_and_fpr_recall`, as its evaluator calls it (label -1 marks OOD)."""
    conf = np.concatenate([id_scores, ood_scores])
    label = np.concatenate([np.zeros(len(id_scores)), -np.ones(len(ood_scores))])
    ood_indicator = np.zeros_like(label)
    ood_indicator[label == -1] = 1
    fpr_list, tpr_list, _ = metrics.roc_curve(ood_indicator, -conf)
    fpr = fpr_list[np.argmax(tpr_list >= 0.95)]
    p_in, r_in, _ = metrics.precision_recall_curve(1 - ood_indicator, conf)
    p_out, r_out, _ = metrics.precision_recall_curve(ood_indicator, -conf)
    return metrics.auc(fpr_list, tpr_list), fpr, metrics.auc(r_in, p_in), metrics.auc(r_out, p_out)


@pytest.mark.parametrize("seed", range(5))
def test_parity_with_openood_formula_with_ties(seed):
    rng = np.random.default_rng(seed)
    # rounded scores produce many ties within and across the sets
    id_s = np.round(rng.normal(1.0, 1.0, 500), 1)
    ood_s = np.round(rng.normal(0.0, 1.0, 300), 1)
    ours = ood_metrics(id_s, ood_s)
    auroc, fpr, aupr_in, aupr_out = openood_reference(id_s, ood_s)
    assert abs(ours["AUROC"] - auroc) < 1e-9 and abs(ours["FPR95"] - fpr) < 1e-9
    assert abs(ours["AUPR_IN"] - aupr_in) < 1e-9 and abs(ours["AUPR_OUT"] - aupr_out) < 1e-9
    # AUROC is the probability that a random ID sample outscores a random OOD one (ties count half)
    diff = id_s[:, None] - ood_s[None, :]
    assert abs(ours["AUROC"] - ((diff > 0).mean() + 0.5 * (diff == 0).mean())) < 1e-9


def test_known_answers():
    sep = ood_metrics([5, 6, 7, 8], [1, 2, 3])
    assert sep == {"AUROC": 1.0, "FPR95": 0.0, "AUPR_IN": 1.0, "AUPR_OUT": 1.0}
    rev = ood_metrics([1, 2, 3], [5, 6, 7, 8])
    assert rev["AUROC"] == 0.0 and rev["FPR95"] == 1.0


def test_fpr95_hand_computed():
    # 20 OOD: 19 below every ID score, one above them all; 95% OOD recall needs 19 of 20 OOD,
    # reached with no ID flagged
    ood = np.r_[np.arange(19) * 0.01, 10.0]
    idd = np.linspace(1, 2, 10)
    assert ood_metrics(idd, ood)["FPR95"] == 0.0
    # one OOD at 1.5 among the ID scores 1, 1.11, …, 2: catching 19 of 20 OOD means flagging every
    # score <= 1.5, which flags the 5 ID samples 1, 1.11, 1.22, 1.33, 1.44
    ood = np.r_[np.arange(18) * 0.01, 1.5, 10.0]
    assert ood_metrics(idd, ood)["FPR95"] == 0.5


def test_degenerate_inputs_are_defined():
    eq = ood_metrics(np.zeros(10), np.zeros(5))  # all scores equal
    assert eq["AUROC"] == 0.5 and eq["FPR95"] == 1.0
    one = ood_metrics([1.0, 2.0, 3.0], [0.5])  # a single OOD sample
    assert one["AUROC"] == 1.0 and one["FPR95"] == 0.0
    x = np.random.default_rng(0).normal(size=50)
    same = ood_metrics(x, x)  # OOD identical to ID
    assert same["AUROC"] == pytest.approx(0.5) and same["FPR95"] == 1.0


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(OODInputError, match=r"^near/ssb: the OOD set is empty$"):
        ood_metrics([1.0], [], what="near/ssb")
    with pytest.raises(OODInputError, match=r"^2 of 3 OOD scores are NaN or infinite$"):
        ood_metrics([1.0, 2.0], [np.nan, 1.0, np.inf])


def test_group_means():
    per = {"a": {"AUROC": 0.9, "FPR95": 0.2}, "b": {"AUROC": 0.7, "FPR95": 0.4}, "c": {"AUROC": 0.5, "FPR95": 1.0}}
    g = group_means(per, {"near": ["a", "b"], "far": ["c"], "none": ["zzz"]})
    assert g == {"near": {"AUROC": pytest.approx(0.8), "FPR95": pytest.approx(0.3)}, "far": {"AUROC": 0.5, "FPR95": 1.0}}


def test_weighted_metrics_equal_sklearn_and_copies():
    """The bootstrap's weighted OOD metrics: unit weights give ood_metrics, integer weights give copies."""
    from bench.metrics.ood import WeightedOOD

    rng = np.random.default_rng(0)
    for _ in range(200):
        a = np.round(rng.normal(1, 1, rng.integers(2, 60)), rng.integers(0, 2))  # rounding makes ties
        b = np.round(rng.normal(0, 1, rng.integers(2, 60)), rng.integers(0, 2))
        w = WeightedOOD(a, b)
        want = ood_metrics(a, b)
        got = w(np.ones(a.size), np.ones(b.size))
        assert all(abs(got[k] - want[k]) < 1e-12 for k in want)
        wa, wb = rng.integers(0, 3, a.size), rng.integers(0, 3, b.size)
        if wa.sum() == 0 or wb.sum() == 0:
            continue
        want = ood_metrics(np.repeat(a, wa), np.repeat(b, wb))
        got = w(wa.astype(float), wb.astype(float))
        assert all(abs(got[k] - want[k]) < 1e-12 for k in want), (got, want)
