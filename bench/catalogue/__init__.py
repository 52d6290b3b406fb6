"""The zero-shot catalogue: class names, templates and label maps of the datasets CLIP_benchmark evaluates.

`zero_shot: {catalogue: NAME}` takes a dataset's prompts from here instead of files; its templates
use CLIP_benchmark's `{c}` for the class name (bench's own files use `{}`; both are accepted).
Entries without class names take them from the dataset, as CLIP_benchmark does. Sources and
licences: SOURCES.md beside this file; scripts/build_catalogue.py rebuilds it.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from importlib import resources
from typing import Optional

from bench.registry import did_you_mean


@dataclass(frozen=True)
class Entry:
    name: str
    templates: tuple[str, ...]
    classnames: Optional[tuple[str, ...]]  # None: the dataset's own names
    label_map: Optional[tuple[int, ...]]  # ImageNet-A/R: each class's index among the 1k outputs
    source: str


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files(__name__).joinpath("catalogue.json").read_text(encoding="utf-8"))


def names() -> list[str]:
    return sorted(_table())


def check(name: str) -> str:
    """The name, or ValueError with a did-you-mean (for suite validation)."""
    if name not in _table():
        raise ValueError(f"no catalogue dataset '{name}'{did_you_mean(name, names())} (see `bench data list`)")
    return name


def entry(name: str) -> Entry:
    e = _table()[check(name)]
    lm = e.get("label_map")
    return Entry(name, tuple(e["templates"]), tuple(e["classnames"]) if e["classnames"] else None, tuple(lm) if lm else None, e["source"])


@functools.lru_cache(maxsize=2)
def cupl(name: str) -> dict[str, list[str]]:
    """CuPL's per-class prompts {class name: [prompts]} (ImageNet-1k)."""
    with gzip.open(resources.files(__name__).joinpath("cupl.json.gz").open("rb"), "rt", encoding="utf-8") as f:
        table = json.load(f)
    if name not in table:
        raise ValueError(f"the catalogue has CuPL prompts for {', '.join(sorted(table))}, not '{name}'")
    return table[name]


def fill(template: str, name: str) -> str:
    """A prompt from a template in either convention: CLIP_benchmark's `{c}` or bench's `{}`."""
    return template.format(c=name) if "{c}" in template else template.format(name)
