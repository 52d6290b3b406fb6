"""Detection tasks: COCO (`detection`), LVIS v1 (`lvis`) and COCO open-vocabulary (`ovd_coco`).

Detections come from a model (capability `detections`, served by the broker's cache) or
from a results file (capability `predictions`: a COCO/LVIS results JSON from mmdetection,
detectron2 or anything else). Either way they become one COCO results list, are validated,
written as per-detection predictions, and scored by bench.metrics.coco.
"""

from __future__ import annotations

import gc
from typing import ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.data.coco import DetectionDatasetSpec, DetectionSplit, dataset_name, read_json
from bench.dist import thread_budget
from bench.errors import DataError
from bench.metrics import coco as M
from bench.metrics.coco_bootstrap import image_bootstrap
from bench.metrics.uncertainty import fill
from bench.paths import ExistingFile
from bench.tasks.base import Task, TaskConfig, TaskResult, register_task

# OVR-CNN / ViLD COCO split: 48 base and 17 novel of the 80 COCO classes.
COCO_OVD_BASE = (
    "person bicycle car motorcycle train truck boat bench bird horse sheep bear zebra giraffe backpack handbag suitcase frisbee skis kite "
    "surfboard bottle fork spoon bowl banana apple sandwich orange broccoli carrot pizza donut chair bed toilet tv laptop mouse remote "
    "microwave oven toaster refrigerator book clock vase toothbrush"
).split()
COCO_OVD_NOVEL = "airplane bus cat dog cow elephant umbrella tie snowboard skateboard cup knife cake couch keyboard sink scissors".split()
assert len(COCO_OVD_BASE) == 48 and len(COCO_OVD_NOVEL) == 17


class _DetectionConfig(TaskConfig):
    dataset: DetectionDatasetSpec
    iou_types: list[Literal["bbox", "segm"]] = Field(["bbox"], min_length=1)


class DetectionConfig(_DetectionConfig):
    type: Literal["detection"]
    per_category: bool = True  # one `<iou>/AP/<category>` row per category


class LvisConfig(_DetectionConfig):
    type: Literal["lvis"]
    per_category: bool = False  # 1203 categories: off unless asked for


class OvdSplit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: list[str | int] = Field(min_length=1)  # category names or ids
    novel: list[str | int] = Field(min_length=1)


class OvdConfig(_DetectionConfig):
    type: Literal["ovd_coco"]
    split: Optional[OvdSplit] = None  # default: OVR-CNN's 48 base / 17 novel COCO classes
    split_file: Optional[ExistingFile] = None  # JSON {"base": [...], "novel": [...]} of names or ids

    @model_validator(mode="after")
    def _one_split(self):
        if self.split is not None and self.split_file is not None:
            raise ValueError("give split or split_file, not both")
        return self


def to_results(dets: list[dict], image_ids: list, cat_ids: list, want_segm: bool) -> list[dict]:
    """Adapter detections (xyxy, vocabulary indices) → COCO results (xywh, dataset category ids)."""
    out = []
    for img, d in zip(image_ids, dets):
        masks = d.get("masks")
        for j, (box, s, lab) in enumerate(zip(d["boxes"], d["scores"], d["labels"])):
            x0, y0, x1, y1 = (float(v) for v in box)
            r = {"image_id": img, "category_id": cat_ids[int(lab)], "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(s)}
            if want_segm and masks is not None:
                r["segmentation"] = masks[j]
            out.append(r)
    return out


def predictions_table(preds: list[dict]):
    """Per-detection predictions, column-wise into Arrow: bbox is list<double>, not a JSON string per row."""
    import pyarrow as pa

    # the engine adds a numpy bbox to segm results that had none (cocoapi's own fake results)
    return pa.table(
        {
            "image_id": pa.array([p["image_id"] for p in preds]),
            "category_id": pa.array([p["category_id"] for p in preds]),
            "bbox": pa.array([p.get("bbox") for p in preds], type=pa.list_(pa.float64())),
            "score": pa.array([p["score"] for p in preds], type=pa.float64()),
        }
    )


class DetectionTask(Task):
    """Shared flow; subclasses say which numbers to report."""

    lvis: ClassVar[bool] = False
    cap: ClassVar[int] = M.COCO_MAX_DETS[-1]
    needs = frozenset({"detections", "predictions"})
    per_category = "*/AP/*"
    cost = 6.0

    @classmethod
    def required_capabilities(cls, cfg) -> tuple[frozenset, ...]:
        return (frozenset({"detections"}), frozenset({"predictions"}))

    def vocabulary(self, split: DetectionSplit) -> tuple[list[str], Optional[list[bool]]]:
        return split.class_names, None

    def evaluate(self, adapter) -> TaskResult:
        # hundreds of thousands of parsed detection dicts, none of them in a cycle: the cyclic
        # collector's full passes over them cost 20% of a COCO run and free nothing (refcounts do)
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._evaluate(adapter)
        finally:
            if enabled:
                gc.enable()

    def _evaluate(self, adapter) -> TaskResult:
        cfg = self.cfg
        split = cfg.dataset.load()
        if split.lvis != self.lvis:
            raise DataError(
                f"{split.annotations}: task type '{cfg.type}' needs {'an LVIS' if self.lvis else 'a COCO'} dataset (format: {'lvis' if self.lvis else 'coco'})"
            )
        image_ids = split.image_ids(self.ctx.limit, self.ctx.seed)
        meta: dict = {}
        if "predictions" in adapter.capabilities:
            source = self.ctx.outputs("predictions", task_name=cfg.name)
            raw = read_json(source, "results JSON")
        else:
            source = f"model '{adapter.args.name}'"
            vocab, novel = self.vocabulary(split)
            dets = self.ctx.outputs("detections", (split, image_ids), vocabulary=vocab, novel=novel)
            raw = to_results(dets, image_ids, split.cat_ids, "segm" in cfg.iou_types)
            if "segm" in cfg.iou_types and raw and "segmentation" not in raw[0]:
                raise DataError(f"model '{adapter.args.name}' gives no masks, so it cannot be scored on segm")
        rows, preds = [], []
        over = None
        gt = M.load_gt(split.gt)
        spec = self.ctx.uncertainty
        for iou in cfg.iou_types:
            # against the whole GT, before --limit samples images; one iou type: the parsed dicts are scored as they are
            results = M.validate_results(split.gt, raw, iou, source, fresh=len(cfg.iou_types) > 1)
            if self.ctx.limit:
                keep = set(image_ids)
                results = [r for r in results if r["image_id"] in keep]
            over = M.dets_over_cap(results, self.cap)
            ev = M.evaluate(gt, results, iou, img_ids=image_ids, lvis=self.lvis, keep_matches=spec is not None)
            new = [{"metric": f"{iou}/{k}", "value": v} for k, v in self.all_numbers(ev, split).items()]
            if spec is not None:
                fill(new, image_bootstrap(ev, lambda e: self.all_numbers(e, split), spec, thread_budget()), match=lambda r, p=f"{iou}/": r["metric"][len(p) :])
            rows += new
            if iou == cfg.iou_types[0]:
                preds = results
        if over:
            # the scorer keeps its own top-k (per image and category for COCO, per image for LVIS)
            meta["images_over_max_dets"] = over
            meta["warnings"] = [f"{over} images have more than {self.cap} detections; scored as the official scorer does (its top {self.cap})"]
        meta["detections"] = len(preds)
        name = dataset_name(cfg.dataset)
        for r in rows:
            r.update(dataset=name, split=split.name, n=len(image_ids))
        return TaskResult(rows=rows, predictions=predictions_table(preds), meta=meta)

    def numbers(self, ev, split: DetectionSplit) -> dict[str, float]:
        return M.coco_stats(ev)

    def all_numbers(self, ev, split: DetectionSplit) -> dict[str, float]:
        """The family's numbers plus per-category AP when asked for, named without the iou-type prefix."""
        out = self.numbers(ev, split)
        if getattr(self.cfg, "per_category", False):
            names = {c["id"]: c["name"] for c in split.categories}
            out.update({f"AP/{names[c]}": v for c, v in M.per_category_ap(ev).items()})
        return out


@register_task
class CocoDetectionTask(DetectionTask):
    type = "detection"
    Config = DetectionConfig
    description = "COCO box/mask AP (pycocotools' 12 stats + per-category AP) from a detector or a results JSON"
    headline = ("bbox/AP", "segm/AP")


@register_task
class LvisTask(DetectionTask):
    type = "lvis"
    Config = LvisConfig
    description = "LVIS v1 AP, APr/APc/APf, AR@300 (federated: neg/not-exhaustive lists, 300 dets per image)"
    headline = ("bbox/AP", "segm/AP")
    lvis = True
    cap = M.LVIS_MAX_DETS

    def vocabulary(self, split):
        # LVIS open-vocabulary protocol (ViLD, F-VLM): the rare categories are the novel ones
        return split.class_names, [c["frequency"] == "r" for c in split.categories]

    def numbers(self, ev, split):
        return M.lvis_stats(ev)


@register_task
class OvdCocoTask(DetectionTask):
    type = "ovd_coco"
    Config = OvdConfig
    description = "COCO open-vocabulary detection: AP50 on novel, base and all (OVR-CNN/ViLD 48/17 split)"
    headline = ("bbox/AP50_novel",)

    def split_ids(self, split: DetectionSplit) -> tuple[list[int], list[int]]:
        cfg = self.cfg
        if cfg.split_file:
            data = read_json(cfg.split_file, "OVD split JSON")
            if not isinstance(data, dict) or not isinstance(data.get("base"), list) or not isinstance(data.get("novel"), list):
                raise DataError(f'{cfg.split_file}: expected {{"base": [...], "novel": [...]}} of category names or ids')
            base, novel, where = data["base"], data["novel"], cfg.split_file
        elif cfg.split:
            base, novel, where = cfg.split.base, cfg.split.novel, f"task '{cfg.name}' split"
        else:
            base, novel, where = COCO_OVD_BASE, COCO_OVD_NOVEL, "the OVR-CNN 48/17 split"
        by_name = {c["name"]: c["id"] for c in split.categories}
        ids = set(by_name.values())

        def resolve(items):
            out, unknown = [], []
            for x in items:
                cid = x if isinstance(x, int) and not isinstance(x, bool) else by_name.get(x)
                (out if cid in ids else unknown).append(cid if cid in ids else x)
            if unknown:
                raise DataError(f"{where}: categories not in {split.annotations}: {', '.join(map(str, unknown[:5]))}")
            return out

        b, n = resolve(base), resolve(novel)
        if set(b) & set(n):
            raise DataError(f"{where}: categories both base and novel: {sorted(set(b) & set(n))[:5]}")
        return b, n

    def vocabulary(self, split):
        _, novel = self.split_ids(split)
        return split.class_names, [c in set(novel) for c in split.cat_ids]

    def numbers(self, ev, split):
        base, novel = self.split_ids(split)
        return M.ovd_ap50(ev, base, novel)
