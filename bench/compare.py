"""`bench compare`: models × (task, dataset, metric) with best marked and deltas to a baseline."""

from __future__ import annotations

import fnmatch
import re

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from bench.errors import BenchError
from bench.tasks import is_per_category, lower_is_better
from bench.results import load_rows

COL = ["task", "dataset", "split", "metric"]
NOISE_Z = 2.0  # two values closer than z·sqrt(se1² + se2²) are a tie, as bench check's default rule


@dataclass
class Cell:
    value: Optional[float] = None
    status: str = "ok"
    delta: Optional[float] = None
    best: bool = False  # ahead of every other model by more than the noise
    tie: bool = False  # among the leaders, but within noise of the best
    stderr: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    flag: str = ""  # why the cell is not comparable, empty when it is
    task_hash: Optional[str] = None


@dataclass
class Comparison:
    columns: list[tuple]
    models: list[str]
    cells: dict = field(default_factory=dict)  # (model, column) -> Cell
    notes: list[str] = field(default_factory=list)
    baseline: Optional[str] = None


def with_method(df: pd.DataFrame) -> pd.DataFrame:
    """A row's entry is its model, or 'model · method' when a method (OOD postprocessor) was applied."""
    label = [m if not isinstance(x, str) or not x else f"{m} · {x}" for m, x in zip(df.model, df.method, strict=True)]
    return df.assign(model=label)


def _keep(values: pd.Series, patterns: Optional[str]) -> pd.Series:
    """Rows whose value matches one of the comma-separated globs (all rows when none given)."""
    if not patterns:
        return pd.Series(True, index=values.index)
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    return values.fillna("").map(lambda v: any(fnmatch.fnmatch(v, p) for p in pats))


def build(
    results: list[str], baseline: Optional[str] = None, task: Optional[str] = None, dataset: Optional[str] = None, metric: Optional[str] = None
) -> Comparison:
    df = with_method(load_rows(results))
    hidden = 0
    if not metric:  # per-category rows (bbox/AP/<category>) would swamp the table; --metric shows them
        per_cat = pd.Series([is_per_category(m, t) for m, t in zip(df.metric.fillna(""), df.task_type)], index=df.index, dtype=bool)
        hidden, df = int(per_cat.sum()), df[~per_cat]
    df = df[_keep(df.task, task) & (_keep(df.dataset, dataset) | (df.status != "ok")) & (_keep(df.metric, metric) | (df.status != "ok"))]
    if df.empty:
        raise BenchError("no rows match the --task/--dataset/--metric filters")
    ok = df[df.status == "ok"]
    failed = df[df.status != "ok"]
    # metrics keep the order the task wrote them (pycocotools' 12-stat order, say); tasks sort by name
    first = {m: i for i, m in reversed(list(enumerate(ok.metric)))}
    columns = sorted({tuple(r) for r in ok[COL].itertuples(index=False, name=None)}, key=lambda c: (c[0], c[1], c[2], first[c[3]]))
    models = list(dict.fromkeys(df.model))
    comp = Comparison(columns=columns, models=models, baseline=baseline)
    if hidden:
        comp.notes.append(f"{hidden} per-category rows hidden (--metric 'bbox/AP/*' shows them)")

    for r in ok.itertuples(index=False):
        comp.cells[(r.model, (r.task, r.dataset, r.split, r.metric))] = Cell(
            value=float(r.value), task_hash=r.task_hash, stderr=_num(r.stderr), ci_low=_num(r.ci_low), ci_high=_num(r.ci_high)
        )
    for r in failed.itertuples(index=False):
        for col in columns:
            if col[0] == r.task:
                comp.cells[(r.model, col)] = Cell(status="failed", flag=r.error or "failed")

    # same task name, different task config → not comparable
    hashes = ok.groupby(COL)["task_hash"].agg(lambda s: s.mode().iat[0] if s.notna().any() else None)
    for r in ok.itertuples(index=False):
        col = (r.task, r.dataset, r.split, r.metric)
        if hashes.get(col) is not None and r.task_hash != hashes[col]:
            comp.cells[(r.model, col)].flag = f"task config differs (task_hash {r.task_hash} vs {hashes[col]})"

    types = dict(zip(ok.task, ok.task_type))
    for col in columns:
        higher = not lower_is_better(col[3], types.get(col[0]))
        mark_best([c for m in models if (c := comp.cells.get((m, col))) and c.value is not None and not c.flag], higher)

    if baseline:
        _apply_baseline(comp, baseline)
    return comp


def _num(x) -> Optional[float]:
    return None if x is None or pd.isna(x) else float(x)


def mark_best(cells: list[Cell], higher: bool) -> None:
    """Bold the leader only when it beats every other cell by more than the noise; else mark the leaders as tied."""
    if len(cells) < 2:
        return
    lead = max(cells, key=lambda c: c.value if higher else -c.value)
    se = lambda c: c.stderr or 0.0  # noqa: E731
    tied = [c for c in cells if abs(lead.value - c.value) <= NOISE_Z * (se(lead) ** 2 + se(c) ** 2) ** 0.5]
    if len(tied) == 1:
        lead.best = True
    else:
        for c in tied:
            c.tie = True


def _apply_baseline(comp: Comparison, baseline: str) -> None:
    if Path(baseline).exists():
        base = with_method(load_rows([baseline]))
        base = base[base.status == "ok"]
        index = {(r.model, (r.task, r.dataset, r.split, r.metric)): r for r in base.itertuples(index=False)}
        for (model, col), cell in comp.cells.items():
            b = index.get((model, col))
            if b is not None and cell.value is not None:
                cell.delta = cell.value - float(b.value)
                if b.task_hash and cell.task_hash and b.task_hash != cell.task_hash:
                    cell.flag = cell.flag or f"baseline task config differs (task_hash {b.task_hash} vs {cell.task_hash})"
        comp.notes.append(f"Δ against {baseline}")
    elif baseline in comp.models:
        for (_, col), cell in comp.cells.items():
            b = comp.cells.get((baseline, col))
            if b is not None and b.value is not None and cell.value is not None:
                cell.delta = cell.value - b.value
        comp.notes.append(f"Δ against model '{baseline}'")
    else:
        raise BenchError(f"--baseline '{baseline}' is neither a results file/folder nor a model in the results ({', '.join(comp.models)})")


# ---------------------------------------------------------------- rendering
def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def cell_text(c: Optional[Cell], markup: str) -> str:
    if c is None:
        return "—"
    if c.status != "ok":
        return "failed"
    s = _pct(c.value)
    if c.ci_low is not None and c.ci_high is not None:
        s += f" ±{100 * (c.ci_high - c.ci_low) / 2:.2f}"
    if c.delta is not None:
        s += f" ({'+' if c.delta >= 0 else ''}{100 * c.delta:.2f})"
    if c.flag:
        s += " †"
    if c.best:
        s = {"rich": f"[bold green]{s}[/]", "md": f"**{s}**", "html": f"<b>{s}</b>"}.get(markup, s + " *")
    elif c.tie:
        s += " ≈"
    return s


def col_title(col: tuple) -> str:
    task, dataset, split, metric = col
    return f"{task}\n{dataset}/{split}\n{metric}"


def footnotes(comp: Comparison) -> list[str]:
    out = [
        "values in % with ± half the 95% CI; best per metric in bold when ahead by more than the noise"
        f" (z={NOISE_Z:g} standard errors), ≈ marks leaders tied within it" + ("; " + "; ".join(comp.notes) if comp.notes else "")
    ]
    for (model, col), c in comp.cells.items():
        if c.flag and c.status == "ok":
            out.append(f"† {model} · {col[0]}/{col[3]}: not comparable: {c.flag}")
        elif c.status != "ok" and col == next((k for k in comp.columns if k[0] == col[0]), None):
            out.append(f"{model} · {col[0]}: failed: {c.flag}")
    return out


def render_rich(comp: Comparison) -> list:
    """One table per task. Entries (models, or model · method) are rows; when a task has fewer
    entries than metric columns, the entries become the columns instead."""
    from rich.table import Table

    tables = []
    for task in dict.fromkeys(c[0] for c in comp.columns):
        cols = [c for c in comp.columns if c[0] == task]
        rows = [m for m in comp.models if any((m, c) in comp.cells for c in cols)]
        t = Table(title=f"{task}", title_justify="left", show_lines=False)
        if len(rows) < len(cols):
            t.add_column("dataset/split", style="bold")
            t.add_column("metric")
            for m in rows:
                t.add_column(m, justify="right")
            for col in cols:
                t.add_row(f"{col[1]}/{col[2]}", col[3], *[cell_text(comp.cells.get((m, col)), "rich") for m in rows])
        else:
            t.add_column("model", style="bold")
            for col in cols:
                t.add_column(f"{col[1]}/{col[2]}\n{col[3]}", justify="right")
            for m in rows:
                t.add_row(m, *[cell_text(comp.cells.get((m, col)), "rich") for col in cols])
        tables.append(t)
    return tables


def render_markdown(comp: Comparison) -> str:
    head = ["model"] + [f"{c[0]} {c[1]}/{c[2]} {c[3]}" for c in comp.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in comp.models:
        lines.append("| " + " | ".join([m] + [cell_text(comp.cells.get((m, c)), "md") for c in comp.columns]) + " |")
    return "\n".join(lines + [""] + [f"- {n}" for n in footnotes(comp)]) + "\n"


def render_csv(comp: Comparison) -> str:
    rows = []
    for m in comp.models:
        for col in comp.columns:
            c = comp.cells.get((m, col))
            if c is None:
                continue
            rows.append(
                {
                    "model": m,
                    "task": col[0],
                    "dataset": col[1],
                    "split": col[2],
                    "metric": col[3],
                    "value": c.value,
                    "status": c.status,
                    "delta": c.delta,
                    "stderr": c.stderr,
                    "ci_low": c.ci_low,
                    "ci_high": c.ci_high,
                    "best": c.best,
                    "tie": c.tie,
                    "comparable": not c.flag,
                    "note": c.flag,
                }
            )
    return pd.DataFrame(rows).to_csv(index=False)


def render_html(comp: Comparison) -> str:
    import html

    head = "".join(f"<th>{html.escape(col_title(c)).replace(chr(10), '<br>')}</th>" for c in comp.columns)
    spans = {c: _span(comp, c) for c in comp.columns}
    body = "".join(
        f"<tr><td>{html.escape(m)}</td>"
        + "".join(f"<td>{cell_text(comp.cells.get((m, c)), 'html')}{error_bar(comp.cells.get((m, c)), spans[c])}</td>" for c in comp.columns)
        + "</tr>"
        for m in comp.models
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in footnotes(comp))
    plots = resolution_plots(comp)
    style = "table{border-collapse:collapse;font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>bench compare</title><style>{style}</style></head><body><table><tr><th>model</th>{head}</tr>{body}</table><ul>{notes}</ul>{plots}</body></html>\n"


def _span(comp: Comparison, col: tuple) -> Optional[tuple[float, float]]:
    """The column's range of values and interval ends, so its error bars share one scale."""
    ends = [x for m in comp.models if (c := comp.cells.get((m, col))) and c.value is not None for x in (c.value, c.ci_low, c.ci_high) if x is not None]
    return (min(ends), max(ends)) if ends and max(ends) > min(ends) else None


def error_bar(c: Optional[Cell], span: Optional[tuple[float, float]], w: int = 80, h: int = 12) -> str:
    """A small inline SVG: the 95% interval as a line with end ticks, the value as a dot, on the column's scale."""
    if c is None or c.value is None or c.ci_low is None or c.ci_high is None or span is None:
        return ""
    lo, hi = span
    x = lambda v: 4 + (v - lo) / (hi - lo) * (w - 8)  # noqa: E731
    a, b, v, m = x(c.ci_low), x(c.ci_high), x(c.value), h / 2
    return (
        f"<br><svg width='{w}' height='{h}' aria-label='95% CI {100 * c.ci_low:.2f} to {100 * c.ci_high:.2f}'>"
        f"<line x1='{a:.1f}' y1='{m}' x2='{b:.1f}' y2='{m}' stroke='#555'/>"
        f"<line x1='{a:.1f}' y1='2' x2='{a:.1f}' y2='{h - 2}' stroke='#555'/><line x1='{b:.1f}' y1='2' x2='{b:.1f}' y2='{h - 2}' stroke='#555'/>"
        f"<circle cx='{v:.1f}' cy='{m}' r='2.5' fill='#1f77b4'/></svg>"
    )


RES_METRIC = re.compile(r"^(?P<metric>.+)@(?P<res>\d+)$")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def resolution_plots(comp: Comparison) -> str:
    """Inline SVG line charts of accuracy against test resolution, one per (task, dataset, metric), a line per model."""
    import html

    groups: dict = {}
    for col in comp.columns:
        m = RES_METRIC.match(col[3])
        if m:
            groups.setdefault((col[0], col[1], col[2], m["metric"]), []).append((int(m["res"]), col))
    out = []
    W, H, P = 480, 280, 44
    for (task, dataset, split, metric), cols in groups.items():
        cols.sort()
        series = {}
        for model in comp.models:
            pts = [(r, comp.cells[(model, c)].value) for r, c in cols if (model, c) in comp.cells and comp.cells[(model, c)].value is not None]
            if pts:
                series[model] = pts
        if not series:
            continue
        xs = [r for r, _ in cols]
        ys = [v for pts in series.values() for _, v in pts]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1e-9
        sx = lambda x: P + (x - x0) / (x1 - x0) * (W - 2 * P)  # noqa: E731
        sy = lambda y: H - P - (y - y0) / (y1 - y0) * (H - 2 * P)  # noqa: E731
        parts = [f"<line x1='{P}' y1='{H - P}' x2='{W - P}' y2='{H - P}' stroke='#444'/>", f"<line x1='{P}' y1='{P}' x2='{P}' y2='{H - P}' stroke='#444'/>"]
        parts += [f"<text x='{sx(x):.1f}' y='{H - P + 16}' font-size='11' text-anchor='middle'>{x}</text>" for x in xs]
        parts += [f"<text x='{P - 4}' y='{sy(v) + 4:.1f}' font-size='11' text-anchor='end'>{100 * v:.1f}</text>" for v in (y0, y1)]
        for i, (model, pts) in enumerate(series.items()):
            color = PALETTE[i % len(PALETTE)]
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{path}'/>")
            parts += [
                f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3' fill='{color}'><title>{html.escape(model)} @ {x}px: {100 * y:.2f}</title></circle>"
                for x, y in pts
            ]
            parts.append(f"<text x='{W - P + 4}' y='{P + 14 * i}' font-size='11' fill='{color}'>{html.escape(model)}</text>")
        title = html.escape(f"{task} · {dataset}/{split}: {metric} accuracy vs resolution")
        out.append(f"<h3>{title}</h3><svg xmlns='http://www.w3.org/2000/svg' width='{W + 160}' height='{H}'>{''.join(parts)}</svg>")
    return "".join(out)
