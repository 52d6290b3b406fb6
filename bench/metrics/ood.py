"""OOD detection metrics with OpenOOD v1.5's conventions (after its August and December 2023 fixes).

Convention (stored as ``convention`` on every row): OOD is the positive class; scores are higher
for ID; FPR95 is the fraction of ID samples flagged as OOD at the first ROC point whose OOD recall
reaches 95%; AUPR_IN ranks ID as positive by score, AUPR_OUT ranks OOD as positive by -score.
The curves are scikit-learn's, used exactly as OpenOOD's evaluator uses them, ties included.
"""

from __future__ import annotations

import numpy as np

CONVENTION = "ood_positive;id_scores_higher;fpr@95tpr_ood;aupr_in=id_positive;aupr_out=ood_positive"


class OODInputError(ValueError):
    """Scores that cannot be scored (empty sets, NaN): one line saying which."""


def _check(id_scores, ood_scores, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    tag = f"{what}: " if what else ""
    if id_scores.size == 0:
        raise OODInputError(f"{tag}no ID samples to score")
    if ood_scores.size == 0:
        raise OODInputError(f"{tag}the OOD set is empty")
    for name, s in (("ID", id_scores), ("OOD", ood_scores)):
        bad = int((~np.isfinite(s)).sum())
        if bad:
            raise OODInputError(f"{tag}{bad} of {s.size} {name} scores are NaN or infinite")
    return id_scores, ood_scores


def ood_metrics(id_scores, ood_scores, recall: float = 0.95, what: str = "") -> dict[str, float]:
    """AUROC, FPR95, AUPR_IN, AUPR_OUT as fractions in 0-1."""
    from sklearn import metrics

    id_scores, ood_scores = _check(id_scores, ood_scores, what)
    conf = np.concatenate([id_scores, ood_scores])
    ood = np.concatenate([np.zeros(id_scores.size, dtype=int), np.ones(ood_scores.size, dtype=int)])
    fpr, tpr, _ = metrics.roc_curve(ood, -conf)
    precision_in, recall_in, _ = metrics.precision_recall_curve(1 - ood, conf)
    precision_out, recall_out, _ = metrics.precision_recall_curve(ood, -conf)
    return {
        "AUROC": float(metrics.auc(fpr, tpr)),
        "FPR95": float(fpr[np.argmax(tpr >= recall)]),
        "AUPR_IN": float(metrics.auc(recall_in, precision_in)),
        "AUPR_OUT": float(metrics.auc(recall_out, precision_out)),
    }


def group_means(per_dataset: dict[str, dict[str, float]], groups: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Unweighted mean of each metric over the datasets of each group, as OpenOOD reports near/far."""
    out = {}
    for group, names in groups.items():
        present = [per_dataset[n] for n in names if n in per_dataset]
        if present:
            out[group] = {m: float(np.mean([d[m] for d in present])) for m in present[0]}
    return out


class WeightedOOD:
    """ood_metrics under per-sample draw counts, for the bootstrap: one sort, then O(n) per resample,
    all resamples of a chunk at once.

    With all weights 1 it equals ood_metrics (sklearn's curves, drop_intermediate on the ROC and
    not on the PR curves); a sample drawn k times counts as k tied copies of it.
    """

    def __init__(self, id_scores, ood_scores, recall: float = 0.95):
        id_scores, ood_scores = _check(id_scores, ood_scores)
        conf = np.concatenate([id_scores, ood_scores])
        self.n_id, self.recall = id_scores.size, recall
        _, inverse = np.unique(-conf, return_inverse=True)  # groups of tied scores, ascending -conf
        self.order = np.argsort(-inverse, kind="stable")  # samples by descending -conf (sklearn's ROC order)
        g = inverse[self.order]
        self.starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        self.is_ood = (self.order >= self.n_id).astype(np.float64)

    def __call__(self, w_id: np.ndarray, w_ood: np.ndarray) -> dict[str, float]:
        return {k: float(v[0]) for k, v in self.batch(np.atleast_2d(w_id), np.atleast_2d(w_ood)).items()}

    def batch(self, w_id: np.ndarray, w_ood: np.ndarray) -> dict[str, np.ndarray]:
        """Metrics for each row of draw counts w_id (b, n_id), w_ood (b, n_ood)."""
        w = np.concatenate([w_id, w_ood], axis=1)[:, self.order]
        ood_g = np.add.reduceat(w * self.is_ood, self.starts, axis=1)
        id_g = np.add.reduceat(w * (1 - self.is_ood), self.starts, axis=1)
        # a tie group no drawn sample sits in repeats the point before it: harmless to areas, and
        # skipped where it is not (the ROC's corner test, a PR curve's leading 0/0)
        drawn = (ood_g + id_g) > 0
        tps, fps = np.cumsum(ood_g, axis=1), np.cumsum(id_g, axis=1)
        tpr, fpr = tps / tps[:, -1:], fps / fps[:, -1:]
        zero = np.zeros((w.shape[0], 1))
        auroc = np.trapezoid(np.hstack([zero, tpr]), np.hstack([zero, fpr]), axis=1)
        keep = drawn & _corners(tps, fps, drawn)
        first = np.argmax(keep & (tpr >= self.recall), axis=1)
        return {
            "AUROC": auroc,
            "FPR95": fpr[np.arange(w.shape[0]), first],
            "AUPR_IN": _pr_area(np.cumsum(id_g[:, ::-1], axis=1), np.cumsum(ood_g[:, ::-1], axis=1)),
            "AUPR_OUT": _pr_area(tps, fps),
        }


def _corners(tps: np.ndarray, fps: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """sklearn's drop_intermediate on the drawn points of each row: first, last, and where the curve bends."""
    b, g = tps.shape
    pos = np.arange(g)
    last_at = np.maximum.accumulate(np.where(drawn, pos, -1), axis=1)  # last drawn point at or before i
    next_at = np.minimum.accumulate(np.where(drawn, pos, g)[:, ::-1], axis=1)[:, ::-1]  # first at or after i
    prev = np.hstack([np.full((b, 1), -1), last_at[:, :-1]])
    nxt = np.hstack([next_at[:, 1:], np.full((b, 1), g)])
    ends = (prev < 0) | (nxt >= g)
    p, n = np.clip(prev, 0, g - 1), np.clip(nxt, 0, g - 1)

    def bend(x):
        return np.take_along_axis(x, n, axis=1) - 2 * x + np.take_along_axis(x, p, axis=1) != 0

    return ends | bend(fps) | bend(tps)


def _pr_area(tp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Area under precision-recall (sklearn's curve and auc), from the (recall 0, precision 1) end."""
    total = tp + fp
    precision = np.divide(tp, total, out=np.ones_like(tp), where=total > 0)
    rec = tp / tp[:, -1:]
    b = tp.shape[0]
    return np.trapezoid(np.hstack([np.ones((b, 1)), precision]), np.hstack([np.zeros((b, 1)), rec]), axis=1)


def ood_intervals(id_scores, ood_sets: dict[str, np.ndarray], groups: dict[str, list[str]], spec) -> dict:
    """Intervals for each set's metrics ("<set>/<metric>") and the near/far means ("<group>/<metric>").

    One stratified bootstrap: ID and every OOD set are resampled within themselves, and a resample
    shares its ID draw across sets, as the point estimates share the ID scores.
    """
    from bench.metrics.uncertainty import bootstrap

    id_scores = np.asarray(id_scores, np.float64)
    names = list(ood_sets)
    scorers = {n: WeightedOOD(id_scores, ood_sets[n]) for n in names}
    sizes = [id_scores.size] + [len(ood_sets[n]) for n in names]
    edges = np.cumsum([0] + sizes)
    strata = np.repeat(np.arange(len(sizes)), sizes)

    def stat(w: np.ndarray) -> dict[str, np.ndarray]:
        w_id = w[:, : edges[1]]
        per = {n: scorers[n].batch(w_id, w[:, edges[i + 1] : edges[i + 2]]) for i, n in enumerate(names)}
        out = {f"{n}/{m}": v for n, d in per.items() for m, v in d.items()}
        for group, members in groups.items():
            present = [per[n] for n in members if n in per]
            if present:
                out.update({f"{group}/{m}": np.mean([d[m] for d in present], axis=0) for m in present[0]})
        return out

    return bootstrap(stat, int(edges[-1]), spec, unit="ID and OOD sample", strata=strata, chunk=100)
