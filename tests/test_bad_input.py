"""What a new user gets wrong gives one line naming the file and the problem (issue #13, item 7).

Suite errors exit 2 from `bench validate` / `bench run`; data errors are failed jobs with the line as their error.
"""

import threading
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from adapters.checkpoint import load_checkpoint, load_state_dict
from bench.cli import app
from bench.errors import CheckpointError, OutputError, SuiteError
from bench.suite import MAX_YAML_NODES, load_suite
from tests.factories import Tiny

REPO = Path(__file__).resolve().parent.parent

GOOD = """\
name: s
models:
  - name: m
    adapter: timm
    arch: resnet18
    num_classes: 3
tasks:
  - name: t
    type: classification
    protocol: head
    dataset: {format: sklearn_digits}
"""


def problems(path) -> list[str]:
    with pytest.raises(SuiteError) as e:
        load_suite(path)
    return e.value.problems


def validate(path):
    return CliRunner().invoke(app, ["validate", str(path)])


def error_lines(r) -> list[str]:
    return [ln for ln in r.output.splitlines() if ln.startswith("error:")]


# ---------------------------------------------------------------- suite files
def billion_laughs(levels: int = 9, width: int = 10) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nname: s\nmodels: *a{levels}\ntasks: *a{levels}\n"


def test_yaml_alias_bomb_is_refused_before_expanding(make_suite):
    p = make_suite(billion_laughs())  # 10**10 nodes expanded
    result: dict = {}

    def load():
        try:
            load_suite(p)
        except SuiteError as e:
            result["problems"] = e.problems

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(10)  # generous: the count is over the composed graph, each node once
    assert not t.is_alive(), "load_suite expanded the aliases"
    (msg,) = result["problems"]
    assert msg.startswith(f"{p}:") and f"YAML aliases expand to more than {MAX_YAML_NODES:,} nodes" in msg
    r = validate(p)
    assert r.exit_code == 2 and len(error_lines(r)) == 1 and str(p) in r.output


def test_recursive_yaml_alias(make_suite):
    p = make_suite(GOOD.replace("name: s\n", "name: s\nloop: &l [*l]\n"))
    (msg,) = problems(p)
    assert msg == f"{p}:2: YAML alias refers to a node that contains it"


def test_non_utf8_suite(make_suite, tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes(GOOD.replace("name: s\n", "name: s\ndescription: caf\xe9\n").encode("latin-1"))
    (msg,) = problems(p)
    assert msg == f"{p}:2: not UTF-8 text (byte 0xe9 at column 17); save the file as UTF-8"
    r = validate(p)
    assert r.exit_code == 2 and error_lines(r) == [f"error: {msg}"]


def test_truncated_suite_says_where_it_started(make_suite):
    p = make_suite('name: "s\nmodels: [')
    (msg,) = problems(p)
    assert msg.startswith(f"{p}:2:") and "while scanning a quoted scalar at line 1" in msg and "cut short" in msg


def test_nul_byte_in_suite_names_line(make_suite):
    p = make_suite("name: s\nmo\x00dels: []\n")
    (msg,) = problems(p)
    assert msg.startswith(f"{p}:2:3: malformed YAML: unacceptable character #x0000")


def test_empty_suite_and_folder_as_suite(make_suite, tmp_path):
    p = make_suite("")
    assert problems(p) == [f"{p}:1: the suite file is empty; it needs name, models and tasks"]
    assert problems(tmp_path) == [f"{tmp_path}: is a folder, not a suite file"]


def test_duplicate_key_reported(make_suite):
    p = make_suite(GOOD.replace("    num_classes: 3\n", "    num_classes: 3\n    arch: resnet50\n"))
    (msg,) = problems(p)
    assert msg == f"{p}:7: models[0].arch: duplicate key 'arch' (first at line 5)"


def test_folder_where_a_file_is_meant(make_suite, tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "names").mkdir()
    (tmp_path / "templates").mkdir()
    text = (
        GOOD.replace("    num_classes: 3", "    checkpoint: ckpt")
        .replace("protocol: head", "protocol: zero_shot\n    zero_shot: {templates_file: templates}")
        .replace("{format: sklearn_digits}", "{format: imagefolder, root: ., class_names: names}")
    )
    msgs = problems(make_suite(text))
    p = tmp_path / "suite.yaml"
    assert f"{p}:6: models[0].checkpoint: path is a folder, not a file: {tmp_path / 'ckpt'}" in msgs
    assert f"{p}:11: tasks[0].zero_shot.templates_file: path is a folder, not a file: {tmp_path / 'templates'}" in msgs
    assert any(m.startswith(f"{p}:12: tasks[0].dataset.class_names") and str(tmp_path / "names") in m and "folder" in m for m in msgs), msgs


def test_bad_device_in_suite(make_suite):
    p = make_suite("defaults: {device: tpu}\n" + GOOD)
    r = validate(p)
    assert r.exit_code == 2
    assert error_lines(r) == [f"error: {p}:1: defaults.device: 'tpu' is not a device (auto, cpu, cuda, cuda:N)"]


def test_bad_device_on_command_line(make_suite):
    p = make_suite(GOOD)
    r = CliRunner().invoke(app, ["run", str(p), "--device", "tpu", "--dry-run"])
    assert r.exit_code == 2
    assert error_lines(r) == ["error: --device: 'tpu' is not a device (auto, cpu, cuda, cuda:N)"]
    assert "pydantic" not in r.output


def test_read_text_names_the_file(tmp_path):
    from bench.errors import DataError, read_text

    p = tmp_path / "names.txt"
    p.write_bytes(b"cat\ndog\xff\n")
    with pytest.raises(DataError, match=rf"^{p}:2: not UTF-8 text \(byte 0xff at column 4\)"):
        read_text(p)
    with pytest.raises(DataError, match=f"^{tmp_path}: is a folder, not a file$"):
        read_text(tmp_path)


# ---------------------------------------------------------------- checkpoints
def test_text_file_named_pt(tmp_path):
    p = tmp_path / "w.pt"
    p.write_text("404: Not Found\n")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(Tiny(), str(p), None, "tiny")
    assert str(e.value) == f"{p}: not a torch checkpoint or safetensors file: a text file ('404: Not Found')"


@pytest.mark.parametrize(
    "content, says",
    [
        (b"", "file is empty, not a torch checkpoint or safetensors file"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n", "a Git LFS pointer, not the checkpoint itself"),
        (bytes(range(200, 256)), "not a torch checkpoint or safetensors file: 56 bytes starting c8 c9"),
    ],
)
def test_not_a_checkpoint(tmp_path, content, says):
    p = tmp_path / "w.pth"
    p.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_state_dict(str(p))
    assert str(e.value).startswith(f"{p}: {says}")


def test_folder_as_checkpoint(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(Tiny(), str(tmp_path), None, "tiny")
    assert str(e.value) == f"{tmp_path}: is a folder, not a checkpoint file"


def test_safetensors_is_found_by_content(tmp_path):
    p = tmp_path / "w.pt"  # a safetensors file under a torch name still loads
    save_file(Tiny().state_dict(), p)
    assert set(load_state_dict(str(p))) == set(Tiny().state_dict())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refused_pickle_says_what_is_accepted(tmp_path):
    p = tmp_path / "model.pt"
    torch.save(Tiny(), p)  # a whole pickled module, not a state dict
    with pytest.raises(CheckpointError) as e:
        load_state_dict(str(p))
    msg = str(e.value)
    assert msg.startswith(f"{p}: refused: it holds pickled Python objects (it needs tests.factories.Tiny)")
    assert ".safetensors" in msg and "weights_only=True" in msg
    assert "weights_only=False" not in msg and "\n" not in msg


def test_checkpoint_without_tensors(tmp_path):
    p = tmp_path / "opt.pt"
    torch.save({"optimizer": {"lr": 0.1}}, p)
    with pytest.raises(CheckpointError, match=f"^{p}: checkpoint holds no tensors"):
        load_state_dict(str(p))


# ---------------------------------------------------------------- outputs
def test_wrong_output_shape_names_capability_and_shapes():
    with pytest.raises(OutputError) as e:
        from adapters.base import Adapter

        Adapter.check_shape(torch.zeros(16, 3, 1), "image_logits", "m")
    assert str(e.value) == "model 'm': image_logits must have shape [batch, classes], got shape [16, 3, 1]"


def test_data_errors_are_failed_jobs(small_folder, make_suite, tmp_path):
    """Wrong output shape, a text file as checkpoint and a pickled module: each a failed row with its one line."""
    (tmp_path / "bad_shape_factory.py").write_text(
        "from tests.factories import Tiny\n\n"
        "class Bad(Tiny):\n"
        "    def forward(self, x):\n"
        "        return super().forward(x).unsqueeze(-1)\n\n"
        "def build():\n"
        "    return Bad()\n"
    )
    text_pt = tmp_path / "text.pt"
    text_pt.write_text("not weights\n")
    pickled = tmp_path / "pickled.pt"
    torch.save(Tiny(), pickled)

    def model(name, factory, extra=""):
        return (
            f"  - name: {name}\n    adapter: python\n    factory: {factory}\n    python_path: [{REPO}, {tmp_path}]\n"
            f"    capabilities: [image_logits]\n    preprocess: {{input_size: 16}}\n{extra}"
        )

    suite = make_suite(
        "name: t\ndefaults: {device: cpu, batch_size: 4, num_workers: 0}\nmodels:\n"
        + model("shape", "bad_shape_factory:build")
        + model("text", "tests.factories:tiny", f"    checkpoint: {text_pt}\n")
        + model("pickled", "tests.factories:tiny", f"    checkpoint: {pickled}\n")
        + f"tasks:\n  - name: head\n    type: classification\n    dataset: {{format: imagefolder, root: {small_folder}}}\n"
    )
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(out)])
    assert r.exit_code == 1, r.output
    rows = pd.concat([pd.read_parquet(p) for p in out.glob("t/*/rows/*.parquet")])
    assert (rows.status == "failed").all()
    err = rows.set_index("model").error
    assert err["shape"] == "model 'shape': image_logits must have shape [batch, classes], got shape [4, 3, 1]"
    assert err["text"] == f"{text_pt}: not a torch checkpoint or safetensors file: a text file ('not weights')"
    assert err["pickled"].startswith(f"{pickled}: refused: it holds pickled Python objects")
    assert all("\n" not in e for e in err)


def test_an_output_path_that_is_a_folder_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    baseline = Path(__file__).resolve().parent.parent / "results" / "baselines" / "smoke.parquet"
    for cmd in (["compare", str(baseline), "--format", "markdown", "-o", str(tmp_path)], ["report", str(baseline), "-o", str(tmp_path)]):
        r = CliRunner().invoke(app, cmd)
        assert r.exit_code == 1 and f"{tmp_path}: cannot write: Is a directory" in r.output and "Traceback" not in r.output, (cmd, r.output)
