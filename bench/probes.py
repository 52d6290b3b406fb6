"""Frozen-feature protocols in torch on the job's device: linear probe, DINO k-NN, zero-shot heads.

The scikit-learn/numpy versions they are held to live in bench.reference. Features arrive as
numpy arrays (the broker's cache) and results go back as float64 numpy arrays.
"""

from __future__ import annotations

import math

import numpy as np

F32_EPS = 2.0**-24  # unit roundoff of float32
FTOL = 8 * F32_EPS  # a relative loss decrease below this is float32 noise, not progress
FTOL64 = 64 * 2.0**-53  # scikit-learn's lbfgs ftol (64 · float64 eps)
SHRINK = 0.8  # class means for the curvature model, this far from the global mean (_LogReg.curvature)
SMALL_PROBE = 2**23  # train rows × (dim + 1) × classes up to which the probe fits in float64 (a few ms a step)
UNDERFLOW = 2.0**-100  # a softmax probability below this is recomputed as log_softmax (float32's tiny is 2^-126)
CPU_BLOCK = 2**20  # bytes of logits per row block on CPU: cache-sized, the softmax's passes stay in cache
LINE_ROWS = 512  # rows that score a start along a line between solved points (_LogReg.line_start)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


def _rows_per_block(cols: int, memory_mb: float, itemsize: int = 4) -> int:
    return max(1, int(memory_mb * 2**20 // max(1, cols * itemsize)))


def topk_neighbours(query, bank, k: int, metric: str = "cosine", device: str = "cpu", memory_mb: float = 512.0):
    """The k nearest bank rows of each query row, exact in float64, in blocks of at most ~memory_mb.

    metric "cosine": the largest cosine similarities, descending; "sqeuclidean": the smallest squared
    L2 distances (|q|² + |b|² − 2q·b), ascending. A float32 pass over bank blocks keeps 2k candidates
    per query; they are rescored in float64, and a query whose k-th exact value is not clear of the
    float32 pass's error bound is redone in float64 against the whole bank. The neighbours then do
    not depend on the BLAS, the thread count or the device, and no query × bank matrix is ever held.
    Exact ties (duplicate bank rows, common with random-init features) go to the lowest bank index.
    Returns (values [Q, k] float64, indices [Q, k] int64) as numpy arrays.
    """
    import torch

    q_np, b_np = np.asarray(query), np.asarray(bank)
    n, d = b_np.shape
    k = min(k, n)
    m = min(n, 2 * k + 8)
    dev = torch.device(device)
    bank_t = torch.from_numpy(np.ascontiguousarray(b_np))
    on_dev = bank_t.to(dev)  # a no-op on the CPU for float32 input: the bank is never copied there
    # per-bank-row terms in float64, once: 1/|b| (cosine) or |b|² (sqeuclidean)
    bsq = torch.cat([(on_dev[s : s + 65536].double() ** 2).sum(1) for s in range(0, n, 65536)])
    bterm = bsq.rsqrt() if metric == "cosine" else bsq
    bterm32 = bterm.float()
    bmax = float(bsq.max().sqrt()) if n else 0.0
    nb = min(n, _rows_per_block(d + 2 * m, memory_mb / 2))  # bank rows per block: the block and its scores
    qb = max(1, min(len(q_np), _rows_per_block(nb + m * d * 2, memory_mb / 2)))  # queries per block
    sign = 1.0 if metric == "cosine" else -1.0  # candidates by the largest of sign · value

    def exact(q64, idx):  # float64 values of the (query, bank row) pairs in idx [q, j]
        cand = on_dev[idx.reshape(-1)].double().reshape(*idx.shape, d)
        dot = torch.einsum("qd,qjd->qj", q64, cand)
        if metric == "cosine":
            return dot * bterm[idx]
        return (q64 * q64).sum(1, keepdim=True) + bsq[idx] - 2 * dot

    out_v, out_i = [], []
    for s in range(0, len(q_np), qb):
        q64 = torch.from_numpy(np.asarray(q_np[s : s + qb], dtype=np.float64)).to(dev)
        qn = q64.norm(dim=1, keepdim=True)
        q64c = q64 / qn.clamp_min(1e-12) if metric == "cosine" else q64
        q32 = q64c.float()
        best_v = torch.full((len(q32), 0), -float("inf"), device=dev)
        best_i = torch.zeros((len(q32), 0), dtype=torch.long, device=dev)
        for t in range(0, n, nb):
            blk = on_dev[t : t + nb].float()
            sc = q32 @ blk.T
            sc = sc * bterm32[t : t + nb] if metric == "cosine" else sc - 0.5 * bterm32[t : t + nb]  # rank by q·b − |b|²/2
            v, i = sc.topk(min(m, sc.shape[1]), dim=1)
            best_v, j = torch.cat([best_v, v], 1).topk(min(m, best_v.shape[1] + v.shape[1]), dim=1)
            best_i = torch.cat([best_i, i + t], 1).gather(1, j)
        best_i = best_i.sort(dim=1).values  # exact ties then go to the lowest bank index, as below
        val = exact(q64c, best_i)
        order = (sign * val).argsort(dim=1, descending=True, stable=True)[:, :k]
        val, idx = val.gather(1, order), best_i.gather(1, order)
        if m < n:
            # |float32 score − exact| ≤ this, per query; a row outside the candidates scored ≤ the m-th
            qnorm = torch.ones_like(qn[:, 0]) if metric == "cosine" else qn[:, 0]
            bound = 4 * (d + 2) * F32_EPS * qnorm * (1.0 if metric == "cosine" else bmax) + (0 if metric == "cosine" else 2 * (d + 2) * F32_EPS * bmax**2)
            kth = sign * val[:, -1] if metric == "cosine" else -0.5 * (val[:, -1] - (q64c * q64c).sum(1))
            unsure = torch.nonzero(best_v[:, -1].double() + bound >= kth - bound).flatten()
            for r in unsure.tolist():  # rare: near-ties at the boundary; float64 against the whole bank
                vals = torch.cat([exact(q64c[r : r + 1], torch.arange(t, min(n, t + nb), device=dev)[None]) for t in range(0, n, nb)], 1)[0]
                o = (sign * vals).argsort(descending=True, stable=True)[:k]
                val[r], idx[r] = vals[o], o
        out_v.append(val.cpu().numpy())
        out_i.append(idx.cpu().numpy())
    if not out_v:
        return np.zeros((0, k)), np.zeros((0, k), dtype=np.int64)
    return np.concatenate(out_v), np.concatenate(out_i)


def knn_scores(
    train, train_labels, test, num_classes: int, k: int = 20, temperature: float = 0.07, device: str = "cpu", memory_mb: float = 512.0
) -> np.ndarray:
    """DINO's weighted k-NN: cosine similarity, top-k neighbours, votes weighted by exp(sim / T).

    The neighbours and their similarities are exact float64 (topk_neighbours), so the votes equal
    bench.reference.knn_scores_numpy's on any machine.
    """
    sim, idx = topk_neighbours(test, train, k, "cosine", device, memory_mb)
    out = np.zeros((len(sim), num_classes), dtype=np.float64)
    rows = np.repeat(np.arange(len(idx)), idx.shape[1])
    np.add.at(out, (rows, np.asarray(train_labels)[idx].ravel()), np.exp(sim / temperature).ravel())
    return out


class _Memory:
    """L-BFGS curvature pairs (s, y) that carry along the C path.

    The cross-entropy's curvature is the same at every C; only the ridge term λ‖W‖²/2 changes, by
    exactly Δλ·s on the W part of y. Correcting the pairs for it lets a warm-started fit at the
    next C take full quasi-Newton steps from its first iteration.
    """

    def __init__(self, size: int = 10):
        self.size, self.pairs, self.lam = size, [], None

    def clear(self):
        self.pairs = []

    def copy(self) -> "_Memory":
        m = _Memory(self.size)
        m.pairs, m.lam = list(self.pairs), self.lam
        return m

    def retarget(self, lam: float, d: int):
        if self.lam is not None and lam != self.lam:
            moved = []
            for s, y in self.pairs:
                y = y.clone()
                y[:, :d] += (lam - self.lam) * s[:, :d]
                moved.append((s, y))
            self.pairs = [(s, y) for s, y in moved if float((s * y).sum()) > 1e-10]
        self.lam = lam

    def add(self, s, y):
        if float((s * y).sum()) > 1e-10:
            self.pairs = (self.pairs + [(s, y)])[-self.size :]

    def direction(self, g, pre: "_ClassCurvature"):
        """−H·g by the two-loop recursion, H0 = γ·M⁻¹ (M: the per-class curvature model `pre`)."""
        q, alphas = g.clone(), []
        for s, y in reversed(self.pairs):
            a = float((s * q).sum()) / float((y * s).sum())
            q -= a * y
            alphas.append(a)
        q = pre.solve(q)
        if self.pairs:
            s, y = self.pairs[-1]
            q *= float((s * y).sum()) / float((y * pre.solve(y)).sum())
        for (s, y), a in zip(self.pairs, reversed(alphas)):
            q += (a - float((y * q).sum()) / float((y * s).sum())) * s
        return -q


class _ClassCurvature:
    """A model of the Hessian for L-BFGS's H0: one block per class, M_k = c_k·(diag(σ²) + u_k u_kᵀ) + λ on W.

    c_k = mean p_k(1 − p_k) is class k's curvature in its logit; the feature side is the features'
    variance σ² plus the rank-1 u_k = [m_k, 1], m_k the class's p-weighted mean of x shrunk towards
    the global mean (_LogReg.curvature). The rank-1 part is what a diagonal misses: class k's rows
    sit around its mean, so its weights are much stiffer along m_k than across it, and its intercept
    moves with W_k·m_k. The diagonal is floored at 1e-3 of its mean (with λ, so a saturated fit whose
    c_k are all 0 still steps); the intercept's entry, whose σ² is 0, always sits at that floor.
    Built and solved in float64 (it is only K × (D + 1)): Sherman–Morrison cancels in float32.
    Classes are coupled only through the L-BFGS pairs.
    """

    def __init__(self, curv, var, mean, lam: float):
        import torch

        curv, var, mean = curv.double(), var.double(), mean.double()
        k, d = mean.shape
        u = torch.cat([mean, torch.ones(k, 1, dtype=mean.dtype, device=mean.device)], 1)
        dg = curv[:, None] * var[None, :]
        dg[:, :d] += lam
        floor = 1e-3 * float((dg + curv[:, None] * u * u).mean())
        self.dg = dg.clamp_min(max(floor, 1e-300))
        self.u = u
        self.dinv_u = u / self.dg
        self.den = 1.0 / curv.clamp_min(1e-300) + (u * self.dinv_u).sum(1)

    def solve(self, v):
        """M⁻¹·v, v [K, D + 1], in v's dtype."""
        dv = v.double() / self.dg
        return (dv - self.dinv_u * ((self.u * dv).sum(1) / self.den)[:, None]).to(v.dtype)


class _Point:
    """Weights [K, D + 1] and, once evaluated, the mean cross-entropy there, its gradient and the
    per-class curvature mean p(1 − p). None of them depends on C, so a solved point starts the fit
    at another C without another pass over the rows. z: the rows' logits there, where kept
    (_LogReg.keep): logits are linear in w, so a start on the line through two solved points
    needs no forward matmul."""

    def __init__(self, w, ce=None, grad=None, curv=None, z=None):
        self.w, self.ce, self.grad, self.curv, self.z = w, ce, grad, curv, z


class _LogReg:
    """Multinomial logistic regression with scikit-learn's lbfgs objective, fitted by L-BFGS in torch.

    Minimises mean cross-entropy + ‖W‖² / (2·C·n), the intercept unpenalised, and stops where
    scikit-learn does: max |gradient| ≤ tol (1e-4) or max_iter iterations. torch.optim.LBFGS is not
    used because it cannot keep its curvature memory from one C to the next, nor take a
    preconditioner. H0 = γ·M⁻¹ with M a per-class model of the Hessian (_ClassCurvature): with a
    scalar H0 the fits crawled along the unpenalised intercept, whose curvature under strong
    regularisation is orders below W's, and with a diagonal one along each class's mean. Logits are
    made in row blocks (cache-sized on CPU), so memory is the features plus one block. keep_points:
    how many points' logits the caller holds at once; where that many fit memory_mb (keep), each
    evaluated point keeps its rows' logits, which the sweep reuses.
    """

    def __init__(self, x, y, num_classes: int, memory_mb: float = 512.0, keep_points: float = 0.0):
        import torch

        self.n, self.d = x.shape
        self.k = num_classes
        self.x = x  # the intercept is kept apart, not a column of 1s: no copy of the features (3.9 GB at ImageNet size)
        self.block = _rows_per_block(2 * num_classes, memory_mb, x.element_size())  # logits and probabilities
        if x.device.type == "cpu":  # ~10% a pass at 100 classes; at least 1,024 rows so the matmuls stay efficient
            self.block = min(self.block, max(1024, CPU_BLOCK // (num_classes * x.element_size())))
        self.y = y
        self.counts = torch.bincount(y, minlength=num_classes).to(x.dtype)
        self.sums = torch.zeros(num_classes, self.d, dtype=x.dtype, device=x.device)  # class sums of x
        if x.device.type == "cpu":
            self.sums.index_add_(0, y, x)
        else:  # one-hot matmuls: index_add_ is nondeterministic on CUDA
            for s in range(0, self.n, self.block):
                self.sums.addmm_(torch.nn.functional.one_hot(y[s : s + self.block], num_classes).to(x.dtype).T, x[s : s + self.block])
        self.centre = self.sums.sum(0) / self.n  # the global mean
        var = torch.zeros(self.d, dtype=x.dtype, device=x.device)
        rows = _rows_per_block(self.d, memory_mb, x.element_size())  # a [rows, D] temporary
        for s in range(0, self.n, rows):  # centred, so a large offset does not cancel it away
            var += (x[s : s + rows] - self.centre).square_().sum(0)
        self.var = torch.cat([var / self.n, torch.zeros(1, dtype=x.dtype, device=x.device)])  # the intercept's variance is 0
        self.ftol = FTOL64 if x.dtype == torch.float64 else FTOL
        self.keep = 0 < keep_points and self.n * num_classes * x.element_size() * keep_points <= memory_mb * 2**20
        step = max(1, self.n // LINE_ROWS)  # evenly spread rows (train_test_split has shuffled them)
        self.line_x, self.line_y = x[::step][:LINE_ROWS], y[::step][:LINE_ROWS, None]

    def start(self, c: float) -> _Point:
        """A start for the most regularised fit: W one scaled gradient step, intercepts at the log
        priors less W·mean(x).

        At W = 0 every row's probabilities are the priors, so the gradient is priors ⊗ mean(x) minus the
        class sums of x over n: no pass of logits is needed. Taking W·mean(x) off the intercepts keeps
        the mean row at the priors: with features of a large common mean (a CNN's pooled ones) the
        step alone moves every row's logits by it, and the fit spent passes taking it back."""
        w = self.prior_start()
        prior = w[:, self.d].exp()
        g = prior[:, None] * self.sums.sum(0)[None, :] / self.n - self.sums / self.n
        w[:, : self.d] = -g * (c * self.n)
        w[:, self.d] -= w[:, : self.d] @ self.centre
        return _Point(w)

    def line_start(self, a: _Point, b: _Point, c: float, lo: float, hi: float, log_scale: bool = False) -> _Point:
        """The start a + t·(b − a), t in [lo, hi], that minimises the objective at C, t scored on
        LINE_ROWS rows: ~1/30 of a pass at the probe benchmark's sizes, where a poor start (the
        log-midpoint of two solutions whose W scales with C) cost passes. The objective is convex,
        so unimodal along a line (and in log t). log_scale: search log t, for extrapolating over
        decades. Logits interpolate with w where both ends kept them."""
        import torch
        from scipy.optimize import minimize_scalar

        lam = 1.0 / (c * self.n)
        za, zb = self.logits(a.w, self.line_x).double(), self.logits(b.w, self.line_x).double()
        wa, wb = a.w[:, : self.d].double(), b.w[:, : self.d].double()

        def objective(u: float) -> float:
            t = math.exp(u) if log_scale else u
            ce = -float(torch.log_softmax(torch.lerp(za, zb, t), 1).gather(1, self.line_y).mean())
            return ce + 0.5 * lam * float(torch.lerp(wa, wb, t).square().sum())

        bounds = (math.log(lo), math.log(hi)) if log_scale else (lo, hi)
        u = minimize_scalar(objective, bounds=bounds, method="bounded", options={"xatol": 1e-3}).x
        t = math.exp(u) if log_scale else u
        z = None if a.z is None or b.z is None else torch.lerp(a.z, b.z, t)
        return _Point(torch.lerp(a.w, b.w, t), z=z)

    def prior_start(self):
        """W = 0 and the intercepts at the log class priors."""
        import torch

        prior = self.counts / self.n
        w = torch.zeros(self.k, self.d + 1, dtype=self.x.dtype, device=self.x.device)
        w[:, self.d] = prior.clamp_min(1e-12).log()
        return w

    def evaluate(self, w, z=None) -> _Point:
        """One pass over the rows: mean cross-entropy, its gradient and the per-class curvature at w.
        z: the logits at w where known, which saves the forward matmul."""
        import torch

        known = z is not None
        if not known and self.keep:  # made here, kept on the point
            z = torch.empty(self.n, self.k, dtype=w.dtype, device=w.device)
        grad = torch.zeros_like(w)
        gw, gb = grad[:, : self.d], grad[:, self.d]
        wt, b = w[:, : self.d].T, w[:, self.d]
        curv = torch.zeros(self.k, dtype=w.dtype, device=w.device)
        ce = 0.0
        for s in range(0, self.n, self.block):
            x, y = self.x[s : s + self.block], self.y[s : s + self.block, None]
            if known:
                zb = z[s : s + self.block]
            else:
                zb = torch.addmm(b, x, wt, out=None if z is None else z[s : s + self.block])
            p = torch.softmax(zb, 1)  # one kernel, not log_softmax then exp
            py = p.gather(1, y)
            if bool((py < UNDERFLOW).any()):  # p[y] underflowed (a row far on the wrong side): log p[y] exactly
                ce -= float(torch.log_softmax(zb, 1).gather(1, y).sum(dtype=torch.float64))
            else:
                ce -= float(py.log_().sum(dtype=torch.float64))
            zb = None  # a block not kept is freed before q: two block-sized arrays at a time, as the block is sized
            q = torch.sub(1.0, p).mul_(p)  # p(1 − p) as a product: Σp − Σp² cancels in float32
            curv += q.sum(0)
            p.scatter_add_(1, y, torch.full(y.shape, -1.0, dtype=p.dtype, device=p.device))  # p − one-hot: small
            gw.addmm_(p.T, x)  # near the optimum, where Σp·xᵀ − class sums would cancel in float32
            gb += p.sum(0)
        return _Point(w, ce / self.n, grad / self.n, curv / self.n, z)

    def objective(self, pt: _Point, lam: float):
        """The penalised loss and gradient at an evaluated point."""
        W = pt.w[:, : self.d]
        g = pt.grad.clone()
        g[:, : self.d] += lam * W
        return pt.ce + 0.5 * lam * float((W * W).sum()), g

    def curvature(self, pt: _Point, lam: float) -> _ClassCurvature:
        """H0's model at an evaluated point. The p-weighted class means come free from its gradient
        (pᵀx = n·∇_W + the class sums); the rows that carry class k's curvature p(1 − p) are the ones
        it is unsure of, between its mean and the others', so the means are taken SHRINK of the way
        from the global mean (fewer passes than 1 or 0.5 on the cases measured: docs/benchmarks.md)."""
        psum = (pt.grad[:, self.d] * self.n + self.counts).clamp_min(1e-12)
        mean = (pt.grad[:, : self.d] * self.n + self.sums) / psum[:, None]
        return _ClassCurvature(pt.curv, self.var, self.centre + SHRINK * (mean - self.centre), lam)

    def fit(self, c: float, start: _Point, memory: "_Memory", max_iter: int = 1000, tol: float = 1e-4) -> _Point:
        """L-BFGS with an Armijo backtracking line search from `start`, keeping curvature pairs in `memory`."""

        lam = 1.0 / (c * self.n)
        memory.retarget(lam, self.d)
        pt = start if start.ce is not None else self.evaluate(start.w.clone(), start.z)
        loss, g = self.objective(pt, lam)
        for _ in range(max_iter):
            if float(g.abs().max()) <= tol:
                break
            pre = self.curvature(pt, lam)
            d = memory.direction(g, pre)
            slope = float((g * d).sum())
            if slope >= 0:  # not a descent direction: start the memory again
                memory.clear()
                d = memory.direction(g, pre)
                slope = float((g * d).sum())
            t = 1.0
            for _ in range(30):
                new = self.evaluate(pt.w + t * d)
                loss_new, g_new = self.objective(new, lam)
                if loss_new <= loss + 1e-4 * t * slope:
                    break
                t *= 0.5
            else:
                break  # no decrease left at float32 precision: as converged as it gets
            memory.add(new.w - pt.w, g_new - g)
            flat = loss - loss_new <= self.ftol * max(abs(loss), abs(loss_new), 1.0)
            pt, loss, g = new, loss_new, g_new
            if flat:  # scipy's ftol test, at the resolution of the loss's dtype
                break
        return pt

    @staticmethod
    def logits(w, x):
        d = x.shape[1]
        return x @ w[:, :d].T + w[:, d]


def _path_start(problem: _LogReg, points: dict, log_c: float, tol: float) -> _Point:
    """The start at log_c from the solved points: the nearest where it already meets tol there (it
    comes with its loss and gradient: no pass), else the best point on the line between the solved
    ones either side, else on the line through the two nearest on one side, extrapolated (where the
    C path is smooth this lands near the solution: 4 passes to 1 on the probe benchmark's C = 1).
    With a single solved point, that point."""
    near = points[min(points, key=lambda c: abs(c - log_c))]
    lam = 1.0 / (10.0**log_c * problem.n)
    if float(problem.objective(near, lam)[1].abs().max()) <= tol:
        return near
    lo = sorted((c for c in points if c < log_c), reverse=True)
    hi = sorted(c for c in points if c > log_c)
    if lo and hi:
        if points[lo[0]] is points[hi[0]]:  # one point met tol at both: a line would only drop its loss and gradient
            return points[lo[0]]
        return problem.line_start(points[lo[0]], points[hi[0]], 10.0**log_c, -0.5, 1.5)
    side = lo or hi
    if len(side) < 2:
        return near
    return problem.line_start(points[side[1]], points[side[0]], 10.0**log_c, 0.5, 1e3, log_scale=True)


def search_log_c(held_out_acc, refine_steps: int = 2) -> float:
    """CLIP's C search, in log10 C: a coarse grid 1e-6..1e6, then a parametric binary search.

    The grid runs from the strongest regularisation (the warm-start path's order); ties go to the
    C nearest 1. held_out_acc(log_c) is called once per C it needs, in this order.
    """
    grid = [-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0]
    for c in grid:
        held_out_acc(c)
    best = max(grid, key=lambda c: (held_out_acc(c), -abs(c)))
    step = 2.0
    for _ in range(refine_steps):
        step /= 2
        for cand in (best - step, best + step):
            held_out_acc(cand)
        best = max((best - step, best, best + step), key=lambda c: (held_out_acc(c), -abs(c)))
    return best


def linear_probe(
    train,
    train_labels,
    test,
    held_out: float = 0.2,
    max_iter: int = 1000,
    seed: int = 0,
    refine_steps: int = 2,
    device: str = "cpu",
    memory_mb: float = 512.0,
    sweep_tol: float = 1e-4,
):
    """CLIP's protocol: L2-regularised logistic regression, C chosen on a held-out part of train.

    A coarse sweep over C in 1e-6..1e6, then a parametric binary search between the best C and
    its neighbours in log space; the final model is refit on all of train. The same split, grid,
    objective and stopping rule as bench.reference.linear_probe_sklearn, fitted in float32 on the
    job's device with warm starts along the C path (_path_start: the nearest C's solution where it
    already meets tol, else the best point on the line through two solved Cs), the refit from the
    chosen C's.
    sweep_tol is where the held-out fits stop (scikit-learn's tol, 1e-4; the final fit always uses it).
    Problems up to SMALL_PROBE (train rows × (dim + 1) × classes) fit in float64 to tol 1e-5.
    Returns (test class probabilities [N, max label + 1], chosen C, held-out accuracy at that C).
    """
    import torch
    from sklearn.model_selection import train_test_split

    labels = np.asarray(train_labels)
    counts = np.bincount(labels)
    strat = labels if counts[counts > 0].min() >= 2 else None
    tr, va = train_test_split(np.arange(len(train)), test_size=held_out, random_state=seed, stratify=strat)
    dev = torch.device(device)
    torch.manual_seed(seed)
    # small problems (digits, few-class probes) in float64 with scikit-learn's ftol: a few ms per
    # step, and where the optimum is flat (separable data, large C) the fit then stops where
    # scikit-learn's does instead of where float32's resolution of the loss runs out, which made
    # the chosen C hang on last-bit differences in the features, or on the thread count: 512-d
    # features of 1,347 digits with duplicate rows picked C = 100 on one thread and 3e5 on two
    # the same reason for a tighter tol there: near the optimum, not at scikit-learn's loose stop
    n_cls = len(np.unique(labels))
    small = len(train) * (np.shape(train)[1] + 1) * n_cls <= SMALL_PROBE
    dtype = torch.float64 if small else torch.float32
    held_tol, final_tol = (min(1e-5, sweep_tol), 1e-5) if small else (sweep_tol, 1e-4)
    x_all = torch.as_tensor(np.asarray(train), dtype=dtype).to(dev).contiguous()  # the refit uses it as it is

    def problem(rows=None, keep_points=0.0):  # as scikit-learn: the classes are those present in the rows fitted
        classes, y = np.unique(labels if rows is None else labels[rows], return_inverse=True)
        x = x_all if rows is None else x_all[torch.as_tensor(rows, device=dev)]  # all of train: no copy
        return _LogReg(x, torch.as_tensor(y, device=dev), len(classes), memory_mb, keep_points), classes

    fits = 7 + 2 * refine_steps  # search_log_c's: each keeps its rows' logits, plus a fit's two iterates
    held, held_classes = problem(tr, keep_points=fits + 2)
    x_va, y_va = x_all[torch.as_tensor(va, device=dev)], labels[va]
    scores: dict[float, float] = {}
    points: dict[float, _Point] = {}
    memory: dict[float, _Memory] = {}  # each C's curvature pairs, the start of the fits next to it

    def held_out_acc(log_c: float) -> float:
        if log_c not in scores:
            near = min(points, key=lambda c: abs(c - log_c), default=None)
            start = _path_start(held, points, log_c, held_tol) if points else held.start(10.0**log_c)
            memory[log_c] = memory[near].copy() if near is not None else _Memory()
            points[log_c] = held.fit(10.0**log_c, start, memory[log_c], max_iter, held_tol)
            pred = held_classes[_LogReg.logits(points[log_c].w, x_va).argmax(1).cpu().numpy()]
            scores[log_c] = float((pred == y_va).mean())
        return scores[log_c]

    best = search_log_c(held_out_acc, refine_steps)
    for pt in points.values():  # the refit reuses no logits: freed before it
        pt.z = None
    full, classes = problem()
    same = len(classes) == len(held_classes)
    if same:  # the start's loss, gradient and curvature: the held-out fit's over its rows, plus a pass over the held-out rows
        part = points[best]
        val = _LogReg(x_va, torch.as_tensor(np.searchsorted(classes, y_va), device=dev), full.k, memory_mb)
        vp = val.evaluate(part.w)

        def mix(a, b):  # means over all rows from the two parts' means
            return (a * held.n + b * val.n) / full.n

        start = _Point(part.w, mix(part.ce, vp.ce), mix(part.grad, vp.grad), mix(part.curv, vp.curv))
    else:  # classes only in the held-out rows join at W = 0 and their log prior
        w0 = full.prior_start()
        w0[torch.as_tensor(np.searchsorted(classes, held_classes), device=dev)] = points[best].w
        start = _Point(w0)
    w = full.fit(10.0**best, start, memory[best].copy() if same else _Memory(), max_iter, final_tol).w
    x_test = torch.as_tensor(np.asarray(test), dtype=dtype).to(dev)
    proba = np.zeros((len(x_test), int(labels.max()) + 1))
    proba[:, classes] = torch.softmax(_LogReg.logits(w, x_test).double(), 1).cpu().numpy()
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


def fit_linear_seg(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    ignore_index: int,
    steps: int = 1000,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 16,
    optimizer: str = "adamw",
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """A linear segmentation head on frozen patch features (DINOv2's linear protocol): channels standardised
    by the train set's mean and std (BatchNorm with frozen statistics), a 1×1 conv, logits upsampled
    bilinearly to the label size, cross-entropy without ignore_index pixels, a fixed budget of seeded
    minibatch steps. features [N, D, h, w], labels [N, H, W]; returns {"weight" [C, D], "bias" [C],
    "mean" [D], "std" [D], "loss" (the last 10 steps' mean)} as numpy."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    feats = torch.as_tensor(features, dtype=torch.float32)
    mean = feats.mean((0, 2, 3))
    std = feats.std((0, 2, 3)).clamp_min(1e-6)
    head = torch.nn.Conv2d(feats.shape[1], num_classes, 1).to(device)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.01)
        head.bias.zero_()
    opt = (torch.optim.AdamW if optimizer == "adamw" else torch.optim.SGD)(head.parameters(), lr=lr, weight_decay=weight_decay, **({"momentum": 0.9} if optimizer == "sgd" else {}))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: (1 - i / steps) ** 0.9)  # mmseg's poly schedule
    target = torch.as_tensor(labels.astype(np.int64))
    m, s = mean.to(device)[None, :, None, None], std.to(device)[None, :, None, None]
    losses = []
    n = len(feats)
    for step in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=g)
        x = (feats[idx].to(device) - m) / s
        y = target[idx].to(device)
        logits = F.interpolate(head(x), size=y.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, y, ignore_index=ignore_index)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return {
        "weight": head.weight.detach()[:, :, 0, 0].cpu().numpy(),
        "bias": head.bias.detach().cpu().numpy(),
        "mean": mean.numpy(),
        "std": std.numpy(),
        "loss": float(np.mean(losses[-10:])) if losses else float("nan"),
    }


def linear_seg_maps(head: dict, features: np.ndarray, sizes: list, device: str = "cpu", batch: int = 16) -> list[np.ndarray]:
    """Class maps of a fitted linear head on features [N, D, h, w], each upsampled to its label's size (H, W)."""
    import torch
    import torch.nn.functional as F

    w = torch.as_tensor(head["weight"], device=device)
    b = torch.as_tensor(head["bias"], device=device)
    m = torch.as_tensor(head["mean"], device=device)[None, :, None, None]
    s = torch.as_tensor(head["std"], device=device)[None, :, None, None]
    out = []
    with torch.no_grad():
        for lo in range(0, len(features), batch):
            x = (torch.as_tensor(features[lo : lo + batch], dtype=torch.float32, device=device) - m) / s
            logits = torch.einsum("bdhw,cd->bchw", x, w) + b[None, :, None, None]
            for k, l in enumerate(logits):
                size = tuple(int(v) for v in sizes[lo + k])
                out.append(F.interpolate(l[None], size=size, mode="bilinear", align_corners=False)[0].argmax(0).cpu().numpy())
    return out
