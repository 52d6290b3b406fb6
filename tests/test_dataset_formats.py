"""webdataset shards and Hugging Face datasets, written by the tests, for classification and retrieval; their bad inputs."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.cli import app
from bench.data.hf import HfCaptionsSpec, HfImagesSpec
from bench.data.wds import WdsCaptionsSpec, WdsImagesSpec
from bench.errors import DataError
from bench.results import load_rows

CLIP = "  - {name: clip, adapter: open_clip, arch: ViT-S-32, image_size: 32}\n"


def _png(rgb) -> bytes:
    b = io.BytesIO()
    Image.new("RGB", (24, 20), rgb).save(b, "PNG")
    return b.getvalue()


def write_wds(root, split="test", n=9, shards=2, captions=True):
    """CLIP_benchmark's layout: root/<split>/{0..k-1}.tar + nshards.txt, root/classnames.txt and templates."""
    import webdataset as wds

    (root / split).mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        with wds.TarWriter(str(root / split / f"{s}.tar")) as w:
            for i in range(s, n, shards):
                sample = {"__key__": f"{split}{i:04d}", "png": _png((30 * i % 255, 80, 200 - 10 * i)), "cls": str(i % 3).encode()}
                if captions:
                    sample["txt"] = "\n".join(f"caption {j} of image {i}" for j in range(1 + i % 3)).encode()
                w.write(sample)
    (root / split / "nshards.txt").write_text(f"{shards}\n")
    (root / "classnames.txt").write_text("apple\nbanana\ncherry\n")
    (root / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\nan image of a {c}.\n")
    return root


def test_wds_classification_reads_labels_names_and_templates(tmp_path):
    write_wds(tmp_path / "wds")
    split = WdsImagesSpec(format="wds", root=str(tmp_path / "wds")).load("test")
    assert len(split) == 9 and split.labels.tolist() == [0, 2, 1, 0, 2, 1, 0, 2, 1]  # shard 0 (0, 2, …), then shard 1
    assert split.class_names == ["apple", "banana", "cherry"] and split.templates == ["a photo of a {c}.", "an image of a {c}."]
    again = WdsImagesSpec(format="wds", root=str(tmp_path / "wds")).load("test")
    assert again.paths == split.paths  # extracted once, by content
    assert split.subset(4, 0).labels.shape == (4,)


def test_wds_and_hf_run_through_a_suite_for_zero_shot_and_retrieval(tmp_path, make_suite):
    import datasets

    write_wds(tmp_path / "wds")
    imgs = [Image.new("RGB", (24, 20), (20 * i, 100, 50)) for i in range(6)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"]), "captions": datasets.Sequence(datasets.Value("string"))})
    ds = datasets.Dataset.from_dict({"image": imgs, "label": [i % 2 for i in range(6)], "captions": [[f"a thing {i}", f"item {i}"] for i in range(6)]}, features=features)
    ds.save_to_disk(str(tmp_path / "hf"))
    suite = make_suite(
        "name: formats\ndefaults: {device: cpu}\nmodels:\n" + CLIP + "tasks:\n"
        f"  - {{name: wds-zs, type: classification, protocol: zero_shot, dataset: {{format: wds, root: {tmp_path / 'wds'}}}}}\n"
        f"  - {{name: wds-rt, type: retrieval, dataset: {{format: wds, root: {tmp_path / 'wds'}}}}}\n"
        f"  - {{name: hf-zs, type: classification, protocol: zero_shot, dataset: {{format: hf, path: {tmp_path / 'hf'}}}}}\n"
        f"  - {{name: hf-rt, type: retrieval, dataset: {{format: hf, path: {tmp_path / 'hf'}, caption_key: captions}}}}\n"
    )
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "res"), "--limit", "5"])
    assert r.exit_code == 0, r.output
    rows = load_rows([tmp_path / "res"])
    n = rows.set_index(["task", "metric"]).n
    assert n["wds-zs", "top1"] == 5 and n["hf-zs", "top1"] == 5 and n["wds-rt", "i2t/R@1"] == 5 and n["hf-rt", "t2i/R@1"] == 10
    meta = json.loads(rows[rows.task == "wds-zs"].meta.iloc[0])
    assert meta["templates"] == 2  # the shards' own template file, with CLIP_benchmark's {c}


def test_a_truncated_shard_is_one_line_naming_it(tmp_path):
    write_wds(tmp_path / "wds")
    shard = tmp_path / "wds" / "test" / "1.tar"
    shard.write_bytes(shard.read_bytes()[:2048])
    with pytest.raises(DataError, match=r"1\.tar: truncated tar shard"):
        WdsImagesSpec(format="wds", root=str(tmp_path / "wds")).load("test")
    shard.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError, match=r"1\.tar: not a readable tar shard"):
        WdsImagesSpec(format="wds", root=str(tmp_path / "wds")).load("test")


def test_wds_samples_without_captions_or_labels_are_named(tmp_path):
    write_wds(tmp_path / "wds", captions=False)
    with pytest.raises(DataError, match=r"has no \.txt"):
        WdsCaptionsSpec(format="wds", root=str(tmp_path / "wds")).load()


def test_hf_without_the_named_key_is_one_line(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))] * 2, "label": [0, 1]}, features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    ds.save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(DataError, match=r"hf: the dataset has no column 'fine_label' \(columns: image, label\)"):
        HfImagesSpec(format="hf", path=str(tmp_path / "hf"), label_key="fine_label").load("test")
    with pytest.raises(DataError, match=r"no column 'caption'"):
        HfCaptionsSpec(format="hf", path=str(tmp_path / "hf")).load()


def test_hf_parquet_files_are_read_too(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8), (i * 50, 0, 0)) for i in range(3)], "label": [0, 1, 1]}, features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])}))
    ds.to_parquet(str(tmp_path / "d.parquet"))
    split = HfImagesSpec(format="hf", path=str(tmp_path / "d.parquet")).load("test")
    assert split.labels.tolist() == [0, 1, 1] and len(split.paths) == 3
    assert np.asarray(Image.open(split.paths[1]))[0, 0, 0] == 50  # the stored bytes, unchanged


def test_data_prepare_writes_an_imagefolder_bench_reads_and_dry_run_says_what_to_fetch(tmp_path):
    from bench.data.images import ImageFolderSpec
    from bench.data.prepare import write_imagefolder

    class Tiny:  # what a torchvision dataset gives: (PIL image, label) by index
        def __len__(self):
            return 14

        def __getitem__(self, i):
            return Image.new("L", (10, 12), 10 * i), (i * 4) % 11

    ds = Tiny()
    names = [f"class {i}" for i in range(11)]
    assert write_imagefolder(ds, names, tmp_path / "fake" / "test") == 14
    (tmp_path / "fake" / "classnames.txt").write_text("\n".join(names) + "\n")
    split = ImageFolderSpec(format="imagefolder", root=str(tmp_path / "fake"), split="test", class_names=str(tmp_path / "fake" / "classnames.txt")).load("test")
    truth = {f"{i:07d}.png": ds[i][1] for i in range(14)}
    assert [truth[p.split('/')[-1]] for p in split.paths] == split.labels.tolist() and split.class_names[10] == "class 10"  # "10" after "09": no order to choose
    r = CliRunner().invoke(app, ["data", "prepare", "cifar100", "--root", str(tmp_path), "--dry-run"])
    assert r.exit_code == 0 and "torchvision.datasets.CIFAR100(" in r.output and "catalogue: cifar100" in r.output.replace("\n", "")
    r = CliRunner().invoke(app, ["data", "prepare", "cifar101", "--root", str(tmp_path)])
    assert r.exit_code == 1 and "did you mean 'cifar10'" in r.output
    r = CliRunner().invoke(app, ["data", "list", "imagenet-*"])
    assert r.exit_code == 0 and "imagenet-r" in r.output and "200 of 1k" in r.output


def test_the_smoke_suites_shards_are_what_their_script_writes(tmp_path):
    import hashlib
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("make_wds_shapes", repo / "examples" / "make_wds_shapes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(tmp_path)
    for f in ("test/0.tar", "test/1.tar", "test/nshards.txt", "classnames.txt", "zeroshot_classification_templates.txt"):
        shipped = repo / "suites" / "data" / "wds-shapes" / f
        assert hashlib.sha256(shipped.read_bytes()).digest() == hashlib.sha256((tmp_path / f).read_bytes()).digest(), f
    split = WdsImagesSpec(format="wds", root=str(repo / "suites" / "data" / "wds-shapes")).load("test")
    assert len(split) == 12 and split.class_names == ["red", "green", "blue", "yellow"]
