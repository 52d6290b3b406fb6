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
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from bench.errors import SuiteError
from bench.registry import did_you_mean

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- paths
def _resolve(value: str, info: ValidationInfo) -> str:
    base = (info.context or {}).get("base", ".")
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (Path(base) / p).resolve())


def _resolve_existing(value: str, info: ValidationInfo) -> str:
    path = _resolve(value, info)
    if (info.context or {}).get("check_paths", True) and not os.path.exists(path):
        raise ValueError(f"path does not exist: {path}")
    return path


# A path resolved against the suite file's folder; ExistingPath must also exist.
SuitePath = Annotated[str, AfterValidator(_resolve)]
ExistingPath = Annotated[str, AfterValidator(_resolve_existing)]


# ---------------------------------------------------------------- top level
class Defaults(Strict):
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
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


class SuiteHead(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    defaults: Defaults = Defaults()
    models: list[dict[str, Any]] = Field(min_length=1)
    tasks: list[dict[str, Any]] = Field(min_length=1)
    matrix: Optional[Matrix] = None
    check: CheckSpec = CheckSpec()
    slurm: Optional[dict[str, Any]] = None  # `bench run --launcher slurm` settings (bench.launch.SlurmConfig)

    @field_validator("slurm")
    @classmethod
    def _slurm(cls, v):
        if v is not None:
            from bench.launch import SlurmConfig

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


# ---------------------------------------------------------------- load
def load_suite(path: str | os.PathLike, check_paths: bool = True) -> Suite:
    """Parse and validate a suite. Raises SuiteError with every problem found."""
    from adapters import ADAPTERS  # registries are filled on import
    from bench.tasks import TASKS

    path = Path(path)
    if not path.is_file():
        raise SuiteError([f"{path}: suite file not found"])
    text = path.read_text()
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SuiteError([f"{where}: malformed YAML: {problem}"]) from None
    if not isinstance(data, dict):
        raise SuiteError([f"{path}:1: a suite must be a mapping with name, models and tasks"])
    lines = _node_lines(node) if node is not None else {}
    problems: list[str] = []
    written = data  # kept unexpanded: task hashes must not depend on this machine's paths
    data = _expand_env(data, (), lines, path, problems)
    ctx = {"base": str(path.parent.resolve()), "check_paths": check_paths}

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
        raw_models=list(written.get("models", [])),
        raw_tasks=list(written.get("tasks", [])),
        lines=lines,
    )
