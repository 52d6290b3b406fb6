"""What `bench report` costs: time and size for the smoke baseline and a generated 100-model x 30-task leaderboard.

    python benchmarks/report.py                                   # smoke (with itself as baseline) and 100 x 30
    python benchmarks/report.py --models 20 --tasks 10            # a fast look
    python benchmarks/report.py --screenshot docs/report-summary.png   # also a PNG of the smoke report's summary (headless Chromium)

The generated rows follow bench.results.SCHEMA and the families' shapes: classification (one with a
resolution sweep, three few-shot tasks at 1/4/16 shots), OOD (4 postprocessors x near/far sets and
their means), COCO-style detection with 20 per-category APs, LVIS, SuperGLUE and Ego4D NLQ/MQ; 1% of
jobs fail and two models ran another config of one task. The baseline has no failures, one task
more, another config of one task and 3% of its values 3 points off: every verdict kind shows up.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench import report  # noqa: E402
from bench.results import write_rows  # noqa: E402

SMOKE = REPO / "results" / "baselines" / "smoke.parquet"
T0 = pd.Timestamp("2026-01-01", tz="UTC")
# 30 tasks: mostly classification, OOD and detection, as a backbone leaderboard is (indices into family()'s kinds)
PLAN = [0] * 8 + [1] + [2] * 3 + [3] * 4 + [4] * 5 + [5] * 2 + [6] * 3 + [7] * 2 + [8] * 2
CATS = [f"{c}_{s}" for c in ("red", "green", "blue", "cyan", "white") for s in ("square", "circle", "triangle", "star")]


def family(i: int) -> tuple[str, str, list[tuple[str, str, str, str]], dict]:
    """Task i's (name, task_type, [(dataset, split, metric, method)], meta)."""
    cls = [("imagenet-val", "val", m, "") for m in ("top1", "top5")]
    kinds = [
        ("cls", "classification", cls, {}),
        ("res", "classification", [("imagenet-val", "val", f"{m}@{r}", "") for r in (128, 160, 224, 288) for m in ("top1", "top5")], {}),
        ("fewshot", "classification", cls, {}),
        ("ood", "ood", cls + ood_rows(), {}),
        (
            "det",
            "detection",
            [("coco", "val", m, "") for m in ("bbox/AP", "bbox/AP50", "bbox/AP75", "bbox/APs", "bbox/APm", "bbox/APl")]
            + [("coco", "val", f"bbox/AP/{c}", "") for c in CATS],
            {},
        ),
        ("lvis", "lvis", [("lvis", "val", m, "") for m in ("bbox/AP", "bbox/APr", "bbox/APc", "bbox/APf")], {}),
        ("superglue", "superglue", [("superglue", "val", m, "") for m in ("superglue/score", "boolq/acc", "cb/acc", "copa/acc", "rte/acc")], {}),
        ("nlq", "ego4d_nlq", [("nlq_val", "val", m, "") for m in ("nlq/R1@0.3", "nlq/R1@0.5", "nlq/R5@0.5")], {}),
        ("mq", "ego4d_mq", [("moments", "val", m, "") for m in ("mq/mAP", "mq/mAP@0.5")], {}),
    ]
    k = i % len(PLAN)
    name, kind, rows, meta = kinds[PLAN[k]]
    if name == "fewshot":  # the meta column records the shots, as the few_shot protocol writes it
        meta = {"shots": (1, 4, 16)[PLAN[:k].count(2) % 3]}
    return f"{name}-{i:02d}", kind, rows, meta


def ood_rows() -> list[tuple[str, str, str, str]]:
    sets = [("ssb-hard", "near"), ("ninco", "near"), ("inaturalist", "far"), ("textures", "far")]
    out = []
    for method in ("msp", "energy", "maxlogit", "knn"):
        for metric in ("AUROC", "FPR95", "AUPR_IN", "AUPR_OUT"):
            out += [(d, s, metric, method) for d, s in sets] + [("near", "mean", metric, method), ("far", "mean", metric, method)]
    return out


def leaderboard(models: int, tasks: int, fail: float = 0.01, seed: int = 0) -> list[dict]:
    rng, fails = np.random.default_rng(seed), np.random.default_rng(seed + 1)  # the same values whatever fails
    skill = rng.normal(0, 1, models)
    rows = []
    for t in range(tasks):
        name, kind, metrics, meta = family(t)
        base = rng.uniform(-1, 1.5)
        for m in range(models):
            job = dict(suite="synthetic", model=f"model-{m:03d}", task=name, task_type=kind, run_id=f"run-{m % 3}", job_hash=f"j{m}-{t}", started_at=T0)
            job |= dict(task_hash="other" if (t == 0 and m < 2) else f"h{t}", git_sha="0" * 40, torch="2.14.1", timm="1.0.31", open_clip="3.3.0")
            job |= dict(machine="AMD EPYC", device="cpu", precision="fp32", batch_size=128, seed=0, wall_s=float(rng.uniform(1, 60)), meta=_json(meta))
            noise = rng.normal(0, 0.3, len(metrics))  # drawn either way, so a failure leaves the other jobs' values alone
            if fails.random() < fail:
                rows.append(
                    job | dict(dataset=None, split=None, metric=None, value=None, status="failed", error="CUDA out of memory. Tried to allocate 2.00 GiB")
                )
                continue
            for (dataset, split, metric, method), e in zip(metrics, noise):
                p = 1 / (1 + np.exp(-(base + skill[m] + e)))
                p = 1 - p if "FPR" in metric else p
                se = float(np.sqrt(p * (1 - p) / 2000))
                rows.append(
                    job
                    | dict(
                        dataset=dataset,
                        split=split,
                        metric=metric,
                        method=method,
                        value=p,
                        n=2000,
                        stderr=se,
                        ci_low=max(0, p - 1.96 * se),
                        ci_high=min(1, p + 1.96 * se),
                        status="ok",
                    )
                )
    return rows


def baseline(models: int, tasks: int) -> list[dict]:
    """The leaderboard before: nothing failed, one task more (missing now), another config of task 1, 3% of values 3 points off."""
    rng = np.random.default_rng(2)
    rows = leaderboard(models, tasks + 1, fail=0.0)
    for r in rows:
        if r["task"].endswith("-01"):
            r["task_hash"] = "h1-before"
        elif rng.random() < 0.03:
            r["value"] += rng.choice([-0.03, 0.03])
    return rows


def _json(meta: dict):
    import json

    return json.dumps(meta) if meta else None


def timed_report(results: list[str], baseline: str | None, out: Path) -> tuple[float, int]:
    t = time.perf_counter()
    report.write(results, out, baseline)
    return time.perf_counter() - t, out.stat().st_size


def screenshot(html: Path, png: Path) -> None:
    """The summary section as a PNG, as a reader sees it in Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2400", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(html.resolve().as_uri())
        driver.find_element(By.ID, "summary").screenshot(str(png))
    finally:
        driver.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--screenshot", type=Path, help="write a PNG of the smoke report's summary section here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        s, size = timed_report([str(SMOKE)], str(SMOKE), tmp / "smoke.html")
        print(f"smoke baseline ({SMOKE.name}, with itself as --baseline): {s:.1f} s, {size / 1e6:.2f} MB")
        if args.screenshot:
            screenshot(tmp / "smoke.html", args.screenshot)
            print(f"wrote {args.screenshot}")
        rows = leaderboard(args.models, args.tasks)
        write_rows(tmp / "cur.parquet", rows)
        write_rows(tmp / "base.parquet", baseline(args.models, args.tasks))
        label = f"{args.models} models x {args.tasks} tasks ({len(rows)} rows)"
        s, size = timed_report([str(tmp / "cur.parquet")], None, tmp / "big.html")
        print(f"{label}: {s:.1f} s, {size / 1e6:.2f} MB")
        s, size = timed_report([str(tmp / "cur.parquet")], str(tmp / "base.parquet"), tmp / "big-diff.html")
        print(f"{label}, with --baseline: {s:.1f} s, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
