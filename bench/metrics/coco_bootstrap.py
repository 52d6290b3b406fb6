"""A bootstrap over images for COCO, LVIS and OVD AP/AR that re-runs only the accumulate step.

faster-coco-eval's evaluate (the IoU matching) runs once. Its per-(category, area, image) matches
are read back and re-accumulated here under image draw counts, as pycocotools' accumulate would
on a dataset holding k copies of an image drawn k times. With every count 1 this reproduces the
engine's own precision and recall arrays exactly (tests/test_coco_bootstrap.py).
"""

from __future__ import annotations

from typing import Callable

import numpy as np


class ImageMatches:
    """The matches of one evaluated COCOeval_faster (run with separate_eval=True), by category and area."""

    def __init__(self, ev):
        p = ev._paramsEval
        self.params = p
        self.n_t, self.n_r = len(p.iouThrs), len(p.recThrs)
        self.n_k = len(p.catIds) if p.useCats else 1
        self.n_a, self.n_i = len(p.areaRng), len(p.imgIds)
        self.max_dets = list(p.maxDets)
        top = self.max_dets[-1]
        evals = ev._evalImgs_cpp
        self.valid_gt = np.zeros((self.n_k, self.n_a, self.n_i))
        self.cells: dict[tuple[int, int], tuple] = {}
        # only (image, category) pairs holding a box or a detection have anything to read: on LVIS that
        # is a few thousandths of the evaluations
        busy = [[] for _ in range(self.n_k)]
        if p.useCats:
            k_of = {c: k for k, c in enumerate(p.catIds)}
            i_of = {im: i for i, im in enumerate(p.imgIds)}
            pairs = {(a["image_id"], a["category_id"]) for d in (ev.cocoGt.dataset, ev.cocoDt.dataset) for a in d.get("annotations", [])}
            for im, c in sorted((im, c) for im, c in pairs if im in i_of and c in k_of):
                busy[k_of[c]].append(i_of[im])
        else:
            busy = [list(range(self.n_i))]
        for k in range(self.n_k):
            for a in range(self.n_a):
                base = (k * self.n_a + a) * self.n_i
                img, rank, score, match, ignore = [], [], [], [], []
                for i in busy[k]:
                    dm, _, ds, gi, di = evals[base + i].__getstate__()[:5]
                    self.valid_gt[k, a, i] = len(gi) - sum(gi)
                    d = min(len(ds), top)
                    if d == 0:
                        continue
                    n = len(ds)
                    img.append(np.full(d, i))
                    rank.append(np.arange(d))
                    score.append(ds[:d])
                    match.append(np.asarray(dm, np.int64).reshape(self.n_t, n)[:, :d])
                    ignore.append(np.asarray(di, bool).reshape(self.n_t, n)[:, :d])
                if not img:
                    self.cells[k, a] = None
                    continue
                score = np.concatenate(score)
                order = np.argsort(-score, kind="stable")  # the engine's stable sort by decreasing score
                m, ig = np.concatenate(match, axis=1)[:, order], np.concatenate(ignore, axis=1)[:, order]
                tp, fp = (m > 0) & ~ig, (m == 0) & ~ig
                # a detection ignored at every IoU only repeats the point before it: dropping it changes no number
                live = (tp | fp).any(axis=0)
                self.cells[k, a] = (np.concatenate(img)[order][live], np.concatenate(rank)[order][live], tp[:, live], fp[:, live])

    def accumulate(self, w: np.ndarray, r_mean: bool = False, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Precision [b,T,R,K,A] at the largest maxDets and recall [b,T,K,A,M] for each row of image counts w (b, I).

        Every AP the scorers report reads the largest maxDets, so precision is made for it alone.
        r_mean: precision [b,T,1,K,A] holds the mean over the R recall thresholds instead. A (T, K, A)
        cell has all R values or none (-1), so every mean over the values > -1 that AP takes is
        the same from it, with R times less to hold and to read.
        """
        b = w.shape[0]
        T, R, K, A, M = self.n_t, self.n_r, self.n_k, self.n_a, len(self.max_dets)
        precision = np.full((b, T, 1 if r_mean else R, K, A), -1.0)
        recall = np.full((b, T, K, A, M), -1.0)
        thr = np.asarray(self.params.recThrs, np.float64)

        def one(item) -> None:  # cells write disjoint slices, so they run in threads (numpy releases the GIL)
            (k, a), cell = item
            npig = w @ self.valid_gt[k, a]  # (b,)
            rows = np.flatnonzero(npig > 0)
            if rows.size == 0:
                return  # no ground truth in this resample: -1, as the engine leaves it
            if cell is None or cell[0].size == 0:  # ground truth but no detections: precision 0, recall 0
                precision[rows, :, :, k, a] = 0.0
                recall[rows, :, k, a, :] = 0.0
                return
            img, rank, tp, fp = cell
            wd = w[rows][:, img]  # (r, D)
            n = npig[rows][:, None]
            for mi, m in enumerate(self.max_dets):
                sel = rank < m
                recall[rows, :, k, a, mi] = (wd[:, sel] @ tp[:, sel].T.astype(np.float64)) / n
            tps = np.cumsum(wd[:, None, :] * tp[None], axis=2)  # (r, T, D)
            total = tps + np.cumsum(wd[:, None, :] * fp[None], axis=2)
            pr = np.divide(tps, total, out=np.zeros_like(tps), where=total > 0)
            env = np.maximum.accumulate(pr[..., ::-1], axis=2)[..., ::-1]  # precision made monotone from the right
            idx = lower_bound(tps / n[:, :, None], thr)  # first recall >= threshold
            d = env.shape[2]
            got = np.where(idx < d, np.take_along_axis(env, np.minimum(idx, d - 1), axis=2), 0.0)
            precision[rows, :, :, k, a] = got.mean(axis=2, keepdims=True) if r_mean else got

        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, self.cells.items()))
        else:
            for item in self.cells.items():
                one(item)
        return precision, recall


def lower_bound(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """For rows of x (..., D), each nondecreasing in [0, 1], the first index with x >= q, for each q in [0, 1].

    One searchsorted over all rows (each shifted by 2·row), then an exact per-row search redoes
    the few places where the shift rounded a near-equal pair; the result equals a per-row searchsorted.
    """
    lead, d = x.shape[:-1], x.shape[-1]
    rows = int(np.prod(lead))
    flat_x = x.reshape(rows, d)
    shift = 2.0 * np.arange(rows)[:, None]
    idx = np.searchsorted((flat_x + shift).ravel(), (q[None, :] + shift).ravel(), side="left").reshape(rows, -1)
    idx = np.clip(idx - d * np.arange(rows)[:, None], 0, d)
    qq = np.broadcast_to(q, idx.shape)
    left = np.take_along_axis(flat_x, np.maximum(idx - 1, 0), axis=1)
    right = np.take_along_axis(flat_x, np.minimum(idx, d - 1), axis=1)
    bad = ((idx > 0) & (left >= qq)) | ((idx < d) & (right < qq))
    for r, j in zip(*np.nonzero(bad)):
        idx[r, j] = np.searchsorted(flat_x[r], q[j], side="left")
    return idx.reshape(*lead, -1)


def image_bootstrap(ev, numbers: Callable[[object], dict[str, float]], spec, threads: int = 1) -> dict:
    """Intervals for every number `numbers(ev)` derives from ev.eval, over images; cells re-accumulate in `threads` threads."""
    from bench.metrics.uncertainty import bootstrap

    matches = ImageMatches(ev)
    saved = ev.eval

    M = len(matches.max_dets)

    def stat(w: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, list] = {}
        precision, recall = matches.accumulate(w, r_mean=True, threads=threads)
        full = np.full(precision.shape[1:] + (M,), np.nan)  # other maxDets slots: NaN, so nothing reads them silently
        try:
            for p, r in zip(precision, recall):
                full[..., -1] = p
                ev.eval = {**saved, "precision": full, "recall": r}
                for name, v in numbers(ev).items():
                    out.setdefault(name, []).append(v)
        finally:
            ev.eval = saved
        return {k: np.asarray(v) for k, v in out.items()}

    # a chunk holds b × T·K·A precision means and b × T × D cumulative sums per cell
    cells = matches.n_t * matches.n_k * matches.n_a
    chunk = max(1, min(25, 20_000_000 // max(cells, 1)))
    # AP is a max over interpolated precision, so resampled APs sit above the estimate: a
    # percentile interval can miss it. The normal interval (estimate ± z·se) is centred on it.
    return bootstrap(stat, matches.n_i, spec, unit="image", chunk=chunk, points=numbers(ev))
