"""Exact, fast J / F (DAVIS 2017) and A / R (ReVOS) per-frame metrics.

Why: every evaluation scores thousands of frames and the DAVIS toolkit (davis2017-evaluation,
``davis2017/metrics.py``) spends ~4 ms per 480p frame on full-frame boolean algebra and two
OpenCV dilations. These numbers are *identical* to the toolkit's (tests: 1e-9 per frame,
in practice bit-equal), computed on far less data:

* J = |gt & pred| / |gt | pred|; an empty union scores 1 (``db_eval_iou``).
* F (``f_measure``): the toolkit's ``_seg2bmap`` marks pixel (i, j) when the 2x2 block
  ``seg[i:i+2, j:j+2]`` is not constant in the image extended by *replicating* its last row
  and column (exactly its last-row / last-column rules and zero bottom-right corner). So
  boundary pixels lie in the union's bounding box grown one pixel up and left, and dilation
  is only ever read at the other mask's boundary pixels: we work in that window (no
  tolerance padding needed), taking the replicated row / column from the image border only
  where the window reaches it.
* The window's rows are bit-packed into uint64 words, all frames of a batch back to back in
  one flat bit string (1-D contiguous numpy ops are several times faster than 2-D slices).
  Dilation by the disk is the union over its rows of horizontal runs (word shifts, built by
  doubling) moved vertically (word offsets); matches are popcounts.

The disk is built as ``skimage.morphology.disk(r)`` builds it (``x**2 + y**2 <= r**2`` on
``arange(-r, r + 1)``) and anchored where ``cv2.dilate`` anchors it (``ksize // 2``), so even
a non-integer pixel tolerance (``bound_th >= 1``) reproduces the toolkit.

ReVOS A / R follow VISA's official ``tools/metrics.py``: A = mean(gt == pred); R counts only
false-positive pixels, ``max(0, 1 - |pred & ~gt| / (|foreground| + 1e-6))``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from . import _bitmask as _bits
from .errors import InputError

__all__ = [
    "jaccard", "boundary_f", "jaccard_and_f", "accuracy", "robustness",
    "score_expression", "tolerance_pixels", "METRIC_NAMES",
]

#: the per-frame metrics computed here; every reported metric is in decafbench.metric_registry
METRIC_NAMES = ("J", "F", "JF", "A", "R")
_CHUNK_WORDS = 1 << 16  # uint64 words per packed (gt, pred) stack handled at once (L2-sized)


# ----------------------------------------------------------------------------- validation
def _as_mask(name: str, a: object) -> np.ndarray:
    """A boolean view/copy of ``a``; non-boolean input must hold only 0 and 1."""
    arr = np.asarray(a)
    if arr.dtype == bool:
        return arr  # layout is settled for all masks together in _masks
    if arr.dtype.kind not in "biuf":
        raise InputError(f"mask dtype {arr.dtype} is not boolean or numeric 0/1", name)
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        raise InputError(f"mask must be boolean or 0/1, found value {arr[bad].flat[0]!r}", name)
    return arr != 0


def _masks(gt: object, pred: object, *more: tuple[str, object]) -> tuple[list[np.ndarray], bool]:
    """Validate masks of equal (H, W) or (T, H, W) shape; return them as 3-D and a 2-D flag."""
    named = [("gt", gt), ("pred", pred), *more]
    arrs = [_as_mask(n, a) for n, a in named]
    ref = arrs[0].shape
    if len(ref) not in (2, 3):
        raise InputError(f"expected an (H, W) or (T, H, W) mask, got shape {ref}", "gt")
    for (n, _), a in zip(named[1:], arrs[1:]):
        if a.shape != ref:
            raise InputError(f"shape {a.shape} does not match gt shape {ref}", n)
    if ref[-1] == 0 or ref[-2] == 0:
        raise InputError(f"mask has an empty spatial size {ref}", "gt")
    is2d = len(ref) == 2
    return _row_major([a[None] if is2d else a for a in arrs]), is2d


def _row_major(arrs: list[np.ndarray]) -> list[np.ndarray]:
    """The masks with each frame in row-major (C) order, copying only when it must.

    Why: pycocotools decodes column-major (Fortran) frames, and a plain
    ``np.ascontiguousarray`` of such a batch is a byte-strided transposing copy that cost
    as much as the metrics themselves (bench/bench_decode.py: half speed or worse). J, F,
    A and R are unchanged by transposing every mask of a frame (IoU and counts trivially;
    the toolkit's ``_seg2bmap`` treats rows and columns alike, replicating the last row and
    the last column, the disk is symmetric and the tolerance uses the diagonal), so when
    every mask is column-major the frames are scored transposed, as free views. Mixed
    layouts (column-major ground truth beside row-major PNG predictions) transpose the
    column-major side once per frame (``maskio.row_major``: OpenCV's SIMD transpose when
    installed, else numpy's).
    """
    arrs = [_contiguous_frames(a) for a in arrs]
    if all(a.flags.c_contiguous for a in arrs):
        return arrs
    if all(a.swapaxes(1, 2).flags.c_contiguous for a in arrs):
        return [a.swapaxes(1, 2) for a in arrs]
    return [a if a.flags.c_contiguous else _frames_row_major(a) for a in arrs]


def _frames_row_major(a: np.ndarray) -> np.ndarray:
    from .maskio import row_major

    out = np.empty(a.shape, dtype=bool)
    for t in range(a.shape[0]):
        row_major(a[t], out=out[t])
    return out


def _contiguous_frames(a: np.ndarray) -> np.ndarray:
    """``a`` with every frame one contiguous block, row- or column-major (a view if it is)."""
    if a.flags.c_contiguous or a.swapaxes(1, 2).flags.c_contiguous:
        return a
    if not a.flags.f_contiguous or a.dtype != bool:
        return np.ascontiguousarray(a)
    # A Fortran (T, H, W) array is the transpose of a C (H*W, T) matrix: transpose that
    # matrix into column-major frames. OpenCV's SIMD transpose when installed; else numpy in
    # column blocks of about 32 kB (each block's source bytes read once, from L1): a plain C
    # copy strides by T bytes and took 15x as long.
    from .maskio import _cv2

    n = a.shape[0]
    src = a.reshape(n, -1, order="F")  # a view, strides (1, T): row t = frame t column-major
    out = np.empty((n, a.shape[2], a.shape[1]), dtype=bool)
    dst = out.reshape(n, -1)
    cv2 = _cv2()
    if cv2 is not None and src.shape[1] < 2**31:
        cv2.transpose(src.T.view(np.uint8), dst=dst.view(np.uint8))
    else:
        step = max(1, (1 << 15) // n)
        for k in range(0, src.shape[1], step):
            dst[:, k : k + step] = src[:, k : k + step]
    return out.swapaxes(1, 2)


def _out(values: np.ndarray, is2d: bool) -> float | np.ndarray:
    return float(values[0]) if is2d else values


# ----------------------------------------------------------------------------- J, A, R
def _jaccard_from_counts(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    j = np.ones(len(union), dtype=np.float64)
    nz = union != 0
    j[nz] = inter[nz] / union[nz]
    return j


def jaccard(gt: object, pred: object) -> float | np.ndarray:
    """Region similarity J (DAVIS ``db_eval_iou``): IoU, 1.0 when both masks are empty.

    Only the rows spanned by the two masks are read. Example: ``jaccard(gt, pred)`` -> float
    for (H, W), float64 array (T,) for (T, H, W).
    """
    (g, p), is2d = _masks(gt, pred)
    out = np.ones(g.shape[0], dtype=np.float64)
    u, both = np.empty(g.shape[1:], dtype=bool), np.empty(g.shape[1:], dtype=bool)
    for t in range(g.shape[0]):
        hit = _bits.union_rows(g, p, t, u)
        if hit is not None:  # |gt| + |pred| - |gt & pred| = |gt | pred|
            _, lo, hi = hit
            np.logical_and(g[t, lo : hi + 1], p[t, lo : hi + 1], out=both[lo : hi + 1])
            out[t] = np.count_nonzero(both[lo : hi + 1]) / np.count_nonzero(u[lo : hi + 1])
    return _out(out, is2d)


def accuracy(gt: object, pred: object) -> float | np.ndarray:
    """ReVOS A: share of pixels where pred equals gt (VISA ``get_r2vos_accuracy``)."""
    (g, p), is2d = _masks(gt, pred)
    n = g.shape[1] * g.shape[2]
    wrong = np.array([np.count_nonzero(gi ^ pi) for gi, pi in zip(g, p)], dtype=np.int64)
    return _out((n - wrong) / n, is2d)


def robustness(gt: object, pred: object, foreground: object) -> float | np.ndarray:
    """ReVOS R per frame: ``max(0, 1 - |pred & ~gt| / (|foreground| + 1e-6))``.

    This follows VISA's official ``get_r2vos_robustness``, which counts only false-positive
    pixels (``(1 - gt) * pred``), not the symmetric difference; ``foreground`` is the mask of
    all annotated objects in the frame.
    """
    (g, p, f), is2d = _masks(gt, pred, ("foreground", foreground))
    neg = np.array([np.count_nonzero(pi & ~gi) for gi, pi in zip(g, p)], dtype=np.float64)
    pos = np.array([np.count_nonzero(fi) for fi in f], dtype=np.float64)
    return _out(np.maximum(1.0 - neg / (pos + 1e-6), 0.0), is2d)


def tolerance_pixels(shape_hw: tuple[int, int], bound_th: float = 0.008) -> float:
    """DAVIS tolerance: ``bound_th`` pixels if >= 1, else ceil(bound_th * image diagonal)."""
    if not np.isfinite(bound_th) or bound_th < 0:
        raise InputError(f"must be a finite number >= 0, got {bound_th!r}", "bound_th")
    if bound_th >= 1:
        return float(bound_th)
    return float(np.ceil(bound_th * np.linalg.norm(shape_hw)))


def _jf(g: np.ndarray, p: np.ndarray, bound_th: float, with_j: bool = True
        ) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J (all ones unless ``with_j``) and F of validated 3-D boolean masks."""
    n_frames, big_h, big_w = g.shape
    rows = _bits.disk_rows(tolerance_pixels((big_h, big_w), bound_th))
    spare = _bits.spare_columns(rows)
    j_out = np.ones(n_frames, dtype=np.float64)  # empty union: J = 1
    f_out = np.ones(n_frames, dtype=np.float64)  # both boundaries empty: P = R = 1
    live, y_lo, y_hi, x_lo, x_hi = _bits.union_boxes(g, p)
    heights, widths = y_hi - y_lo + 1, x_hi - x_lo + 1
    order = np.argsort(-heights, kind="stable")  # tallest first: batch similar heights
    pad = max([0] + [abs(dy) - 1 for dy, _, _ in rows])
    scratch = _bits.Scratch()  # work buffers shared by the batches of this call
    i = 0
    while i < live.size:
        hc, wc, k = int(heights[order[i]]), int(widths[order[i]]), i + 1
        while k < live.size:  # grow the batch while its packed words fit the chunk
            wk = max(wc, int(widths[order[k]]))
            if 2 * (k + 1 - i) * (hc + 1 + pad) * -(-(wk + spare) // 64) > _CHUNK_WORDS:
                break
            wc, k = wk, k + 1
        pick = order[i:k]
        y0 = np.minimum(y_lo[pick], big_h - hc)
        x0 = np.minimum(x_lo[pick], big_w - wc)
        inter, union, f = _bits.chunk_jf(g, p, live[pick], y0, x0, hc, wc, rows, spare,
                                         with_j, scratch)
        if with_j:
            j_out[live[pick]] = _jaccard_from_counts(inter, union)
        f_out[live[pick]] = f
        i = k
    return j_out, f_out


def boundary_f(gt: object, pred: object, bound_th: float = 0.008) -> float | np.ndarray:
    """Boundary F-measure (DAVIS ``db_eval_boundary``), identical to the toolkit.

    Example: ``boundary_f(gt, pred)`` -> float for (H, W), float64 array (T,) for (T, H, W);
    ``bound_th`` < 1 is a fraction of the image diagonal, >= 1 a pixel radius.
    """
    (g, p), is2d = _masks(gt, pred)
    return _out(_jf(g, p, bound_th, with_j=False)[1], is2d)


def jaccard_and_f(gt: object, pred: object, bound_th: float = 0.008
                  ) -> tuple[float | np.ndarray, float | np.ndarray]:
    """(J, F) in one pass over the masks (shares the window search and bit packing).

    Example: ``j, f = jaccard_and_f(gt, pred)``; what ``score_expression`` uses.
    """
    (g, p), is2d = _masks(gt, pred)
    j, f = _jf(g, p, bound_th)
    return _out(j, is2d), _out(f, is2d)


def score_expression(gt: object, pred: object, foreground: object | None = None,
                     metrics: Iterable[str] = ("J", "F", "JF"),
                     bound_th: float = 0.008) -> dict[str, float]:
    """Per-expression values of registered metrics (:mod:`decafbench.metric_registry`):
    means over frames, JF = (mean J + mean F) / 2 as DAVIS and ReVOS do, recall and decay
    as the DAVIS toolkit's ``db_statistics`` (without its uint8 cast).

    Example: ``score_expression(gt, pred, fg, metrics=("J", "F", "JF", "A", "R", "J_decay"))``.
    """
    from . import metric_registry as registry

    names = list(metrics)
    for name in names:
        if name not in registry.names():
            raise InputError(f"unknown metric {name!r}; choose from {', '.join(registry.names())}",
                             "metrics")
    needed = {s for name in names for s in registry.get(name).series}
    extra = [] if foreground is None else [("foreground", foreground)]
    arrs, _ = _masks(gt, pred, *extra)
    g, p = arrs[0], arrs[1]
    if g.shape[0] == 0:
        raise InputError("expression has no frames", "gt")
    frames: dict[str, np.ndarray] = {}
    if needed & {"J", "F"}:
        frames["J"], frames["F"] = _jf(g, p, bound_th)
    if "A" in needed:
        frames["A"] = accuracy(g, p)
    if "R" in needed:
        if foreground is None:
            raise InputError("metric R needs the frame's foreground mask", "foreground")
        frames["R"] = robustness(g, p, arrs[2])
    return registry.score_frames(frames, names)
