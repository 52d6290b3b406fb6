"""Frozen-feature protocols in numpy/scikit-learn: linear probe, DINO k-NN, zero-shot heads."""

from __future__ import annotations

import warnings

import numpy as np


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


def knn_scores(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, num_classes: int, k: int = 20, temperature: float = 0.07, chunk: int = 1024
) -> np.ndarray:
    """DINO's weighted k-NN: cosine similarity, top-k neighbours, votes weighted by exp(sim / T).

    Similarities are float64: in float32 the order of near-tied neighbours follows the BLAS
    reduction order, so the thread count and the CPU would pick the neighbours.
    """
    train = l2_normalize(train.astype(np.float64))
    test = l2_normalize(test.astype(np.float64))
    k = min(k, len(train))
    out = np.zeros((len(test), num_classes), dtype=np.float64)
    for s in range(0, len(test), chunk):
        sim = test[s : s + chunk] @ train.T
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sim, idx, axis=1)
        w = np.exp(top / temperature)
        rows = np.repeat(np.arange(len(idx)), k)
        np.add.at(out[s : s + chunk], (rows, train_labels[idx].ravel()), w.ravel())
    return out


def linear_probe(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, held_out: float = 0.2, max_iter: int = 1000, seed: int = 0, refine_steps: int = 2
):
    """CLIP's protocol: L2-regularised logistic regression, C chosen on a held-out part of train.

    A coarse sweep over C in 1e-6..1e6, then a parametric binary search between the best C and
    its neighbours in log space; the final model is refit on all of train. Returns
    (test class probabilities, chosen C, held-out accuracy at that C).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    counts = np.bincount(train_labels)
    strat = train_labels if counts[counts > 0].min() >= 2 else None
    tr, va = train_test_split(np.arange(len(train)), test_size=held_out, random_state=seed, stratify=strat)

    def fit(c, x, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return LogisticRegression(C=c, max_iter=max_iter, random_state=seed).fit(x, y)

    scores: dict[float, float] = {}

    def held_out_acc(log_c: float) -> float:
        if log_c not in scores:
            clf = fit(10.0**log_c, train[tr], train_labels[tr])
            scores[log_c] = float((clf.predict(train[va]) == train_labels[va]).mean())
        return scores[log_c]

    grid = [-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0]
    best = max(grid, key=lambda c: (held_out_acc(c), -abs(c)))
    step = 2.0
    for _ in range(refine_steps):
        step /= 2
        for cand in (best - step, best + step):
            held_out_acc(cand)
        best = max((best - step, best, best + step), key=lambda c: (held_out_acc(c), -abs(c)))
    clf = fit(10.0**best, train, train_labels)
    proba = np.zeros((len(test), int(train_labels.max()) + 1))
    proba[:, clf.classes_] = clf.predict_proba(test)
    return proba, 10.0**best, scores[best]


def zero_shot_weights(text_features: np.ndarray, num_classes: int, num_templates: int) -> np.ndarray:
    """CLIP's class embeddings: mean of the normalised template embeddings, renormalised."""
    t = l2_normalize(text_features.astype(np.float64)).reshape(num_classes, num_templates, -1)
    return l2_normalize(t.mean(axis=1))


def class_weights(text_features: np.ndarray, counts: list[int]) -> np.ndarray:
    """The same with a different number of prompts per class (CuPL): consecutive groups of `counts`."""
    t = l2_normalize(text_features.astype(np.float64))
    ends = np.cumsum(counts)
    return l2_normalize(np.stack([t[e - c : e].mean(axis=0) for c, e in zip(counts, ends)]))


def zpe_weights(
    test_features: np.ndarray,
    reference_features: np.ndarray,
    text_features: np.ndarray,
    num_classes: int,
    num_templates: int,
    scale: float = 100.0,
    temperature: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-shot prompt ensembling (Allingham et al., 2023) without labels.

    For prompt p, logits l_p(x)_c = scale · cos(x, t_{c,p}); the pre-training bias of each (p, c)
    is its mean logit over reference images (a sample of pre-training-like data) and is subtracted;
    the prompt's score is the mean over test images of the max bias-corrected logit; prompts are
    weighted by softmax(score / temperature) and the class embedding is the normalised weighted sum
    of the normalised prompt embeddings. Returns (class embeddings [C, D], weights [P], scores [P]).
    """
    t = l2_normalize(text_features.astype(np.float64)).reshape(num_classes, num_templates, -1)
    x = l2_normalize(test_features.astype(np.float64))
    r = l2_normalize(reference_features.astype(np.float64))
    scores = np.empty(num_templates)
    for p in range(num_templates):
        bias = scale * (r @ t[:, p].T).mean(axis=0)  # [C]
        scores[p] = (scale * (x @ t[:, p].T) - bias).max(axis=1).mean()
    z = scores / temperature
    w = np.exp(z - z.max())
    w /= w.sum()
    return l2_normalize(np.einsum("p,cpd->cd", w, t)), w, scores
