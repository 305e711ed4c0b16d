"""The official keypoint mode: the fused map's top cells as points, scored by point precision.

The official pipeline (``evaluation/inference_keypoints.py``) takes the fused attention map
``F`` of the key frames, picks its ``K = 100`` highest cells over all key frames at once and
saves each as ``(frame, y, x, score)``: ``frame`` the key frame's index in the video, ``y`` and
``x`` the cell centre relative to the map (``(i + 0.5) / h``, ``(j + 0.5) / w``, in float32
as the official tensors, so ``int(y * H)`` truncates the same products), ``score``
the cell's value. ``evaluation/eval_rvos_keypoints.py`` then scores each expression by point
precision ``PP@k`` for ``k`` in 1, 5, 10, 50, 100: the points sorted by score, the first ``k``
each count as a hit when the ground truth (all of the expression's objects, one mask per
video frame) has a foreground pixel in the window around the point, and ``PP@k = hits / k``.
The point lands on pixel ``py = min(int(y * H), H - 1)`` (likewise ``px``) of the ``H x W``
mask and the window is rows ``max(py - offset, 0)`` up to but excluding
``min(py + offset, H - 1)`` (columns likewise): the official slice bounds, kept exactly (so
``offset = 0`` never hits). The released scripts run it with ``offset = 14``.

Ties between equal cells: the first in row-major ``(t, i, j)`` order wins (``torch.topk``
leaves tie order unspecified). The slow definitions these are tested against live in the
tests (loops over cells and points).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import InputError

#: official defaults: top-100 cells, PP at 1/5/10/50/100, window offset of the released scripts
TOP_K = 100
PP_KS: tuple[int, ...] = (1, 5, 10, 50, 100)
OFFSET = 14


@dataclass(frozen=True)
class Keypoints:
    """Points of one expression, best first: ``frames`` (video frame index), ``y``/``x``
    (relative cell centres in [0, 1]) and ``scores`` (fused-map values), all length K."""

    frames: np.ndarray
    y: np.ndarray
    x: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_rows(self) -> list[dict]:
        """One dict per point (``rank``, ``frame``, ``y``, ``x``, ``score``), for a CSV."""
        return [{"rank": r, "frame": int(f), "y": float(y), "x": float(x), "score": float(s)}
                for r, (f, y, x, s) in enumerate(zip(self.frames, self.y, self.x, self.scores))]


def top_points(fused: object, frame_indices: Sequence[int], k: int = TOP_K) -> Keypoints:
    """The ``k`` highest cells of the fused map ``(T, h, w)`` as points (see module doc).

    ``frame_indices[t]`` is key frame ``t``'s index in the video. Fewer than ``k`` cells:
    every cell.
    """
    f = np.asarray(fused.detach().cpu().numpy() if hasattr(fused, "detach") else fused, dtype=np.float64)
    if f.ndim != 3 or f.size == 0:
        raise InputError(f"fused map must be a non-empty (t, h, w) array, got shape {f.shape}")
    t, h, w = f.shape
    if len(frame_indices) != t:
        raise InputError(f"fused map has {t} key frames but {len(frame_indices)} frame indices were given")
    if not np.isfinite(f).all():
        raise InputError("fused map contains NaN or inf")
    if int(k) < 1:
        raise InputError(f"keypoints: k must be >= 1, got {k}")
    flat = f.reshape(-1)
    k = min(int(k), flat.size)
    # highest first; among equal values the lower flat index first (stable sort of -value)
    order = np.argsort(-flat, kind="stable")[:k]
    ti, rest = np.divmod(order, h * w)
    yi, xi = np.divmod(rest, w)
    frames = np.asarray(frame_indices, dtype=np.int64)[ti]
    # float32 as the official tensors: (index + 0.5) / size in single precision
    y = (yi + 0.5).astype(np.float32) / np.float32(h)
    x = (xi + 0.5).astype(np.float32) / np.float32(w)
    return Keypoints(frames=frames, y=y, x=x, scores=flat[order])


def point_hits(points: Keypoints, gt_masks: np.ndarray, offset: int = OFFSET) -> np.ndarray:
    """Per point (in score order), whether its window holds ground-truth foreground.

    ``gt_masks``: ``(N, H, W)`` of the whole video (any dtype; nonzero = foreground), indexed
    by the points' video frame. One summed-area table per frame answers every window in O(1).
    """
    gt = np.asarray(gt_masks)
    if gt.ndim != 3:
        raise InputError(f"ground-truth masks must be (frames, H, W), got shape {gt.shape}")
    n, height, width = gt.shape
    if int(offset) < 0:
        raise InputError(f"keypoints: offset must be >= 0, got {offset}")
    order = np.argsort(-points.scores, kind="stable")
    t = points.frames[order].astype(np.int64)
    if len(t) and (t.min() < 0 or t.max() >= n):
        raise InputError(f"keypoint frame index out of range for a {n}-frame ground truth")
    # official: int(y * H) on float32 tensors (the product rounded to single precision, truncated)
    py = np.minimum((points.y[order].astype(np.float32) * np.float32(height)).astype(np.int64), height - 1)
    px = np.minimum((points.x[order].astype(np.float32) * np.float32(width)).astype(np.int64), width - 1)
    y0, y1 = np.maximum(py - offset, 0), np.minimum(py + offset, height - 1)
    x0, x1 = np.maximum(px - offset, 0), np.minimum(px + offset, width - 1)
    # sat[f, i, j] = foreground pixels in rows < i, cols < j of frame f
    sat = np.zeros((n, height + 1, width + 1), dtype=np.int64)
    sat[:, 1:, 1:] = (gt != 0).astype(np.int64).cumsum(axis=1).cumsum(axis=2)
    count = sat[t, y1, x1] - sat[t, y0, x1] - sat[t, y1, x0] + sat[t, y0, x0]
    return (y1 > y0) & (x1 > x0) & (count > 0)


def point_precision(points: Keypoints, gt_masks: np.ndarray, ks: Sequence[int] = PP_KS,
                    offset: int = OFFSET) -> dict[str, float]:
    """``{"PP@k": hits among the best k points / k}`` for each ``k`` (fractions in [0, 1])."""
    hits = point_hits(points, gt_masks, offset)
    return {f"PP@{k}": float(hits[:k].sum()) / k for k in ks}


__all__ = ["Keypoints", "OFFSET", "PP_KS", "TOP_K", "point_hits", "point_precision", "top_points"]
