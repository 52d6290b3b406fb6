"""`bench check`: the CI regression gate against a baseline, deciding with statistics.

Every baseline metric gets one label: regressed, within noise, improved, missing, failed or
not comparable. The default rule: a metric regresses when it moves the wrong way by more than
max(tolerance, z · sqrt(se_baseline² + se_current²)), the standard errors coming from the rows.
Where both sides have per-sample predictions, a paired test decides instead (McNemar for top-k).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from bench.tasks import lower_is_better

MATCH = ["model", "task", "dataset", "split", "metric", "method"]
BAD = ("regressed", "missing", "failed", "not comparable")


@dataclass
class Verdict:
    model: str
    task: str
    dataset: str
    split: str
    metric: str
    method: Optional[str]
    baseline: float
    current: Optional[float]
    tolerance: float
    status: str  # regressed | within noise | improved | missing | failed | not comparable
    note: str = ""  # the reason, in words and numbers

    @property
    def bad(self) -> bool:
        return self.status in BAD


def tolerance_for(metric: str, default: float, per_metric: dict[str, float], task: str = "") -> float:
    """Keys are `metric` or `task:metric`, globs allowed: task-qualified keys win, exact before glob."""
    full = f"{task}:{metric}"
    qualified = {k: v for k, v in per_metric.items() if ":" in k}
    plain = {k: v for k, v in per_metric.items() if ":" not in k}
    for name, table in ((full, qualified), (metric, plain)):
        if name in table:
            return table[name]
        for pattern, tol in table.items():
            if fnmatch.fnmatch(name, pattern):
                return tol
    return default


def _se(x) -> float:
    return float(x) if x is not None and not (isinstance(x, float) and math.isnan(x)) else 0.0


def noise_rule(base: dict, cur: dict, tol: float, z: float) -> tuple[str, str]:
    """The default rule, on the two rows' values and standard errors."""
    lower = lower_is_better(base["metric"], base.get("task_type"))
    change = base["value"] - cur["value"] if lower else cur["value"] - base["value"]
    noise = z * math.sqrt(_se(base.get("stderr")) ** 2 + _se(cur.get("stderr")) ** 2)
    bound = max(tol, noise)
    why = f"moved {change:+.4g} the good way; bound max(tol {tol:g}, {z:g}·se {noise / z if z else 0:.3g}) = {bound:.3g}"
    if change < -bound:
        return "regressed", why
    if change > bound:
        return "improved", why
    return "within noise", why


def mcnemar(base_hits: np.ndarray, cur_hits: np.ndarray) -> tuple[float, int, int]:
    """Two-sided exact McNemar p-value on paired 0/1 outcomes, and the discordant counts (lost, gained)."""
    from scipy.stats import binomtest

    lost = int(np.sum(base_hits & ~cur_hits))
    gained = int(np.sum(~base_hits & cur_hits))
    if lost + gained == 0:
        return 1.0, 0, 0
    return float(binomtest(lost, lost + gained, 0.5).pvalue), lost, gained


def paired_rule(base: dict, cur: dict, tol: float, z: float, hits: tuple[np.ndarray, np.ndarray]) -> tuple[str, str]:
    """McNemar on per-sample hits: a change counts when it is beyond tolerance and significant at z."""
    from scipy.stats import norm

    alpha = 2 * (1 - norm.cdf(z))
    p, lost, gained = mcnemar(*hits)
    change = cur["value"] - base["value"]  # top-k: higher is better
    why = f"paired McNemar: {lost} samples lost, {gained} gained, p={p:.3g} (alpha {alpha:.3g}); change {change:+.4g}, tol {tol:g}"
    if p < alpha and abs(change) > tol:
        return ("regressed" if lost > gained else "improved"), why
    return "within noise", why


class Predictions:
    """Per-sample classification hits from the predictions Parquet beside a rows file, when there is one."""

    def __init__(self):
        self._memo: dict = {}

    def hits(self, row: dict) -> Optional[pd.DataFrame]:
        src = row.get("_rows_file")
        if not src:
            return None
        path = Path(src).parent.parent / "predictions" / Path(src).name
        if path not in self._memo:
            try:
                df = pd.read_parquet(path)
                self._memo[path] = df if {"path", "label", "topk"} <= set(df.columns) and "resolution" not in df.columns and "draw" not in df.columns else None
            except Exception:
                self._memo[path] = None
        return self._memo[path]


def _topk_hits(df: pd.DataFrame, metric: str) -> Optional[pd.Series]:
    if metric not in ("top1", "top5"):
        return None
    k = int(metric[3:])
    return pd.Series([int(lab) in list(t)[:k] for lab, t in zip(df["label"], df["topk"])], index=df["path"])


def _paired_hits(preds: Predictions, b: dict, c: dict) -> Optional[tuple[np.ndarray, np.ndarray]]:
    bp, cp = preds.hits(b), preds.hits(c)
    if bp is None or cp is None:
        return None
    bh, ch = _topk_hits(bp, b["metric"]), _topk_hits(cp, c["metric"])
    if bh is None or ch is None or set(bh.index) != set(ch.index) or len(bh) != len(bp):
        return None
    return bh.to_numpy(bool), ch.loc[bh.index].to_numpy(bool)


def comparable(b: dict, c: dict) -> Optional[str]:
    """Why two rows of the same key measure different things (task config, limit, sample count), or None."""
    if b.get("task_hash") and c.get("task_hash") and b["task_hash"] != c["task_hash"]:
        return f"task config differs (task_hash {b['task_hash']} vs {c['task_hash']}: another suite text, --limit, precision or seed)"
    bn, cn = b.get("n"), c.get("n")
    if bn is not None and cn is not None and not (pd.isna(bn) or pd.isna(cn)) and int(bn) != int(cn):
        return f"scored on {int(cn)} samples, the baseline on {int(bn)}"
    return None


def check(
    current: pd.DataFrame,
    baseline: pd.DataFrame,
    tolerance: float = 0.0,
    per_metric: dict[str, float] | None = None,
    z: float = 2.0,
    allow_mismatch: bool = False,
) -> list[Verdict]:
    """One verdict per baseline row that scored."""
    per_metric = per_metric or {}
    current, baseline = _fill_method(current), _fill_method(baseline)
    cur = {tuple(r[c] for c in MATCH): r for r in current.to_dict("records")}
    failed = {(r["model"], r["task"]): r for r in current.to_dict("records") if r["status"] != "ok"}
    preds = Predictions()
    out = []
    for b in baseline[baseline.status == "ok"].to_dict("records"):
        key = tuple(b[c] for c in MATCH)
        tol = tolerance_for(b["metric"], tolerance, per_metric, b["task"])
        v = Verdict(*key, baseline=float(b["value"]), current=None, tolerance=tol, status="within noise")
        r = cur.get(key)
        if r is None and (b["model"], b["task"]) in failed:
            v.status, v.note = "failed", failed[(b["model"], b["task"])]["error"] or ""
        elif r is None:
            v.status, v.note = "missing", "no current row for this model, task, dataset, split, metric and method"
        elif r["status"] != "ok":
            v.status, v.note = "failed", r["error"] or ""
        else:
            v.current = float(r["value"])
            why = comparable(b, r)
            if why:
                v.status, v.note = "not comparable", why + (" (allowed by --allow-mismatch)" if allow_mismatch else "")
            else:
                hits = _paired_hits(preds, b, r)
                v.status, v.note = paired_rule(b, r, tol, z, hits) if hits is not None else noise_rule(b, r, tol, z)
        out.append(v)
    if allow_mismatch:
        for v in out:
            if v.status == "not comparable":
                v.status = "not comparable (allowed)"
    return out


def _fill_method(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without a method match each other (None and NaN would not)."""
    df = df.copy()
    df["method"] = df["method"].fillna("") if "method" in df.columns else ""
    return df


def counts(verdicts: list[Verdict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in verdicts:
        out[v.status] = out.get(v.status, 0) + 1
    return out


def render_markdown(verdicts: list[Verdict]) -> str:
    bad = [v for v in verdicts if v.bad]
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts(verdicts).items()))
    head = f"**bench check**: {len(verdicts)} metrics: {tally}\n"
    if not bad:
        return head + "\nNo regressions.\n"
    lines = ["", "| status | model | task | metric | baseline | current | Δ | tolerance | reason |", "|---|---|---|---|---|---|---|---|---|"]
    for v in bad:
        cur = "—" if v.current is None else f"{v.current:.6g}"
        delta = "—" if v.current is None else f"{v.current - v.baseline:+.6g}"
        lines.append(
            f"| {v.status} | {v.model} | {v.task} | {v.dataset}/{v.split} {v.metric} | {v.baseline:.6g} | {cur} | {delta} | {v.tolerance:g} | {v.note} |"
        )
    return head + "\n".join(lines) + "\n"
