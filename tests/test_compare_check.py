"""compare and check on synthetic rows (every verdict) and on the real smoke suite against its baseline."""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bench import check as chk
from bench import compare as cmp
from bench.cli import app
from bench.postprocessors import list_postprocessors
from bench.results import write_rows

REPO = Path(__file__).resolve().parent.parent
T0 = pd.Timestamp("2026-01-01", tz="UTC")


def row(model, task, metric, value, status="ok", task_hash="h1", job_hash=None, error=None, t=T0):
    return dict(
        suite="s",
        model=model,
        task=task,
        dataset="d",
        split="val",
        metric=metric,
        value=value,
        n=10,
        status=status,
        error=error,
        job_hash=job_hash or f"{model}-{task}",
        task_hash=task_hash,
        started_at=t,
    )


@pytest.fixture
def results(tmp_path):
    rows = [
        row("a", "t", "top1", 0.50),
        row("b", "t", "top1", 0.70),
        row("c", "t", "top1", 0.60, task_hash="OTHER"),
        row("a", "u", "FPR95", 0.30),
        row("b", "u", "FPR95", 0.20),
        row("c", "u", None, None, status="failed", error="boom"),
    ]
    path = tmp_path / "r.parquet"
    write_rows(path, rows)
    return path


def test_compare_best_delta_and_flags(results):
    comp = cmp.build([str(results)], baseline="a")
    t1 = ("t", "d", "val", "top1")
    assert comp.cells[("b", t1)].best and not comp.cells[("a", t1)].best
    assert comp.cells[("c", t1)].flag.startswith("task config differs")  # same task name, other config
    assert not comp.cells[("c", t1)].best  # not comparable cells never win
    assert comp.cells[("b", t1)].delta == pytest.approx(0.2)
    fpr = ("u", "d", "val", "FPR95")
    assert comp.cells[("b", fpr)].best  # lower is better
    assert comp.cells[("c", fpr)].status == "failed"
    md = cmp.render_markdown(comp)
    assert "**70.00 (+20.00)**" in md and "60.00 (+10.00) †" in md and "failed" in md
    csv = cmp.render_csv(comp)
    assert "comparable" in csv.splitlines()[0]
    assert "<table>" in cmp.render_html(comp)


def test_compare_filters_and_tables(results):
    comp = cmp.build([str(results)], metric="FPR*")
    assert comp.columns == [("u", "d", "val", "FPR95")]
    assert [t.title for t in cmp.render_rich(cmp.build([str(results)]))] == ["t", "u"]
    r = CliRunner().invoke(app, ["compare", str(results), "--task", "zz*"])
    assert r.exit_code == 2 and "no rows match" in r.output


def test_compare_baseline_file_and_unknown(results, tmp_path):
    base = tmp_path / "base.parquet"
    write_rows(base, [row("b", "t", "top1", 0.65, task_hash="h2")])
    comp = cmp.build([str(results)], baseline=str(base))
    cell = comp.cells[("b", ("t", "d", "val", "top1"))]
    assert cell.delta == pytest.approx(0.05) and "baseline task config differs" in cell.flag
    r = CliRunner().invoke(app, ["compare", str(results), "--baseline", "zzz"])
    assert r.exit_code == 2 and "neither a results file/folder nor a model" in r.output


def test_check_verdicts():
    base = pd.DataFrame(
        [
            row("a", "t", "top1", 0.50),
            row("b", "t", "top1", 0.70),
            row("c", "t", "top1", 0.60),
            row("d", "t", "top1", 0.60),
            row("a", "u", "FPR95", 0.30),
            row("e", "t", "top1", 0.1),
        ]
    )
    cur = pd.DataFrame(
        [
            row("a", "t", "top1", 0.495),
            row("b", "t", "top1", 0.68),
            row("c", "t", None, None, status="failed", error="x"),
            row("a", "u", "FPR95", 0.35),
            row("e", "t", "top1", 0.2),
        ]
    )
    v = {(x.model, x.metric): x for x in chk.check(cur, base, tolerance=0.01)}
    assert v[("a", "top1")].status == "ok"  # within tolerance
    assert v[("b", "top1")].status == "regressed"
    assert v[("c", "top1")].status == "failed" and v[("c", "top1")].note == "x"
    assert v[("d", "top1")].status == "missing"
    assert v[("a", "FPR95")].status == "regressed"  # FPR95 going up is worse
    assert v[("e", "top1")].status == "improved"
    # per-metric tolerance overrides the default, with globs
    v = {(x.model, x.metric): x for x in chk.check(cur, base, 0.01, {"top1": 0.05, "FPR*": 0.1})}
    assert v[("b", "top1")].status == "ok" and v[("a", "FPR95")].status == "ok"
    # task-qualified keys win over metric keys
    v = {(x.model, x.metric): x for x in chk.check(cur, base, 0.01, {"top1": 0.05, "t:top1": 0.0, "u:*": 0.1})}
    assert v[("b", "top1")].status == "regressed" and v[("a", "top1")].status == "regressed" and v[("a", "FPR95")].status == "ok"
    md = chk.render_markdown(chk.check(cur, base, 0.01))
    assert "| regressed | b |" in md and "| missing | d |" in md


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The embedded default suite, run once for real (about two minutes on 2 cores)."""
    out = tmp_path_factory.mktemp("smoke")
    # the shipped baseline was made on CPU; GPU kernels give other floats on random-init features
    r = CliRunner().invoke(app, ["run", str(REPO / "suites" / "smoke.yaml"), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return out / "smoke", r.output


def test_smoke_suite_runs_and_matches_baseline(smoke_run, tmp_path):
    out, output = smoke_run
    assert (out / "leaderboard.parquet").exists()
    assert "25 ok or resumed, 0 failed" in output
    board = pd.read_parquet(out / "leaderboard.parquet")
    assert set(board.model) == {"resnet18", "vit-tiny", "tiny-convnet", "clip-vit-s32", "shapes-dets", "maskrcnn-r18", "clip-regions", "minilm", "ego4d-heads"}
    # classification: 12 jobs × (top1, top5); OOD: 3 models × (top1, top5 + 13 methods × (3 sets + 2 means) × 4)
    # and CLIP's MCM: top1, top5 + (2 sets + 2 means) × 4; detection: 2 models × (bbox, segm) × (12 stats + 8 categories),
    # LVIS: 2 models × (bbox, segm) × 10, OVD: 2 models × 3; SuperGLUE: 11 task metrics + axb/mcc, axg/acc, axg/parity + score;
    # Ego4D NLQ: R1/3/5 × 2 thresholds + mIoU + coverage; MQ: 5 mAP@t + mAP + 15 recalls
    n_cls_ood = 24 + 3 * (2 + 13 * 5 * 4) + (2 + 4 * 4)
    assert (board.status == "ok").all() and len(board) == n_cls_ood + 2 * 2 * 20 + 2 * 2 * 10 + 2 * 3 + 15 + 8 + 21 == 998
    assert set(board[board.task == "digits-ood"].method.dropna()) == set(list_postprocessors()) - {"mcm"} | {"odin"}
    summary = tmp_path / "summary.md"
    r = CliRunner().invoke(app, ["check", str(out), "--baseline", str(REPO / "results" / "baselines" / "smoke.parquet"), "--summary", str(summary)])
    assert r.exit_code == 0, r.output
    assert "PASS: 998 baseline metrics" in r.output and "No regressions" in summary.read_text()
    r = CliRunner().invoke(app, ["compare", str(out), "--format", "markdown"])
    assert r.exit_code == 0 and "clip-vit-s32" in r.output and "digits-zeroshot" in r.output


def test_check_fails_on_regression_against_real_run(smoke_run, tmp_path):
    out, _ = smoke_run
    base = pd.read_parquet(REPO / "results" / "baselines" / "smoke.parquet")
    base.loc[base.metric == "top1", "value"] += 0.02  # suite tolerance for top1 is 0.005
    bumped = tmp_path / "bumped.parquet"
    base.to_parquet(bumped)
    r = CliRunner().invoke(app, ["check", str(out), "--baseline", str(bumped)])
    # 16 top1 rows; the 4 digits-linear ones have a 0.03 tolerance in the suite, so 12 regress
    assert r.exit_code == 1 and "FAIL: 12 of 998" in r.output
    # the same drop passes under a looser suite tolerance given explicitly
    loose = tmp_path / "loose.yaml"
    loose.write_text(
        (REPO / "suites" / "smoke.yaml")
        .read_text()
        .replace("top1: 0.005", "top1: 0.05")
        .replace('"digits-ood*:*": 0.01', '"digits-ood*:*": 0.05')
        .replace("python_path: [..]", f"python_path: [{REPO}]")
        .replace("data/shapes_", f"{REPO}/suites/data/shapes_")
    )
    r = CliRunner().invoke(app, ["check", str(out), "--baseline", str(bumped), "--suite", str(loose)])
    assert r.exit_code == 0, r.output
