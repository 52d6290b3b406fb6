"""The task protocol: one class per benchmark family, in the spirit of detectron2's evaluators.

A task reads its dataset, asks the runner for adapter outputs by capability, writes
per-sample predictions and turns them into result rows through bench.metrics. It never
chooses devices, batch sizes or caching: the runner's ``TaskContext`` owns those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from bench.registry import Registry


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    name: str = Field(pattern=r"^[A-Za-z0-9_.@+-]+$")
    type: str
    models: Optional[list[str]] = None  # run only these models (must fit)


@dataclass
class TaskContext:
    """What the runner lends a task: sampling settings and a way to get outputs."""

    seed: int = 0
    limit: Optional[int] = None
    # (adapter, split, capability) -> numpy array [N, ...]; batched, cached and shown by the runner
    image_outputs: Callable[..., Any] = None
    # (adapter, DetectionSplit, image_ids, vocabulary=, novel=) -> per-image dicts of boxes/scores/labels[/masks]
    detections: Callable[..., Any] = None
    # bench.metrics.uncertainty.Spec: how rows get stderr and CIs; None when the suite turns them off
    uncertainty: Any = None


@dataclass
class TaskResult:
    rows: list[dict]  # metric, value, dataset, split, n, and optionally stderr/ci/convention/extra
    predictions: pd.DataFrame
    meta: dict = field(default_factory=dict)  # protocol choices worth recording (e.g. chosen C)


class Task:
    type: ClassVar[str]
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    description: ClassVar[str] = ""

    @classmethod
    def required_capabilities(cls, cfg: TaskConfig) -> frozenset[str]:
        raise NotImplementedError

    def __init__(self, cfg: TaskConfig, ctx: TaskContext):
        self.cfg = cfg
        self.ctx = ctx

    def evaluate(self, adapter) -> TaskResult:
        raise NotImplementedError


TASKS: Registry[type[Task]] = Registry("task type")


def register_task(cls: type[Task]) -> type[Task]:
    return TASKS.register(cls.type)(cls)


def list_tasks(pattern: str = "*") -> list[str]:
    return TASKS.list(pattern)
