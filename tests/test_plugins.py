"""A task family and an adapter from a module outside the package, through a suite's `plugins:`."""

import json
from pathlib import Path

from typer.testing import CliRunner

from bench.cli import app
from bench.results import load_rows

PLUGINS = Path(__file__).parent / "plugins"


def test_out_of_package_family_and_adapter_run_list_compare_and_rank(tmp_path):
    (tmp_path / "words.tsv").write_text("capital of France\tParis\ncolour of the sky\tblue\n2 + 2\tfour\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"name: words\nplugins: [bench_wordcount]\npython_path: [{PLUGINS}]\ndefaults: {{device: cpu}}\n"
        "models:\n"
        "  - {name: good, adapter: word_table, answers: {capital of France: Paris, colour of the sky: blue, 2 + 2: four}}\n"
        "  - {name: poor, adapter: word_table, answers: {capital of France: Paris}}\n"
        "tasks:\n  - {name: quiz, type: wordcount, data: words.tsv}\n"
    )
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    rows = load_rows([tmp_path / "res"]).set_index("model")
    assert rows.value["good"] == 1.0 and abs(rows.value["poor"] - 1 / 3) < 1e-12 and (rows.task_type == "wordcount").all()
    for what, name in (("tasks", "wordcount"), ("adapters", "word_table")):
        r = CliRunner().invoke(app, ["list", what, "--suite", str(suite)])
        assert r.exit_code == 0 and name in r.output, r.output
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "res" / "words"), "--format", "markdown"])
    assert r.exit_code == 0 and "word/acc" in r.output and "good" in r.output, r.output
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "res" / "words"), "--rank", "--format", "markdown"])
    assert r.exit_code == 0 and "quiz" in r.output and "| good |" in r.output, r.output
    # its declared exporter is `bench export words`, found through the plugins run.json records
    r = CliRunner().invoke(app, ["export", "words", str(tmp_path / "res" / "words"), "-o", str(tmp_path / "sub")])
    assert r.exit_code == 0 and "poor.json (3 answers)" in r.output.replace("\n", ""), r.output
    assert json.loads((tmp_path / "sub" / "poor.json").read_text()) == {"capital of France": "Paris", "colour of the sky": "", "2 + 2": ""}
    r = CliRunner().invoke(app, ["export", "nope", str(tmp_path / "res" / "words")])
    assert r.exit_code == 1 and "no task family declares an exporter 'nope'" in r.output and "words" in r.output, r.output


def test_a_plugin_that_cannot_be_imported_is_one_line(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: x\nplugins: [no_such_plugin_module]\nmodels: [{name: m, adapter: timm, arch: resnet18}]\ntasks: [{name: t, type: classification, dataset: {format: sklearn_digits}}]\n")
    r = CliRunner().invoke(app, ["validate", str(suite)])
    assert r.exit_code == 2 and "plugin module 'no_such_plugin_module' cannot be imported" in r.output
