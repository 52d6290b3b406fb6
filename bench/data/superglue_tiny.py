"""Write a tiny SuperGLUE-format set: every task, in the official jsonl fields, a few records per split.

The records are generated from small fact templates (people, cities, objects) so that a sentence
encoder has something to learn; the point is the format and the pipeline, not the difficulty.
Test splits carry no labels, as in the official download; AX-b and AX-g are labelled, test-only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PEOPLE = ["Alice", "Bob", "Carla", "Deepak", "Emma", "Farid", "Grace", "Hiro"]
CITIES = ["Paris", "Lagos", "Lima", "Oslo", "Hanoi", "Quito", "Cairo", "Perth"]
OBJECTS = ["bicycle", "violin", "camera", "kayak", "telescope", "piano", "tent", "drone"]
COPA = [
    ("The ground was wet.", "cause", "It had rained.", "The sun was shining."),
    ("The glass fell on the floor.", "effect", "It shattered.", "It started to sing."),
    ("The man was thirsty.", "effect", "He drank water.", "He painted the wall."),
    ("The room was dark.", "cause", "The lights were off.", "The window was clean."),
    ("The child cried.", "cause", "She lost her toy.", "She won a prize."),
    ("The ice cream melted.", "cause", "It was left in the sun.", "It was kept in the freezer."),
    ("The dog barked.", "effect", "The neighbours woke up.", "The moon turned blue."),
    ("The battery died.", "effect", "The phone turned off.", "The phone got heavier."),
]
WIC = [
    ("bank", ("She sat on the river bank.", "The bank approved the loan."), ("He fished from the bank.", "They walked along the bank of the river.")),
    ("bat", ("The bat flew out of the cave.", "He swung the bat."), ("A bat hung from the roof.", "The bat slept all day.")),
    ("spring", ("Flowers bloom in spring.", "The spring in the clock broke."), ("We travel every spring.", "Spring is a warm season.")),
    ("light", ("The box is light.", "Turn on the light."), ("The lamp gives light.", "The light was too bright.")),
]


def _records(task: str, n: int, seed: int, labelled: bool) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p, c, o = (PEOPLE[rng.integers(len(PEOPLE))], CITIES[rng.integers(len(CITIES))], OBJECTS[rng.integers(len(OBJECTS))])
        other = CITIES[(CITIES.index(c) + 1 + rng.integers(len(CITIES) - 1)) % len(CITIES)]
        yes = bool(rng.random() < 0.5)
        if task == "boolq":
            r = {
                "question": f"does {p.lower()} live in {(c if yes else other).lower()}",
                "passage": f"{p} lives in {c} and owns a {o}.",
                "idx": i,
                "label": yes,
            }
        elif task == "cb":
            k = int(rng.integers(3))
            hyp = [f"the {o} was in {c}", f"the {o} was not in {c}", f"the {o} was expensive"][k]
            r = {"premise": f"{p} said that the {o} was in {c}.", "hypothesis": hyp, "idx": i, "label": ["entailment", "contradiction", "neutral"][k]}
        elif task == "copa":
            prem, q, right, wrong = COPA[i % len(COPA)]
            r = {"premise": prem, "choice1": right if yes else wrong, "choice2": wrong if yes else right, "question": q, "idx": i, "label": 0 if yes else 1}
        elif task == "rte":
            r = {
                "premise": f"{p} moved to {c} with a {o}.",
                "hypothesis": f"{p} moved to {c if yes else other}.",
                "idx": i,
                "label": "entailment" if yes else "not_entailment",
            }
        elif task == "wic":
            word, different_senses, same_sense = WIC[i % len(WIC)]
            s1, s2 = same_sense if yes else different_senses
            r = {"word": word, "sentence1": s1, "sentence2": s2, "idx": i, "label": yes,
                 "start1": s1.lower().find(word), "end1": s1.lower().find(word) + len(word), "start2": s2.lower().find(word), "end2": s2.lower().find(word) + len(word)}  # fmt: skip
        elif task == "wsc":
            text = f"{p} gave the {o} to the girl because she wanted it."
            span1 = "the girl" if yes else p
            r = {
                "text": text,
                "target": {
                    "span1_text": span1,
                    "span1_index": text.split().index(span1.split()[-1]) if yes else 0,
                    "span2_text": "she",
                    "span2_index": text.split().index("she"),
                },
                "idx": i,
                "label": yes,
            }
        elif task == "multirc":
            text = f"{p} lives in {c}. {p} owns a {o}. Last year {p} visited {other}."
            qs = []
            for qi, (question, right, wrong) in enumerate(
                [(f"Where does {p} live?", c, other), (f"What does {p} own?", o, OBJECTS[(OBJECTS.index(o) + 1) % len(OBJECTS)])]
            ):
                answers = [{"text": right, "idx": 2 * qi, "label": 1}, {"text": wrong, "idx": 2 * qi + 1, "label": 0}]
                qs.append({"question": question, "answers": answers, "idx": qi})
            r = {"idx": i, "version": 1.1, "passage": {"text": text, "questions": qs}}
        elif task == "record":
            text = f"{p} met {PEOPLE[(PEOPLE.index(p) + 1) % len(PEOPLE)]} in {c}.\n@highlight\n{p} bought a {o}"
            ents = []
            for name in (p, PEOPLE[(PEOPLE.index(p) + 1) % len(PEOPLE)], c):
                s = text.index(name)
                ents.append({"start": s, "end": s + len(name) - 1})
            r = {"idx": i, "source": "tiny", "passage": {"text": text, "entities": ents},
                 "qas": [{"query": f"The {o} belongs to @placeholder.", "answers": [{"start": text.index(p), "end": text.index(p) + len(p) - 1, "text": p}], "idx": i}]}  # fmt: skip
        elif task == "axb":
            r = {
                "sentence1": f"{p} visited {c}.",
                "sentence2": f"{p} visited {c if yes else other}.",
                "idx": i,
                "label": "entailment" if yes else "not_entailment",
                "logic": "",
                "lexical-semantics": "",
            }
        else:  # axg: pairs differing only in the pronoun's gender
            pair = i // 2
            pron = "he" if i % 2 == 0 else "she"
            rng2 = np.random.default_rng(seed * 1000 + pair)
            ent = bool(rng2.random() < 0.5)
            r = {"premise": f"The nurse told the patient that {pron} would be fine.", "hypothesis": "The patient would be fine." if ent else "The nurse would be fine.",
                 "idx": i, "pair_id": 1000 + pair, "label": "entailment" if ent else "not_entailment"}  # fmt: skip
        if not labelled:
            r.pop("label", None)
            if task == "multirc":
                for q in r["passage"]["questions"]:
                    for a in q["answers"]:
                        a.pop("label")
            if task == "record":
                for qa in r["qas"]:
                    qa.pop("answers")
        out.append(r)
    return out


def write_tiny(root: Path, tasks: dict, diagnostics: tuple) -> None:
    """Every task's jsonl files; `tasks` and `diagnostics` are the reader's tables (the reader imports this module)."""
    for t, (name, _) in tasks.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        splits = {name: (16, True)} if t in diagnostics else {"train": (32, True), "val": (16, True), "test": (8, False)}
        for split, (n, labelled) in splits.items():
            recs = _records(t, n, seed=hash_seed(t, split), labelled=labelled)
            (d / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def hash_seed(task: str, split: str) -> int:
    return sum(map(ord, f"{task}/{split}")) * 7919
