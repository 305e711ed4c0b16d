"""Shared by the golden-input scripts and the project's tests: the synthetic frames and the
fixture encodings. Plain numpy/PIL/hashlib only, so it runs in the official stack's venv too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

#: how the synthetic frames are made (recorded in every fixture; tests rebuild them from it)
FRAME_RECIPE = "rgb[y, x, c] = (3*x + 5*y + 17*t + 50*c + (x*y) % 7) % 256, uint8"


def synthetic_frame(t: int, height: int, width: int) -> np.ndarray:
    """Frame ``t`` of a deterministic synthetic video (:data:`FRAME_RECIPE`), ``(H, W, 3)`` uint8."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    chans = [(3 * x + 5 * y + 17 * t + 50 * c + (x * y) % 7) % 256 for c in range(3)]
    return np.stack(chans, axis=-1).astype(np.uint8)


def write_frames(folder: Path, count: int, height: int, width: int) -> list[str]:
    """Write ``count`` synthetic frames as lossless PNGs (the official code reads file paths)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in range(count):
        p = folder / f"{t:05d}.png"
        Image.fromarray(synthetic_frame(t, height, width)).save(p)
        paths.append(str(p))
    return paths


def run_length(ids) -> list[list[int]]:
    """``[[token, count], ...]`` of a 1-D id sequence (the input_ids layout, compactly)."""
    out: list[list[int]] = []
    for v in (int(i) for i in ids):
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return out


def int_digest(values) -> str:
    """sha256 of an integer array as little-endian int64 (exact comparison of large arrays)."""
    arr = np.ascontiguousarray(np.asarray(values, dtype="<i8"))
    return hashlib.sha256(arr.tobytes()).hexdigest()


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
