"""Task families. Importing this package makes them known; each module loads on first use."""

from bench.tasks.base import TASKS, Task, TaskConfig, TaskContext, TaskResult, display_scale, family_of, is_per_category, list_tasks, lower_is_better, register_task

# Each module registers its families when imported, on the first TASKS.get of one of its types:
# a run of COCO scoring never loads the OOD postprocessors' scipy or SuperGLUE's readers.
for _type, _module in {
    "classification": "bench.tasks.classification",
    "detection": "bench.tasks.detection",
    "ego4d_mq": "bench.tasks.ego4d",
    "ego4d_nlq": "bench.tasks.ego4d",
    "ego4d_sta": "bench.tasks.ego4d",
    "lvis": "bench.tasks.detection",
    "ood": "bench.tasks.ood",
    "ovd_coco": "bench.tasks.detection",
    "panoptic": "bench.tasks.panoptic",
    "retrieval": "bench.tasks.retrieval",
    "segmentation": "bench.tasks.segmentation",
    "superglue": "bench.tasks.superglue",
    "video_classification": "bench.tasks.video",
    "video_retrieval": "bench.tasks.video",
}.items():
    TASKS.lazy(_type, _module)

from bench.plugins import load_entry_points  # noqa: E402

load_entry_points("bench.tasks")  # installed third-party families register themselves here

__all__ = ["TASKS", "Task", "TaskConfig", "TaskContext", "TaskResult", "display_scale", "family_of", "is_per_category", "list_tasks", "lower_is_better", "register_task"]
