"""Adapters wrap every backbone and method behind one interface (see adapters/base.py)."""

from adapters.base import ADAPTERS, Adapter, AdapterArgs, Preprocess, create_adapter, list_adapters, register_adapter

# Importing the modules registers the adapters.
from adapters import detectors as _detectors  # noqa: E402,F401
from adapters import hf_clip as _hf_clip  # noqa: E402,F401
from adapters import open_clip as _open_clip  # noqa: E402,F401
from adapters import predictions as _predictions  # noqa: E402,F401
from adapters import python as _python  # noqa: E402,F401
from adapters import region_clip as _region_clip  # noqa: E402,F401
from adapters import timm as _timm  # noqa: E402,F401
from adapters import transformers as _transformers  # noqa: E402,F401
from adapters import video as _video  # noqa: E402,F401

from bench.plugins import load_entry_points  # noqa: E402

load_entry_points("bench.adapters")  # installed third-party adapters register themselves here

__all__ = ["ADAPTERS", "Adapter", "AdapterArgs", "Preprocess", "create_adapter", "list_adapters", "register_adapter"]
