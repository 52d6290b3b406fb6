"""Peer parity: bench's `loglik` protocol against lm-evaluation-harness 0.4 on the same model and data.

Both harnesses score a tiny random GPT-2 (with a byte-level BPE trained on the records, saved to a
local folder) on the same SuperGLUE val records: bench reads them in the official jsonl layout,
lm-eval as the HF `super_glue` rows it expects (its `wsc.fixed` spans, integer labels), through its
own task YAMLs (`include:`d from the installed package, so their doc_to_text / doc_to_choice /
target_delimiter are lm-eval's) pointed at local jsonl. Every prompt string, log-likelihood,
chosen label and accuracy must agree. The model's context (96 positions) is shorter than the long
passages, so both must take it from the config and cut the context from the left alike.

MultiRC: lm-eval's `acc` is inverted (its choices are ["… yes", "… no"] indexed by the label), so
it equals 1 − bench's per-answer accuracy; bench reports the official F1a and EM instead.
"""

import json
import os
from pathlib import Path

# everything here is local (model folders, jsonl): no hub lookups, before datasets reads its config
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import lm_eval  # noqa: E402  the `test` extra's parity reference, pinned
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bench.data.superglue import TASKS  # noqa: E402
from bench.executor import task_context  # noqa: E402
from bench.tasks.superglue import SuperGlueConfig, SuperGlueTask  # noqa: E402

PEER_TASKS = ["boolq", "cb", "copa", "multirc", "rte", "wic", "wsc"]  # lm-eval's super_glue folders of the same names
N_POSITIONS = 96

# ---------------------------------------------------------------- real-format val records (official jsonl fields)
# fmt: off
BOOLQ = [
    ("is the river thames the longest river in england",
     "The River Thames is a river that flows through southern England, including London. At 215 miles, it is the longest river entirely in England and the second longest in the United Kingdom, after the River Severn.", True),
    ("can you see the great wall of china from the moon",
     "The Great Wall of China is a series of fortifications built across the historical northern borders of ancient Chinese states. Contrary to a popular belief, the wall is not visible to the naked eye from the Moon; astronauts have said it is hard to see even from low Earth orbit.", False),
    ("is a tomato a fruit",
     "Botanically, a tomato is a fruit, a berry consisting of the ovary, together with its seeds, of a flowering plant. However, the tomato is considered a culinary vegetable because it has a much lower sugar content than culinary fruits.", True),
    ("does the human body have 206 bones",
     "The human skeleton is the internal framework of the human body. It is composed of around 270 bones at birth; this total decreases to around 206 bones by adulthood after some bones get fused together.", True),
    ("is the pacific ocean the smallest ocean",
     ("The Pacific Ocean is the largest and deepest of Earth's five oceanic divisions. It extends from the Arctic Ocean in the north to the Southern Ocean in the south, and is bounded by Asia and Australia in the west and the Americas in the east. "
      "It covers about 63 million square miles, which is about 46 percent of Earth's water surface and about one third of its total surface area, larger than all of Earth's land area combined. The equator subdivides it into the North Pacific Ocean and the South Pacific Ocean."), False),
    ("do penguins live at the north pole",
     "Penguins are a group of aquatic flightless birds. They live almost exclusively in the Southern Hemisphere: only one species, the Galapagos penguin, is found north of the Equator.", False),
    ("is mount everest the tallest mountain above sea level",
     "Mount Everest is Earth's highest mountain above sea level, located in the Mahalangur Himal sub-range of the Himalayas. The China-Nepal border runs across its summit point.", True),
    ("is glass a liquid at room temperature",
     "Glass is a non-crystalline, often transparent, amorphous solid. The claim that old window panes are thicker at the bottom because glass flows is a myth; the panes were made unevenly.", False),
]
CB = [
    ("It was a complex language. Not written down but handed down. One might say it was peeled down.", "the language was peeled down", "entailment"),
    ("Valence the void-brain, Valence the virtuous valet. Why couldn't the figger choose his own portion of titanic anatomy to shaft? Did he think he was helping?", "Valence was helping", "contradiction"),
    ("B: And yet, uh, I we-, I hope to see employer based, you know, helping out. You know, child, uh, care centers at the place of employment. A: Uh-huh. B: I don't think that's going to happen.", "that's going to happen", "contradiction"),
    ("He had seen something I should have, which was a car turning in from Soho Square and coming up behind me. My right foot hovered over the accelerator pedal.", "the car was turning in from Soho Square", "entailment"),
    ("A: Do you think that's a good idea? B: Well, I'm not sure the school board would agree that it was worth the money.", "the school board would agree that it was worth the money", "neutral"),
    ("Nicky approached her with the assumption that men are naturally right and it is the role of women to follow their lead. Constance did not believe that men were naturally right.", "men are naturally right", "neutral"),
    ("The Paris to Rouen race was won by a steam car. Everyone had expected that a petrol car would win.", "a petrol car would win", "contradiction"),
    ("I said that the train would be late, and I was right: it arrived an hour after noon.", "the train would be late", "entailment"),
]
COPA = [
    ("My body cast a shadow over the grass.", "What was the CAUSE of this?", "cause", "The sun was rising.", "The grass was cut.", 0),
    ("The woman tolerated her friend's difficult behavior.", "", "cause", "The woman knew her friend was going through a hard time.", "The woman felt that her friend took advantage of her kindness.", 0),
    ("The women met for coffee.", "", "cause", "The cafe reopened in a new location.", "They wanted to catch up with each other.", 1),
    ("The runner wore shorts.", "", "cause", "The forecast predicted high temperatures.", "She planned to run along the beach.", 0),
    ("The guests of the party hid behind the couch.", "", "cause", "It was a surprise party.", "It was a birthday party.", 0),
    ("The politician lost the election.", "", "effect", "He ran negative campaign ads.", "No one voted for him.", 1),
    ("The stain came out of the shirt.", "", "cause", "I patched the shirt.", "I bleached the shirt.", 1),
    ("The man turned on the faucet.", "", "effect", "The toilet filled with water.", "Water flowed from the spout.", 1),
]
RTE = [
    ("Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, according to the Christopher Reeve Foundation.", "Christopher Reeve had an accident.", "not_entailment"),
    ("Yet, we now are discovering that antibiotics are losing their effectiveness against illness. Disease-causing bacteria are mutating faster than we can come up with new antibiotics to fight the new variations.", "Bacteria is winning the war against antibiotics.", "entailment"),
    ("Cairo is now home to some 15 million people - a burgeoning population that produces approximately 10,000 tonnes of rubbish per day, putting an enormous strain on public services.", "15 million tonnes of rubbish are produced daily in Cairo.", "not_entailment"),
    ("The Amish community in Pennsylvania, which numbers about 55,000, lives an agrarian lifestyle, shunning technological advances like electricity and automobiles.", "The Amish lifestyle is rural.", "entailment"),
    ("Mount Olympus towers up from the center of the earth. Greek legend says that the gods lived there.", "Zeus lived on Mount Olympus.", "not_entailment"),
    ("The name for the newest James Bond film has been announced today. The 22nd film, previously known only as Bond 22, will be called Quantum of Solace.", "James Bond is the hero of Quantum of Solace.", "entailment"),
    ("Hepburn, a four-time Academy Award winner, died last June in Connecticut at age 96.", "Hepburn, who won four Oscars, died last June aged 96.", "entailment"),
    ("A farmer who was in contact with cows suffering from BSE died of the human form of mad cow disease.", "The farmer survived.", "not_entailment"),
]
WIC = [  # (lemma, sentence1, form in sentence1, sentence2, form in sentence2, label)
    ("carry", "You must carry your camping gear .", "carry", "Sound carries well over water .", "carries", False),
    ("go", "Gum's going to be a big item this year .", "going", "The dog went to the vet .", "went", True),
    ("break", "He broke the glass on purpose .", "broke", "The news broke at noon .", "broke", False),
    ("head", "He was the head of the class .", "head", "She is the head of the department .", "head", True),
    ("run", "Running a company is hard work .", "Running", "She runs the shop on weekends .", "runs", True),
    ("light", "The bag was light enough to lift .", "light", "Turn off the light when you leave .", "light", False),
    ("hold", "Hold the rope tightly .", "Hold", "The hall holds five hundred people .", "holds", False),
    ("cover", "The children covered the table with a cloth .", "covered", "Snow covers the hills in winter .", "covers", True),
]
WSC = [  # (tokenized text, span1 as the jsonl has it, word index of span1, span2, label, span1 as HF's wsc.fixed has it)
    ("Mark told Pete many lies about himself , which Pete included in his book . He should have been more skeptical .", "Mark", 0, "He", 15, False, "Mark"),
    ("The trophy does n't fit into the brown suitcase because it is too large .", "The trophy", 0, "it", 10, True, "The trophy"),
    ("The trophy does n't fit into the brown suitcase because it is too small .", "the brown suitcase.", 6, "it", 10, True, "the brown suitcase"),
    ("Joan made sure to thank Susan for all the help she had received .", "Joan", 0, "she", 10, True, "Joan"),
    ('Bernard , who had not told the government official that he was less than 21 when he filed for a homestead claim , did not consider that he had done anything dishonest . " I did n\'t lie , " he said .',
     "Bernard", 0, "he", 27, True, "Bernard"),
    ("The city councilmen refused the demonstrators a permit because they feared violence .", "The demonstrators", 4, "they", 9, False, "the demonstrators"),
    ("Jane knocked on Susan 's door but she did not get an answer .", "Susan", 3, "she", 7, False, "Susan"),
    ("Sam pulled up a chair to the piano , but it was broken , so he had to stand instead .", "the piano", 6, "it", 10, False, "the piano"),
]
MULTIRC = [
    ("Sent 1: Susan wanted to have a birthday party.<br>Sent 2: She called all of her friends.<br>Sent 3: She has five friends.<br>Sent 4: Her mom said that Susan can invite them all to the party.<br>Sent 5: Her first friend could not go to the party because she was sick.<br>",
     [("How many people could not go to the party?", [("One", 1), ("Five", 0), ("Her first friend", 1)]),
      ("Who said Susan could invite her friends?", [("Her mom", 1), ("Her first friend", 0)])]),
    ("Sent 1: The rain had continued for a week and the flood had created a big river which were running by Nancy Brown's farm.<br>Sent 2: As she tried to gather her cows to a higher ground, she slipped and hit her head on a fallen tree trunk.<br>Sent 3: The fall made her unconscious for a moment or two.<br>",
     [("What did Nancy try to do before she fell over?", [("Gather her cows", 1), ("Run to the river", 0), ("Climb a tree", 0)]),
      ("How long had the rain continued?", [("A week", 1), ("A day", 0)])]),
]
# fmt: on


def _index_of(words: list[str], span: str, start: int) -> int:
    """The word index the span starts at, checked against the records above."""
    first = span.split()[0].lower()
    assert words[start].lower() == first, (words[start], span)
    return start


def official_records() -> dict[str, list[dict]]:
    """The records in SuperGLUE's official jsonl layout (what bench reads)."""
    out: dict[str, list[dict]] = {
        "boolq": [{"question": q, "passage": p, "idx": i, "label": y} for i, (q, p, y) in enumerate(BOOLQ)],
        "cb": [{"premise": p, "hypothesis": h, "label": y, "idx": i} for i, (p, h, y) in enumerate(CB)],
        "copa": [{"premise": p, "choice1": a, "choice2": b, "question": q, "idx": i, "label": y} for i, (p, _, q, a, b, y) in enumerate(COPA)],
        "rte": [{"premise": p, "hypothesis": h, "idx": i, "label": y} for i, (p, h, y) in enumerate(RTE)],
        "wic": [],
        "wsc": [],
        "multirc": [],
    }
    for i, (lemma, s1, f1, s2, f2, y) in enumerate(WIC):
        a, b = s1.index(f1), s2.index(f2)
        out["wic"].append(
            {
                "word": lemma,
                "sentence1": s1,
                "sentence2": s2,
                "idx": i,
                "label": y,
                "start1": a,
                "start2": b,
                "end1": a + len(f1),
                "end2": b + len(f2),
                "version": 1.1,
            }
        )
    for i, (text, span1, i1, span2, i2, y, _) in enumerate(WSC):
        words = text.split()
        assert words[i2] == span2, (words[i2], span2)
        target = {"span2_index": i2, "span1_index": _index_of(words, span1, i1), "span1_text": span1, "span2_text": span2}
        out["wsc"].append({"target": target, "idx": i, "label": y, "text": text})
    for i, (para, qs) in enumerate(MULTIRC):
        questions = [
            {"question": q, "answers": [{"text": a, "idx": 10 * k + j, "label": y} for j, (a, y) in enumerate(ans)], "idx": k} for k, (q, ans) in enumerate(qs)
        ]
        out["multirc"].append({"idx": i, "version": 1.1, "passage": {"text": para, "questions": questions}})
    return out


def hf_rows(task: str, records: list[dict]) -> list[dict]:
    """The same records as HF's super_glue rows, which lm-eval's configs read (labels as class indices)."""
    labels = TASKS[task][1]
    if task == "multirc":
        return [
            {
                "paragraph": r["passage"]["text"],
                "question": q["question"],
                "answer": a["text"],
                "idx": {"paragraph": r["idx"], "question": q["idx"], "answer": a["idx"]},
                "label": a["label"],
            }
            for r in records
            for q in r["passage"]["questions"]
            for a in q["answers"]
        ]
    if task == "wsc":  # wsc.fixed: spans flattened, repaired where they are not substrings (typed in WSC above)
        fixed = [w[6] for w in WSC]
        return [{"text": r["text"], **r["target"], "span1_text": f, "idx": r["idx"], "label": int(r["label"])} for r, f in zip(records, fixed)]
    return [{**r, "label": labels.index(r["label"])} for r in records]


def write_bench(root: Path, records: dict[str, list[dict]]) -> None:
    for t, recs in records.items():
        d = root / TASKS[t][0]
        d.mkdir(parents=True, exist_ok=True)
        (d / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def write_peer_configs(folder: Path, records: dict[str, list[dict]], cache: Path) -> None:
    """One YAML per task: lm-eval's own default.yaml, included, with its data pointed at local jsonl."""
    sg = Path(lm_eval.__file__).parent / "tasks" / "super_glue"
    folder.mkdir(parents=True, exist_ok=True)
    for t, recs in records.items():
        data = folder / f"{t}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in hf_rows(t, recs)))
        (folder / f"peer_{t}.yaml").write_text(
            f"include: {sg / t / 'default.yaml'}\n"
            f"task: peer_{t}\ntag: []\ndataset_path: json\ndataset_name: null\ntraining_split: null\n"
            f"dataset_kwargs:\n  data_files:\n    validation: {data}\n  cache_dir: {cache}\n"
        )


def all_texts(records: dict[str, list[dict]]) -> list[str]:
    def strings(x):
        if isinstance(x, str):
            yield x
        elif isinstance(x, dict):
            for v in x.values():
                yield from strings(v)
        elif isinstance(x, list):
            for v in x:
                yield from strings(v)

    return [s for recs in records.values() for r in recs for s in strings(r)]


def save_lm(folder: Path, texts: list[str], add_bos_token: bool = False) -> None:
    """A seeded 2-layer GPT-2 and a byte-level BPE trained on `texts`: offline, and nothing like MiniLM's WordPiece."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>", add_bos_token=add_bos_token)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=N_POSITIONS, n_embd=64, n_layer=2, n_head=2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("peer")
    records = official_records()
    write_bench(root / "superglue", records)
    write_peer_configs(root / "lmeval", records, root / "hf-cache")
    save_lm(root / "lm", all_texts(records))
    save_lm(root / "lm-bos", all_texts(records), add_bos_token=True)
    return root


def peer_lm(lm_dir: Path):
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    return HFLM(pretrained=model, tokenizer=AutoTokenizer.from_pretrained(lm_dir), batch_size=8, device="cpu")


def run_lmeval(root: Path, lm_dir: Path, tasks: list[str]) -> dict:
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(root / "lmeval"), include_defaults=False)
    return lm_eval.simple_evaluate(
        model=peer_lm(lm_dir), tasks=[f"peer_{t}" for t in tasks], task_manager=tm, num_fewshot=0, log_samples=True, bootstrap_iters=0
    )


def run_bench(root: Path, lm_dir: Path, tasks: list[str]):
    """bench's loglik protocol; returns its result and, per task, the (contexts, continuations, scores) it asked for."""
    from adapters.transformers import TransformersAdapter, TransformersArgs

    adapter = TransformersAdapter(TransformersArgs(name="gpt", kind="causal_lm", model=str(lm_dir), batch_size=8))
    calls = []
    score = adapter.choice_logprobs

    def spy(contexts, continuations):
        calls.append((list(contexts), list(continuations), score(contexts, continuations)))
        return calls[-1][2]

    adapter.choice_logprobs = spy
    cfg = SuperGlueConfig(name="sg", type="superglue", dataset={"format": "superglue", "root": str(root / "superglue")}, tasks=tasks, protocol="loglik")
    result = SuperGlueTask(cfg, task_context(adapter, seed=0, batch_size=100_000)).evaluate(adapter)
    assert len(calls) == len(tasks)  # one scoring call per task, in task order
    return adapter, result, dict(zip(tasks, calls))


def bench_choice(result, task: str) -> np.ndarray:
    """bench's predicted label index per item, from its predictions frame."""
    labels = TASKS[task][1]
    frame = result.predictions[result.predictions.task == task]
    return np.asarray([labels.index(json.loads(p)) for p in frame.prediction])


def test_loglik_protocol_matches_lm_eval_item_for_item(setup):
    tasks = PEER_TASKS
    peer = run_lmeval(setup, setup / "lm", tasks)
    adapter, result, calls = run_bench(setup, setup / "lm", tasks)
    assert adapter.max_length == N_POSITIONS  # from config.n_positions, as HFLM resolves it
    rows = {r["metric"]: r["value"] for r in result.rows}
    for t in tasks:
        samples = sorted(peer["samples"][f"peer_{t}"], key=lambda s: s["doc_id"])
        args = [[tuple(a) for a in s["arguments"]] for s in samples]
        ll = np.asarray([[r[0] for r in s["filtered_resps"]] for s in samples])
        k = ll.shape[1]
        ctx, cont, scores = calls[t]
        ctx, cont, scores = np.asarray(ctx).reshape(-1, k), np.asarray(cont).reshape(-1, k), scores.reshape(-1, k)
        mine = bench_choice(result, t)
        if t == "multirc":
            # lm-eval scores " {answer}\nIs the answer correct? yes|no" after "…Answer:", bench " yes|no" after
            # "…Answer: {answer}\nIs the answer correct?": the same text, so the same yes-minus-no margin.
            # Its choices are (yes, no), bench's (no, yes).
            assert [[c + d for c, d in zip(rc[::-1], rd[::-1])] for rc, rd in zip(ctx, cont)] == [[c + d for c, d in a] for a in args]
            np.testing.assert_allclose(scores[:, 1] - scores[:, 0], ll[:, 0] - ll[:, 1], atol=1e-4)
            assert (mine == 1 - ll.argmax(1)).all(), t
            gold = np.asarray([r["label"] for r in hf_rows(t, official_records()[t])])
            # lm-eval's inverted acc: 1 - the per-answer accuracy of the same choices
            assert peer["results"][f"peer_{t}"]["acc,none"] == pytest.approx(1 - np.mean(mine == gold), abs=1e-12)
            continue
        assert [list(zip(c, d)) for c, d in zip(ctx, cont)] == args, t  # lm-eval's exact prompt strings
        np.testing.assert_allclose(scores, ll, atol=1e-4, err_msg=t)
        assert (mine == ll.argmax(1)).all(), t
        assert rows[f"{t}/acc"] == pytest.approx(peer["results"][f"peer_{t}"]["acc,none"], abs=1e-12), t
    assert rows["cb/f1"] == pytest.approx(peer["results"]["peer_cb"]["f1,none"], abs=1e-12)


def test_bos_adding_tokenizer_matches_lm_eval(setup):
    """A tokenizer that puts BOS before text: lm-eval 0.4 encodes contexts with it, and so must bench."""
    tasks = ["boolq", "copa"]
    peer = run_lmeval(setup, setup / "lm-bos", tasks)
    adapter, result, calls = run_bench(setup, setup / "lm-bos", tasks)
    assert adapter.bos == [adapter.tokenizer.bos_token_id]
    for t in tasks:
        ll = np.asarray([[r[0] for r in s["filtered_resps"]] for s in sorted(peer["samples"][f"peer_{t}"], key=lambda s: s["doc_id"])])
        np.testing.assert_allclose(calls[t][2].reshape(ll.shape), ll, atol=1e-4, err_msg=t)
        assert {r["metric"]: r["value"] for r in result.rows}[f"{t}/acc"] == pytest.approx(peer["results"][f"peer_{t}"]["acc,none"], abs=1e-12)


@pytest.mark.parametrize("lm", ["lm", "lm-bos"])
def test_empty_context_and_trailing_spaces_match_lm_eval(setup, lm):
    """lm-eval's request encoding: an empty context is the BOS/EOS token; a context's trailing spaces start the continuation."""
    from lm_eval.api.instance import Instance

    from adapters.transformers import TransformersAdapter, TransformersArgs

    contexts = ["", "", "Question: is it? Answer:  ", "Passage:\n", "The man turned on the faucet because"]
    continuations = [" yes", "<|endoftext|>Water flowed.", "no", " yes", "  water flowed from the spout."]
    reqs = [Instance("loglikelihood", {}, (c, d), i) for i, (c, d) in enumerate(zip(contexts, continuations))]
    theirs = [ll for ll, _ in peer_lm(setup / lm).loglikelihood(reqs, disable_tqdm=True)]
    mine = TransformersAdapter(TransformersArgs(name="gpt", kind="causal_lm", model=str(setup / lm))).choice_logprobs(contexts, continuations)
    np.testing.assert_allclose(mine, theirs, atol=1e-4)
