"""Semantic segmentation metrics: mmsegmentation's IoUMetric definitions, cityscapesscripts parity."""

import numpy as np
import pytest

from bench.errors import DataError
from bench.metrics.segmentation import confusion, reduce_zero_label, scores


def test_hand_computed_case():
    # 3 classes; class 2 is absent from labels and predictions, so NaN and out of the means
    label = np.array([[0, 0, 1], [1, 255, 1]])
    pred = np.array([[0, 1, 1], [0, 0, 7]])  # 7: outside the classes, counts in no pred area
    s = scores(confusion(pred, label, 3))
    # class 0: inter 1, label 2, pred 2 (the ignored pixel's pred 0 is dropped) -> union 3, IoU 1/3, Acc 1/2
    # class 1: inter 1, label 3, pred 2 -> union 4, IoU 1/4, Acc 1/3
    np.testing.assert_allclose(s["IoU"][:2], [1 / 3, 1 / 4], rtol=0, atol=1e-15)
    np.testing.assert_allclose(s["Acc"][:2], [1 / 2, 1 / 3], rtol=0, atol=1e-15)
    assert np.isnan(s["IoU"][2]) and np.isnan(s["Acc"][2])
    assert s["mIoU"] == pytest.approx((1 / 4 + 1 / 3) / 2, abs=1e-15)
    assert s["mAcc"] == pytest.approx((1 / 2 + 1 / 3) / 2, abs=1e-15)
    assert s["aAcc"] == pytest.approx(2 / 5, abs=1e-15)


def test_class_only_predicted_counts_as_zero_iou():
    label = np.array([[0, 0]])
    pred = np.array([[0, 1]])
    s = scores(confusion(pred, label, 2))
    assert s["IoU"][1] == 0 and np.isnan(s["Acc"][1])  # mmseg: union > 0, so in mIoU; no label, so not in mAcc
    assert s["mIoU"] == pytest.approx(0.25) and s["mAcc"] == pytest.approx(0.5)


def test_matrices_add_over_images():
    rng = np.random.default_rng(0)
    a = [(rng.integers(0, 5, (8, 9)), rng.integers(0, 5, (8, 9))) for _ in range(4)]
    whole = confusion(np.concatenate([p for p, _ in a]), np.concatenate([g for _, g in a]), 5)
    assert (sum(confusion(p, g, 5) for p, g in a) == whole).all()


def test_reduce_zero_label_is_mmseg_s():
    lab = np.array([0, 1, 2, 150, 255], dtype=np.uint8)
    assert reduce_zero_label(lab).tolist() == [255, 0, 1, 149, 255]


def test_bad_input_is_one_line():
    with pytest.raises(DataError, match="a.png: prediction is 3x2, its label 2x2"):
        confusion(np.zeros((2, 3)), np.zeros((2, 2)), 3, source="a.png")
    with pytest.raises(DataError, match=r"b.png: label values \[9\] are outside 0..2"):
        confusion(np.zeros((2, 2)), np.array([[0, 9], [1, 255]]), 3, source="b.png")


def test_equals_cityscapesscripts_on_the_same_label_maps(tmp_path):
    from PIL import Image

    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as E
    from cityscapesscripts.helpers.labels import labels

    lut = np.full(256, 255, dtype=np.int64)
    for lab in labels:
        if lab.id >= 0 and lab.trainId not in (255, -1) and not lab.ignoreInEval:
            lut[lab.id] = lab.trainId
    train_names = {lab.trainId: lab.name for lab in labels if lab.id >= 0 and not lab.ignoreInEval and lab.trainId not in (255, -1)}
    ids = [lab.id for lab in labels if lab.id >= 0]
    rng = np.random.default_rng(1)
    preds, gts, conf = [], [], 0
    for i in range(6):
        gt = rng.choice(ids, size=(64, 96)).astype(np.uint8)
        gt[:, :10] = 7  # "road" in blocks, so IoUs are not all tiny
        pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.choice(ids, size=gt.shape)).astype(np.uint8)
        if i == 0:
            pred[pred == 33] = 32  # a class with label pixels but predicted nowhere in one image
        gp, pp = tmp_path / f"c{i}_gtFine_labelIds.png", tmp_path / f"c{i}_pred.png"
        Image.fromarray(gt).save(gp)
        Image.fromarray(pred).save(pp)
        gts.append(str(gp))
        preds.append(str(pp))
        conf = conf + confusion(lut[np.asarray(Image.open(pp))], lut[np.asarray(Image.open(gp))], 19)
    E.args.evalInstLevelScore = False
    E.args.quiet = True
    E.args.JSONOutput = False
    ref = E.evaluateImgLists(preds, gts, E.args)
    ours = scores(conf)
    for t, name in train_names.items():
        want = ref["classScores"][name]
        assert (np.isnan(want) and np.isnan(ours["IoU"][t])) or abs(ours["IoU"][t] - want) <= 1e-9, name
    assert abs(ours["mIoU"] - ref["averageScoreClasses"]) <= 1e-9
