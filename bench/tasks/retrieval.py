"""Zero-shot image-text retrieval: i2t and t2i R@1/5/10, rsum and mean recall (CLIP, ALIGN, CLIP_benchmark).

Image and caption embeddings come through the broker; the ranks are computed in blocks on the
model's device, so a 5k × 25k similarity matrix is never held whole: each block of queries
holds at most `memory_mb` of scores.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from bench.data.captions import CaptionSet
from bench.data.formats import CaptionDatasetSpec, dataset_name
from bench.metrics.retrieval import KS, retrieval_rows
from bench.tasks.base import Task, TaskConfig, TaskResult, register_task

TOP = 10  # retrieved indices kept per query in the predictions


class RetrievalConfig(TaskConfig):
    type: Literal["retrieval"]
    dataset: CaptionDatasetSpec
    memory_mb: int = Field(256, gt=0)  # scores held at once per block of queries


def _rows_per_block(n_cols: int, memory_mb: int) -> int:
    # per cell: the float32 score, a float32 temporary and three boolean masks
    return max(1, int(memory_mb * 2**20 // (n_cols * 11)))


def ranks_on_device(images: np.ndarray, texts: np.ndarray, text_image: np.ndarray, device, memory_mb: int):
    """(i2t rank per image, t2i rank per caption, top-10 captions per image, top-10 images per caption)
    as bench.metrics.retrieval defines them, from L2-normalised embeddings, a block of queries at a time."""
    import torch
    import torch.nn.functional as F

    img = F.normalize(torch.as_tensor(images, dtype=torch.float32, device=device), dim=-1)
    txt = F.normalize(torch.as_tensor(texts, dtype=torch.float32, device=device), dim=-1)
    owner = torch.as_tensor(text_image, device=device)
    n_img, n_txt = len(img), len(txt)
    k = min(TOP, n_img, n_txt)

    t2i, t2i_top = [], []
    step = _rows_per_block(n_img, memory_mb)
    cols = torch.arange(n_img, device=device)
    for lo in range(0, n_txt, step):
        s = txt[lo : lo + step] @ img.T
        g = owner[lo : lo + step]
        pos = s.gather(1, g[:, None])
        t2i.append(((s > pos) | ((s == pos) & (cols[None] < g[:, None]))).sum(1).cpu())
        t2i_top.append(s.topk(min(k, n_img), dim=1).indices.cpu())

    i2t, i2t_top = [], []
    step = _rows_per_block(n_txt, memory_mb)
    cols = torch.arange(n_txt, device=device)
    for lo in range(0, n_img, step):
        s = img[lo : lo + step] @ txt.T
        positive = owner[None, :] == torch.arange(lo, lo + len(s), device=device)[:, None]
        best = torch.where(positive, s, torch.full_like(s, -torch.inf)).amax(1, keepdim=True)
        first = (positive & (s == best)).float().argmax(1, keepdim=True)  # the lowest index reaching it
        above = (s > best) | ((s == best) & (cols[None] < first))
        i2t.append((above & ~positive).sum(1).cpu())
        i2t_top.append(s.topk(min(k, n_txt), dim=1).indices.cpu())
    return (torch.cat(i2t).numpy(), torch.cat(t2i).numpy(), torch.cat(i2t_top).numpy(), torch.cat(t2i_top).numpy())


@register_task
class RetrievalTask(Task):
    type = "retrieval"
    Config = RetrievalConfig
    description = "zero-shot image-text retrieval: i2t and t2i R@1/5/10 (any number of captions per image), rsum, mean recall"
    needs = frozenset({"image_features", "text_features"})
    headline = ("mean_recall",)
    cost = 2.0

    @classmethod
    def required_capabilities(cls, cfg: RetrievalConfig) -> frozenset[str]:
        return frozenset({"image_features", "text_features"})

    def evaluate(self, adapter) -> TaskResult:
        cfg = self.cfg
        data: CaptionSet = cfg.dataset.load().subset(self.ctx.limit, self.ctx.seed)
        images = np.asarray(self.ctx.outputs("image_features", data.images))
        texts = np.asarray(self.ctx.outputs("text_features", data.captions))
        i2t, t2i, i2t_top, t2i_top = ranks_on_device(images, texts, data.text_image, self.ctx.device, cfg.memory_mb)
        rows = retrieval_rows(i2t, t2i, data.text_image, self.ctx.uncertainty, dataset_name(cfg.dataset), data.images.name, KS)
        preds = pd.concat(
            [
                pd.DataFrame({"query": "image", "index": np.arange(len(i2t)), "image": np.arange(len(i2t)), "text": data.images.paths, "rank": i2t, "top": list(i2t_top)}),
                pd.DataFrame({"query": "caption", "index": np.arange(len(t2i)), "image": data.text_image, "text": data.captions, "rank": t2i, "top": list(t2i_top)}),
            ],
            ignore_index=True,
        )
        meta = {"images": len(i2t), "captions": len(t2i), "captions_per_image": {str(k): int(v) for k, v in zip(*np.unique(np.bincount(data.text_image), return_counts=True))}}
        return TaskResult(rows=rows, predictions=preds, meta=meta)
