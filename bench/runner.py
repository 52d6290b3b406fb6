"""Run jobs: pick the device, stream batches through adapters, write rows atomically, resume.

The runner owns devices, batching, caching of outputs within a run, and progress. Tasks
ask it for outputs by capability (``TaskContext.image_outputs``) and return rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench.cache import OutputCache
from bench.errors import one_line
from bench.metrics.uncertainty import Spec
from bench.jobs import PROTOCOL_VERSION, Job, Plan, short_hash
from bench.results import environment, job_rows_ok, machine, load_rows, write_frame, write_json, write_rows
from bench.suite import Suite

AUTO_BATCH = {"cpu": 64, "cuda": 256}
AUTO_DET_BATCH = {"cpu": 2, "cuda": 8}  # full-size images through a detector
PAIR = frozenset({"image_features", "image_logits"})


def blas_threads():
    """numpy/scikit-learn BLAS on BENCH_BLAS_THREADS threads (default 1) while a task runs.

    Fits and similarity matmuls then sum in one order on every machine and in every pool worker
    (lbfgs is also several times faster on one thread than on two here); torch is not affected.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(os.environ.get("BENCH_BLAS_THREADS", "1")), user_api="blas")


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


@dataclass
class RunSummary:
    run_dir: Path
    outcomes: list[JobOutcome]

    @property
    def failed(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def is_oom(e: BaseException) -> bool:
    import torch

    text = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


class BatchSizes:
    """Batch sizes that fit, remembered per (model, device type, precision, input size, capability)
    in $BENCH_CACHE/batch_sizes.json, so `batch_size: auto` starts from what worked last time."""

    def __init__(self, path: Optional[Path] = None):
        from bench.data.images import cache_dir

        self.path = Path(path) if path else cache_dir() / "batch_sizes.json"

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def get(self, key: str, default: int) -> int:
        return int(self._read().get(key, default))

    def put(self, key: str, value: int) -> None:
        data = self._read()
        if data.get(key) != value:
            data[key] = value
            write_json(self.path, data)


def _as_lists(batch):
    """Detection batches stay lists: images keep their own sizes."""
    return [b[0] for b in batch], [b[1] for b in batch]


class Runner:
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
        self.batch_sizes = BatchSizes()
        self.suite_dir = Path(out) / suite.name
        # sorts by start time to the microsecond; the random tail keeps concurrent runs apart
        self.run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S.%f}-{secrets.token_hex(2)}"
        self.run_dir = self.suite_dir / self.run_id
        self.console = console or Console(stderr=True)
        self.argv = argv if argv is not None else sys.argv
        self.writer = True  # False on torch.distributed ranks other than 0
        self._adapter = None
        self._adapter_key = None
        self._memo: dict = {}
        self._progress: Optional[Progress] = None

    # ---------------------------------------------------------------- resume
    def existing_rows(self, job: Job) -> Optional[Path]:
        for p in sorted(self.suite_dir.glob(f"*/rows/{job.job_hash}.parquet")):
            if job_rows_ok(p):
                return p
        return None

    # ---------------------------------------------------------------- outputs
    def _get_adapter(self, job: Job, device: str):
        from adapters import create_adapter

        key = short_hash({"m": job.model.model_dump(), "d": device, "p": job.settings.precision, "s": job.settings.seed})
        if key != self._adapter_key:
            self._adapter, self._adapter_key, self._memo = None, None, {}
            self._adapter = create_adapter(job.model, device=device, precision=job.settings.precision, seed=job.settings.seed)
            self._adapter_key = key
        return self._adapter

    def _output_key(self, adapter, split, capability: str, kwargs: dict, inputs=None) -> str:
        from bench.results import environment

        env = environment()
        return short_hash(
            {
                "model": self.job.model.model_dump(),
                "sha": adapter.checkpoint_sha256,
                "seed": self.job.settings.seed,
                "precision": adapter.precision,
                "pre": adapter.preprocess.as_dict(),
                "cap": capability,
                "kw": kwargs,
                "inputs": split.paths if inputs is None else inputs,
                "lib": [env["torch"], env["timm"], env["open_clip"]],
                "v": PROTOCOL_VERSION,
            }
        )

    def image_outputs(self, adapter, split, capability: str, **kwargs) -> np.ndarray:
        """Batched outputs for a split, computed once per (model, inputs, preprocess, capability, kwargs).

        Kept in memory for the run and on disk in the output cache across runs, whole and in blocks
        of BLOCK items (so a killed run resumes mid-split, and torch.distributed ranks each compute
        their blocks). Features and logits come from one forward pass when the adapter gives both.
        """
        import torch

        from bench.data.images import ImageDataset, eval_transform
        from bench.dist import BLOCK, all_gather, world

        key = self._output_key(adapter, split, capability, kwargs)
        if key in self._memo:
            return self._memo[key]
        cached = self.cache.get(key)
        if cached is not None:
            self._memo[key] = cached
            return cached
        both = capability in PAIR and PAIR <= adapter.capabilities and hasattr(adapter, "features_and_logits")
        caps = ("image_features", "image_logits") if both else (capability,)
        keys = [self._output_key(adapter, split, c, kwargs) for c in caps]
        fn = adapter.features_and_logits if both else getattr(adapter, capability)
        pre = adapter.preprocess
        from bench import inputs

        ds = inputs.open_cached(split.paths, pre)  # decoded once by an earlier model with this preprocessing
        rank, size = world()
        builder = None
        if ds is None:
            ds = ImageDataset(split, eval_transform(pre.input_size, pre.crop_pct, pre.interpolation))
            if inputs.enabled() and size == 1 and pre.crop_pct <= 1.0:
                builder = inputs.Builder(split.paths, pre)
        bar = self._progress.add_task(f"  {split.name} · {'features+logits' if both else capability}", total=len(ds)) if self._progress else None
        n_blocks = -(-len(ds) // BLOCK)
        mine, error = {}, None
        t0 = time.perf_counter()
        try:
            for b in range(rank, n_blocks, size):
                bkeys = [short_hash({"k": k, "block": b, "size": BLOCK}) for k in keys]
                got = [self.cache.get(k) for k in bkeys]
                if any(g is None for g in got):
                    got = self._forward(adapter, fn, ds, b * BLOCK, min(len(ds), (b + 1) * BLOCK), both, kwargs, bar, capability, builder)
                    for k, g in zip(bkeys, got):
                        self.cache.put(k, g)
                elif bar is not None:
                    self._progress.advance(bar, min(len(ds), (b + 1) * BLOCK) - b * BLOCK)
                mine[b] = got
        except Exception as e:
            if builder is not None:
                builder.finish()  # incomplete: discarded
            if size == 1:
                raise
            error = one_line(e)  # every rank still reaches the gather, so none waits for a dead peer
        else:
            if builder is not None:
                builder.finish()  # published only if every item was decoded in this pass
        gathered = all_gather((error, mine))
        errors = [e for e, _ in gathered if e]
        if errors:
            from bench.errors import OutputError

            raise OutputError(errors[0])
        blocks = {b: g for _, m in gathered for b, g in m.items()}
        if adapter.device.type == "cuda":
            torch.cuda.synchronize()
        self.forward_s += time.perf_counter() - t0
        if bar is not None:
            self._progress.remove_task(bar)
        results = {}
        for i, k in enumerate(keys):
            parts = [blocks[b][i] for b in range(n_blocks)]
            results[k] = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
            self._memo[k] = results[k]
            if rank == 0:
                self.cache.put(k, results[k])
        return results[key]

    def _forward(self, adapter, fn, ds, lo: int, hi: int, both: bool, kwargs: dict, bar, capability: str, builder=None) -> list[np.ndarray]:
        """Outputs for items lo..hi; an out-of-memory error halves the batch and continues where it stopped."""
        import torch
        from torch.utils.data import DataLoader, Subset

        s = self.job.settings
        pre = adapter.preprocess
        remember = short_hash({"m": self.job.model.model_dump(), "d": adapter.device.type, "p": adapter.precision, "size": pre.input_size, "cap": capability})
        bs = s.batch_size if s.batch_size != "auto" else self.batch_sizes.get(remember, AUTO_BATCH[adapter.device.type])
        chunks = []
        done = lo
        while done < hi:
            loader = DataLoader(Subset(ds, range(done, hi)), batch_size=bs, num_workers=s.num_workers, pin_memory=adapter.device.type == "cuda", shuffle=False)
            try:
                for images, _ in loader:
                    if builder is not None:
                        builder.write(done, images)
                    out = fn(images, **kwargs)
                    chunks.append(tuple(o.cpu().numpy() for o in out) if both else (out.cpu().numpy(),))
                    done += len(images)
                    if bar is not None:
                        self._progress.advance(bar, len(images))
            except Exception as e:  # out of memory: halve the batch and go on from where it stopped
                if not is_oom(e) or bs == 1:
                    raise
                bs = max(1, bs // 2)
                if adapter.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.console.print(f"[yellow]out of memory[/]: {self.job.key}: retrying from item {done} with batch size {bs}")
        self.batch_used = bs
        if s.batch_size == "auto":
            self.batch_sizes.put(remember, bs)
        self.samples += hi - lo
        return [np.concatenate([c[i] for c in chunks]) for i in range(2 if both else 1)]

    def detections(self, adapter, split, image_ids: list, **kwargs) -> list[dict]:
        """Per-image detections (JSON-ready lists) for the given images of a DetectionSplit, cached like image_outputs."""
        from torch.utils.data import DataLoader
        from torchvision.transforms import PILToTensor

        from bench.data.images import ImageDataset, ImageSplit

        key = self._output_key(adapter, split, "detections", kwargs, inputs=[split.annotations, split.image_root, list(image_ids)])
        if key in self._memo:
            return self._memo[key]
        cached = self.cache.get_json(key)
        if cached is not None:
            self._memo[key] = cached
            return cached
        s = self.job.settings
        bs = self.batch_used = s.batch_size if s.batch_size != "auto" else AUTO_DET_BATCH[adapter.device.type]
        paths = [split.image_path(i) for i in image_ids]
        ds = ImageDataset(ImageSplit(split.name, paths, np.zeros(len(paths), np.int64), [], []), PILToTensor())
        loader = DataLoader(ds, batch_size=bs, num_workers=s.num_workers, shuffle=False, collate_fn=_as_lists)
        bar = self._progress.add_task(f"  {split.name} · detections", total=len(ds)) if self._progress else None
        out: list = [None] * len(ds)
        t0 = time.perf_counter()
        for images, idx in loader:
            for i, d in zip(idx, adapter.detections(images, [image_ids[i] for i in idx], **kwargs)):
                out[i] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}
            if bar is not None:
                self._progress.advance(bar, len(images))
        self.forward_s += time.perf_counter() - t0
        self.samples += len(ds)
        if bar is not None:
            self._progress.remove_task(bar)
        self._memo[key] = out
        self.cache.put_json(key, out)
        return out

    # ---------------------------------------------------------------- one job
    def run_job(self, job: Job, device: str) -> JobOutcome:
        from bench.tasks import TASKS, TaskContext

        self.job, self.samples, self.forward_s, self.batch_used = job, 0, 0.0, None
        t0 = time.perf_counter()
        s = job.settings
        base = self._base_row(job, device)
        try:
            adapter = self._get_adapter(job, device)
            ctx = TaskContext(
                seed=s.seed, limit=s.limit, image_outputs=self.image_outputs, detections=self.detections, uncertainty=Spec.of(self.suite.uncertainty)
            )
            with blas_threads():
                result = TASKS.get(job.task.type)(job.task, ctx).evaluate(adapter)
            wall = time.perf_counter() - t0
            meta = json.dumps({**adapter.metadata(), **result.meta}, default=str, sort_keys=True)
            sps = self.samples / self.forward_s if self.forward_s > 0 else None
            rows = [
                {
                    **base,
                    "status": "ok",
                    **r,
                    "batch_size": self.batch_used or base["batch_size"],  # what the forward passes used (detectors: fewer images)
                    "checkpoint_sha256": adapter.checkpoint_sha256,
                    "wall_s": wall,
                    "samples_per_s": sps,
                    "meta": meta,
                }
                for r in result.rows
            ]
            if self.writer and not result.predictions.empty:
                write_frame(self.run_dir / "predictions" / f"{job.job_hash}.parquet", result.predictions)
            if self.writer:
                write_rows(self.run_dir / "rows" / f"{job.job_hash}.parquet", rows)
            for w in result.meta.get("warnings", []):  # counted, never silent: e.g. missing predictions
                self.console.print(f"[yellow]warning[/] {job.key}: {w}")
            return JobOutcome(job, "ok", rows=rows, wall_s=wall)
        except Exception as e:  # any failure fails this job only
            msg = one_line(e)
            wall = time.perf_counter() - t0
            row = {**base, "status": "failed", "error": msg, "wall_s": wall}
            if self.writer:
                write_rows(self.run_dir / "rows" / f"{job.job_hash}.parquet", [row])
            return JobOutcome(job, "failed", error=msg, wall_s=wall)

    def _base_row(self, job: Job, device: str) -> dict:
        """The provenance every row of a job carries."""
        s = job.settings
        return {
            "suite": self.suite.name,
            "model": job.model.name,
            "task": job.task.name,
            "run_id": self.run_id,
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
        write_rows(self.run_dir / "rows" / f"{job.job_hash}.parquet", [{**self._base_row(job, device), "status": "failed", "error": msg}])

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
        if size > 1:
            self.run_id = broadcast(self.run_id)
            self.run_dir = self.suite_dir / self.run_id
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
        from bench.launch import SlurmConfig, launch

        cfg = slurm if isinstance(slurm, SlurmConfig) else SlurmConfig.model_validate(slurm or {})
        return self._run_elsewhere(device, f"through submitit ({launcher})", None, lambda todo, ev: launch(self, todo, boot, launcher, cfg, device, ev))

    def _run_elsewhere(self, device: str, how: str, where, execute) -> RunSummary:
        """Jobs run in other processes (a pool, a cluster); this one shows progress and writes run.json."""
        outcomes, todo = self._todo()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_run_json(device, outcomes, todo)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
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
        device = resolve_device(device)
        outcomes, todo = self._todo()
        if self.writer:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_run_json(device, outcomes, todo)
        # group by model so each model is built once
        order = {m.name: i for i, m in enumerate(self.suite.models)}
        todo.sort(key=lambda j: order[j.model.name])
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            self._progress = progress
            jobs_bar = progress.add_task(f"[bold]{self.suite.name}[/] jobs", total=len(todo))
            for job in todo:
                progress.update(jobs_bar, description=f"[bold]{self.suite.name}[/] {job.key}")
                outcome = self.run_job(job, device)
                outcomes.append(outcome)
                if outcome.status == "failed":
                    progress.console.print(f"[red]FAILED[/] {job.key}: {escape(outcome.error or '')}")
                progress.advance(jobs_bar)
                self._write_run_json(device, outcomes, [])
            progress.update(jobs_bar, description=f"[bold]{self.suite.name}[/] done")
        self._progress = None
        self._adapter, self._memo = None, {}
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
                },
                "environment": {**environment(), "device": device, "python": sys.version.split()[0]},
                "jobs": status,
            },
        )
