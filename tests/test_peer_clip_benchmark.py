"""Parity with CLIP_benchmark (a test extra): the same open_clip checkpoint and data through its
`evaluate` functions and through `bench run` give the same retrieval R@k, zero-shot top-1/top-5
and mean per-class recall."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.data.captions import SyntheticCaptionsSpec
from bench.results import load_rows

cb_retrieval = pytest.importorskip("clip_benchmark.metrics.zeroshot_retrieval")
cb_zeroshot = pytest.importorskip("clip_benchmark.metrics.zeroshot_classification")
from clip_benchmark.datasets.builder import image_captions_collate_fn  # noqa: E402

ARCH = "ViT-S-32"
TEMPLATES = ["a photo of a {c}.", "a drawing of a {c}."]  # CLIP_benchmark's own convention


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import open_clip
    from PIL import Image

    root = tmp_path_factory.mktemp("peer_cb")
    torch.manual_seed(0)
    model = open_clip.create_model(ARCH)
    torch.save(model.state_dict(), root / "clip.pt")
    # retrieval: 20 generated images with 1 to 5 captions each, as a COCO captions file
    SyntheticCaptionsSpec(format="captions_synthetic", n=20, size=96, root=str(root / "shapes")).load()
    lines = [json.loads(x) for x in (root / "shapes" / "captions.jsonl").read_text().splitlines()]
    images = [{"id": i + 1, "file_name": r["image"]} for i, r in enumerate(lines)]
    anns = [{"id": len(c) * 100 + i, "image_id": i + 1, "caption": c} for i, r in enumerate(lines) for c in r["captions"]]
    (root / "captions.json").write_text(json.dumps({"images": images, "annotations": anns}))
    # zero-shot: 6 colour classes of 2 to 7 noisy images (unbalanced, so per-class recall is not top-1)
    rng = np.random.default_rng(0)
    colours = {"red": (200, 30, 30), "green": (30, 160, 50), "blue": (30, 60, 200), "yellow": (230, 210, 40), "purple": (130, 50, 160), "grey": (128, 128, 128)}
    for c, (name, rgb) in enumerate(colours.items()):
        (root / "folder" / "val" / name).mkdir(parents=True)
        for j in range(2 + c):
            px = np.clip(np.asarray(rgb) + rng.normal(0, 40, (80, 96, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / "folder" / "val" / name / f"{j}.png")
    (root / "templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    return root


def _clip_benchmark(root):
    import open_clip
    from torchvision.datasets import CocoCaptions, ImageFolder

    model, _, preprocess = open_clip.create_model_and_transforms(ARCH, pretrained=str(root / "clip.pt"))
    model.eval()
    tok = open_clip.get_tokenizer(ARCH)
    coco = CocoCaptions(root=str(root / "shapes"), annFile=str(root / "captions.json"), transform=preprocess)
    dl = torch.utils.data.DataLoader(coco, batch_size=8, collate_fn=image_captions_collate_fn)
    retrieval = cb_retrieval.evaluate(model, dl, tok, "cpu", amp=False, recall_k_list=[1, 5, 10])
    folder = ImageFolder(str(root / "folder" / "val"), transform=preprocess)
    dl = torch.utils.data.DataLoader(folder, batch_size=8)
    # its evaluate() ends in accuracy(), whose float() of a 1-element array numpy 2 refuses; the
    # classifier and logits are its own, and the metrics are computed as accuracy() and
    # evaluate() define them (top-k by torch.topk, mean_per_class_recall by balanced_accuracy_score)
    from sklearn.metrics import balanced_accuracy_score

    classifier = cb_zeroshot.zero_shot_classifier(model, tok, folder.classes, TEMPLATES, "cpu", amp=False)
    logits, target = cb_zeroshot.run_classification(model, classifier, dl, "cpu", amp=False)
    top = logits.topk(5, 1, True, True)[1]
    zs = {f"acc{k}": (top[:, :k] == target[:, None]).any(1).float().mean().item() for k in (1, 5)}
    zs["mean_per_class_recall"] = balanced_accuracy_score(target, logits.argmax(axis=1))
    return retrieval, zs


def test_bench_equals_clip_benchmark_on_retrieval_and_zero_shot(setup, tmp_path):
    root = setup
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"name: peer\ndefaults: {{device: cpu, batch_size: 8}}\nuncertainty: off\n"
        f"models:\n  - {{name: clip, adapter: open_clip, arch: {ARCH}, checkpoint: {root / 'clip.pt'}}}\n"
        "tasks:\n"
        f"  - {{name: coco, type: retrieval, dataset: {{format: coco_captions, annotations: {root / 'captions.json'}, images: {root / 'shapes'}}}}}\n"
        f"  - {{name: colours, type: classification, protocol: zero_shot, zero_shot: {{templates_file: {root / 'templates.txt'}}},"
        f" dataset: {{format: imagefolder, root: {root / 'folder'}, class_order: lexical}}}}\n"
    )
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "res"), "--no-cache"])
    assert r.exit_code == 0, r.output
    got = load_rows([tmp_path / "res"]).set_index(["task", "metric"]).value
    retrieval, zs = _clip_benchmark(root)
    n_img, n_txt = 20, sum(1 + i % 5 for i in range(20))
    for k in (1, 5, 10):
        # CLIP_benchmark: "text_retrieval" = image queries (i2t), "image_retrieval" = caption queries (t2i); float32 means
        assert round(retrieval[f"text_retrieval_recall@{k}"] * n_img) == round(got["coco", f"i2t/R@{k}"] * n_img), k
        assert round(retrieval[f"image_retrieval_recall@{k}"] * n_txt) == round(got["coco", f"t2i/R@{k}"] * n_txt), k
    n = sum(2 + c for c in range(6))
    assert round(zs["acc1"] * n) == round(got["colours", "top1"] * n) and round(zs["acc5"] * n) == round(got["colours", "top5"] * n)
    assert abs(zs["mean_per_class_recall"] - got["colours", "mean_per_class_recall"]) < 1e-9
