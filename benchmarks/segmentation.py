"""Time bench's segmentation metric pass against cityscapesscripts and a plain numpy loop, in one run.

    python benchmarks/segmentation.py            # 500 label maps of 512x512
    python benchmarks/segmentation.py --n 100    # a quicker look

Files are written once to a temp folder: predicted and ground-truth label maps (blocky regions,
about 20% of them predicted wrong), in two encodings of the same maps:
- 150 classes (ADE20K-like, a `seg_folder`, 255 ignored): bench vs a plain numpy loop (PIL decode,
  np.bincount confusion per image, mIoU from the sum);
- Cityscapes labelIds (the same regions mapped onto the 34 ids; a `cityscapes` tree): bench vs
  cityscapesscripts 2.3.0's `evaluateImgLists`, which is what the issue names as the anchor.
  As pip installs it (the wheel, or the sdist, which does not ship addToConfusionMatrix.pyx), its
  Cython counter is absent and it counts with np.unique; the script prints which path ran, and
  the CPU, since the anchor's sort and both sides' PNG decoders differ in speed between CPUs.
bench's pass is the task's whole evaluate (read both PNGs, decode, validate, confusion, rows)
with `uncertainty: off`, in this process like the other two. mIoU is checked equal (1e-9).
Target (the issue's): >= 5x faster than cityscapesscripts. bench reads and counts images in the
job's threads (torch's count), which scale when OpenCV is installed (its PNG decoder and calcHist
release the GIL; PIL's decoder gains about 1.2x from a second thread). It also prints bench on
one thread, so the per-core gain and the scaling are both visible. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZE = 512


def blocky(rng, n_values: int, size: int = SIZE) -> np.ndarray:
    lab = np.zeros((size, size), np.int64)
    for _ in range(40):
        y, x = rng.integers(0, size, 2)
        h, w = rng.integers(16, 160, 2)
        lab[y : y + h, x : x + w] = rng.integers(0, n_values)
    return lab


def write(root: Path, n: int, seed: int = 0):
    from cityscapesscripts.helpers.labels import labels

    rng = np.random.default_rng(seed)
    ids = np.array([lab.id for lab in labels if lab.id >= 0])
    for sub in ("ade/img", "ade/lab", "ade/pred", "cs/leftImg8bit/val/city", "cs/gtFine/val/city", "cs/pred"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(root / "ade" / "tiny.jpg")
    (root / "ade" / "classes.txt").write_text("".join(f"c{k}\n" for k in range(150)))
    cs_gt, cs_pred = [], []
    for i in range(n):
        gt = blocky(rng, 150)
        gt[rng.random(gt.shape) < 0.01] = 255
        pred = gt.copy()
        wrong = blocky(rng, 150)
        swap = blocky(rng, 5) == 0
        pred[swap] = wrong[swap]
        pred[pred == 255] = 0
        stem = f"city_{i:06d}_000019"
        # the image itself is never decoded for a results folder; one tiny file stands in for all
        (root / "ade/img" / f"{stem}.jpg").symlink_to(root / "ade" / "tiny.jpg")
        Image.fromarray(gt.astype(np.uint8)).save(root / "ade/lab" / f"{stem}.png")
        Image.fromarray(pred.astype(np.uint8)).save(root / "ade/pred" / f"{stem}.png")
        to_id = lambda m: ids[np.where(m == 255, 0, m) % len(ids)].astype(np.uint8)  # noqa: E731
        (root / "cs/leftImg8bit/val/city" / f"{stem}_leftImg8bit.png").symlink_to(root / "ade" / "tiny.jpg")
        Image.fromarray(to_id(gt)).save(root / "cs/gtFine/val/city" / f"{stem}_gtFine_labelIds.png")
        Image.fromarray(to_id(pred)).save(root / "cs/pred" / f"{stem}_leftImg8bit.png")
        cs_gt.append(str(root / "cs/gtFine/val/city" / f"{stem}_gtFine_labelIds.png"))
        cs_pred.append(str(root / "cs/pred" / f"{stem}_leftImg8bit.png"))
    return cs_gt, cs_pred


def bench_pass(dataset, folder: str):
    from bench.tasks.base import TaskContext
    from bench.tasks.segmentation import SegmentationConfig, SegmentationTask

    cfg = SegmentationConfig(name="seg", type="segmentation", dataset=dataset)
    ctx = TaskContext(outputs=lambda cap, *a, **k: folder, uncertainty=None)
    adapter = SimpleNamespace(capabilities=frozenset({"predictions"}), args=SimpleNamespace(name="results"))
    t = time.perf_counter()
    rows = SegmentationTask(cfg, ctx).evaluate(adapter).rows
    return time.perf_counter() - t, next(r["value"] for r in rows if r["metric"] == "seg/mIoU")


def numpy_loop(root: Path, n_classes: int = 150):
    t = time.perf_counter()
    conf = np.zeros((n_classes, n_classes), np.int64)
    for lab_path in sorted((root / "ade/lab").glob("*.png")):
        gt = np.asarray(Image.open(lab_path)).astype(np.int64).ravel()
        pred = np.asarray(Image.open(root / "ade/pred" / lab_path.name)).astype(np.int64).ravel()
        keep = gt != 255
        conf += np.bincount(gt[keep] * n_classes + pred[keep], minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    inter = np.diag(conf)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (conf.sum(0) + conf.sum(1) - inter)
    return time.perf_counter() - t, float(np.nanmean(iou))


def cityscapesscripts_path() -> str:
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as E

    return "its Cython counter (CSUPPORT)" if E.CSUPPORT else "np.unique (no compiled counter, as pip installs it)"


def cityscapesscripts(gts, preds):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as E

    E.args.evalInstLevelScore, E.args.quiet, E.args.JSONOutput = False, True, False
    t = time.perf_counter()
    ref = E.evaluateImgLists(preds, gts, E.args)
    return time.perf_counter() - t, float(ref["averageScoreClasses"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args()
    from threadpoolctl import threadpool_limits

    from bench.data.segmentation import CityscapesSpec, SegFolderSpec
    from bench.dist import thread_budget
    from bench.results import cpu_model

    # torch is imported above and cv2 here, so neither side's timing pays for imports
    from bench.optional import opencv

    opencv()

    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1, user_api="blas"):
        root = Path(tmp)
        t = time.perf_counter()
        gts, preds = write(root, a.n)
        print(f"wrote {a.n} x 2 label maps of {SIZE}x{SIZE} in two encodings ({time.perf_counter() - t:.1f} s)")
        ade = SegFolderSpec(format="seg_folder", images=str(root / "ade/img"), labels=str(root / "ade/lab"), classes=str(root / "ade/classes.txt"))
        cs = CityscapesSpec(format="cityscapes", root=str(root / "cs"))
        threads = thread_budget()
        b150, m150 = bench_pass(ade, str(root / "ade/pred"))
        n150, r150 = numpy_loop(root)
        bcs, mcs = bench_pass(cs, str(root / "cs/pred"))
        ccs, rcs = cityscapesscripts(gts, preds)
        torch.set_num_threads(1)
        one, m1 = bench_pass(cs, str(root / "cs/pred"))
        torch.set_num_threads(threads)
        for got, ref in ((m150, r150), (mcs, rcs), (m1, rcs)):
            assert abs(got - ref) <= 1e-9, (got, ref)
        print(f"CPU {cpu_model()}, numpy {np.__version__}; bench on {threads} threads, OpenCV {'installed' if opencv() else 'not installed (PIL decoder, np.bincount)'}")
        print(f"cityscapesscripts counts with {cityscapesscripts_path()}")
        print(f"150 classes:         bench {b150:6.2f} s   numpy loop        {n150:6.2f} s   mIoU {m150:.6f} (equal)")
        print(f"Cityscapes labelIds: bench {bcs:6.2f} s   cityscapesscripts {ccs:6.2f} s   mIoU {mcs:.6f} (equal)")
        print(f"Cityscapes labelIds, bench on 1 thread: {one:6.2f} s ({ccs / one:.2f}x cityscapesscripts)")
        print(f"bench vs numpy loop (150 classes): {n150 / b150:.2f}x")
        print(f"bench speed-up vs cityscapesscripts: {ccs / bcs:.2f}")


if __name__ == "__main__":
    main()
