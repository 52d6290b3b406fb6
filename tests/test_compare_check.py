"""compare and check on synthetic rows (every verdict) and on the real smoke suite against its baseline."""

from pathlib import Path

import numpy as np
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
    assert v[("a", "top1")].status == "within noise"  # within tolerance
    assert v[("b", "top1")].status == "regressed"
    assert v[("c", "top1")].status == "failed" and v[("c", "top1")].note == "x"
    assert v[("d", "top1")].status == "missing"
    assert v[("a", "FPR95")].status == "regressed"  # FPR95 going up is worse
    assert v[("e", "top1")].status == "improved"
    # per-metric tolerance overrides the default, with globs
    v = {(x.model, x.metric): x for x in chk.check(cur, base, 0.01, {"top1": 0.05, "FPR*": 0.1})}
    assert v[("b", "top1")].status == "within noise" and v[("a", "FPR95")].status == "within noise"
    # task-qualified keys win over metric keys
    v = {(x.model, x.metric): x for x in chk.check(cur, base, 0.01, {"top1": 0.05, "t:top1": 0.0, "u:*": 0.1})}
    assert v[("b", "top1")].status == "regressed" and v[("a", "top1")].status == "regressed" and v[("a", "FPR95")].status == "within noise"
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
    assert "34 ok or resumed, 0 failed" in output
    board = pd.read_parquet(out / "leaderboard.parquet")
    assert set(board.model) == {"resnet18", "vit-tiny", "tiny-convnet", "clip-vit-s32", "shapes-dets", "maskrcnn-r18", "clip-regions", "minilm", "ego4d-heads", "colour-segnet", "motion-net"}
    # classification: 12 jobs × (top1, top5, mean_per_class_recall); OOD: 3 models × (top1, top5 + 13 methods × (3 sets + 2 means) × 4)
    # and CLIP's MCM: top1, top5 + (2 sets + 2 means) × 4; detection: 2 models × (bbox, segm) × (12 stats + 8 categories),
    # LVIS: 2 models × (bbox, segm) × 10, OVD: 2 models × 3; SuperGLUE: 11 task metrics + axb/mcc, axg/acc, axg/parity + score;
    # Ego4D NLQ: R1/3/5 × 2 thresholds + mIoU + coverage; MQ: 5 mAP@t + mAP + 15 recalls;
    # retrieval: 6 recalls + rsum + mean_recall; webdataset zero-shot on 4 classes: top1, mean_per_class_recall;
    # segmentation: 3 jobs × (mIoU, mAcc, aAcc + IoU of the 5 classes); video on 4 classes: 3 jobs × (top1, mean_class_acc);
    # video retrieval: 6 recalls + rsum + mean_recall + 2 median ranks
    n_cls_ood = 36 + 3 * (2 + 13 * 5 * 4) + (2 + 4 * 4)
    assert (board.status == "ok").all() and len(board) == n_cls_ood + 2 * 2 * 20 + 2 * 2 * 10 + 2 * 3 + 15 + 8 + 21 + 8 + 2 + 3 * 8 + 3 * 2 + 10 == 1060
    assert set(board[board.task == "digits-ood"].method.dropna()) == set(list_postprocessors()) - {"mcm"} | {"odin"}
    # every number with per-sample data says how sure it is (-1 is COCO's "no ground truth in this slice")
    scored = board[board.value != -1]
    assert scored.stderr.notna().all() and scored.ci_low.notna().all() and scored.ci_high.notna().all(), scored[scored.stderr.isna()].metric.tolist()
    assert (scored.ci_low <= scored.value + 1e-12).all() and (scored.value <= scored.ci_high + 1e-12).all()
    assert scored.ci_method.str.startswith(("bootstrap", "wilson")).all()
    summary = tmp_path / "summary.md"
    r = CliRunner().invoke(app, ["check", str(out), "--baseline", str(REPO / "results" / "baselines" / "smoke.parquet"), "--summary", str(summary)])
    assert r.exit_code == 0, r.output
    assert "PASS: 1060 baseline metrics" in r.output and "No regressions" in summary.read_text()
    assert "regressed" not in r.output
    r = CliRunner().invoke(app, ["compare", str(out), "--format", "markdown"])
    assert r.exit_code == 0 and "clip-vit-s32" in r.output and "digits-zeroshot" in r.output


def test_check_fails_on_regression_against_real_run(smoke_run, tmp_path):
    out, _ = smoke_run
    base = pd.read_parquet(REPO / "results" / "baselines" / "smoke.parquet")
    # the image-classification and OOD top1 rows (8 synthetic videos are too few for these steps)
    top1 = (base.metric == "top1") & (base.task_type != "video_classification")
    base.loc[top1, "value"] += 0.02  # 2 points: inside the noise of 450 digits (se about 1.5 points on each side) ...
    bumped = tmp_path / "bumped.parquet"
    base.to_parquet(bumped)
    r = CliRunner().invoke(app, ["check", str(out), "--baseline", str(bumped)])
    # ... except where a model got none right (se 0: 0 of 226 against 2%, which Wilson's bound also rejects)
    zero = int((top1 & (base.stderr == 0)).sum())
    assert zero == 2 and r.exit_code == 1 and f"FAIL: {zero} of 1060" in r.output and f"{zero} regressed" in r.output
    base.loc[top1, "value"] += 0.10  # 12 points: beyond it for all 16 top1 rows
    base.to_parquet(bumped)
    r = CliRunner().invoke(app, ["check", str(out), "--baseline", str(bumped)])
    assert r.exit_code == 1 and "FAIL: 16 of 1060" in r.output and "16 regressed" in r.output
    # the same drop passes under a looser suite tolerance given explicitly
    loose = tmp_path / "loose.yaml"
    loose.write_text(
        (REPO / "suites" / "smoke.yaml")
        .read_text()
        .replace("top1: 0.005", "top1: 0.15")
        .replace('"digits-ood*:*": 0.01', '"digits-ood*:*": 0.15')
        .replace('"digits-linear:*": 0.03', '"digits-linear:*": 0.15')
        .replace("python_path: [..]", f"python_path: [{REPO}]")
        .replace("data/shapes_", f"{REPO}/suites/data/shapes_")
    )
    r = CliRunner().invoke(app, ["check", str(out), "--baseline", str(bumped), "--suite", str(loose)])
    assert r.exit_code == 0, r.output


def test_noise_rule_uses_both_standard_errors():
    """A drop inside z·sqrt(se_b² + se_c²) is noise; the same drop with tight errors regresses."""
    base = pd.DataFrame([{**row("a", "t", "top1", 0.80), "stderr": 0.01}, {**row("b", "t", "top1", 0.80), "stderr": 0.001}])
    cur = pd.DataFrame([{**row("a", "t", "top1", 0.78), "stderr": 0.01}, {**row("b", "t", "top1", 0.78), "stderr": 0.001}])
    v = {x.model: x for x in chk.check(cur, base)}
    assert v["a"].status == "within noise" and "2·se" in v["a"].note  # 0.02 < 2·sqrt(2)·0.01
    assert v["b"].status == "regressed"
    # --z widens or narrows the band; the tolerance stays a floor
    assert {x.model: x.status for x in chk.check(cur, base, z=1.0)}["a"] == "regressed"
    assert {x.model: x.status for x in chk.check(cur, base, tolerance=0.05)}["b"] == "within noise"


def test_not_comparable_rows_fail_unless_allowed():
    base = pd.DataFrame([row("a", "t", "top1", 0.80, task_hash="h1"), {**row("b", "t", "top1", 0.8), "n": 32}])
    cur = pd.DataFrame([row("a", "t", "top1", 0.80, task_hash="h2"), {**row("b", "t", "top1", 0.8), "n": 8}])
    v = {x.model: x for x in chk.check(cur, base)}
    assert v["a"].status == "not comparable" and "task_hash" in v["a"].note and v["a"].bad
    assert v["b"].status == "not comparable" and "8 samples" in v["b"].note
    v = {x.model: x for x in chk.check(cur, base, allow_mismatch=True)}
    assert not v["a"].bad and not v["b"].bad


def test_mcnemar_decides_when_both_sides_have_predictions(tmp_path):
    """Per-sample predictions beside both rows files: the paired test is used, and sees a consistent loss."""
    from bench.results import load_rows, write_frame, write_rows

    n = 400
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    paths = [f"img{i}.png" for i in range(n)]

    def run(name, flip):
        top1 = labels.copy()
        top1[:flip] = (labels[:flip] + 1) % 10  # the first `flip` images wrong
        topk = [np.asarray([t, (t + 1) % 10, (t + 2) % 10, (t + 3) % 10, (t + 4) % 10], np.int32) for t in top1]
        d = tmp_path / name / "run1"
        write_frame(d / "predictions" / "j.parquet", pd.DataFrame({"index": range(n), "path": paths, "label": labels, "topk": topk}))
        acc = float(np.mean(top1 == labels))
        write_rows(d / "rows" / "j.parquet", [{**row("m", "t", "top1", acc, job_hash="j"), "stderr": (acc * (1 - acc) / n) ** 0.5, "n": n}])
        return load_rows([tmp_path / name], with_source=True)

    base, cur = run("base", 40), run("cur", 60)  # 20 more wrong, none gained: 0.90 -> 0.85
    (v,) = chk.check(cur, base)
    assert v.status == "regressed" and "McNemar: 20 samples lost, 0 gained" in v.note
    # the unpaired rule would call the same 5-point drop noise at a wide z; the paired one does not
    (u,) = chk.check(cur.drop(columns="_rows_file"), base.drop(columns="_rows_file"), z=3.5)
    (p,) = chk.check(cur, base, z=3.5)
    assert u.status == "within noise" and p.status == "regressed"
