"""Multi-node runs through submitit: each job of the suite becomes one Slurm job.

`bench run SUITE --launcher slurm` submits every job that is not done yet with the partition,
time, GPUs and CPUs from the suite's `slurm:` block or the flags, waits, and shows one progress
view. A job runs the ordinary Runner on its node and writes its rows atomically into the shared
results folder. Pre-empted or timed-out jobs are requeued by submitit (checkpointing resubmits the
same job); a job that fails or dies is resubmitted once, then recorded as failed.
`--launcher local` runs the same path with submitit's local executor (tests, a workstation).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class SlurmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partition: Optional[str] = None
    time_min: int = Field(240, gt=0)
    gpus_per_node: int = Field(1, ge=0)
    cpus_per_task: int = Field(8, gt=0)
    mem_gb: Optional[int] = Field(None, gt=0)
    account: Optional[str] = None
    qos: Optional[str] = None
    max_requeue: int = Field(3, ge=0)  # pre-emptions/timeouts requeued per job


class BenchJob:
    """One suite job, runnable on a cluster node; requeued as-is on pre-emption."""

    def __init__(self, boot: dict, job_hash: str, run_id: str, device: str):
        self.boot, self.job_hash, self.run_id, self.device = boot, job_hash, run_id, device

    def __call__(self) -> tuple[str, str]:
        from rich.console import Console

        from bench.cache import OutputCache
        from bench.jobs import expand
        from bench.runner import Runner, resolve_device
        from bench.suite import Defaults, load_suite

        suite = load_suite(self.boot["suite"])
        plan = expand(suite, Defaults.model_validate(self.boot["settings"]))
        job = next(j for j in plan.jobs if j.job_hash == self.job_hash)
        runner = Runner(suite, plan, self.boot["out"], force=True, console=Console(stderr=True, quiet=True), cache=OutputCache(enabled=self.boot["cache"]))
        runner.run_id = self.run_id
        runner.run_dir = runner.suite_dir / self.run_id
        o = runner.run_job(job, resolve_device(self.device))
        return o.status, o.error

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(BenchJob(self.boot, self.job_hash, self.run_id, self.device))


def executor(folder: Path, cluster: str, cfg: SlurmConfig):
    import submitit

    ex = submitit.AutoExecutor(folder=str(folder), cluster="local" if cluster == "local" else None)
    params = {"timeout_min": cfg.time_min, "gpus_per_node": cfg.gpus_per_node, "cpus_per_task": cfg.cpus_per_task, "name": "bench"}
    if cluster == "slurm":
        extra = {k: v for k, v in {"account": cfg.account, "qos": cfg.qos}.items() if v}
        params |= {"slurm_partition": cfg.partition, "slurm_max_num_timeout": cfg.max_requeue, "slurm_additional_parameters": extra}
        if cfg.mem_gb:
            params["mem_gb"] = cfg.mem_gb
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def launch(runner, todo: list, boot: dict, cluster: str, cfg: SlurmConfig, device: str, on_event) -> list:
    """Submit, wait, resubmit failures once; returns JobOutcomes."""
    from bench.runner import JobOutcome

    ex = executor(runner.suite_dir / "submitit" / runner.run_id, cluster, cfg)
    boot = {**boot, "out": str(runner.suite_dir.parent)}
    live = {}
    for job in todo:
        live[job.job_hash] = (job, ex.submit(BenchJob(boot, job.job_hash, runner.run_id, device)), 0)
        on_event("start", None, job, None)
    outcomes = []
    while live:
        for h, (job, sj, tries) in list(live.items()):
            if not sj.done():
                continue
            try:
                status, error = sj.result()
                outcome = JobOutcome(job, status, error=error)
            except Exception as e:  # the job itself crashed, was killed, or exhausted its requeues
                if tries == 0:
                    on_event("retry", None, job, f"cluster job {sj.job_id} failed ({type(e).__name__}); resubmitting once")
                    live[h] = (job, ex.submit(BenchJob(boot, h, runner.run_id, device)), 1)
                    continue
                msg = f"cluster job {sj.job_id} failed twice: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
                runner.record_failure(job, msg, device)
                outcome = JobOutcome(job, "failed", error=msg)
            del live[h]
            outcomes.append(outcome)
            on_event("done", None, job, outcome)
        time.sleep(0.5)
    return outcomes
