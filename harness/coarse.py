"""Coarse masks straight from the fused attention map (method section 6).

Per key frame: bilinear-resize the fused map to the original frame size (align_corners=False),
scale to 0..255 uint8, Otsu threshold, foreground = ``value > threshold``. This follows the
DecAF reference, which calls ``cv2.threshold(map_u8, 0, 255, THRESH_BINARY + THRESH_OTSU)``
on ``(map * 255).astype(uint8)``; so the uint8 scaling truncates (it does not round) and Otsu
follows OpenCV's ``getThreshVal_Otsu_8u`` loop, tie-breaking included (the first of equal
maxima wins). Otsu is written here on the 256-bin histogram (torch, beside the resize, with
the constant-frame rule below) and the tests check it against ``cv2.threshold``.

One deliberate departure: OpenCV thresholds a constant image at 0 (so a constant non-zero
map would become a full mask); here a constant frame gives an empty mask, since it carries
no localisation at all.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from .errors import InputError

_FLT_EPSILON = float(np.finfo(np.float32).eps)


def otsu_from_histogram(hist: Sequence[int] | np.ndarray) -> int:
    """Otsu threshold of a 256-bin histogram, OpenCV's loop operation for operation.

    Doubles throughout (Python floats are IEEE doubles, as in the C code), the same
    FLT_EPSILON guards and the ``mu1 *= q1`` ordering, so thresholds match bit for bit.
    """
    h = np.asarray(hist, dtype=np.int64).ravel()
    if h.size != 256:
        raise InputError(f"Otsu histogram must have 256 bins, not {h.size}")
    total = int(h.sum())
    if total <= 0:
        return 0
    counts = h.tolist()
    scale = 1.0 / total
    mu = float(sum(i * c for i, c in enumerate(counts))) * scale
    mu1 = q1 = max_sigma = 0.0
    max_val = 0
    for i, c in enumerate(counts):
        p_i = c * scale
        mu1 *= q1
        q1 += p_i
        q2 = 1.0 - q1
        if min(q1, q2) < _FLT_EPSILON or max(q1, q2) > 1.0 - _FLT_EPSILON:
            continue
        mu1 = (mu1 + i * p_i) / q1
        mu2 = (mu - q1 * mu1) / q2
        sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2)
        if sigma > max_sigma:
            max_sigma = sigma
            max_val = i
    return max_val


def otsu_threshold(values_uint8: Any) -> int:
    """Otsu threshold of uint8 values (any shape); foreground is ``values > threshold``.

    A constant input returns 0, as OpenCV does (see :func:`coarse_masks` for the mask rule).
    """
    v = np.asarray(values_uint8)
    if v.dtype != np.uint8:
        raise InputError(f"otsu_threshold needs uint8 values, got {v.dtype}")
    if v.size == 0:
        raise InputError("otsu_threshold got no values")
    return otsu_from_histogram(np.bincount(v.ravel(), minlength=256))


def _check_size(size: Any) -> tuple[int, int]:
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"frame size must be (H, W), not {size!r}") from None
    if height < 1 or width < 1:
        raise InputError(f"frame size must be positive, not {size!r}")
    return height, width


def _as_fused(maps: Any) -> Any:
    import torch

    x = torch.as_tensor(maps).detach().to(torch.float32)
    if x.ndim != 3 or min(x.shape) < 1:
        raise InputError(f"fused map must be a non-empty (T, h, w) array, got shape {tuple(x.shape)}")
    return x


def to_uint8(maps: Any, size: Sequence[int]) -> Iterator[Any]:
    """Per-frame uint8 torch maps: clip to [0, 1], bilinear resize to ``size``, ``* 255``, truncate.

    One frame at a time, so a 16 x 1080p video never holds a float copy of every frame.
    Resize-then-scale in float32, as the DecAF reference does, so truncation matches it.
    """
    import torch
    import torch.nn.functional as F

    x = _as_fused(maps)
    height, width = _check_size(size)
    for t in range(x.shape[0]):
        frame = x[t].nan_to_num(0.0).clamp(0.0, 1.0)
        if tuple(frame.shape) != (height, width):
            frame = F.interpolate(frame[None, None], size=(height, width), mode="bilinear",
                                  align_corners=False)[0, 0]
        yield (frame * 255.0).to(torch.uint8).cpu()


def coarse_masks(fused: Any, size: Sequence[int]) -> np.ndarray:
    """Boolean ``(T, H, W)`` masks from a fused ``(T, h, w)`` map in [0, 1] (torch or numpy).

    ``size`` is the original frame size ``(H, W)``. A frame whose uint8 map is constant gets
    an empty mask. Values outside [0, 1] are clipped first (NaN counts as 0).
    """
    import torch

    x = _as_fused(fused)
    height, width = _check_size(size)
    out = np.zeros((x.shape[0], height, width), dtype=bool)
    view = torch.from_numpy(out)
    for t, u8 in enumerate(to_uint8(x, (height, width))):
        hist = torch.bincount(u8.reshape(-1), minlength=256).numpy()
        if np.count_nonzero(hist) > 1:  # a constant frame stays empty
            torch.gt(u8, otsu_from_histogram(hist), out=view[t])
    return out
