"""A pool of worker processes, one per device, that pulls jobs from the expanded suite.

`bench run --gpus 0,3,5` starts one worker per GPU, each pinned through CUDA_VISIBLE_DEVICES
before torch is imported; `--workers N` does the same on CPU, each worker with its share of the
cores. Workers ask the parent for the next job (largest first: by the wall time an earlier run
recorded, else by task family), run it with an Executor, and write its rows atomically
themselves. The parent shows one progress view and writes run.json. A worker that dies (OOM
killer, kill -9, a segfault in a kernel) fails only the job it held; that job is retried once on a
fresh worker, then recorded as failed. A worker prefers the next job of the model it already has
loaded, so that model's features and logits are computed once, in memory.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from dataclasses import dataclass
from typing import Optional



@dataclass
class WorkerSpec:
    env: dict  # e.g. {"CUDA_VISIBLE_DEVICES": "3"}
    device: str  # what the worker runs on: cpu or cuda
    threads: int  # torch intra-op threads


def worker_specs(workers: int, gpus: Optional[str]) -> list[WorkerSpec]:
    cores = os.cpu_count() or 1
    if gpus:
        ids = [g.strip() for g in gpus.split(",")] if "," in gpus or not gpus.isdigit() else [str(i) for i in range(int(gpus))]
        return [WorkerSpec({"CUDA_VISIBLE_DEVICES": i}, "cuda", max(1, cores // len(ids))) for i in ids]
    return [WorkerSpec({"CUDA_VISIBLE_DEVICES": ""}, "cpu", max(1, cores // workers)) for _ in range(workers)]


def _worker(wid: int, spec: WorkerSpec, boot: dict, inbox, outbox) -> None:
    # before torch/numpy are imported here: the device, and BLAS/OpenMP threads sized to this worker's
    # share of the cores (two workers each running 2-thread BLAS on 2 cores ran 3x slower)
    os.environ.update(spec.env)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(spec.threads)
    import torch
    from rich.console import Console

    from bench.executor import executor_in_worker

    torch.set_num_threads(spec.threads)
    jobs, executor = executor_in_worker(boot, Console(stderr=True, quiet=True))
    while True:
        outbox.put(("ready", wid, None))
        h = inbox.get()
        if h is None:
            return
        o = executor.run(jobs[h], spec.device)
        outbox.put(("done", wid, (h, o.status, o.error, o.wall_s)))


def job_cost(scheduler, job) -> float:
    """Wall seconds an earlier run of this job took, else a weight by task family."""
    import pandas as pd

    for p in sorted(scheduler.suite_dir.glob(f"*/rows/{job.job_hash}.parquet"), reverse=True):
        try:
            w = pd.read_parquet(p, columns=["wall_s"]).wall_s.dropna()
        except Exception:
            continue
        if len(w):
            return float(w.iloc[0])
    from bench.tasks import TASKS

    return float(TASKS.get(job.task.type).cost)  # the family's declared relative cost


def run_pool(scheduler, todo: list, specs: list[WorkerSpec], boot: dict, on_event) -> list:
    """Run `todo` on the workers; returns JobOutcomes. on_event(kind, worker, job, outcome) drives the progress view."""
    from bench.executor import JobOutcome

    ctx = mp.get_context("spawn")
    outbox = ctx.Queue()
    pending = sorted(todo, key=lambda j: -job_cost(scheduler, j))  # largest first
    by_hash = {j.job_hash: j for j in todo}
    tries: dict[str, int] = {}
    workers: dict[int, tuple] = {}  # wid -> (process, inbox, spec)
    holding: dict[int, Optional[str]] = {}
    last_model: dict[int, str] = {}
    outcomes: list = []
    next_id = 0

    def start(spec):
        nonlocal next_id
        inbox = ctx.Queue()
        p = ctx.Process(target=_worker, args=(next_id, spec, boot, inbox, outbox), daemon=False)
        p.start()
        workers[next_id] = (p, inbox, spec)
        holding[next_id] = None
        next_id += 1

    for spec in specs[: max(1, min(len(specs), len(todo)))]:
        start(spec)
    done = 0
    while done < len(todo):
        try:
            kind, wid, payload = outbox.get(timeout=0.5)
        except queue.Empty:
            for wid, (p, inbox, spec) in list(workers.items()):
                if p.is_alive():
                    continue
                h = holding.pop(wid, None)
                del workers[wid]
                if h is not None:  # it died holding a job: retry once on a fresh worker
                    job = by_hash[h]
                    tries[h] = tries.get(h, 0) + 1
                    if tries[h] <= 1:
                        on_event("retry", wid, job, f"worker died (exit code {p.exitcode}); retrying once")
                        pending.insert(0, job)
                    else:
                        msg = f"worker died (exit code {p.exitcode}) while running it, twice"
                        scheduler.record_failure(job, msg, spec.device)
                        outcomes.append(JobOutcome(job, "failed", error=msg))
                        on_event("done", wid, job, outcomes[-1])
                        done += 1
                if pending:
                    start(spec)
            continue
        if kind == "ready":
            if wid not in workers:
                continue
            if pending:
                # affinity: a worker keeps to the model it has loaded (and its cached outputs), largest job first
                mine = [i for i, j in enumerate(pending) if j.model.name == last_model.get(wid)]
                job = pending.pop(mine[0] if mine else 0)
                last_model[wid] = job.model.name
                holding[wid] = job.job_hash
                workers[wid][1].put(job.job_hash)
                on_event("start", wid, job, None)
            else:
                holding[wid] = None
                workers[wid][1].put(None)
        else:
            h, status, error, wall = payload
            holding[wid] = None
            o = JobOutcome(by_hash[h], status, error=error or "", wall_s=wall)
            outcomes.append(o)
            on_event("done", wid, by_hash[h], o)
            done += 1
    for wid, (p, inbox, spec) in workers.items():
        inbox.put(None)
    deadline = time.time() + 30
    for p, _, _ in workers.values():
        p.join(timeout=max(0.1, deadline - time.time()))
        if p.is_alive():
            p.terminate()
    return outcomes
