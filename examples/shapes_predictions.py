"""Write the smoke suite's detection results files: what an external detector's results JSON looks like.

    python examples/shapes_predictions.py   # writes suites/data/shapes_{coco,lvis}_dets.json

They stand in for an mmdetection/detectron2 `*.bbox.json`/`*.segm.json` on the generated shapes
sets (bench.data.coco.ShapesSpec, default settings): jittered true positives, a few confusions
and background false positives, each with a box and a polygon-derived RLE mask. Seeded, so the
files are reproducible; they are checked in because the smoke suite must not need this script.
"""

import json
import sys
from pathlib import Path

import numpy as np
from faster_coco_eval.core import mask as mask_util

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.data.coco import ShapesSpec  # noqa: E402


def fake_results(split, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    n_cat = len(split.categories)
    out = []
    for img_id, im in sorted(split.images.items()):
        W, H = im["width"], im["height"]
        for a in [a for a in split.gt["annotations"] if a["image_id"] == img_id]:
            if rng.random() < 0.15:  # missed
                continue
            x, y, w, h = a["bbox"]
            j = rng.normal(0, 0.08, 4) * np.array([w, h, w, h])
            box = [x + j[0], y + j[1], max(2.0, w + j[2]), max(2.0, h + j[3])]
            cat = a["category_id"] if rng.random() < 0.85 else int(rng.integers(1, n_cat + 1))
            out.append((img_id, cat, box, float(rng.uniform(0.4, 1.0))))
        for _ in range(int(rng.integers(1, 6))):  # background
            w, h = rng.uniform(8, 60, 2)
            box = [float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h)), float(w), float(h)]
            out.append((img_id, int(rng.integers(1, n_cat + 1)), box, float(rng.uniform(0.0, 0.6))))
    res = []
    for img_id, cat, box, score in out:
        im = split.images[img_id]
        x, y, w, h = box
        rle = mask_util.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], im["height"], im["width"])[0]
        counts = rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"]
        res.append(
            {
                "image_id": img_id,
                "category_id": cat,
                "bbox": [round(v, 2) for v in box],
                "score": round(score, 4),
                "segmentation": {"size": rle["size"], "counts": counts},
            }
        )
    return res


if __name__ == "__main__":
    out_dir = Path(__file__).resolve().parents[1] / "suites" / "data"
    out_dir.mkdir(parents=True, exist_ok=True)
    for style, seed in (("coco", 1), ("lvis", 2)):
        split = ShapesSpec(format="shapes", style=style).load()
        path = out_dir / f"shapes_{style}_dets.json"
        path.write_text(json.dumps(fake_results(split, seed)))
        print(f"wrote {path}")
