"""Adapters wrap every backbone and method behind one interface (see adapters/base.py)."""

from adapters.base import ADAPTERS, Adapter, AdapterArgs, Preprocess, create_adapter, list_adapters, register_adapter

# Each module registers its adapters when imported; it is imported on the first ADAPTERS.get of one
# of its names, so a suite of results files never loads torch, timm or open_clip.
for _name, _module in {
    "clip_nlq": "adapters.video",
    "hf_clip": "adapters.hf_clip",
    "open_clip": "adapters.open_clip",
    "predictions": "adapters.predictions",
    "python": "adapters.python",
    "region_clip": "adapters.region_clip",
    "timm": "adapters.timm",
    "torchvision_detector": "adapters.detectors",
    "torchvision_video": "adapters.torchvision_video",
    "transformers": "adapters.transformers",
    "video_heads": "adapters.video",
}.items():
    ADAPTERS.lazy(_name, _module)

from bench.plugins import load_entry_points  # noqa: E402

load_entry_points("bench.adapters")  # installed third-party adapters register themselves here

__all__ = ["ADAPTERS", "Adapter", "AdapterArgs", "Preprocess", "create_adapter", "list_adapters", "register_adapter"]
