"""Multi-node runs through submitit: each job of the suite becomes one Slurm job.

`bench run SUITE --launcher slurm` submits every job that is not done yet with the partition,
time, GPUs and CPUs from the suite's `slurm:` block or the flags, waits, and shows one progress
view. A job runs an Executor on its node and writes its rows atomically into the shared
results folder. Pre-empted or timed-out jobs are requeued by submitit (checkpointing resubmits the
same job); a job that fails or dies is resubmitted once, then recorded as failed.
`--launcher local` runs the same path with submitit's local executor (tests, a workstation).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.suite import SlurmConfig


class BenchJob:
    """One suite job, runnable on a cluster node; requeued as-is on pre-emption."""

    def __init__(self, boot: dict, job_hash: str, run_id: str, device: str):
        self.boot, self.job_hash, self.run_id, self.device = boot, job_hash, run_id, device

    def __call__(self) -> tuple[str, str]:
        from rich.console import Console

        from bench.executor import executor_in_worker, resolve_device

        jobs, executor = executor_in_worker({**self.boot, "run_id": self.run_id}, Console(stderr=True, quiet=True))
        o = executor.run(jobs[self.job_hash], resolve_device(self.device))
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


def launch(scheduler, todo: list, boot: dict, cluster: str, cfg: SlurmConfig, device: str, on_event) -> list:
    """Submit, wait, resubmit failures once; returns JobOutcomes."""
    from bench.executor import JobOutcome

    ex = executor(scheduler.suite_dir / "submitit" / scheduler.run_id, cluster, cfg)
    boot = {**boot, "out": str(scheduler.suite_dir.parent)}
    live = {}
    for job in todo:
        live[job.job_hash] = (job, ex.submit(BenchJob(boot, job.job_hash, scheduler.run_id, device)), 0)
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
                    live[h] = (job, ex.submit(BenchJob(boot, h, scheduler.run_id, device)), 1)
                    continue
                msg = f"cluster job {sj.job_id} failed twice: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
                scheduler.record_failure(job, msg, device)
                outcome = JobOutcome(job, "failed", error=msg)
            del live[h]
            outcomes.append(outcome)
            on_event("done", None, job, outcome)
        time.sleep(0.5)
    return outcomes
