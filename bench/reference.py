"""numpy/scikit-learn reference implementations of the frozen-feature protocols.

bench runs the torch versions in bench.probes; these are what the tests and benchmarks/probes_scale.py
hold them to (the same chosen C and held-out accuracy; k-NN equal to 1e-6).
"""

from __future__ import annotations

import warnings

import numpy as np

from scipy.special import logsumexp

from bench.postprocessors import Postprocessor, _f64
from bench.probes import l2_normalize, search_log_c


def knn_scores_numpy(
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
        idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # exact ties: the lowest train index
        top = np.take_along_axis(sim, idx, axis=1)
        w = np.exp(top / temperature)
        rows = np.repeat(np.arange(len(idx)), k)
        np.add.at(out[s : s + chunk], (rows, train_labels[idx].ravel()), w.ravel())
    return out


def linear_probe_sklearn(
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

    best = search_log_c(held_out_acc, refine_steps)  # the protocol's search is shared; the solver is not
    clf = fit(10.0**best, train, train_labels)
    proba = np.zeros((len(test), int(train_labels.max()) + 1))
    proba[:, clf.classes_] = clf.predict_proba(test)
    return proba, 10.0**best, scores[best]


# OOD postprocessors as numpy/scikit-learn compute them; bench.postprocessors has the torch ones


def _class_gaussians(features: np.ndarray, labels: np.ndarray):
    """Class means and the precision of the shared covariance of class-centred features."""
    from sklearn.covariance import EmpiricalCovariance

    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    return means, EmpiricalCovariance(assume_centered=False).fit(centred).precision_


def _neg_mahalanobis(features: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = features - mean
    return -((d @ precision) * d).sum(axis=1)  # a BLAS matmul; a 3-operand einsum loops in Python-speed C


class MahalanobisNumpy(Postprocessor):
    """Max over classes of −(x−μ_c)ᵀ Σ⁻¹ (x−μ_c), Σ shared across classes (Lee et al., 2018; OpenOOD 'mds')."""

    name = "mahalanobis"
    needs = frozenset({"features", "labels"})

    def fit(self, train, head=None):
        f = _f64(train.features)
        self._means, self._precision = _class_gaussians(f, np.asarray(train.labels))
        return self

    def score(self, x):
        f = _f64(x.features)
        return np.stack([_neg_mahalanobis(f, m, self._precision) for m in self._means], axis=1).max(axis=1)


class RelativeMahalanobisNumpy(MahalanobisNumpy):
    """Mahalanobis minus a class-agnostic background Gaussian's score (Ren et al., 2021; OpenOOD 'rmds')."""

    name = "relative_mahalanobis"

    def fit(self, train, head=None):
        from sklearn.covariance import EmpiricalCovariance

        super().fit(train)
        f = _f64(train.features)
        self._mean0 = f.mean(axis=0)
        self._precision0 = EmpiricalCovariance(assume_centered=False).fit(f - self._mean0).precision_
        return self

    def score(self, x):
        f = _f64(x.features)
        background = _neg_mahalanobis(f, self._mean0, self._precision0)
        return np.stack([_neg_mahalanobis(f, m, self._precision) - background for m in self._means], axis=1).max(axis=1)


class KNNNumpy(Postprocessor):
    """−(squared L2 distance to the k-th nearest ID-train feature), features normalised (Sun et al., 2022).

    Normalisation is OpenOOD's ``x / ‖x‖ + 1e-10``; its faiss IndexFlatL2 returns squared distances.
    """

    name = "knn"
    needs = frozenset({"features"})

    chunk = 2048  # query rows per distance block, to bound memory

    def __init__(self, k: int = 50):
        self.k = k

    @staticmethod
    def _normalise(f):
        return f / np.linalg.norm(f, axis=-1, keepdims=True) + 1e-10

    def fit(self, train, head=None):
        self._bank = self._normalise(_f64(train.features))
        self._bank_sq = (self._bank**2).sum(axis=1)
        return self

    def score(self, x):
        q = self._normalise(_f64(x.features))
        k = min(self.k, len(self._bank))
        out = np.empty(len(q))
        for s in range(0, len(q), self.chunk):
            block = q[s : s + self.chunk]
            d2 = (block**2).sum(axis=1)[:, None] + self._bank_sq[None, :] - 2 * block @ self._bank.T
            out[s : s + self.chunk] = -np.partition(np.maximum(d2, 0), k - 1, axis=1)[:, k - 1]
        return out


class ViMNumpy(Postprocessor):
    """Virtual-logit matching (Wang et al., 2022): energy − α·‖residual of x−u off the principal subspace‖.

    u = −pinv(W)·b; the principal subspace is the top-`dim` eigenvectors of the (uncentred about u)
    ID-train covariance; α matches the mean max-logit to the mean residual norm on ID train.
    """

    name = "vim"
    needs = frozenset({"features", "head"})

    def __init__(self, dim: int = 256):
        self.dim = dim

    def fit(self, train, head=None):
        from sklearn.covariance import EmpiricalCovariance

        f = _f64(train.features)
        w, b = _f64(head.weight), _f64(head.bias)
        self._w, self._b = w, b
        self._u = -np.linalg.pinv(w) @ b
        # store_precision=False: ViM needs the covariance only, and the precision's pinvh is the slow part
        cov = EmpiricalCovariance(assume_centered=True, store_precision=False).fit(f - self._u).covariance_
        vals, vecs = np.linalg.eigh(cov)  # symmetric: real, and a residual norm is basis-free
        order = np.argsort(-vals)
        self._ns = np.ascontiguousarray(vecs[:, order[self.dim :]])
        logits = f @ w.T + b
        self._alpha = logits.max(axis=1).mean() / np.linalg.norm((f - self._u) @ self._ns, axis=1).mean()
        return self

    def score(self, x):
        f = _f64(x.features)
        energy = logsumexp(f @ self._w.T + self._b, axis=1)
        return energy - self._alpha * np.linalg.norm((f - self._u) @ self._ns, axis=1)
