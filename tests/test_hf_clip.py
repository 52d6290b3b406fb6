"""hf_clip against transformers itself, on tiny random-init CLIP and SigLIP folders built offline.

CLIP's tokenizer is a real CLIPTokenizer over a letters-only vocab written here. SigLIP's
SiglipTokenizer needs sentencepiece (not installed), so its folder holds a PreTrainedTokenizerFast
built with `tokenizers`: a Unigram model with SigLIP's layout (Metaspace, `</s>` appended and used
as the pad token, no attention_mask, model_max_length 64).
"""

import json
import math
import shutil
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from adapters.base import memory_format
from adapters.hf_clip import HfClipAdapter, HfClipArgs, preprocess_from
from bench.cli import app
from bench.errors import CheckpointError
from bench.filehash import sha256_tree

LETTERS = string.ascii_lowercase
TOWER = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
VISION = dict(TOWER, image_size=32, patch_size=8)
TEXTS = ["a photo of a cat.", "dog", "a photo of a fox in the snow " * 12]  # the last one is truncated


def build_clip(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {t: i for i, t in enumerate(["<|startoftext|>", "<|endoftext|>", ".", ".</w>", *LETTERS, *(c + "</w>" for c in LETTERS)])}
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")  # no merges: one token per letter
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    text = dict(TOWER, vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=VISION, projection_dim=16)).save_pretrained(folder)
    # resize the shorter side to 40, centre-crop 32: crop_pct 0.8
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}), tokenizer=tok).save_pretrained(folder)
    return folder


def build_siglip(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessor, SiglipModel

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(c, -3.0) for c in LETTERS] + [("▁" + c, -3.5) for c in LETTERS]
    t = Tokenizer(models.Unigram(pieces, unk_id=2))
    t.normalizer = normalizers.Lowercase()
    t.pre_tokenizer = pre_tokenizers.Metaspace()
    t.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=t, pad_token="</s>", eos_token="</s>", unk_token="<unk>", model_max_length=64, model_input_names=["input_ids"])
    text = dict(TOWER, vocab_size=len(pieces), max_position_embeddings=64, bos_token_id=1, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(0)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=VISION))
    with torch.no_grad():  # SigLIP's init is scale 1, bias 0; make them visible in the metadata
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    model.save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}, resample=2).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_clip")
    return {"clip": build_clip(root / "clip"), "siglip": build_siglip(root / "siglip")}


def adapter(folder, **kw) -> HfClipAdapter:
    return HfClipAdapter(HfClipArgs(name="m", adapter="hf_clip", model=str(folder), **kw))


def reference(kind, folder):
    from transformers import AutoTokenizer, CLIPModel, SiglipModel

    model = {"clip": CLIPModel, "siglip": SiglipModel}[kind].from_pretrained(folder).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def pooled(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_image_features_are_transformers_own(folders, kind):
    a = adapter(folders[kind])
    assert a.kind == kind and a.checkpoint_sha256 == sha256_tree([str(folders[kind])])
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8))
    x = a.normalize(images)
    model, _ = reference(kind, folders[kind])
    model.to(memory_format=memory_format())  # bench's layout, so this is the very same computation
    with torch.inference_mode():
        want = pooled(model.get_image_features(pixel_values=x))
    got = a.image_features(images)
    assert got.shape == (3, model.config.vision_config.hidden_size if kind == "siglip" else 16) and got.dtype == torch.float32
    assert torch.equal(got, want), (got - want).abs().max()
    # bench's normalisation is the processor's rescale + normalise (its resize and crop switched off)
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(folders[kind])
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
    pv = proc(images=pil, do_resize=False, do_center_crop=False, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(x, pv, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_text_features_are_transformers_own_with_its_padding(folders, kind):
    a = adapter(folders[kind])
    model, tok = reference(kind, folders[kind])
    if kind == "siglip":  # padded to max_length as SigLIP was trained; no attention mask
        enc = tok(TEXTS, padding="max_length", truncation=True, return_tensors="pt")
        assert enc["input_ids"].shape == (3, 64) and "attention_mask" not in enc
    else:
        enc = tok(TEXTS, padding="longest", truncation=True, max_length=77, return_tensors="pt")
    mine = a.tokenize(TEXTS)
    assert set(mine) == set(enc) and all(torch.equal(mine[k], enc[k]) for k in enc)
    with torch.inference_mode():
        want = pooled(model.get_text_features(**enc))
    got = a.text_features(TEXTS)
    assert torch.equal(got, want), (got - want).abs().max()
    alone = a.text_features(TEXTS[1:2])
    if kind == "clip":  # the attention mask makes a text's features independent of its batch's padding
        torch.testing.assert_close(alone[0], want[1], rtol=0, atol=1e-5)
    else:  # SigLIP pools the last position, so "longest" padding would change its features
        short = tok(TEXTS[1:2], padding="longest", return_tensors="pt")
        assert short["input_ids"].shape[1] < 64
        with torch.inference_mode():
            assert not torch.allclose(pooled(model.get_text_features(**short))[0], alone[0], atol=1e-3)


def test_metadata_records_scale_bias_scoring_and_the_squash_approximation(folders):
    clip, sig = adapter(folders["clip"]).metadata(), adapter(folders["siglip"]).metadata()
    assert clip["kind"] == "clip" and clip["scoring"] == "softmax" and "logit_bias" not in clip and "preprocess_approximation" not in clip
    assert clip["logit_scale"] == pytest.approx(math.exp(2.6592), rel=1e-4) and clip["params"] > 0
    assert sig["kind"] == "siglip" and sig["scoring"] == "sigmoid"
    assert sig["logit_scale"] == pytest.approx(10.0) and sig["logit_bias"] == pytest.approx(-10.0)
    assert "without keeping the aspect ratio" in sig["preprocess_approximation"]


def test_preprocess_from_processor_configs(folders):
    from transformers import CLIPImageProcessor, SiglipImageProcessor

    p, note = preprocess_from(CLIPImageProcessor().to_dict())  # openai/clip-vit-base-patch32's
    assert (p.input_size, p.crop_pct, p.interpolation, note) == (224, 1.0, "bicubic", None)
    assert p.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073)) and p.std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    p, note = preprocess_from(SiglipImageProcessor(size={"height": 384, "width": 384}, resample=3).to_dict())
    assert (p.input_size, p.crop_pct, p.interpolation, p.mean, p.std) == (384, 1.0, "bicubic", (0.5,) * 3, (0.5,) * 3) and "384x384" in note
    p, _ = preprocess_from({"size": 256, "crop_size": 224, "do_center_crop": True, "resample": 2})  # an old-style int config
    assert (p.input_size, p.crop_pct, p.interpolation) == (224, 0.875, "bilinear")
    p, _ = preprocess_from({"size": {"shortest_edge": 29}, "crop_size": {"height": 20, "width": 20}, "do_center_crop": True})
    assert math.floor(20 / p.crop_pct) == 29  # 20/29 alone would floor to 28
    # the tiny folders, and an override
    a = adapter(folders["clip"])
    assert (a.preprocess.input_size, a.preprocess.crop_pct, a.preprocess.interpolation) == (32, 0.8, "bicubic")
    a = adapter(folders["siglip"])
    assert (a.preprocess.input_size, a.preprocess.crop_pct, a.preprocess.interpolation) == (32, 1.0, "bilinear")
    a = adapter(folders["siglip"], preprocess={"input_size": 48})
    assert a.preprocess.input_size == 48 and a.image_features(torch.zeros(1, 3, 48, 48, dtype=torch.uint8)).shape[0] == 1  # positions interpolated


def test_zero_shot_run_for_both_kinds(folders, small_folder, tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: hf\ndefaults: {device: cpu, batch_size: 4, num_workers: 0, seed: 0}\nmodels:\n"
        f"  - {{name: clip, adapter: hf_clip, model: {folders['clip']}}}\n"
        f"  - {{name: siglip, adapter: hf_clip, model: {folders['siglip']}, kind: siglip}}\n"
        "tasks:\n  - name: zs\n    type: classification\n    protocol: zero_shot\n"
        f"    dataset: {{format: imagefolder, root: {small_folder}}}\n"
        '    zero_shot: {templates: ["a photo of a {}.", "a {}"]}\n'
    )
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    rows = pd.concat([pd.read_parquet(p) for p in (tmp_path / "res").glob("hf/*/rows/*.parquet")], ignore_index=True)
    assert (rows.status == "ok").all() and (rows.n == 9).all() and rows.value.between(0, 1).all()
    top1 = rows[rows.metric == "top1"]
    assert sorted(top1.model) == ["clip", "siglip"]
    meta = {m: json.loads(s) for m, s in zip(rows.model, rows.meta)}
    assert meta["clip"]["scoring"] == "softmax" and meta["siglip"]["scoring"] == "sigmoid"


def test_a_folder_missing_files_fails_with_one_line(folders, tmp_path):
    broken = shutil.copytree(folders["clip"], tmp_path / "broken")
    (broken / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as e:
        adapter(broken)
    msg = str(e.value)
    assert "\n" not in msg and str(broken) in msg and "missing model.safetensors or" in msg
    for name in ("tokenizer.json", "vocab.json", "processor_config.json"):
        (broken / name).unlink()
    with pytest.raises(CheckpointError, match="processor_config.json.*tokenizer.json"):
        adapter(broken)
    with pytest.raises(Exception, match="path does not exist"):
        HfClipArgs(name="m", adapter="hf_clip", model=str(tmp_path / "nowhere"))


def test_video_features_average_normalised_frames(folders):
    a = adapter(folders["clip"])
    clips = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, 4, 32, 32), dtype=np.uint8))
    got = a.video_features(clips)
    frames = torch.nn.functional.normalize(a.image_features(clips[0].permute(1, 0, 2, 3)), dim=-1)
    torch.testing.assert_close(got[0], frames.mean(0), rtol=1e-5, atol=1e-6)
