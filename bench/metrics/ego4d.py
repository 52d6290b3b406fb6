"""Ego4D challenge metrics, computed as the official scripts compute them (numpy 2 safe).

- NLQ: episodic-memory `NLQ/VSLNet/utils/evaluate_ego4d_nlq.py`. IoU of a window with the gold
  window is intersection over the *hull* of the two; a hit at threshold t needs IoU > t (strict)
  among the first k windows; mIoU averages the IoU of the first window. The official number
  averages over the queries that were predicted; `coverage` says how many that is of all queries.
- MQ detection: episodic-memory `MQ/Evaluation/ego4d/eval_detection.py` (ActivityNet's): per
  class, predictions by decreasing score are greedily matched to the unmatched ground truth with
  the highest tIoU (standard union), a match needing tIoU ≥ t; VOC-interpolated AP; mAP over the
  classes of the ground truth; predictions of classes absent from the ground truth are dropped.
- MQ retrieval: `get_retrieval_performance.py`: for each clip, class and gold moment, a hit when one
  of the first r×(number of gold moments of that class in the clip) predictions *in file order*
  has hull IoU > t. The official script does not sort by score, and neither do we.
- STA: forecasting `ego4d/evaluation/sta_metrics.py`, STAMeanAveragePrecision(top_k=5): a match
  needs box IoU > 0.5 (pixel-inclusive areas, +1) plus equal noun / verb and |ΔTTC| ≤ 0.25 s as
  the measure asks; up to (k−1)·#gold highest-scoring false positives per frame are forgiven;
  AP is VOC's; mAP averages over nouns with ground truth. Values are fractions (the script × 100).
  As in the official code, a frame with an empty prediction list contributes no ground truth.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

NLQ_THRESHOLDS = (0.3, 0.5)
NLQ_TOPK = (1, 3, 5)
MQ_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
MQ_RETRIEVAL_TIOUS = (0.3, 0.5, 0.7)
MQ_RETRIEVAL_RANKS = (1, 2, 3, 4, 5)
STA_MEASURES = ("box_noun", "box_noun_verb", "box_noun_ttc", "box_noun_verb_ttc")


def hull_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[n, 2] × [m, 2] → [n, m]: intersection over the hull, as the NLQ and MQ-retrieval scripts do.

    Two identical zero-length windows give 0/0 = NaN, which is never a hit (as in the official code).
    """
    pred, gt = np.asarray(pred, dtype=np.float64).reshape(-1, 2), np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    inter = np.maximum(0.0, np.minimum(pred[:, 1, None], gt[None, :, 1]) - np.maximum(pred[:, 0, None], gt[None, :, 0]))
    hull = np.maximum(0.0, np.maximum(pred[:, 1, None], gt[None, :, 1]) - np.minimum(pred[:, 0, None], gt[None, :, 0]))
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / hull


def segment_iou(target: Sequence[float], candidates: np.ndarray) -> np.ndarray:
    """ActivityNet's tIoU of one segment with [n, 2] candidates (union = sum of lengths − intersection)."""
    c = np.asarray(candidates, dtype=np.float64).reshape(-1, 2)
    inter = (np.minimum(target[1], c[:, 1]) - np.maximum(target[0], c[:, 0])).clip(0)
    union = (c[:, 1] - c[:, 0]) + (target[1] - target[0]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def voc_ap(prec: np.ndarray, rec: np.ndarray) -> float:
    """VOC 2011 interpolated AP: precision made monotone, summed where recall changes."""
    mprec = np.concatenate([[0.0], prec, [0.0]])
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


# ---------------------------------------------------------------- NLQ
def nlq_per_query(gold: dict, predictions: list[dict], thresholds=NLQ_THRESHOLDS, topk=NLQ_TOPK) -> dict[str, np.ndarray]:
    """Per answered query: R{k}@{t} hits (0/1) and the first window's IoU (mIoU); the metrics are their means."""
    out: dict[str, list] = {f"R{k}@{t}": [] for k in topk for t in thresholds}
    out["mIoU"] = []
    for p in predictions:
        s, e = gold[(p["clip_uid"], p["annotation_uid"], p["query_idx"])]
        iou = hull_iou(p["predicted_times"], [[s, e]])[:, 0]
        out["mIoU"].append(iou[0])
        for t in thresholds:
            for k in topk:
                out[f"R{k}@{t}"].append(float((iou > t)[:k].any()))
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def nlq_metrics(gold: dict, predictions: list[dict], total_queries: int, thresholds=NLQ_THRESHOLDS, topk=NLQ_TOPK) -> dict[str, float]:
    """`gold`: (clip_uid, annotation_uid, query_idx) → (start, end); `predictions`: validated entries."""
    n = len(predictions)
    out = {k: (float(np.mean(v)) if n else 0.0) for k, v in nlq_per_query(gold, predictions, thresholds, topk).items()}
    out["coverage"] = n / total_queries if total_queries else 0.0
    return out


def mq_metrics(gt: list[dict], preds: list[dict]) -> dict[str, float]:
    det, _ = mq_detection(gt, preds)
    return {**det, **mq_retrieval(gt, preds)}


def mq_clip_resample(gt: list[dict], preds: list[dict], clips: list, counts: np.ndarray) -> tuple[list[dict], list[dict]]:
    """The dataset holding clips[i] counts[i] times (copies renamed apart), for a bootstrap over clips."""
    times = dict(zip(clips, counts.astype(int)))
    g2 = [{**g, "clip": (g["clip"], c)} for g in gt for c in range(times.get(g["clip"], 0))]
    p2 = [{**p, "clip": (p["clip"], c)} for p in preds for c in range(times.get(p["clip"], 0))]
    return g2, p2


# ---------------------------------------------------------------- MQ
def _ap_one_class(gt: list[tuple], preds: list[tuple], thresholds: Sequence[float]) -> np.ndarray:
    """gt: (clip, start, end); preds: (clip, start, end, score). ActivityNet's greedy matching."""
    ap = np.zeros(len(thresholds))
    if not preds:
        return ap
    scores = np.asarray([p[3] for p in preds], dtype=np.float64)
    order = scores.argsort()[::-1]  # the official ordering (numpy's default sort, reversed), ties included
    by_clip = defaultdict(list)
    for gi, g in enumerate(gt):
        by_clip[g[0]].append(gi)
    locked = -np.ones((len(thresholds), len(gt)))
    tp = np.zeros((len(thresholds), len(preds)))
    fp = np.zeros((len(thresholds), len(preds)))
    for rank, pi in enumerate(order):
        clip, s, e, _ = preds[pi]
        gis = by_clip.get(clip)
        if not gis:
            fp[:, rank] = 1
            continue
        tiou = segment_iou((s, e), np.asarray([[gt[g][1], gt[g][2]] for g in gis]))
        best = tiou.argsort()[::-1]
        for ti, thr in enumerate(thresholds):
            for j in best:
                if tiou[j] < thr:
                    fp[ti, rank] = 1
                    break
                if locked[ti, gis[j]] >= 0:
                    continue
                tp[ti, rank] = 1
                locked[ti, gis[j]] = rank
                break
            if fp[ti, rank] == 0 and tp[ti, rank] == 0:
                fp[ti, rank] = 1
    tp_c, fp_c = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    rec = tp_c / float(len(gt))
    prec = tp_c / (tp_c + fp_c)
    for ti in range(len(thresholds)):
        ap[ti] = voc_ap(prec[ti], rec[ti])
    return ap


def mq_detection(gt: list[dict], preds: list[dict], thresholds=MQ_THRESHOLDS) -> tuple[dict[str, float], dict]:
    """gt/preds: dicts with clip, label, start, end (+ score). Returns metrics and per-class AP."""
    classes = list(dict.fromkeys(g["label"] for g in gt))  # first-appearance order, as the official index
    g_by, p_by = defaultdict(list), defaultdict(list)
    for g in gt:
        g_by[g["label"]].append((g["clip"], g["start"], g["end"]))
    for p in preds:
        if p["label"] in g_by:
            p_by[p["label"]].append((p["clip"], p["start"], p["end"], p["score"]))
    ap = np.stack([_ap_one_class(g_by[c], p_by[c], thresholds) for c in classes], axis=1) if classes else np.zeros((len(thresholds), 0))
    m = ap.mean(axis=1) if classes else np.zeros(len(thresholds))
    out = {f"mAP@{t}": float(v) for t, v in zip(thresholds, m)}
    out["mAP"] = float(m.mean())
    return out, {c: float(ap[:, i].mean()) for i, c in enumerate(classes)}


def mq_retrieval(gt: list[dict], preds: list[dict], tious=MQ_RETRIEVAL_TIOUS, ranks=MQ_RETRIEVAL_RANKS) -> dict[str, float]:
    """Recall at r×(#gold) in file order, per (clip, class, gold moment), as get_retrieval_performance.py."""
    g = defaultdict(lambda: defaultdict(list))
    for x in gt:
        g[x["clip"]][x["label"]].append([x["start"], x["end"]])
    p = defaultdict(lambda: defaultdict(list))
    for x in preds:  # file order kept
        p[x["clip"]][x["label"]].append([x["start"], x["end"]])
    res = {(t, r): [] for t in tious for r in ranks}
    for clip, labels in g.items():
        for label, moments in labels.items():
            n = len(moments)
            cand = p.get(clip, {}).get(label)
            for t in tious:
                for r in ranks:
                    if cand:
                        ov = hull_iou(cand, moments) > t
                        res[(t, r)].extend(bool(ov[: r * n][:, i].any()) for i in range(n))
                    else:
                        res[(t, r)].extend([False] * n)
    return {f"R{r}x@{t}": float(np.mean(res[(t, r)])) if res[(t, r)] else 0.0 for t in tious for r in ranks}


# ---------------------------------------------------------------- STA
def box_iou_inclusive(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """[n, 4] × [m, 4] xyxy → [n, m], pixel-inclusive areas (+1), as sta_metrics.compute_iou."""
    p, g = np.asarray(preds, dtype=np.float64)[:, None, :], np.asarray(gts, dtype=np.float64)[None, :, :]

    def area(b):
        w = b[..., 2] - b[..., 0] + 1
        h = b[..., 3] - b[..., 1] + 1
        return np.where(w < 0, 0, w) * np.where(h < 0, 0, h)

    inter = area(
        np.stack([np.maximum(g[..., 0], p[..., 0]), np.maximum(g[..., 1], p[..., 1]), np.minimum(g[..., 2], p[..., 2]), np.minimum(g[..., 3], p[..., 3])], -1)
    )
    return inter / (area(p) + area(g) - inter + 1e-11)


def _sta_matches(pred: dict, gt: dict, i: int, ious: np.ndarray, iou_thr: float, ttc_thr: float) -> np.ndarray:
    """[n_gt, 4] booleans: can prediction i match each gold object under each STA measure."""
    boxes = ious[i] > iou_thr
    nouns = pred["nouns"][i] == gt["nouns"]
    verbs = pred["verbs"][i] == gt["verbs"]
    ttcs = np.abs(pred["ttcs"][i] - gt["ttcs"]) <= ttc_thr
    return np.stack([boxes & nouns, boxes & nouns & verbs, boxes & nouns & ttcs, boxes & nouns & verbs & ttcs], axis=1)


def sta_map(frames: Iterable[tuple[dict, dict]], top_k: int = 5, iou_thr: float = 0.5, ttc_thr: float = 0.25) -> dict[str, float]:
    """frames: (pred, gt) per annotated frame, each a dict of arrays boxes/nouns/verbs/ttcs (+ scores)."""
    M = len(STA_MEASURES)
    all_tp, all_scores, all_pcls, all_gcls = [], [], [], []
    for pred, gt in frames:
        if not len(pred.get("scores", [])):
            continue  # as the official add(): a frame without predictions adds no ground truth either
        all_gcls.append(np.asarray(gt["nouns"]))
        scores = np.asarray(pred["scores"], dtype=np.float64)
        tp = np.zeros((len(scores), M))
        ious = box_iou_inclusive(pred["boxes"], gt["boxes"])
        taken = np.zeros((len(gt["nouns"]), M))
        for i in scores.argsort()[::-1]:
            match = _sta_matches(pred, gt, i, ious, iou_thr, ttc_thr)
            match[taken == 1] = False
            ov = np.where(match, np.tile(ious[i][:, None], (1, M)), -1.0)
            jj = ov.argmax(0)
            ok = match[jj, np.arange(M)]
            tp[i, ok] = 1
            taken[jj, np.arange(M)] += ok
        pcls = np.asarray(pred["nouns"])
        if top_k > 1:  # forgive the (k-1)·#gold highest-scoring false positives
            budget = (top_k - 1) * len(gt["nouns"])
            order = scores.argsort()[::-1]
            tp = tp[order].astype(float)
            fp = 1 - tp
            tp[(fp.cumsum(0) <= budget) & (fp == 1)] = np.nan
            scores, pcls = scores[order], pcls[order]
        all_tp.append(tp)
        all_scores.append(scores)
        all_pcls.append(pcls)
    gcls = np.concatenate(all_gcls) if all_gcls else np.zeros(0)
    tps = np.concatenate(all_tp) if all_tp else np.zeros((0, M))
    scs = np.concatenate(all_scores) if all_scores else np.zeros(0)
    pcls = np.concatenate(all_pcls) if all_pcls else np.zeros(0)
    out = {}
    for m, name in enumerate(STA_MEASURES):
        aps = []
        for c in np.unique(gcls):
            tp, cs = tps[pcls == c, m], scs[pcls == c]
            valid = ~np.isnan(tp)
            tp, cs = tp[valid], cs[valid]
            ngt = int(np.sum(gcls == c))
            if len(tp):
                t = tp[cs.argsort()[::-1]]
                tpc, fpc = t.cumsum(), (1 - t).cumsum()
                aps.append(voc_ap(tpc / (tpc + fpc), tpc / ngt))
            else:
                aps.append(0.0)
        out[f"mAP_{name}"] = float(np.mean(aps)) if aps else 0.0
    return out
