"""Checkpoints: safetensors and weights_only torch.load, sha256 before load, misfit counts."""

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from adapters.checkpoint import load_checkpoint, load_state_dict, sha256_file
from bench.errors import CheckpointError
from tests.factories import Tiny


def test_safetensors_and_pth_roundtrip(tmp_path):
    src = Tiny()
    st, pth = tmp_path / "w.safetensors", tmp_path / "w.pth"
    save_file(src.state_dict(), st)
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, pth)
    for path in (st, pth):
        dst = Tiny()
        digest = load_checkpoint(dst, str(path), None, "tiny")
        assert digest == sha256_file(str(path))
        for k, v in src.state_dict().items():
            assert torch.equal(dst.state_dict()[k], v)


def test_sha256_mismatch_checked_before_loading(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(Tiny().state_dict(), path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(Tiny(), str(path), "0" * 64, "tiny")
    msg = str(e.value)
    assert msg.startswith(f"{path}: sha256 mismatch: expected {'0' * 64}, got {sha256_file(str(path))}")
    assert "\n" not in msg
    # a correct prefix is accepted
    load_checkpoint(Tiny(), str(path), sha256_file(str(path))[:12], "tiny")


def test_misfit_reports_counts(tmp_path):
    sd = Tiny(num_classes=5).state_dict()
    sd.pop("conv.bias")
    sd["extra.weight"] = torch.zeros(2)
    sd["other.weight"] = torch.zeros(2)
    path = tmp_path / "w.safetensors"
    save_file(sd, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(Tiny(num_classes=3), str(path), None, "tiny")
    msg = str(e.value)
    assert msg.startswith(f"{path}: checkpoint does not fit tiny: ")
    assert "1 missing keys (conv.bias)" in msg
    assert "2 unexpected keys (extra.weight, other.weight)" in msg
    assert "2 shape mismatches (fc.bias: checkpoint [5] vs model [3])" in msg


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_arbitrary_pickle_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"w": Evil()}, f)
    with pytest.raises(CheckpointError) as e:
        load_state_dict(str(path))
    msg = str(e.value)
    # says what bench accepts, not torch's advice to unpickle the file anyway
    assert msg.startswith(f"{path}: refused:") and "safetensors" in msg and "weights_only=False" not in msg and "\n" not in msg


def test_truncated_safetensors(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(Tiny().state_dict(), path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_state_dict(str(path))


def test_key_map_strips_renames_drops_and_non_strict_reports(tmp_path):
    """An mmpretrain-style checkpoint ('backbone.' prefix, 'head.fc' head, a neck) loads into a timm-style model."""
    from safetensors.torch import save_file

    from adapters.python import PythonAdapter, PythonArgs
    from tests.factories import Tiny

    src = Tiny(3)
    sd = {f"backbone.{k}": v for k, v in src.state_dict().items() if k.startswith("conv")}
    sd |= {"head.fc.weight": src.fc.weight.detach().clone(), "head.fc.bias": src.fc.bias.detach().clone(), "neck.proj.weight": torch.zeros(2, 2)}
    ck = tmp_path / "mm.safetensors"
    save_file(sd, ck)
    base = dict(
        name="m", factory="tests.factories:tiny", python_path=[str(Path(__file__).resolve().parents[1])], capabilities=["image_logits"], checkpoint=str(ck)
    )
    with pytest.raises(CheckpointError, match="missing keys"):
        PythonAdapter(PythonArgs(**base))
    rules = [{"strip": "backbone."}, {"rename": {r"^head\.fc\.": "fc."}}, {"drop": r"^neck\."}]
    a = PythonAdapter(PythonArgs(**base, key_map=rules))
    torch.testing.assert_close(a.model.fc.weight, src.fc.weight)
    torch.testing.assert_close(a.model.conv.weight, src.conv.weight)
    assert "checkpoint_keys" not in a.metadata()  # everything matched
    # a backbone-only checkpoint: non-strict loads what matches and reports the head as missing
    save_file({k: v for k, v in sd.items() if k.startswith("backbone.")}, tmp_path / "bb.safetensors")
    b = PythonAdapter(PythonArgs(**{**base, "checkpoint": str(tmp_path / "bb.safetensors")}, key_map=rules[:1], strict=False))
    keys = b.metadata()["checkpoint_keys"]
    assert keys["missing"] == 2 and keys["missing_first"] == ["fc.bias", "fc.weight"] and keys["unexpected"] == 0
