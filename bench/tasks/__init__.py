"""Task families. Importing this package registers them."""

from bench.tasks.base import TASKS, Task, TaskConfig, TaskContext, TaskResult, list_tasks, register_task
from bench.tasks import classification as _classification  # noqa: E402,F401
from bench.tasks import detection as _detection  # noqa: E402,F401
from bench.tasks import ego4d as _ego4d  # noqa: E402,F401
from bench.tasks import ood as _ood  # noqa: E402,F401
from bench.tasks import superglue as _superglue  # noqa: E402,F401

__all__ = ["TASKS", "Task", "TaskConfig", "TaskContext", "TaskResult", "list_tasks", "register_task"]
