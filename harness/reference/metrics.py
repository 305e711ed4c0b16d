"""Slow references for :mod:`decafbench.metrics`.

Two kinds, for two purposes:

* ``jaccard_ref`` / ``boundary_f_ref`` / ``accuracy_ref`` / ``robustness_ref``: one frame
  at a time, straight from the definitions, full frame, no cropping, no bit tricks. The
  boundary map is written rule by rule from ``_seg2bmap``'s documented behaviour and the
  dilation is literally "the union of the boundary translated by every disk offset".
* ``toolkit_jaccard`` / ``toolkit_boundary_f``: the DAVIS 2017 toolkit's algorithm
  (``db_eval_iou``; ``f_measure`` with full-frame numpy ``_seg2bmap`` and ``cv2.dilate``
  by ``skimage.morphology.disk``), the timing baseline of ``bench/bench_metrics.py`` and a
  second oracle in the tests. cv2 and skimage are dev dependencies, imported inside.
"""

from __future__ import annotations

import math

import numpy as np


def _frames(a: np.ndarray) -> tuple[np.ndarray, bool]:
    a = np.asarray(a).astype(bool)
    return (a[None], True) if a.ndim == 2 else (a, False)


def _ret(vals: list[float], is2d: bool):
    out = np.array(vals, dtype=np.float64)
    return float(out[0]) if is2d else out


# ----------------------------------------------------------------------------- definitions
def jaccard_ref(gt, pred):
    """|gt & pred| / |gt | pred| per frame; 1 when the union is empty."""
    g, is2d = _frames(gt)
    p, _ = _frames(pred)
    vals = []
    for gi, pi in zip(g, p):
        inter = int(np.logical_and(gi, pi).sum())
        union = int(np.logical_or(gi, pi).sum())
        vals.append(1.0 if union == 0 else inter / union)
    return _ret(vals, is2d)


def seg2bmap_ref(seg: np.ndarray) -> np.ndarray:
    """One-pixel boundary map with the toolkit's conventions, written rule by rule.

    Interior pixel: differs from its east, south or south-east neighbour. Last row: differs
    from its east neighbour. Last column: differs from its south neighbour. The bottom-right
    pixel is never a boundary pixel.
    """
    seg = np.asarray(seg).astype(bool)
    h, w = seg.shape
    b = np.zeros((h, w), dtype=bool)
    if h > 1 and w > 1:
        core = seg[:-1, :-1]
        b[:-1, :-1] = (core != seg[:-1, 1:]) | (core != seg[1:, :-1]) | (core != seg[1:, 1:])
    if w > 1:
        b[-1, :-1] = seg[-1, :-1] != seg[-1, 1:]
    if h > 1:
        b[:-1, -1] = seg[:-1, -1] != seg[1:, -1]
    b[-1, -1] = False
    return b


def disk_offsets_ref(radius: float) -> list[tuple[int, int]]:
    """(dy, dx) offsets of skimage's ``disk(radius)``, centred at index ``size // 2`` as
    ``cv2.dilate`` anchors a kernel; for a whole radius r: all dx**2 + dy**2 <= r**2."""
    line = [-radius + i for i in range(int(math.ceil(2 * radius + 1)))]
    c = len(line) // 2
    return [(j - c, i - c) for j, y in enumerate(line) for i, x in enumerate(line)
            if x * x + y * y <= radius * radius]


def dilate_ref(b: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
    """out[y, x] = any(b[y + dy, x + dx]) over the offsets (zero outside the image)."""
    h, w = b.shape
    out = np.zeros_like(b)
    for dy, dx in offsets:
        ys, ye = max(0, -dy), min(h, h - dy)
        xs, xe = max(0, -dx), min(w, w - dx)
        if ys < ye and xs < xe:
            out[ys:ye, xs:xe] |= b[ys + dy : ye + dy, xs + dx : xe + dx]
    return out


def tolerance_ref(h: int, w: int, bound_th: float) -> float:
    return float(bound_th) if bound_th >= 1 else float(math.ceil(bound_th * math.hypot(h, w)))


def boundary_f_ref(gt, pred, bound_th: float = 0.008):
    """Boundary precision / recall within the disk tolerance, F = 2PR / (P + R)."""
    g, is2d = _frames(gt)
    p, _ = _frames(pred)
    offsets = disk_offsets_ref(tolerance_ref(g.shape[1], g.shape[2], bound_th))
    vals = []
    for gi, pi in zip(g, p):
        gb, pb = seg2bmap_ref(gi), seg2bmap_ref(pi)
        n_gt, n_fg = int(gb.sum()), int(pb.sum())
        if n_fg == 0 and n_gt == 0:
            prec, rec = 1.0, 1.0
        elif n_fg == 0:
            prec, rec = 1.0, 0.0
        elif n_gt == 0:
            prec, rec = 0.0, 1.0
        else:
            prec = int((pb & dilate_ref(gb, offsets)).sum()) / n_fg
            rec = int((gb & dilate_ref(pb, offsets)).sum()) / n_gt
        vals.append(0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec))
    return _ret(vals, is2d)


def accuracy_ref(gt, pred):
    """Share of pixels where pred equals gt, per frame."""
    g, is2d = _frames(gt)
    p, _ = _frames(pred)
    return _ret([float(np.mean(gi == pi)) for gi, pi in zip(g, p)], is2d)


def robustness_ref(gt, pred, foreground):
    """VISA: max(0, 1 - |pred & ~gt| / (|foreground| + 1e-6)), per frame."""
    g, is2d = _frames(gt)
    p, _ = _frames(pred)
    f, _ = _frames(foreground)
    vals = []
    for gi, pi, fi in zip(g, p, f):
        neg = int(np.logical_and(pi, np.logical_not(gi)).sum())
        vals.append(max(1.0 - neg / (int(fi.sum()) + 1e-6), 0.0))
    return _ret(vals, is2d)


# ----------------------------------------------------------------------------- toolkit
def toolkit_seg2bmap(seg: np.ndarray) -> np.ndarray:
    """The toolkit's full-frame ``_seg2bmap`` (same-size output branch)."""
    seg = np.asarray(seg).astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def toolkit_f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """The toolkit's ``f_measure`` for one frame (no void pixels)."""
    import cv2
    from skimage.morphology import disk

    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(pred.shape))
    fg_boundary = toolkit_seg2bmap(pred)
    gt_boundary = toolkit_seg2bmap(gt)
    kernel = disk(bound_pix).astype(np.uint8)
    fg_dil = cv2.dilate(fg_boundary.astype(np.uint8), kernel)
    gt_dil = cv2.dilate(gt_boundary.astype(np.uint8), kernel)
    gt_match = gt_boundary * fg_dil
    fg_match = fg_boundary * gt_dil
    n_fg, n_gt = np.sum(fg_boundary), np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(fg_match) / float(n_fg)
        recall = np.sum(gt_match) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def toolkit_boundary_f(gt, pred, bound_th: float = 0.008):
    """``db_eval_boundary``: per-frame loop over ``toolkit_f_measure``."""
    g, is2d = _frames(gt)
    p, _ = _frames(pred)
    return _ret([toolkit_f_measure(pi, gi, bound_th) for gi, pi in zip(g, p)], is2d)


def toolkit_jaccard(gt, pred):
    """``db_eval_iou`` without void pixels (vectorized over frames, as the toolkit is)."""
    g = np.asarray(gt).astype(bool)
    p = np.asarray(pred).astype(bool)
    inters = np.sum(g & p, axis=(-2, -1))
    union = np.sum(g | p, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inters / union
    if j.ndim == 0:
        return 1.0 if np.isclose(union, 0) else float(j)
    j[np.isclose(union, 0)] = 1
    return j
