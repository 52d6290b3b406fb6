"""The layers of docs/architecture.md hold: no import cycle, and no module imports one above it, lazily or not."""

import ast
import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# bottom up; a module may import its own layer or those below
LAYERS = [
    ["bench", "bench.errors", "bench.optional", "bench.registry", "bench.paths", "bench.hashing", "bench.results", "bench.filehash", "bench.dist", "bench.metrics", "bench.metrics.*", "bench.probes", "bench.dense", "bench.postprocessors", "bench.reference", "bench.capabilities", "bench.plugins", "bench.catalogue"],
    ["bench.data", "bench.data.*", "bench.cache", "bench.inputs"],
    ["adapters", "adapters.*", "bench.tasks", "bench.tasks.*"],
    ["bench.suite", "bench.jobs", "bench.compare", "bench.check", "bench.ranking", "bench.export", "bench.report"],
    ["bench.broker", "bench.executor"],
    ["bench.scheduler", "bench.pool", "bench.launch"],
    ["bench.cli", "bench.__main__"],
]


def modules() -> dict[str, Path]:
    out = {}
    for root in ("bench", "adapters"):
        for p in (REPO / root).rglob("*.py"):
            name = ".".join(p.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = p
    return out


def imports(mods: dict[str, Path]) -> dict[str, set]:
    """Every import of a project module, at top level or inside a function."""
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module in mods:
                    deps.add(node.module)
                deps |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
        graph[name] = deps - {name}
    return graph


def layer(name: str) -> int:
    for i, pats in enumerate(LAYERS):
        if any(fnmatch.fnmatch(name, p) for p in pats):
            return i
    raise AssertionError(f"{name} is in no layer of tests/test_architecture.py (and docs/architecture.md)")


def test_every_module_has_a_layer_and_imports_none_above_it():
    graph = imports(modules())
    upward = [f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})" for m, deps in graph.items() for d in deps if layer(d) > layer(m)]
    assert not upward, "\n".join(sorted(upward))


def test_import_graph_has_no_cycle():
    graph = imports(modules())
    # a package importing its own submodules (the registries fill on import) is not a cycle
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_metrics_do_not_import_torch():
    for name, path in modules().items():
        if name.startswith("bench.metrics"):
            tree = ast.parse(path.read_text())
            names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            assert "torch" not in names, name


def test_no_class_is_over_about_200_lines():
    big = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 210:
                big.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not big, big


def test_tasks_never_call_adapter_methods():
    """Tasks ask the broker (ctx.outputs) and never call a capability's method on the adapter (they may read
    its declared args, capabilities and preprocess; the device comes from ctx.device)."""
    from bench.capabilities import CAPABILITIES

    methods = {CAPABILITIES.get(c).method for c in CAPABILITIES.list()}
    calls = []
    for name, path in modules().items():
        if name.startswith("bench.tasks."):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in methods:
                    calls.append(f"{name}:{node.lineno} {node.func.attr}()")
                # adapter.X / self.adapter.X: only what an adapter declares
                if isinstance(node, ast.Attribute) and node.attr not in ("args", "capabilities", "preprocess"):
                    v = node.value
                    if (isinstance(v, ast.Name) and v.id == "adapter") or (isinstance(v, ast.Attribute) and v.attr == "adapter"):
                        calls.append(f"{name}:{node.lineno} adapter.{node.attr}")
    assert not calls, calls
