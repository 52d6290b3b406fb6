"""Retrieval through a suite on every caption layout, with intervals; its bad inputs each one line."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.cli import app
from bench.data.captions import CaptionListSpec, CocoCaptionsSpec, KarpathySpec, SyntheticCaptionsSpec
from bench.errors import DataError
from bench.results import load_rows

CLIP = "  - {name: clip, adapter: open_clip, arch: ViT-S-32, image_size: 32}\n"


def _images(root, n=5):
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (20, 16), (40 * i, 90, 30)).save(root / "imgs" / f"{i}.jpg")
    return [f"{i}.jpg" for i in range(n)]


def test_every_layout_gives_the_same_caption_set(tmp_path):
    names = _images(tmp_path)
    caps = {n: [f"caption {j} of {n}" for j in range(1 + i % 3)] for i, n in enumerate(names)}
    coco = {"images": [{"id": 10 + i, "file_name": n} for i, n in enumerate(names)], "annotations": [{"id": k, "image_id": 10 + i, "caption": c} for i, n in enumerate(names) for k, c in enumerate(caps[n])]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    karpathy = {"images": [{"filename": n, "split": "test", "sentences": [{"raw": c} for c in caps[n]]} for n in names] + [{"filename": "x.jpg", "split": "train", "sentences": []}]}
    (tmp_path / "k.json").write_text(json.dumps(karpathy))
    (tmp_path / "imgs" / "l.jsonl").write_text("".join(json.dumps({"image": n, "captions": caps[n]}) + "\n" for n in names))
    (tmp_path / "imgs" / "l.csv").write_text("image,caption\n" + "".join(f"{n},{c}\n" for n in names for c in caps[n]))
    sets = [
        CocoCaptionsSpec(format="coco_captions", annotations=str(tmp_path / "coco.json"), images=str(tmp_path / "imgs")).load(),
        KarpathySpec(format="karpathy", file=str(tmp_path / "k.json"), images=str(tmp_path / "imgs")).load(),
        CaptionListSpec(format="caption_list", file=str(tmp_path / "imgs" / "l.jsonl")).load(),
        CaptionListSpec(format="caption_list", file=str(tmp_path / "imgs" / "l.csv")).load(),
    ]
    for s in sets:
        assert [p.split("/")[-1] for p in s.images.paths] == names
        assert s.captions == [c for n in names for c in caps[n]] and s.text_image.tolist() == [0, 1, 1, 2, 2, 2, 3, 4, 4]
    sub = sets[0].subset(3, 0)
    assert len(sub.images.paths) == 3 and sub.text_image.max() == 2 and len(sub.captions) == len(sub.text_image)


@pytest.mark.parametrize(
    "doc, error",
    [
        ({"images": [{"id": 1, "file_name": "missing.jpg"}], "annotations": [{"image_id": 1, "caption": "x"}]}, r"coco\.json: image .*missing\.jpg does not exist"),
        ({"images": [{"id": 1, "file_name": "0.jpg"}, {"id": 2, "file_name": "1.jpg"}], "annotations": [{"image_id": 1, "caption": "x"}]}, r"coco\.json: image .*1\.jpg has no captions"),
        ({"images": [{"id": 1, "file_name": "0.jpg"}], "annotations": [{"image_id": 7, "caption": "x"}]}, r"coco\.json: captions for image_id 7, which is not in images"),
    ],
)
def test_bad_caption_files_are_one_line_naming_the_file(tmp_path, doc, error):
    _images(tmp_path)
    (tmp_path / "coco.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=error):
        CocoCaptionsSpec(format="coco_captions", annotations=str(tmp_path / "coco.json"), images=str(tmp_path / "imgs")).load()


def test_a_truncated_caption_json_is_one_line(tmp_path):
    _images(tmp_path)
    (tmp_path / "coco.json").write_text('{"images": [{"id": 1, "file_')
    with pytest.raises(DataError, match=r"coco\.json:1: not valid JSON"):
        CocoCaptionsSpec(format="coco_captions", annotations=str(tmp_path / "coco.json"), images=str(tmp_path / "imgs")).load()


def test_retrieval_runs_with_intervals_and_predictions(tmp_path, make_suite):
    suite = make_suite("name: rt\ndefaults: {device: cpu}\nmodels:\n" + CLIP + "tasks:\n  - {name: shapes, type: retrieval, dataset: {format: captions_synthetic, n: 12, size: 32}}\n")
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    rows = load_rows([tmp_path / "res"]).set_index("metric")
    assert set(rows.index) == {"i2t/R@1", "i2t/R@5", "i2t/R@10", "t2i/R@1", "t2i/R@5", "t2i/R@10", "rsum", "mean_recall"}
    assert rows.n["i2t/R@1"] == 12 and rows.n["t2i/R@1"] == sum(1 + i % 5 for i in range(12))
    assert rows.value["i2t/R@10"] >= rows.value["i2t/R@5"] >= rows.value["i2t/R@1"]
    assert abs(rows.value["rsum"] - rows.value[[m for m in rows.index if "/R@" in m]].sum()) < 1e-12
    assert rows.ci_method.str.contains("unit=image").all() and (rows.ci_low <= rows.value).all() and (rows.value <= rows.ci_high).all()
    assert rows.task_type.eq("retrieval").all()


def test_synthetic_captions_are_unique_and_vary_in_number(tmp_path):
    s = SyntheticCaptionsSpec(format="captions_synthetic", n=24, root=str(tmp_path / "syn")).load()
    assert len(set(s.captions)) == len(s.captions) and sorted(set(np.bincount(s.text_image))) == [1, 2, 3, 4, 5]
