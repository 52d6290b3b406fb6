"""COCO panoptic segmentation (`type: panoptic`): PQ, SQ, RQ over all, thing and stuff categories, as panopticapi.

Predictions come from a results file in COCO panoptic format (a JSON and its folder of PNGs, what
detectron2's COCOPanopticEvaluator and mmdet's `--format-only` write) through the `predictions`
adapter. Each image is scored once into per-category (tp, fp, fn, ΣIoU) sums, in one process;
those sums add up to the split's numbers and, draw-weighted, to an image bootstrap's.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from bench.data.panoptic import CocoPanopticSpec, PanopticSplit, read_id_map, read_predictions
from bench.errors import DataError
from bench.metrics import panoptic as M
from bench.metrics.uncertainty import bootstrap, fill
from bench.tasks.base import Task, TaskConfig, TaskResult, register_task

CONVENTION = "panopticapi-pq_compute"
GROUP_NAMES = {"": "all", "_th": "things", "_st": "stuff"}


class PanopticConfig(TaskConfig):
    type: Literal["panoptic"]
    dataset: CocoPanopticSpec
    per_category: bool = False  # one `pq/PQ/<category>` row per category with tp + fp + fn > 0


def score_images(split: PanopticSplit, preds) -> tuple[np.ndarray, list[dict]]:
    """[N, C, 4] per-image, per-category (tp, fp, fn, ΣIoU), and each image's prediction annotation."""
    anns = preds.for_split(split)
    out = np.zeros((len(split), len(split.categories), 4), np.float64)
    for i, ann in enumerate(anns):
        gt_map, gt = split.ground_truth(i)
        png = preds.png(ann)
        where = f"{png} (image {ann['image_id']})"
        pred_map = read_id_map(png, f"prediction PNG (image {ann['image_id']})", (gt_map.shape[1], gt_map.shape[0]), split.png(i))
        out[i] = M.image_stats(gt_map, pred_map, gt, preds.segments(ann, split), len(split.categories), where)
    return out, anns


@register_task
class PanopticTask(Task):
    type = "panoptic"
    Config = PanopticConfig
    description = "COCO panoptic PQ/SQ/RQ (all, things, stuff) + per-category PQ (panopticapi pq_compute) from a results JSON and its PNGs"
    needs = frozenset({"predictions"})
    headline = ("pq/PQ",)
    per_category = "pq/PQ/*"
    cost = 1.0

    @classmethod
    def required_capabilities(cls, cfg: PanopticConfig) -> tuple[frozenset, ...]:
        return (frozenset({"predictions"}),)

    def evaluate(self, adapter) -> TaskResult:
        cfg = self.cfg
        split = cfg.dataset.load().subset(self.ctx.limit, self.ctx.seed)
        preds = read_predictions(self.ctx.outputs("predictions", task_name=cfg.name))
        per_image, anns = score_images(split, preds)
        got = M.scores(per_image.sum(0), split.isthing)
        meta: dict = {"images": len(split), "categories": len(split.categories), "predictions": preds.json}
        meta["counted"] = {name: int(got[f"n{s}"]) for s, name in GROUP_NAMES.items()}
        if not meta["counted"]["all"]:
            raise DataError(f"{split.annotations}: no category has a ground-truth or predicted segment in the {len(split)} images scored")
        keys, empty = [], []
        for s, name in GROUP_NAMES.items():
            if got[f"n{s}"]:
                keys += [f"{m}{s}" for m in ("PQ", "SQ", "RQ")]
            else:
                empty.append(name)
        if empty:
            why = "its PQ/SQ/RQ rows are left out (panopticapi divides by zero)"
            meta["warnings"] = [f"no {g} category has a ground-truth or predicted segment: {why}" for g in empty]
        rows = [{"metric": f"pq/{k}", "value": float(got[k])} for k in keys]
        shown = {}
        if cfg.per_category:
            shown = {c["name"]: k for k, c in enumerate(split.categories) if np.isfinite(got["pq"][k])}
            rows += [{"metric": f"pq/PQ/{n}", "value": float(got["pq"][k])} for n, k in shown.items()]
        spec = self.ctx.uncertainty
        if spec is not None and len(split) > 1:
            ivs = bootstrap(lambda w: M.resampled(per_image, w, split.isthing, shown), len(split), spec, "image")
            fill(rows, ivs, match=lambda r: r["metric"][len("pq/") :])
        for r in rows:
            r.update(dataset=split.dataset, split=split.name, n=len(split), convention=CONVENTION)
        ids = split.image_ids
        table = pd.DataFrame(
            {
                "image_id": ids if all(isinstance(i, int) for i in ids) else [str(i) for i in ids],
                "file_name": [a["file_name"] for a in anns],
                "tp": per_image[:, :, M.TP].sum(1).astype(np.int64),
                "fp": per_image[:, :, M.FP].sum(1).astype(np.int64),
                "fn": per_image[:, :, M.FN].sum(1).astype(np.int64),
            }
        )
        return TaskResult(rows=rows, predictions=table, meta=meta)
