"""Retrieval recall: hand-computed cases, CLIP_benchmark's own recall on the same scores, and the blocked device ranks."""

import numpy as np
import pytest

from bench.metrics.retrieval import i2t_ranks, recall_intervals, recalls, t2i_ranks
from bench.metrics.uncertainty import Spec
from bench.tasks.retrieval import ranks_on_device


def test_hand_computed_ranks_with_several_captions_per_image():
    # 3 images; image 0 has captions 0, 1; image 1 has caption 2; image 2 has captions 3, 4, 5
    text_image = np.array([0, 0, 1, 2, 2, 2])
    s = np.array(
        [  # captions × images
            [0.9, 0.1, 0.2],  # caption 0: its image first
            [0.1, 0.8, 0.3],  # caption 1: its image third
            [0.5, 0.4, 0.1],  # caption 2: second
            [0.1, 0.2, 0.3],  # caption 3: first
            [0.3, 0.9, 0.2],  # caption 4: third
            [0.3, 0.3, 0.3],  # caption 5: a three-way tie: images 0 and 1 come first
        ]
    )
    assert t2i_ranks(s, text_image).tolist() == [0, 2, 1, 0, 2, 2]
    # image 0 (column 0): best caption 0 (0.9), nothing above → 0. image 1: caption 2 scores 0.4;
    # non-matching captions 1 (0.8) and 4 (0.9) lie above → 2. image 2: best 0.3 (captions 3 and 5),
    # caption 1 also scores 0.3 and comes first (index 1 < 3) → 1.
    assert i2t_ranks(s, text_image).tolist() == [0, 2, 1]
    r = recalls(i2t_ranks(s, text_image), t2i_ranks(s, text_image), ks=(1, 2))
    assert r["i2t/R@1"] == pytest.approx(1 / 3) and r["i2t/R@2"] == pytest.approx(2 / 3)
    assert r["t2i/R@1"] == pytest.approx(2 / 6) and r["t2i/R@2"] == pytest.approx(3 / 6)
    assert r["rsum"] == pytest.approx(1 / 3 + 2 / 3 + 2 / 6 + 3 / 6) and r["mean_recall"] == pytest.approx(r["rsum"] / 4)


def test_an_image_without_captions_is_refused():
    with pytest.raises(ValueError, match="at least one caption"):
        i2t_ranks(np.zeros((2, 3)), np.array([0, 1]))


def _random(n_img=40, seed=0, dim=16):
    rng = np.random.default_rng(seed)
    text_image = np.concatenate([np.arange(n_img), rng.integers(0, n_img, n_img * 3)])
    img = rng.normal(size=(n_img, dim)).astype(np.float32)
    txt = (img[text_image] + 1.5 * rng.normal(size=(len(text_image), dim))).astype(np.float32)
    return img, txt, text_image


def _normalised(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_clip_benchmark_recall_on_the_same_scores():
    torch = pytest.importorskip("torch")
    zr = pytest.importorskip("clip_benchmark.metrics.zeroshot_retrieval")
    img, txt, text_image = _random()
    scores = torch.from_numpy(_normalised(txt) @ _normalised(img).T)
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(scores)), torch.from_numpy(text_image)] = True
    ours = recalls(i2t_ranks(scores.numpy(), text_image), t2i_ranks(scores.numpy(), text_image))
    for k in (1, 5, 10):
        t2i = (zr.batchify(zr.recall_at_k, scores, positive, 7, "cpu", k=k) > 0).float().mean().item()
        i2t = (zr.batchify(zr.recall_at_k, scores.T, positive.T, 7, "cpu", k=k) > 0).float().mean().item()
        # the package averages in float32: compare its value rounded as it rounds, and the hit counts exactly
        assert np.float32(ours[f"t2i/R@{k}"]) == np.float32(t2i) and np.float32(ours[f"i2t/R@{k}"]) == np.float32(i2t), k
        assert round(t2i * len(txt)) == round(ours[f"t2i/R@{k}"] * len(txt)) and round(i2t * len(img)) == round(ours[f"i2t/R@{k}"] * len(img))


@pytest.mark.parametrize("memory_mb", [256, 1e-4])
def test_blocked_device_ranks_equal_the_reference(memory_mb):
    img, txt, text_image = _random(seed=1)
    i2t, t2i, i2t_top, t2i_top = ranks_on_device(img, txt, text_image, "cpu", memory_mb)
    s = _normalised(txt) @ _normalised(img).T
    assert i2t.tolist() == i2t_ranks(s, text_image).tolist() and t2i.tolist() == t2i_ranks(s, text_image).tolist()
    assert i2t_top.shape == (len(img), 10) and t2i_top.shape == (len(txt), 10)
    # the best-ranked caption of an image at rank 0 is one of its own
    first = np.flatnonzero(i2t == 0)
    assert (text_image[i2t_top[first, 0]] == first).all()


def test_intervals_resample_images_with_their_captions():
    img, txt, text_image = _random(n_img=60, seed=2)
    s = _normalised(txt) @ _normalised(img).T
    i2t, t2i = i2t_ranks(s, text_image), t2i_ranks(s, text_image)
    ivs = recall_intervals(i2t, t2i, text_image, Spec(resamples=400))
    point = recalls(i2t, t2i)
    for m, iv in ivs.items():
        assert iv.low <= point[m] <= iv.high and iv.stderr > 0, m
        assert "unit=image" in iv.method
    # a dataset of two copies of every image (and caption) gives the same recalls and a narrower interval
    n = len(img)
    twice = recall_intervals(np.concatenate([i2t, i2t]), np.concatenate([t2i, t2i]), np.concatenate([text_image, text_image + n]), Spec(resamples=400))
    assert twice["rsum"].stderr < ivs["rsum"].stderr
