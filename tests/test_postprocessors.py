"""Each OOD postprocessor against a direct formula on small inputs (OpenOOD's, written out here)."""

import numpy as np
import pytest
import torch

from bench.postprocessors import Head, Outputs, ash, create_postprocessor, list_postprocessors

RNG = np.random.default_rng(0)
N_TRAIN, N, D, C = 120, 15, 6, 4
TRAIN = Outputs(features=np.abs(RNG.normal(size=(N_TRAIN, D))), labels=np.arange(N_TRAIN) % C)
HEAD = Head(RNG.normal(size=(C, D)), RNG.normal(size=C))
TRAIN.logits = HEAD(TRAIN.features)
X = Outputs(features=np.abs(RNG.normal(size=(N, D))) * 1.5)
X.logits = HEAD(X.features)


def score(name, **hp):
    return create_postprocessor(name, **hp).fit(TRAIN, HEAD).score(X)


def test_registry_lists_all():
    assert set(list_postprocessors()) >= {
        "msp",
        "maxlogit",
        "energy",
        "gen",
        "mcm",
        "mahalanobis",
        "relative_mahalanobis",
        "knn",
        "vim",
        "react",
        "ash_p",
        "ash_b",
        "ash_s",
    }
    assert list_postprocessors("ash_*") == ["ash_b", "ash_p", "ash_s"]


def test_logit_scores():
    z = X.logits
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(score("msp"), p.max(1), rtol=1e-12)
    np.testing.assert_allclose(score("maxlogit"), z.max(1), rtol=1e-12)
    np.testing.assert_allclose(score("energy", temperature=2.0), 2.0 * np.log(np.exp(z / 2.0).sum(1)), rtol=1e-12)
    ps = np.sort(p, 1)[:, -3:]
    np.testing.assert_allclose(score("gen", gamma=0.5, M=3), -(np.sqrt(ps) * np.sqrt(1 - ps)).sum(1), rtol=1e-12)
    q = np.exp(z / 0.5) / np.exp(z / 0.5).sum(1, keepdims=True)
    np.testing.assert_allclose(score("mcm", temperature=0.5), q.max(1), rtol=1e-12)


def gaussian_fit(f, labels):
    means = np.stack([f[labels == c].mean(0) for c in range(C)])
    centred = f - means[labels]
    cov = centred.T @ centred / len(f) - np.outer(centred.mean(0), centred.mean(0))
    return means, np.linalg.inv(cov)


def test_mahalanobis_and_relative():
    means, prec = gaussian_fit(TRAIN.features, TRAIN.labels)
    cls = np.stack([-np.array([(x - m) @ prec @ (x - m) for x in X.features]) for m in means], 1)
    np.testing.assert_allclose(score("mahalanobis"), cls.max(1), rtol=1e-9)
    mu0 = TRAIN.features.mean(0)
    c0 = TRAIN.features - mu0
    prec0 = np.linalg.inv(c0.T @ c0 / len(c0))
    bg = -np.array([(x - mu0) @ prec0 @ (x - mu0) for x in X.features])
    np.testing.assert_allclose(score("relative_mahalanobis"), (cls - bg[:, None]).max(1), rtol=1e-9)


def test_knn_kth_squared_distance():
    norm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True) + 1e-10  # noqa: E731
    bank, q = norm(TRAIN.features), norm(X.features)
    d2 = ((q[:, None, :] - bank[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(score("knn", k=5), -np.sort(d2, 1)[:, 4], atol=1e-12)


def test_vim_against_openood_formula():
    w, b, f = HEAD.weight, HEAD.bias, TRAIN.features
    u = -np.linalg.pinv(w) @ b
    cov = (f - u).T @ (f - u) / len(f)
    vals, vecs = np.linalg.eig(cov)  # OpenOOD uses eig; the residual norm does not depend on the basis
    ns = vecs.T[np.argsort(-vals)[3:]].T
    alpha = (f @ w.T + b).max(1).mean() / np.linalg.norm((f - u) @ ns, axis=1).mean()
    z = X.features @ w.T + b
    ref = np.log(np.exp(z).sum(1)) - alpha * np.linalg.norm((X.features - u) @ ns, axis=1)
    np.testing.assert_allclose(score("vim", dim=3), ref, rtol=1e-9)


def test_react():
    thr = np.percentile(TRAIN.features.ravel(), 80)
    z = HEAD(np.minimum(X.features, thr))
    np.testing.assert_allclose(score("react", percentile=80), np.log(np.exp(z).sum(1)), rtol=1e-12)


def openood_ash(x, percentile, mode):
    """OpenOOD's ash_p/ash_b/ash_s on a [B, C, 1, 1] tensor."""
    x = torch.tensor(x)[:, :, None, None].clone()
    b = x.shape[0]
    s1 = x.sum(dim=[1, 2, 3])
    n = x.shape[1:].numel()
    k = n - int(np.round(n * percentile / 100.0))
    t = x.view((b, -1))
    v, i = torch.topk(t, k, dim=1)
    src = (s1 / k).unsqueeze(1).expand(v.shape) if mode == "b" else v
    t.zero_().scatter_(dim=1, index=i, src=src)
    if mode == "s":
        x = x * torch.exp((s1 / x.sum(dim=[1, 2, 3]))[:, None, None, None])
    return x[:, :, 0, 0].numpy()


@pytest.mark.parametrize("mode", ["p", "b", "s"])
def test_ash_matches_openood(mode):
    np.testing.assert_allclose(ash(X.features, 50, mode), openood_ash(X.features, 50, mode), rtol=1e-12)
    z = HEAD(openood_ash(X.features, 50, mode))
    np.testing.assert_allclose(score(f"ash_{mode}", percentile=50), np.log(np.exp(z).sum(1)), rtol=1e-12)


def test_ash_hand_computed():
    x = np.array([[1.0, 4.0, 2.0, 3.0]])
    assert ash(x, 50, "p").tolist() == [[0.0, 4.0, 0.0, 3.0]]
    assert ash(x, 50, "b").tolist() == [[0.0, 5.0, 0.0, 5.0]]
    np.testing.assert_allclose(ash(x, 50, "s"), [[0.0, 4 * np.exp(10 / 7), 0.0, 3 * np.exp(10 / 7)]])
