"""torchvision detectors (Faster R-CNN, RetinaNet, FCOS, Mask R-CNN) on any timm backbone through an FPN.

The backbone is timm's ``features_only`` model; torchvision's FeaturePyramidNetwork turns its
stages into the levels each head expects: C2–C5 plus a max-pooled level for the R-CNNs, C3–C5
plus P6/P7 for RetinaNet and FCOS (as in their papers and torchvision's defaults). Weights come
from a local checkpoint of the whole detector, or stay random (tests and smoke).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal, Optional

import numpy as np
import torch
from pydantic import Field
from torch import nn

from adapters.base import Adapter, AdapterArgs, param_count, register_adapter
from adapters.checkpoint import KeyRule
from adapters.timm import SHA256
from bench.errors import OutputError
from bench.paths import ExistingFile

ARCHS = ("fasterrcnn", "retinanet", "fcos", "maskrcnn")


class DetectorArgs(AdapterArgs):
    adapter: Literal["torchvision_detector"] = "torchvision_detector"
    arch: Literal["fasterrcnn", "retinanet", "fcos", "maskrcnn"]
    backbone: str = "resnet50"  # any timm model that supports features_only
    backbone_pretrained: bool = False  # timm's ImageNet weights for the backbone (online)
    backbone_kwargs: dict[str, Any] = {}
    num_classes: int = Field(gt=0)  # object classes, without background
    checkpoint: Optional[ExistingFile] = None  # state dict of the whole detector
    sha256: Optional[str] = SHA256
    key_map: list[KeyRule] = []  # strip/rename/drop rules applied to checkpoint keys, in order
    strict: bool = True  # False: load what matches, report missing/unexpected keys (shapes must still fit)
    min_size: int = Field(800, gt=0)  # torchvision's resize: shorter side, capped by max_size
    max_size: int = Field(1333, gt=0)
    score_thresh: float = Field(0.05, ge=0, le=1)
    nms_thresh: float = Field(0.5, gt=0, le=1)
    detections_per_img: int = Field(100, gt=0)
    mask_thresh: float = Field(0.5, gt=0, lt=1)


class TimmFPN(nn.Module):
    """timm feature stages → FPN levels, with the out_channels attribute torchvision's heads read."""

    def __init__(self, body: nn.Module, extra: str, out_channels: int = 256):
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7

        super().__init__()
        self.body = body
        blocks = LastLevelMaxPool() if extra == "pool" else LastLevelP6P7(out_channels, out_channels)
        self.fpn = FeaturePyramidNetwork(body.feature_info.channels(), out_channels, extra_blocks=blocks)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def build_detector(args: DetectorArgs) -> tuple[nn.Module, tuple, tuple]:
    import timm
    from torchvision.models import detection as D

    rcnn = args.arch in ("fasterrcnn", "maskrcnn")
    n_stages = len(timm.create_model(args.backbone, features_only=True, pretrained=False, **args.backbone_kwargs).feature_info)
    # the last 4 stages (strides 4..32) for R-CNNs, the last 3 (8..32) for single-stage heads
    idx = tuple(range(n_stages - 4, n_stages)) if rcnn else tuple(range(n_stages - 3, n_stages))
    body = timm.create_model(args.backbone, features_only=True, out_indices=idx, pretrained=args.backbone_pretrained, **args.backbone_kwargs)
    cfg = body.pretrained_cfg
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    backbone = TimmFPN(body, "pool" if rcnn else "p6p7")
    common = dict(min_size=args.min_size, max_size=args.max_size, image_mean=list(mean), image_std=list(std))
    # softmax R-CNN heads reserve index 0 for background (labels 1..K); sigmoid heads have none (labels 0..K-1)
    k = args.num_classes + 1 if rcnn else args.num_classes
    if args.arch == "fasterrcnn":
        m = D.FasterRCNN(
            backbone, k, box_score_thresh=args.score_thresh, box_nms_thresh=args.nms_thresh, box_detections_per_img=args.detections_per_img, **common
        )
    elif args.arch == "maskrcnn":
        m = D.MaskRCNN(
            backbone, k, box_score_thresh=args.score_thresh, box_nms_thresh=args.nms_thresh, box_detections_per_img=args.detections_per_img, **common
        )
    elif args.arch == "retinanet":
        m = D.RetinaNet(backbone, k, score_thresh=args.score_thresh, nms_thresh=args.nms_thresh, detections_per_img=args.detections_per_img, **common)
    else:
        m = D.FCOS(backbone, k, score_thresh=args.score_thresh, nms_thresh=args.nms_thresh, detections_per_img=args.detections_per_img, **common)
    return m, mean, std


def masks_to_rle(masks: torch.Tensor, thresh: float) -> list[dict]:
    """[n, 1, H, W] probabilities → COCO compressed RLE (counts as str, JSON-ready)."""
    from faster_coco_eval.core import mask as mask_util

    if masks.shape[0] == 0:
        return []
    binary = (masks[:, 0] > thresh).cpu().numpy().astype(np.uint8)
    rles = mask_util.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
    return [{"size": list(r["size"]), "counts": r["counts"].decode() if isinstance(r["counts"], bytes) else r["counts"]} for r in rles]


@register_adapter
class DetectorAdapter(Adapter):
    provides = frozenset({"detections"})  # every capability capabilities_for may offer
    name = "torchvision_detector"
    Args = DetectorArgs
    description = "torchvision Faster R-CNN / RetinaNet / FCOS / Mask R-CNN with a timm backbone + FPN; checkpoint: PATH"
    offers = "detections (boxes; masks for maskrcnn)"

    @classmethod
    def capabilities_for(cls, args: DetectorArgs) -> frozenset[str]:
        return frozenset({"detections"})

    def __init__(self, args: DetectorArgs, **kw):
        super().__init__(args, **kw)
        torch.manual_seed(self.seed)
        model, self.mean, self.std = build_detector(args)
        if args.checkpoint:
            self.load_weights(model, f"{args.arch} on {args.backbone}")
        self.model = model.eval().to(self.device)

    def detections(self, images: list, image_ids: list, vocabulary: list[str], novel=None) -> list[dict]:
        k = self.args.num_classes
        if len(vocabulary) != k:
            raise OutputError(f"model '{self.args.name}' detects {k} classes but the dataset has {len(vocabulary)}")
        x = [im.to(self.device, non_blocking=True).float().div_(255) for im in images]
        with torch.inference_mode(), self.autocast():
            outs = self.model(x)
        res = []
        for o in outs:
            boxes = self.check_finite(o["boxes"].float(), "detections", self.args.name)
            offset = 1 if self.args.arch in ("fasterrcnn", "maskrcnn") else 0
            r = {"boxes": boxes.cpu().numpy(), "scores": o["scores"].float().cpu().numpy(), "labels": o["labels"].cpu().numpy() - offset}
            if "masks" in o:
                r["masks"] = masks_to_rle(o["masks"], self.args.mask_thresh)
            res.append(r)
        return res

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "arch": self.args.arch, "backbone": self.args.backbone, "params": param_count(self.model)}
