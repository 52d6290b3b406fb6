"""The suite file: YAML → validated pydantic objects, with file:line errors.

Validation happens in full before anything runs. Every problem becomes one line
``FILE:LINE: dotted.key: message`` and all of them are reported together.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from bench.errors import BenchError, SuiteError, read_text
from bench.registry import did_you_mean

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# the path types live in bench.paths (a leaf); re-exported for suites' Python users
from bench.paths import ExistingDir, ExistingFile, ExistingPath, SuitePath  # noqa: E402,F401


# ---------------------------------------------------------------- top level
def _device(v: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
        raise ValueError(f"{v!r} is not a device (auto, cpu, cuda, cuda:N)")
    return v


class Defaults(Strict):
    device: Annotated[str, AfterValidator(_device)] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    batch_size: Union[Annotated[int, Field(gt=0)], Literal["auto"]] = "auto"
    num_workers: Annotated[int, Field(ge=0)] = 2
    seed: int = 0
    limit: Optional[Annotated[int, Field(gt=0)]] = None


class Pair(Strict):
    model: str = "*"
    task: str = "*"


class Matrix(Strict):
    include: Optional[list[Pair]] = None
    exclude: list[Pair] = []


class CheckSpec(Strict):
    # `metric` or `task:metric` (globs allowed) → absolute tolerance in the metric's units
    tolerance: dict[str, float] = {}


class SlurmConfig(Strict):
    """`bench run --launcher slurm` settings: the suite's `slurm:` block, or the flags."""

    partition: Optional[str] = None
    time_min: int = Field(240, gt=0)
    gpus_per_node: int = Field(1, ge=0)
    cpus_per_task: int = Field(8, gt=0)
    mem_gb: Optional[int] = Field(None, gt=0)
    account: Optional[str] = None
    qos: Optional[str] = None
    max_requeue: int = Field(3, ge=0)  # pre-emptions/timeouts requeued per job


class Uncertainty(Strict):
    """How every row's stderr and 95% CI are computed (bench.metrics.uncertainty)."""

    method: Literal["bootstrap", "wilson"] = "bootstrap"  # wilson: closed form for accuracies, bootstrap for the rest
    resamples: Annotated[int, Field(ge=10)] = 1000
    seed: int = 0
    level: float = Field(0.95, gt=0, lt=1)


def _uncertainty(v):
    """`uncertainty: off` (YAML false) turns CIs off."""
    if v is False or v == "off":
        return None
    return v


class SuiteHead(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    defaults: Defaults = Defaults()
    models: list[dict[str, Any]] = Field(min_length=1)
    tasks: list[dict[str, Any]] = Field(min_length=1)
    matrix: Optional[Matrix] = None
    check: CheckSpec = CheckSpec()
    slurm: Optional[dict[str, Any]] = None  # `bench run --launcher slurm` settings (SlurmConfig above)
    uncertainty: Annotated[Optional[Uncertainty], BeforeValidator(_uncertainty)] = Uncertainty()
    plugins: list[str] = []  # modules that register task families or adapters (bench.plugins)
    python_path: list[SuitePath] = []  # folders put on sys.path before the plugins are imported

    @field_validator("slurm")
    @classmethod
    def _slurm(cls, v):
        if v is not None:
            SlurmConfig.model_validate(v)
        return v


@dataclass
class Suite:
    path: Path
    name: str
    defaults: Defaults
    models: list  # adapter Args instances
    tasks: list  # task Config instances
    matrix: Optional[Matrix]
    check: CheckSpec
    slurm: Optional[dict] = None
    uncertainty: Optional[Uncertainty] = None  # None: uncertainty off
    plugins: list = field(default_factory=list)
    python_path: list = field(default_factory=list)
    raw_models: list[dict] = field(default_factory=list)  # as written, for hashing
    raw_tasks: list[dict] = field(default_factory=list)
    lines: dict = field(default_factory=dict)  # loc tuple → line

    def line_of(self, *loc) -> int:
        return _line_for(self.lines, loc)

    def where(self, *loc) -> str:
        return f"{self.path}:{self.line_of(*loc)}: {_dotted(loc)}"


# ---------------------------------------------------------------- YAML with lines
def _node_lines(node, loc=(), out=None) -> dict:
    out = {} if out is None else out
    out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[loc + (key,)] = k.start_mark.line + 1
            _node_lines(v, loc + (key,), out)
            out[loc + (key,)] = k.start_mark.line + 1  # key line wins over value line
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _node_lines(v, loc + (i,), out)
    return out


def _line_for(lines: dict, loc) -> int:
    loc = tuple(loc)
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def _dotted(loc) -> str:
    s = ""
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else (f".{part}" if s else str(part))
    return s or "(top)"


def _expand_env(obj, loc, lines, path, problems):
    if isinstance(obj, dict):
        return {k: _expand_env(v, loc + (k,), lines, path, problems) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand_env(v, loc + (i,), lines, path, problems) for i, v in enumerate(obj)]
    if isinstance(obj, str) and "${" in obj:

        def sub(m):
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            problems.append(f"{path}:{_line_for(lines, loc)}: {_dotted(loc)}: environment variable ${{{var}}} is not set and has no default")
            return m.group(0)

        return _ENV.sub(sub, obj)
    return obj


def _real_loc(data, loc) -> tuple:
    """The parts of a pydantic loc that exist in the YAML; union tags and member names are dropped.

    A key absent from the YAML is kept only as the last part (an unknown or missing key).
    """
    out, cur = [], data
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
            out.append(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
            out.append(part)
        elif i == len(loc) - 1 and isinstance(cur, dict):
            out.append(part)
    return tuple(out)


def _format_errors(err: ValidationError, data, prefix, fields_of, lines, path) -> list[str]:
    """pydantic errors → 'file:line: key: message', with 'did you mean' for unknown keys."""
    out = []
    for e in err.errors(include_url=False):
        loc = _real_loc(data, prefix + tuple(e["loc"]))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            key = loc[-1]
            known = fields_of(loc[len(prefix) : -1], data)
            msg = f"unknown key '{key}'{did_you_mean(key, known)}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            tag = ctx.get("tag")
            expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
            msg = f"unknown {str(ctx.get('discriminator', 'tag')).strip(chr(39))} '{tag}'{did_you_mean(tag, expected)}; expected one of {', '.join(expected)}"
        elif e["type"] == "value_error":
            msg = str(e.get("ctx", {}).get("error", msg))
        elif not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        out.append(f"{path}:{_line_for(lines, loc)}: {_dotted(loc)}: {msg}")
    return list(dict.fromkeys(out))  # unions report the same problem once per member


def _fields(model_cls, sub, data) -> list[str]:
    """Field names of the (sub)model at `sub`, choosing union members by the YAML's `format`/`type` tag."""
    cls, cur = model_cls, data
    for part in sub:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            cur = None
        if isinstance(part, int):
            continue
        f = getattr(cls, "model_fields", {}).get(part)
        if f is None:
            return []
        members = [a for a in getattr(f.annotation, "__args__", (f.annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        tagged = (
            [
                m
                for m in members
                if isinstance(cur, dict)
                and any(cur.get(t) in getattr(m.model_fields.get(t), "annotation", type).__args__ for t in ("format", "type") if t in m.model_fields)
            ]
            if len(members) > 1
            else []
        )
        if not members:
            return []
        cls = (tagged or members)[0]
    return list(getattr(cls, "model_fields", {}))


# ---------------------------------------------------------------- read
MAX_YAML_NODES = 100_000  # with aliases expanded; real suites have a few thousand


def _read_yaml(path: Path):
    """(composed node, data) of a suite file; every failure is one SuiteError line naming the file."""
    if path.is_dir():
        raise SuiteError([f"{path}: is a folder, not a suite file"])
    if not path.is_file():
        raise SuiteError([f"{path}: suite file not found"])
    text = read_text(path, lambda msg: SuiteError([msg]))
    try:
        node = yaml.compose(text)
        _yaml_size(node, path)  # before safe_load and anything else walks it expanded
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        if mark is None and isinstance(getattr(e, "position", None), int):  # yaml.reader.ReaderError
            pos = e.position
            where = f"{path}:{text.count(chr(10), 0, pos) + 1}:{pos - (text.rfind(chr(10), 0, pos) + 1) + 1}"
        else:
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        ctx, cm = getattr(e, "context", None), getattr(e, "context_mark", None)
        if ctx and cm is not None and cm is not mark:
            problem += f" ({ctx} at line {cm.line + 1}, column {cm.column + 1})"
        if "end of stream" in problem or "<stream end>" in problem:
            problem += "; is the file cut short?"
        raise SuiteError([f"{where}: malformed YAML: {problem}"]) from None
    except RecursionError:
        raise SuiteError([f"{path}: YAML nested too deeply"]) from None
    return node, data


def _yaml_size(node, path) -> int:
    """Node count with aliases expanded, counted on the composed graph (each node once); refuses bombs and cycles."""
    sizes: dict = {}
    active: set = set()
    shared = False

    def size(n) -> int:
        nonlocal shared
        k = id(n)
        if k in sizes:
            shared = True
            return sizes[k]
        if k in active:
            raise SuiteError([f"{path}:{n.start_mark.line + 1}: YAML alias refers to a node that contains it"])
        active.add(k)
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(a) + size(b) for a, b in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(c) for c in n.value)
        else:
            total = 1
        if total > MAX_YAML_NODES:
            what = "YAML aliases expand to" if shared else "the YAML has"
            raise SuiteError([f"{path}:{n.start_mark.line + 1}: {what} more than {MAX_YAML_NODES:,} nodes"])
        active.discard(k)
        sizes[k] = total
        return total

    return size(node) if node is not None else 0


def _yaml_graph(node, path) -> list[str]:
    """Duplicate mapping keys (YAML silently keeps the last), each shared node checked once."""
    out, seen_nodes = [], set()

    def walk(n, loc):
        if id(n) in seen_nodes:
            return
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict = {}
            for k, v in n.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else None
                if key is not None and key != "<<":
                    if (k.tag, key) in first:
                        out.append(f"{path}:{k.start_mark.line + 1}: {_dotted(loc + (key,))}: duplicate key '{key}' (first at line {first[(k.tag, key)]})")
                    first.setdefault((k.tag, key), k.start_mark.line + 1)
                walk(v, loc + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, c in enumerate(n.value):
                walk(c, loc + (i,))

    if node is not None:
        walk(node, ())
    return out


# ---------------------------------------------------------------- load
def _import_plugins(data: dict, path: Path, lines: dict) -> list[str]:
    """Import the suite's plugin modules before its models and tasks are validated against the registries."""
    from bench.plugins import import_plugins

    mods, dirs = data.get("plugins") or [], data.get("python_path") or []
    if not mods:
        return []
    if not isinstance(mods, list) or not isinstance(dirs, list) or not all(isinstance(x, str) for x in mods + dirs):
        return [f"{path}:{_line_for(lines, ('plugins',))}: plugins and python_path must be lists of strings"]
    base = path.parent.resolve()
    folders = [str(p if (p := Path(os.path.expanduser(d))).is_absolute() else (base / p).resolve()) for d in dirs]
    try:
        import_plugins(mods, folders)
    except BenchError as e:
        return [f"{path}:{_line_for(lines, ('plugins',))}: plugins: {e}"]
    return []


def load_suite(path: str | os.PathLike, check_paths: bool = True) -> Suite:
    """Parse and validate a suite. Raises SuiteError with every problem found."""
    from adapters import ADAPTERS  # registries are filled on import
    from bench.tasks import TASKS

    path = Path(path)
    node, data = _read_yaml(path)
    if data is None:
        raise SuiteError([f"{path}:1: the suite file is empty; it needs name, models and tasks"])
    if not isinstance(data, dict):
        raise SuiteError([f"{path}:1: a suite must be a mapping with name, models and tasks"])
    problems: list[str] = _yaml_graph(node, path)
    lines = _node_lines(node) if node is not None else {}
    written = data  # kept unexpanded: task hashes must not depend on this machine's paths
    data = _expand_env(data, (), lines, path, problems)
    ctx = {"base": str(path.parent.resolve()), "check_paths": check_paths}
    problems += _import_plugins(data, path, lines)

    head = None
    try:
        head = SuiteHead.model_validate(data, context=ctx)
    except ValidationError as e:
        problems += _format_errors(e, data, (), lambda sub, d: _fields(SuiteHead, sub, d), lines, path)

    # models and tasks are checked even when the top level has problems, so all are reported at once
    raw_models = [m for m in data.get("models") or [] if isinstance(m, dict)] if isinstance(data.get("models"), list) else []
    raw_tasks = [t for t in data.get("tasks") or [] if isinstance(t, dict)] if isinstance(data.get("tasks"), list) else []
    models, tasks = [], []
    for i, raw in enumerate(raw_models):
        loc = ("models", i)
        adapter = raw.get("adapter")
        if adapter not in ADAPTERS:
            problems.append(
                f"{path}:{_line_for(lines, loc + ('adapter',))}: models[{i}].adapter: unknown adapter '{adapter}'{did_you_mean(adapter, ADAPTERS.list())}"
            )
            continue
        cls = ADAPTERS.get(adapter)
        try:
            models.append(cls.Args.model_validate(raw, context=ctx))
        except ValidationError as e:
            problems += _format_errors(e, data, loc, lambda sub, d, c=cls, at=loc: _fields(c.Args, sub, d[at[0]][at[1]]), lines, path)
    for i, raw in enumerate(raw_tasks):
        loc = ("tasks", i)
        ttype = raw.get("type")
        if ttype not in TASKS:
            problems.append(f"{path}:{_line_for(lines, loc + ('type',))}: tasks[{i}].type: unknown task type '{ttype}'{did_you_mean(ttype, TASKS.list())}")
            continue
        cls = TASKS.get(ttype)
        try:
            tasks.append(cls.Config.model_validate(raw, context=ctx))
        except ValidationError as e:
            problems += _format_errors(e, data, loc, lambda sub, d, c=cls, at=loc: _fields(c.Config, sub, d[at[0]][at[1]]), lines, path)

    for kind, raws in (("models", raw_models), ("tasks", raw_tasks)):
        seen = set()
        for i, raw in enumerate(raws):
            if raw.get("name") in seen:
                problems.append(f"{path}:{_line_for(lines, (kind, i, 'name'))}: {kind}[{i}].name: duplicate name '{raw.get('name')}'")
            seen.add(raw.get("name"))
    if problems or head is None:
        raise SuiteError(problems)
    return Suite(
        path=path.resolve(),
        name=head.name,
        defaults=head.defaults,
        models=models,
        tasks=tasks,
        matrix=head.matrix,
        check=head.check,
        slurm=head.slurm,
        uncertainty=head.uncertainty,
        plugins=head.plugins,
        python_path=head.python_path,
        raw_models=list(written.get("models", [])),
        raw_tasks=list(written.get("tasks", [])),
        lines=lines,
    )
