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
    """ood_metrics under per-sample draw counts, for the bootstrap: one sort, then O(n) per resample.

    With all weights 1 it equals ood_metrics (sklearn's curves, drop_intermediate on the ROC and
    not on the PR curves); a sample drawn k times counts as k tied copies of it.
    """

    def __init__(self, id_scores, ood_scores, recall: float = 0.95):
        id_scores, ood_scores = _check(id_scores, ood_scores)
        conf = np.concatenate([id_scores, ood_scores])
        self.n_id, self.recall = id_scores.size, recall
        values, inverse = np.unique(-conf, return_inverse=True)  # groups of tied scores, ascending -conf
        self.order = np.argsort(-inverse, kind="stable")  # samples by descending -conf (sklearn's ROC order)
        g = inverse[self.order]
        self.starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        self.is_ood = (self.order >= self.n_id).astype(np.float64)

    def __call__(self, w_id: np.ndarray, w_ood: np.ndarray) -> dict[str, float]:
        w = np.concatenate([w_id, w_ood])[self.order]
        ood_g = np.add.reduceat(w * self.is_ood, self.starts)
        id_g = np.add.reduceat(w * (1 - self.is_ood), self.starts)
        keep = (ood_g + id_g) > 0  # thresholds no drawn sample sits at do not exist in the resample
        ood_g, id_g = ood_g[keep], id_g[keep]
        tps, fps = np.cumsum(ood_g), np.cumsum(id_g)
        return {"AUROC": self._auroc_fpr(tps, fps)[0], "FPR95": self._auroc_fpr(tps, fps)[1], **self._aupr(tps, fps, ood_g, id_g)}

    def _auroc_fpr(self, tps, fps):
        if tps.size > 2:  # sklearn's drop_intermediate: keep corners only
            corner = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
            tps, fps = tps[corner], fps[corner]
        tpr, fpr = np.r_[0.0, tps] / tps[-1], np.r_[0.0, fps] / fps[-1]
        return float(np.trapezoid(tpr, fpr)), float(fpr[np.argmax(tpr >= self.recall)])

    @staticmethod
    def _aupr(tps, fps, ood_g, id_g) -> dict[str, float]:
        def area(tp, fp):
            precision, rec = tp / (tp + fp), tp / tp[-1]
            return float(np.trapezoid(np.r_[precision[::-1], 1.0][::-1], np.r_[rec[::-1], 0.0][::-1]))

        return {"AUPR_IN": area(np.cumsum(id_g[::-1]), np.cumsum(ood_g[::-1])), "AUPR_OUT": area(tps, fps)}


def ood_intervals(id_scores, ood_sets: dict[str, np.ndarray], groups: dict[str, list[str]], spec) -> dict:
    """Intervals for each set's metrics ("<set>/<metric>") and the near/far means ("<group>/<metric>").

    One stratified bootstrap: ID and every OOD set are resampled within themselves, and a resample
    shares its ID draw across sets, as the point estimates share the ID scores.
    """
    from bench.metrics.uncertainty import bootstrap_loop

    id_scores = np.asarray(id_scores, np.float64)
    names = list(ood_sets)
    scorers = {n: WeightedOOD(id_scores, ood_sets[n]) for n in names}
    sizes = [id_scores.size] + [len(ood_sets[n]) for n in names]
    edges = np.cumsum([0] + sizes)
    strata = np.repeat(np.arange(len(sizes)), sizes)

    def stat(w: np.ndarray) -> dict[str, float]:
        w_id = w[: edges[1]]
        per = {n: scorers[n](w_id, w[edges[i + 1] : edges[i + 2]]) for i, n in enumerate(names)}
        out = {f"{n}/{m}": v for n, d in per.items() for m, v in d.items()}
        for group, means in group_means(per, groups).items():
            out.update({f"{group}/{m}": v for m, v in means.items()})
        return out

    return bootstrap_loop(stat, int(edges[-1]), spec, unit="ID and OOD sample", strata=strata)
