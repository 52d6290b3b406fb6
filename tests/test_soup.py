"""Model soups: identical ingredients, uniform averaging, and greedy selection on a constructed case."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from adapters.python import PythonAdapter, PythonArgs
from tests.factories import Tiny

REPO = Path(__file__).resolve().parents[1]
COLORS = {"blue": 2, "green": 1, "red": 0}  # class folders sort as blue, green, red


@pytest.fixture(scope="module")
def colors(tmp_path_factory) -> Path:
    """Solid red/green/blue images: class c is bright in channel COLORS[c]."""
    root = tmp_path_factory.mktemp("colors")
    rng = np.random.default_rng(0)
    for name, ch in COLORS.items():
        d = root / "val" / name
        d.mkdir(parents=True)
        for i in range(4):
            img = rng.integers(0, 40, (16, 16, 3), dtype=np.uint8)
            img[..., ch] = 220
            Image.fromarray(img).save(d / f"{i}.png")
    return root


def ingredient(path: Path, head_scale: float, noise: float = 0.0, seed: int = 0) -> str:
    """Features = mean colour per channel; the head maps channel ch to class index of its folder, times head_scale."""
    m = Tiny(3)
    with torch.no_grad():
        m.conv.weight.zero_()
        m.conv.bias.zero_()
        for ch in range(3):
            m.conv.weight[ch, ch] = 1 / 9
        m.fc.weight.zero_()
        m.fc.bias.zero_()
        for cls, name in enumerate(sorted(COLORS)):
            m.fc.weight[cls, COLORS[name]] = head_scale
        m.fc.weight.add_(noise * torch.randn(m.fc.weight.shape, generator=torch.Generator().manual_seed(seed)))
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, path)
    return str(path)


def adapter(**kw) -> PythonAdapter:
    base = dict(
        name="m",
        factory="tests.factories:tiny",
        python_path=[str(REPO)],
        capabilities=["image_logits"],
        preprocess={"input_size": 16, "crop_pct": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1]},
    )
    return PythonAdapter(PythonArgs(**{**base, **kw}))


def test_soup_of_identical_checkpoints_equals_the_checkpoint(tmp_path):
    ck = ingredient(tmp_path / "a.safetensors", 1.0, noise=0.3)
    x = torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)
    single = adapter(checkpoint=ck).image_logits(x)
    soup = adapter(soup={"checkpoints": [ck, ck, ck], "method": "uniform"})
    torch.testing.assert_close(soup.image_logits(x), single, rtol=1e-6, atol=1e-6)
    meta = soup.metadata()["soup"]
    assert meta["kept"] == [ck, ck, ck] and soup.checkpoint_sha256 == meta["sha256"]


def test_uniform_soup_is_the_weight_mean(tmp_path):
    a, b = ingredient(tmp_path / "a.safetensors", 2.0), ingredient(tmp_path / "b.safetensors", 4.0, noise=1.0, seed=3)
    s = adapter(soup={"checkpoints": [a, b]})
    from adapters.checkpoint import load_state_dict

    want = (load_state_dict(a)["fc.weight"] + load_state_dict(b)["fc.weight"]) / 2
    torch.testing.assert_close(s.model.fc.weight.detach(), want)


def test_greedy_soup_ranks_then_keeps_only_what_does_not_hurt(tmp_path, colors):
    held_out = {"format": "imagefolder", "root": str(colors)}
    bad = ingredient(tmp_path / "bad.safetensors", -50.0)  # every prediction wrong: held-out top-1 0
    good = ingredient(tmp_path / "good.safetensors", 10.0)  # top-1 1
    medium = ingredient(tmp_path / "medium.safetensors", 5.0, noise=0.5, seed=1)  # top-1 1 as well
    s = adapter(soup={"checkpoints": [bad, good, medium], "method": "greedy", "held_out": held_out})
    info = s.metadata()["soup"]
    accs = {Path(i["path"]).stem: i["held_out_top1"] for i in info["ingredients"]}
    assert accs == {"bad": 0.0, "good": 1.0, "medium": 1.0}
    assert [Path(p).stem for p in info["order"]] == ["good", "medium", "bad"]  # by held-out top-1, ties in listed order
    assert [Path(p).stem for p in info["kept"]] == ["good", "medium"]  # bad would drop the soup to (10+5-50)/3 < 0
    assert info["held_out_top1"] == 1.0
    from adapters.checkpoint import load_state_dict

    want = (load_state_dict(good)["fc.weight"] + load_state_dict(medium)["fc.weight"]) / 2
    torch.testing.assert_close(s.model.fc.weight.detach(), want)
    # the uniform soup of all three is wrong everywhere
    u = adapter(soup={"checkpoints": [bad, good, medium]})
    from adapters.soup import held_out_top1

    assert held_out_top1(u, s.args.soup.held_out) == 0.0
    json.dumps(info)  # provenance is JSON-ready for the rows' meta


def test_soup_validation(tmp_path):
    ck = ingredient(tmp_path / "a.safetensors", 1.0)
    with pytest.raises(Exception, match="greedy soup needs held_out"):
        adapter(soup={"checkpoints": [ck], "method": "greedy"})
    with pytest.raises(Exception, match="checkpoint or soup, not both"):
        adapter(checkpoint=ck, soup={"checkpoints": [ck]})
