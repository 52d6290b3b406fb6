"""`bench compare`: models × (task, dataset, metric) with best marked and deltas to a baseline."""

from __future__ import annotations

import fnmatch
import html
import re

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from bench.errors import BenchError
from bench.tasks import display_scale, is_per_category, lower_is_better
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
    scale: float = 100.0  # printed as value × scale: percentages, or 1 for a family's unscaled metrics


@dataclass
class Comparison:
    columns: list[tuple]
    models: list[str]
    cells: dict = field(default_factory=dict)  # (model, column) -> Cell
    notes: list[str] = field(default_factory=list)
    baseline: Optional[str] = None
    types: dict = field(default_factory=dict)  # task -> its family (task_type), for lower-is-better and per-category


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
    return from_rows(load_rows(results), baseline, task, dataset, metric)


def from_rows(
    df: pd.DataFrame,
    baseline: Optional[str] = None,
    task: Optional[str] = None,
    dataset: Optional[str] = None,
    metric: Optional[str] = None,
    per_category: bool = False,
) -> Comparison:
    """The comparison of loaded rows; per_category keeps the per-category rows the tables otherwise hide."""
    df = with_method(df)
    hidden = 0
    if not metric and not per_category:  # per-category rows (bbox/AP/<category>) would swamp the table; --metric shows them
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
    comp = Comparison(columns=columns, models=models, baseline=baseline, types=dict(zip(ok.task, ok.task_type)))
    if hidden:
        comp.notes.append(f"{hidden} per-category rows hidden (--metric 'bbox/AP/*' shows them)")

    for r in ok.itertuples(index=False):
        comp.cells[(r.model, (r.task, r.dataset, r.split, r.metric))] = Cell(
            value=float(r.value), task_hash=r.task_hash, stderr=_num(r.stderr), ci_low=_num(r.ci_low), ci_high=_num(r.ci_high), scale=display_scale(r.metric, r.task_type)
        )
    for r in failed.itertuples(index=False):
        for col in columns:
            if col[0] == r.task:
                comp.cells[(r.model, col)] = Cell(status="failed", flag=r.error or "failed")

    # same task name, different task config → not comparable
    hashes = ok.groupby(COL)["task_hash"].agg(lambda s: s.mode().iat[0] if s.notna().any() else None).to_dict()  # a dict: looked up per row
    for r in ok.itertuples(index=False):
        col = (r.task, r.dataset, r.split, r.metric)
        if hashes.get(col) is not None and r.task_hash != hashes[col]:
            comp.cells[(r.model, col)].flag = f"task config differs (task_hash {r.task_hash} vs {hashes[col]})"

    for col in columns:
        higher = not lower_is_better(col[3], comp.types.get(col[0]))
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
def cell_text(c: Optional[Cell], markup: str) -> str:
    if c is None:
        return "—"
    if c.status != "ok":
        return "failed"
    k = c.scale
    s = f"{k * c.value:.2f}"
    if c.ci_low is not None and c.ci_high is not None:
        s += f" ±{k * (c.ci_high - c.ci_low) / 2:.2f}"
    if c.delta is not None:
        s += f" ({'+' if c.delta >= 0 else ''}{k * c.delta:.2f})"
    if c.flag:
        s += " †"
    if c.best:
        s = {"rich": f"[bold green]{s}[/]", "md": f"**{s}**", "html": f"<b>{s}</b>"}.get(markup, s + " *")
    elif c.tie:
        s += " ≈"
    return s


def legend(comp: Comparison) -> str:
    return (
        "values in % with ± half the 95% CI; best per metric in bold when ahead by more than the noise"
        f" (z={NOISE_Z:g} standard errors), ≈ marks leaders tied within it" + ("; " + "; ".join(comp.notes) if comp.notes else "")
    )


def cell_notes(comp: Comparison, task: Optional[str] = None) -> list[str]:
    """A line per cell that is not comparable, and per failed model × task; only one task's when given."""
    out = []
    for (model, col), c in comp.cells.items():
        if task is not None and col[0] != task:
            continue
        if c.flag and c.status == "ok":
            out.append(f"† {model} · {col[0]}/{col[3]}: not comparable: {c.flag}")
        elif c.status != "ok" and col == next((k for k in comp.columns if k[0] == col[0]), None):
            out.append(f"{model} · {col[0]}: failed: {c.flag}")
    return out


def footnotes(comp: Comparison) -> list[str]:
    return [legend(comp)] + cell_notes(comp)


def render_rich(comp: Comparison) -> list:
    """One table per task. Entries (models, or model · method) are rows; when a task has fewer
    entries than metric columns, the entries become the columns instead."""
    from rich.table import Table

    tables = []
    for task, cols in task_columns(comp).items():
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


def task_columns(comp: Comparison) -> dict[str, list[tuple]]:
    """Each task's columns, tasks in the comparison's order: the blocks of the terminal and HTML tables."""
    out: dict[str, list[tuple]] = {}
    for c in comp.columns:
        out.setdefault(c[0], []).append(c)
    return out


def html_table(comp: Comparison, cols: list[tuple]) -> str:
    """Columns of one task as a table, laid out as render_rich does: entries as rows, or as columns when fewer than the metrics."""
    esc = html.escape
    rows = [m for m in comp.models if any((m, c) in comp.cells for c in cols)]

    def td(m, c):
        cell = comp.cells.get((m, c))
        tip = f" title='{esc(cell.flag)}'" if cell is not None and cell.flag else ""
        return f"<td{tip}>{cell_text(cell, 'html')}</td>"

    if len(rows) < len(cols):
        head = "<th class='l'>dataset/split</th><th class='l'>metric</th>" + "".join(f"<th>{esc(m)}</th>" for m in rows)
        body = "".join(f"<tr><th class='l'>{esc(c[1])}/{esc(c[2])}</th><th class='l'>{esc(c[3])}</th>{''.join(td(m, c) for m in rows)}</tr>" for c in cols)
    else:
        head = "<th class='l'>model</th>" + "".join(f"<th>{esc(c[1])}/{esc(c[2])}<br>{esc(c[3])}</th>" for c in cols)
        body = "".join(f"<tr><th class='l'>{esc(m)}</th>{''.join(td(m, c) for c in cols)}</tr>" for m in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


TABLE_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0;font-variant-numeric:tabular-nums}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}"
    "th{background:#f4f4f4;font-weight:600}th.l{text-align:left}"
    "td b{color:#0a6b2b}.note{color:#555;font-size:.9em}"
)


def render_html(comp: Comparison) -> str:
    """One block per task, as in the terminal, each with only its own columns and notes; the resolution chart under its task."""
    blocks = []
    for task, cols in task_columns(comp).items():
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in cell_notes(comp, task))
        blocks.append(f"<section><h2>{html.escape(task)}</h2>{html_table(comp, cols)}<ul class='note'>{notes}</ul>{resolution_chart(comp, task)}</section>")
    head = f"<p class='note'>{html.escape(legend(comp))}</p>"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>bench compare</title><style>{TABLE_CSS}</style></head><body>{head}{''.join(blocks)}</body></html>\n"


# ---------------------------------------------------------------- charts
RES_METRIC = re.compile(r"^(?P<metric>.+)@(?P<res>\d+)$")
MAX_LINES = 10  # lines in one chart before the legend stops being readable


def figure(width: float, height: float):
    """A matplotlib Figure without pyplot: no global figure manager, no GUI backend, safe off the main thread."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=72)


def figure_svg(fig) -> str:
    """The figure as an inline <svg> element: text kept as text (small, selectable), no XML prolog or metadata."""
    import io

    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)


def chart(fig, caption: str, kind: str = "") -> str:
    return f"<figure class='chart {kind}'>{figure_svg(fig)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def resolution_chart(comp: Comparison, task: str) -> str:
    """Accuracy against test resolution, one chart per (dataset, split, metric) swept, a line per model with its 95% CIs."""
    kind = comp.types.get(task)
    if isinstance(kind, str) and kind != "classification":  # retrieval's i2t/R@10 reads like a resolution; only classification sweeps them
        return ""
    groups: dict = {}
    for col in task_columns(comp).get(task, []):
        m = RES_METRIC.match(col[3])
        if m:
            groups.setdefault((col[1], col[2], m["metric"]), []).append((int(m["res"]), col))
    out = []
    for (dataset, split, metric), cols in groups.items():
        cols.sort()
        series = {}
        for model in comp.models:
            pts = [(r, c) for r, c in ((r, comp.cells.get((model, col))) for r, col in cols) if c is not None and c.value is not None]
            if pts:
                series[model] = pts
        if not series:
            continue
        # the best at the largest resolution first; past MAX_LINES the rest are left out, and said so
        order = sorted(series, key=lambda m: -series[m][-1][1].value)
        fig = figure(6.5, 3.6)
        ax = fig.add_subplot()
        for model in order[:MAX_LINES]:
            xs, cells = zip(*series[model])
            ys = [c.scale * c.value for c in cells]
            err = [
                [c.scale * (c.value - c.ci_low) if c.ci_low is not None else 0 for c in cells],
                [c.scale * (c.ci_high - c.value) if c.ci_high is not None else 0 for c in cells],
            ]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=model)
        ax.set_xticks([r for r, _ in cols])
        ax.set_xlabel("test resolution (px)")
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        title = f"{task} · {dataset}/{split}: {metric} accuracy vs resolution"
        ax.set_title(title, fontsize=10)
        shown = "" if len(order) <= MAX_LINES else f" (the {MAX_LINES} best of {len(order)} models at {cols[-1][0]}px)"
        out.append(chart(fig, title + shown, "resolution"))
    return "".join(out)
