"""Time bench's clip loading against a plain PyAV decode of the same frames, and the decoded-clip cache, in one run.

    python benchmarks/video_decode.py            # 24 generated mp4s of 96 frames at 320x240
    python benchmarks/video_decode.py --n 8      # a quicker look

bench: `load_views` (frame count from the container, decode in order, convert to RGB only the
frames the views need, stop after the last; resize the short side, crop). Plain PyAV: decode and
convert every frame (mmaction2's PyAVDecode in its default 'accurate' mode keeps all of them), then
the same indices, resize and crop. Both give the same uint8 views (checked). Target: bench's
clips/s ≥ 0.9× the plain decode's. Then a second model on the same views: the decoded-clip cache
($BENCH_CACHE/clips, keyed by file content, sampling and size) against decoding again.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def plain_views(path: str, v) -> np.ndarray:
    import av

    from bench.data.video import _resize_short, crop_offsets, frame_indices

    with av.open(path) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    out = []
    for clip in frame_indices(len(frames), v):
        stack = _resize_short(np.stack([frames[i] for i in clip]), v.short_side)
        for y, x in crop_offsets(stack.shape[1], stack.shape[2], v.size, v.crops):
            out.append(stack[:, y : y + v.size, x : x + v.size].transpose(3, 0, 1, 2))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--frames", type=int, default=96)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCH_CACHE"] = tmp
        from bench.data.video import Views, cached_views, load_views, write_video

        rng = np.random.default_rng(0)
        paths = []
        for i in range(a.n):
            base = rng.integers(0, 255, (1, 240, 320, 3), dtype=np.uint8)
            clip = np.repeat(base, a.frames, 0)
            for t in range(a.frames):  # a moving block, so frames differ and the codec has work
                clip[t, 60:180, (t * 3) % 200 : (t * 3) % 200 + 120] = 255 - clip[t, 60:180, (t * 3) % 200 : (t * 3) % 200 + 120]
            p = Path(tmp) / f"v{i}.mp4"
            write_video(p, clip, fps=30)
            paths.append(str(p))
        ratios = []
        for v in (Views(num_frames=16, stride=4, size=224, short_side=256), Views(num_frames=8, stride=2, clips=1, size=224, short_side=256)):
            load_views(paths[0], v), plain_views(paths[0], v)  # warm both: torch's kernels, the page cache
            t = time.perf_counter()
            mine = [load_views(p, v)[0] for p in paths]
            t_bench = time.perf_counter() - t
            t = time.perf_counter()
            ref = [plain_views(p, v) for p in paths]
            t_plain = time.perf_counter() - t
            assert all(np.array_equal(x, y) for x, y in zip(mine, ref)), "views differ"
            span = (v.num_frames - 1) * v.stride + 1
            ratios.append(t_plain / t_bench)
            print(f"{v.num_frames}x{v.stride} view ({span} of {a.frames} frames): bench {a.n / t_bench:6.1f} clips/s   plain PyAV {a.n / t_plain:6.1f} clips/s   ratio {t_plain / t_bench:.2f}")
        v = Views(num_frames=16, stride=4, size=224, short_side=256)
        t = time.perf_counter()
        for p in paths:
            cached_views(p, v)  # first model: decodes and writes the cache
        t_first = time.perf_counter() - t
        t = time.perf_counter()
        for p in paths:
            cached_views(p, v)  # second model: reads it
        t_second = time.perf_counter() - t
        print(f"decoded-clip cache: first model {t_first:.2f} s, second model {t_second:.2f} s")
        print(f"second model with the decoded-clip cache: {t_first / t_second:.2f}x faster")
        print(f"bench clip loading vs plain PyAV decode (16x4 view): {ratios[0]:.2f}")


if __name__ == "__main__":
    main()
