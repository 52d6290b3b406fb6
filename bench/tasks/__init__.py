"""Task families. Importing this package registers them."""

from bench.tasks.base import TASKS, Task, TaskConfig, TaskContext, TaskResult, family_of, is_per_category, list_tasks, lower_is_better, register_task
from bench.tasks import classification as _classification  # noqa: E402,F401
from bench.tasks import detection as _detection  # noqa: E402,F401
from bench.tasks import ego4d as _ego4d  # noqa: E402,F401
from bench.tasks import ood as _ood  # noqa: E402,F401
from bench.tasks import retrieval as _retrieval  # noqa: E402,F401
from bench.tasks import superglue as _superglue  # noqa: E402,F401

from bench.plugins import load_entry_points  # noqa: E402

load_entry_points("bench.tasks")  # installed third-party families register themselves here

__all__ = ["TASKS", "Task", "TaskConfig", "TaskContext", "TaskResult", "family_of", "is_per_category", "list_tasks", "lower_is_better", "register_task"]
