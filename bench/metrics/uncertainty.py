"""Standard errors and 95% intervals for every metric: Wilson for proportions, bootstraps for the rest.

A bootstrap here is a matrix of draw counts ``w`` (resamples × units): row b says how often each
unit (image, query, question, clip) was drawn in resample b. Metrics written as functions of such
weights run all resamples at once; drawing a unit k times is the same as k copies of it. Draws
are seeded, so the same data gives the same interval on any machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

CHUNK_CELLS = 20_000_000  # resamples × units held at once (a few hundred MB of float64 at most)


@dataclass(frozen=True)
class Spec:
    method: str = "bootstrap"  # bootstrap | wilson (wilson applies to proportions; the rest still bootstrap)
    resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    @classmethod
    def of(cls, cfg) -> Optional["Spec"]:
        """From the suite's `uncertainty` block (None when it is off)."""
        if cfg is None:
            return None
        return cls(method=cfg.method, resamples=cfg.resamples, seed=cfg.seed, level=cfg.level)


@dataclass(frozen=True)
class Interval:
    stderr: Optional[float]
    low: Optional[float]
    high: Optional[float]
    method: str

    def row(self) -> dict:
        return {"stderr": self.stderr, "ci_low": self.low, "ci_high": self.high, "ci_method": self.method}


def wilson(k: float, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval for k successes in n trials; stderr is the binomial sqrt(p(1-p)/n)."""
    if n <= 0:
        return Interval(None, None, None, "wilson")
    z = _z(level)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(math.sqrt(p * (1 - p) / n), float(max(0.0, centre - half)), float(min(1.0, centre + half)), "wilson")


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def draw_counts(n: int, resamples: int, rng: np.random.Generator, strata: Optional[np.ndarray] = None) -> np.ndarray:
    """(resamples, n) counts; with strata, each stratum is resampled to its own size (a stratified bootstrap)."""
    w = np.zeros((resamples, n), np.float64)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    rows = np.arange(resamples)[:, None]
    for g in groups:
        if g.size == 0:
            continue
        picks = g[rng.integers(0, g.size, size=(resamples, g.size))]
        np.add.at(w, (np.broadcast_to(rows, picks.shape), picks), 1.0)
    return w


def summarize(samples: np.ndarray, level: float, method: str, point: Optional[float] = None) -> Interval:
    """The standard deviation of the bootstrap distribution, and its percentile interval, or with
    `point` the normal interval point ± z·se (for statistics whose resamples are biased, as AP's are).

    Resamples where the metric is undefined (NaN, or COCO's -1 for "no ground truth") are left out.
    """
    s = np.asarray(samples, np.float64)
    s = s[np.isfinite(s) & (s != -1)]
    if s.size < 2 or (point is not None and (not np.isfinite(point) or point == -1)):
        return Interval(None, None, None, method)
    se = float(s.std(ddof=1))
    if point is not None:
        return Interval(se, float(point - _z(level) * se), float(point + _z(level) * se), method)
    lo, hi = np.quantile(s, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(se, float(lo), float(hi), method)


def bootstrap(
    stat: Callable[[np.ndarray], dict[str, np.ndarray]],
    n: int,
    spec: Spec,
    unit: str,
    strata: Optional[np.ndarray] = None,
    chunk: Optional[int] = None,
    points: Optional[dict[str, float]] = None,
) -> dict[str, Interval]:
    """Intervals for every metric `stat` returns; `stat(w)` maps (b, n) draw counts to {metric: (b,) values}.

    With `points` (the estimates), intervals are normal (point ± z·se) instead of percentile.
    """
    rng = np.random.default_rng(spec.seed)
    chunk = chunk or max(1, min(spec.resamples, CHUNK_CELLS // max(n, 1)))
    parts: dict[str, list] = {}
    done = 0
    while done < spec.resamples:
        b = min(chunk, spec.resamples - done)
        for name, v in stat(draw_counts(n, b, rng, strata)).items():
            parts.setdefault(name, []).append(np.asarray(v, np.float64))
        done += b
    kind = ("-stratified" if strata is not None else "") + ("-normal" if points is not None else "")
    how = f"bootstrap{kind}(unit={unit},resamples={spec.resamples},seed={spec.seed})"
    return {name: summarize(np.concatenate(v), spec.level, how, None if points is None else points.get(name)) for name, v in parts.items()}


def bootstrap_loop(stat: Callable[[np.ndarray], dict[str, float]], n: int, spec: Spec, unit: str, strata: Optional[np.ndarray] = None) -> dict[str, Interval]:
    """The same for metrics that take one (n,) weight vector at a time."""

    def many(w: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, list] = {}
        for row in w:
            for k, v in stat(row).items():
                out.setdefault(k, []).append(v)
        return {k: np.asarray(v) for k, v in out.items()}

    return bootstrap(many, n, spec, unit, strata, chunk=50)


def weighted_mean(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-resample mean of per-unit values x (n,) or (n, m) under draw counts w (b, n)."""
    total = w.sum(axis=1)
    return (w @ x) / (total if x.ndim == 1 else total[:, None])


def proportions(correct: dict[str, np.ndarray], spec: Spec, unit: str = "sample") -> dict[str, Interval]:
    """Accuracy-like metrics (means of 0/1 per sample): Wilson, or a bootstrap over samples."""
    if not correct:
        return {}
    n = len(next(iter(correct.values())))
    if spec.method == "wilson":
        return {k: wilson(float(np.sum(v)), n, spec.level) for k, v in correct.items()}
    names = list(correct)
    x = np.stack([np.asarray(correct[k], np.float64) for k in names], axis=1)
    return bootstrap(lambda w: dict(zip(names, weighted_mean(w, x).T)), n, spec, unit)


def fill(rows: list[dict], intervals: dict[str, Interval], match: Optional[Callable[[dict], str]] = None) -> list[dict]:
    """Write intervals into rows whose metric (or match(row)) names one; rows without per-sample data stay empty."""
    for r in rows:
        iv = intervals.get(match(r) if match else r["metric"])
        if iv is not None:
            r.update(iv.row())
    return rows
