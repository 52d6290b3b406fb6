"""The `bench` command line. It parses arguments and calls the scheduler, compare or check; nothing else."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.errors import BenchError, SuiteError

app = typer.Typer(
    help="Evaluate vision and language foundation models: YAML suites of models × tasks → Parquet leaderboards.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
# CI logs are not terminals: give tables room instead of rich's 80-column default
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _fail(e: Exception, code: int = 2):
    lines = e.problems if isinstance(e, SuiteError) else [str(e)]
    for line in lines:
        err.print(f"[red]error[/]: {escape(line)}", highlight=False, soft_wrap=True)  # '[batch, dim]' is not markup
    raise typer.Exit(code)


def _override_error(e) -> str:
    """A command-line override pydantic refused, as '--flag: message' naming the value."""
    out = []
    for x in e.errors(include_url=False):
        flag = "--" + str(x["loc"][0]).replace("_", "-") if x["loc"] else "option"
        msg = str(x.get("ctx", {}).get("error", "")) if x["type"] == "value_error" else f"{x['input']!r}: {x['msg']}"
        out.append(f"{flag}: {msg}")
    return "; ".join(dict.fromkeys(out))


def _load(suite: Path, check_paths: bool = True):
    from bench.jobs import expand
    from bench.suite import load_suite

    s = load_suite(suite, check_paths=check_paths)
    return s, expand(s)


@app.command()
def validate(suite: Path = typer.Argument(..., help="Suite YAML file.")):
    """Check a suite: schema, names, files and model/task capabilities. Prints every problem as FILE:LINE."""
    try:
        s, plan = _load(suite)
    except BenchError as e:
        _fail(e)
    out.print(f"[green]ok[/]: {suite}: {len(s.models)} models × {len(s.tasks)} tasks → {len(plan.jobs)} jobs, {len(plan.skipped)} pairs skipped")


class Launcher(str, Enum):
    slurm = "slurm"
    local = "local"


@app.command()
def run(
    suite: Path = typer.Argument(..., help="Suite YAML file."),
    out_dir: Path = typer.Option(Path("results"), "--out", help="Results root; runs land in OUT/<suite>/<run-id>/."),
    device: Optional[str] = typer.Option(None, help="Override defaults.device: auto | cpu | cuda | cuda:N."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate a seeded sample of at most N items per split."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Override defaults.batch_size."),
    precision: Optional[str] = typer.Option(None, help="Override defaults.precision: fp32 | bf16 | fp16."),
    force: bool = typer.Option(False, "--force", help="Rerun jobs whose rows already exist."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the expanded jobs (and skipped pairs) without running."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the output cache ($BENCH_CACHE/outputs)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Run jobs on N CPU worker processes (each with its share of the cores)."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="One worker per GPU: a count (8) or ids (0,3,5), pinned with CUDA_VISIBLE_DEVICES."),
    launcher: Optional[Launcher] = typer.Option(
        None, "--launcher", help="slurm: one submitit job per suite job (multi-node); local: the same through submitit's local executor."
    ),
    partition: Optional[str] = typer.Option(None, help="--launcher slurm: partition (overrides the suite's slurm.partition)."),
    time_min: Optional[int] = typer.Option(None, "--time", min=1, help="--launcher slurm: minutes per job (slurm.time_min)."),
    gpus_per_node: Optional[int] = typer.Option(None, "--gpus-per-node", min=0, help="--launcher slurm: GPUs per job (slurm.gpus_per_node)."),
):
    """Run every model × task job of a suite, resuming where earlier runs stopped."""
    from bench.jobs import expand
    from bench.scheduler import Scheduler
    from bench.suite import Defaults, load_suite

    try:
        s = load_suite(suite)
        over = {k: v for k, v in {"device": device, "limit": limit, "batch_size": batch_size, "precision": precision}.items() if v is not None}
        try:
            settings = Defaults.model_validate({**s.defaults.model_dump(), **over})
        except ValidationError as e:
            raise BenchError(_override_error(e)) from None
        plan = expand(s, settings)
    except BenchError as e:
        _fail(e)

    from bench.cache import OutputCache

    scheduler = Scheduler(s, plan, out_dir, force=force, console=err, cache=OutputCache(enabled=not no_cache))
    if dry_run:
        t = Table(title=f"{s.name}: {len(plan.jobs)} jobs")
        for c in ("model", "task", "type", "job_hash", "status"):
            t.add_column(c)
        for j in plan.jobs:
            t.add_row(j.model.name, j.task.name, j.task.type, j.job_hash, "done (skip)" if not force and scheduler.existing_rows(j) else "to run")
        out.print(t)
        # one line per (model, reason): a detector lacks the same thing for every classification task
        grouped: dict = {}
        for sk in plan.skipped:
            grouped.setdefault((sk.model, sk.reason), []).append(sk.task)
        for (model, reason), tasks in grouped.items():
            out.print(f"skipped: {model} × {', '.join(tasks)}: {reason}")
        return
    boot = {"suite": str(suite), "settings": settings.model_dump(), "cache": not no_cache}
    from bench.dist import init_from_env, world

    device_ = init_from_env(settings.device)  # under torchrun: join the group, one device per rank
    if world()[0] != 0:
        scheduler.console = Console(stderr=True, quiet=True)
    slurm = None
    if launcher:
        from bench.suite import SlurmConfig

        flags = {k: v for k, v in {"partition": partition, "time_min": time_min, "gpus_per_node": gpus_per_node}.items() if v is not None}
        slurm = SlurmConfig.model_validate({**(s.slurm or {}), **flags})
    try:
        summary = scheduler.run(device_, workers=workers, gpus=gpus, boot=boot, launcher=launcher.value if launcher else None, slurm=slurm)
    except BenchError as e:
        _fail(e)
    if world()[0] != 0:
        return
    _print_summary(summary)
    if summary.failed:
        raise typer.Exit(1)


def _print_summary(summary):
    from bench.tasks import display_scale, is_per_category

    t = Table(title=f"results: {summary.run_dir}")
    for c in ("model", "task", "status", "metrics", "wall s", "samples/s"):
        t.add_column(c, justify="right" if c in ("wall s", "samples/s") else "left")
    for o in summary.outcomes:
        cat = [is_per_category(r["metric"], r.get("task_type")) for r in o.rows]
        plain = [r for r, c in zip(o.rows, cat) if not r.get("method") and not c]
        per_cat = sum(cat)
        methods = {r["method"] for r in o.rows if r.get("method")}
        metrics = ", ".join(f"{r['metric']}={display_scale(r['metric'], r.get('task_type')) * r['value']:.2f}" for r in plain) if o.rows else (escape(o.error or "") if o.status == "failed" else "")
        if methods:
            metrics += f"{', ' if plain else ''}{len(o.rows) - len(plain) - per_cat} rows over {len(methods)} methods"
        if per_cat:
            metrics += f", {per_cat} per-category rows"
        sps = next((r.get("samples_per_s") for r in o.rows), None)
        style = {"ok": "green", "failed": "red", "skipped": "dim"}[o.status]
        t.add_row(
            o.job.model.name,
            o.job.task.name,
            f"[{style}]{o.status}[/]",
            metrics,
            f"{o.wall_s:.1f}" if o.status != "skipped" else "",
            f"{sps:.1f}" if sps else "",
        )
    out.print(t)
    n_fail = len(summary.failed)
    out.print(f"{len(summary.outcomes) - n_fail} ok or resumed, {n_fail} failed; leaderboard: {summary.run_dir.parent / 'leaderboard.parquet'}")


class ListWhat(str, Enum):
    adapters = "adapters"
    tasks = "tasks"
    models = "models"


@app.command("list")
def list_(
    what: ListWhat = typer.Argument(..., help="adapters | tasks | models"),
    pattern: str = typer.Argument("*", help="Wildcard filter, e.g. 'vit_*' or '*clip*'."),
    source: str = typer.Option("timm", help="For 'models': timm | open_clip."),
    suite: Optional[Path] = typer.Option(None, help="Also list what this suite's `plugins:` register."),
):
    """List registered adapters, task types, or model architectures (timm/open_clip) matching a wildcard."""
    if suite is not None:
        from bench.suite import load_suite

        try:
            load_suite(suite, check_paths=False)
        except BenchError as e:
            _fail(e)
    if what == ListWhat.adapters:
        from adapters import ADAPTERS

        t = Table("adapter", "capabilities", "description")
        for name in ADAPTERS.list(pattern):
            cls = ADAPTERS.get(name)
            t.add_row(name, cls.offers, cls.description)
        out.print(t)
    elif what == ListWhat.tasks:
        from bench.tasks import TASKS

        t = Table("task type", "description", "needs (any of)", "headline", "lower is better")
        for name in TASKS.list(pattern):
            f = TASKS.get(name)
            t.add_row(name, f.description, ", ".join(sorted(f.needs)), ", ".join(f.headline), ", ".join(f.lower_is_better) or "—")
        out.print(t)
    else:
        if source == "open_clip":
            import fnmatch

            import open_clip

            names = [m for m in open_clip.list_models() if fnmatch.fnmatch(m, pattern)]
        elif source == "timm":
            import timm

            names = timm.list_models(pattern)
        else:
            _fail(BenchError(f"unknown --source '{source}': use timm or open_clip"))
        for n in names:
            out.print(n, highlight=False)


class Fmt(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    html = "html"


@app.command()
def compare(
    results: list[Path] = typer.Argument(..., help="Results folders or Parquet files (rows are unioned)."),
    baseline: Optional[str] = typer.Option(None, help="A model name in the results, or a results file/folder, to show deltas against."),
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table | markdown | csv | html"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    task: Optional[str] = typer.Option(None, help="Only these tasks (comma-separated globs)."),
    dataset: Optional[str] = typer.Option(None, help="Only these datasets, e.g. 'near,far' for OOD group means."),
    metric: Optional[str] = typer.Option(None, help="Only these metrics, e.g. 'top1' or 'AUROC,FPR95'."),
    rank: bool = typer.Option(False, "--rank", help="One ranking across tasks: per-task z-scores of each task's headline metric and the mean rank."),
):
    """Show models × (task, metric): best per column marked, deltas against a baseline, † where not comparable."""
    from bench import compare as cmp

    try:
        _run_plugins(results)
    except BenchError as e:
        _fail(e)
    if rank:
        from bench import ranking

        try:
            df = cmp.load_rows([str(p) for p in results])
            df = df[cmp._keep(df.task, task)]
            r = ranking.rank(df)
        except BenchError as e:
            _fail(e)
        render = {Fmt.csv: ranking.render_ranking_csv, Fmt.html: ranking.render_ranking_html}.get(fmt, ranking.render_ranking_markdown)
        text = render(r)
        if output:
            _write_out(output, text)
            err.print(f"wrote {output}")
        else:
            sys.stdout.write(text)
        return
    try:
        comp = cmp.build([str(p) for p in results], baseline, task=task, dataset=dataset, metric=metric)
    except BenchError as e:
        _fail(e)
    if fmt == Fmt.table and output is None:
        for table in cmp.render_rich(comp):
            out.print(table)
        for n in cmp.footnotes(comp):
            out.print(n, highlight=False)
        return
    text = {Fmt.table: cmp.render_markdown, Fmt.markdown: cmp.render_markdown, Fmt.csv: cmp.render_csv, Fmt.html: cmp.render_html}[fmt](comp)
    if output:
        _write_out(output, text)
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


@app.command()
def check(
    results: list[Path] = typer.Argument(..., help="Results folders or Parquet files of the current run."),
    baseline: Path = typer.Option(..., help="Baseline: a Parquet file, or a results folder (then its predictions allow paired tests)."),
    tolerance: float = typer.Option(0.0, min=0.0, help="Absolute floor on the noise band, in the metric's own units (0.01 = 1 point of accuracy)."),
    z: float = typer.Option(2.0, "--z", min=0.0, help="Noise band width in standard errors: a change beyond z·sqrt(se_base² + se_current²) counts."),
    allow_mismatch: bool = typer.Option(False, "--allow-mismatch", help="Report rows of another task config, --limit or sample count, but do not fail on them."),
    suite: Optional[Path] = typer.Option(None, help="Suite whose check.tolerance gives per-metric tolerances (default: the one recorded in run.json)."),
    summary: Optional[Path] = typer.Option(None, help="Also write a markdown summary here (e.g. $GITHUB_STEP_SUMMARY)."),
    show_all: bool = typer.Option(False, "--all", help="List every metric, not only the bad ones."),
):
    """Label every baseline metric regressed, within noise, improved, missing, failed or not comparable; exit 1 on any bad one.

    A metric regresses when it moves the wrong way by more than max(tolerance, z·sqrt(se_base² + se_current²));
    where both sides have per-sample predictions, McNemar's test on the paired samples decides instead.
    """
    from bench import check as chk
    from bench.results import load_rows

    try:
        _run_plugins(list(results) + [baseline])
        current = load_rows([str(p) for p in results], with_source=True)
        base = load_rows([str(baseline)], with_source=True)
        per_metric = _tolerances(suite, results)
    except BenchError as e:
        _fail(e)
    verdicts = chk.check(current, base, tolerance, per_metric, z=z, allow_mismatch=allow_mismatch)
    t = Table(title=f"bench check against {baseline}")
    for c in ("status", "model", "task", "metric", "baseline", "current", "Δ", "tol", "reason"):
        t.add_column(c)
    colors = {"within noise": "green", "improved": "cyan", "not comparable (allowed)": "yellow"}
    for v in verdicts:
        if v.bad or show_all:
            cur = "—" if v.current is None else f"{v.current:.4f}"
            delta = "—" if v.current is None else f"{v.current - v.baseline:+.4f}"
            color = colors.get(v.status, "red")
            t.add_row(
                f"[{color}]{v.status}[/]", v.model, v.task, f"{v.dataset}/{v.split} {v.metric}", f"{v.baseline:.4f}", cur, delta, f"{v.tolerance:g}", escape(v.note)
            )
    bad = [v for v in verdicts if v.bad]
    if t.row_count:
        out.print(t)
    tally = ", ".join(f"{n} {s}" for s, n in sorted(chk.counts(verdicts).items()))
    if summary:
        _write_out(summary, chk.render_markdown(verdicts))
    if bad:
        out.print(f"[red]FAIL[/]: {len(bad)} of {len(verdicts)} baseline metrics are regressed, missing, failed or not comparable ({tally})")
        raise typer.Exit(1)
    out.print(f"[green]PASS[/]: {len(verdicts)} baseline metrics ({tally})")


@app.command()
def report(
    results: list[Path] = typer.Argument(..., help="Results folders or Parquet files (rows are unioned)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="The HTML file to write."),
    baseline: Optional[Path] = typer.Option(None, help="A baseline Parquet file or results folder: adds the regression diff (bench check's verdicts)."),
    title: Optional[str] = typer.Option(None, help="The page's title (default: the results paths)."),
):
    """One self-contained HTML file: summary and ranks, a section per task with charts, regression diff, provenance, failures."""
    from bench import report as rep

    try:
        _run_plugins(list(results) + ([baseline] if baseline else []))
        path = rep.write([str(p) for p in results], output, str(baseline) if baseline else None, title, per_metric=_tolerances(None, results))
    except BenchError as e:
        _fail(e)
    except OSError as e:  # a folder, a missing parent, no permission
        _fail(BenchError(f"{output}: cannot write: {e.strerror or e}"), 1)
    err.print(f"wrote {path}")


@app.command("export")
def export(
    name: str = typer.Argument(..., help="An exporter a task family declares: superglue, ego4d, or a plugin's (see `bench list tasks`)."),
    results: Path = typer.Argument(..., help="A run folder (results/<suite>/<run-id>) or a suite's results folder."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where the files go (default submissions/NAME)."),
    model: Optional[str] = typer.Option(None, help="Only this model (default: every model with a job of those families)."),
):
    """Challenge and leaderboard submission files from a run's test-split predictions.

    superglue: BoolQ.jsonl … AX-g.jsonl (idx + label as the leaderboard expects), zipped per model.
    ego4d: NLQ and MQ test-split submission JSON in the challenge layouts, one per model and task.
    """
    from bench.export import exporters, run_exporter

    try:
        _run_plugins([results])
        table = exporters()
        if name not in table:
            raise BenchError(f"no task family declares an exporter '{name}' (known: {', '.join(sorted(table)) or 'none'})")
        written = run_exporter(name, results, out_dir or Path("submissions") / name, model)
    except BenchError as e:
        _fail(e, 1)
    for path, note in written:
        out.print(f"wrote {path}" + (f" [yellow]({note})[/]" if note else ""))


cache_app = typer.Typer(
    help="Inspect and prune the cache of model outputs and generated datasets ($BENCH_CACHE, default ~/.cache/bench).", no_args_is_help=True
)
app.add_typer(cache_app, name="cache")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@cache_app.command("ls")
def cache_ls(datasets: bool = typer.Option(False, "--datasets", help="Also list each generated dataset folder.")):
    """Entries, size and age of the output cache (features, logits, detections), decoded inputs and clips, and generated datasets."""
    import datetime as dt

    from bench import cache
    from bench.paths import cache_dir

    items = cache.entries()
    t = Table(title=f"cache: {cache_dir()}")
    for c in ("kind", "entries", "size", "oldest use", "newest use"):
        t.add_column(c, justify="right" if c in ("entries", "size") else "left")
    for kind in ("outputs", "inputs", "clips", "datasets"):
        group = [e for e in items if e.kind == kind]
        when = lambda x: dt.datetime.fromtimestamp(x).strftime("%Y-%m-%d %H:%M") if group else ""  # noqa: E731
        t.add_row(
            kind,
            str(len(group)),
            _human(sum(e.size for e in group)),
            when(min((e.mtime for e in group), default=0)),
            when(max((e.mtime for e in group), default=0)),
        )
    out.print(t)
    if datasets:
        for e in items:
            if e.kind == "datasets":
                out.print(f"  {e.path.name}: {_human(e.size)}")


@cache_app.command("prune")
def cache_prune(
    older_than: Optional[float] = typer.Option(None, "--older-than", min=0, help="Delete entries not written or read for this many days."),
    max_size: Optional[str] = typer.Option(None, "--max-size", help="Then delete the least recently used until the cache fits, e.g. 20G."),
    datasets: bool = typer.Option(False, "--datasets", help="Also prune generated datasets (default: model outputs, decoded inputs and clips)."),
    all_: bool = typer.Option(False, "--all", help="Delete every selected entry."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be deleted."),
):
    """Delete cache entries by age and/or total size; everything in the cache is safe to delete (it is recomputed)."""
    from bench import cache

    if older_than is None and max_size is None and not all_:
        _fail(BenchError("say what to prune: --older-than DAYS, --max-size SIZE or --all"))
    try:
        limit = cache.parse_size(max_size) if max_size else None
    except ValueError:
        _fail(BenchError(f"--max-size: cannot read '{max_size}' (e.g. 500M, 20G)"))
    items = [e for e in cache.entries() if e.kind in ("outputs", "inputs", "clips") or (datasets and e.kind == "datasets")]
    doomed = list(items) if all_ else cache.prune(items, older_than, limit)
    freed = sum(e.size for e in doomed)
    if not dry_run:
        for e in doomed:
            cache.remove(e)
    out.print(f"{'would delete' if dry_run else 'deleted'} {len(doomed)} of {len(items)} entries, {_human(freed)}")


data_app = typer.Typer(help="The zero-shot catalogue, and preparing its datasets in the layout bench reads.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list(pattern: str = typer.Argument("*", help="Glob on catalogue names, e.g. 'imagenet*'.")):
    """Catalogue datasets: class names, templates, label maps, and whether `bench data prepare` can fetch them."""
    import fnmatch

    from bench import catalogue
    from bench.data.prepare import RECIPES

    t = Table(title="zero-shot catalogue (zero_shot: {catalogue: NAME})")
    for c in ("name", "classes", "templates", "label map", "prepare", "source"):
        t.add_column(c)
    for name in (n for n in catalogue.names() if fnmatch.fnmatch(n, pattern)):
        e = catalogue.entry(name)
        how = ("by hand + " if RECIPES[name].manual else "") + f"torchvision {RECIPES[name].loader}" if name in RECIPES else "—"
        t.add_row(name, str(len(e.classnames)) if e.classnames else "from the dataset", str(len(e.templates)), "200 of 1k" if e.label_map else "", how, e.source)
    out.print(t)


@data_app.command("prepare")
def data_prepare(
    name: str = typer.Argument(..., help="A catalogue dataset with a recipe (see `bench data list`)."),
    root: Path = typer.Option(..., "--root", help="Where the raw download and the prepared ImageFolder go."),
    split: str = typer.Option("test", help="test, or train where the dataset has one."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be fetched and written, and fetch nothing."),
):
    """Fetch one catalogue dataset with torchvision's loader and write it as an ImageFolder with classnames.txt.

    Offline, --dry-run says what to fetch and where to put it.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from bench.data import prepare as prep

    try:
        lines = prep.plan(name, root, split)
        if dry_run:
            for ln in lines:
                out.print(ln)
            return
        try:
            ds = prep.load(name, root, split)
        except BenchError:  # offline, or files not placed by hand: say what to fetch and where
            for ln in lines:
                err.print(ln)
            raise
        names = prep.class_names(ds)
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err) as bar:
            task = bar.add_task(f"{name} {split}", total=len(ds))
            n = prep.write_imagefolder(ds, names, root / name / split, lambda k: bar.advance(task, k))
        (root / name / "classnames.txt").write_text("\n".join(names) + "\n")
    except BenchError as e:
        _fail(e, 1)
    out.print(f"wrote {n} images in {len(names)} classes to {root / name / split}")
    out.print(f"use: {prep.suite_snippet(name, root, split)}")


def _write_out(path: Path, text: str) -> None:
    """Write an output file, or one line naming it: a folder, a missing parent, no permission."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        _fail(BenchError(f"{path}: cannot write: {e.strerror or e}"), 1)


def _run_plugins(results) -> None:
    """Import the plugins recorded in the runs' run.json, so their families' declarations are known."""
    from bench.plugins import import_plugins

    for f in {f for p in results if Path(p).is_dir() for f in Path(p).rglob("run.json")}:
        try:
            s = json.loads(f.read_text())["suite"]
        except (OSError, KeyError, ValueError, TypeError):
            continue
        if s.get("plugins"):
            import_plugins(s["plugins"], s.get("python_path") or [], where=f"{f}: ")


def _tolerances(suite: Optional[Path], results: list[Path]) -> dict[str, float]:
    if suite:
        from bench.suite import load_suite

        return load_suite(suite, check_paths=False).check.tolerance
    runs = sorted((f for p in results if Path(p).is_dir() for f in Path(p).rglob("run.json")), key=lambda f: f.stat().st_mtime)
    for f in reversed(runs):
        try:
            return json.loads(f.read_text())["suite"]["check"]["tolerance"]
        except (KeyError, ValueError, TypeError):
            continue
    return {}


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
