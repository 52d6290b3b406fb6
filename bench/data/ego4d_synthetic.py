"""Synthetic Ego4D clips in the official layouts, with generated per-clip features and frames.

Each clip is `duration` seconds; features are [duration·fps, dim] Gaussian noise with a class
direction added over each moment, and frames are small PNGs tinted during the moments. Written
once under $BENCH_CACHE, it exercises the NLQ and MQ paths offline; the numbers mean nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

ACTIONS = ["cut vegetables", "wash dishes", "open fridge", "use phone"]


def write_synthetic(root: Path, clips: int, duration: int, dim: int, fps: float, seed: int) -> None:
    import torch
    from PIL import Image

    from bench.data.images import _publish

    rng = np.random.default_rng(seed)
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    (tmp / "features").mkdir(parents=True, exist_ok=True)
    directions = rng.normal(0, 1, (len(ACTIONS), dim))
    videos, mq = [], {}
    for c in range(clips):
        uid = f"clip{c:03d}"
        T = int(duration * fps)
        feats = rng.normal(0, 1, (T, dim))
        frames = np.full((duration, 16, 16, 3), 90, np.uint8)
        moments = []
        for _ in range(int(rng.integers(2, 5))):
            a = int(rng.integers(len(ACTIONS)))
            length = float(rng.uniform(2, duration / 4))
            s = float(np.round(rng.uniform(0, duration - length), 2))
            e = float(np.round(s + length, 2))
            feats[int(s * fps) : int(np.ceil(e * fps))] += 2 * directions[a]
            frames[int(s) : int(np.ceil(e)), :, :, a % 3] = 220
            moments.append((a, s, e))
        torch.save(torch.tensor(feats, dtype=torch.float32), tmp / "features" / f"{uid}.pt")
        fdir = tmp / "frames" / uid
        fdir.mkdir(parents=True, exist_ok=True)
        for t in range(duration):
            Image.fromarray(frames[t]).save(fdir / f"{t:05d}.png")
        subset = "val" if c % 4 != 3 else "test"
        mq[uid] = {
            "subset": subset,
            "duration": float(duration),
            "annotations": [{"label": ACTIONS[a].replace(" ", "_"), "start_time": s, "end_time": e} for a, s, e in moments],
        }
        queries = [{"clip_start_sec": s, "clip_end_sec": e, "query": f"where did I {ACTIONS[a]}?", "template": "synthetic"} for a, s, e in moments]
        videos.append(
            {
                "video_uid": f"video{c:03d}",
                "split": subset,
                "clips": [
                    {
                        "clip_uid": uid,
                        "clip_start_sec": 0.0,
                        "clip_end_sec": float(duration),
                        "annotations": [{"annotation_uid": f"ann{c:03d}", "language_queries": queries}],
                    }
                ],
            }
        )
    val = [v for v in videos if v["split"] == "val"]
    test = [
        dict(
            v,
            clips=[
                dict(
                    cl,
                    annotations=[
                        {"annotation_uid": a["annotation_uid"], "language_queries": [{"query": q["query"]} for q in a["language_queries"]]}
                        for a in cl["annotations"]
                    ],
                )
                for cl in v["clips"]
            ],
        )
        for v in videos
        if v["split"] == "test"
    ]
    (tmp / "nlq_val.json").write_text(json.dumps({"version": "v1", "description": "bench synthetic", "videos": val}))
    (tmp / "nlq_test_unannotated.json").write_text(json.dumps({"version": "v1", "description": "bench synthetic", "videos": test}))
    (tmp / "moments.json").write_text(json.dumps(mq))
    (tmp / "classes.txt").write_text("".join(a.replace(" ", "_") + "\n" for a in ACTIONS))
    (tmp / ".complete").write_text(f"synthetic ego4d clips={clips} duration={duration} dim={dim} fps={fps} seed={seed}\n")
    _publish(tmp, root)
