"""Suite loading: the public example validates; every kind of bad input names file, line and key."""

import re
from pathlib import Path

import pytest

from bench.errors import SuiteError
from bench.jobs import expand
from bench.suite import load_suite

HERE = Path(__file__).parent


# Parts of the original design example that later issues register (issue 4: detection, predictions).
def problems(path, **kw) -> list[str]:
    with pytest.raises(SuiteError) as e:
        s = load_suite(path, **kw)
        expand(s)
    return e.value.problems


def test_architecture_example_validates(tmp_path, monkeypatch):
    import yaml

    data = yaml.safe_load((HERE / "data" / "architecture_example.yaml").read_text())
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "dets").mkdir()
    (tmp_path / "dets" / "dino_val2017_bbox.json").write_text("[]")
    (tmp_path / "data" / "coco" / "annotations").mkdir(parents=True)
    (tmp_path / "data" / "coco" / "annotations" / "instances_val2017.json").write_text("{}")
    (tmp_path / "ckpts" / "resnet50.safetensors").write_bytes(b"")
    (tmp_path / "data" / "imagenet" / "val").mkdir(parents=True)
    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("CKPT_ROOT", raising=False)
    path = tmp_path / "example.yaml"
    path.write_text(yaml.safe_dump(data))
    suite = load_suite(path)
    assert [m.name for m in suite.models] == ["resnet50", "clip-b32", "mmdet-dino"]
    assert suite.tasks[1].dataset.images == str(tmp_path / "data" / "coco" / "val2017")
    assert suite.models[0].checkpoint == str(tmp_path / "ckpts" / "resnet50.safetensors")
    assert suite.tasks[0].dataset.root == str(tmp_path / "data" / "imagenet")
    assert suite.defaults.precision == "bf16" and suite.defaults.batch_size == "auto"
    plan = expand(suite)
    assert {(j.model.name, j.task.name) for j in plan.jobs} == {("resnet50", "imagenet-knn"), ("clip-b32", "imagenet-knn"), ("mmdet-dino", "coco")}


def test_smoke_suite_validates():
    suite = load_suite(HERE.parent / "suites" / "smoke.yaml")
    plan = expand(suite)
    protocols = {j.task.protocol for j in plan.jobs if j.task.type == "classification"}
    assert protocols == {"head", "linear_probe", "knn", "zero_shot"}
    assert {j.task.name for j in plan.jobs if j.task.type == "ood"} == {"digits-ood", "digits-ood-mcm"}
    det = {(j.model.name, j.task.name) for j in plan.jobs if j.task.type in ("detection", "lvis", "ovd_coco")}
    assert det == {(m, t) for m in ("shapes-dets", "maskrcnn-r18") for t in ("shapes-det", "shapes-lvis")} | {
        ("shapes-dets", "shapes-ovd"),
        ("clip-regions", "shapes-ovd"),
    }
    # clip has no head and no ODIN/linear head; the others have no text tower (zero-shot, MCM);
    # the three detection models have no image features/logits for the 6 classification/OOD tasks,
    # nor have MiniLM (a text encoder) and the Ego4D heads; the 2 Ego4D tasks fit only the heads (8 others)
    # retrieval and the webdataset zero-shot need both towers: only clip-vit-s32 (8 others each);
    # colour-segnet serves only segmentation (10 tasks it cannot run); shapes-seg needs seg_logits (9 others);
    # motion-net serves only video logits (11 others); each of the 4 video tasks fits one of the 11 models (10 others)
    assert len(plan.skipped) == 8 + 5 * 6 + 2 * 8 + 2 * 8 + 10 + 9 + 11 + 4 * 10
    video = {(j.model.name, j.task.name) for j in plan.jobs if j.task.type.startswith("video")}
    assert video == {("motion-net", "video-1x1"), ("motion-net", "video-4x3"), ("clip-vit-s32", "video-zeroshot"), ("clip-vit-s32", "video-retrieval")}
    seg = {(j.model.name, j.task.name) for j in plan.jobs if j.task.type == "segmentation"}
    assert seg == {("colour-segnet", "shapes-seg"), ("vit-tiny", "shapes-seg-linear"), ("clip-vit-s32", "shapes-seg-zeroshot")}
    assert {(j.model.name, j.task.name) for j in plan.jobs if j.task.name in ("shapes-retrieval", "wds-shapes-zeroshot")} == {
        ("clip-vit-s32", "shapes-retrieval"),
        ("clip-vit-s32", "wds-shapes-zeroshot"),
    }
    assert {(j.model.name, j.task.name) for j in plan.jobs if j.task.type.startswith("ego4d")} == {("ego4d-heads", "ego4d-nlq"), ("ego4d-heads", "ego4d-mq")}
    assert [(j.model.name, j.task.name) for j in plan.jobs if j.task.type == "superglue"] == [("minilm", "superglue-tiny")]


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


def test_malformed_yaml(make_suite):
    p = make_suite("name: s\nmodels:\n  - name: [unclosed\n")
    (msg,) = problems(p)
    assert msg.startswith(f"{p}:") and "malformed YAML" in msg


def test_unknown_key_did_you_mean(make_suite):
    p = make_suite(GOOD.replace("    arch: resnet18", "    archh: resnet18"))
    msgs = problems(p)
    assert any(re.match(rf"{re.escape(str(p))}:5: models\[0\]\.archh: unknown key 'archh' \(did you mean 'arch'\?\)", m) for m in msgs), msgs
    # the missing required key is reported too, in the same pass
    assert any("models[0].arch: required key is missing" in m for m in msgs)


def test_unknown_top_level_and_nested_keys(make_suite):
    p = make_suite("defaults: {devise: cpu}\n" + GOOD)
    (msg,) = problems(p)
    assert msg == f"{p}:1: defaults.devise: unknown key 'devise' (did you mean 'device'?)"


def test_wrong_type(make_suite):
    p = make_suite("defaults: {batch_size: lots}\n" + GOOD)
    msgs = problems(p)
    assert all(m.startswith(f"{p}:1: defaults.batch_size") for m in msgs), msgs


def test_unknown_adapter_and_task(make_suite):
    p = make_suite(GOOD.replace("adapter: timm", "adapter: timmm").replace("type: classification", "type: clasification"))
    msgs = problems(p)
    assert f"{p}:4: models[0].adapter: unknown adapter 'timmm' (did you mean 'timm'?)" in msgs
    assert f"{p}:9: tasks[0].type: unknown task type 'clasification' (did you mean 'classification'?)" in msgs


def test_unknown_protocol_and_format(make_suite):
    p = make_suite(GOOD.replace("protocol: head", "protocol: knnn").replace("sklearn_digits", "imagefoldr"))
    msgs = problems(p)
    assert any(m.startswith(f"{p}:10: tasks[0].protocol") and "knnn" in m for m in msgs), msgs
    assert any(m.startswith(f"{p}:11: tasks[0].dataset") and "did you mean 'imagefolder'" in m for m in msgs), msgs


def test_missing_files(make_suite, tmp_path):
    p = make_suite(
        GOOD.replace("    num_classes: 3", "    checkpoint: nope/w.safetensors").replace(
            "{format: sklearn_digits}", "{format: imagefolder, root: /no/such/data}"
        )
    )
    msgs = problems(p)
    assert f"{p}:6: models[0].checkpoint: path does not exist: {tmp_path / 'nope' / 'w.safetensors'}" in msgs
    assert f"{p}:11: tasks[0].dataset.root: path does not exist: /no/such/data" in msgs


def test_env_var_without_default(make_suite, monkeypatch):
    monkeypatch.delenv("NO_SUCH_ROOT", raising=False)
    p = make_suite(GOOD.replace("{format: sklearn_digits}", '{format: imagefolder, root: "${NO_SUCH_ROOT}/x"}'))
    msgs = problems(p)
    assert any(m.startswith(f"{p}:11: tasks[0].dataset.root: environment variable ${{NO_SUCH_ROOT}}") for m in msgs), msgs


def test_env_default_used(make_suite, monkeypatch, tmp_path):
    monkeypatch.delenv("SOME_ROOT", raising=False)
    (tmp_path / "fallback").mkdir()
    p = make_suite(GOOD.replace("{format: sklearn_digits}", '{format: imagefolder, root: "${SOME_ROOT:-fallback}"}'))
    assert load_suite(p).tasks[0].dataset.root == str(tmp_path / "fallback")


def test_capability_mismatch_named_pair(make_suite):
    p = make_suite(GOOD.replace("protocol: head", "protocol: zero_shot\n    models: [m]"))
    (msg,) = problems(p)
    assert msg == f"{p}:11: tasks[0].models: model 'm' cannot run task 't': model lacks text_features"


def test_task_no_model_can_run(make_suite):
    p = make_suite(GOOD.replace("protocol: head", "protocol: zero_shot"))
    (msg,) = problems(p)
    assert msg.startswith(f"{p}:8: tasks[0]: no model can run task 't'") and "text_features" in msg


def test_unknown_model_in_task_models(make_suite):
    p = make_suite(GOOD.replace("protocol: head", "protocol: head\n    models: [mm]"))
    msgs = problems(p)
    assert f"{p}:11: tasks[0].models[0]: unknown model 'mm' (did you mean 'm'?)" in msgs


def test_skipped_pairs_and_matrix(make_suite):
    text = (
        GOOD
        + """\
  - name: z
    type: classification
    protocol: zero_shot
    dataset: {format: sklearn_digits}
"""
    )
    text = text.replace(
        "tasks:\n",
        """  - name: clip
    adapter: open_clip
    arch: ViT-S-32
matrix:
  exclude: [{model: clip, task: "*"}]
tasks:
""",
    )
    # zero-shot then has no runnable model: matrix exclusion counts
    p = make_suite(text)
    (msg,) = problems(p)
    assert "no model can run task 'z'" in msg
    text = text.replace('exclude: [{model: clip, task: "*"}]', 'exclude: [{model: m, task: "t"}]')
    text = text.replace("matrix:", "  - name: m2\n    adapter: timm\n    arch: resnet18\nmatrix:")
    plan = expand(load_suite(make_suite(text, "s2.yaml")))
    assert {(j.model.name, j.task.name) for j in plan.jobs} == {("m2", "t"), ("clip", "z")}
    assert {(s.model, s.task, s.reason) for s in plan.skipped} == {
        ("m", "t", "excluded by matrix"),
        ("clip", "t", "model lacks image_logits"),
        ("m", "z", "model lacks text_features"),
        ("m2", "z", "model lacks text_features"),
    }


def test_duplicate_names(make_suite):
    p = make_suite(GOOD.replace("tasks:", "  - name: m\n    adapter: timm\n    arch: resnet18\ntasks:"))
    (msg,) = problems(p)
    assert msg == f"{p}:7: models[1].name: duplicate name 'm'"


def test_train_split_required_for_probes(make_suite, small_folder):
    p = make_suite(GOOD.replace("protocol: head", "protocol: knn").replace("{format: sklearn_digits}", f"{{format: imagefolder, root: {small_folder}}}"))
    (msg,) = problems(p)
    assert msg.startswith(f"{p}:8: tasks[0]") and "needs dataset.train_split" in msg


def test_cli_validate_prints_every_problem(make_suite):
    from typer.testing import CliRunner

    from bench.cli import app

    p = make_suite(GOOD.replace("arch: resnet18", "arch: resnet18\n    colour: red").replace("protocol: head", "protocol: hed"))
    r = CliRunner().invoke(app, ["validate", str(p)])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 2, r.output
    assert all(str(p) in ln for ln in lines)


@pytest.mark.parametrize("name", ["detection", "ovd", "superglue", "ego4d"])
def test_real_data_suites_validate(tmp_path, monkeypatch, name):
    """The shipped suites point at real COCO/LVIS layouts; with those files present they expand."""
    files = [
        "data/coco/annotations/instances_val2017.json",
        "data/coco/annotations/instances_val2017_all_2.json",
        "data/lvis/lvis_v1_val.json",
        "data/proposals/coco_val2017_proposals.json",
        "data/proposals/lvis_v1_val_proposals.json",
        "ckpts/maskrcnn_convnext_tiny_fpn_coco.safetensors",
        "ckpts/retinanet_r50_fpn_coco.safetensors",
        "res/internimage_t_coco.bbox.json",
        "res/internimage_t_coco.segm.json",
        "res/d2_mask_rcnn_lvis_v1_val.json",
        "res/fvlm_r50_coco_ovd.json",
        "res/fvlm_r50_lvis.json",
        "res/superglue/BoolQ_val.jsonl",
        "data/superglue/BoolQ/val.jsonl",
        "data/ego4d/v2/annotations/nlq_val.json",
        "data/ego4d/v2/annotations/nlq_test_unannotated.json",
        "data/ego4d/v2/annotations/moments_clip_annotations.json",
        "data/ego4d/v2/annotations/ego4d_classes_idx.json",
        "data/ego4d/v2/annotations/fho_sta_val.json",
        "data/ego4d/scod/coco_annotations/val.json",
        "ckpts/ego4d/nlq_head.safetensors",
        "ckpts/ego4d/mq_head.safetensors",
        "res/ego4d/nlq_val_submission.json",
        "res/ego4d/mq_val_submission.json",
        "res/ego4d/sta_val_submission.json",
        "res/ego4d/scod_val_bbox.json",
    ]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("{}")
    for var, sub in (("DATA_ROOT", "data"), ("CKPT_ROOT", "ckpts"), ("RESULTS_ROOT", "res")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    plan = expand(load_suite(HERE.parent / "suites" / f"{name}.yaml"))
    assert plan.jobs and all(j.task.type in ("detection", "lvis", "ovd_coco", "superglue", "ego4d_nlq", "ego4d_mq", "ego4d_sta") for j in plan.jobs)


def test_backbones_suite_validates_given_its_files(tmp_path, monkeypatch):
    """The headline suite expands once the files it points at exist (created empty here, as the errors name them)."""
    import re

    for var, sub in (("DATA_ROOT", "data"), ("CKPT_ROOT", "ckpts"), ("CODE_ROOT", "code")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "internimage.py").write_text("def internimage_t():\n    raise NotImplementedError\n")
    path = HERE.parent / "suites" / "backbones.yaml"
    for _ in range(60):
        try:
            plan = expand(load_suite(path))
            break
        except SuiteError as e:
            missing = [m.group(1) for p in e.problems if (m := re.search(r"path does not exist: (\S+)", p))]
            # a touched file where a folder is meant: make it a folder
            folders = [
                m.group(1) or m.group(2) for p in e.problems if (m := re.search(r"path is a file, not a folder: (\S+)|(\S+): is a file, expected a folder", p))
            ]
            assert missing or folders, e.problems
            for f in missing:
                Path(f).parent.mkdir(parents=True, exist_ok=True)
                Path(f).touch()
            for f in dict.fromkeys(folders):  # a folder two keys name (a dataset root and its train root) once
                Path(f).unlink()
                Path(f).mkdir()
    else:
        pytest.fail("backbones.yaml did not validate")
    types = {j.task.type for j in plan.jobs}
    assert types == {"classification", "ood", "detection", "ovd_coco", "segmentation", "superglue"}
    protocols = {j.task.protocol for j in plan.jobs if j.task.type == "classification"}
    assert protocols == {"head", "linear_probe", "knn", "few_shot", "zero_shot"}
    assert any(j.model.name == "vit-b16-greedy-soup" for j in plan.jobs)
