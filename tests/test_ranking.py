"""Cross-task ranking on a hand-made table: z-scores, mean rank, lower-is-better, exclusions stated."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.ranking import rank
from bench.results import write_rows


def row(model, task, metric, value, dataset="d", status="ok", method=None, task_hash="h"):
    return {
        "suite": "s",
        "model": model,
        "task": task,
        "dataset": dataset,
        "split": "val",
        "metric": metric,
        "value": value,
        "status": status,
        "method": method,
        "task_hash": task_hash,
        "job_hash": f"{model}-{task}",
    }


def records():
    return [
            row("a", "cls", "top1", 0.9), row("b", "cls", "top1", 0.8), row("c", "cls", "top1", 0.7),
            row("a", "cls", "top5", 0.1), row("b", "cls", "top5", 0.99), row("c", "cls", "top5", 0.99),  # not the headline
            row("a", "det", "bbox/AP", 0.30), row("b", "det", "bbox/AP", 0.50), row("c", "det", "bbox/AP", 0.40),
            row("a", "ood", "AUROC", 0.70, dataset="near", method="msp"), row("a", "ood", "AUROC", 0.90, dataset="near", method="knn"),
            row("b", "ood", "AUROC", 0.80, dataset="near", method="msp"), row("c", "ood", "AUROC", 0.60, dataset="near", method="msp"),
            row("a", "ood", "top1", 0.1, dataset="d"), row("b", "ood", "top1", 0.9, dataset="d"),  # OOD's headline is AUROC
            row("c", "det2", "bbox/AP", 0.9, task_hash="other"), row("a", "det2", "bbox/AP", 0.1), row("b", "det2", "bbox/AP", 0.2),
            row("a", "sg", "superglue/score", 0.7), row("b", "sg", "superglue/score", None, status="failed"),
    ]  # fmt: skip


def table():
    return pd.DataFrame(records())


def z(v):
    v = np.asarray(v, float)
    return (v - v.mean()) / v.std()


def test_rank_aggregation_hand_made():
    r = rank(table())
    t = r.table
    # columns: cls top1 (a,b,c), det bbox/AP, ood near AUROC (best method per model: a=0.9), det2 without c
    assert [c[0] for c in r.columns] == ["cls", "det", "det2", "ood"]
    np.testing.assert_allclose(t.loc[["a", "b", "c"], "cls d/val top1"], z([0.9, 0.8, 0.7]))
    np.testing.assert_allclose(t.loc[["a", "b", "c"], "det d/val bbox/AP"], z([0.3, 0.5, 0.4]))
    np.testing.assert_allclose(t.loc[["a", "b", "c"], "ood near/val AUROC"], z([0.9, 0.8, 0.6]))
    np.testing.assert_allclose(t.loc[["a", "b"], "det2 d/val bbox/AP"], z([0.1, 0.2]))
    # ranks: a 1,3,2(det2),1 -> 7/4; b 2,1,1,2 -> 6/4; c 3,2,-,3 -> 8/3
    assert t.mean_rank.to_dict() == pytest.approx({"a": 7 / 4, "b": 6 / 4, "c": 8 / 3})
    assert list(t.index) == ["b", "a", "c"] and t.tasks.to_dict() == {"a": 4, "b": 4, "c": 3}
    text = " ".join(r.notes)
    assert "excluded 1 failed" in text
    assert "det2 d/val bbox/AP: excluded c (another task config, not comparable)" in text
    assert "'ood': each model is represented by its best method" in text
    assert "sg d/val superglue/score: fewer than two models, not ranked" in text
    assert "c (3/4)" in text


def test_lower_is_better_is_flipped(monkeypatch):
    """A family whose headline is lower-is-better (OOD declaring FPR95 here) ranks the smaller value first."""
    from bench.tasks import TASKS

    monkeypatch.setattr(TASKS.get("ood"), "headline", ("FPR95",))
    df = pd.DataFrame([{**row("a", "o", "FPR95", 0.1, dataset="near"), "task_type": "ood"}, {**row("b", "o", "FPR95", 0.5, dataset="near"), "task_type": "ood"}])
    r = rank(df)
    assert list(r.table.index) == ["a", "b"] and r.table.loc["a", "mean_z"] > 0


def test_compare_rank_cli(tmp_path):
    p = tmp_path / "rows.parquet"
    write_rows(p, records())
    res = CliRunner().invoke(app, ["compare", str(p), "--rank"])
    assert res.exit_code == 0, res.output
    assert "| b |" in res.output and "mean rank" in res.output and "not comparable" in res.output
