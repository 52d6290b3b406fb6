"""Ego4D tasks end to end: heads on synthetic features, zero-shot CLIP, submission files, bad input, export."""

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.data.ego4d import SyntheticSpec
from bench.metrics import ego4d as E

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ego") / "synthetic"
    SyntheticSpec(format="ego4d_synthetic", clips=4, duration=24, root=str(root)).materialize()
    return root


def write_suite(tmp_path, models: str, tasks: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(f"name: eg\ndefaults: {{device: cpu, num_workers: 0, seed: 0}}\nmodels:\n{models}tasks:\n{tasks}")
    return p


def run(suite, out):
    return CliRunner().invoke(app, ["run", str(suite), "--out", str(out)])


def rows(out) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(Path(out).glob("eg/*/rows/*.parquet"))], ignore_index=True)


HEADS = f"""  - name: heads
    adapter: video_heads
    nlq_head: {{factory: examples.ego4d_heads:nlq_head, python_path: [{REPO}], kwargs: {{video_dim: 32, text_dim: 384}}}}
    mq_head: {{factory: examples.ego4d_heads:mq_head, python_path: [{REPO}], kwargs: {{video_dim: 32, num_classes: 4}}}}
"""


def tasks(synth, nlq=True, mq=True) -> str:
    ds = f"{{format: ego4d_synthetic, clips: 4, duration: 24, root: {synth}}}"
    out = ""
    if nlq:
        out += f"  - name: nlq\n    type: ego4d_nlq\n    export_test: true\n    dataset: {ds}\n"
    if mq:
        out += f"  - name: mq\n    type: ego4d_mq\n    export_test: true\n    dataset: {ds}\n"
    return out


def test_heads_on_features_score_and_their_submissions_rescore_identically(tmp_path, synth):
    r = run(write_suite(tmp_path, HEADS, tasks(synth)), tmp_path / "res")
    assert r.exit_code == 0, r.output
    df = rows(tmp_path / "res")
    assert {"nlq/R1@0.3", "nlq/R5@0.5", "nlq/R3@0.3", "nlq/mIoU", "nlq/coverage"} <= set(df.metric)
    assert {f"mq/mAP@{t}" for t in E.MQ_THRESHOLDS} | {"mq/mAP", "mq/R1x@0.3", "mq/R5x@0.7"} <= set(df.metric)
    got = df.set_index("metric").value
    assert got["nlq/coverage"] == 1.0
    # the model's val predictions, written as submission files, score the same through `predictions`
    preds = {p.name: pd.read_parquet(p) for p in (tmp_path / "res").glob("eg/*/predictions/*.parquet")}
    nlq_p = next(p for p in preds.values() if "query_idx" in p)
    mq_p = next(p for p in preds.values() if "label" in p)
    v = nlq_p[nlq_p.split == "val"]
    (tmp_path / "nlq.json").write_text(
        json.dumps(
            {
                "version": "1.0",
                "challenge": "ego4d_nlq_challenge",
                "results": [
                    {
                        "clip_uid": r.clip_uid,
                        "annotation_uid": r.annotation_uid,
                        "query_idx": int(r.query_idx),
                        "predicted_times": json.loads(r.predicted_times),
                    }
                    for r in v.itertuples()
                ],
            }
        )
    )
    mv = mq_p[mq_p.split == "val"]
    res: dict = {}
    for r in mv.itertuples():
        res.setdefault(r.clip, []).append({"label": r.label, "segment": [r.start, r.end], "score": r.score})
    (tmp_path / "mq.json").write_text(json.dumps({"version": "1.0", "results": res, "external_data": {}}))
    models = f"  - name: files\n    adapter: predictions\n    path: {{nlq: {tmp_path / 'nlq.json'}, mq: {tmp_path / 'mq.json'}}}\n"
    r = run(write_suite(tmp_path, models, tasks(synth)), tmp_path / "res2")
    assert r.exit_code == 0, r.output
    again = rows(tmp_path / "res2").set_index("metric").value
    for m in got.index:
        assert again[m] == pytest.approx(got[m], abs=1e-12), m
    # export: the test split in the challenge layouts
    r = CliRunner().invoke(app, ["export", "ego4d", str(tmp_path / "res" / "eg"), "-o", str(tmp_path / "sub")])
    assert r.exit_code == 0, r.output
    nlq = json.loads((tmp_path / "sub" / "heads" / "nlq_test_submission.json").read_text())
    assert nlq["version"] == "1.0" and nlq["challenge"] == "ego4d_nlq_challenge" and all(len(x["predicted_times"]) == 5 for x in nlq["results"])
    mq = json.loads((tmp_path / "sub" / "heads" / "mq_test_submission.json").read_text())
    assert set(mq) == {"version", "challenge", "results", "external_data"} and all(
        {"label", "segment", "score"} == set(p) for v in mq["results"].values() for p in v
    )


def test_zero_shot_clip_nlq_on_frames(tmp_path, synth):
    models = "  - name: clip\n    adapter: clip_nlq\n    arch: ViT-S-32\n    image_size: 32\n    window_s: [2, 4]\n"
    r = run(write_suite(tmp_path, models, tasks(synth, mq=False)), tmp_path / "res")
    assert r.exit_code == 0, r.output
    preds = pd.read_parquet(next((tmp_path / "res").glob("eg/*/predictions/*.parquet")))
    wins = [json.loads(w) for w in preds.predicted_times]
    assert all(len(w) == 5 and all(0 <= s <= e <= 24 for s, e in w) for w in wins)


def nlq_gold(synth):
    data = json.loads((synth / "nlq_val.json").read_text())
    c = data["videos"][0]["clips"][0]
    a = c["annotations"][0]
    return c["clip_uid"], a["annotation_uid"], a["language_queries"]


def nlq_sub(entries, **header):
    return json.dumps({"version": "1.0", "challenge": "ego4d_nlq_challenge", **header, "results": entries})


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: nlq_sub(e, version="2.0"), "version is '2.0'"),
        (lambda e: nlq_sub(e, challenge="ego4d_mq"), "challenge is 'ego4d_mq'"),
        (lambda e: nlq_sub([dict(e[0], clip_uid="nope")]), "unknown clip_uid 'nope'"),
        (lambda e: nlq_sub([dict(e[0], annotation_uid="nope")]), "unknown annotation_uid 'nope'"),
        (lambda e: nlq_sub([dict(e[0], query_idx=99)]), "query_idx 99 does not exist"),
        (lambda e: nlq_sub([dict(e[0], predicted_times=[[5.0, 1.0]])]), "starts after it ends"),
        (lambda e: nlq_sub([e[0], e[0]]), "duplicate entry"),
    ],
)
def test_bad_nlq_submissions(tmp_path, synth, mutate, message):
    clip, ann, qs = nlq_gold(synth)
    entries = [
        {"clip_uid": clip, "annotation_uid": ann, "query_idx": i, "predicted_times": [[q["clip_start_sec"], q["clip_end_sec"]]]} for i, q in enumerate(qs)
    ]
    f = tmp_path / "sub.json"
    f.write_text(mutate(entries))
    run(write_suite(tmp_path, f"  - name: files\n    adapter: predictions\n    path: {f}\n", tasks(synth, mq=False)), tmp_path / "res")
    err = rows(tmp_path / "res").error.iloc[0]
    assert message in err and str(f) in err


def test_nlq_partial_submission_is_scored_officially_and_counted(tmp_path, synth):
    clip, ann, qs = nlq_gold(synth)
    # one exact window, one outside the 24 s clip (kept), a single window each (fewer than 5)
    entries = [
        {"clip_uid": clip, "annotation_uid": ann, "query_idx": 0, "predicted_times": [[qs[0]["clip_start_sec"], qs[0]["clip_end_sec"]]]},
        {"clip_uid": clip, "annotation_uid": ann, "query_idx": 1, "predicted_times": [[30.0, 40.0]]},
    ]
    f = tmp_path / "sub.json"
    f.write_text(nlq_sub(entries))
    r = run(write_suite(tmp_path, f"  - name: files\n    adapter: predictions\n    path: {f}\n", tasks(synth, mq=False)), tmp_path / "res")
    assert r.exit_code == 0, r.output
    df = rows(tmp_path / "res")
    v = df.set_index("metric").value
    total = sum(
        len(a["language_queries"]) for vid in json.loads((synth / "nlq_val.json").read_text())["videos"] for c in vid["clips"] for a in c["annotations"]
    )
    assert v["nlq/R1@0.5"] == 0.5 and v["nlq/R5@0.3"] == 0.5  # averaged over the 2 predicted, as the official script
    assert v["nlq/coverage"] == pytest.approx(2 / total)
    meta = json.loads(df.meta.iloc[0])
    assert meta["counts"] == {"missing": total - 2, "windows_outside_clip": 1, "fewer_than_5": 2}
    assert "queries have no prediction" in r.output and "outside their clip" in r.output


def test_mq_submission_checks(tmp_path, synth):
    gt = json.loads((synth / "moments.json").read_text())
    clip = next(k for k, v in gt.items() if v["subset"] == "val")
    good = {
        clip: [{"label": a["label"], "segment": [a["start_time"], a["end_time"]], "score": 0.9} for a in gt[clip]["annotations"]]
        + [{"label": "juggle", "segment": [1, 2], "score": 0.5}]
    }
    cases = [
        ({"version": "0.9", "results": good}, "version is '0.9'"),
        ({"version": "1.0", "results": {"zzz": []}}, "unknown clip_uid 'zzz'"),
        ({"version": "1.0", "results": {clip: [{"label": "x", "segment": [3, 1], "score": 1}]}}, "starts after it ends"),
        ({"version": "1.0", "challenge": "ego4d_nlq_challenge", "results": good}, "challenge is 'ego4d_nlq_challenge'"),
    ]
    for i, (doc, message) in enumerate(cases):
        f = tmp_path / f"mq{i}.json"
        f.write_text(json.dumps(doc))
        run(write_suite(tmp_path, f"  - name: files\n    adapter: predictions\n    path: {f}\n", tasks(synth, nlq=False)), tmp_path / f"r{i}")
        assert message in rows(tmp_path / f"r{i}").error.iloc[0]
    f = tmp_path / "good.json"
    f.write_text(json.dumps({"version": "1.0", "results": good, "external_data": {}}))
    r = run(write_suite(tmp_path, f"  - name: files\n    adapter: predictions\n    path: {f}\n", tasks(synth, nlq=False)), tmp_path / "ok")
    assert r.exit_code == 0, r.output
    meta = json.loads(rows(tmp_path / "ok").meta.iloc[0])
    assert meta["counts"]["predictions_of_unknown_classes"] == 1 and meta["counts"]["clips_without_predictions"] >= 1


def sta_files(tmp_path, drop_uid=False, version="1.0"):
    anns = {
        "annotations": [
            {"uid": "u1", "objects": [{"box": [0, 0, 9, 9], "noun_category_id": 1, "verb_category_id": 2, "time_to_contact": 1.0}]},
            {"uid": "u2", "objects": [{"box": [10, 10, 29, 29], "noun_category_id": 3, "verb_category_id": 2, "time_to_contact": 0.5}]},
        ]
    }
    res = {
        "u1": [{"box": [0, 0, 9, 9], "noun_category_id": 1, "verb_category_id": 2, "time_to_contact": 1.1, "score": 0.9}],
        "u2": [{"box": [10, 10, 29, 29], "noun_category_id": 3, "verb_category_id": 5, "time_to_contact": 0.5, "score": 0.8}],
    }
    if drop_uid:
        res.pop("u2")
    a, s = tmp_path / "sta_val.json", tmp_path / "sta_sub.json"
    a.write_text(json.dumps(anns))
    s.write_text(json.dumps({"version": version, "challenge": "ego4d_short_term_object_interaction_anticipation", "results": res}))
    return a, s


def test_sta_task_scores_submission(tmp_path):
    a, s = sta_files(tmp_path)
    task = f"  - name: sta\n    type: ego4d_sta\n    dataset: {{format: ego4d_sta, annotations: {a}}}\n"
    r = run(write_suite(tmp_path, f"  - name: files\n    adapter: predictions\n    path: {s}\n", task), tmp_path / "res")
    assert r.exit_code == 0, r.output
    v = rows(tmp_path / "res").set_index("metric").value
    # noun 1: all four measures match; noun 3: the verb is wrong -> only box+noun and box+noun+ttc
    assert v["sta/mAP_box_noun"] == 1.0 and v["sta/mAP_box_noun_ttc"] == 1.0
    assert v["sta/mAP_box_noun_verb"] == 0.5 and v["sta/mAP_box_noun_verb_ttc"] == 0.5
    a, s = sta_files(tmp_path, drop_uid=True)
    run(write_suite(tmp_path, f"  - name: files\n    adapter: predictions\n    path: {s}\n", task), tmp_path / "res2")
    assert "1 annotated uids have no entry" in rows(tmp_path / "res2").error.iloc[0]


def test_video_heads_load_a_local_checkpoint(tmp_path):
    import sys

    import torch
    from safetensors.torch import save_file

    from adapters.checkpoint import sha256_file
    from adapters.video import VideoHeadsAdapter, VideoHeadsArgs

    sys.path.insert(0, str(REPO))
    from examples.ego4d_heads import mq_head

    torch.manual_seed(123)
    trained = mq_head(video_dim=8, num_classes=3)
    ck = tmp_path / "mq.safetensors"
    save_file(trained.state_dict(), ck)
    spec = {"factory": "examples.ego4d_heads:mq_head", "python_path": [str(REPO)], "kwargs": {"video_dim": 8, "num_classes": 3}}
    a = VideoHeadsAdapter(VideoHeadsArgs(name="h", mq_head={**spec, "checkpoint": str(ck), "sha256": sha256_file(str(ck))}))
    feats = torch.randn(12, 8)
    got = a.mq_moments(feats, 1.0, 12.0, ["a", "b", "c"])
    with torch.no_grad():
        probs = trained(feats[None])[0].numpy()
    top_a = max((m for m in got if m["label"] == "a"), key=lambda m: m["score"])
    s, e = int(top_a["start"]), int(top_a["end"])
    assert top_a["score"] == pytest.approx(float(probs[s:e, 0].mean()), rel=1e-5)
    # a checkpoint for another head shape fails with the key counts
    bad = VideoHeadsArgs(name="h", mq_head={**spec, "kwargs": {"video_dim": 8, "num_classes": 5}, "checkpoint": str(ck)})
    with pytest.raises(Exception, match="shape mismatch"):
        VideoHeadsAdapter(bad)
