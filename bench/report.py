"""`bench report`: one self-contained HTML file of a leaderboard.

Sections: a summary (each task's headline metric per model, the best marked only where it leads by
more than the noise, the cross-task rank), one section per task (its tables and charts), the
regression diff against a baseline (bench check's verdicts), provenance and failures. Charts are
matplotlib figures inlined as SVG; the page has no script and references nothing outside itself,
so it opens offline (a CI artifact, a mail attachment).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from bench import check as chk
from bench import compare as cmp
from bench.ranking import headline, rank
from bench.results import load_rows
from bench.tasks import display_scale, family_of, is_per_category, lower_is_better

esc = html.escape
COL = cmp.COL
MAX_HEATMAPS = 4  # OOD heatmaps drawn per task: the best models; more would bury the section
MAX_CLASSES = 40  # per-class AP bars at each end of the sorted list when there are more
MAX_QUIET = 2000  # "within noise" verdicts listed one by one; past this, counted per task
OOD_METRICS = ("AUROC", "FPR95")
BLUE, GREEN, PALE, GREY = "#4c72b0", "#2a9d4b", "#9ed3ad", "#b0b0b0"


@dataclass
class Report:
    rows: pd.DataFrame  # every row, failed ones too
    comp: cmp.Comparison  # all ok rows, per-category ones included
    headlines: pd.DataFrame  # each task's headline rows, a model's best method where methods apply
    cells: dict  # (task, dataset, split, metric) -> {model: Cell}, best marked


def write(results: list[str], output: Path, baseline: Optional[str] = None, title: Optional[str] = None, per_metric: Optional[dict] = None) -> Path:
    output = Path(output)
    output.write_text(render(results, baseline, title, per_metric), encoding="utf-8")
    return output


def render(results: list[str], baseline: Optional[str] = None, title: Optional[str] = None, per_metric: Optional[dict] = None) -> str:
    df = _plain(load_rows(results, with_source=True))
    heads = headline_rows(df)
    rep = Report(df, cmp.from_rows(df, baseline=baseline, per_category=True), heads, headline_cells(heads))
    sections = [summary_section(rep)]
    sections += [task_section(rep, t) for t in sorted(df.task.dropna().unique())]
    sections.append(few_shot_section(df))
    if baseline:
        sections.append(diff_section(df, _plain(load_rows([baseline], with_source=True)), per_metric or {}))
    sections += [provenance_section(df), failures_section(df)]
    return page(title or "bench report: " + ", ".join(map(str, results)), [s for s in sections if s])


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns as Python objects: the report walks rows one by one, and Arrow strings make that 3x slower."""
    df = df.astype({c: object for c in df.columns if pd.api.types.is_string_dtype(df[c])})
    return df.assign(method=df.method.fillna(""))


# ---------------------------------------------------------------- headline metrics
def _kind(g: pd.DataFrame):
    return g.task_type.dropna().iloc[0] if g.task_type.notna().any() else None


def headline_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Per task, the rows of its family's headline metric, read as bench.ranking reads them."""
    parts = []
    for _, g in df[df.status == "ok"].groupby("task", sort=True):
        kind = _kind(g)
        metrics, datasets = headline(set(g.metric), kind)
        g = g[g.metric.isin(metrics)]
        if datasets and g.dataset.isin(datasets).any():  # OOD: the near and far means
            g = g[g.dataset.isin(datasets)]
        if g.empty:
            continue
        # where methods apply (OOD postprocessors) a model's best method stands for it
        g = g.sort_values("value", ascending=lower_is_better(metrics[0], kind), kind="stable")
        g = g.drop_duplicates(["model", "dataset", "split", "metric"])
        # columns in the family's declared order (OOD: near, then far), resolutions by number
        g = g.assign(_o=g.dataset.map({d: i for i, d in enumerate(datasets)}).fillna(len(datasets)), _r=g.metric.map(_resolution))
        parts.append(g.sort_values(["_o", "dataset", "split", "_r", "metric"], kind="stable").drop(columns=["_o", "_r"]))
    return pd.concat(parts, ignore_index=True) if parts else df.iloc[0:0]


def _resolution(metric: str) -> int:
    m = cmp.RES_METRIC.match(metric)
    return int(m["res"]) if m else 0


def headline_cells(heads: pd.DataFrame) -> dict:
    """A Cell per model and headline column; rows of another task config are flagged, the rest compete for best."""
    out = {}
    for col, g in heads.groupby(COL, sort=False):
        common = g.task_hash.mode().iat[0] if g.task_hash.notna().any() else None
        cells = {
            r.model: cmp.Cell(
                value=float(r.value),
                stderr=cmp._num(r.stderr),
                ci_low=cmp._num(r.ci_low),
                ci_high=cmp._num(r.ci_high),
                task_hash=r.task_hash,
                flag=f"task config differs (task_hash {r.task_hash} vs {common})" if common and r.task_hash != common else "",
            )
            for r in g.itertuples(index=False)
        }
        higher = not lower_is_better(col[3], _kind(g))
        cmp.mark_best([c for c in cells.values() if not c.flag], higher)
        out[col] = cells
    return out


def _methods(heads: pd.DataFrame) -> dict:
    """(task, dataset, split, metric, model) -> the method that stands for the model, where one does."""
    return {(r.task, r.dataset, r.split, r.metric, r.model): r.method for r in heads.itertuples(index=False) if r.method}


# ---------------------------------------------------------------- summary
def summary_section(rep: Report) -> tuple:
    r = rank(rep.rows)
    ranked = list(r.table.index)
    models = ranked + [m for m in dict.fromkeys(rep.rows.model.dropna()) if m not in ranked]
    cols = list(rep.cells)
    bad = rep.rows[rep.rows.status == "failed"]
    failed = set(zip(bad.model, bad.task))
    methods = _methods(rep.headlines)
    heads = ["<th>#</th>", "<th>mean rank</th>", "<th>mean z</th>"] + [_col_head(c, rep.comp.types.get(c[0])) for c in cols]
    cells = {}
    for i, m in enumerate(models):
        row = r.table.loc[m] if m in r.table.index else None
        lead = (
            [f"<td>{i + 1}</td>", f"<td>{row.mean_rank:.2f}</td>", f"<td>{row.mean_z:+.2f}</td>"]
            if row is not None
            else ["<td></td>", "<td>—</td>", "<td>—</td>"]
        )
        cells[m] = lead + [_summary_cell(rep.cells[c].get(m), (m, c[0]) in failed, methods.get((*c, m))) for c in cols]
    # a row per model, as compare lays out its tables: transposed when there are fewer models than columns
    if len(models) >= len(heads):
        table = f"<tr><th>model</th>{''.join(heads)}</tr>" + "".join(f"<tr><th>{esc(m)}</th>{''.join(cells[m])}</tr>" for m in models)
    else:
        table = "<tr><th>model</th>" + "".join(f"<th>{esc(m)}</th>" for m in models) + "</tr>"
        table += "".join(f"<tr>{h}{''.join(cells[m][i] for m in models)}</tr>" for i, h in enumerate(heads))
    notes = "".join(f"<li>{esc(n)}</li>" for n in r.notes)
    legend = (
        "Each task's headline metric in %, ± half its 95% CI. <b>Bold green</b>: ahead of every other model by more than the noise"
        f" (z={cmp.NOISE_Z:g} standard errors); ≈: leaders within noise of each other; ↓: lower is better; †: another task config, not comparable."
        " Ranked by mean rank over the tasks' headline columns (bench.ranking), mean z-score beside it."
    )
    return section(
        "summary", "Summary", f"<p class='note'>{legend}</p><div class='scroll'><table class='summary'>{table}</table></div><ul class='note'>{notes}</ul>"
    )


def _col_head(col: tuple, kind) -> str:
    task, dataset, split, metric = (esc(x) for x in col)
    return f"<th><a href='#task-{task}'>{task}</a><small>{dataset}/<wbr>{split} {metric}{' ↓' if lower_is_better(col[3], kind) else ''}</small></th>"


def _summary_cell(c: Optional[cmp.Cell], failed: bool, method: Optional[str]) -> str:
    if c is None:
        return "<td class='failed'>failed</td>" if failed else "<td>—</td>"
    value = f"{c.scale * c.value:.2f}" + (" †" if c.flag else "") + (" ≈" if c.tie else "")
    ci = f"±{c.scale * (c.ci_high - c.ci_low) / 2:.2f}" if c.ci_low is not None and c.ci_high is not None else ""
    sub = " · ".join(x for x in (ci, method) if x)
    cls = "best" if c.best else "tie" if c.tie else ""
    tip = f" title='{esc(c.flag)}'" if c.flag else ""
    return f"<td class='{cls}'{tip}>{'<b>' + value + '</b>' if c.best else value}<small>{esc(sub)}</small></td>"


# ---------------------------------------------------------------- task sections
def task_section(rep: Report, task: str) -> tuple:
    g = rep.rows[rep.rows.task == task]
    kind = _kind(g)
    fam = family_of(kind)
    cols = cmp.task_columns(rep.comp).get(task, [])
    main = [c for c in cols if not is_per_category(c[3], kind)]
    per_cat = [c for c in cols if is_per_category(c[3], kind)]
    heads = {c: cells for c, cells in rep.cells.items() if c[0] == task}
    parts = [f"<p class='note'>family: {esc(str(kind))}{' — ' + esc(fam.description) if fam else ''}</p>"]
    if not main and not per_cat:
        parts.append("<p>No successful rows; see <a href='#failures'>Failures</a>.</p>")
    if heads:
        parts.append(bar_chart(task, heads, lower_is_better(next(iter(heads))[3], kind)))
    if main:
        notes = "".join(f"<li>{esc(n)}</li>" for n in cmp.cell_notes(rep.comp, task))
        parts.append(f"<div class='scroll'>{cmp.html_table(rep.comp, main)}</div><ul class='note'>{notes}</ul>")
    parts.append(ood_heatmaps(g[g.status == "ok"], heads))
    parts.append(cmp.resolution_chart(rep.comp, task))
    if per_cat:
        parts.append(f"<details><summary>{len(per_cat)} per-category rows</summary><div class='scroll'>{cmp.html_table(rep.comp, per_cat)}</div></details>")
        parts.append(per_class_chart(g[g.status == "ok"], task, kind, heads))
    return section(f"task-{task}", task, "".join(parts))


def _best_model(heads: dict, lower: bool) -> Optional[str]:
    """The leader of the task's first headline column, among comparable cells."""
    ok = {m: c for m, c in next(iter(heads.values()), {}).items() if not c.flag}
    sign = -1 if lower else 1
    return max(ok, key=lambda m: sign * ok[m].value) if ok else None


def _bar_color(c: cmp.Cell) -> str:
    return GREY if c.flag else GREEN if c.best else PALE if c.tie else BLUE


def bar_chart(task: str, heads: dict, lower: bool) -> str:
    """The headline metric per model as bars with 95% CI whiskers, a panel per headline column, the best on top."""
    first = next(iter(heads.values()))
    order = sorted(first, key=lambda m: first[m].value, reverse=not lower)
    order += [m for cells in heads.values() for m in cells if m not in order]
    order = list(dict.fromkeys(order))
    fig = cmp.figure(1.0 + 3.2 * len(heads), 0.9 + 0.22 * len(order))
    axes = fig.subplots(1, len(heads), sharey=True, squeeze=False)[0]
    y = {m: i for i, m in enumerate(order)}
    for ax, (col, cells) in zip(axes, heads.items()):
        ms = [m for m in order if m in cells]
        cs = [cells[m] for m in ms]
        err = np.array([[c.scale * (c.value - c.ci_low), c.scale * (c.ci_high - c.value)] if c.ci_low is not None and c.ci_high is not None else [0, 0] for c in cs]).T
        ax.barh(
            [y[m] for m in ms],
            [c.scale * c.value for c in cs],
            xerr=err,
            color=[_bar_color(c) for c in cs],
            error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#333"},
        )
        ax.set_title(f"{col[1]}/{col[2]}", fontsize=9)
        ax.set_xlabel(f"{col[3]} (%)" + (", lower is better" if lower else ""), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(range(len(order)), order)
    axes[0].invert_yaxis()
    return cmp.chart(fig, f"{task}: headline metric per model with 95% CIs (green: best beyond noise, pale: tied leaders, grey: not comparable)", "bars")


def ood_sets(o: pd.DataFrame) -> list[tuple[str, str, str]]:
    """OOD columns in reading order: each group's sets, then its mean: (dataset, split, label)."""
    out = []
    for group in ("near", "far"):
        sets = sorted(set(o.dataset[o.split == group]))
        out += [(s, group, f"{s} ({group})") for s in sets]
        if ((o.dataset == group) & (o.split == "mean")).any():
            out.append((group, "mean", f"{group} mean"))
    return out


def ood_heatmaps(ok: pd.DataFrame, heads: dict) -> str:
    """Postprocessor × OOD set heatmaps of AUROC and FPR95, one figure per model, for the best models."""
    o = ok[(ok.method != "") & ok.metric.isin(OOD_METRICS) & ok.split.isin(["near", "far", "mean"])]
    if o.empty:
        return ""
    sets = ood_sets(o)
    first = next(iter(heads.values()), {})
    models = sorted(o.model.unique(), key=lambda m: -first[m].value if m in first else np.inf)
    # the same row order in every model's heatmap: best mean AUROC first
    methods = list(o[o.metric == "AUROC"].groupby("method").value.mean().sort_values(ascending=False).index)
    methods += sorted(set(o.method) - set(methods))
    figs = [_heatmap(o[o.model == m], m, methods, sets) for m in models[:MAX_HEATMAPS]]
    more = f" Heatmaps for the {MAX_HEATMAPS} best of {len(models)} models." if len(models) > MAX_HEATMAPS else ""
    return f"<h3>Postprocessors × OOD sets</h3><p class='note'>Cells in %; darker is better in both panels.{more}</p>" + "".join(figs)


def _heatmap(o: pd.DataFrame, model: str, methods: list[str], sets: list) -> str:
    methods = [m for m in methods if (o.method == m).any()]
    fig = cmp.figure(2.0 + 2 * 0.75 * len(sets), 1.4 + 0.28 * len(methods))
    axes = fig.subplots(1, 2, sharey=True)
    idx = o.set_index(["method", "dataset", "split", "metric"]).value
    for ax, metric in zip(axes, OOD_METRICS):
        grid = np.array([[100 * idx.get((m, d, s, metric), np.nan) for d, s, _ in sets] for m in methods])
        cmap = "Greens_r" if metric == "FPR95" else "Greens"
        ax.pcolormesh(
            np.ma.masked_invalid(grid),
            cmap=cmap,
            vmin=np.nanmin(grid) if np.isfinite(grid).any() else 0,
            vmax=np.nanmax(grid) if np.isfinite(grid).any() else 100,
        )
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j + 0.5, i + 0.5, f"{v:.1f}", ha="center", va="center", fontsize=7, color=_ink(grid, v, metric == "FPR95"))
        ax.set_xticks(np.arange(len(sets)) + 0.5, [lab for *_, lab in sets], rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{metric}{' (lower is better)' if metric == 'FPR95' else ''}", fontsize=9)
        ax.invert_yaxis()
    axes[0].set_yticks(np.arange(len(methods)) + 0.5, methods, fontsize=8)
    return cmp.chart(fig, f"{model}: OOD detection per postprocessor and OOD set", "heatmap")


def _ink(grid: np.ndarray, v: float, reverse: bool) -> str:
    """White text on the dark end of the colour scale, black elsewhere."""
    lo, hi = np.nanmin(grid), np.nanmax(grid)
    t = (v - lo) / (hi - lo) if hi > lo else 0.5
    return "white" if (1 - t if reverse else t) > 0.6 else "black"


def per_class_chart(ok: pd.DataFrame, task: str, kind, heads: dict) -> str:
    """Per-category AP of the task's best model, sorted, a chart per kind (bbox/AP, segm/AP), folded away."""
    best = _best_model(heads, bool(heads) and lower_is_better(next(iter(heads))[3], kind))
    rows = ok[(ok.model == best) & ok.metric.map(lambda m: is_per_category(m, kind))] if best else ok.iloc[0:0]
    rows = rows.drop_duplicates("metric").assign(kind=rows.metric.str.rsplit("/", n=1).str[0])
    out = []
    for prefix, g in rows.groupby("kind", sort=True):
        g = g.sort_values("value", ascending=False)
        # LVIS has 1203 categories: the two ends of the sorted list tell the story, the table holds the rest
        shown = g if len(g) <= 2 * MAX_CLASSES else pd.concat([g.head(MAX_CLASSES), g.tail(MAX_CLASSES)])
        fig = cmp.figure(6.0, 0.8 + 0.18 * len(shown))
        ax = fig.add_subplot()
        ax.barh(range(len(shown)), 100 * shown.value.to_numpy(float), color=BLUE)
        ax.set_yticks(range(len(shown)), [m.rsplit("/", 1)[1] for m in shown.metric], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"{prefix} (%)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        cut = "" if len(shown) == len(g) else f"; the {MAX_CLASSES} best and {MAX_CLASSES} worst of {len(g)}"
        summary = f"per-category {esc(prefix)} of {esc(best)} ({len(g)} categories)"
        out.append(f"<details><summary>{summary}</summary>{cmp.chart(fig, f'{task}: per-category {prefix} of {best}, sorted{cut}', 'per-class')}</details>")
    return "".join(out)


# ---------------------------------------------------------------- few-shot
def _shots(meta) -> Optional[int]:
    try:
        return int(json.loads(meta)["shots"])
    except (TypeError, ValueError, KeyError):
        return None


def few_shot_section(df: pd.DataFrame) -> Optional[tuple]:
    """Top-1 against shots across few-shot tasks (their rows' meta records the shots), where several shot counts ran."""
    ok = df[(df.status == "ok") & (df.metric == "top1")]
    ok = ok.assign(shots=ok.meta.map(_shots)).dropna(subset=["shots"])
    figs = []
    for (dataset, split), g in ok.groupby(["dataset", "split"], sort=True):
        if g.shots.nunique() < 2:
            continue
        fig = cmp.figure(6.5, 3.6)
        ax = fig.add_subplot()
        # the best at the most shots first; past MAX_LINES the rest are left out, and said so
        most = g[g.shots == g.shots.max()].groupby("model").value.max().sort_values(ascending=False)
        models = list(most.index) + [m for m in dict.fromkeys(g.model) if m not in most.index]
        for model in models[: cmp.MAX_LINES]:
            m = g[g.model == model].sort_values("shots").drop_duplicates("shots")
            err = [100 * (m.value - m.ci_low).fillna(0), 100 * (m.ci_high - m.value).fillna(0)]
            ax.errorbar(m.shots, 100 * m.value, yerr=err, marker="o", capsize=3, label=model)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(g.shots.unique()), [str(int(s)) for s in sorted(g.shots.unique())])
        ax.set(xlabel="shots per class", ylabel="top1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        tasks = ", ".join(sorted(g.task.unique()))
        shown = "" if len(models) <= cmp.MAX_LINES else f"; the {cmp.MAX_LINES} best of {len(models)} models at {int(g.shots.max())} shots"
        figs.append(cmp.chart(fig, f"{dataset}/{split}: few-shot top1 against shots ({tasks}){shown}", "few-shot"))
    return section("few-shot", "Few-shot", "".join(figs)) if figs else None


# ---------------------------------------------------------------- regression diff
def diff_section(df: pd.DataFrame, base: pd.DataFrame, per_metric: dict) -> tuple:
    verdicts = chk.check(df, base, 0.0, per_metric, z=cmp.NOISE_Z)
    cur, old = _index(df), _index(base)
    tally = ", ".join(f"{n} {s}" for s, n in sorted(chk.counts(verdicts).items()))
    head = "<tr><th>status</th><th>model</th><th>task</th><th>dataset/split</th><th>metric</th><th>method</th><th>baseline</th><th>current</th><th>Δ (points)</th><th>tolerance</th><th>why</th></tr>"
    quiet = [v for v in verdicts if v.status == "within noise"]
    loud = [v for v in verdicts if v.status != "within noise"]
    rows = lambda vs: "".join(_verdict_row(v, cur, old) for v in sorted(vs, key=lambda v: (not v.bad, v.status, v.model, v.task)))  # noqa: E731
    parts = [f"<p><b>{len(verdicts)} baseline metrics</b>: {esc(tally)}. Values in %, ± half the 95% CI.</p>"]
    if loud:
        parts.append(f"<div class='scroll'><table class='diff'>{head}{rows(loud)}</table></div>")
    if quiet and len(quiet) <= MAX_QUIET:
        parts.append(
            f"<details><summary>{len(quiet)} within noise</summary><div class='scroll'><table class='diff'>{head}{rows(quiet)}</table></div></details>"
        )
    elif quiet:  # tens of thousands of unremarkable rows would make the file tens of MB; counts say the same
        per_task = pd.Series([v.task for v in quiet]).value_counts().sort_index().rename_axis("task").reset_index(name="metrics within noise")
        note = f"<p class='note'>More than {MAX_QUIET}: counted per task here; <code>bench check --all</code> lists each one.</p>"
        parts.append(f"<details><summary>{len(quiet)} within noise</summary>{note}{_table(per_task, 'left')}</details>")
    return section("diff", "Regression diff", "".join(parts))


def _index(df: pd.DataFrame) -> dict:
    d = df[df.status == "ok"]
    return {(r.model, r.task, r.dataset, r.split, r.metric, r.method if isinstance(r.method, str) else ""): r for r in d.itertuples(index=False)}


def _with_ci(r, value: Optional[float], k: float = 100.0) -> str:
    if value is None:
        return "—"
    ci = cmp._num(getattr(r, "ci_low", None)), cmp._num(getattr(r, "ci_high", None))
    return f"{k * value:.2f}" + (f" ±{k * (ci[1] - ci[0]) / 2:.2f}" if None not in ci else "")


def _verdict_row(v: chk.Verdict, cur: dict, old: dict) -> str:
    key = (v.model, v.task, v.dataset, v.split, v.metric, v.method or "")
    row = cur.get(key) or old.get(key)
    k = display_scale(v.metric, getattr(row, "task_type", None))
    delta = "—" if v.current is None else f"{k * (v.current - v.baseline):+.2f}"
    cls = "v-" + v.status.split(" (")[0].replace(" ", "-")
    cells = [
        v.model,
        v.task,
        f"{v.dataset}/{v.split}",
        v.metric,
        v.method or "",
        _with_ci(old.get(key), v.baseline, k),
        _with_ci(cur.get(key), v.current, k),
        delta,
        f"{v.tolerance:g}",
    ]
    return f"<tr class='{cls}'><td>{esc(v.status)}</td>{''.join(f'<td>{esc(x)}</td>' for x in cells)}<td class='why'>{esc(v.note)}</td></tr>"


# ---------------------------------------------------------------- provenance and failures
RUN_COLS = ["suite", "git_sha", "bench_version", "torch", "timm", "open_clip", "machine", "device"]
JOB_COLS = ["model", "task", "run_id", "status", "precision", "batch_size", "device", "threads", "seed", "task_hash", "wall_s"]


def _table(df: pd.DataFrame, cls: str = "") -> str:
    fmt = lambda x: "—" if x is None or (not isinstance(x, str) and pd.isna(x)) else f"{x:.1f}" if isinstance(x, float) else str(x)  # noqa: E731
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(x))}</td>" for x in r) + "</tr>" for r in df.itertuples(index=False))
    return f"<div class='scroll'><table class='{cls}'><tr>{head}</tr>{body}</table></div>"


def provenance_section(df: pd.DataFrame) -> tuple:
    runs = df.groupby("run_id", dropna=False, sort=True).agg(
        **{c: (c, lambda s: ", ".join(sorted({str(x) for x in s.dropna()})) or None) for c in RUN_COLS},
        jobs=("job_hash", "nunique"),
        started=("started_at", "min"),
    )
    jobs = df.drop_duplicates(["model", "task", "run_id"])[JOB_COLS].sort_values(["task", "model"])
    table = _table(jobs, "left")
    folded = f"<details{' open' if len(jobs) <= 50 else ''}><summary>precision and batch size per job ({len(jobs)} jobs)</summary>{table}</details>"
    odd = not_comparable(df)
    note = "".join(f"<li>{esc(n)}</li>" for n in odd) if odd else "<li>Every task's rows share one task config (task_hash): all comparable.</li>"
    return section(
        "provenance", "Provenance", f"<h3>Runs</h3>{_table(runs.reset_index(), 'left')}{folded}<h3>Not comparable</h3><ul class='notcomparable'>{note}</ul>"
    )


def not_comparable(df: pd.DataFrame) -> list[str]:
    """Rows whose task config (task_hash) differs from the one most models of the same task ran."""
    out = []
    for task, g in df[df.status == "ok"].dropna(subset=["task_hash"]).groupby("task", sort=True):
        jobs = g.drop_duplicates(["model", "task_hash"])
        common = jobs.task_hash.mode().iat[0]
        for r in jobs[jobs.task_hash != common].itertuples(index=False):
            out.append(f"{r.model} × {task}: task_hash {r.task_hash}, most models ran {common}: another suite text, --limit, precision or seed; not comparable")
    return out


def failures_section(df: pd.DataFrame) -> tuple:
    f = df[df.status == "failed"].drop_duplicates(["model", "task", "run_id"])
    if f.empty:
        return section("failures", "Failures", "<p>No failed jobs.</p>")
    f = f.assign(error=f.error.fillna("").map(lambda e: e.strip().splitlines()[0] if e.strip() else "failed"))
    return section("failures", f"Failures ({len(f)})", _table(f[["model", "task", "run_id", "error"]].sort_values(["task", "model"]), "left failures"))


# ---------------------------------------------------------------- page
CSS = cmp.TABLE_CSS + (
    "nav{padding:.4em 0;border-bottom:1px solid #ddd;font-size:.9em}nav a{margin-right:.8em}"
    "section{margin:1.5em 0 2.5em}h2{border-bottom:2px solid #4c72b0;padding-bottom:.2em}.scroll{overflow-x:auto}"
    "table.summary td.best{background:#dff3e4}table.summary small{display:block;white-space:normal;font-size:.78em}table.summary th{max-width:10em;white-space:normal}table.summary th a,table.summary tr:first-child th{white-space:nowrap}table.summary td.tie{background:#f1f8f3}td.failed{color:#b00020}small{color:#666;font-weight:400}"
    "table.left td,table.left th,table.summary tr>th:first-child{text-align:left}table.diff td:nth-child(-n+6){text-align:left}td.why{text-align:left;white-space:normal;min-width:24em;color:#555}"
    ".v-regressed td,.v-failed td{background:#fde2e2}.v-missing td,.v-not-comparable td{background:#fff3cd}.v-improved td{background:#e0f0ff}.v-within-noise td{background:#eef7ee}"
    "figure.chart{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}figure.chart svg{max-width:100%;height:auto}"
    "figcaption{font-size:.85em;color:#555;max-width:60em}details{margin:.5em 0}summary{cursor:pointer;color:#4c72b0}"
)


def section(id_: str, title: str, body: str) -> tuple[str, str, str]:
    return id_, title, body


def page(title: str, sections: list[tuple[str, str, str]]) -> str:
    nav = "".join(f"<a href='#{esc(i)}'>{esc(t)}</a>" for i, t, _ in sections)
    body = "".join(f"<section id='{esc(i)}'><h2>{esc(t)}</h2>{b}</section>" for i, t, b in sections)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
        f"<link rel='icon' href='data:,'><title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>{esc(title)}</h1><nav>{nav}</nav>{body}</body></html>\n"
    )
