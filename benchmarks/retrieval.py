"""Retrieval speed against CLIP_benchmark 1.6.2, measured in one run.

1. Scoring: 5,000 images × 25,000 captions of precomputed embeddings (d = 512). bench's blocked
   ranks + R@1/5/10 (and, separately, with the image bootstrap) against CLIP_benchmark's
   `zeroshot_retrieval.evaluate` fed the same tensors through a model that looks them up.
2. The whole job on generated images: `bench run` of a retrieval task against CLIP_benchmark's
   evaluate with the same open_clip model, images and captions (its own dataloader and transform).

    python benchmarks/retrieval.py [--images 5000] [--captions-per-image 5] [--job-images 400]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class Lookup(torch.nn.Module):
    """A 'model' whose image and text encoders return precomputed embeddings by index."""

    def __init__(self, images: torch.Tensor, texts: torch.Tensor):
        super().__init__()
        self.images, self.texts = images, texts

    def encode_image(self, idx):
        return self.images[idx]

    def encode_text(self, idx):
        return self.texts[idx]


def scoring(n_img: int, per: int, dim: int) -> None:
    from clip_benchmark.metrics import zeroshot_retrieval as zr

    from bench.metrics.retrieval import retrieval_rows
    from bench.metrics.uncertainty import Spec
    from bench.tasks.retrieval import ranks_on_device

    rng = np.random.default_rng(0)
    img = rng.normal(size=(n_img, dim)).astype(np.float32)
    text_image = np.repeat(np.arange(n_img), per)
    txt = (img[text_image] + 2.0 * rng.normal(size=(len(text_image), dim))).astype(np.float32)
    model = Lookup(torch.from_numpy(img), torch.from_numpy(txt))
    batch = 64
    # CLIP_benchmark's loader yields (images, [captions of each image]); here an image is its index, a caption its row
    loader = [(torch.arange(lo, min(lo + batch, n_img)), [list(range(i * per, (i + 1) * per)) for i in range(lo, min(lo + batch, n_img))]) for lo in range(0, n_img, batch)]

    def tokenizer(caption_ids):
        return torch.as_tensor(caption_ids)

    t0 = time.perf_counter()
    theirs = zr.evaluate(model, loader, tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10])
    t_cb = time.perf_counter() - t0
    t0 = time.perf_counter()
    i2t, t2i, _, _ = ranks_on_device(img, txt, text_image, "cpu", 256)
    rows = retrieval_rows(i2t, t2i, text_image, None, "bench", "test")
    t_bench = time.perf_counter() - t0
    t0 = time.perf_counter()
    retrieval_rows(i2t, t2i, text_image, Spec(resamples=1000), "bench", "test")
    t_boot = time.perf_counter() - t0
    ours = {r["metric"]: r["value"] for r in rows}
    for k in (1, 5, 10):
        assert round(theirs[f"text_retrieval_recall@{k}"] * n_img) == round(ours[f"i2t/R@{k}"] * n_img)
        assert round(theirs[f"image_retrieval_recall@{k}"] * len(txt)) == round(ours[f"t2i/R@{k}"] * len(txt))
    print(f"scoring {n_img} images × {len(txt)} captions (d={dim}), threads={torch.get_num_threads()}: same R@1/5/10")
    print(f"  CLIP_benchmark evaluate      {t_cb:7.2f} s")
    print(f"  bench ranks + recalls        {t_bench:7.2f} s   ratio {t_bench / t_cb:.2f}× (target ≤ 1.0×)")
    print(f"  bench's image bootstrap      {t_boot:7.2f} s   (1,000 resamples, on top; `uncertainty: off` skips it)")


def job(n: int) -> None:
    import open_clip
    from clip_benchmark.datasets.builder import image_captions_collate_fn
    from clip_benchmark.metrics import zeroshot_retrieval as zr
    from torchvision.datasets import CocoCaptions

    from bench.data.captions import SyntheticCaptionsSpec

    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    torch.save(open_clip.create_model("ViT-S-32").state_dict(), tmp / "clip.pt")
    SyntheticCaptionsSpec(format="captions_synthetic", n=min(n, 72), size=96, root=str(tmp / "shapes")).load()
    lines = [json.loads(x) for x in (tmp / "shapes" / "captions.jsonl").read_text().splitlines()]
    reps = -(-n // len(lines))  # repeat the 72 generated shapes to n images (as files, so nothing is shared)
    images, anns = [], []
    for r in range(reps):
        for i, rec in enumerate(lines):
            k = r * len(lines) + i
            if k >= n:
                break
            src = tmp / "shapes" / rec["image"]
            dst = tmp / "shapes" / f"rep{k:05d}.png"
            dst.write_bytes(src.read_bytes())
            images.append({"id": k + 1, "file_name": dst.name})
            anns += [{"id": len(anns) + 1, "image_id": k + 1, "caption": f"{c} ({r})"} for c in rec["captions"]]
    (tmp / "captions.json").write_text(json.dumps({"images": images, "annotations": anns}))
    suite = tmp / "s.yaml"
    suite.write_text(
        "name: rt\ndefaults: {device: cpu, batch_size: 64, num_workers: 2}\nuncertainty: off\n"
        f"models: [{{name: clip, adapter: open_clip, arch: ViT-S-32, checkpoint: {tmp / 'clip.pt'}}}]\n"
        f"tasks: [{{name: rt, type: retrieval, dataset: {{format: coco_captions, annotations: {tmp / 'captions.json'}, images: {tmp / 'shapes'}}}}}]\n"
    )
    env = {**os.environ, "BENCH_CACHE": str(tmp / "cache")}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", "run", str(suite), "--out", str(tmp / "res"), "--no-cache"], check=True, env=env, cwd=REPO, capture_output=True)
    t_bench = time.perf_counter() - t0

    t0 = time.perf_counter()
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-S-32", pretrained=str(tmp / "clip.pt"))
    model.eval()
    ds = CocoCaptions(root=str(tmp / "shapes"), annFile=str(tmp / "captions.json"), transform=preprocess)
    dl = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2, collate_fn=image_captions_collate_fn)
    zr.evaluate(model, dl, open_clip.get_tokenizer("ViT-S-32"), "cpu", amp=False, recall_k_list=[1, 5, 10])
    t_cb = time.perf_counter() - t0
    print(f"whole job, {n} generated images × {len(anns)} captions, open_clip ViT-S-32 at 224 px on CPU, batch 64, 2 loader workers:")
    print(f"  CLIP_benchmark (model load + loader + evaluate)      {t_cb:7.2f} s")
    print(f"  bench run (process start, validation, job, rows)     {t_bench:7.2f} s   ratio {t_bench / t_cb:.2f}×")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--captions-per-image", type=int, default=5)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--job-images", type=int, default=400)
    a = ap.parse_args()
    scoring(a.images, a.captions_per_image, a.dim)
    job(a.job_images)


if __name__ == "__main__":
    main()
