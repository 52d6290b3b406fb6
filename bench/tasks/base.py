"""The task protocol: one class per benchmark family, in the spirit of detectron2's evaluators.

A task reads its dataset, asks the broker for model outputs by capability, writes
per-sample predictions and turns them into result rows through bench.metrics. It never
chooses devices, batch sizes or caching: the executor's ``TaskContext`` owns those.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from bench.registry import Registry

if TYPE_CHECKING:
    import pyarrow as pa


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    name: str = Field(pattern=r"^[A-Za-z0-9_.@+-]+$")
    type: str
    models: Optional[list[str]] = None  # run only these models (must fit)


@dataclass
class TaskContext:
    """What the executor lends a task: sampling settings, the job's device and a way to get outputs."""

    seed: int = 0
    limit: Optional[int] = None
    # outputs(capability, inputs, **args): the job's model's outputs, batched, cached, sharded and
    # shown by the broker; the inputs' kind is the capability's (bench.capabilities). Tasks never call
    # an adapter method themselves.
    outputs: Callable[..., Any] = None
    # bench.metrics.uncertainty.Spec: how rows get stderr and CIs; None when the suite turns them off
    uncertainty: Any = None
    # where the job's model runs: heavy scoring of its outputs may run there too (never chosen by the task)
    device: str = "cpu"


@dataclass
class TaskResult:
    rows: list[dict]  # metric, value, dataset, split, n, and optionally stderr/ci/convention/extra
    predictions: pd.DataFrame | pa.Table  # a table where columns are built typed (detection's list<double> boxes)
    meta: dict = field(default_factory=dict)  # protocol choices worth recording (e.g. chosen C)


class Task:
    """A task family. Subclasses declare what the rest of bench needs to know about them:

    type, Config and description; `needs`, every capability it may ask for; `headline`, the
    metric (a glob) that stands for the family in cross-task rankings and summaries, read from the
    `headline_datasets` rows when given (OOD: the near and far means); `lower_is_better`, globs of
    metrics where smaller is better; `cost`, a relative weight for scheduling when no earlier run
    recorded a wall time; `per_category`, a glob of per-category metrics that tables fold away;
    `exporter`, an optional (name, "module:function") behind `bench export NAME`.
    """

    type: ClassVar[str]
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    description: ClassVar[str] = ""
    needs: ClassVar[frozenset] = frozenset()
    headline: ClassVar[tuple] = ()  # globs, the first the rows have wins
    headline_datasets: ClassVar[tuple] = ()
    lower_is_better: ClassVar[tuple] = ()
    cost: ClassVar[float] = 2.0
    per_category: ClassVar[str] = ""
    unscaled: ClassVar[tuple] = ()  # metric globs that are not fractions (a median rank): tables print them as they are
    exporter: ClassVar[Optional[tuple]] = None

    @classmethod
    def required_capabilities(cls, cfg: TaskConfig) -> "frozenset[str] | tuple[frozenset[str], ...]":
        """What this config needs; a tuple means any one of these sets (a model or a results file)."""
        raise NotImplementedError

    def __init__(self, cfg: TaskConfig, ctx: TaskContext):
        self.cfg = cfg
        self.ctx = ctx

    def evaluate(self, adapter) -> TaskResult:
        raise NotImplementedError


TASKS: Registry[type[Task]] = Registry("task type")


def register_task(cls: type[Task]) -> type[Task]:
    """Register a family, checking its declarations: a description, a headline, known capabilities."""
    from bench.capabilities import CAPABILITIES

    problems = [f"needs unknown capability '{c}'" for c in sorted(cls.needs) if c not in CAPABILITIES]
    if not cls.description or not cls.headline:
        problems.append("declares no description or headline metric")
    if problems:
        raise TypeError(f"task family '{getattr(cls, 'type', cls.__name__)}': " + "; ".join(problems))
    return TASKS.register(cls.type)(cls)


def family_of(task_type) -> "type[Task] | None":
    return TASKS.get(task_type) if isinstance(task_type, str) and task_type in TASKS else None


def lower_is_better(metric: str, task_type=None) -> bool:
    """By the row's family where it is known, else by any registered family's declaration."""
    fam = family_of(task_type)
    fams = [fam] if fam else [TASKS.get(n) for n in TASKS.list()]
    return any(fnmatch.fnmatch(metric, p) for f in fams for p in f.lower_is_better)


def is_per_category(metric: str, task_type=None) -> bool:
    fam = family_of(task_type)
    fams = [fam] if fam else [TASKS.get(n) for n in TASKS.list()]
    return any(f.per_category and fnmatch.fnmatch(metric, f.per_category) for f in fams)


def display_scale(metric: str, task_type=None) -> float:
    """100 for fractions (tables print percentages), 1 for a family's `unscaled` metrics."""
    fam = family_of(task_type)
    fams = [fam] if fam else [TASKS.get(n) for n in TASKS.list()]
    return 1.0 if any(fnmatch.fnmatch(metric, p) for f in fams for p in f.unscaled) else 100.0


def list_tasks(pattern: str = "*") -> list[str]:
    return TASKS.list(pattern)
