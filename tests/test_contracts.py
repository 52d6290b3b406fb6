"""The plugin contract, for every registered task family and adapter (third-party ones included)."""

from pathlib import Path

import pytest

from adapters import ADAPTERS
from adapters.base import _implements
from bench.capabilities import CAPABILITIES
from bench.suite import load_suite
from bench.tasks import TASKS

REPO = Path(__file__).resolve().parent.parent
SUITES = sorted((REPO / "suites").glob("*.yaml"))


def shipped():
    """Every model and task entry of the shipped suites (validated without their data, with stub InternImage and UniFormerV2 factories)."""
    import os
    import sys
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    (tmp / "internimage.py").write_text("def internimage_t():\n    raise NotImplementedError\n")
    (tmp / "uniformerv2.py").write_text("def uniformerv2_b16():\n    raise NotImplementedError\n")
    saved = {v: os.environ.get(v) for v in ("DATA_ROOT", "CKPT_ROOT", "RESULTS_ROOT", "CODE_ROOT")}
    os.environ.update({v: str(tmp) for v in saved})
    try:
        out = [load_suite(p, check_paths=False) for p in SUITES]
    finally:
        for v, old in saved.items():
            os.environ.pop(v) if old is None else os.environ.__setitem__(v, old)
        sys.modules.pop("internimage", None)
        sys.modules.pop("uniformerv2", None)
    return [m for s in out for m in s.models], [t for s in out for t in s.tasks]


MODELS, TASK_CFGS = shipped()


@pytest.mark.parametrize("name", TASKS.list())
def test_family_declares_what_the_rest_of_bench_reads(name):
    fam = TASKS.get(name)
    assert fam.description and fam.headline, name
    assert all(c in CAPABILITIES for c in fam.needs), sorted(set(fam.needs) - set(CAPABILITIES.list()))
    assert fam.cost > 0
    cfgs = [t for t in TASK_CFGS if t.type == name]
    assert cfgs, f"family '{name}' appears in no shipped suite (suites/*.yaml), so no test validates it"
    for cfg in cfgs:
        need = fam.required_capabilities(cfg)
        options = need if isinstance(need, tuple) else (need,)
        for o in options:
            assert set(o) <= fam.needs, (cfg.name, sorted(set(o) - fam.needs))
    if fam.exporter:  # `bench export NAME` must resolve to a function
        import importlib

        module, _, fn = fam.exporter[1].partition(":")
        assert callable(getattr(importlib.import_module(module), fn, None)), fam.exporter


@pytest.mark.parametrize("name", ADAPTERS.list())
def test_adapter_offers_only_capabilities_it_implements(name):
    cls = ADAPTERS.get(name)
    assert cls.description
    for cap in cls.provides:
        assert cap in CAPABILITIES, cap
        assert _implements(cls, CAPABILITIES.get(cap).method), (name, cap)
    for args in (m for m in MODELS if m.adapter == name):
        assert cls.capabilities_for(args) <= cls.provides, (args.name, sorted(cls.capabilities_for(args) - cls.provides))


def test_every_adapter_is_in_a_shipped_suite():
    used = {m.adapter for m in MODELS}
    assert set(ADAPTERS.list()) - {"word_table"} <= used, sorted(set(ADAPTERS.list()) - used)


def test_registration_refuses_broken_declarations():
    from adapters.base import Adapter, register_adapter
    from bench.tasks import Task, register_task

    class NoMethod(Adapter):
        name, description, provides = "broken", "x", frozenset({"image_logits"})

    with pytest.raises(TypeError, match="does not implement image_logits"):
        register_adapter(NoMethod)

    class Unknown(Task):
        type, description, headline, needs = "broken", "x", ("m",), frozenset({"telepathy"})

    with pytest.raises(TypeError, match="unknown capability 'telepathy'"):
        register_task(Unknown)
    assert "broken" not in ADAPTERS and "broken" not in TASKS


@pytest.mark.parametrize("registry, package", [(ADAPTERS, "adapters"), (TASKS, "bench.tasks")])
def test_lazy_names_are_what_their_modules_register(registry, package):
    # a name listed for a module that does not register it, or a module's name missing from the
    # table, would only fail when a suite first asks for it
    import importlib
    import pkgutil

    pkg = importlib.import_module(package)
    for m in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{m.name}")
    for name, module in registry._lazy.items():
        assert registry.get(name).__module__ == module, name
    own = {n for n in registry.list() if registry.get(n).__module__.startswith(package + ".")}
    assert own <= set(registry._lazy), sorted(own - set(registry._lazy))


def test_a_results_file_run_never_imports_torch(tmp_path):
    # scoring a results file must not pay torch's import (seconds against a ~15 s COCO scorer)
    import json
    import subprocess
    import sys

    gt = {
        "images": [{"id": 1, "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.9}]))
    (tmp_path / "s.yaml").write_text(
        "name: t\nuncertainty: off\nmodels:\n  - {name: d, adapter: predictions, path: dets.json}\n"
        "tasks:\n  - {name: coco, type: detection, iou_types: [bbox], dataset: {format: coco, annotations: gt.json}}\n"
    )
    code = (
        "import sys\nfrom bench.cli import app\n"
        f"try:\n    app(['run', {str(tmp_path / 's.yaml')!r}, '--out', {str(tmp_path / 'res')!r}])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**__import__("os").environ, "BENCH_CACHE": str(tmp_path / "c")})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().endswith("NO-TORCH"), p.stdout[-500:]
