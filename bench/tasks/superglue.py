"""SuperGLUE: the 8 scored tasks and the two diagnostics, with the leaderboard's metrics and score.

Protocols, picked from what the model offers (or forced with `protocol:`):
- `predictions`: submission-format files from any method, scored on val;
- `classifier`: sequence-classification checkpoints fine-tuned per task (`text_pair_logits`);
- `loglik`: a language model ranks verbalised choices by log-likelihood, zero- or few-shot
  (`text_choice_logprobs`), with per-task prompts from the suite;
- `probe`: frozen sentence embeddings of both texts, [u, v, |u−v|, u·v], and a logistic
  regression trained on the train split (`text_features`).
AX-b and AX-g are scored with what RTE uses (its classifier, prompt or probe), as in jiant.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from bench.data.superglue import DIAGNOSTICS, TASKS, Choice, Pair, SuperGlueSpec, SuperGlueTinySpec, load_task, read_jsonl
from bench.errors import DataError
from bench.metrics import superglue as S
from bench.metrics.uncertainty import CHUNK_CELLS, draw_counts, fill, summarize, wilson
from bench.tasks.base import Task, TaskConfig, TaskResult, register_task

TaskName = Literal["boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc", "axb", "axg"]
PROTOCOL_CAPS = {
    "predictions": frozenset({"predictions"}),
    "classifier": frozenset({"text_pair_logits"}),
    "loglik": frozenset({"text_choice_logprobs"}),
    "probe": frozenset({"text_features"}),
}

# lm-evaluation-harness 0.4's prompts (lm_eval/tasks/super_glue/*/default.yaml), giving its exact
# strings: its choices ("no", "yes") follow its target delimiter " ". Choices are in the task's label
# order (bench.data.superglue.TASKS). MultiRC puts the answer in the context, where lm-eval starts
# each choice with it: the same text, and the same ranking, since both choices share that prefix.
PROMPTS: dict[str, tuple[str, list[str]]] = {
    "boolq": ("{passage}\nQuestion: {question}?\nAnswer:", [" no", " yes"]),
    "cb": ("{premise}\nQuestion: {hypothesis}. True, False, or Neither?\nAnswer:", [" True", " False", " Neither"]),
    "rte": ("{premise}\nQuestion: {hypothesis} True or False?\nAnswer:", [" True", " False"]),
    "axb": ("{sentence1}\nQuestion: {sentence2} True or False?\nAnswer:", [" True", " False"]),
    "axg": ("{premise}\nQuestion: {hypothesis} True or False?\nAnswer:", [" True", " False"]),
    "wic": (
        "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nQuestion: Is the word '{word1}' used in the same way in the two sentences above?\nAnswer:",
        [" no", " yes"],
    ),
    "wsc": ('Passage: {passage}\nQuestion: In the passage above, does the pronoun "*{span2}*" refer to "*{span1}*"?\nAnswer:', [" no", " yes"]),
    "multirc": ("{paragraph}\nQuestion: {question}\nAnswer: {answer}\nIs the answer correct?", [" no", " yes"]),
}


# bootstrap units: all answers of a MultiRC question, both premises of an AX-g pair go together
UNITS = {"multirc": "question", "record": "query", "axg": "pair"}


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str  # str.format fields of the record; WSC adds span1/span2/passage, WiC word1
    choices: Optional[list[str]] = None  # one verbaliser per label, in label order


class ProbeOpts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, gt=0)
    max_train: int = Field(20000, gt=0)  # decisions sampled from train (ReCoRD has ~1.4M candidates)


class SuperGlueConfig(TaskConfig):
    type: Literal["superglue"]
    dataset: Union[SuperGlueSpec, SuperGlueTinySpec] = Field(discriminator="format")
    tasks: list[TaskName] = Field(list(TASKS), min_length=1)
    split: Literal["val", "test"] = "val"
    export_test: bool = False  # also predict the test split, for `bench export superglue`
    protocol: Literal["auto", "predictions", "classifier", "loglik", "probe"] = "auto"
    prompts: dict[TaskName, Prompt] = {}
    fewshot: int = Field(0, ge=0)
    probe: ProbeOpts = ProbeOpts()


def _label_value(task: str, k: int):
    return TASKS[task][1][k] if TASKS[task][1] is not None else k


def prompt_fields(item) -> dict:
    f = dict(item.fields)
    if "target" in f:  # WSC: the repaired spans, and the text with its pronoun starred
        t = f["target"]
        f["span1"], f["span2"] = t["span1_text"], t["span2_text"]
        f["passage"] = wsc_passage(f["text"], t["span2_index"], t["span2_text"])
    if "start1" in f and "end1" in f:  # WiC: the word as sentence 1 spells it, not its lemma
        f["word1"] = f["sentence1"][f["start1"] : f["end1"]]
    return f


def detokenize(text: str) -> str:
    """lm-eval's general_detokenize: WSC's text is tokenized ("Bernard , who" → "Bernard, who")."""
    for a, b in ((" n't", "n't"), (" )", ")"), ("( ", "("), ('" ', '"'), (' "', '"')):
        text = text.replace(a, b)
    return re.sub(r" (['.,])", r"\1", text)


def wsc_passage(text: str, span2_index: int, span2_text: str) -> str:
    """The passage as lm-eval 0.4 writes it: the pronoun at word span2_index starred, then detokenized.

    Its character arithmetic is kept as is (it assumes single spaces between words).
    """
    pre = " ".join(text.split()[:span2_index])
    post = text[len(pre) + len(span2_text) + 1 :]
    return detokenize(pre + f" *{span2_text}*" + post)


@register_task
class SuperGlueTask(Task):
    type = "superglue"
    Config = SuperGlueConfig
    description = "SuperGLUE (8 tasks + AX-b/AX-g) with official metrics and superglue/score; predictions | classifier | loglik | probe"
    needs = frozenset({"predictions", "text_pair_logits", "text_choice_logprobs", "text_features"})
    headline = ("superglue/score",)
    cost = 5.0
    exporter = ("superglue", "bench.export:export_superglue")

    @classmethod
    def required_capabilities(cls, cfg: SuperGlueConfig):
        if cfg.protocol != "auto":
            return PROTOCOL_CAPS[cfg.protocol]
        return tuple(PROTOCOL_CAPS.values())

    def protocol(self, adapter) -> str:
        if self.cfg.protocol != "auto":
            return self.cfg.protocol
        return next(p for p, caps in PROTOCOL_CAPS.items() if caps <= adapter.capabilities)

    # ---------------------------------------------------------------- evaluate
    def evaluate(self, adapter) -> TaskResult:
        cfg = self.cfg
        root = cfg.dataset.path()
        proto = self.protocol(adapter)
        self.adapter, self.root, self.proto = adapter, root, proto
        self._probes: dict = {}
        rows, frames, meta = [], [], {"protocol": proto, "missing": {}}
        splits = [cfg.split] + (["test"] if cfg.export_test and cfg.split != "test" else [])
        per_task: dict[str, dict] = {}
        counts: dict[str, int] = {}
        samples: dict[str, dict] = {}  # task → {metric: one value per bootstrap resample}
        for split in splits:
            for t in cfg.tasks:
                items = load_task(root, t, split)
                if self.ctx.limit:
                    items = self._limit(items)
                preds, missing = self.predict(t, items, split)
                if missing:
                    meta["missing"][f"{t}/{split}"] = missing
                frames.append(predictions_frame(t, split, items, preds))
                labelled = split != "test" or t in DIAGNOSTICS
                if labelled and split == cfg.split:
                    m = score(t, items, preds)
                    per_task[t], counts[t] = m, len(items)
                    task_rows = [{"metric": f"{t}/{k}", "value": v, "dataset": "superglue", "split": split, "n": len(items)} for k, v in m.items()]
                    if self.ctx.uncertainty:
                        samples[t] = resample(t, items, preds, self.ctx.uncertainty)
                        fill(task_rows, intervals(t, items, preds, samples[t], self.ctx.uncertainty))
                    rows += task_rows
        if all(t in per_task for t in S.SCORED):
            n = sum(counts[t] for t in S.SCORED)
            rows.append({"metric": "superglue/score", "value": S.superglue_score(per_task), "dataset": "superglue", "split": cfg.split, "n": n})
            if all(t in samples for t in S.SCORED):
                fill(rows, {"superglue/score": score_interval(samples, self.ctx.uncertainty)})
        if meta["missing"]:
            total = sum(meta["missing"].values())
            meta["warnings"] = [f"{total} predictions missing and counted wrong: " + ", ".join(f"{k} {v}" for k, v in meta["missing"].items())]
        return TaskResult(rows=rows, predictions=pd.concat(frames, ignore_index=True), meta=meta)

    def _limit(self, items: list) -> list:
        rng = np.random.default_rng(self.ctx.seed)
        keep = np.sort(rng.permutation(len(items))[: self.ctx.limit])
        return [items[i] for i in keep]

    # ---------------------------------------------------------------- predict: one label index per item (None = missing)
    def predict(self, t: str, items: list, split: str) -> tuple[list, int]:
        if self.proto == "predictions":
            return read_predictions_file(Path(self.ctx.outputs("predictions", task_name=self.cfg.name)), t, items, split)
        if isinstance(items[0], Choice):
            scores = self._choice_scores(t, items)
            return [int(np.argmax(s)) if len(s) else None for s in scores], 0
        if self.proto == "classifier":
            logits, names = self.ctx.outputs("text_pair_logits", [(i.a, i.b) for i in items], task="rte" if t in DIAGNOSTICS else t)
            return list(self._align(t, logits, names).argmax(1)), 0
        if self.proto == "loglik":
            template, choices = self._prompt(t)
            return list(self._loglik(t, items, template, choices).argmax(1)), 0
        clf = self._probe("rte" if t in DIAGNOSTICS else t)
        return list(clf.predict(self._pair_features([i.a for i in items], [i.b for i in items]))), 0

    def _align(self, t: str, logits: np.ndarray, names: list[str]) -> np.ndarray:
        """Reorder classifier outputs into the task's label order, by id2label name when the names match."""
        labels = [str(v).lower() for v in TASKS["rte" if t in DIAGNOSTICS else t][1]]
        if logits.shape[1] != len(labels):
            raise DataError(f"model '{self.adapter.args.name}': the {t} classifier has {logits.shape[1]} outputs, the task {len(labels)} labels")
        lower = [n.lower() for n in names]
        if sorted(lower) == sorted(labels):
            return logits[:, [lower.index(lab) for lab in labels]]
        return logits  # LABEL_0… : index order is the task's label order (documented)

    # ---------------------------------------------------------------- log-likelihood
    def _prompt(self, t: str) -> tuple[str, list[str]]:
        p = self.cfg.prompts.get(t)
        base_t, base_c = PROMPTS[t]
        template, choices = (p.template, p.choices or base_c) if p else (base_t, base_c)
        n = len(TASKS[t][1])
        if len(choices) != n:
            raise DataError(f"task '{self.cfg.name}': prompt for {t} has {len(choices)} choices for {n} labels")
        return template, choices

    def _fewshot_prefix(self, t: str, fmt) -> str:
        k = self.cfg.fewshot
        if not k:
            return ""
        train = load_task(self.root, "rte" if t in DIAGNOSTICS else t, "train")
        rng = np.random.default_rng(self.ctx.seed)
        shots = [train[i] for i in rng.permutation(len(train))[:k]]
        return "".join(fmt(s) + "\n\n" for s in shots)

    def _loglik(self, t: str, items: list[Pair], template: str, choices: list[str]) -> np.ndarray:
        def fmt(item, with_answer=True):
            try:
                text = template.format(**prompt_fields(item))
            except KeyError as e:
                raise DataError(f"task '{self.cfg.name}': the {t} prompt uses {{{e.args[0]}}}, which its records lack") from None
            return text + (choices[item.label] if with_answer and item.label is not None else "")

        prefix = self._fewshot_prefix(t, fmt)
        ctx = [prefix + fmt(i, with_answer=False) for i in items for _ in choices]
        cont = [c for _ in items for c in choices]
        return np.asarray(self.ctx.outputs("text_choice_logprobs", list(zip(ctx, cont)))).reshape(len(items), len(choices))

    def _choice_scores(self, t: str, items: list[Choice]) -> list[np.ndarray]:
        flat_ctx, flat_cand, sizes = [], [], []
        for it in items:
            for f, c in zip(it.filled, it.candidates):
                if t == "copa":  # lm-eval 0.4's strings: the premise leads into the alternative
                    connector = {"cause": " because", "effect": " therefore"}[it.fields["question"]]
                    flat_ctx.append(it.fields["premise"].strip()[:-1] + connector)  # drops the last character, period or not
                    flat_cand.append("  " + c[0].lower() + c[1:])  # two spaces: its doc_to_choice's and its target delimiter's
                else:
                    flat_ctx.append(it.context + "\n")
                    flat_cand.append("- " + f)
            sizes.append(len(it.candidates))
        if self.proto == "loglik":
            s = np.asarray(self.ctx.outputs("text_choice_logprobs", list(zip(flat_ctx, flat_cand))))
        elif self.proto == "classifier":
            logits, _ = self.ctx.outputs("text_pair_logits", list(zip(flat_ctx, flat_cand)), task=t)
            s = logits[:, -1] - logits[:, 0]  # a 2-way "is this the right candidate" head
        else:
            clf = self._probe(t)
            s = clf.predict_proba(self._pair_features([it.context for it in items for _ in it.candidates], [f for it in items for f in it.filled]))[:, 1]
        out, k = [], 0
        for n in sizes:
            out.append(np.asarray(s[k : k + n]))
            k += n
        return out

    # ---------------------------------------------------------------- probe
    def _embed(self, texts: list[str]) -> np.ndarray:
        uniq = list(dict.fromkeys(texts))  # passages repeat across MultiRC answers and ReCoRD candidates
        emb = np.asarray(self.ctx.outputs("text_features", uniq), dtype=np.float64)
        pos = {t: i for i, t in enumerate(uniq)}
        return emb[[pos[t] for t in texts]]

    def _pair_features(self, a: list[str], b: list[str]) -> np.ndarray:
        u, v = self._embed(a), self._embed(b)
        return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)

    def _probe(self, t: str):
        if t in self._probes:
            return self._probes[t]
        from sklearn.linear_model import LogisticRegression

        train = load_task(self.root, t, "train")
        rng = np.random.default_rng(self.ctx.seed)
        if isinstance(train[0], Choice):
            a = [it.context for it in train for _ in it.candidates]
            b = [f for it in train for f in it.filled]
            y = [
                int(k == it.label) if it.label is not None else int(any(S.exact_match(c, g) for g in it.answers))
                for it in train
                for k, c in enumerate(it.candidates)
            ]
        else:
            a, b, y = [i.a for i in train], [i.b for i in train], [i.label for i in train]
        if len(y) > self.cfg.probe.max_train:
            keep = np.sort(rng.permutation(len(y))[: self.cfg.probe.max_train])
            a, b, y = [a[i] for i in keep], [b[i] for i in keep], [y[i] for i in keep]
        if len(set(y)) < 2:
            raise DataError(f"{self.root}: {t} train split has a single label; a probe cannot be fitted")
        clf = LogisticRegression(C=self.cfg.probe.C, max_iter=self.cfg.probe.max_iter)
        clf.fit(self._pair_features(a, b), np.asarray(y))
        self._probes[t] = clf
        return clf


def read_predictions_file(folder: Path, t: str, items: list, split: str) -> tuple[list, int]:
    """Predictions for items from a submission-format folder: label indices (None = missing), and how many are missing."""
    name = TASKS[t][0]
    path = next((p for p in (folder / f"{name}_{split}.jsonl", folder / f"{name}.jsonl") if p.exists()), None)
    if path is None:
        return [None] * len(items), len(items)
    got: dict = {}
    for n, rec in read_jsonl(path):
        if t == "multirc":
            for q in rec.get("passage", {}).get("questions", []):
                for a in q.get("answers", []):
                    got[(rec["idx"], q["idx"], a["idx"])] = a.get("label")
        else:
            if "label" not in rec:
                raise DataError(f"{path}: line {n}: no 'label'")
            if rec["idx"] in got:
                raise DataError(f"{path}: line {n}: idx {rec['idx']} predicted twice")
            got[rec["idx"]] = rec["label"]
    preds, missing = [], 0
    for it in items:
        key = tuple(it.key) if isinstance(it.key, (list, tuple)) else it.key
        if key not in got:
            preds.append(None)
            missing += 1
            continue
        v = got[key]
        if t == "record":
            preds.append(v)  # the answer text itself
            continue
        labels = TASKS[t][1]
        canon = {str(x).lower(): k for k, x in enumerate(labels)}
        k = canon.get(str(v).lower())
        if k is None:
            raise DataError(f"{path}: idx {it.key}: label {v!r} is not one of {labels}")
        preds.append(k)
    return preds, missing


def predictions_frame(t: str, split: str, items: list, preds: list) -> pd.DataFrame:
    """Per decision: the task, split, item key, prediction and gold, in the leaderboard's label values."""
    def value(it, p):
        if p is None:
            return None
        if t == "record":
            return p if isinstance(p, str) else it.candidates[p]
        return _label_value(t, int(p))

    return pd.DataFrame(
        {
            "task": t,
            "split": split,
            "key": [json.dumps(it.key) for it in items],
            "prediction": [json.dumps(value(it, p)) for it, p in zip(items, preds)],
            "gold": [json.dumps(_label_value(t, it.label)) if getattr(it, "label", None) is not None else None for it in items],
        }
    )


# ---------------------------------------------------------------- score (pure: items and predictions in, numbers out)
def score(t: str, items: list, preds: list) -> dict[str, float]:
    if t == "record":
        return S.record_scores(_record_texts(items, preds), [it.answers for it in items])
    pred, gold = _pred_gold(items, preds)
    if t == "cb":
        return {"acc": S.accuracy(pred, gold), "f1": S.cb_macro_f1(pred, gold)}
    if t == "multirc":
        return S.multirc_scores([it.group for it in items], pred, gold)
    if t == "axb":
        return {"mcc": S.matthews(pred, gold)}
    if t == "axg":
        return {"acc": S.accuracy(pred, gold), "parity": S.gender_parity([it.group for it in items], pred)}
    return {"acc": S.accuracy(pred, gold)}

def weighted_score(t: str, items: list, preds: list, w: np.ndarray) -> dict:
    """score() with item i counted w[..., i] times; a (resamples, n) w gives one value per resample."""
    if t == "record":
        return S.weighted_record_scores(_record_texts(items, preds), [it.answers for it in items], w)
    pred, gold = _pred_gold(items, preds)
    if t == "cb":
        return {"acc": S.weighted_accuracy(pred, gold, w), "f1": S.weighted_cb_macro_f1(pred, gold, w)}
    if t == "multirc":
        return S.weighted_multirc_scores([it.group for it in items], pred, gold, w)
    if t == "axb":
        return {"mcc": S.weighted_matthews(pred, gold, w)}
    if t == "axg":
        return {"acc": S.weighted_accuracy(pred, gold, w), "parity": S.weighted_gender_parity([it.group for it in items], pred, w)}
    return {"acc": S.weighted_accuracy(pred, gold, w)}

# ---------------------------------------------------------------- uncertainty
def resample(t: str, items: list, preds: list, spec) -> dict[str, np.ndarray]:
    """Each metric on every bootstrap resample of the task's units (items; MultiRC questions, AX-g pairs).

    Each task draws from its own stream of the suite's seed: the tasks are independent datasets,
    and a task's interval does not depend on which other tasks ran.
    """
    unit = _units(t, items)
    n_units = int(unit.max()) + 1
    rng = np.random.default_rng([spec.seed, list(TASKS).index(t)])
    chunk = max(1, min(spec.resamples, CHUNK_CELLS // max(len(items), 1)))
    parts: dict[str, list] = {}
    for start in range(0, spec.resamples, chunk):
        w = draw_counts(n_units, min(chunk, spec.resamples - start), rng)[:, unit]  # a unit's count goes to all its items
        for k, v in weighted_score(t, items, preds, w).items():
            parts.setdefault(k, []).append(np.asarray(v, np.float64))
    return {k: np.concatenate(v) for k, v in parts.items()}

def intervals(t: str, items: list, preds: list, samples: dict[str, np.ndarray], spec) -> dict:
    """Row intervals ("<task>/<metric>"): percentile bootstrap, or Wilson for accuracies when asked."""
    out = {f"{t}/{k}": summarize(v, spec.level, _method(spec, UNITS.get(t, "item"))) for k, v in samples.items()}
    if spec.method == "wilson" and "acc" in samples:
        pred, gold = _pred_gold(items, preds)
        out[f"{t}/acc"] = wilson(float(np.sum(pred == gold)), len(items), spec.level)
    return out

def score_interval(samples: dict[str, dict], spec):
    """superglue/score per resample: the 8 tasks' b-th resamples averaged as the leaderboard averages."""
    per_resample = np.mean([np.mean([samples[t][m] for m in S.PRIMARY[t]], axis=0) for t in S.SCORED], axis=0)
    return summarize(per_resample, spec.level, _method(spec, "each task's own: item; MultiRC question; ReCoRD query"))



def _pred_gold(items: list, preds: list) -> tuple[np.ndarray, np.ndarray]:
    gold = np.asarray([it.label for it in items])
    # a missing prediction can never equal a gold label
    pred = np.asarray([-1 if p is None else int(p) for p in preds])
    return pred, gold


def _record_texts(items: list, preds: list) -> list:
    """ReCoRD predictions as answer text: files give text, models a candidate index."""
    return [p if isinstance(p, str) or p is None else items[i].candidates[p] for i, p in enumerate(preds)]


def _units(t: str, items: list) -> np.ndarray:
    """Each item's bootstrap unit, numbered 0..U-1: its question (MultiRC), its pair (AX-g), else itself."""
    if t not in ("multirc", "axg"):
        return np.arange(len(items))
    ids: dict = {}
    return np.asarray([ids.setdefault(it.group if it.group is not None else ("item", k), len(ids)) for k, it in enumerate(items)])


def _method(spec, unit: str) -> str:
    return f"bootstrap(unit={unit},resamples={spec.resamples},seed={spec.seed})"
