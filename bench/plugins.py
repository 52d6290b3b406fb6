"""Third-party task families and adapters: Python entry points, and a suite's `plugins:` modules.

A plugin module registers its classes on import (`@register_task`, `@register_adapter`), as
timm's `register_model` and lm-evaluation-harness's `include_path` do. Installed packages
declare entry points in the groups `bench.tasks` and `bench.adapters`; a suite names modules in
`plugins: [module, …]`, found on its `python_path: [folder, …]` (relative to the suite file).
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from typing import Iterable

from bench.errors import BenchError, one_line

_loaded: set[str] = set()


def load_entry_points(group: str) -> None:
    """Import every installed plugin of `group` once; a broken one is reported, not fatal."""
    for ep in entry_points(group=group):
        if ep.value in _loaded:
            continue
        _loaded.add(ep.value)
        try:
            ep.load()
        except Exception as e:
            print(f"warning: plugin entry point {group}:{ep.name} ({ep.value}) failed to load: {one_line(e)}", file=sys.stderr)


def import_plugins(modules: Iterable[str], python_path: Iterable[str] = (), where: str = "") -> None:
    """Import a suite's plugin modules, with its python_path first on sys.path."""
    for p in python_path:
        if p not in sys.path:
            sys.path.insert(0, p)
    for m in modules:
        try:
            importlib.import_module(m)
        except Exception as e:
            raise BenchError(f"{where}plugin module '{m}' cannot be imported: {one_line(e)}") from None
