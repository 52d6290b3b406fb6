"""Results that another framework already produced: a file, or a file per task.

The adapter runs nothing. It hands the task the file for that task; the task reads it in its
benchmark's official results format (a COCO/LVIS results JSON for detection) and validates it.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from adapters.base import Adapter, AdapterArgs, register_adapter
from adapters.checkpoint import sha256_file
from bench.suite import ExistingPath


class PredictionsArgs(AdapterArgs):
    adapter: Literal["predictions"] = "predictions"
    path: Union[ExistingPath, dict[str, ExistingPath]]  # one file, or {task name: file}


@register_adapter
class PredictionsAdapter(Adapter):
    name = "predictions"
    Args = PredictionsArgs
    description = "results files from any framework (mmdetection, detectron2, …), scored like a model"
    offers = "predictions"

    @classmethod
    def capabilities_for(cls, args: PredictionsArgs) -> frozenset[str]:
        return frozenset({"predictions"})

    @classmethod
    def serves(cls, args: PredictionsArgs, task) -> Union[bool, str]:
        if isinstance(args.path, str) or task.name in args.path:
            return True
        return f"no predictions file for task '{task.name}' (path has {', '.join(sorted(args.path))})"

    def predictions_file(self, task_name: str) -> str:
        path = self.args.path if isinstance(self.args.path, str) else self.args.path[task_name]
        self.checkpoint_sha256 = sha256_file(path)  # provenance: which file was scored
        return path

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "path": self.args.path}
