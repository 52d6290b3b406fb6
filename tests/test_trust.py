"""Results you can trust: CIs on rows, content-keyed resume, and a gate that catches a real regression."""

from pathlib import Path

import numpy as np
import yaml
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from bench import check as chk
from bench.cli import app
from bench.results import load_rows

REPO = Path(__file__).resolve().parent.parent


def run(path, out, *extra):
    return CliRunner().invoke(app, ["run", str(path), "--out", str(out), *extra])


def save_tiny(path: Path, scale: float = 1.0) -> None:
    from tests.factories import Tiny

    torch.manual_seed(0)
    m = Tiny(3)
    save_file({k: v * scale for k, v in m.state_dict().items()}, str(path))


def tiny_suite(tmp_path, small_folder, ckpt: Path, extra: str = "") -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(
        "name: t\ndefaults: {device: cpu, batch_size: 4, num_workers: 0, seed: 0}\n" + extra + "models:\n"
        f"  - {{name: tiny, adapter: python, factory: 'tests.factories:tiny', python_path: [{REPO}], checkpoint: {ckpt},"
        " capabilities: [image_logits, image_features], preprocess: {input_size: 16}}\n"
        "tasks:\n"
        f"  - {{name: knn, type: classification, protocol: knn, knn: {{k: 3}}, dataset: {{format: imagefolder, root: {small_folder}, train_split: train}}}}\n"
        f"  - {{name: head, type: classification, protocol: head, dataset: {{format: imagefolder, root: {small_folder}}}}}\n"
    )
    return p


def test_rows_carry_intervals_and_ci_method(tmp_path, small_folder):
    ckpt = tmp_path / "w.safetensors"
    save_tiny(ckpt)
    r = run(tiny_suite(tmp_path, small_folder, ckpt), tmp_path / "res")
    assert r.exit_code == 0, r.output
    df = load_rows([tmp_path / "res"])
    assert df.stderr.notna().all() and df.ci_low.notna().all() and df.ci_high.notna().all()
    assert (df.ci_low <= df.value).all() and (df.value <= df.ci_high).all()
    assert df.ci_method.str.startswith("bootstrap(unit=image,resamples=1000,seed=0)").all()
    assert df.machine.notna().all() and (df.threads >= 1).all() and df.blas.notna().all()


def test_wilson_and_off(tmp_path, small_folder):
    ckpt = tmp_path / "w.safetensors"
    save_tiny(ckpt)
    r = run(tiny_suite(tmp_path, small_folder, ckpt, "uncertainty: {method: wilson}\n"), tmp_path / "w")
    assert r.exit_code == 0, r.output
    df = load_rows([tmp_path / "w"])
    # Wilson is for proportions; mean per-class recall is not one, so it keeps the bootstrap
    prop = df[df.metric != "mean_per_class_recall"]
    assert (prop.ci_method == "wilson").all() and df[df.metric == "mean_per_class_recall"].ci_method.str.startswith("bootstrap").all()
    p = prop.value.to_numpy()
    np.testing.assert_allclose(prop.stderr, np.sqrt(p * (1 - p) / prop.n), rtol=1e-12)
    r = run(tiny_suite(tmp_path, small_folder, ckpt, "uncertainty: off\n"), tmp_path / "off")
    assert r.exit_code == 0, r.output
    df = load_rows([tmp_path / "off"])
    assert df.stderr.isna().all() and df.ci_low.isna().all() and df.ci_method.isna().all()


def test_checkpoint_overwritten_in_place_is_rescored(tmp_path, small_folder):
    ckpt = tmp_path / "latest.safetensors"
    save_tiny(ckpt)
    suite = tiny_suite(tmp_path, small_folder, ckpt)
    assert run(suite, tmp_path / "res").exit_code == 0
    first = load_rows([tmp_path / "res"])
    r = run(suite, tmp_path / "res")
    assert "2 resumed" in r.output or "resumed" in r.output  # unchanged file: nothing reruns
    assert len(list((tmp_path / "res" / "t").glob("*/rows/*.parquet"))) == 2
    save_tiny(ckpt, scale=-1.0)  # a re-exported release under the same name
    r = run(suite, tmp_path / "res")
    assert r.exit_code == 0, r.output
    rows = list((tmp_path / "res" / "t").glob("*/rows/*.parquet"))
    assert len(rows) == 4  # both jobs ran again, under new job hashes
    second = load_rows([tmp_path / "res"])
    assert set(second.job_hash).isdisjoint(set(first.job_hash))
    assert set(second.checkpoint_sha256) != set(first.checkpoint_sha256)


def test_degraded_checkpoint_regresses_against_the_shipped_baseline(tmp_path):
    """resnet18 of the smoke suite with its stem zeroed: the gate must call digits-knn a regression."""
    from adapters import create_adapter
    from bench.suite import load_suite

    smoke = load_suite(REPO / "suites" / "smoke.yaml")
    args = next(m for m in smoke.models if m.name == "resnet18")
    adapter = create_adapter(args, device="cpu", precision="fp32", seed=0)
    state = {k: v.detach().clone().contiguous() for k, v in adapter.model.state_dict().items()}
    state["conv1.weight"].zero_()  # no signal passes the stem: features are constant
    ckpt = tmp_path / "resnet18-degraded.safetensors"
    save_file(state, str(ckpt))
    raw = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text())
    # the smoke suite's own resnet18 and digits-knn entries (so the task_hash is the baseline's), nothing else
    raw["models"] = [{**m, "checkpoint": str(ckpt)} for m in raw["models"] if m["name"] == "resnet18"]
    raw["tasks"] = [t for t in raw["tasks"] if t["name"] == "digits-knn"]
    suite = tmp_path / "smoke.yaml"
    suite.write_text(yaml.safe_dump(raw))
    r = run(suite, tmp_path / "res", "--device", "cpu")
    assert r.exit_code == 0, r.output
    cur = load_rows([tmp_path / "res"])
    base = load_rows([REPO / "results" / "baselines" / "smoke.parquet"])
    base = base[(base.model == "resnet18") & (base.task == "digits-knn")]
    v = {x.metric: x for x in chk.check(cur, base, per_metric=load_suite(suite, check_paths=False).check.tolerance)}
    assert v["top1"].status == "regressed", v["top1"]
    r = CliRunner().invoke(app, ["check", str(tmp_path / "res"), "--baseline", str(REPO / "results" / "baselines" / "smoke.parquet")])
    assert r.exit_code == 1 and "regressed" in r.output
