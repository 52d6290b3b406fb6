"""Expand a validated suite into jobs (model × task), checking capabilities first."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from bench.errors import SuiteError
from bench.filehash import content_of, folders_in, sha256_tree
from bench.hashing import short_hash
from bench.registry import did_you_mean
from bench.suite import Defaults, Suite

# Bump when a change alters numbers for an unchanged config, so old rows are not reused.
PROTOCOL_VERSION = 1


@dataclass
class Job:
    model: object  # adapter Args
    task: object  # task Config
    settings: Defaults
    job_hash: str  # resolved model + task + settings that change numbers
    task_hash: str  # the task as written, for comparability across machines

    @property
    def key(self) -> str:
        return f"{self.model.name} × {self.task.name}"


@dataclass
class Skipped:
    model: str
    task: str
    reason: str


@dataclass
class Plan:
    jobs: list[Job]
    skipped: list[Skipped]


def _in_matrix(suite: Suite, model: str, task: str) -> bool:
    m = suite.matrix
    if m is None:
        return True
    hit = lambda pairs: any(fnmatch.fnmatch(model, p.model) and fnmatch.fnmatch(task, p.task) for p in pairs)  # noqa: E731
    if m.include is not None and not hit(m.include):
        return False
    return not hit(m.exclude)


def missing_capabilities(need, caps: frozenset) -> frozenset:
    """What a model lacks for a task; `need` is one set, or a tuple of alternative sets (any one suffices)."""
    options = need if isinstance(need, tuple) else (need,)
    lacks = [frozenset(o) - caps for o in options]
    return frozenset() if any(not m for m in lacks) else min(lacks, key=len)


def need_text(need) -> str:
    options = need if isinstance(need, tuple) else (need,)
    return " or ".join(", ".join(sorted(o)) for o in options)


def expand(suite: Suite, settings: Defaults | None = None) -> Plan:
    """All runnable (model, task) pairs; raises SuiteError for pairs that cannot be honoured."""
    from adapters import ADAPTERS
    from bench.tasks import TASKS

    settings = settings or suite.defaults
    names = [m.name for m in suite.models]
    caps = {m.name: ADAPTERS.get(m.adapter).capabilities_for(m) for m in suite.models}
    problems, jobs, skipped = [], [], []
    for ti, task in enumerate(suite.tasks):
        need = TASKS.get(task.type).required_capabilities(task)
        explicit = task.models is not None
        for j, name in enumerate(task.models or []):
            if name not in caps:
                problems.append(f"{suite.where('tasks', ti, 'models', j)}: unknown model '{name}'{did_you_mean(name, names)}")
        runnable = 0
        for model in suite.models:
            if explicit and model.name not in task.models:
                continue
            missing = missing_capabilities(need, caps[model.name])
            serves = ADAPTERS.get(model.adapter).serves(model, task)
            if missing or serves is not True:
                if missing and isinstance(need, tuple):
                    reason = f"model offers none of {need_text(need).replace(' or ', ' | ')}"
                else:
                    reason = f"model lacks {', '.join(sorted(missing))}" if missing else serves
                if explicit:
                    problems.append(f"{suite.where('tasks', ti, 'models')}: model '{model.name}' cannot run task '{task.name}': {reason}")
                else:
                    skipped.append(Skipped(model.name, task.name, reason))
                continue
            if not _in_matrix(suite, model.name, task.name):
                skipped.append(Skipped(model.name, task.name, "excluded by matrix"))
                continue
            runnable += 1
            written = dict(suite.raw_tasks[ti])
            written.pop("models", None)
            numbers = {"precision": settings.precision, "limit": settings.limit, "seed": settings.seed, "v": PROTOCOL_VERSION}
            dumps = (model.model_dump(), task.model_dump(exclude={"models"}))
            # the bytes of every file the job reads (checkpoint, ingredients, predictions, annotations) and of
            # the model's folders (a results folder, a checkpoint folder): a file overwritten in place is a new
            # job; the uncertainty settings change the rows' CI columns
            content = {"files": content_of(*dumps), "uncertainty": suite.uncertainty.model_dump() if suite.uncertainty else None}
            folders = {d: sha256_tree([d]) for d in sorted(set(folders_in(dumps[0])))}
            if folders:  # only then, so the keys of jobs without model folders stay as they were
                content["folders"] = folders
            jobs.append(
                Job(
                    model=model,
                    task=task,
                    settings=settings,
                    job_hash=short_hash({"model": dumps[0], "task": dumps[1], **numbers, **content}),
                    task_hash=short_hash({"task": written, **numbers}),
                )
            )
        if runnable == 0 and not problems:
            why = "; ".join(f"{s.model}: {s.reason}" for s in skipped if s.task == task.name) or "no model selected"
            problems.append(f"{suite.where('tasks', ti)}: no model can run task '{task.name}' (needs {need_text(need)}; {why})")
    if problems:
        raise SuiteError(problems)
    return Plan(jobs, skipped)
