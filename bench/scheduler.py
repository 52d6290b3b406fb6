"""The scheduler: which jobs run, where, and what a run leaves behind.

It owns resume (a job whose rows exist is skipped), the results-folder lock, the in-process,
pool, torchrun and submitit paths, the progress view, run.json and the leaderboard. Each job is
run by an Executor (bench.executor), here or in a worker.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench.cache import OutputCache
from bench.errors import one_line
from bench.executor import Executor, JobOutcome, resolve_device
from bench.jobs import Job, Plan
from bench.results import environment, job_rows_ok, load_rows, write_frame, write_json
from bench.suite import Suite

COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())


@dataclass
class RunSummary:
    run_dir: Path
    outcomes: list[JobOutcome]

    @property
    def failed(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def prepare_process(jobs, device: str) -> str:
    """The device this process runs its jobs on, with torch and OpenMP threads set once for them.

    A plan of results files only ("predictions" models) runs no model: it gets "cpu" and never
    imports torch, whose import alone costs seconds against a COCO scorer's fifteen.
    """
    from adapters import ADAPTERS

    if not any(ADAPTERS.get(j.model.adapter).runs_model for j in jobs):
        return "cpu"
    from bench.executor import set_process_threads

    # in this process: torch/OpenMP on every core (BENCH_THREADS to change), as a pool worker sets its share
    set_process_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    return resolve_device(device)


class Scheduler:
    def __init__(
        self,
        suite: Suite,
        plan: Plan,
        out: Path,
        force: bool = False,
        console: Optional[Console] = None,
        argv: Optional[list[str]] = None,
        cache: Optional[OutputCache] = None,
    ):
        self.suite, self.plan, self.force = suite, plan, force
        self.cache = cache or OutputCache()
        self.suite_dir = Path(out) / suite.name
        # sorts by start time to the microsecond; the random tail keeps concurrent runs apart
        self.run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S.%f}-{secrets.token_hex(2)}"
        self.console = console or Console(stderr=True)
        self.argv = argv if argv is not None else sys.argv
        self.writer = True  # False on torch.distributed ranks other than 0

    @property
    def run_dir(self) -> Path:
        return self.suite_dir / self.run_id

    def executor(self) -> Executor:
        return Executor(self.suite, self.run_dir, self.cache, self.console, writer=self.writer)

    def existing_rows(self, job: Job) -> Optional[Path]:
        for p in sorted(self.suite_dir.glob(f"*/rows/{job.job_hash}.parquet")):
            if job_rows_ok(p):
                return p
        return None

    def record_failure(self, job: Job, msg: str, device: str) -> None:
        """A failed row for a job whose process could not write one (its worker died)."""
        self.executor().record_failure(job, msg, device)

    # ---------------------------------------------------------------- all jobs
    def _lock(self):
        """An exclusive lock on OUT/<suite>/.lock for the whole run; the OS drops it if the process dies."""
        import fcntl

        self.suite_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.suite_dir / ".lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            from bench.errors import BenchError

            raise BenchError(f"{self.suite_dir}: {holder} is writing these results; wait for it to finish, or pass another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"bench run {self.run_id} (pid {os.getpid()})")
        f.flush()
        return f

    def run(
        self, device: str = "auto", workers: int = 1, gpus: Optional[str] = None, boot: Optional[dict] = None, launcher: Optional[str] = None, slurm=None
    ) -> RunSummary:
        """Run the plan in this process, or on a pool of `workers` CPU processes / one process per GPU in `gpus`.

        Under torchrun every rank calls this; rank 0 holds the lock and writes, the others compute their shards.
        """
        from bench.dist import broadcast, world

        rank, size = world()
        boot = {**(boot or {}), "jobs": {j.job_hash: [j.model.name, j.task.name] for j in self.plan.jobs}}
        if size > 1:
            self.run_id = broadcast(self.run_id)
            self.writer = rank == 0
        lock = self._lock() if self.writer else None
        try:
            if launcher:
                return self._run_cluster(launcher, slurm, device, boot)
            if workers > 1 or gpus:
                return self._run_pool(workers, gpus, boot)
            return self._run(device)
        finally:
            if lock is not None:
                lock.close()  # closing the descriptor releases the flock

    def _todo(self) -> tuple[list, list]:
        from bench.dist import broadcast

        done = broadcast({j.job_hash for j in self.plan.jobs if not self.force and self.existing_rows(j)})  # rank 0 decides
        outcomes = [JobOutcome(j, "skipped") for j in self.plan.jobs if j.job_hash in done]
        return outcomes, [j for j in self.plan.jobs if j.job_hash not in done]

    def _run_pool(self, workers: int, gpus: Optional[str], boot: dict) -> RunSummary:
        from bench.pool import run_pool, worker_specs

        specs = worker_specs(workers, gpus)
        where = lambda wid: specs[wid % len(specs)].env.get("CUDA_VISIBLE_DEVICES") or "cpu"  # noqa: E731
        return self._run_elsewhere(
            specs[0].device,
            f"on {len(specs)} workers",
            where,
            lambda todo, ev: run_pool(self, todo, specs, {**boot, "run_id": self.run_id, "out": str(self.suite_dir.parent)}, ev),
        )

    def _run_cluster(self, launcher: str, slurm, device: str, boot: dict) -> RunSummary:
        from bench.launch import launch
        from bench.suite import SlurmConfig

        cfg = slurm if isinstance(slurm, SlurmConfig) else SlurmConfig.model_validate(slurm or {})
        return self._run_elsewhere(device, f"through submitit ({launcher})", None, lambda todo, ev: launch(self, todo, boot, launcher, cfg, device, ev))

    def _run_elsewhere(self, device: str, how: str, where, execute) -> RunSummary:
        """Jobs run in other processes (a pool, a cluster); this one shows progress and writes run.json."""
        outcomes, todo = self._todo()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_run_json(device, outcomes, todo)
        with Progress(*COLUMNS, console=self.console, transient=False) as progress:
            jobs_bar = progress.add_task(f"[bold]{self.suite.name}[/] jobs {how}", total=len(todo))
            lines: dict = {}

            def on_event(kind, wid, job, outcome):
                if kind == "start":
                    if wid is None:
                        return
                    if wid not in lines:
                        lines[wid] = progress.add_task("", total=None)
                    progress.update(lines[wid], description=f"  worker {wid} ({where(wid)}): {job.key}")
                elif kind == "retry":
                    progress.console.print(f"[yellow]retry[/] {job.key}: {outcome}")
                else:
                    path = self.run_dir / "rows" / f"{job.job_hash}.parquet"
                    if outcome.status == "ok" and path.exists():  # for the summary table
                        recs = pd.read_parquet(path).to_dict("records")
                        outcome.rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in recs]
                        outcome.wall_s = outcome.wall_s or float(outcome.rows[0].get("wall_s") or 0.0)
                    outcomes.append(outcome)
                    if outcome.status == "failed":
                        progress.console.print(f"[red]FAILED[/] {job.key}: {escape(outcome.error or '')}")
                    if wid in lines:
                        progress.update(lines[wid], description=f"  worker {wid}: idle")
                    progress.advance(jobs_bar)
                    self._write_run_json(device, outcomes, [])

            execute(todo, on_event)
            for t in lines.values():
                progress.remove_task(t)
        self._write_leaderboard()
        return RunSummary(self.run_dir, outcomes)

    def _write_leaderboard(self) -> None:
        if not self.writer:
            return
        try:
            write_frame(self.suite_dir / "leaderboard.parquet", load_rows([self.suite_dir]))
        except Exception as e:  # the rows are safe; only the convenience union failed
            self.console.print(f"[yellow]warning[/]: could not write {self.suite_dir / 'leaderboard.parquet'}: {one_line(e)}")

    def _run(self, device: str) -> RunSummary:
        device = prepare_process(self.plan.jobs, device)
        outcomes, todo = self._todo()
        if self.writer:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_run_json(device, outcomes, todo)
        # group by model so each model is built once
        order = {m.name: i for i, m in enumerate(self.suite.models)}
        todo.sort(key=lambda j: order[j.model.name])
        executor = self.executor()
        with Progress(*COLUMNS, console=self.console, transient=False) as progress:
            jobs_bar = progress.add_task(f"[bold]{self.suite.name}[/] jobs", total=len(todo))
            for job in todo:
                progress.update(jobs_bar, description=f"[bold]{self.suite.name}[/] {job.key}")
                outcome = executor.run(job, device, progress)
                outcomes.append(outcome)
                if outcome.status == "failed":
                    progress.console.print(f"[red]FAILED[/] {job.key}: {escape(outcome.error or '')}")
                progress.advance(jobs_bar)
                self._write_run_json(device, outcomes, [])
            progress.update(jobs_bar, description=f"[bold]{self.suite.name}[/] done")
        executor.release()
        self._write_leaderboard()
        return RunSummary(self.run_dir, outcomes)

    def _write_run_json(self, device: str, outcomes: list[JobOutcome], pending: list[Job]) -> None:
        if not self.writer:
            return
        status = {o.job.job_hash: {"model": o.job.model.name, "task": o.job.task.name, "status": o.status, "error": o.error or None} for o in outcomes}
        status.update({j.job_hash: {"model": j.model.name, "task": j.task.name, "status": "pending"} for j in pending})
        write_json(
            self.run_dir / "run.json",
            {
                "run_id": self.run_id,
                "argv": self.argv,
                "suite_file": str(self.suite.path),
                "suite": {
                    "name": self.suite.name,
                    "defaults": self.suite.defaults.model_dump(),
                    "settings": self.plan.jobs[0].settings.model_dump() if self.plan.jobs else None,
                    "models": [m.model_dump() for m in self.suite.models],
                    "tasks": [t.model_dump() for t in self.suite.tasks],
                    "check": self.suite.check.model_dump(),
                    "plugins": self.suite.plugins,  # bench compare/check import them to know their families
                    "python_path": self.suite.python_path,
                },
                "environment": {**environment(), "device": device, "python": sys.version.split()[0]},
                "jobs": status,
            },
        )
