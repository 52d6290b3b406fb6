"""The zero-shot catalogue, CLIP_benchmark's {c} templates, CuPL-style per-class prompts and mean per-class recall."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bench import catalogue
from bench.cli import app
from bench.metrics.classification import mean_per_class_recall, weighted_per_class_recall
from bench.results import load_rows

CLIP = "  - {name: clip, adapter: open_clip, arch: ViT-S-32, image_size: 32}\n"


def test_the_catalogue_covers_clip_benchmarks_datasets():
    have = set(catalogue.names())
    for name in ("imagenet1k", "imagenetv2", "imagenet-a", "imagenet-r", "cifar10", "cifar100", "stl10", "food101", "cars", "fgvc_aircraft", "pets",
                 "flowers", "dtd", "eurosat", "gtsrb", "sun397", "caltech101", "country211", "resisc45", "mnist", "svhn", "pcam", "fer2013"):
        assert name in have and catalogue.entry(name).templates, name
    r = catalogue.entry("imagenet-r")
    assert len(r.classnames) == 200 and len(r.label_map) == 200 and r.classnames[0] == catalogue.entry("imagenet1k").classnames[r.label_map[0]]
    assert len(catalogue.entry("imagenet-a").label_map) == 200 and len(catalogue.entry("imagenet1k").classnames) == 1000
    assert catalogue.fill("a photo of a {c}.", "cat") == catalogue.fill("a photo of a {}.", "cat") == "a photo of a cat."
    assert len(catalogue.cupl("imagenet1k")["tench"]) > 1


def test_an_unknown_catalogue_name_is_one_line_with_a_suggestion(make_suite):
    suite = make_suite("name: c\nmodels:\n" + CLIP + "tasks:\n  - {name: z, type: classification, protocol: zero_shot, zero_shot: {catalogue: imagenet1j}, dataset: {format: sklearn_digits}}\n")
    r = CliRunner().invoke(app, ["validate", str(suite)])
    assert r.exit_code == 2 and "no catalogue dataset 'imagenet1j' (did you mean 'imagenet1k'?)" in r.output, r.output
    assert len([ln for ln in r.output.splitlines() if "imagenet1j" in ln]) == 1


def test_a_catalogue_label_map_resolves_and_a_wrong_name_is_still_a_file(make_suite):
    from bench.suite import load_suite

    suite = make_suite("name: c\nmodels:\n" + CLIP + "tasks:\n  - {name: h, type: classification, protocol: head, label_map: imagenet-r, dataset: {format: sklearn_digits}}\n")
    assert load_suite(suite).tasks[0].label_map == "catalogue:imagenet-r"
    bad = make_suite("name: c\nmodels:\n" + CLIP + "tasks:\n  - {name: h, type: classification, protocol: head, label_map: imagenet-q, dataset: {format: sklearn_digits}}\n", "b.yaml")
    r = CliRunner().invoke(app, ["validate", str(bad)])
    assert r.exit_code == 2 and "label_map: path does not exist" in r.output


def test_braces_templates_files_and_per_class_prompts_agree(tmp_path, make_suite):
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    (tmp_path / "c.txt").write_text("a photo of the number {c}.\n")
    (tmp_path / "p.json").write_text(json.dumps({n: [f"a photo of the number {n}."] for n in names}))
    suite = make_suite(
        "name: zs\ndefaults: {device: cpu}\nuncertainty: off\nmodels:\n" + CLIP + "tasks:\n"
        "  - {name: plain, type: classification, protocol: zero_shot, zero_shot: {templates: ['a photo of the number {}.']}, dataset: {format: sklearn_digits}}\n"
        f"  - {{name: cb, type: classification, protocol: zero_shot, zero_shot: {{templates_file: {tmp_path / 'c.txt'}}}, dataset: {{format: sklearn_digits}}}}\n"
        f"  - {{name: cupl, type: classification, protocol: zero_shot, zero_shot: {{prompts_file: {tmp_path / 'p.json'}}}, dataset: {{format: sklearn_digits}}}}\n"
        "  - {name: cat, type: classification, protocol: zero_shot, zero_shot: {catalogue: mnist}, dataset: {format: sklearn_digits}}\n"
    )
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "res"), "--limit", "60"])
    assert r.exit_code == 0, r.output
    v = load_rows([tmp_path / "res"]).set_index(["task", "metric"]).value
    for m in ("top1", "top5", "mean_per_class_recall"):
        assert v["plain", m] == v["cb", m] == v["cupl", m], m
    assert 0 <= v["cat", "top1"] <= 1  # mnist's own names and templates from the catalogue
    (tmp_path / "p.json").write_text(json.dumps({"zero": ["x"]}))
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "res2"), "--limit", "60"])
    assert r.exit_code == 1 and "p.json: no prompts for class 'one'" in r.output


def test_mean_per_class_recall_is_sklearns_and_its_weighted_form_equals_copies():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 50)
    pred = np.where(rng.random(50) < 0.6, labels, rng.integers(0, 4, 50))
    hit = (pred == labels).astype(float)
    per = [np.mean(hit[labels == c]) for c in range(4)]
    assert mean_per_class_recall(pred, labels) == pytest.approx(np.mean(per), abs=1e-12)
    w = rng.integers(0, 3, (1, 50)).astype(float)
    copies = np.repeat(np.arange(50), w[0].astype(int))
    assert weighted_per_class_recall(w, hit, labels)[0] == pytest.approx(mean_per_class_recall(pred[copies], labels[copies]), abs=1e-12)
