"""`bench check`: the CI regression gate against a baseline Parquet of released numbers."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import pandas as pd

from bench.metrics import higher_is_better

MATCH = ["model", "task", "dataset", "split", "metric", "method"]


@dataclass
class Verdict:
    model: str
    task: str
    dataset: str
    split: str
    metric: str
    method: str | None
    baseline: float
    current: float | None
    tolerance: float
    status: str  # ok | improved | regressed | missing | failed
    note: str = ""

    @property
    def bad(self) -> bool:
        return self.status in ("regressed", "missing", "failed")


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


def check(current: pd.DataFrame, baseline: pd.DataFrame, tolerance: float = 0.0, per_metric: dict[str, float] | None = None) -> list[Verdict]:
    """One verdict per baseline row: a drop beyond tolerance, a missing or a failed row is bad."""
    per_metric = per_metric or {}
    current, baseline = _fill_method(current), _fill_method(baseline)
    cur = {tuple(r[c] for c in MATCH): r for r in current.to_dict("records")}
    failed = {(r["model"], r["task"]): r for r in current.to_dict("records") if r["status"] != "ok"}
    out = []
    for b in baseline[baseline.status == "ok"].to_dict("records"):
        key = tuple(b[c] for c in MATCH)
        tol = tolerance_for(b["metric"], tolerance, per_metric, b["task"])
        v = Verdict(*key, baseline=float(b["value"]), current=None, tolerance=tol, status="ok")
        r = cur.get(key)
        if r is None and (b["model"], b["task"]) in failed:
            v.status, v.note = "failed", failed[(b["model"], b["task"])]["error"] or ""
        elif r is None:
            v.status = "missing"
        elif r["status"] != "ok":
            v.status, v.note = "failed", r["error"] or ""
        else:
            v.current = float(r["value"])
            change = v.current - v.baseline if higher_is_better(b["metric"]) else v.baseline - v.current
            if change < -tol:
                v.status = "regressed"
            elif change > 0:
                v.status = "improved"
        out.append(v)
    return out


def _fill_method(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without a method match each other (None and NaN would not)."""
    df = df.copy()
    df["method"] = df["method"].fillna("") if "method" in df.columns else ""
    return df


def render_markdown(verdicts: list[Verdict]) -> str:
    bad = [v for v in verdicts if v.bad]
    head = f"**bench check**: {len(verdicts)} metrics, {sum(v.status == 'regressed' for v in verdicts)} regressed, {sum(v.status == 'missing' for v in verdicts)} missing, {sum(v.status == 'failed' for v in verdicts)} failed\n"
    if not bad:
        return head + "\nNo regressions.\n"
    lines = ["", "| status | model | task | metric | baseline | current | Δ | tolerance | note |", "|---|---|---|---|---|---|---|---|---|"]
    for v in bad:
        cur = "—" if v.current is None else f"{v.current:.6g}"
        delta = "—" if v.current is None else f"{v.current - v.baseline:+.6g}"
        lines.append(
            f"| {v.status} | {v.model} | {v.task} | {v.dataset}/{v.split} {v.metric} | {v.baseline:.6g} | {cur} | {delta} | {v.tolerance:g} | {v.note} |"
        )
    return head + "\n".join(lines) + "\n"
