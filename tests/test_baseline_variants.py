"""The shipped smoke baseline holds under the changes in reduction order that another CPU brings.

One run changes all of them at once against the baseline's run: two pool workers (one torch and
one BLAS thread each, instead of two threads in one process), contiguous instead of channels_last
tensors, and batches of 16 instead of 128. `bench check` with the statistical rule must pass.
"""

from pathlib import Path

from typer.testing import CliRunner

from bench.cli import app

REPO = Path(__file__).resolve().parent.parent


def test_other_threads_layout_and_batch_size_pass_the_shipped_baseline(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CHANNELS_LAST", "0")
    out = tmp_path / "res"
    r = CliRunner().invoke(app, ["run", str(REPO / "suites" / "smoke.yaml"), "--out", str(out), "--device", "cpu", "--workers", "2", "--batch-size", "16"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["check", str(out / "smoke"), "--baseline", str(REPO / "results" / "baselines" / "smoke.parquet"), "--all"])
    assert r.exit_code == 0, r.output
    assert "PASS: 1060 baseline metrics" in r.output
