"""Video classification: mmaction2's test sampling and crops, PyAV decoding of only the needed frames,
the decoded-clip cache, readers, adapters, a run through a suite, and every bad input as one line."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.data.video import KineticsSpec, SplitFileSpec, Sthv2Spec, VideoListSpec, VideoSyntheticSpec, Views, crop_offsets, decode_frames, frame_indices, load_views, probe, shipped_classes
from bench.errors import DataError
from tests.factories import run_suite as run

REPO = Path(__file__).resolve().parent.parent
MOTION = f"""  - name: motion-net
    adapter: python
    factory: examples.motion_net:build
    python_path: [{REPO}]
    capabilities: [video_logits]
    preprocess: {{input_size: 48, crop_pct: 0.857, mean: [0.0, 0.0, 0.0], std: [1.0, 1.0, 1.0]}}
"""


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return VideoSyntheticSpec(format="video_synthetic", n=8, root=str(tmp_path_factory.mktemp("vids") / "synth")).load()


def test_dense_sampling_is_mmaction2_sampleframes_test_mode():
    # 3D: L = (T-1)s + 1 = 57, M = 100 - 57 = 43, starts round(k * 43 / 2) = 0, 22 (21.5 to even), 43
    assert frame_indices(100, Views(num_frames=8, stride=8, clips=3))[:, 0].tolist() == [0, 22, 43]
    assert frame_indices(100, Views(num_frames=8, stride=8, clips=1))[0, 0] == 21  # one clip: M // 2
    # shorter than a view: every clip starts at 0 and wraps (out_of_bound_opt='loop')
    assert frame_indices(30, Views(num_frames=4, stride=16, clips=2)).tolist() == [[0, 16, 2, 18], [0, 16, 2, 18]]
    # 2D (one frame per clip, TSN's 25 clips): the middle of each of 25 equal parts
    assert frame_indices(300, Views(num_frames=1, stride=1, clips=25))[:, 0].tolist() == list(range(6, 300, 12))


def test_uniform_sampling_is_mmaction2_uniformsample_test_mode():
    # seg = (N - 1) / T, frame i of clip k = round(seg * i) + int(seg / (n + 1) * (k + 1)); short videos repeat frames
    assert frame_indices(5, Views(mode="uniform", num_frames=8, clips=2)).tolist() == [[0, 0, 1, 2, 2, 2, 3, 4]] * 2
    got = frame_indices(33, Views(mode="uniform", num_frames=8, clips=3))
    assert got[:, 0].tolist() == [1, 2, 3] and got[0].tolist() == [1, 5, 9, 13, 17, 21, 25, 29]


def test_crops_are_centre_and_threecrop():
    assert crop_offsets(256, 341, 256, 1) == [(0, 42)]
    assert crop_offsets(256, 341, 256, 3) == [(0, 0), (0, 42), (0, 84)]  # step (341 - 256) // 2: the right one 1 px short, as mmaction2
    assert crop_offsets(300, 224, 224, 3) == [(0, 0), (38, 0), (76, 0)]


def test_only_the_needed_frames_are_decoded_and_they_are_pyav_frames(synth):
    import av

    want = np.array([3, 7, 7, 11])
    got = decode_frames(synth.paths[0], want)
    assert sorted(got) == [3, 7, 11]
    with av.open(synth.paths[0]) as c:
        plain = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert probe(synth.paths[0]) == len(plain) == 24
    for i in got:
        np.testing.assert_array_equal(got[i], plain[i])  # the same decoder on the same file, in this run


def test_views_have_the_protocol_shape(synth):
    x, short = load_views(synth.paths[1], Views(num_frames=8, stride=2, clips=2, crops=3, size=48, short_side=56))
    assert x.shape == (6, 3, 8, 48, 48) and x.dtype == np.uint8 and not short
    _, short = load_views(synth.paths[1], Views(num_frames=16, stride=4, size=48, short_side=56))
    assert short  # 24 frames, a view spans 61


def test_shipped_class_lists():
    for name, n in {"kinetics400": 400, "kinetics600": 600, "kinetics700": 700, "sthv2": 174, "ucf101": 101, "hmdb51": 51}.items():
        names = shipped_classes(name)
        assert len(names) == n and len(set(names)) == n, name


def test_a_model_runs_1x1_and_4x3_views_with_intervals(tmp_path, synth):
    root = Path(synth.paths[0]).parent.parent
    suite = (
        "name: v\ndefaults: {device: cpu, batch_size: 8}\nmodels:\n" + MOTION + "tasks:\n"
        f"  - {{name: v1x1, type: video_classification, dataset: {{format: video_list, file: {root / 'list.txt'}, classes: {root / 'classes.txt'}}}, sampling: {{num_frames: 8, stride: 2}}}}\n"
        f"  - {{name: v4x3, type: video_classification, dataset: {{format: video_list, file: {root / 'list.txt'}, classes: {root / 'classes.txt'}}}, sampling: {{num_frames: 8, stride: 2}}, views: {{clips: 4, crops: 3}}, average: logits}}\n"
        f"  - {{name: vuni, type: video_classification, dataset: {{format: video_list, file: {root / 'list.txt'}, classes: {root / 'classes.txt'}}}, sampling: {{mode: uniform, num_frames: 6}}}}\n"
    )
    r, rows = run(tmp_path, suite)
    assert r.exit_code == 0, r.output
    top1 = rows[rows.metric == "top1"].set_index("task")
    assert (top1.value == 1.0).all()  # the square's motion, read by its centroid: far from any tie
    assert set(rows.metric) == {"top1", "mean_class_acc"}  # 4 classes: no top5
    assert top1.ci_method.str.contains("unit=video").all() and (top1.ci_low <= 1.0).all()
    assert top1.task_hash["v1x1"] != top1.task_hash["v4x3"]
    meta = json.loads(top1.meta["v4x3"])
    assert meta["views"] == {"clips": 4, "crops": 3, "total": 12} and meta["size"] == 48 and meta["short_side"] == 56 and meta["average"] == "logits"


def test_the_second_model_reads_the_decoded_clip_cache(tmp_path, synth, monkeypatch):
    import bench.data.video as V

    root = Path(synth.paths[0]).parent.parent
    two = MOTION + MOTION.replace("name: motion-net", "name: motion-net-2").replace("{input_size: 48", "{input_size: 48, interpolation: bicubic")
    # views no other test uses (stride 3), so the session's clip cache starts empty for them
    suite = "name: c\ndefaults: {device: cpu, num_workers: 0}\nmodels:\n" + two + f"tasks:\n  - {{name: c, type: video_classification, dataset: {{format: video_list, file: {root / 'list.txt'}, classes: {root / 'classes.txt'}}}, sampling: {{num_frames: 6, stride: 3}}}}\n"
    calls = []
    real = V.load_views
    monkeypatch.setattr(V, "load_views", lambda p, v: calls.append(p) or real(p, v))
    r, rows = run(tmp_path, suite)
    assert r.exit_code == 0, r.output
    assert rows.status.eq("ok").all() and set(rows.model) == {"motion-net", "motion-net-2"}
    assert len(calls) == 8  # decoded once for the first model; the second read the cache


def test_torchvision_video_adapter_shapes_and_a_checkpoint_that_does_not_fit(tmp_path):
    from safetensors.torch import save_file

    from adapters.torchvision_video import TorchvisionVideoAdapter, TorchvisionVideoArgs

    ad = TorchvisionVideoAdapter(TorchvisionVideoArgs(name="r", arch="r3d_18", num_classes=5))
    clips = torch.randint(0, 256, (2, 3, 8, 112, 112), dtype=torch.uint8)
    assert ad.video_logits(clips).shape == (2, 5) and ad.video_features(clips).shape == (2, 512)
    assert ad.preprocess.input_size == 112 and int(ad.preprocess.input_size / ad.preprocess.crop_pct + 1e-6) == 128
    bad = tmp_path / "bad.safetensors"
    save_file({"fc.weight": torch.zeros(3, 512), "fc.bias": torch.zeros(3)}, str(bad))
    with pytest.raises(Exception) as e:
        TorchvisionVideoAdapter(TorchvisionVideoArgs(name="r", arch="r3d_18", num_classes=5, checkpoint=str(bad), strict=False))
    assert "\n" not in str(e.value) and "shape mismatches (fc.bias: checkpoint [3] vs model [5])" in str(e.value)


def test_open_clip_video_features_average_normalised_frames():
    from adapters.open_clip import OpenClipAdapter, OpenClipArgs

    ad = OpenClipAdapter(OpenClipArgs(name="c", arch="ViT-S-32", image_size=64))
    clips = torch.randint(0, 256, (2, 3, 4, 64, 64), dtype=torch.uint8)
    got = ad.video_features(clips)
    frames = torch.nn.functional.normalize(ad.image_features(clips[1].permute(1, 0, 2, 3)), dim=-1)
    torch.testing.assert_close(got[1], frames.mean(0), rtol=1e-5, atol=1e-6)


def _list(tmp_path, synth, extra=""):
    root = Path(synth.paths[0]).parent.parent
    shutil.copytree(root, tmp_path / "v")
    return tmp_path / "v"


def _run_list(tmp_path, root, extra=""):
    suite = "name: b\ndefaults: {device: cpu}\nmodels:\n" + MOTION + f"tasks:\n  - {{name: b, type: video_classification, dataset: {{format: video_list, file: {root / 'list.txt'}, classes: {root / 'classes.txt'}}}, sampling: {{num_frames: 8, stride: 2}}{extra}}}\n"
    return run(tmp_path, suite)


@pytest.mark.parametrize("how", ["empty", "truncated", "missing"])
def test_a_bad_video_fails_the_job_with_one_line(tmp_path, synth, how):
    root = _list(tmp_path, synth)
    p = root / "videos" / "clip_0002.mp4"
    if how == "empty":
        p.write_bytes(b"")
    elif how == "truncated":
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
    else:
        p.unlink()
    r, rows = _run_list(tmp_path, root)
    assert rows is not None and rows.status.eq("failed").all(), r.output
    err = rows.error.iloc[0]
    assert "\n" not in err and "clip_0002.mp4" in err, err


def test_skip_unreadable_counts_and_skips(tmp_path, synth):
    root = _list(tmp_path, synth)
    (root / "videos" / "clip_0002.mp4").write_bytes(b"")
    (root / "videos" / "clip_0005.mp4").unlink()
    r, rows = _run_list(tmp_path, root, ", skip_unreadable: true")
    assert r.exit_code == 0, r.output
    top1 = rows[rows.metric == "top1"].iloc[0]
    meta = json.loads(top1.meta)
    assert top1.n == 6 and meta["skipped"] == 2 and "2 unreadable videos skipped" in meta["warnings"][0] and "clip_0002.mp4" in meta["warnings"][0]


def test_a_video_shorter_than_one_view_is_looped_and_named(tmp_path, synth):
    root = Path(synth.paths[0]).parent.parent
    suite = "name: s\ndefaults: {device: cpu}\nmodels:\n" + MOTION + f"tasks:\n  - {{name: s, type: video_classification, dataset: {{format: video_list, file: {root / 'list.txt'}, classes: {root / 'classes.txt'}}}, sampling: {{num_frames: 16, stride: 4}}}}\n"
    r, rows = run(tmp_path, suite)
    assert r.exit_code == 0, r.output
    meta = json.loads(rows.meta.iloc[0])
    assert meta["short_videos"] == 8 and "8 videos are shorter than one view (looped, as mmaction2 does); first: " in meta["warnings"][0] and "clip_0000.mp4" in meta["warnings"][0]


def test_an_unknown_label_is_one_line(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    (tmp_path / "list.txt").write_text("x.mp4 a\ny.mp4 c\n")
    with pytest.raises(DataError, match=r"list\.txt:2: unknown label 'c'"):
        VideoListSpec(format="video_list", file=str(tmp_path / "list.txt"), classes=str(tmp_path / "classes.txt")).load()
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc,10,20,val\nnot a class,def,0,10,val\n")
    with pytest.raises(DataError, match=r"k\.csv:3: unknown label 'not a class'"):  # file line 3: the header is line 1
        KineticsSpec(format="kinetics", annotations=str(tmp_path / "k.csv"), root=str(tmp_path)).load()
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc,ten,20,val\n")
    with pytest.raises(DataError, match=r"k\.csv:2: time_start/time_end are not numbers \('ten', '20'\)"):
        KineticsSpec(format="kinetics", annotations=str(tmp_path / "k.csv"), root=str(tmp_path)).load()


def test_readers_name_files_as_the_download_scripts_do(tmp_path):
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc,10,20,val\n")
    (tmp_path / "abseiling").mkdir()
    (tmp_path / "abseiling" / "abc_000010_000020.mp4").write_bytes(b"x")
    k = KineticsSpec(format="kinetics", annotations=str(tmp_path / "k.csv"), root=str(tmp_path)).load()
    assert k.paths == [str(tmp_path / "abseiling" / "abc_000010_000020.mp4")] and k.labels.tolist() == [0] and len(k.classes) == 400
    sth = shipped_classes("sthv2")
    (tmp_path / "val.json").write_text(json.dumps([{"id": "42", "template": sth[3].replace("something", "[something]", 1), "label": "x", "placeholders": []}]))
    s = Sthv2Spec(format="sthv2", annotations=str(tmp_path / "val.json"), root=str(tmp_path)).load()
    assert s.paths == [str(tmp_path / "42.webm")] and s.labels.tolist() == [3]
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "testlist01.txt").write_text("ApplyLipstick/v_ApplyLipstick_g01_c01.avi\n")
    u = SplitFileSpec(format="ucf101", splits=str(tmp_path / "splits"), root=str(tmp_path)).load()
    assert u.labels.tolist() == [1] and u.paths[0].endswith("ApplyLipstick/v_ApplyLipstick_g01_c01.avi")


CLIP = "  - {name: clip, adapter: open_clip, arch: ViT-S-32, image_size: 64}\n"


def test_video_retrieval_runs_with_median_ranks(tmp_path):
    suite = "name: r\ndefaults: {device: cpu}\nmodels:\n" + CLIP + "tasks:\n  - {name: r, type: video_retrieval, dataset: {format: video_captions_synthetic}, sampling: {mode: uniform, num_frames: 4}, size: 64}\n"
    r, rows = run(tmp_path, suite)
    assert r.exit_code == 0, r.output
    got = rows.set_index("metric")
    assert set(got.index) == {f"{d}/R@{k}" for d in ("v2t", "t2v") for k in (1, 5, 10)} | {"rsum", "mean_recall", "v2t/MdR", "t2v/MdR"}
    assert got.n["v2t/R@1"] == 8 and got.n["t2v/R@1"] == sum(1 + i % 3 for i in range(8))
    assert got.value["t2v/R@10"] == 1.0  # 8 videos: every caption's video is in the top 10
    assert 1 <= got.value["t2v/MdR"] <= 8 and got.ci_method.str.contains("unit=video").all()
    preds = pd.concat(pd.read_parquet(p) for p in (tmp_path / "res").rglob("predictions/*.parquet"))
    assert got.value["t2v/MdR"] == float(np.median(preds["rank"] + 1))
    table = CliRunner().invoke(app, ["compare", str(tmp_path / "res" / "r")]).output
    assert f"{got.value['t2v/MdR']:.2f}" in table  # a rank, printed as it is, not as a percentage


def test_video_caption_readers(tmp_path):
    from bench.data.video import MsrvttSpec, VideoCaptionsSpec

    (tmp_path / "t.csv").write_text("key,vid_key,video_id,sentence\nret0,msr7020,video7020,a man sings\nret1,msr7021,video7021,a cat jumps\n")
    m = MsrvttSpec(format="msrvtt", file=str(tmp_path / "t.csv"), root=str(tmp_path)).load()
    assert m.videos.paths == [str(tmp_path / "video7020.mp4"), str(tmp_path / "video7021.mp4")] and m.text_video.tolist() == [0, 1]
    (tmp_path / "d.jsonl").write_text('{"video": "a.mp4", "captions": ["one", "two"]}\n{"video": "b.mp4", "captions": ["three"]}\n')
    d = VideoCaptionsSpec(format="video_captions", file=str(tmp_path / "d.jsonl")).load()
    assert d.captions == ["one", "two", "three"] and d.text_video.tolist() == [0, 0, 1]
    p = VideoCaptionsSpec(format="video_captions", file=str(tmp_path / "d.jsonl"), paragraph=True).load()
    assert p.captions == ["one two", "three"] and p.text_video.tolist() == [0, 1]
    (tmp_path / "bad.jsonl").write_text('{"video": "a.mp4", "captions": []}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1: video a\.mp4 has no captions"):
        VideoCaptionsSpec(format="video_captions", file=str(tmp_path / "bad.jsonl")).load()


def test_decord_gives_pyavs_frames(synth):  # decord is in the test extra
    v = Views(num_frames=8, stride=2, clips=2, crops=3, size=48, short_side=56)
    a, _ = load_views(synth.paths[3], v)
    b, _ = load_views(synth.paths[3], Views(**{**v.as_dict(), "decoder": "decord"}))
    np.testing.assert_array_equal(a, b)  # both are FFmpeg's h264 decoder, on the same file in this run
    assert probe(synth.paths[3], "decord") == probe(synth.paths[3]) == 24
