"""`bench run --launcher`: submitit's local executor runs the Slurm path; failed jobs are resubmitted once."""

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from bench.cli import app
from tests.test_pool import suite, values

TESTS = Path(__file__).parent


def test_submitit_local_executor_gives_the_same_rows_and_retries_once(small_folder, make_suite, tmp_path):
    extra = (
        f"  - name: flaky\n    adapter: python\n    factory: tests.factories:die_once\n    python_path: [{TESTS.parent}]\n"
        f"    kwargs: {{marker: {tmp_path / 'marker'}}}\n    capabilities: [image_logits, image_features]\n    preprocess: {{input_size: 16}}\n"
    )
    s = make_suite(suite(small_folder, extra) + "slurm: {time_min: 10, gpus_per_node: 0, cpus_per_task: 1}\n")
    r = CliRunner().invoke(app, ["run", str(s), "--out", str(tmp_path / "sub"), "--no-cache", "--launcher", "local"])
    assert r.exit_code == 0, r.output
    assert "through submitit (local)" in r.output and "resubmitting once" in r.output
    one = CliRunner().invoke(app, ["run", str(s), "--out", str(tmp_path / "one"), "--no-cache"])
    assert one.exit_code == 0
    pd.testing.assert_frame_equal(values(tmp_path / "sub"), values(tmp_path / "one"))
    assert (tmp_path / "sub" / "t" / "submitit").is_dir()  # submitit's logs, per run


def test_slurm_settings_are_validated_in_the_suite(small_folder, make_suite):
    s = make_suite(suite(small_folder) + "slurm: {partition: gpu, time_min: 0}\n")
    r = CliRunner().invoke(app, ["validate", str(s)])
    assert r.exit_code == 2 and "time_min" in r.output
