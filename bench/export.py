"""Submission files for leaderboards, from the per-sample predictions a run wrote.

`superglue`: for each model, one jsonl per task named as the SuperGLUE server expects (BoolQ.jsonl,
CB.jsonl, …, AX-b.jsonl, AX-g.jsonl) with `idx` and `label` in the leaderboard's label strings
(MultiRC nested by paragraph and question, ReCoRD's label the answer text), zipped together.
`ego4d`: for each model and Ego4D task, the challenge's JSON for the test split (NLQ: version,
challenge, results of top-5 predicted_times per query; MQ: ActivityNet's detection layout).
"""

from __future__ import annotations

import json
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Optional

import pandas as pd

from bench.errors import BenchError

# An exporter is `fn(results, out, model, types) -> [(path written, note)]`, declared by the families
# it serves as `exporter = (name, "module:function")`; `types` are those families' task types.


def exporters() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name → ("module:function", the task types declaring it), from the registered families."""
    from bench.tasks import TASKS

    table: dict = {}
    for t in TASKS.list():
        fam = TASKS.get(t)
        if fam.exporter:
            name, target = fam.exporter
            prev = table.get(name, (target, ()))
            if prev[0] != target:
                raise BenchError(f"exporter '{name}' is declared as both {prev[0]} and {target}")
            table[name] = (target, prev[1] + (t,))
    return table


def run_exporter(name: str, results: Path, out: Path, model: Optional[str] = None) -> list[tuple[Path, str]]:
    from adapters.python import resolve_factory  # the same "module:function" import as factories

    target, types = exporters()[name]
    return resolve_factory(target)(Path(results), Path(out), model, types)


def _jobs(results: Path, want: tuple[str, ...]) -> dict[str, tuple[str, str, str, Path]]:
    """job_hash → (model, task, type, newest predictions file) for ok jobs of these task types under a run or suite folder."""
    runs = sorted(results.glob("run.json")) + sorted(results.glob("*/run.json"))
    if not runs:
        raise BenchError(f"{results}: no run.json here or one level down; pass a run folder or a suite's results folder")
    found: dict = {}
    for rj in runs:  # run ids sort by start time: later runs win
        run = json.loads(rj.read_text())
        types = {t["name"]: t["type"] for t in run["suite"]["tasks"]}
        wanted = set(want)
        for h, j in run["jobs"].items():
            p = rj.parent / "predictions" / f"{h}.parquet"
            if types.get(j["task"]) in wanted and j["status"] == "ok" and p.exists():
                found[h] = (j["model"], j["task"], types[j["task"]], p)
    return found


def _line(task: str, key, label) -> dict:
    return {"idx": key, "label": label}


def export_superglue(results: Path, out: Path, model: Optional[str] = None, types=("superglue",)) -> list[tuple[Path, str]]:
    """Write OUT/<model>/<Task>.jsonl and OUT/<model>-superglue.zip; notes how many test items lack a prediction."""
    from bench.data.superglue import TASKS

    jobs = _jobs(Path(results), tuple(types))
    by_model: dict = {}
    for model_name, _, _, p in jobs.values():
        if model is None or model_name == model:
            by_model[model_name] = p
    if not by_model:
        raise BenchError(f"{results}: no finished {'/'.join(types)} job" + (f" for model '{model}'" if model else ""))
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
        written.append((zpath, f"{missing} test items have no prediction" if missing else ""))
    return written


def export_ego4d(results: Path, out: Path, model: Optional[str] = None, types=("ego4d_nlq", "ego4d_mq")) -> list[tuple[Path, str]]:
    """Write OUT/<model>/<task>_test_submission.json for every Ego4D NLQ/MQ job with test predictions."""
    from bench.data.ego4d import MQ_CHALLENGE, NLQ_CHALLENGE, VERSION

    jobs = [j for j in _jobs(Path(results), tuple(types)).values() if model is None or j[0] == model]
    if not jobs:
        raise BenchError(f"{results}: no finished {'/'.join(types)} job" + (f" for model '{model}'" if model else ""))
    written = []
    for model_name, task, ttype, p in sorted(jobs):
        preds = pd.read_parquet(p)
        test = preds[preds.split == "test"]
        if test.empty:
            raise BenchError(f"{p}: no test predictions for '{model_name}' × '{task}'; run the task with export_test: true")
        folder = Path(out) / model_name
        folder.mkdir(parents=True, exist_ok=True)
        if ttype == "ego4d_nlq":
            results_ = [
                {"clip_uid": r.clip_uid, "annotation_uid": r.annotation_uid, "query_idx": int(r.query_idx), "predicted_times": json.loads(r.predicted_times)}
                for r in test.itertuples(index=False)
            ]
            doc = {"version": VERSION, "challenge": NLQ_CHALLENGE, "results": results_}
        else:
            by_clip: dict = defaultdict(list)
            for r in test.itertuples(index=False):
                by_clip[r.clip].append({"label": r.label, "segment": [float(r.start), float(r.end)], "score": float(r.score)})
            doc = {"version": VERSION, "challenge": MQ_CHALLENGE, "results": dict(by_clip), "external_data": {}}
        path = folder / f"{task}_test_submission.json"
        path.write_text(json.dumps(doc))
        written.append((path, f"{len(test)} predictions"))
    return written
