"""OOD postprocessors on cached outputs, each a small class with ``fit`` and ``score``.

The output-only scores are numpy; Mahalanobis, Relative Mahalanobis, KNN and ViM fit covariances,
projections and neighbours in float64 torch on the job's device (their numpy/scikit-learn versions
are in bench.reference, and the tests hold the two equal).

Scores are higher for ID. Inputs are the model's cached outputs (``Outputs``), and, for methods
that recompute logits from modified features, the linear head that maps penultimate features to
logits (``Head``: logits = features @ weight.T + bias). Formulas follow OpenOOD v1.5's
postprocessors; where they differ it is said at the class. ODIN needs input gradients, so it runs
the model and is not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
from scipy.special import logsumexp, softmax

from bench.registry import Registry


@dataclass
class Outputs:
    logits: Optional[np.ndarray] = None  # [N, C]
    features: Optional[np.ndarray] = None  # [N, D] penultimate (pre-logits) features
    labels: Optional[np.ndarray] = None  # ID-train labels, for class-conditional fits


@dataclass
class Head:
    weight: np.ndarray  # [C, D]
    bias: np.ndarray  # [C]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight.T + self.bias


class Postprocessor:
    name: ClassVar[str]
    needs: ClassVar[frozenset] = frozenset({"logits"})  # of: logits, features, labels, head

    def fit(self, train: Outputs, head: Optional[Head] = None) -> "Postprocessor":
        return self

    def score(self, x: Outputs) -> np.ndarray:
        raise NotImplementedError


POSTPROCESSORS: Registry[type[Postprocessor]] = Registry("postprocessor")


def register_postprocessor(cls):
    return POSTPROCESSORS.register(cls.name)(cls)


def create_postprocessor(name: str, device: str = "cpu", **hparams) -> Postprocessor:
    pp = POSTPROCESSORS.get(name)(**hparams)
    pp.device = device  # where the torch ones (Mahalanobis, RMDS, KNN, ViM) fit and score
    return pp


def list_postprocessors(pattern: str = "*") -> list[str]:
    return POSTPROCESSORS.list(pattern)


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


@register_postprocessor
class MSP(Postprocessor):
    """Maximum softmax probability (Hendrycks & Gimpel, 2017)."""

    name = "msp"

    def score(self, x):
        return softmax(_f64(x.logits), axis=1).max(axis=1)


@register_postprocessor
class MaxLogit(Postprocessor):
    name = "maxlogit"

    def score(self, x):
        return _f64(x.logits).max(axis=1)


@register_postprocessor
class Energy(Postprocessor):
    """Negative free energy T·logsumexp(logits / T) (Liu et al., 2020)."""

    name = "energy"

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def score(self, x):
        return self.temperature * logsumexp(_f64(x.logits) / self.temperature, axis=1)


@register_postprocessor
class GEN(Postprocessor):
    """Generalized entropy over the M largest probabilities: −Σ p^γ (1−p)^γ (Liu et al., 2023)."""

    name = "gen"

    def __init__(self, gamma: float = 0.1, M: int = 100):
        self.gamma, self.M = gamma, M

    def score(self, x):
        p = np.sort(softmax(_f64(x.logits), axis=1), axis=1)[:, -self.M :]
        return -(p**self.gamma * (1 - p) ** self.gamma).sum(axis=1)


@register_postprocessor
class MCM(Postprocessor):
    """Zero-shot maximum concept matching: max softmax of image–class-text cosine similarities / T.

    ``logits`` must be the raw cosine similarities (not CLIP's 100× scaled logits).
    """

    name = "mcm"

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def score(self, x):
        return softmax(_f64(x.logits) / self.temperature, axis=1).max(axis=1)


def _t(a, device: str):
    import torch

    return torch.as_tensor(np.asarray(a, dtype=np.float64), device=torch.device(device))


def _covariance(x, centred: bool):
    """scikit-learn's EmpiricalCovariance: the mean-removed (or, centred=True, raw) second moment, biased."""
    if not centred:
        x = x - x.mean(0)
    return x.T @ x / len(x)


def _pinvh(cov):
    """scipy.linalg.pinvh: eigenvalues below max|λ|·n·eps are dropped."""
    import torch

    vals, vecs = torch.linalg.eigh(cov)
    keep = vals.abs() > vals.abs().max() * cov.shape[0] * torch.finfo(cov.dtype).eps
    return (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T


def _neg_mahalanobis(x, means, precision):
    """−(x−μ_c)ᵀ P (x−μ_c) for every class c at once: xᵀPx − 2xᵀPμ_c + μ_cᵀPμ_c, one matmul per term."""
    xp = x @ precision
    mp = means @ precision
    return -((xp * x).sum(1, keepdim=True) - 2 * xp @ means.T + (mp * means).sum(1))


class _Torch(Postprocessor):
    """A postprocessor that fits and scores in float64 torch on `device` (set by create_postprocessor)."""

    device = "cpu"


@register_postprocessor
class Mahalanobis(_Torch):
    """Max over classes of −(x−μ_c)ᵀ Σ⁻¹ (x−μ_c), Σ shared across classes (Lee et al., 2018; OpenOOD 'mds')."""

    name = "mahalanobis"
    needs = frozenset({"features", "labels"})

    def fit(self, train, head=None):
        import torch

        f = _t(train.features, self.device)
        labels = np.asarray(train.labels)
        classes, inv = np.unique(labels, return_inverse=True)
        inv = torch.as_tensor(inv, device=f.device)
        counts = torch.bincount(inv, minlength=len(classes)).to(f.dtype)
        self._means = torch.zeros(len(classes), f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, inv, f) / counts[:, None]
        self._precision = _pinvh(_covariance(f - self._means[inv], centred=False))
        return self

    def score(self, x):
        return self._scores(_t(x.features, self.device)).cpu().numpy()

    def _scores(self, f):
        return _neg_mahalanobis(f, self._means, self._precision).max(1).values


@register_postprocessor
class RelativeMahalanobis(Mahalanobis):
    """Mahalanobis minus a class-agnostic background Gaussian's score (Ren et al., 2021; OpenOOD 'rmds')."""

    name = "relative_mahalanobis"

    def fit(self, train, head=None):
        super().fit(train)
        f = _t(train.features, self.device)
        self._mean0 = f.mean(0, keepdim=True)
        self._precision0 = _pinvh(_covariance(f - self._mean0, centred=False))
        return self

    def _scores(self, f):
        background = _neg_mahalanobis(f, self._mean0, self._precision0)
        return (_neg_mahalanobis(f, self._means, self._precision) - background).max(1).values


@register_postprocessor
class KNN(_Torch):
    """−(squared L2 distance to the k-th nearest ID-train feature), features normalised (Sun et al., 2022).

    Normalisation is OpenOOD's ``x / ‖x‖ + 1e-10``; its faiss IndexFlatL2 returns squared distances.
    The neighbours are bench.probes.topk_neighbours': exact float64, in bounded memory.
    """

    name = "knn"
    needs = frozenset({"features"})

    def __init__(self, k: int = 50):
        self.k = k

    @staticmethod
    def _normalise(f):
        return f / np.linalg.norm(f, axis=-1, keepdims=True) + 1e-10

    def fit(self, train, head=None):
        self._bank = self._normalise(_f64(train.features))
        return self

    def score(self, x):
        from bench.probes import topk_neighbours

        d2, _ = topk_neighbours(self._normalise(_f64(x.features)), self._bank, self.k, "sqeuclidean", self.device)
        return -np.maximum(d2[:, -1], 0)


@register_postprocessor
class ViM(_Torch):
    """Virtual-logit matching (Wang et al., 2022): energy − α·‖residual of x−u off the principal subspace‖.

    u = −pinv(W)·b; the principal subspace is the top-`dim` eigenvectors of the (uncentred about u)
    ID-train covariance; α matches the mean max-logit to the mean residual norm on ID train.
    """

    name = "vim"
    needs = frozenset({"features", "head"})

    def __init__(self, dim: int = 256):
        self.dim = dim

    def fit(self, train, head=None):
        import torch

        f = _t(train.features, self.device)
        self._w, self._b = _t(head.weight, self.device), _t(head.bias, self.device)
        self._u = -torch.linalg.pinv(self._w) @ self._b
        vals, vecs = torch.linalg.eigh(_covariance(f - self._u, centred=True))  # symmetric: a residual norm is basis-free
        order = torch.argsort(-vals)
        self._ns = vecs[:, order[self.dim :]].contiguous()
        logits = f @ self._w.T + self._b
        self._alpha = logits.max(1).values.mean() / ((f - self._u) @ self._ns).norm(dim=1).mean()
        return self

    def score(self, x):
        import torch

        f = _t(x.features, self.device)
        energy = torch.logsumexp(f @ self._w.T + self._b, 1)
        return (energy - self._alpha * ((f - self._u) @ self._ns).norm(dim=1)).cpu().numpy()


@register_postprocessor
class ReAct(Postprocessor):
    """Energy of logits recomputed from features clipped at the p-th percentile of ID activations (Sun et al., 2021).

    The percentile is taken over ID-train features (OpenOOD takes it over its ID validation split).
    """

    name = "react"
    needs = frozenset({"features", "head"})

    def __init__(self, percentile: float = 90.0):
        self.percentile = percentile

    def fit(self, train, head=None):
        self._head = Head(_f64(head.weight), _f64(head.bias))
        self.threshold = float(np.percentile(_f64(train.features).ravel(), self.percentile))
        return self

    def score(self, x):
        return logsumexp(self._head(np.minimum(_f64(x.features), self.threshold)), axis=1)


def ash(x: np.ndarray, percentile: float, mode: str) -> np.ndarray:
    """ASH on each sample's activations (any trailing shape): keep the top n−round(n·p/100).

    p: zero the rest; b: the kept ones become sum(x)/k; s: keep, then scale by exp(sum before / sum after).
    """
    x = _f64(x)
    flat = x.reshape(len(x), -1)
    n = flat.shape[1]
    k = n - int(np.round(n * percentile / 100.0))
    idx = np.argpartition(-flat, k - 1, axis=1)[:, :k]
    kept = np.zeros_like(flat)
    rows = np.arange(len(flat))[:, None]
    s1 = flat.sum(axis=1)
    if mode == "b":
        kept[rows, idx] = (s1 / k)[:, None]
    else:
        kept[rows, idx] = flat[rows, idx]
        if mode == "s":
            kept = kept * np.exp(s1 / kept.sum(axis=1))[:, None]
    return kept.reshape(x.shape)


class _ASH(Postprocessor):
    """Activation shaping then energy (Djurisic et al., 2023).

    OpenOOD shapes the last feature map before pooling; this shapes the pooled penultimate
    features, which is what a model that exposes no feature map (a ViT's pre-logits) allows.
    """

    needs = frozenset({"features", "head"})
    mode: ClassVar[str]

    def __init__(self, percentile: float = 90.0):
        self.percentile = percentile

    def fit(self, train, head=None):
        self._head = Head(_f64(head.weight), _f64(head.bias))
        return self

    def score(self, x):
        return logsumexp(self._head(ash(x.features, self.percentile, self.mode)), axis=1)


@register_postprocessor
class ASHP(_ASH):
    name, mode = "ash_p", "p"


@register_postprocessor
class ASHB(_ASH):
    name, mode = "ash_b", "b"


@register_postprocessor
class ASHS(_ASH):
    name, mode = "ash_s", "s"
