"""Results that another framework already produced: a file, or a file per task.

The adapter runs nothing. It hands the task the file for that task; the task reads it in its
benchmark's official results format (a COCO/LVIS results JSON for detection) and validates it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal, Union

from adapters.base import Adapter, AdapterArgs, register_adapter
from adapters.checkpoint import sha256_file
from bench.paths import ExistingPath


class PredictionsArgs(AdapterArgs):
    adapter: Literal["predictions"] = "predictions"
    path: Union[ExistingPath, dict[str, ExistingPath]]  # one file or folder, or {task name: file or folder}


def sha256_path(path: str) -> str:
    """A file's sha256, or for a folder of submission files the sha256 of its sorted (name, sha256) list."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(path)
    listing = "\n".join(f"{f.relative_to(p)} {sha256_file(str(f))}" for f in sorted(p.rglob("*")) if f.is_file())
    return hashlib.sha256(listing.encode()).hexdigest()


@register_adapter
class PredictionsAdapter(Adapter):
    provides = frozenset({"predictions"})  # every capability capabilities_for may offer
    name = "predictions"
    Args = PredictionsArgs
    description = "results files from any framework (mmdetection, detectron2, …), scored like a model"
    offers = "predictions"
    runs_model = False

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
        self.checkpoint_sha256 = sha256_path(path)  # provenance: which file(s) were scored
        return path

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "path": self.args.path}
