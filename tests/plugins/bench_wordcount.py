"""An out-of-package plugin, as a third party would write one: a task family and an adapter.

The family scores how often a model's one-word answer to each prompt is the expected word; the
adapter is a lookup table. Both register through bench's public registries and declare what the
contract asks: capabilities, a headline metric, a cost.
"""

from typing import Literal

import json
from pathlib import Path

import numpy as np
import pandas as pd

from adapters import Adapter, AdapterArgs, register_adapter
from bench.capabilities import CAPABILITIES, register_capability
from bench.paths import ExistingFile
from bench.tasks import Task, TaskConfig, TaskResult, register_task

if "word_answers" not in CAPABILITIES:
    register_capability("word_answers", "texts", "word_answers", "one word answering each prompt")


class WordConfig(TaskConfig):
    type: Literal["wordcount"]
    data: ExistingFile  # lines "prompt<TAB>expected word"


@register_task
class WordTask(Task):
    type = "wordcount"
    Config = WordConfig
    description = "fraction of prompts answered with the expected word (a plugin example)"
    needs = frozenset({"word_answers"})
    headline = ("word/acc",)
    cost = 1.0
    exporter = ("words", "bench_wordcount:export_answers")

    @classmethod
    def required_capabilities(cls, cfg):
        return frozenset({"word_answers"})

    def evaluate(self, adapter) -> TaskResult:
        lines = [ln.split("\t") for ln in open(self.cfg.data).read().splitlines() if ln.strip()]
        prompts, gold = [p for p, _ in lines], [g for _, g in lines]
        answers = self.ctx.outputs("word_answers", prompts)
        hit = np.asarray([a == g for a, g in zip(answers, gold)], float)
        row = {"metric": "word/acc", "value": float(hit.mean()), "dataset": "words", "split": "val", "n": len(hit)}
        return TaskResult(rows=[row], predictions=pd.DataFrame({"prompt": prompts, "answer": answers, "gold": gold}))


def export_answers(results, out, model, types):
    """`bench export words`: each model's answers as JSON, from the predictions bench wrote."""
    written = []
    for rj in sorted(Path(results).rglob("run.json")):
        run = json.loads(rj.read_text())
        wanted = {t["name"] for t in run["suite"]["tasks"] if t["type"] in types}
        for h, j in run["jobs"].items():
            if j["task"] in wanted and j["status"] == "ok" and (model is None or j["model"] == model):
                preds = pd.read_parquet(rj.parent / "predictions" / f"{h}.parquet")
                path = Path(out) / f"{j['model']}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(dict(zip(preds.prompt, preds.answer))))
                written.append((path, f"{len(preds)} answers"))
    return written


class TableArgs(AdapterArgs):
    adapter: Literal["word_table"]
    answers: dict[str, str] = {}


@register_adapter
class TableAdapter(Adapter):
    name = "word_table"
    Args = TableArgs
    description = "answers prompts from a table in the suite (a plugin example)"
    offers = "word_answers"
    provides = frozenset({"word_answers"})

    @classmethod
    def capabilities_for(cls, args):
        return frozenset({"word_answers"})

    def __init__(self, args, **kw):
        super().__init__(args, **kw)

    def word_answers(self, prompts):
        return [self.args.answers.get(p, "") for p in prompts]
