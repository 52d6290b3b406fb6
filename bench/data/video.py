"""Video classification datasets, clip sampling and decoding (PyAV).

A reader yields a ``VideoSplit`` (paths, integer labels, class names). A ``Views`` protocol says
which frames and crops a model sees: `clips` temporal views × `crops` spatial views, frames
sampled `dense` (`num_frames` every `stride`, mmaction2's SampleFrames in test mode) or `uniform`
(one frame per segment, TSN-style; mmaction2's UniformSample); a dense view longer than its video
wraps around (mmaction2's default out_of_bound_opt='loop'), a uniform one repeats frames.
Only the frames the views need are converted to RGB; decoding stops at the last one needed.
PyAV decodes by default; `decoder: decord` uses decord's exact-frame get_batch where it is installed.
The short side is resized to `short_side`, then `crops` squares of `size` are cut (1: centre;
3: both ends and centre of the long side, mmaction2's ThreeCrop).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.cache import touch
from bench.data.images import _publish, read_lines
from bench.errors import DataError
from bench.paths import ExistingDir, ExistingFile, SuitePath, cache_dir

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov")


def shipped_classes(name: str) -> list[str]:
    text = resources.files("bench.catalogue").joinpath("video", f"{name}.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class VideoSplit:
    name: str
    dataset: str
    paths: list[str]
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, limit: Optional[int], seed: int) -> "VideoSplit":
        if not limit or limit >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:limit])
        return VideoSplit(self.name, self.dataset, [self.paths[i] for i in idx], self.labels[idx], self.classes)

    def keep(self, idx) -> "VideoSplit":
        idx = np.asarray(idx, np.int64)
        return VideoSplit(self.name, self.dataset, [self.paths[i] for i in idx], self.labels[idx], self.classes)


@dataclass(frozen=True)
class Views:
    mode: str = "dense"  # dense | uniform
    num_frames: int = 16
    stride: int = 4  # dense: frames between sampled frames
    clips: int = 1
    crops: int = 1
    size: int = 224
    short_side: int = 256
    decoder: str = "pyav"  # pyav | decord

    @property
    def count(self) -> int:
        return self.clips * self.crops

    def as_dict(self) -> dict:
        return asdict(self)


def frame_indices(total: int, v: Views) -> np.ndarray:
    """[clips, num_frames] frame indices of a video of `total` frames, mmaction2's test mode (its
    mmaction/datasets/transforms/loading.py at 4d6c934):
    - dense (SampleFrames): a view spans L = (num_frames − 1)·stride + 1 frames; with M = max(total − L, 0)
      clip k starts at round(k·M / (clips − 1)) (one clip: M // 2; num_frames 1: the middle of k-th of
      `clips` equal parts); indices past the end wrap around (out_of_bound_opt='loop');
    - uniform (UniformSample): seg = (total − 1) / num_frames, frame i of clip k is
      round(seg·i) + int(seg / (clips + 1) · (k + 1)); short videos repeat frames."""
    t, n, s = v.num_frames, v.clips, v.stride
    if v.mode == "uniform":
        seg = (total - 1) / t
        dur = seg / (n + 1)
        inds = np.round(seg * np.arange(t))[None, :].astype(np.int64) + (dur * (np.arange(n) + 1)).astype(np.int64)[:, None]
        return np.minimum(inds, total - 1)
    if t == 1:
        part = total / n
        starts = (np.arange(n) * part + part / 2.0).astype(np.int64)
    else:
        span = (t - 1) * s + 1
        m = max(total - span, 0)
        starts = np.round(np.arange(n) * m / (n - 1)).astype(np.int64) if n > 1 else np.asarray([m // 2], np.int64)
    return np.mod(starts[:, None] + np.arange(t)[None, :] * s, total)


def short_of_view(total: int, v: Views) -> bool:
    """Whether a video has fewer frames than one view spans (its indices wrap or repeat)."""
    return total < ((v.num_frames - 1) * v.stride + 1 if v.mode == "dense" else v.num_frames)


def probe(path: str, decoder: str = "pyav") -> int:
    """Frame count of a video's first stream, decoding nothing; a missing, empty or unreadable file is one DataError."""
    import av

    if not os.path.exists(path):
        raise DataError(f"{path}: video not found")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: video file is empty (0 bytes)")
    if decoder == "decord":
        return len(_decord_reader(path))
    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise DataError(f"{path}: no video stream")
            n = c.streams.video[0].frames
            if n <= 0:  # containers without a frame count: count packets
                n = sum(1 for p in c.demux(video=0) if p.size)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: unreadable video: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if n <= 0:
        raise DataError(f"{path}: video has no frames")
    return int(n)


def _decord_reader(path: str):
    import decord

    try:
        return decord.VideoReader(path, num_threads=1)
    except Exception as e:
        raise DataError(f"{path}: unreadable video (decord): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def decode_frames(path: str, wanted: np.ndarray, decoder: str = "pyav") -> dict[int, np.ndarray]:
    """RGB uint8 [H, W, 3] of the wanted frame indices, converting only those and stopping after the last
    (decord: its get_batch of exactly those frames)."""
    import av

    if decoder == "decord":
        idx = [int(i) for i in np.unique(wanted)]
        try:
            batch = _decord_reader(path).get_batch(idx).asnumpy()
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{path}: corrupt video (decord): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        return dict(zip(idx, batch))
    need = set(int(i) for i in np.unique(wanted))
    last = max(need)
    out: dict[int, np.ndarray] = {}
    try:
        with av.open(path) as c:
            stream = c.streams.video[0]
            for i, frame in enumerate(c.decode(stream)):
                if i in need:
                    out[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
    except Exception as e:
        raise DataError(f"{path}: corrupt video: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if len(out) < len(need):
        got = max(out) + 1 if out else 0
        raise DataError(f"{path}: truncated video: decoded {got} frames, the container says more (needed frame {last})")
    return out


def _resize_short(frames: np.ndarray, short: int) -> np.ndarray:
    """[T, H, W, 3] uint8 → the short side at `short` (bilinear, as mmaction2's Resize(-1, short))."""
    import torch
    import torch.nn.functional as F

    t, h, w, _ = frames.shape
    if min(h, w) == short:
        return frames
    nh, nw = (short, int(w * short / h + 0.5)) if h <= w else (int(h * short / w + 0.5), short)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def crop_offsets(h: int, w: int, size: int, crops: int) -> list[tuple[int, int]]:
    """(y, x) of the crops: centre ((dim − size) // 2), or mmaction2's ThreeCrop along the long side
    (offsets 0, step, 2·step with step = (long − size) // 2)."""
    cy, cx = (h - size) // 2, (w - size) // 2
    if crops == 1:
        return [(cy, cx)]
    if w >= h:
        return [(cy, 0), (cy, cx), (cy, 2 * cx)]
    return [(0, cx), (cy, cx), (2 * cy, cx)]


def load_views(path: str, v: Views) -> tuple[np.ndarray, bool]:
    """uint8 [clips × crops, 3, T, size, size] of one video, and whether it was shorter than a view."""
    total = probe(path, v.decoder)
    inds = frame_indices(total, v)
    frames = decode_frames(path, inds, v.decoder)
    views = []
    for clip in inds:
        stack = _resize_short(np.stack([frames[int(i)] for i in clip]), v.short_side)
        h, w = stack.shape[1:3]
        if min(h, w) < v.size:
            raise DataError(f"{path}: frames are {w}x{h} after resizing the short side to {v.short_side}, smaller than the crop {v.size}")
        for y, x in crop_offsets(h, w, v.size, v.crops):
            views.append(stack[:, y : y + v.size, x : x + v.size].transpose(3, 0, 1, 2))
    return np.ascontiguousarray(np.stack(views)), short_of_view(total, v)


# ---------------------------------------------------------------- readers


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    split: str = "val"


def _index_labels(file: str, labels: list[str], classes: list[str], first_line: int = 1) -> np.ndarray:
    """Class indices of label names; an unknown one is one line naming its file line (CSV: first_line 2, after the header)."""
    pos = {c: k for k, c in enumerate(classes)}
    out = []
    for lineno, lab in enumerate(labels, first_line):
        if lab not in pos:
            raise DataError(f"{file}:{lineno}: unknown label '{lab}' (not one of the {len(classes)} classes)")
        out.append(pos[lab])
    return np.asarray(out, np.int64)


def _read_csv(path: str, need: set, layout: str) -> list[dict]:
    """A CSV's rows as dicts; unreadable, or without the columns of its `layout`, is one DataError."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read CSV: {e}") from None
    if rows and not need <= set(rows[0]):
        raise DataError(f"{path}: expected columns {layout}; got {','.join(rows[0])}")
    return rows


SHIPPED = Literal["kinetics400", "kinetics600", "kinetics700", "sthv2", "ucf101", "hmdb51"]


class VideoListSpec(_Spec):
    """Lines `relative/path.mp4 label`: the label an index, or a class name when `classes` is given."""

    format: Literal["video_list"]
    file: ExistingFile
    root: Optional[ExistingDir] = None  # videos relative to it (default: the list's folder)
    classes: Optional[ExistingFile] = None  # one class name per line; labels are names then
    shipped: Optional[SHIPPED] = None  # or a shipped class list

    def load(self) -> VideoSplit:
        root = Path(self.root or Path(self.file).parent)
        paths, labels = [], []
        for lineno, line in enumerate(read_lines(self.file), 1):
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise DataError(f"{self.file}:{lineno}: expected 'relative/path label', got '{line[:60]}'")
            paths.append(str(root / parts[0]))
            labels.append(parts[1])
        classes = read_lines(self.classes) if self.classes else shipped_classes(self.shipped) if self.shipped else None
        if classes is None:
            if not all(x.isdigit() for x in labels):
                raise DataError(f"{self.file}: labels are not all indices; give classes: FILE (or shipped: NAME)")
            idx = np.asarray([int(x) for x in labels], np.int64)
            classes = [str(k) for k in range(int(idx.max()) + 1)] if len(idx) else []
        elif all(x.isdigit() for x in labels):
            idx = np.asarray([int(x) for x in labels], np.int64)
            if len(idx) and idx.max() >= len(classes):
                bad = int(np.flatnonzero(idx >= len(classes))[0]) + 1
                raise DataError(f"{self.file}:{bad}: unknown label {labels[bad - 1]} (the classes have {len(classes)})")
        else:
            idx = _index_labels(self.file, labels, classes)
        return VideoSplit(self.split, Path(self.file).stem, paths, idx, classes)


class KineticsSpec(_Spec):
    """The Kinetics CSV (`label,youtube_id,time_start,time_end,split`); files named as the common
    download scripts write them: `<root>/<youtube_id>_<start:06d>_<end:06d>.mp4`, or under a label folder."""

    format: Literal["kinetics"]
    annotations: ExistingFile
    root: ExistingDir
    classes: Literal["kinetics400", "kinetics600", "kinetics700"] = "kinetics400"

    def load(self) -> VideoSplit:
        classes = shipped_classes(self.classes)
        root = Path(self.root)
        paths, labels = [], []
        rows = _read_csv(self.annotations, {"label", "youtube_id", "time_start", "time_end"}, "label,youtube_id,time_start,time_end,split")
        for lineno, r in enumerate(rows, 2):
            try:
                start, end = int(float(r["time_start"])), int(float(r["time_end"]))
            except (TypeError, ValueError):
                raise DataError(f"{self.annotations}:{lineno}: time_start/time_end are not numbers ({r['time_start']!r}, {r['time_end']!r})") from None
            name = f"{r['youtube_id']}_{start:06d}_{end:06d}.mp4"
            flat, nested = root / name, root / r["label"] / name
            paths.append(str(nested if nested.exists() and not flat.exists() else flat))
            labels.append(r["label"])
        return VideoSplit(self.split, self.classes, paths, _index_labels(self.annotations, labels, classes, first_line=2), classes)


class Sthv2Spec(_Spec):
    """Something-Something v2: its validation JSON ([{id, template, label, placeholders}]) and `<id>.webm` files."""

    format: Literal["sthv2"]
    annotations: ExistingFile  # something-something-v2-validation.json
    root: ExistingDir

    def load(self) -> VideoSplit:
        from bench.data.coco import read_json

        classes = shipped_classes("sthv2")
        items = read_json(self.annotations, "Something-Something v2 JSON")
        if not isinstance(items, list) or any(not isinstance(x, dict) or "id" not in x or "template" not in x for x in items):
            raise DataError(f"{self.annotations}: expected a list of {{id, template, label}} entries")
        templates = [x["template"].replace("[", "").replace("]", "") for x in items]
        paths = [str(Path(self.root) / f"{x['id']}.webm") for x in items]
        return VideoSplit(self.split, "sthv2", paths, _index_labels(self.annotations, templates, classes), classes)


class SplitFileSpec(_Spec):
    """UCF-101 (`testlist0N.txt`: `Class/v_Class_g01_c01.avi`) or HMDB-51 (`<class>_test_split<N>.txt`: `name.avi 0|1|2`, 2 = test)."""

    format: Literal["ucf101", "hmdb51"]
    splits: ExistingDir  # ucfTrainTestlist/ or testTrainMulti_7030_splits/
    root: ExistingDir
    fold: int = Field(1, ge=1, le=3)

    def load(self) -> VideoSplit:
        classes = shipped_classes(self.format)
        root, folder = Path(self.root), Path(self.splits)
        paths, labels = [], []
        if self.format == "ucf101":
            f = folder / f"testlist0{self.fold}.txt"
            for line in read_lines(str(f)):
                rel = line.split()[0]
                paths.append(str(root / rel))
                labels.append(rel.split("/")[0])
            return VideoSplit(self.split, "ucf101", paths, _index_labels(str(f), labels, classes), classes)
        for c in classes:
            f = folder / f"{c}_test_split{self.fold}.txt"
            if not f.is_file():
                raise DataError(f"{f}: split file not found")
            for line in read_lines(str(f)):
                name, flag = line.split()[:2]
                if flag == "2":
                    paths.append(str(root / c / name))
                    labels.append(c)
        return VideoSplit(self.split, "hmdb51", paths, _index_labels(str(folder), labels, classes), classes)


SYNTH_CLASSES = ["moving_right", "moving_left", "moving_down", "moving_up"]


class VideoSyntheticSpec(_Spec):
    """Generated mp4s (PyAV, h264): a coloured square moving in one of four directions on noise."""

    format: Literal["video_synthetic"]
    n: int = Field(8, gt=0)
    frames: int = Field(24, gt=0)
    size: int = Field(64, ge=32)
    seed: int = 0
    root: Optional[SuitePath] = None  # default: $BENCH_CACHE/datasets/video-synthetic-<n>-<frames>-<size>-<seed>

    def load(self) -> VideoSplit:
        root = Path(self.root) if self.root else cache_dir() / "datasets" / f"video-synthetic-{self.n}-{self.frames}-{self.size}-{self.seed}"
        if not (root / ".complete").exists():
            write_synthetic_videos(root, self.n, self.frames, self.size, self.seed)
        split = VideoListSpec(format="video_list", file=str(root / "list.txt"), classes=str(root / "classes.txt"), split=self.split).load()
        split.dataset = "video_synthetic"
        return split


def write_video(path: Path, frames: np.ndarray, fps: int = 12) -> None:
    """uint8 [T, H, W, 3] as an h264 mp4 (yuv420p)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "18", "preset": "veryfast"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def write_synthetic_videos(root: Path, n: int, frames: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    (tmp / "videos").mkdir(parents=True, exist_ok=True)
    lines = []
    moves = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    for i in range(n):
        label = i % len(SYNTH_CLASSES)
        dx, dy = moves[label]
        side = size // 4
        x, y = (size - side) // 2, (size - side) // 2
        colour = rng.integers(120, 255, 3)
        clip = np.empty((frames, size, size, 3), np.uint8)
        step = (size - side) / max(frames - 1, 1) / 2
        for t in range(frames):
            clip[t] = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            cx = int(round(x + dx * (t - frames / 2) * step))
            cy = int(round(y + dy * (t - frames / 2) * step))
            clip[t, max(cy, 0) : cy + side, max(cx, 0) : cx + side] = colour
        name = f"videos/clip_{i:04d}.mp4"
        write_video(tmp / name, clip)
        lines.append(f"{name} {label}")
    (tmp / "list.txt").write_text("\n".join(lines) + "\n")
    (tmp / "classes.txt").write_text("\n".join(SYNTH_CLASSES) + "\n")
    (tmp / ".complete").write_text(f"video_synthetic n={n} frames={frames} size={size} seed={seed}\n")
    _publish(tmp, root)


def clips_key(path: str, v: Views) -> str:
    """The decoded-clip cache key: the file's content, the sampling and the size."""
    from bench.filehash import sha256_of
    from bench.hashing import short_hash

    return short_hash({"sha256": sha256_of(path), "views": v.as_dict(), "v": 1})


def cached_views(path: str, v: Views, enabled: bool = True) -> tuple[np.ndarray, bool]:
    """load_views through $BENCH_CACHE/clips (written once per content × sampling × size)."""
    if not enabled:
        return load_views(path, v)
    if not os.path.exists(path):
        raise DataError(f"{path}: video not found")
    key = clips_key(path, v)
    p = cache_dir() / "clips" / key[:2] / f"{key}.npz"
    try:
        with np.load(p, allow_pickle=False) as z:
            views, short = z["views"], bool(z["short"])
        touch(p)  # used: pruning by age keeps it
        return views, short
    except (OSError, ValueError, KeyError):
        pass
    views, short = load_views(path, v)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, views=views, short=np.asarray(short))
    os.replace(tmp, p)
    return views, short



# ---------------------------------------------------------------- video-text retrieval


@dataclass
class VideoCaptionSet:
    videos: VideoSplit
    captions: list[str]
    text_video: np.ndarray  # the video each caption describes

    def subset(self, limit: Optional[int], seed: int) -> "VideoCaptionSet":
        if not limit or limit >= len(self.videos):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self.videos))[:limit])
        new = {int(v): k for k, v in enumerate(idx)}
        keep = [t for t, v in enumerate(self.text_video) if int(v) in new]
        return VideoCaptionSet(self.videos.keep(idx), [self.captions[t] for t in keep], np.asarray([new[int(self.text_video[t])] for t in keep], np.int64))


def _caption_set(name: str, split: str, pairs: list[tuple[str, str]], paragraph: bool) -> VideoCaptionSet:
    """(video path, caption) pairs → one entry per video in first-seen order; `paragraph` joins a video's captions."""
    order: dict[str, int] = {}
    caps: list[list[str]] = []
    for path, cap in pairs:
        if path not in order:
            order[path] = len(order)
            caps.append([])
        caps[order[path]].append(cap)
    if paragraph:
        caps = [[" ".join(c)] for c in caps]
    paths = list(order)
    videos = VideoSplit(split, name, paths, np.zeros(len(paths), np.int64), [])
    text_video = np.asarray([i for i, c in enumerate(caps) for _ in c], np.int64)
    return VideoCaptionSet(videos, [x for c in caps for x in c], text_video)


class MsrvttSpec(_Spec):
    """MSR-VTT's 1k-A test split (JSFusion's MSRVTT_JSFUSION_test.csv: key,vid_key,video_id,sentence) and `<video_id>.mp4`."""

    format: Literal["msrvtt"]
    file: ExistingFile
    root: ExistingDir
    split: str = "test"

    def load(self) -> VideoCaptionSet:
        rows = _read_csv(self.file, {"video_id", "sentence"}, "key,vid_key,video_id,sentence")
        return _caption_set("msrvtt_1k", self.split, [(str(Path(self.root) / f"{r['video_id']}.mp4"), r["sentence"]) for r in rows], False)


class VideoCaptionsSpec(_Spec):
    """JSONL lines {"video": relative path, "captions": [...]}; `paragraph: true` joins each video's captions
    into one, the paragraph-to-video protocol of DiDeMo and ActivityNet Captions."""

    format: Literal["video_captions"]
    file: ExistingFile
    root: Optional[ExistingDir] = None
    paragraph: bool = False
    split: str = "test"

    def load(self) -> VideoCaptionSet:
        root = Path(self.root or Path(self.file).parent)
        pairs = []
        for lineno, line in enumerate(read_lines(self.file), 1):
            try:
                item = json.loads(line)
                caps = item["captions"]
                video = item["video"]
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{self.file}:{lineno}: expected {{\"video\": path, \"captions\": [...]}}") from None
            if not isinstance(caps, list) or not caps:
                raise DataError(f"{self.file}:{lineno}: video {video} has no captions")
            pairs += [(str(root / video), str(c)) for c in caps]
        return _caption_set(Path(self.file).stem, self.split, pairs, self.paragraph)


class VideoCaptionsSyntheticSpec(_Spec):
    """The generated video set with one to three captions per video (its motion, said differently)."""

    format: Literal["video_captions_synthetic"]
    n: int = Field(8, gt=0)
    seed: int = 0
    split: str = "test"

    def load(self) -> VideoCaptionSet:
        vids = VideoSyntheticSpec(format="video_synthetic", n=self.n, seed=self.seed).load()
        say = {"moving_right": "goes right", "moving_left": "goes left", "moving_down": "falls down", "moving_up": "rises up"}
        pairs = []
        for i, (p, lab) in enumerate(zip(vids.paths, vids.labels)):
            what = vids.classes[int(lab)]
            texts = [f"a square {say[what]}, clip {i}", f"clip {i}: a block that is {what.replace('_', ' ')}", f"video number {i}"][: 1 + i % 3]
            pairs += [(p, t) for t in texts]
        return _caption_set("video_captions_synthetic", self.split, pairs, False)
