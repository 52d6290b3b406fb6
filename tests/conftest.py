import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def bench_cache(tmp_path_factory):
    """Keep generated datasets out of the user's ~/.cache during tests."""
    root = tmp_path_factory.mktemp("bench-cache")
    old = os.environ.get("BENCH_CACHE")
    os.environ["BENCH_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("BENCH_CACHE", None)
    else:
        os.environ["BENCH_CACHE"] = old


@pytest.fixture(scope="session")
def digits_root(bench_cache):
    from bench.data.images import materialize_digits

    root = bench_cache / "datasets" / "digits"
    materialize_digits(root)
    return root


@pytest.fixture
def small_folder(tmp_path):
    """A 3-class ImageFolder with train/val splits of 6 and 3 images per class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for c in ("cat", "dog", "fox"):
            d = tmp_path / "data" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return tmp_path / "data"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def make_suite(tmp_path):
    def make(text: str, name: str = "suite.yaml") -> Path:
        return write(tmp_path / name, text)

    return make


def copy_examples(dst: Path) -> None:
    shutil.copytree(REPO / "examples", dst / "examples")
