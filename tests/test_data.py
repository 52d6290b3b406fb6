"""Dataset readers and decoding: ImageFolder, lists, digits, corrupt and empty inputs."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.images import ImageDataset, ImageFolderSpec, ImageListSpec, eval_transform
from bench.errors import DataError


def folder(root, split="val", train_split="train"):
    return ImageFolderSpec(format="imagefolder", root=str(root), split=split, train_split=train_split)


def test_imagefolder(small_folder):
    s = folder(small_folder).load("test")
    assert s.classes == ["cat", "dog", "fox"] and len(s) == 9
    assert s.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(folder(small_folder).load("train")) == 18
    sub = s.subset(4, seed=0)
    assert len(sub) == 4 and set(sub.paths) <= set(s.paths)
    assert sub.paths == sorted(sub.paths, key=s.paths.index)  # order kept
    assert sub.paths == s.subset(4, seed=0).paths  # seeded


def test_empty_and_missing_folder(tmp_path):
    (tmp_path / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"val: dataset folder is empty"):
        folder(tmp_path).load("test")
    with pytest.raises(DataError, match=r"nosplit: dataset folder does not exist"):
        folder(tmp_path, split="nosplit").load("test")


def test_list_formats(small_folder, tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\nfox\n")
    csv = tmp_path / "val.csv"
    csv.write_text("path,label\nval/cat/0.png,0\nval/dog/1.png,dog\n")
    jsonl = tmp_path / "val.jsonl"
    jsonl.write_text(json.dumps({"path": "val/fox/2.png", "label": 2}) + "\n")
    for f, labels in ((csv, [0, 1]), (jsonl, [2])):
        s = ImageListSpec(format="list", file=str(f), classes=str(classes), root=str(small_folder)).load("test")
        assert s.labels.tolist() == labels
        assert all(p.startswith(str(small_folder)) for p in s.paths)
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx.png,wolf\n")
    with pytest.raises(DataError, match=r"bad.csv: row 1: label 'wolf' is neither"):
        ImageListSpec(format="list", file=str(bad), classes=str(classes)).load("test")
    trunc = tmp_path / "trunc.jsonl"
    trunc.write_text('{"path": "a.png", "lab')
    with pytest.raises(DataError, match=r"trunc.jsonl: line 1: expected a JSON object"):
        ImageListSpec(format="list", file=str(trunc), classes=str(classes)).load("test")


def test_corrupt_image_names_file(small_folder):
    bad = small_folder / "val" / "cat" / "0.png"
    bad.write_bytes(b"not an image at all")
    ds = ImageDataset(folder(small_folder).load("test"), eval_transform(16, 1.0, "bilinear"))
    with pytest.raises(DataError) as e:
        ds[0]
    assert str(e.value).startswith(f"{bad}: corrupt image:")


def test_transform_matches_timm_eval_pipeline(tmp_path):
    """Our uint8 path + normalisation equals timm's create_transform output (the validate.py pipeline)."""
    import timm.data

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (300, 410, 3), dtype=np.uint8))
    for size, crop_pct, interp in ((224, 0.875, "bicubic"), (160, 0.95, "bilinear"), (64, 1.0, "bicubic")):
        ref = timm.data.create_transform(
            input_size=(3, size, size), crop_pct=crop_pct, interpolation=interp, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
        )(img)
        ours = eval_transform(size, crop_pct, interp)(img)
        assert ours.dtype == torch.uint8 and ours.shape == (3, size, size)
        mean = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1) * 255
        std = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1) * 255
        assert torch.allclose((ours.float() - mean) / std, ref, atol=1e-5)


def test_digits_materialised_once(digits_root):
    s = folder(digits_root).load("test")
    t = folder(digits_root).load("train")
    assert len(s) + len(t) == 1797 and len(s) == 450
    assert s.classes == [str(i) for i in range(10)]
    mtime = (digits_root / ".complete").stat().st_mtime
    from bench.data.images import materialize_digits

    materialize_digits(digits_root)
    assert (digits_root / ".complete").stat().st_mtime == mtime
