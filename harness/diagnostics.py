"""Attention-map diagnostics: how much object signal a map carries, before and after fusion.

For any map stage ``(T, h, w)`` (see :func:`decafbench.fusion.stages`) against the key
frames' ground truth ``(T, H, W)`` bool, three numbers, all from the maps and masks given:

- ``iou``: mean over frames of the IoU between the stage's Otsu mask (:func:`coarse_masks`
  on the stage min-max normalized over the whole video, so raw rollout maps, whose values
  are tiny, get the full 0..255 range; a no-op for ``fused``) and the target. A frame where
  both are empty scores 1 (the DAVIS J convention).
- ``hit``: pointing game. The arg-max cell of each frame (first one on ties), mapped to the
  centre of that cell's pixel region in the frame, ``(floor((i + 0.5) H / h),
  floor((j + 0.5) W / w))``, hits if the target covers that pixel. Frames with an empty
  target are skipped; the rate is over the remaining frames.
- ``mass``: share of attention inside the target: the map (negative values as 0) resized
  bilinearly to the frame size, sum inside / sum everywhere, per frame (0 when the frame's
  total is 0), averaged over frames with a non-empty target. Computed exactly through the
  resize's separable weights (see :func:`target_projection`), never at frame size.

``hit`` and ``mass`` are NaN when no frame has a target (no evidence either way); record
summaries skip NaN.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .coarse import coarse_masks
from .errors import InputError

METRICS = ("iou", "hit", "mass")


def _as_map(name: str, value: Any) -> Any:
    import torch

    x = torch.as_tensor(value).detach().to(torch.float32).cpu()
    if x.ndim != 3 or min(x.shape) < 1:
        raise InputError(f"diagnostics: map {name!r} must be a non-empty (T, h, w) array, got shape {tuple(x.shape)}")
    return x.nan_to_num(0.0)


def _as_gt(gt: Any) -> np.ndarray:
    g = np.asarray(gt.detach().cpu().numpy() if hasattr(gt, "detach") else gt)
    if g.ndim != 3 or min(g.shape) < 1:
        raise InputError(f"diagnostics: ground truth must be a non-empty (T, H, W) mask array, got shape {g.shape}")
    return g.astype(bool, copy=False)


def _check(name: str, x: Any, g: np.ndarray) -> None:
    if x.shape[0] != g.shape[0]:
        raise InputError(f"diagnostics: map {name!r} has {x.shape[0]} frames, ground truth has {g.shape[0]}")


def otsu_iou(maps: Any, gt: Any, name: str = "map") -> float:
    """Mean per-frame IoU of the map's Otsu mask with the target (both empty: 1)."""
    from .fusion import minmax

    x, g = _as_map(name, maps), _as_gt(gt)
    _check(name, x, g)
    pred = coarse_masks(minmax(x, "video"), g.shape[1:])
    inter = np.logical_and(pred, g).sum(axis=(1, 2))
    union = np.logical_or(pred, g).sum(axis=(1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(iou.mean())


def pointing_hit(maps: Any, gt: Any, name: str = "map") -> float:
    """Share of frames (with a non-empty target) whose arg-max cell centre lies in the target."""
    x, g = _as_map(name, maps), _as_gt(gt)
    _check(name, x, g)
    t_, h, w = x.shape
    height, width = g.shape[1:]
    flat = x.reshape(t_, -1).argmax(dim=1).numpy()
    rows, cols = flat // w, flat % w
    ys = np.minimum(((rows + 0.5) * height / h).astype(np.int64), height - 1)
    xs = np.minimum(((cols + 0.5) * width / w).astype(np.int64), width - 1)
    valid = g.reshape(t_, -1).any(axis=1)
    if not valid.any():
        return math.nan
    hits = g[np.arange(t_), ys, xs]
    return float(hits[valid].mean())


def _resize_matrix(n_out: int, n_in: int) -> Any:
    """``(n_out, n_in)`` weights of 1-D bilinear resizing (align_corners=False), taken from
    torch's own kernel by resizing an identity, so they are exactly the weights it uses."""
    import torch
    import torch.nn.functional as F

    eye = torch.eye(n_in, dtype=torch.float64)[None, None]
    return F.interpolate(eye, size=(n_out, n_in), mode="bilinear", align_corners=False)[0, 0]


def target_projection(gt: Any, grid: tuple[int, int]) -> tuple[Any, Any]:
    """``(P, Q)`` with ``P[t] = Ry^T G_t Rx`` and ``Q = Ry^T 1 Rx`` on the ``(h, w)`` grid.

    Bilinear resizing is linear and separable (``up = Ry M Rx^T``), so the mass of the resized
    map inside the target is ``sum(M * P[t])`` and its total is ``sum(M * Q)``: the frame-size
    map is never built, and one projection serves every stage on the same grid.
    """
    import torch

    g = torch.from_numpy(_as_gt(gt)).to(torch.float64)
    ry, rx = _resize_matrix(g.shape[1], grid[0]), _resize_matrix(g.shape[2], grid[1])
    proj = ry.T @ g @ rx
    return proj, torch.outer(ry.sum(dim=0), rx.sum(dim=0))


def _mass(x: Any, g: np.ndarray, projection: tuple[Any, Any]) -> float:
    import torch

    proj, ones = projection
    m = x.clamp(min=0.0).to(torch.float64)
    valid = g.reshape(g.shape[0], -1).any(axis=1)
    if not valid.any():
        return math.nan
    inside = (m * proj).sum(dim=(1, 2)).numpy()
    total = (m * ones).sum(dim=(1, 2)).numpy()
    shares = np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)
    return float(shares[valid].mean())


def attention_mass(maps: Any, gt: Any, name: str = "map") -> float:
    """Mean (over frames with a target) share of the resized map's mass inside the target."""
    x, g = _as_map(name, maps), _as_gt(gt)
    _check(name, x, g)
    return _mass(x, g, target_projection(g, (x.shape[1], x.shape[2])))


def diagnose_map(maps: Any, gt: Any, name: str = "map",
                 projection: tuple[Any, Any] | None = None) -> dict[str, float]:
    """``{"iou": ..., "hit": ..., "mass": ...}`` for one map stage (``projection``: a cached
    :func:`target_projection` for this map's grid)."""
    x, g = _as_map(name, maps), _as_gt(gt)
    _check(name, x, g)
    if projection is None:
        projection = target_projection(g, (x.shape[1], x.shape[2]))
    return {"iou": otsu_iou(x, g, name), "hit": pointing_hit(x, g, name), "mass": _mass(x, g, projection)}


def diagnose(stages: Mapping[str, Any], gt: Any) -> dict[str, float]:
    """``diag_<stage>_<iou|hit|mass>`` for every stage given (keys in the stages' order).

    Stage maps that are ``None`` (not computed) are skipped. Goes into run records as extra
    per-expression columns.
    """
    g = _as_gt(gt)
    out: dict[str, float] = {}
    projections: dict[tuple[int, int], tuple[Any, Any]] = {}
    for stage, maps in stages.items():
        if maps is None:
            continue
        x = _as_map(stage, maps)
        _check(stage, x, g)
        grid = (x.shape[1], x.shape[2])
        if grid not in projections:
            projections[grid] = target_projection(g, grid)
        for metric, value in diagnose_map(x, g, stage, projections[grid]).items():
            out[f"diag_{stage}_{metric}"] = value
    return out
