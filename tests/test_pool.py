"""`bench run --workers N`: a pool of processes gives the same rows, and a dying worker fails only its job."""

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from bench.cli import app
from tests.test_run import suite_text as suite  # the same two-model, two-task suite

TESTS = Path(__file__).parent


def values(out: Path) -> pd.DataFrame:
    df = pd.read_parquet(out / "t" / "leaderboard.parquet")
    return df[["model", "task", "metric", "status", "value"]].sort_values(["model", "task", "metric"]).reset_index(drop=True)


def test_two_workers_give_the_rows_of_one_process(small_folder, make_suite, tmp_path):
    s = make_suite(suite(small_folder))
    one = CliRunner().invoke(app, ["run", str(s), "--out", str(tmp_path / "one"), "--no-cache"])
    two = CliRunner().invoke(app, ["run", str(s), "--out", str(tmp_path / "two"), "--no-cache", "--workers", "2"])
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    assert "jobs on 2 workers" in two.output
    pd.testing.assert_frame_equal(values(tmp_path / "one"), values(tmp_path / "two"))


def test_a_dying_worker_fails_only_its_job_after_one_retry(small_folder, make_suite, tmp_path):
    extra = (
        f"  - name: flaky\n    adapter: python\n    factory: tests.factories:die_once\n    python_path: [{TESTS.parent}]\n"
        f"    kwargs: {{marker: {tmp_path / 'marker'}}}\n    capabilities: [image_logits, image_features]\n    preprocess: {{input_size: 16}}\n"
        f"  - name: doomed\n    adapter: python\n    factory: tests.factories:always_die\n    python_path: [{TESTS.parent}]\n"
        "    capabilities: [image_logits]\n    preprocess: {input_size: 16}\n"
    )
    r = CliRunner().invoke(app, ["run", str(make_suite(suite(small_folder, extra))), "--out", str(tmp_path / "res"), "--no-cache", "--workers", "2"])
    assert r.exit_code == 1
    df = pd.read_parquet(tmp_path / "res" / "t" / "leaderboard.parquet")
    failed = df[df.status == "failed"]
    assert set(failed.model) == {"doomed"} and "worker died (exit code -9) while running it, twice" in failed.error.iloc[0]
    assert (df[df.model != "doomed"].status == "ok").all() and {"flaky", "tiny", "rn"} <= set(df.model)
    assert "retrying once" in r.output
