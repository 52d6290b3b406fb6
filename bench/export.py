"""Submission files for leaderboards, from the per-sample predictions a run wrote.

`superglue`: for each model, one jsonl per task named as the SuperGLUE server expects (BoolQ.jsonl,
CB.jsonl, …, AX-b.jsonl, AX-g.jsonl) with `idx` and `label` in the leaderboard's label strings
(MultiRC nested by paragraph and question, ReCoRD's label the answer text), zipped together.
"""

from __future__ import annotations

import json
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Optional

import pandas as pd

from bench.errors import BenchError


def _superglue_jobs(results: Path) -> dict[str, tuple[str, Path]]:
    """job_hash → (model, newest predictions file) for ok superglue jobs under a run or suite folder."""
    runs = sorted(results.glob("run.json")) + sorted(results.glob("*/run.json"))
    if not runs:
        raise BenchError(f"{results}: no run.json here or one level down; pass a run folder or a suite's results folder")
    found: dict = {}
    for rj in runs:  # run ids sort by start time: later runs win
        run = json.loads(rj.read_text())
        types = {t["name"]: t["type"] for t in run["suite"]["tasks"]}
        for h, j in run["jobs"].items():
            p = rj.parent / "predictions" / f"{h}.parquet"
            if types.get(j["task"]) == "superglue" and j["status"] == "ok" and p.exists():
                found[h] = (j["model"], p)
    return found


def _line(task: str, key, label) -> dict:
    return {"idx": key, "label": label}


def export_superglue(results: Path, out: Path, model: Optional[str] = None) -> list[tuple[Path, int]]:
    """Write OUT/<model>/<Task>.jsonl and OUT/<model>-superglue.zip; returns (zip, missing predictions)."""
    from bench.data.superglue import TASKS

    jobs = _superglue_jobs(Path(results))
    by_model: dict = {}
    for model_name, p in jobs.values():
        if model is None or model_name == model:
            by_model[model_name] = p
    if not by_model:
        raise BenchError(f"{results}: no finished superglue job" + (f" for model '{model}'" if model else ""))
    written = []
    for model_name, p in sorted(by_model.items()):
        preds = pd.read_parquet(p)
        test = preds[preds.split == "test"]
        if test.empty:
            raise BenchError(f"{p}: no test-split predictions for '{model_name}'; run the task with export_test: true (or split: test)")
        folder = Path(out) / model_name
        folder.mkdir(parents=True, exist_ok=True)
        missing = 0
        files = []
        for t, df in test.groupby("task", sort=False):
            keys = [json.loads(k) for k in df.key]
            labels = [json.loads(v) for v in df.prediction]
            missing += sum(v is None for v in labels)
            path = folder / f"{TASKS[t][0]}.jsonl"
            with open(path, "w") as f:
                if t == "multirc":
                    nested: dict = defaultdict(lambda: defaultdict(list))
                    for (pi, qi, ai), v in zip(keys, labels):
                        nested[pi][qi].append({"idx": ai, "label": v})
                    for pi, qs in nested.items():
                        f.write(json.dumps({"idx": pi, "passage": {"questions": [{"idx": qi, "answers": a} for qi, a in qs.items()]}}) + "\n")
                else:
                    for k, v in zip(keys, labels):
                        label = {True: "true", False: "false"}[v] if t in ("boolq", "wic") and isinstance(v, bool) else v
                        label = {True: "True", False: "False"}[v] if t == "wsc" and isinstance(v, bool) else label
                        f.write(json.dumps(_line(t, k, label)) + "\n")
            files.append(path)
        zpath = Path(out) / f"{model_name}-superglue.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, f.name)
        written.append((zpath, missing))
    return written
