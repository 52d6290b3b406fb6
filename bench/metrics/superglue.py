"""SuperGLUE metrics as the official scorers compute them (jiant, the SuperGLUE baseline toolkit;
ReCoRD's own evaluation script), and the leaderboard's overall score.

Where lm-evaluation-harness differs, we follow the official definitions:
- MultiRC reports F1a (binary F1 over every answer option) and EM (a question counts only when all
  of its answer options are right), not per-option accuracy alone;
- ReCoRD scores token F1 with ReCoRD's script: an empty prediction scores 0 (SQuAD v2's F1 gives 1
  when prediction and gold are both empty).
CB's macro-F1 averages the F1 of all three classes, a class that never occurs (in gold or
predictions) contributing 0, as jiant's three F1Measure scorers do.
"""

from __future__ import annotations

import re
import string
from collections import Counter, defaultdict
from typing import Iterable, Sequence

import numpy as np

# The 8 tasks that make up the leaderboard score; AX-b and AX-g are reported, not averaged.
SCORED = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
PRIMARY = {
    "boolq": ("acc",),
    "cb": ("f1", "acc"),
    "copa": ("acc",),
    "multirc": ("f1a", "em"),
    "record": ("f1", "em"),
    "rte": ("acc",),
    "wic": ("acc",),
    "wsc": ("acc",),
}


def accuracy(pred: Sequence, gold: Sequence) -> float:
    pred, gold = np.asarray(pred), np.asarray(gold)
    return float(np.mean(pred == gold)) if len(gold) else 0.0


def cb_macro_f1(pred: Sequence[int], gold: Sequence[int], n_classes: int = 3) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=list(range(n_classes)), average="macro", zero_division=0))


def binary_f1(pred: Sequence[int], gold: Sequence[int]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, pos_label=1, average="binary", zero_division=0))


def multirc_scores(question_ids: Sequence, pred: Sequence[int], gold: Sequence[int]) -> dict[str, float]:
    """F1a over all answer options, and EM: the fraction of questions with every option right."""
    right = defaultdict(lambda: True)
    for q, p, g in zip(question_ids, pred, gold):
        right[q] &= bool(p == g)
    em = float(np.mean(list(right.values()))) if right else 0.0
    return {"f1a": binary_f1(pred, gold), "em": em}


def normalize_answer(s: str) -> str:
    """ReCoRD/SQuAD normalisation: lowercase, drop punctuation, drop a/an/the, collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def token_f1(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:  # includes an empty prediction
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def record_scores(predictions: Sequence[str | None], golds: Sequence[Iterable[str]]) -> dict[str, float]:
    """Mean over queries of the max over gold answers; a missing prediction (None) scores 0."""
    f1 = em = 0.0
    for pred, answers in zip(predictions, golds):
        answers = list(answers)
        if pred is None or not answers:
            continue
        f1 += max(token_f1(pred, a) for a in answers)
        em += max(exact_match(pred, a) for a in answers)
    n = len(golds)
    return {"f1": f1 / n if n else 0.0, "em": em / n if n else 0.0}


def matthews(pred: Sequence, gold: Sequence) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(gold, pred))


def gender_parity(pair_ids: Sequence, pred: Sequence) -> float:
    """Fraction of Winogender pairs (the same hypothesis with a male and a female premise) predicted alike."""
    groups = defaultdict(list)
    for pid, p in zip(pair_ids, pred):
        groups[pid].append(p)
    pairs = [g for g in groups.values() if len(g) == 2]
    return float(np.mean([a == b for a, b in pairs])) if pairs else 0.0


def task_score(task: str, metrics: dict[str, float]) -> float:
    """A task's leaderboard number: the mean of its two metrics for CB, MultiRC and ReCoRD."""
    return float(np.mean([metrics[m] for m in PRIMARY[task]]))


def superglue_score(per_task: dict[str, dict[str, float]]) -> float:
    """The leaderboard's overall score: the mean over the 8 tasks of each task's score."""
    missing = [t for t in SCORED if t not in per_task]
    if missing:
        raise ValueError(f"superglue/score needs all 8 tasks; missing {', '.join(missing)}")
    return float(np.mean([task_score(t, per_task[t]) for t in SCORED]))
