"""The executor: runs one job and returns its rows.

It builds the job's adapter (or reuses the previous job's, for the same model on the same
device), lends the task a TaskContext backed by the broker, and turns the task's result into
rows with provenance, written atomically. A failure of any kind fails this job only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bench.broker import AUTO_BATCH, Broker, JobState
from bench.cache import OutputCache
from bench.errors import one_line
from bench.hashing import short_hash
from bench.jobs import Job
from bench.metrics.uncertainty import Spec
from bench.results import environment, machine, write_frame, write_rows


def blas_threads():
    """numpy/scikit-learn BLAS on BENCH_BLAS_THREADS threads (default 1) while a task runs.

    Fits and similarity matmuls then sum in one order on every machine and in every pool worker
    (lbfgs is also several times faster on one thread than on two here); torch is not affected.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(os.environ.get("BENCH_BLAS_THREADS", "1")), user_api="blas")


def set_process_threads(threads: int) -> None:
    """torch intra-op and OpenMP threads for this process, as the pool sets them per worker.

    BLAS stays at blas_threads() while tasks run. Set once, before the first job, so every job
    of an in-process run uses the same thread counts whatever ran before it in the process.
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="openmp")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from bench.errors import BenchError

        raise BenchError(f"device '{device}' was asked for but CUDA is not available")
    return device


@dataclass
class JobOutcome:
    job: Job
    status: str  # ok | failed | skipped (rows already exist)
    error: str = ""
    rows: list = field(default_factory=list)
    wall_s: float = 0.0


class Executor:
    """Runs jobs of one suite; `run_dir` is where their rows and predictions go."""

    def __init__(self, suite, run_dir: Path, cache: Optional[OutputCache] = None, console=None, writer: bool = True):
        self.suite, self.run_dir, self.console, self.writer = suite, Path(run_dir), console, writer
        self.broker = Broker(cache, console)
        self._adapter = self._adapter_key = None
        self._memo: dict = {}  # outputs of the current adapter, shared by its jobs

    def adapter_for(self, job: Job, device: str):
        from adapters import create_adapter

        key = short_hash({"m": job.model.model_dump(), "d": device, "p": job.settings.precision, "s": job.settings.seed})
        if key != self._adapter_key:
            self._adapter, self._adapter_key, self._memo = None, None, {}
            self._adapter = create_adapter(job.model, device=device, precision=job.settings.precision, seed=job.settings.seed)
            self._adapter_key = key
        return self._adapter

    def release(self) -> None:
        self._adapter = self._adapter_key = None
        self._memo = {}

    def context(self, st: JobState, adapter):
        from bench.tasks import TaskContext

        s = st.job.settings
        return TaskContext(
            seed=s.seed,
            limit=s.limit,
            outputs=lambda capability, inputs=None, **k: self.broker.outputs(st, adapter, capability, inputs, **k),
            uncertainty=Spec.of(self.suite.uncertainty),
            device=str(adapter.device),
        )

    def run(self, job: Job, device: str, progress=None) -> JobOutcome:
        from bench.tasks import TASKS

        t0 = time.perf_counter()
        base = self.base_row(job, device)
        try:
            adapter = self.adapter_for(job, device)
            st = JobState(job, progress=progress, memo=self._memo)
            with blas_threads():
                result = TASKS.get(job.task.type)(job.task, self.context(st, adapter)).evaluate(adapter)
            wall = time.perf_counter() - t0
            meta = json.dumps({**adapter.metadata(), **result.meta}, default=str, sort_keys=True)
            extra = {
                "batch_size": st.batch_used or base["batch_size"],  # what the forward passes used (detectors: fewer images)
                "checkpoint_sha256": adapter.checkpoint_sha256,
                "wall_s": wall,
                "samples_per_s": st.samples / st.forward_s if st.forward_s > 0 else None,
                "meta": meta,
            }
            rows = [{**base, "status": "ok", **r, **extra} for r in result.rows]
            if self.writer and len(result.predictions):
                write_frame(self.run_dir / "predictions" / f"{job.job_hash}.parquet", result.predictions)
            if self.writer:
                write_rows(self.run_dir / "rows" / f"{job.job_hash}.parquet", rows)
            for w in result.meta.get("warnings", []):  # counted, never silent: e.g. missing predictions
                if self.console is not None:
                    self.console.print(f"[yellow]warning[/] {job.key}: {w}")
            return JobOutcome(job, "ok", rows=rows, wall_s=wall)
        except Exception as e:  # any failure fails this job only
            msg = one_line(e)
            wall = time.perf_counter() - t0
            if self.writer:
                write_rows(self.run_dir / "rows" / f"{job.job_hash}.parquet", [{**base, "status": "failed", "error": msg, "wall_s": wall}])
            return JobOutcome(job, "failed", error=msg, wall_s=wall)

    def base_row(self, job: Job, device: str) -> dict:
        """The provenance every row of a job carries."""
        s = job.settings
        return {
            "suite": self.suite.name,
            "model": job.model.name,
            "task": job.task.name,
            "task_type": job.task.type,
            "run_id": self.run_dir.name,
            "job_hash": job.job_hash,
            "task_hash": job.task_hash,
            "device": device,
            "precision": s.precision,
            "batch_size": s.batch_size if s.batch_size != "auto" else AUTO_BATCH[device.split(":")[0]],
            "seed": s.seed,
            "started_at": dt.datetime.now(dt.timezone.utc),
            **environment(),
            **machine(device),
        }

    def record_failure(self, job: Job, msg: str, device: str) -> None:
        """A failed row for a job whose process could not write one (its worker died)."""
        write_rows(self.run_dir / "rows" / f"{job.job_hash}.parquet", [{**self.base_row(job, device), "status": "failed", "error": msg}])


def executor_in_worker(boot: dict, console=None) -> tuple[dict, Executor]:
    """In a pool worker or a cluster job: the suite's jobs by the parent's hash, and an executor writing into the run.

    Jobs are found by (model, task) and keep the parent's hash, so rows land under the key the
    parent resumes by even if a file the job names changed after the parent hashed it.
    """
    from dataclasses import replace

    from bench.jobs import expand
    from bench.suite import Defaults, load_suite

    suite = load_suite(boot["suite"])
    plan = expand(suite, Defaults.model_validate(boot["settings"]))
    by_key = {(j.model.name, j.task.name): j for j in plan.jobs}
    jobs = {h: replace(by_key[tuple(key)], job_hash=h) for h, key in boot["jobs"].items() if tuple(key) in by_key}
    run_dir = Path(boot["out"]) / suite.name / boot["run_id"]
    return jobs, Executor(suite, run_dir, OutputCache(enabled=boot["cache"]), console)


def task_context(adapter, seed: int = 0, limit=None, uncertainty=None, batch_size="auto"):
    """A TaskContext for running one task on one adapter outside a suite (tests, notebooks)."""
    from types import SimpleNamespace

    from bench.suite import Defaults

    settings = Defaults(seed=seed, limit=limit, batch_size=batch_size, num_workers=0)
    job = SimpleNamespace(model=adapter.args, settings=settings, key=f"{adapter.args.name} × (direct)")
    st = JobState(job)
    broker = Broker(OutputCache(enabled=False))
    from bench.tasks import TaskContext

    return TaskContext(
        seed=seed,
        limit=limit,
        outputs=lambda cap, inputs=None, **k: broker.outputs(st, adapter, cap, inputs, **k),
        uncertainty=uncertainty,
        device=str(adapter.device),
    )
