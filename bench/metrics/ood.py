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
