"""Semantic segmentation through suites: readers, inference modes, cityscapesscripts parity via the
Cityscapes reader, intervals, and every bad input as one line naming the file."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.segmentation import CITYSCAPES_TRAIN_IDS, Ade20kSpec, CityscapesSpec, SegFolderSpec, SegShapesSpec, shipped_classes
from bench.dense import Inference, confusion_on_device, predict, rescale_size, slide_windows
from bench.errors import DataError
from bench.metrics.segmentation import confusion, scores
from tests.factories import run_suite as run

REPO = Path(__file__).resolve().parent.parent
SEGNET = f"""  - name: colour-segnet
    adapter: python
    factory: examples.colour_segnet:build
    python_path: [{REPO}]
    capabilities: [seg_logits]
    preprocess: {{mean: [0.0, 0.0, 0.0], std: [1.0, 1.0, 1.0]}}
"""


def test_shipped_class_lists_have_the_official_counts():
    counts = {"ade20k_150": 150, "ade20k_847": 847, "pascal_context_59": 59, "pascal_context_459": 459, "coco_stuff_171": 171, "cityscapes_19": 19}
    for name, n in counts.items():
        names = shipped_classes(name)
        assert len(names) == n and len(set(names)) == n, name
    assert shipped_classes("ade20k_150")[:3] == ["wall", "building", "sky"] and shipped_classes("cityscapes_19")[0] == "road"


def test_cityscapes_train_ids_are_cityscapesscripts_table():
    from cityscapesscripts.helpers.labels import labels

    want = {lab.id: lab.trainId for lab in labels if lab.id >= 0 and lab.trainId not in (255, -1) and not lab.ignoreInEval}
    assert CITYSCAPES_TRAIN_IDS == want
    assert [lab.name for lab in sorted((lab for lab in labels if lab.id in want), key=lambda lab: lab.trainId)] == shipped_classes("cityscapes_19")


def test_slide_windows_follow_mmseg_grid():
    assert slide_windows(10, 7, (4, 4), (3, 3)) == [(0, 4, 0, 4), (0, 4, 3, 7), (3, 7, 0, 4), (3, 7, 3, 7), (6, 10, 0, 4), (6, 10, 3, 7)]
    assert slide_windows(3, 5, (4, 4), (3, 3)) == [(0, 3, 0, 4), (0, 3, 1, 5)]  # smaller than the crop: one row, flush with the edge


def test_rescale_size_is_mmcv_keep_ratio():
    assert rescale_size(500, 375, (2048, 512), True) == (683, 512)
    assert rescale_size(2048, 1024, (2048, 1024), True) == (2048, 1024)
    assert rescale_size(4000, 600, (2048, 512), True) == (2048, 307)  # the long edge binds
    assert rescale_size(500, 375, (320, 240), False) == (320, 240)


def _margin_equal(a, b, logits, margin=1e-4):
    """Maps equal wherever the winning class leads the runner-up by more than `margin`."""
    top2 = logits.topk(2, dim=0).values
    sure = (top2[0] - top2[1]) > margin
    assert sure.float().mean() > 0.95
    assert torch.equal(a[sure], b[sure])


@pytest.mark.parametrize("threads", [1, 2])
def test_slide_and_flip_agree_with_whole_for_a_pointwise_model(threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, 6, 1)
        model = lambda x: conv(x.float() / 255)  # noqa: E731 — per-pixel, so every window and flip sees the same logits
        img = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8)
        with torch.no_grad():
            logits = conv(img[None].float() / 255)[0]
            whole = predict(model, img, (37, 53), Inference())
            for batch in (1, 3, 16):
                slide = predict(model, img, (37, 53), Inference("slide", (16, 16), (11, 11), flip=True), batch=batch)
                _margin_equal(whole, slide, logits)
        assert torch.equal(whole, logits.argmax(0))
    finally:
        torch.set_num_threads(old)


def test_logits_are_resized_to_the_label():
    model = lambda x: torch.zeros(x.shape[0], 4, x.shape[2] // 4, x.shape[3] // 4)  # noqa: E731 — stride 4
    out = predict(model, torch.zeros(3, 40, 60, dtype=torch.uint8), (20, 30), Inference(scale=(120, 80), ratios=(0.5, 1.0), flip=True))
    assert out.shape == (20, 30)


def test_confusion_on_device_equals_numpy():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 6, (30, 40))
    label[rng.random(label.shape) < 0.1] = 255
    pred = rng.integers(-1, 8, (30, 40))  # -1 and 6, 7: outside the classes
    got = confusion_on_device(torch.from_numpy(pred), torch.from_numpy(label), 6, 255).numpy()
    np.testing.assert_array_equal(got, confusion(pred, label, 6, 255))


def test_ade20k_reader_reduces_zero_label(tmp_path):
    for sub in ("images/validation", "annotations/validation"):
        (tmp_path / sub).mkdir(parents=True)
    Image.new("RGB", (4, 2)).save(tmp_path / "images/validation/ADE_val_1.jpg")
    Image.fromarray(np.array([[0, 1, 150, 2], [255, 3, 4, 5]], np.uint8)).save(tmp_path / "annotations/validation/ADE_val_1.png")
    split = Ade20kSpec(format="ade20k", root=str(tmp_path)).load()
    assert split.num_classes == 150 and split.stems == ["ADE_val_1"]
    np.testing.assert_array_equal(split.label(0), [[255, 0, 149, 1], [255, 2, 3, 4]])


def _cityscapes(root: Path, rng, n=4):
    from cityscapesscripts.helpers.labels import labels

    ids = [lab.id for lab in labels if lab.id >= 0]
    pred_dir = root / "preds"
    pred_dir.mkdir(parents=True)
    gts, preds = [], []
    for i in range(n):
        city = ["aachen", "bonn"][i % 2]
        stem = f"{city}_{i:06d}_000019"
        for sub in ("leftImg8bit/val", "gtFine/val"):
            (root / sub / city).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(root / "leftImg8bit/val" / city / f"{stem}_leftImg8bit.png")
        gt = rng.choice(ids, size=(32, 48)).astype(np.uint8)
        gt[:, :12] = 7
        pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.choice(ids, size=gt.shape)).astype(np.uint8)
        Image.fromarray(gt).save(root / "gtFine/val" / city / f"{stem}_gtFine_labelIds.png")
        Image.fromarray(pred).save(pred_dir / f"{stem}_leftImg8bit.png")  # named by the image's stem, in labelIds
        gts.append(str(root / "gtFine/val" / city / f"{stem}_gtFine_labelIds.png"))
        preds.append(str(pred_dir / f"{stem}_leftImg8bit.png"))
    return gts, preds


def test_cityscapes_run_equals_cityscapesscripts(tmp_path):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as E

    gts, preds = _cityscapes(tmp_path / "cs", np.random.default_rng(3))
    suite = f"name: cs\nmodels:\n  - {{name: mmseg-out, adapter: predictions, path: {tmp_path / 'cs/preds'}}}\ntasks:\n  - {{name: cityscapes, type: segmentation, dataset: {{format: cityscapes, root: {tmp_path / 'cs'}}}}}\n"
    r, rows = run(tmp_path, suite)
    assert r.exit_code == 0, r.output
    rows = rows.set_index("metric")
    E.args.evalInstLevelScore, E.args.quiet, E.args.JSONOutput = False, True, False
    ref = E.evaluateImgLists(preds, gts, E.args)
    assert abs(rows.value["seg/mIoU"] - ref["averageScoreClasses"]) <= 1e-9
    for name, want in ref["classScores"].items():
        if np.isfinite(want):
            assert abs(rows.value[f"seg/IoU/{name}"] - want) <= 1e-9, name
    assert rows.dataset.eq("cityscapes").all() and rows.n.eq(4).all() and rows.convention.eq("mmseg-IoUMetric").all()
    assert rows.ci_method.dropna().str.contains("unit=image").all()


def test_a_model_runs_every_inference_mode_with_intervals(tmp_path):
    suite = (
        "name: seg\ndefaults: {device: cpu, batch_size: 4}\nmodels:\n"
        + SEGNET
        + "tasks:\n"
        + "  - {name: whole, type: segmentation, dataset: {format: seg_shapes, n: 6}}\n"
        + "  - {name: slide, type: segmentation, dataset: {format: seg_shapes, n: 6}, inference: {mode: slide, crop_size: [32, 32], stride: [24, 24]}}\n"
        + "  - {name: ms-flip, type: segmentation, dataset: {format: seg_shapes, n: 6}, inference: {scale: [96, 96], ratios: [0.5, 1.0], flip: true}}\n"
    )
    r, rows = run(tmp_path, suite)
    assert r.exit_code == 0, r.output
    assert rows.status.eq("ok").all()
    head = rows[rows.metric == "seg/mIoU"].set_index("task")
    assert set(head.index) == {"whole", "slide", "ms-flip"}
    assert (head.value > 0.9).all()  # nearest colour on the shapes' own colours: only outlines and resampling miss
    assert (head.ci_low <= head.value).all() and (head.value <= head.ci_high).all() and (head.stderr > 0).all()
    assert len(set(head.task_hash)) == 3  # the inference mode is part of the task
    assert '"mode": "slide"' in head.meta["slide"] or '"slide"' in head.meta["slide"]
    per_class = rows[rows.metric.str.startswith("seg/IoU/")]
    assert set(per_class.metric) <= {f"seg/IoU/{c}" for c in ["background", "red_square", "green_circle", "blue_triangle", "yellow_square"]}


def _labels_as_results(tmp_path, n):
    """A shapes split, a results folder holding copies of its labels, and a suite scoring that folder."""
    split = SegShapesSpec(format="seg_shapes", n=n, root=str(tmp_path / "shapes")).load()
    folder = tmp_path / "preds"
    folder.mkdir()
    for lab in split.labels:
        shutil.copy(lab, folder / Path(lab).name)
    suite = f"name: p\nmodels:\n  - {{name: gt, adapter: predictions, path: {folder}}}\ntasks:\n  - {{name: shapes, type: segmentation, dataset: {{format: seg_shapes, n: {n}, root: {tmp_path / 'shapes'}}}}}\n"
    return split, folder, suite


def test_results_folder_of_the_labels_scores_one(tmp_path):
    _, _, suite = _labels_as_results(tmp_path, 5)
    r, rows = run(tmp_path, suite)
    assert r.exit_code == 0, r.output
    got = rows.set_index("metric").value
    assert got["seg/mIoU"] == 1.0 and got["seg/aAcc"] == 1.0  # the 255 outlines are ignored on both sides


def _folder(tmp_path, n=3):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    (tmp_path / "pred").mkdir()
    for i in range(n):
        Image.new("RGB", (8, 6)).save(tmp_path / "img" / f"im{i}.jpg")
        Image.fromarray(np.full((6, 8), i % 3, np.uint8)).save(tmp_path / "lab" / f"im{i}.png")
        Image.fromarray(np.full((6, 8), 1, np.uint8)).save(tmp_path / "pred" / f"im{i}.png")
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")


def _run_folder(tmp_path):
    suite = (
        f"name: b\nmodels:\n  - {{name: p, adapter: predictions, path: {tmp_path / 'pred'}}}\ntasks:\n"
        f"  - {{name: f, type: segmentation, dataset: {{format: seg_folder, images: {tmp_path / 'img'}, labels: {tmp_path / 'lab'}, classes: {tmp_path / 'classes.txt'}}}}}\n"
    )
    r, rows = run(tmp_path, suite)
    assert rows is not None and rows.status.eq("failed").all(), r.output
    err = rows.error.iloc[0]
    assert "\n" not in err
    return err


def test_folder_run_scores(tmp_path):
    _folder(tmp_path)
    suite = (
        f"name: b\nmodels:\n  - {{name: p, adapter: predictions, path: {tmp_path / 'pred'}}}\ntasks:\n"
        f"  - {{name: f, type: segmentation, dataset: {{format: seg_folder, images: {tmp_path / 'img'}, labels: {tmp_path / 'lab'}, classes: {tmp_path / 'classes.txt'}}}}}\n"
    )
    r, rows = run(tmp_path, suite)
    assert r.exit_code == 0, r.output
    got = rows.set_index("metric").value
    # labels a, b, c on one image each, everything predicted b: IoU(a)=0, IoU(b)=1/3, IoU(c)=0
    assert got["seg/mIoU"] == pytest.approx(1 / 9, abs=1e-15) and got["seg/aAcc"] == pytest.approx(1 / 3, abs=1e-15)


def test_a_prediction_of_another_size_is_one_line(tmp_path):
    _folder(tmp_path)
    Image.fromarray(np.zeros((6, 7), np.uint8)).save(tmp_path / "pred" / "im1.png")
    err = _run_folder(tmp_path)
    assert "pred/im1.png" in err and "7x6" in err and "8x6" in err


def test_label_values_outside_the_classes_are_one_line(tmp_path):
    _folder(tmp_path)
    Image.fromarray(np.full((6, 8), 9, np.uint8)).save(tmp_path / "lab" / "im2.png")
    err = _run_folder(tmp_path)
    assert "lab/im2.png" in err and "[9]" in err and "ignore_index 255" in err


def test_missing_predictions_are_counted_and_fail(tmp_path):
    _folder(tmp_path, n=4)
    (tmp_path / "pred" / "im1.png").unlink()
    (tmp_path / "pred" / "im3.png").unlink()
    err = _run_folder(tmp_path)
    assert "pred: no prediction for 2 of 4 images (first: im1.png)" in err


@pytest.mark.parametrize("which", ["lab", "pred"])
def test_an_rgb_png_where_a_label_map_is_expected_is_one_line(tmp_path, which):
    _folder(tmp_path)
    Image.new("RGB", (8, 6)).save(tmp_path / which / "im0.png")
    err = _run_folder(tmp_path)
    assert f"{which}/im0.png" in err and "RGB image" in err


def test_a_missing_label_is_one_line(tmp_path):
    _folder(tmp_path)
    (tmp_path / "lab" / "im2.png").unlink()
    with pytest.raises(DataError, match=r"lab/im2\.png: label map missing for its image \(1 of 3 images"):
        SegFolderSpec(format="seg_folder", images=str(tmp_path / "img"), labels=str(tmp_path / "lab"), classes=str(tmp_path / "classes.txt")).load()


def test_cityscapes_reader_maps_label_ids(tmp_path):
    gts, _ = _cityscapes(tmp_path / "cs", np.random.default_rng(0), n=2)
    split = CityscapesSpec(format="cityscapes", root=str(tmp_path / "cs")).load()
    raw = np.asarray(Image.open(split.labels[0])).astype(np.int64)
    got = split.label(0)
    assert (got[raw == 7] == 0).all() and (got[raw == 26] == 13).all() and (got[raw == 0] == 255).all() and (got[raw == 4] == 255).all()
    assert [Path(p).name for p in split.labels] == sorted(Path(g).name for g in gts)


def test_scores_of_a_split_are_the_sum_of_its_images():
    rng = np.random.default_rng(5)
    confs = [confusion(rng.integers(0, 4, (9, 9)), rng.integers(0, 4, (9, 9)), 4) for _ in range(3)]
    total = scores(sum(confs))
    from bench.metrics.segmentation import areas, resampled

    per_image = np.stack([areas(c) for c in confs])
    got = resampled(per_image, np.ones((1, 3)))
    assert abs(got["mIoU"][0] - total["mIoU"]) < 1e-15 and abs(got["aAcc"][0] - total["aAcc"]) < 1e-15


def test_maskclip_value_path_is_attention_restricted_to_each_token_itself():
    """MaskCLIP's dense embeddings equal open_clip's own forward with the last block's attention masked to
    the diagonal (each token attends only to itself, so attention returns out_proj(value)) and no residual/MLP."""
    from adapters.open_clip import OpenClipAdapter, OpenClipArgs

    ad = OpenClipAdapter(OpenClipArgs(name="c", arch="ViT-S-32", image_size=64))
    imgs = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    got = ad.dense_embeddings(imgs)
    assert got.shape == (2, ad.model.visual.proj.shape[1], 2, 2)
    v = ad.model.visual
    last = v.transformer.resblocks[-1]
    n = 1 + 4
    mask = torch.full((n, n), float("-inf"))
    mask.fill_diagonal_(0.0)
    last.forward = lambda q_x, attn_mask=None, **kw: last.ls_1(last.attention(last.ln_1(q_x), attn_mask=mask))
    v.output_tokens = True
    with torch.no_grad():
        _, tokens = v(ad.normalize(imgs))
    ref = (tokens @ v.proj).transpose(1, 2).reshape(got.shape)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert ad.dense_embeddings(torch.zeros(1, 3, 96, 128, dtype=torch.uint8)).shape[-2:] == (3, 4)  # position embeddings resampled


def test_timm_patch_features_are_feature_maps():
    from adapters.timm import TimmAdapter, TimmArgs

    vit = TimmAdapter(TimmArgs(name="v", adapter="timm", arch="vit_tiny_patch16_224", num_classes=0, kwargs={"img_size": 64}))
    assert vit.patch_features(torch.zeros(2, 3, 64, 64, dtype=torch.uint8)).shape == (2, 192, 4, 4)
    cnn = TimmAdapter(TimmArgs(name="r", adapter="timm", arch="resnet18", num_classes=0))
    assert cnn.patch_features(torch.zeros(1, 3, 64, 96, dtype=torch.uint8)).shape == (1, 512, 2, 3)


@pytest.mark.parametrize("threads", [1, 2])
def test_linear_seg_head_is_stable_across_thread_counts(threads):
    from bench.probes import fit_linear_seg, linear_seg_maps

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (12, 4, 4))
    feats = np.eye(3)[labels].transpose(0, 3, 1, 2) * 2.0 + rng.normal(0, 0.3, (12, 3, 4, 4))  # a class's one-hot, with noise
    big = np.kron(labels, np.ones((4, 4), np.int64))  # 16x16 labels: logits upsampled 4x
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        head = fit_linear_seg(feats.astype(np.float32), big, 3, 255, steps=150, lr=0.05, batch_size=4, seed=0)
    finally:
        torch.set_num_threads(old)
    maps = linear_seg_maps(head, feats.astype(np.float32), [(16, 16)] * 12)
    acc = np.mean([(m == b).mean() for m, b in zip(maps, big)])
    assert acc > 0.9 and head["loss"] < 0.5  # learnable: the same under any thread layout, not bitwise


def test_linear_seg_and_zero_shot_run_through_a_suite(tmp_path):
    suite = (
        "name: lin\ndefaults: {device: cpu, batch_size: 8}\nmodels:\n"
        "  - {name: vit, adapter: timm, arch: vit_tiny_patch16_224, num_classes: 0, kwargs: {img_size: 64}}\n"
        "  - {name: clip, adapter: open_clip, arch: ViT-S-32, image_size: 64}\n"
        "tasks:\n"
        "  - {name: lin, type: segmentation, protocol: linear_seg, dataset: {format: seg_shapes, n: 6}, models: [vit],"
        " linear: {train: {format: seg_shapes, split: train, n: 12}, input_size: 64, steps: 60, lr: 0.01}}\n"
        "  - {name: zs, type: segmentation, protocol: zero_shot, dataset: {format: seg_shapes, n: 6}, models: [clip], zero_shot: {input_size: 64}}\n"
    )
    r, rows = run(tmp_path, suite)
    assert r.exit_code == 0, r.output
    assert rows.status.eq("ok").all() and set(rows.task) == {"lin", "zs"}
    import json

    lin = json.loads(rows[rows.task == "lin"].meta.iloc[0])
    assert lin["protocol"] == "linear_seg" and lin["linear"]["train_images"] == 12 and lin["linear"]["feature_grid"] == [4, 4]
    zs = json.loads(rows[rows.task == "zs"].meta.iloc[0])
    assert zs["zero_shot"]["prompts"] == 5 and zs["zero_shot"]["feature_grid"] == [2, 2]


def test_a_protocol_no_model_can_serve_is_one_line_at_validation(tmp_path):
    suite = "name: sk\nmodels:\n" + SEGNET + "tasks:\n  - {name: zs, type: segmentation, protocol: zero_shot, dataset: {format: seg_shapes, n: 2}}\n"
    r, rows = run(tmp_path, suite)
    assert r.exit_code != 0 and rows is None
    assert "no model can run task 'zs' (needs dense_embeddings, text_features; colour-segnet: model lacks dense_embeddings, text_features)" in r.output


@pytest.mark.parametrize("zero, label_map", [(False, None), (True, None), (False, CITYSCAPES_TRAIN_IDS)])
def test_coded_confusion_equals_confusion_of_decoded_maps(zero, label_map):
    from bench.data.segmentation import SegSplit
    from bench.metrics.segmentation import code_tables, coded_confusion

    split = SegSplit("val", "x", [], [], [f"c{k}" for k in range(19)], 255, zero, label_map)
    rng = np.random.default_rng(1)
    raw_label = rng.integers(0, 19, (40, 30)).astype(np.uint8)
    raw_label[rng.random(raw_label.shape) < 0.1] = 255
    raw_pred = rng.integers(0, 40, (40, 30)).astype(np.uint8)
    if label_map:
        raw_label = rng.choice(list(label_map) + [0, 1, 255], size=(40, 30)).astype(np.uint8)
    rows, cols = code_tables(split.decoded_values(), 19, 255)
    got = coded_confusion(rows[raw_label], cols[raw_pred], 19)
    want = confusion(split.decode(raw_pred.astype(np.int64)), split.decode(raw_label.astype(np.int64)), 19, 255)
    np.testing.assert_array_equal(got[:19], want)
    from bench.metrics.segmentation import coded_confusion_u8

    np.testing.assert_array_equal(coded_confusion_u8(raw_label, raw_pred, rows, cols, 19), got)
    assert got[19].sum() == (split.decode(raw_label.astype(np.int64)) == 255).sum() and got[20].sum() == 0


def test_a_model_with_more_classes_than_the_dataset_is_one_line(tmp_path):
    suite = (
        "name: m\ndefaults: {device: cpu}\nmodels:\n"
        + SEGNET.replace("capabilities: [seg_logits]", "capabilities: [seg_logits]\n    kwargs: {colours: [[90, 90, 90], [220, 40, 40], [40, 200, 60], [50, 70, 220], [230, 210, 40], [70, 70, 70]]}")
        + "tasks:\n  - {name: s, type: segmentation, dataset: {format: seg_shapes, n: 3}}\n"
    )
    r, rows = run(tmp_path, suite)
    assert rows is not None and rows.status.eq("failed").all(), r.output
    err = rows.error.iloc[0]
    assert "\n" not in err and "the model predicts class 5, but seg_shapes has 5 classes" in err


def test_a_results_folder_overwritten_in_place_is_scored_again(tmp_path):
    """The job key holds the folder's content, so a rerun after re-exporting predictions does not resume stale rows."""
    split, folder, suite = _labels_as_results(tmp_path, 4)
    r, rows = run(tmp_path, suite)
    assert r.exit_code == 0 and rows.set_index("metric").value["seg/mIoU"] == 1.0, r.output
    first = folder / Path(split.labels[0]).name
    Image.fromarray(np.zeros_like(np.asarray(Image.open(first)))).save(first)
    r, rows = run(tmp_path, suite)
    assert r.exit_code == 0, r.output
    miou = rows[rows.metric == "seg/mIoU"].value
    assert len(miou) == 1 and miou.iloc[0] < 1.0  # the rerun's row for the new folder, not the first run's 1.0
