"""Slow, obvious reference of the fusion steps (method section 5) and Otsu (section 6).

Plain numpy float64 loops written straight from the definitions: an explicit convolution
loop for smoothing, per-frame min-max, repeat-and-drop temporal alignment, bilinear
resize from the align_corners=False sampling formula, and Otsu by trying every threshold.
The fast code in :mod:`decafbench.fusion` / :mod:`decafbench.coarse` must agree with these.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    k = np.zeros((size, size))
    c = size // 2
    for i in range(size):
        for j in range(size):
            k[i, j] = math.exp(-((i - c) ** 2 + (j - c) ** 2) / (2 * sigma * sigma))
    return k / k.sum()


def smooth(maps: np.ndarray, kernel: int, sigma: float) -> np.ndarray:
    """Correlate every frame with the Gaussian; out-of-range taps read 0 (zero padding)."""
    maps = np.asarray(maps, dtype=np.float64)
    k = gaussian_kernel(kernel, sigma)
    c = kernel // 2
    t_, h, w = maps.shape
    out = np.zeros_like(maps)
    for t in range(t_):
        for y in range(h):
            for x in range(w):
                acc = 0.0
                for dy in range(kernel):
                    for dx in range(kernel):
                        yy, xx = y + dy - c, x + dx - c
                        if 0 <= yy < h and 0 <= xx < w:
                            acc += k[dy, dx] * maps[t, yy, xx]
                out[t, y, x] = acc
    return out


def _minmax_block(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return np.zeros_like(a) if hi == lo else (a - lo) / (hi - lo)


def minmax(maps: np.ndarray, mode: str) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float64)
    if mode == "none":
        return maps.copy()
    if mode == "video":
        return _minmax_block(maps)
    return np.stack([_minmax_block(frame) for frame in maps])


def resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of one 2-D map, align_corners=False (half-pixel centres, edge clamp)."""
    in_h, in_w = img.shape
    out = np.zeros((out_h, out_w))
    for y in range(out_h):
        sy = max((y + 0.5) * in_h / out_h - 0.5, 0.0)
        y0 = min(int(math.floor(sy)), in_h - 1)
        y1 = min(y0 + 1, in_h - 1)
        fy = sy - y0
        for x in range(out_w):
            sx = max((x + 0.5) * in_w / out_w - 0.5, 0.0)
            x0 = min(int(math.floor(sx)), in_w - 1)
            x1 = min(x0 + 1, in_w - 1)
            fx = sx - x0
            out[y, x] = ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
                         + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))
    return out


def align_video(maps: np.ndarray, num_frames: int, size: tuple[int, int], stride: int) -> np.ndarray:
    """Frame ``t`` takes video step ``t // stride``, resized to the frame grid."""
    maps = np.asarray(maps, dtype=np.float64)
    assert maps.shape[0] == math.ceil(num_frames / stride), "video steps do not cover the frames"
    return np.stack([resize_bilinear(maps[t // stride], *size) for t in range(num_frames)])


def fuse(obj_video: Any, bg_video: Any, obj_frame: Any, bg_frame: Any, temporal_stride: int = 2, *,
         use_video: bool = True, use_frame: bool = True, background: bool = True,
         kernel_video: int = 3, kernel_frame: int = 7, sigma: float = 1.0, clamp: bool = True,
         norm_video: str = "video", norm_frame: str = "frame", norm_final: str = "video",
         weight_video: float = 0.5) -> np.ndarray:
    """The full method (defaults) and every structural ablation, one step at a time."""
    obj_frame = np.asarray(obj_frame, dtype=np.float64)
    t_, h, w = obj_frame.shape

    def contrast(obj: Any, bg: Any, kernel: int, norm: str) -> np.ndarray:
        c = smooth(obj, kernel, sigma)
        if background:
            c = c - smooth(bg, kernel, sigma)
        if clamp:
            c = np.minimum(np.maximum(c, 0.0), 1.0)
        return minmax(c, norm)

    if use_video:
        cv = align_video(contrast(obj_video, bg_video, kernel_video, norm_video), t_, (h, w), temporal_stride)
    if use_frame:
        cf = contrast(obj_frame, bg_frame, kernel_frame, norm_frame)
    if use_video and use_frame:
        fused = weight_video * cv + (1 - weight_video) * cf
    else:
        fused = cv if use_video else cf
    return np.clip(minmax(fused, norm_final), 0.0, 1.0)


def otsu_threshold(values: Any) -> int:
    """Brute-force Otsu on uint8 values: the smallest t maximizing the between-class variance
    of {v <= t} vs {v > t}, from the class counts and means of the pixels themselves.
    Returns 0 when every split leaves a class empty (a constant image)."""
    v = np.asarray(values).ravel().astype(np.float64)
    best, best_t = 0.0, 0
    n = v.size
    for t in range(256):
        low, high = v[v <= t], v[v > t]
        if low.size == 0 or high.size == 0:
            continue
        w0, w1 = low.size / n, high.size / n
        var = w0 * w1 * (low.mean() - high.mean()) ** 2
        if var > best * (1 + 1e-12):
            best, best_t = var, t
    return best_t
