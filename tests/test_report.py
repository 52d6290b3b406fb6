"""bench report: the sections' content on synthetic rows, and the smoke baseline's report in headless Chromium."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bench import compare as cmp
from bench import report
from bench.cli import app
from bench.results import load_rows, write_rows

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "results" / "baselines" / "smoke.parquet"
T0 = pd.Timestamp("2026-01-01", tz="UTC")


def row(model, task, metric, value, task_type="classification", dataset="d", split="val", method=None, se=0.01, **kw):
    out = dict(suite="s", model=model, task=task, task_type=task_type, dataset=dataset, split=split, metric=metric, method=method, value=value, n=1000)
    ci = (value - 1.96 * se, value + 1.96 * se) if value is not None else (None, None)
    out |= dict(stderr=se, ci_low=ci[0], ci_high=ci[1], status="ok", job_hash=f"{model}-{task}", task_hash=f"h-{task}")
    out |= dict(run_id="r1", git_sha="abc123", torch="2.14.1", timm="1.0.31", open_clip="3.3.0", machine="EPYC", precision="fp32", batch_size=64, started_at=T0)
    return out | kw


def ood(model, task, auroc, fpr):
    """OpenOOD-shaped rows for two methods: per set (dataset = the set, split = its group) and group means (dataset near/far, split mean)."""
    rows = [row(model, task, "top1", 0.8, "ood")]
    for method, shift in (("msp", 0.0), ("energy", 0.05)):
        for dataset, split in (("ssb", "near"), ("inat", "far"), ("near", "mean"), ("far", "mean")):
            rows += [
                row(model, task, "AUROC", auroc + shift, "ood", dataset, split, method),
                row(model, task, "FPR95", fpr - shift, "ood", dataset, split, method),
            ]
    return rows


def section(text: str, id_: str) -> str:
    m = re.search(rf"<section id='{re.escape(id_)}'>(.*?)</section>", text, re.S)
    assert m, f"no section {id_}"
    return m.group(1)


def summary_row(text: str, task: str) -> str:
    """The summary's row of a task's headline column (the table is transposed: fewer models than columns)."""
    m = re.search(rf"<tr><th><a href='#task-{re.escape(task)}'>.*?</tr>", section(text, "summary"), re.S)
    assert m, f"no summary row for {task}"
    return m.group(0)


@pytest.fixture
def board(tmp_path):
    rows = [
        # clear lead: 20 points apart with 1-point standard errors
        row("a", "clear", "top1", 0.90, se=0.005),
        row("a", "clear", "top5", 0.99, se=0.005),
        row("b", "clear", "top1", 0.70, se=0.005),
        row("b", "clear", "top5", 0.95, se=0.005),
        row("c", "clear", "top1", 0.95, task_hash="OTHER"),  # ahead, but another task config: never best
        # within noise: 1 point apart with 2-point standard errors
        row("a", "close", "top1", 0.80, se=0.02),
        row("b", "close", "top1", 0.79, se=0.02),
        *ood("a", "oodt", 0.90, 0.30),
        *ood("b", "oodt", 0.60, 0.70),
        row("a", "det", "bbox/AP", 0.40, "detection"),
        row("a", "det", "bbox/AP50", 0.60, "detection"),
        row("a", "det", "bbox/AP/cat", 0.55, "detection"),
        row("a", "det", "bbox/AP/dog", 0.25, "detection"),
        row("b", "det", "bbox/AP", 0.20, "detection"),
        row("b", "det", "bbox/AP/cat", 0.15, "detection"),
        row("a", "glue", "superglue/score", 0.70, "superglue"),
        row("a", "glue", "boolq/acc", 0.75, "superglue"),
        row(
            "b", "glue", None, None, "superglue", dataset=None, split=None, status="failed", error="CUDA out of memory\nTraceback (most recent call last): ..."
        ),
    ]
    path = tmp_path / "rows.parquet"
    write_rows(path, rows)
    return path


def test_summary_shows_each_familys_headline(board):
    text = report.render([str(board)])
    assert "d/<wbr>val top1" in summary_row(text, "clear")
    assert "near/<wbr>mean AUROC" in section(text, "summary") and "far/<wbr>mean AUROC" in section(text, "summary")
    assert "d/<wbr>val bbox/AP<" in summary_row(text, "det")
    assert "superglue/score" in summary_row(text, "glue")
    for other in ("top5", "bbox/AP50", "boolq/acc", "ssb", "FPR95"):  # only the headline metrics make the summary
        assert other not in section(text, "summary"), other
    # the OOD cell is a model's best method, named
    assert "95.00" in summary_row(text, "oodt") and "energy" in summary_row(text, "oodt")


def test_best_is_marked_only_beyond_the_noise(board):
    text = report.render([str(board)])
    clear, close = summary_row(text, "clear"), summary_row(text, "close")
    assert "<td class='best'><b>90.00</b>" in clear  # a leads b by 20 points; c is higher but not comparable
    assert "95.00 †" in clear and "<b>95.00" not in clear
    assert "<b>" not in close and close.count("≈") == 2  # 1 point apart, 2-point standard errors: a tie
    cells = report.headline_cells(report.headline_rows(report._plain(load_rows([str(board)]))))
    assert cells[("clear", "d", "val", "top1")]["a"].best and not cells[("close", "d", "val", "top1")]["a"].best


def test_ood_section_has_the_postprocessor_by_set_heatmap(board):
    text = report.render([str(board)])
    oodt = section(text, "task-oodt")
    assert oodt.count("<figure class='chart heatmap'><svg") == 2  # one per model
    heat = oodt[oodt.index("chart heatmap") :]
    for label in ("ssb (near)", "near mean", "inat (far)", "far mean", "msp", "energy", "AUROC", "FPR95"):
        assert label in heat, label
    assert "chart heatmap" not in section(text, "task-clear")
    assert "<figure class='chart bars'><svg" in section(text, "task-clear")


def test_per_category_rows_are_folded_with_the_best_models_chart(board):
    det = section(report.render([str(board)]), "task-det")
    folded = re.findall(r"<details>(.*?)</details>", det, re.S)
    assert any("bbox/AP/cat" in d and "<table>" in d for d in folded)  # the per-category table
    chart = next(d for d in folded if "chart per-class" in d)
    assert "of a (2 categories)" in chart and chart.index(">cat<") < chart.index(">dog<")  # a leads; sorted, best first
    main = det[: det.index("<details>")]
    assert "bbox/AP/cat" not in main and "bbox/AP50" in main


def test_failures_are_listed_with_their_first_line(board):
    text = report.render([str(board)])
    fails = section(text, "failures")
    assert "glue" in fails and "CUDA out of memory" in fails and "Traceback" not in fails
    assert "failed" in summary_row(text, "glue")


def test_not_comparable_rows_are_named_in_provenance(board):
    prov = section(report.render([str(board)]), "provenance")
    assert "c × clear: task_hash OTHER, most models ran h-clear" in prov
    for value in ("abc123", "2.14.1", "1.0.31", "3.3.0", "EPYC", "fp32", "64", "r1"):
        assert value in prov, value


def test_no_network_references(board, smoke_report):
    text = report.render([str(board)]) + smoke_report.read_text()
    fetch = r"""((src|href)\s*=\s*["']?|url\(\s*["']?)\s*(https?:)?//"""  # a link, an image, a CSS url() off the page
    assert not re.search(fetch, text, re.I)
    assert "<script" not in text and "@import" not in text
    assert "url(#" in text  # the pattern does see url(): the charts' clip paths point inside the page
    assert smoke_report.stat().st_size < 5e6


def test_diff_section_colours_the_check_verdicts(board, tmp_path):
    base = tmp_path / "base.parquet"
    write_rows(
        base, [row("a", "clear", "top1", 0.95, se=0.005), row("a", "close", "top1", 0.80, se=0.02), row("b", "glue", "superglue/score", 0.5, "superglue")]
    )
    diff = section(report.render([str(board)], baseline=str(base)), "diff")
    assert "1 failed, 1 regressed, 1 within noise" in diff
    assert re.search(r"<tr class='v-regressed'><td>regressed</td><td>a</td><td>clear</td>.*?<td>95.00 ±0.98</td><td>90.00 ±0.98</td><td>-5.00</td>", diff)
    assert "<tr class='v-failed'><td>failed</td><td>b</td><td>glue</td>" in diff


def test_resolution_and_few_shot_charts(tmp_path):
    rows = [row(m, "res", f"top1@{r}", v + r / 1000) for m, v in (("a", 0.5), ("b", 0.6)) for r in (32, 48)]
    rows += [row(m, f"fs{k}", "top1", 0.3 + k / 100, meta=json.dumps({"shots": k})) for m in ("a", "b") for k in (1, 4, 16)]
    rows += [row(m, "ret", f"i2t/R@{k}", 0.2 + k / 100, "retrieval") for m in ("a", "b") for k in (1, 5, 10)]  # recall@k, not a resolution
    write_rows(tmp_path / "r.parquet", rows)
    text = report.render([str(tmp_path / "r.parquet")])
    assert "<figure class='chart resolution'><svg" in section(text, "task-res") and "accuracy vs resolution" in section(text, "task-res")
    assert "<figure class='chart resolution'>" not in section(text, "task-ret")
    few = section(text, "few-shot")
    assert few.count("<figure class='chart few-shot'><svg") == 1 and "fs1, fs16, fs4" in few


def test_compare_html_is_one_block_per_task(board):
    text = cmp.render_html(cmp.build([str(board)]))
    blocks = dict(re.findall(r"<section><h2>(.*?)</h2>(.*?)</section>", text, re.S))
    assert list(blocks) == ["clear", "close", "det", "glue", "oodt"]
    assert "top5" in blocks["clear"] and "top5" not in blocks["close"]  # no columns of other tasks
    assert "superglue/score" in blocks["glue"] and "top1" not in blocks["glue"] and "failed" in blocks["glue"]
    assert "task config differs" in blocks["clear"] and "task config differs" not in blocks["close"]  # notes stay with their task
    assert "<svg" not in text  # no sweep, no chart


def test_cli_writes_the_report(board, tmp_path):
    out = tmp_path / "r.html"
    r = CliRunner().invoke(app, ["report", str(board), "-o", str(out), "--title", "nightly <run>"])
    assert r.exit_code == 0, r.output
    assert "<title>nightly &lt;run&gt;</title>" in out.read_text()
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "does not exist" in r.output


# ---------------------------------------------------------------- in a browser
@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "smoke.html"
    report.write([str(SMOKE)], out, baseline=str(SMOKE))
    return out


def _chromium():
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(found):
        pytest.skip("chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(found[1]), options=opts)


def test_smoke_report_renders_in_chromium(smoke_report):
    from selenium.webdriver.common.by import By

    tasks = sorted(load_rows([str(SMOKE)]).task.unique())
    driver = _chromium()
    try:
        driver.get(smoke_report.as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        ids = {e.get_attribute("id") for e in driver.find_elements(By.CSS_SELECTOR, "section[id]")}
        assert {"summary", "diff", "provenance", "failures", *(f"task-{t}" for t in tasks)} <= ids
        driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")  # folded charts count too
        sizes = driver.execute_script(
            "return [...document.querySelectorAll('figure.chart svg')].map(s => {const r = s.getBoundingClientRect(); return [r.width, r.height]})"
        )
        assert len(sizes) >= len(tasks)  # a headline bar chart per task at least
        assert all(w > 0 and h > 0 for w, h in sizes), sizes
    finally:
        driver.quit()
