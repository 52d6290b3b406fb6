"""SuperGLUE in its official jsonl layout: <root>/<Task>/{train,val,test}.jsonl, AX-b/AX-b.jsonl, AX-g/AX-g.jsonl.

Each task becomes a list of decisions a model makes:
- ``Pair``: classify a text pair into the task's labels (BoolQ, CB, RTE, WiC, WSC, AX-b, AX-g, and
  each MultiRC answer option, grouped by question);
- ``Choice``: pick one of several candidates (COPA's two alternatives, ReCoRD's passage entities).
``key`` is what the leaderboard's submission file is keyed by.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from bench.data.images import _publish
from bench.paths import cache_dir
from bench.errors import DataError
from bench.paths import ExistingPath, SuitePath

# task → (folder and file name on the leaderboard, labels in class-index order)
TASKS: dict[str, tuple[str, Optional[list]]] = {
    "boolq": ("BoolQ", [False, True]),
    "cb": ("CB", ["entailment", "contradiction", "neutral"]),
    "copa": ("COPA", [0, 1]),
    "multirc": ("MultiRC", [0, 1]),
    "record": ("ReCoRD", None),
    "rte": ("RTE", ["entailment", "not_entailment"]),
    "wic": ("WiC", [False, True]),
    "wsc": ("WSC", [False, True]),
    "axb": ("AX-b", ["entailment", "not_entailment"]),
    "axg": ("AX-g", ["entailment", "not_entailment"]),
}
DIAGNOSTICS = ("axb", "axg")  # test-only sets, scored with the RTE classifier


@dataclass
class Pair:
    key: Any  # idx, or (paragraph, question, answer) idx for MultiRC
    a: str
    b: str
    label: Optional[int]  # class index, None on test
    fields: dict  # the raw fields, for prompts
    group: Any = None  # MultiRC question, AX-g pair_id


@dataclass
class Choice:
    key: Any  # idx (COPA), query idx (ReCoRD)
    context: str
    candidates: list[str]  # the texts to pick from (ReCoRD: entity strings)
    filled: list[str]  # each candidate in context: COPA's alternative, ReCoRD's query with the entity
    label: Optional[int]  # index of the right candidate (COPA); None for ReCoRD
    answers: list[str] = field(default_factory=list)  # ReCoRD gold answer texts
    fields: dict = field(default_factory=dict)


def task_file(root: str, task: str, split: str) -> Path:
    name = TASKS[task][0]
    if task in DIAGNOSTICS:
        return Path(root) / name / f"{name}.jsonl"
    return Path(root) / name / f"{split}.jsonl"


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {n}: malformed JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}: line {n}: expected a JSON object")
            if "idx" not in rec:
                raise DataError(f"{path}: line {n}: no 'idx' (every SuperGLUE record has one)")
            out.append((n, rec))
    return out


def _label(task: str, rec: dict, path: Path, n: int, labelled: bool) -> Optional[int]:
    if not labelled or "label" not in rec:
        if labelled and task not in ("record", "multirc"):
            raise DataError(f"{path}: line {n}: no 'label'")
        return None
    labels = TASKS[task][1]
    if rec["label"] not in labels:
        raise DataError(f"{path}: line {n}: label {rec['label']!r} is not one of {labels}")
    return labels.index(rec["label"])


def _get(rec: dict, key: str, path: Path, n: int):
    try:
        return rec[key]
    except KeyError:
        raise DataError(f"{path}: line {n}: no '{key}'") from None


# WSC spans that HF's wsc.fixed leaves alone: the subjects have intervening text
WSC_UNFIXABLE = ("Kamenev and Zinoviev", "Kamenev, Zinoviev, and Stalin")


def wsc_fixed_target(text: str, target: dict) -> dict:
    """WSC's target with the spans repaired as HF's `wsc.fixed` config does (the data lm-eval reads).

    A span that is not a substring of the text takes the case of the word at its index and loses
    a trailing period and stray newlines. The one "theyscold" record moves span2_index to 10, as
    HF's fix does (its text replacement is a no-op there, so the text is kept).
    """
    t = dict(target)
    words = text.split()
    for k in ("span1", "span2"):
        span, index = t[f"{k}_text"], t[f"{k}_index"]
        if span in text or span in WSC_UNFIXABLE or not span:
            continue
        if "theyscold" in span:
            t["span2_index"] = 10
        if 0 <= index < len(words):
            span = (span[0].lower() if words[index][0].islower() else span[0].upper()) + span[1:]
        t[f"{k}_text"] = span.rstrip(".").replace("\n", " ")
    return t


def load_task(root: str, task: str, split: str) -> list:
    """Pairs or Choices for one task and split; labels are read unless the split is test."""
    path = task_file(root, task, split)
    labelled = split != "test" or task in DIAGNOSTICS
    items: list = []
    for n, rec in read_jsonl(path):
        g = lambda k: _get(rec, k, path, n)  # noqa: E731
        if task == "boolq":
            items.append(Pair(rec["idx"], g("passage"), g("question"), _label(task, rec, path, n, labelled), rec))
        elif task in ("cb", "rte", "axg"):
            items.append(Pair(rec["idx"], g("premise"), g("hypothesis"), _label(task, rec, path, n, labelled), rec, rec.get("pair_id")))
        elif task == "axb":
            items.append(Pair(rec["idx"], g("sentence1"), g("sentence2"), _label(task, rec, path, n, labelled), rec))
        elif task == "wic":
            items.append(Pair(rec["idx"], g("sentence1"), g("sentence2"), _label(task, rec, path, n, labelled), rec))
        elif task == "wsc":
            t = wsc_fixed_target(g("text"), g("target"))
            fields = {**rec, "target": t}  # the repaired spans: what prompts quote
            items.append(Pair(rec["idx"], rec["text"], f"{t['span2_text']} refers to {t['span1_text']}", _label(task, rec, path, n, labelled), fields))
        elif task == "copa":
            connector = {"cause": "because", "effect": "so"}[g("question")]
            alts = [g("choice1"), g("choice2")]
            filled = [f"{rec['premise'].rstrip('.')} {connector} {c[0].lower() + c[1:]}" for c in alts]
            items.append(Choice(rec["idx"], g("premise"), alts, filled, _label(task, rec, path, n, labelled), fields=rec))
        elif task == "multirc":
            p = g("passage")
            for q in p.get("questions", []):
                for a in q.get("answers", []):
                    if "idx" not in a or "idx" not in q:
                        raise DataError(f"{path}: line {n}: a MultiRC question or answer has no 'idx'")
                    label = None
                    if labelled:
                        if a.get("label") not in (0, 1):
                            raise DataError(f"{path}: line {n}: answer {a['idx']}: label {a.get('label')!r} is not one of [0, 1]")
                        label = a["label"]
                    fields = {"paragraph": p["text"], "question": q["question"], "answer": a["text"]}
                    items.append(Pair((rec["idx"], q["idx"], a["idx"]), p["text"], f"{q['question']} {a['text']}", label, fields, (rec["idx"], q["idx"])))
        elif task == "record":
            p = g("passage")
            text = p["text"]
            ents = list(dict.fromkeys(text[e["start"] : e["end"] + 1] for e in p.get("entities", [])))
            for qa in g("qas"):
                if "idx" not in qa:
                    raise DataError(f"{path}: line {n}: a ReCoRD query has no 'idx'")
                answers = [a["text"] for a in qa.get("answers", [])] if labelled else []
                filled = [qa["query"].replace("@placeholder", e) for e in ents]
                context = text.replace("@highlight\n", "- ")
                items.append(Choice(qa["idx"], context, ents, filled, None, answers, {"passage": context, "query": qa["query"]}))
    if not items:
        raise DataError(f"{path}: no records")
    return items


class SuperGlueSpec(BaseModel):
    """The official SuperGLUE download, unpacked: root/BoolQ/train.jsonl, …, root/AX-g/AX-g.jsonl."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["superglue"]
    root: ExistingPath

    def path(self) -> str:
        return self.root


class SuperGlueTinySpec(BaseModel):
    """A tiny SuperGLUE-format set the project writes itself (offline smoke and tests)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["superglue_tiny"]
    root: Optional[SuitePath] = None  # default: $BENCH_CACHE/datasets/superglue-tiny

    def path(self) -> str:
        root = Path(self.root) if self.root else cache_dir() / "datasets" / "superglue-tiny"
        if not (root / ".complete").exists():
            from bench.data.superglue_tiny import write_tiny

            tmp = root.with_name(root.name + f".tmp{os.getpid()}")
            write_tiny(tmp, TASKS, DIAGNOSTICS)
            (tmp / ".complete").write_text("bench's tiny SuperGLUE-format set\n")
            _publish(tmp, root)
        return str(root)


SuperGlueDatasetSpec = Field(discriminator="format")
