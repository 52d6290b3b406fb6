"""Parity with timm's own eval pipeline (validate.py): same checkpoint, same folder, same top-1/top-5.

The reference side is written with timm's library functions the way validate.py calls them: the data
config at the test size (use_test_size, validate.py's default), timm's dataset reader (natural class
order), create_loader's eval transform and prefetcher, channels_last, and timm.utils.accuracy.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from bench.cli import app

BATCH = 8
CLASSES = [str(c) for c in range(1, 11)]  # natural and plain sort disagree for 9 of the 10


def make_folder(root: Path) -> Path:
    """root/val/<1..10>/<i>.jpg: 4 smooth random JPEGs per class, of varied shapes."""
    rng = np.random.default_rng(0)
    for c in CLASSES:
        d = root / "val" / c
        d.mkdir(parents=True)
        for i in range(4):
            w, h = (128, 96) if i % 2 else (90, 120)
            small = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
            Image.fromarray(small).resize((w, h), Image.BICUBIC).save(d / f"{i}.jpg", quality=90)
    return root


def timm_loader(model, root: Path, use_test_size: bool = True):
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=model, use_test_size=use_test_size)
    dataset = timm.data.create_dataset("", root=str(root), split="val")
    loader = timm.data.create_loader(
        dataset,
        input_size=cfg["input_size"],
        batch_size=BATCH,
        is_training=False,
        use_prefetcher=True,
        interpolation=cfg["interpolation"],
        mean=cfg["mean"],
        std=cfg["std"],
        num_workers=0,
        crop_pct=cfg["crop_pct"],
        crop_mode=cfg["crop_mode"],
        device=torch.device("cpu"),
    )
    return cfg, dataset, loader


def timm_eval(arch: str, checkpoint: Path, root: Path, use_test_size: bool = True) -> dict:
    """validate.py's loop: create_model + checkpoint, eval loader, channels_last, accuracy per batch."""
    import timm
    from timm.utils import accuracy

    model = timm.create_model(arch, num_classes=len(CLASSES))
    model.load_state_dict(load_file(checkpoint))
    model = model.eval().to(memory_format=torch.channels_last)
    cfg, dataset, loader = timm_loader(model, root, use_test_size)
    correct1 = correct5 = 0
    preds, targets, logits = [], [], []
    with torch.inference_mode():
        for x, y in loader:
            out = model(x.contiguous(memory_format=torch.channels_last))
            acc1, acc5 = accuracy(out, y, topk=(1, 5))  # percentages of this batch
            correct1 += round(acc1.item() * len(y) / 100)
            correct5 += round(acc5.item() * len(y) / 100)
            preds.append(out.argmax(1))
            targets.append(y)
            logits.append(out)
    n = len(dataset)
    paths = [str(Path(dataset.filename(i, absolute=True)).resolve()) for i in range(n)]
    return {
        "cfg": cfg,
        "top1": correct1 / n,
        "top5": correct5 / n,
        "pred": dict(zip(paths, torch.cat(preds).tolist())),
        "target": dict(zip(paths, torch.cat(targets).tolist())),
        "score": dict(zip(paths, torch.cat(logits).max(1).values.tolist())),
        "class_to_idx": dataset.reader.class_to_idx,
    }


def make_checkpoint(arch: str, root: Path, path: Path) -> Path:
    """A seeded random-init model whose head spreads predictions over the classes.

    At random init every image gets nearly the same logits (one class wins everywhere), which would
    make the per-image comparison weak; a random head on the centred pooled features of these images
    separates them.
    """
    import timm

    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=len(CLASSES)).eval()
    _, _, loader = timm_loader(model, root)
    with torch.inference_mode():
        feats = torch.cat([model.forward_head(model.forward_features(x), pre_logits=True) for x, _ in loader])
    scale = feats.std(0).mean()
    w = torch.randn(len(CLASSES), feats.shape[1], generator=torch.Generator().manual_seed(1)) / scale
    with torch.no_grad():
        model.fc.weight.copy_(w)
        model.fc.bias.copy_(-(feats.mean(0) @ w.T))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


def test_bench_matches_timm_validate_pipeline(tmp_path):
    import timm

    arch = "resnet18"
    pre = timm.models.get_pretrained_cfg(arch)
    # the premise: this config has a test size other than its train size, so the test proves which one ran
    assert tuple(pre.test_input_size) != tuple(pre.input_size) and pre.test_crop_pct != pre.crop_pct

    root = make_folder(tmp_path / "data")
    ckpt = make_checkpoint(arch, root, tmp_path / "rn18.safetensors")
    ref = timm_eval(arch, ckpt, root)
    assert ref["cfg"]["input_size"] == tuple(pre.test_input_size) and ref["cfg"]["crop_pct"] == pre.test_crop_pct
    assert list(ref["class_to_idx"]) == CLASSES  # timm numbers the folders naturally
    assert len(set(ref["pred"].values())) >= 4, "predictions should spread over the classes"
    # the train size would have given other predictions: the size matters for this test
    train = timm_eval(arch, ckpt, root, use_test_size=False)
    assert train["pred"] != ref["pred"]

    suite = tmp_path / "peer.yaml"
    suite.write_text(
        f"""\
name: peer
defaults: {{device: cpu, precision: fp32, batch_size: {BATCH}, num_workers: 0, seed: 0}}
models:
  - {{name: rn18, adapter: timm, arch: {arch}, num_classes: {len(CLASSES)}, checkpoint: {ckpt}}}
tasks:
  - name: head
    type: classification
    dataset: {{format: imagefolder, root: {root}, split: val, class_order: natural}}
"""
    )
    out = tmp_path / "results"
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(out)])
    assert r.exit_code == 0, r.output
    run_dir = next(out.glob("peer/*/"))
    rows = pd.concat([pd.read_parquet(p) for p in run_dir.glob("rows/*.parquet")], ignore_index=True)
    assert (rows.status == "ok").all(), rows.error.tolist()
    value = rows.set_index("metric").value
    assert value["top1"] == ref["top1"] and value["top5"] == ref["top5"]
    assert 0 < ref["top1"] < 1  # neither trivially all right nor all wrong

    # per image: the same class index for the label (natural order) and the same top-1 prediction
    preds = pd.read_parquet(next(run_dir.glob("predictions/*.parquet")))
    paths = [str(Path(p).resolve()) for p in preds.path]
    assert sorted(paths) == sorted(ref["pred"])
    assert preds.label.tolist() == [ref["target"][p] for p in paths]
    assert [int(t[0]) for t in preds.topk] == [ref["pred"][p] for p in paths]
    np.testing.assert_allclose(preds.score.to_numpy(), [ref["score"][p] for p in paths], rtol=1e-4, atol=1e-5)

    # the rows record the preprocessing that ran: timm's test size and crop
    meta = json.loads(rows.meta.iat[0])
    assert meta["preprocess"]["input_size"] == pre.test_input_size[-1]
    assert meta["preprocess"]["crop_pct"] == pytest.approx(pre.test_crop_pct)


def test_timm_adapter_defaults_to_test_size_and_keeps_overrides():
    from adapters.timm import TimmAdapter, TimmArgs

    def pre(**kw):
        a = TimmAdapter(TimmArgs(name="m", num_classes=3, **kw))
        assert a.metadata()["preprocess"] == a.preprocess.as_dict()
        return a.preprocess

    p = pre(arch="resnet18")
    assert (p.input_size, p.crop_pct) == (288, 1.0)  # test_input_size, test_crop_pct
    p = pre(arch="resnet18", preprocess={"input_size": 160})
    assert (p.input_size, p.crop_pct) == (160, 1.0)  # as validate.py --img-size: the size overridden, test crop kept
    p = pre(arch="resnet18", preprocess={"input_size": 160, "crop_pct": 0.875})
    assert (p.input_size, p.crop_pct) == (160, 0.875)
    p = pre(arch="vit_tiny_patch16_224", kwargs={"img_size": 32})
    assert p.input_size == 32  # a model built at another size is fed that size
