"""Dataset readers and decoding: ImageFolder, lists, digits, corrupt and empty inputs."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from bench.data.images import ImageDataset, ImageFolderSpec, ImageListSpec, eval_transform, natural_key
from bench.errors import DataError, SuiteError
from bench.suite import load_suite


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
    with pytest.raises(DataError, match=r"bad.csv: line 2: label 'wolf' is neither"):
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


# ---------------------------------------------------------------- class order
def numbered_folder(root, names=tuple(str(c) for c in range(1, 11)), split="val"):
    """root/<split>/<name>/0.png: one image per class folder."""
    for c in names:
        (root / split / c).mkdir(parents=True)
        Image.new("RGB", (8, 8), (len(c), 0, 0)).save(root / split / c / "0.png")
    return root


def test_natural_key_is_timms():
    from timm.utils.misc import natural_key as timm_key

    names = ["10", "1", "2", "a10b2", "a2b10", "A3", "img_007", "img_70", "n01440764", "Class 9", "class 10", ""]
    assert [natural_key(n) for n in names] == [timm_key(n) for n in names]


def test_class_order_needed_where_sorts_differ(tmp_path, make_suite):
    root = numbered_folder(tmp_path / "d")
    with pytest.raises(ValidationError, match=r"val: 9 of 10 classes get other indices by plain sort \(torchvision: 1, 10, 2, 3, …\)"):
        ImageFolderSpec(format="imagefolder", root=str(root))
    natural = ImageFolderSpec(format="imagefolder", root=str(root), class_order="natural").load("test")
    assert natural.classes == [str(c) for c in range(1, 11)]  # timm's reader: folder "10" is class 9
    assert natural.labels.tolist() == list(range(10))
    lexical = ImageFolderSpec(format="imagefolder", root=str(root), class_order="lexical").load("test")
    assert lexical.classes == ["1", "10", "2", "3", "4", "5", "6", "7", "8", "9"]  # torchvision's ImageFolder
    # in a suite: one line naming the folder, at validation time
    p = make_suite(
        "name: s\nmodels:\n  - {name: m, adapter: timm, arch: resnet18, num_classes: 10}\n"
        f"tasks:\n  - name: t\n    type: classification\n    dataset: {{format: imagefolder, root: {root}}}\n"
    )
    with pytest.raises(SuiteError) as e:
        load_suite(p)
    (line,) = e.value.problems
    assert line.startswith(f"{p}:7: tasks[0].dataset.class_order: {root / 'val'}: 9 of 10 classes") and line.endswith("set class_order: natural or lexical")
    # where the sorts agree no key is needed: zero-padded or same-width names, and the digits folder
    same = numbered_folder(tmp_path / "e", names=[f"{c:02d}" for c in range(1, 11)])
    assert ImageFolderSpec(format="imagefolder", root=str(same)).load("test").classes == [f"{c:02d}" for c in range(1, 11)]


def test_class_order_checked_at_load_when_validation_skipped(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    spec = ImageFolderSpec(format="imagefolder", root=str(root))  # nothing to check yet
    numbered_folder(root)
    with pytest.raises(DataError, match=re.escape(f"{root / 'val'}: 9 of 10 classes")):
        spec.load("test")
    assert len(spec.load("test", with_labels=False)) == 10  # unlabelled uses do not depend on the numbering


def test_list_class_names_are_ordered_like_folders(tmp_path):
    names = ["img2", "img10", "img1"]
    f = tmp_path / "val.csv"
    f.write_text("path,label\n" + "".join(f"{i}.png,{n}\n" for i, n in enumerate(names)))
    with pytest.raises(DataError, match=rf"{re.escape(str(f))}: 2 of 3 classes get other indices"):
        ImageListSpec(format="list", file=str(f)).load("test")
    s = ImageListSpec(format="list", file=str(f), class_order="natural").load("test")
    assert s.classes == ["img1", "img2", "img10"] and s.labels.tolist() == [1, 2, 0]
    s = ImageListSpec(format="list", file=str(f), class_order="lexical").load("test")
    assert s.classes == ["img1", "img10", "img2"] and s.labels.tolist() == [2, 1, 0]
    classes = tmp_path / "classes.txt"
    classes.write_text("img1\nimg2\nimg10\n")
    with pytest.raises(ValidationError, match="the classes file already gives the class order"):
        ImageListSpec(format="list", file=str(f), classes=str(classes), class_order="natural")


# ---------------------------------------------------------------- bad input
def test_empty_class_folder_is_named(small_folder):
    (small_folder / "val" / "emu").mkdir()
    with pytest.raises(DataError) as e:
        folder(small_folder).load("test")
    assert str(e.value) == f"{small_folder / 'val' / 'emu'}: class folder has no images"
    (small_folder / "val" / "gnu" / "sub").mkdir(parents=True)
    (small_folder / "val" / "gnu" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"emu: class folder has no images \(and 1 more\)"):
        folder(small_folder).load("test")


def test_list_label_out_of_range_without_classes_file_names_line(tmp_path):
    f = tmp_path / "val.txt"
    f.write_text("".join(f"img{i}.png {i % 10}\n" for i in range(20)) + "\nimg57.png 57\n")
    with pytest.raises(DataError) as e:
        ImageListSpec(format="list", file=str(f)).load("test")
    assert str(e.value).startswith(f"{f}: line 22: label '57' is out of range: no image has label 10")
    f.write_text("a.png 0\nb.png -1\n")
    with pytest.raises(DataError, match=r"val.txt: line 2: label '-1' is negative"):
        ImageListSpec(format="list", file=str(f)).load("test")
    # indices without gaps need no classes file
    f.write_text("a.png 1\nb.png 0\n")
    assert ImageListSpec(format="list", file=str(f)).load("test").classes == ["0", "1"]


def test_list_bad_labels_with_classes_file(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\n")
    f = tmp_path / "val.csv"
    f.write_text("path,label\na.png,cat\nb.png,2\n")
    with pytest.raises(DataError, match=r"val.csv: line 3: label '2' is out of range for the 2 classes of .*classes.txt"):
        ImageListSpec(format="list", file=str(f), classes=str(classes)).load("test")
    j = tmp_path / "val.jsonl"
    j.write_text('{"path": "a.png", "label": 0}\n\n{"path": "b.png", "label": 1.5}\n')
    with pytest.raises(DataError, match=r"val.jsonl: line 3: label 1.5 is neither a class index nor a class"):
        ImageListSpec(format="list", file=str(j), classes=str(classes)).load("test")
    classes.write_text("cat\ndog\ncat\n")
    f.write_text("path,label\na.png,cat\n")
    with pytest.raises(DataError, match=r"classes.txt: class 'cat' is listed twice \(entries 1 and 3\)"):
        ImageListSpec(format="list", file=str(f), classes=str(classes)).load("test")


def test_folder_where_a_file_is_expected(tmp_path, small_folder):
    with pytest.raises(ValidationError, match=re.escape(f"path is a folder, not a file: {small_folder}")):
        ImageListSpec(format="list", file=str(small_folder))
    with pytest.raises(ValidationError, match="path is a folder, not a file"):
        ImageFolderSpec(format="imagefolder", root=str(small_folder), class_names=str(small_folder))
    f = tmp_path / "a.csv"
    f.write_text("path,label\nval/cat\n")
    with pytest.raises(ValidationError, match=re.escape(f"path is a file, not a folder: {f}")):
        ImageFolderSpec(format="imagefolder", root=str(f))
    with pytest.raises(DataError, match=r"a.csv: line 2: expected a path and a label"):
        ImageListSpec(format="list", file=str(f)).load("test")
    # a list row naming a folder: one line naming it, when the image is read
    f.write_text("path,label\nval/cat,0\n")
    ds = ImageDataset(ImageListSpec(format="list", file=str(f), root=str(small_folder)).load("test"), eval_transform(16, 1.0, "bilinear"))
    with pytest.raises(DataError) as e:
        ds[0]
    assert str(e.value) == f"{small_folder / 'val' / 'cat'}: is a folder, expected an image file"


@pytest.mark.parametrize("cut", ["truncated", "bad_scan_header", "empty"])
def test_corrupt_jpeg_names_file(tmp_path, cut):
    """PIL decodes in full when converting, so each of these fails on its first read (garbage inside the
    entropy-coded data is not detectable: libjpeg only warns, and timm's reader accepts it too)."""
    good = tmp_path / "val" / "a" / "0.jpg"
    good.parent.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(good, quality=90)
    data = good.read_bytes()
    bad = good.with_name("1.jpg")
    sos = data.index(b"\xff\xda")  # start of scan
    bad.write_bytes({"truncated": data[: len(data) // 2], "bad_scan_header": data[:sos] + bytes(64) + data[sos + 64 :], "empty": b""}[cut])
    split = folder(tmp_path).load("test")
    ds = ImageDataset(split, eval_transform(16, 1.0, "bilinear"))
    assert ds[0][0].shape == (3, 16, 16)
    with pytest.raises(DataError) as e:
        ds[split.paths.index(str(bad))]
    msg = str(e.value)
    assert msg.startswith(f"{bad}: corrupt image: ") and "\n" not in msg
