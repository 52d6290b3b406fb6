"""Cross-task ranking, as Battle of the Backbones aggregates: per-task z-scores and a mean rank.

Each task contributes its family's declared headline metric (for OOD, AUROC on the near and far
means: the family's headline_datasets). Per column, scores are z-normalised across models (signs flipped where lower
is better) and ranked (1 = best, ties share the mean rank); a model's mean z-score and mean rank
are taken over the columns it has. Rows are excluded, and each exclusion is stated, when they
failed, when their task config differs from the one most models ran (another task_hash: not
comparable), or when a column has fewer than two models to rank. Where a task applies methods on
top of a model (OOD postprocessors), a model's best method stands for it, and that is stated.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import pandas as pd

from bench.tasks import TASKS, family_of, lower_is_better

@dataclass
class Ranking:
    table: pd.DataFrame  # index model; columns: one z-score per (task, dataset, metric), mean_z, mean_rank, tasks
    columns: list[tuple]
    notes: list[str] = field(default_factory=list)


def label(col: tuple) -> str:
    task, dataset, split, metric = col
    return f"{task} {dataset}/{split} {metric}"


def headline(metrics: set[str], task_type) -> tuple[list[str], tuple]:
    """The family's headline metrics among those reported, and the datasets they are read from.

    Rows without a known family (older files, a plugin not loaded) take the first registered family
    whose headline they report, families with a headline_datasets declaration first.
    """
    fam = family_of(task_type)
    fams = [fam] if fam else sorted((TASKS.get(n) for n in TASKS.list()), key=lambda f: not f.headline_datasets)
    for f in fams:
        for p in f.headline:
            hit = sorted(m for m in metrics if fnmatch.fnmatch(m, p))
            if hit:
                return hit, f.headline_datasets
    return [], ()


def rank(df: pd.DataFrame) -> Ranking:
    notes: list[str] = []
    if "task_type" not in df:
        df = df.assign(task_type=None)
    failed = df[df.status != "ok"]
    if len(failed):
        notes.append(f"excluded {failed.groupby(['model', 'task']).ngroups} failed model × task pairs")
    ok = df[df.status == "ok"].copy()
    ok["method"] = ok["method"].fillna("") if "method" in ok else ""
    cells = []
    for task, g in ok.groupby("task", sort=True):
        task_type = g.task_type.dropna().iloc[0] if g.task_type.notna().any() else None
        metrics, datasets = headline(set(g.metric), task_type)
        if not metrics:
            notes.append(f"task '{task}': reports none of its family's headline metrics; left out")
            continue
        g = g[g.metric.isin(metrics)]
        if datasets and g.dataset.isin(datasets).any():  # e.g. OOD: the near and far means
            g = g[g.dataset.isin(datasets)]
        if (g.method != "").any():
            notes.append(f"task '{task}': each model is represented by its best method")
            better = not lower_is_better(metrics[0], task_type)
            g = g.sort_values("value", ascending=not better).drop_duplicates(["model", "task", "dataset", "split", "metric"])
        cells.append(g)
    if not cells:
        return Ranking(pd.DataFrame(), [], notes + ["nothing to rank"])
    g = pd.concat(cells)
    columns, z, ranks = [], {}, {}
    for col, c in g.groupby(["task", "dataset", "split", "metric"], sort=True):
        common = c.task_hash.mode().iloc[0] if "task_hash" in c and c.task_hash.notna().any() else None
        if common is not None:
            odd = c[c.task_hash != common]
            if len(odd):
                notes.append(f"{col[0]} {col[1]}/{col[2]} {col[3]}: excluded {', '.join(sorted(odd.model))} (another task config, not comparable)")
                c = c[c.task_hash == common]
        if c.model.nunique() < 2:
            notes.append(f"{col[0]} {col[1]}/{col[2]} {col[3]}: fewer than two models, not ranked")
            continue
        v = c.set_index("model").value.astype(float)
        kind = c.task_type.dropna().iloc[0] if c.task_type.notna().any() else None
        v = -v if lower_is_better(col[3], kind) else v
        sd = v.std(ddof=0)
        name = label(col)
        z[name] = (v - v.mean()) / sd if sd > 0 else v * 0.0
        ranks[name] = v.rank(ascending=False, method="average")
        columns.append(col)
    if not columns:
        return Ranking(pd.DataFrame(), [], notes + ["nothing to rank"])
    zt = pd.DataFrame(z)
    rt = pd.DataFrame(ranks)
    table = zt.copy()
    table["mean_z"] = zt.mean(axis=1)
    table["mean_rank"] = rt.mean(axis=1)
    table["tasks"] = zt.notna().sum(axis=1)
    partial = table[table.tasks < len(columns)]
    if len(partial):
        notes.append(f"ranked over the columns they have: {', '.join(f'{m} ({int(n)}/{len(columns)})' for m, n in partial.tasks.items())}")
    table = table.sort_values(["mean_rank", "mean_z"], ascending=[True, False])
    return Ranking(table, columns, notes)


def render_ranking_markdown(r: Ranking) -> str:
    if r.table.empty:
        return "\n".join(f"- {n}" for n in r.notes) + "\n"
    cols = [label(c) for c in r.columns]
    lines = ["| model | " + " | ".join(cols) + " | mean z | mean rank | tasks |", "|---" * (len(cols) + 4) + "|"]
    for model, row in r.table.iterrows():
        zs = " | ".join("" if pd.isna(row[c]) else f"{row[c]:+.2f}" for c in cols)
        lines.append(f"| {model} | {zs} | {row.mean_z:+.2f} | {row.mean_rank:.2f} | {int(row.tasks)} |")
    lines.append("")
    lines += [f"- {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def render_ranking_csv(r: Ranking) -> str:
    return r.table.to_csv(index_label="model")


def render_ranking_html(r: Ranking) -> str:
    import html

    md = render_ranking_markdown(r)
    return f"<!doctype html><html><head><meta charset='utf-8'><title>bench ranking</title></head><body><pre>{html.escape(md)}</pre></body></html>\n"
