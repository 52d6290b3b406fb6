"""Threaded scoring of results folders: OpenCV's decoder and histogram give PIL's and numpy's values,
bad files stay one line without libpng noise, and any thread count gives the same matrices."""

import threading
import time

import cv2  # noqa: F401  (the test extra brings it through lvis; these tests check its path)
import numpy as np
import pytest
from PIL import Image

import bench.optional
from bench.data.segmentation import SegFolderSpec, read_label_map
from bench.errors import DataError
from bench.metrics.segmentation import joint_histogram_u8
from bench.tasks.segmentation import file_confusions, in_order


@pytest.fixture
def no_cv2(monkeypatch):
    monkeypatch.setattr(bench.optional, "_CV2", [None])


def _maps(tmp_path, rng):
    u8 = rng.integers(0, 256, (37, 53)).astype(np.uint8)
    u16 = rng.integers(0, 65536, (37, 53)).astype(np.uint16)
    Image.fromarray(u8).save(tmp_path / "u8.png")
    Image.fromarray(u16).save(tmp_path / "u16.png")
    pal = Image.fromarray(u8[:, :20] % 7).convert("P")
    pal.putpalette([v for k in range(256) for v in (k, 255 - k, k // 2)])
    pal.save(tmp_path / "pal.png")
    return {"u8.png": u8, "u16.png": u16, "pal.png": u8[:, :20] % 7}


def test_opencv_decodes_the_values_pil_decodes(tmp_path, monkeypatch):
    want = _maps(tmp_path, np.random.default_rng(0))
    got_cv2 = {k: read_label_map(str(tmp_path / k), raw=True) for k in want}
    monkeypatch.setattr(bench.optional, "_CV2", [None])
    got_pil = {k: read_label_map(str(tmp_path / k), raw=True) for k in want}
    for k, arr in want.items():
        np.testing.assert_array_equal(got_cv2[k], arr)
        np.testing.assert_array_equal(got_pil[k], arr)
        assert got_cv2[k].dtype == got_pil[k].dtype, k


@pytest.mark.parametrize("damage", ["truncated", "bad_crc", "garbage"])
def test_a_damaged_png_is_one_line_without_decoder_noise(tmp_path, capfd, damage):
    Image.fromarray(np.random.default_rng(1).integers(0, 9, (64, 64)).astype(np.uint8)).save(tmp_path / "m.png")
    data = bytearray((tmp_path / "m.png").read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "bad_crc":
        data[60] ^= 0xFF  # inside IDAT: a complete-looking file (it still ends with IEND) that does not decode
    else:
        data = bytearray(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (tmp_path / "m.png").write_bytes(bytes(data))
    capfd.readouterr()
    with pytest.raises(DataError) as e:
        read_label_map(str(tmp_path / "m.png"))
    assert "m.png" in str(e.value) and "\n" not in str(e.value)
    out, err = capfd.readouterr()
    assert "libpng" not in out + err


def test_joint_histogram_opencv_equals_bincount(monkeypatch):
    rng = np.random.default_rng(2)
    label, pred = rng.integers(0, 256, (2, 301, 211)).astype(np.uint8)
    fast = joint_histogram_u8(label, pred)
    monkeypatch.setattr(bench.optional, "_CV2", [None])
    slow = joint_histogram_u8(label, pred)
    np.testing.assert_array_equal(np.asarray(fast, np.int64), slow)
    assert slow.sum() == label.size


def test_in_order_keeps_order_and_raises_the_first_failure_in_order():
    seen = set()

    def fn(i):
        time.sleep(0.002 * ((7 * i) % 5))  # later items often finish first
        seen.add(threading.get_ident())
        if i in (11, 13):
            raise ValueError(f"item {i}")
        return i * i

    assert list(in_order(fn, 10, 3)) == [i * i for i in range(10)]
    assert len(seen) > 1
    with pytest.raises(ValueError, match="item 11"):
        list(in_order(fn, 20, 3))
    assert list(in_order(fn, 10, 1)) == [i * i for i in range(10)]


def _split(tmp_path, n=12):
    rng = np.random.default_rng(3)
    for sub in ("img", "lab", "pred"):
        (tmp_path / sub).mkdir()
    for i in range(n):
        Image.new("RGB", (4, 4)).save(tmp_path / "img" / f"im{i}.jpg")
        gt = rng.integers(0, 6, (48, 40)).astype(np.uint8)
        gt[rng.random(gt.shape) < 0.1] = 255
        Image.fromarray(gt).save(tmp_path / "lab" / f"im{i}.png")
        Image.fromarray(rng.integers(0, 6, (48, 40)).astype(np.uint8)).save(tmp_path / "pred" / f"im{i}.png")
    (tmp_path / "classes.txt").write_text("".join(f"c{k}\n" for k in range(6)))
    split = SegFolderSpec(format="seg_folder", images=str(tmp_path / "img"), labels=str(tmp_path / "lab"), classes=str(tmp_path / "classes.txt")).load()
    return split, [str(tmp_path / "pred" / f"im{i}.png") for i in range(n)]


def test_every_thread_count_and_decoder_gives_the_same_matrices(tmp_path, monkeypatch):
    split, files = _split(tmp_path)
    runs = [np.stack(list(file_confusions(split, files, t))) for t in (1, 2, 5)]
    monkeypatch.setattr(bench.optional, "_CV2", [None])
    runs.append(np.stack(list(file_confusions(split, files, 2))))
    for got in runs[1:]:
        np.testing.assert_array_equal(got, runs[0])
    assert runs[0].dtype == np.int64 and runs[0].sum() == sum((np.asarray(Image.open(p)) != 255).sum() for p in split.labels)


def test_a_bad_file_among_threads_is_the_first_in_image_order(tmp_path):
    split, files = _split(tmp_path)
    Image.fromarray(np.zeros((48, 41), np.uint8)).save(files[4])
    Image.new("RGB", (40, 48)).save(files[9])
    with pytest.raises(DataError, match=r"pred/im4\.png: prediction is 41x48"):
        list(file_confusions(split, files, 4))
