"""SuperGLUE metrics as the official scorers compute them (jiant, the SuperGLUE baseline toolkit;
ReCoRD's own evaluation script), and the leaderboard's overall score.

Where lm-evaluation-harness differs, we follow the official definitions:
- MultiRC reports F1a (binary F1 over every answer option) and EM (a question counts only when all
  of its answer options are right), not per-option accuracy alone. lm-eval 0.4's MultiRC `acc` is
  also inverted: its choices are ["… yes", "… no"] indexed by the label, so a right answer (label 1)
  is scored as "no" and its `acc` is 1 − the per-option accuracy of the same choices;
- ReCoRD scores token F1 with ReCoRD's script: an empty prediction scores 0 (SQuAD v2's F1 gives 1
  when prediction and gold are both empty).
CB's macro-F1 averages the F1 of all three classes, a class that never occurs (in gold or
predictions) contributing 0, as jiant's three F1Measure scorers do.

The `weighted_*` versions count item i w[i] times (integer weights equal duplicating items), for
bootstrap intervals: w is one (n,) vector or a (resamples, n) matrix of draw counts, and the
metric comes back as a float or one value per resample. They are sums of weighted indicators,
so they run all resamples at once.
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

    # a missing prediction (-1) is a negative: sklearn's binary average refuses a third label
    return float(f1_score(np.asarray(gold) == 1, np.asarray(pred) == 1, average="binary", zero_division=0))


def multirc_scores(question_ids: Sequence, pred: Sequence[int], gold: Sequence[int]) -> dict[str, float]:
    """F1a over all answer options, and EM: the fraction of questions with every option right."""
    _, right = multirc_question_correct(question_ids, pred, gold)
    return {"f1a": binary_f1(pred, gold), "em": float(right.mean()) if len(right) else 0.0}


def multirc_question_correct(question_ids: Sequence, pred: Sequence[int], gold: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per question, in order of first appearance: the index of its first answer, and whether every answer is right."""
    first: dict = {}
    right: dict = {}
    for i, (q, p, g) in enumerate(zip(question_ids, pred, gold)):
        first.setdefault(q, i)
        right[q] = right.get(q, True) and bool(p == g)
    return np.asarray(list(first.values()), np.int64), np.asarray([right[q] for q in first], np.float64)


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
    per = record_query_scores(predictions, golds)
    n = len(golds)
    return {k: float(v.sum() / n) if n else 0.0 for k, v in per.items()}


def record_query_scores(predictions: Sequence[str | None], golds: Sequence[Iterable[str]]) -> dict[str, np.ndarray]:
    """Per query: token F1 and EM, each the max over its gold answers (0 for a missing prediction or no gold)."""
    f1, em = np.zeros(len(golds)), np.zeros(len(golds))
    for i, (pred, answers) in enumerate(zip(predictions, golds)):
        answers = list(answers)
        if pred is None or not answers:
            continue
        f1[i] = max(token_f1(pred, a) for a in answers)
        em[i] = max(exact_match(pred, a) for a in answers)
    return {"f1": f1, "em": em}


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


# ---------------------------------------------------------------- weighted (bootstrap) versions


def _weights(w) -> np.ndarray:
    return np.asarray(w, np.float64)


def _mean(w: np.ndarray, x: np.ndarray):
    """Weighted mean of per-item values x over the last axis of w; 0 where no weight is left."""
    total = w.sum(-1)
    out = np.divide(w @ x, total, out=np.zeros_like(total, dtype=np.float64), where=total > 0)
    return float(out) if out.ndim == 0 else out


def weighted_accuracy(pred: Sequence, gold: Sequence, w) -> float | np.ndarray:
    return _mean(_weights(w), (np.asarray(pred) == np.asarray(gold)).astype(np.float64))


def weighted_confusion(pred: Sequence, gold: Sequence, w, labels: Sequence) -> np.ndarray:
    """(..., K, K) weighted counts, rows gold and columns predicted, over `labels` (which must hold every value)."""
    pos = {v: k for k, v in enumerate(labels)}
    k = len(labels)
    cell = np.asarray([pos[g] * k + pos[p] for g, p in zip(np.asarray(gold).tolist(), np.asarray(pred).tolist())], np.int64)
    onehot = np.zeros((len(cell), k * k))
    onehot[np.arange(len(cell)), cell] = 1.0
    w = _weights(w)
    return (w @ onehot).reshape(w.shape[:-1] + (k, k))


def _f1_of(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """2TP / (2TP + FP + FN), 0 where the class never occurs (sklearn's zero_division=0)."""
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)


def _as_result(x: np.ndarray):
    return float(x) if np.ndim(x) == 0 else x


def weighted_cb_macro_f1(pred: Sequence[int], gold: Sequence[int], w, n_classes: int = 3) -> float | np.ndarray:
    # a missing prediction (-1) gets its own column: it is nobody's true positive
    labels = list(range(n_classes)) + sorted(set(np.asarray(pred).tolist()) - set(range(n_classes)))
    c = weighted_confusion(pred, gold, w, labels)
    tp = np.diagonal(c, axis1=-2, axis2=-1)[..., :n_classes]
    fp = c.sum(-2)[..., :n_classes] - tp
    fn = c.sum(-1)[..., :n_classes] - tp
    return _as_result(_f1_of(tp, fp, fn).mean(-1))


def weighted_binary_f1(pred: Sequence[int], gold: Sequence[int], w) -> float | np.ndarray:
    c = weighted_confusion(np.asarray(pred) == 1, np.asarray(gold) == 1, w, [False, True])
    tp = c[..., 1, 1]
    return _as_result(_f1_of(tp, c[..., 0, 1], c[..., 1, 0]))


def weighted_matthews(pred: Sequence, gold: Sequence, w) -> float | np.ndarray:
    """sklearn's multiclass MCC on weighted counts: 0 when either marginal is constant."""
    labels = sorted(set(np.asarray(gold).tolist()) | set(np.asarray(pred).tolist()))
    c = weighted_confusion(pred, gold, w, labels)
    t, p = c.sum(-1), c.sum(-2)
    n, correct = c.sum((-2, -1)), np.trace(c, axis1=-2, axis2=-1)
    cov_tp = correct * n - (t * p).sum(-1)
    cov_pp = n * n - (p * p).sum(-1)
    cov_tt = n * n - (t * t).sum(-1)
    denom = np.sqrt(cov_tt * cov_pp)
    return _as_result(np.divide(cov_tp, denom, out=np.zeros_like(denom), where=denom > 0))


def weighted_multirc_scores(question_ids: Sequence, pred: Sequence[int], gold: Sequence[int], w) -> dict:
    """F1a over answers and EM over questions, with w per answer.

    All answers of a question carry the question's weight (a bootstrap over questions, expanded to
    their answers); EM weighs each question by the weight of its first answer.
    """
    w = _weights(w)
    first, right = multirc_question_correct(question_ids, pred, gold)
    return {"f1a": weighted_binary_f1(pred, gold, w), "em": _mean(w[..., first], right)}


def weighted_record_scores(predictions: Sequence[str | None], golds: Sequence[Iterable[str]], w) -> dict:
    per = record_query_scores(predictions, golds)
    w = _weights(w)
    return {k: _mean(w, v) for k, v in per.items()}


def weighted_gender_parity(pair_ids: Sequence, pred: Sequence, w) -> float | np.ndarray:
    """Parity over complete pairs, each weighted by its first item's weight (a bootstrap over pairs)."""
    first: dict = {}
    preds: dict = defaultdict(list)
    for i, (pid, p) in enumerate(zip(pair_ids, pred)):
        first.setdefault(pid, i)
        preds[pid].append(p)
    pairs = [pid for pid in first if len(preds[pid]) == 2]
    same = np.asarray([preds[pid][0] == preds[pid][1] for pid in pairs], np.float64)
    return _mean(_weights(w)[..., [first[pid] for pid in pairs]], same)
