"""Classification metrics and protocols against hand-computed cases and reference implementations."""

import numpy as np
import torch

from bench.tasks import lower_is_better
from bench.metrics.classification import topk_accuracy, topk_indices
from bench.probes import knn_scores, linear_probe, zero_shot_weights


def test_topk_hand_computed():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    labels = np.array([1, 2, 0, 1])
    top = topk_indices(scores, 2)
    assert top.tolist() == [[1, 2], [0, 1], [2, 1], [0, 1]]  # tie in the last row: lower index first
    assert topk_accuracy(top, labels, ks=(1, 2)) == {"top1": 0.25, "top2": 0.5}
    assert "top5" not in topk_accuracy(top, labels)  # fewer than 5 classes


def test_topk_matches_timm_accuracy():
    from timm.utils import accuracy

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1000, 37)).astype(np.float32)
    labels = rng.integers(0, 37, 1000)
    ours = topk_accuracy(topk_indices(logits, 5), labels)
    ref1, ref5 = accuracy(torch.from_numpy(logits), torch.from_numpy(labels), topk=(1, 5))
    # timm returns float32 percentages; compare the underlying counts exactly
    assert round(ours["top1"] * 1000) == round(ref1.item() * 10) and ours["top1"] == round(ref1.item() * 10) / 1000
    assert round(ours["top5"] * 1000) == round(ref5.item() * 10) and ours["top5"] == round(ref5.item() * 10) / 1000


def dino_knn_reference(train, train_labels, test, k, T, num_classes):
    """DINO's knn_classifier (eval_knn.py) for one chunk, written out in torch."""
    train = torch.nn.functional.normalize(torch.from_numpy(train).double(), dim=1)
    test = torch.nn.functional.normalize(torch.from_numpy(test).double(), dim=1)
    sim = test @ train.t()
    dist, idx = sim.topk(k, largest=True, sorted=True)
    cand = torch.from_numpy(train_labels).view(1, -1).expand(len(test), -1)
    retrieved = torch.gather(cand, 1, idx)
    one_hot = torch.zeros(len(test) * k, num_classes, dtype=torch.double).scatter_(1, retrieved.reshape(-1, 1), 1)
    weights = (dist / T).exp()
    return (one_hot.view(len(test), -1, num_classes) * weights.view(len(test), -1, 1)).sum(1).numpy()


def test_knn_matches_dino():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(300, 16)), rng.normal(size=(50, 16))
    labels = rng.integers(0, 5, 300)
    ours = knn_scores(train, labels, test, 5, k=20, temperature=0.07, memory_mb=0.01)  # many small blocks
    ref = dino_knn_reference(train.astype(np.float32), labels, test.astype(np.float32), 20, 0.07, 5)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    assert (ours.argmax(1) == ref.argmax(1)).all()


def test_knn_hand_computed():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = np.array([0, 1, 1])
    s = knn_scores(train, labels, np.array([[2.0, 0.0]]), 2, k=2, temperature=1.0)
    # neighbours: (1,0) sim 1 → class 0; (1,1)/√2 sim 1/√2 → class 1
    np.testing.assert_allclose(s, [[np.exp(1.0), np.exp(1 / np.sqrt(2))]])


def test_linear_probe_refits_chosen_c():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 8)) * 2
    y = rng.integers(0, 4, 400)
    x = centers[y] + rng.normal(size=(400, 8))
    yt = rng.integers(0, 4, 100)
    xt = centers[yt] + rng.normal(size=(100, 8))
    proba, c, held = linear_probe(x, y, xt, seed=0)
    # the final model is scikit-learn's at the chosen C: both stop at max|gradient| <= 1e-4, from
    # different starts, so they agree on the classes, not to the last digit of each probability
    ref = LogisticRegression(C=c, max_iter=1000, random_state=0).fit(x, y).predict_proba(xt)
    assert (proba.argmax(1) == ref.argmax(1)).mean() >= 0.98
    assert np.abs(proba - ref).max() < 0.05
    assert 1e-6 <= c <= 1e6 and 0.5 < held <= 1.0
    assert (proba.argmax(1) == yt).mean() > 0.7


def test_zero_shot_weights_hand_computed():
    # 2 classes × 2 templates in 2-d
    text = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 5.0]])
    w = zero_shot_weights(text, 2, 2)
    np.testing.assert_allclose(w, [[1 / np.sqrt(2), 1 / np.sqrt(2)], [0.0, 1.0]])


def test_metric_direction():
    assert not lower_is_better("top1", "classification") and not lower_is_better("bbox/AP", "detection")
    assert lower_is_better("FPR95", "ood") and lower_is_better("near/FPR95")  # declared by the OOD family
