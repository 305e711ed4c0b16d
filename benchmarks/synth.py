"""Synthetic moving-shape videos with exact masks and referring expressions (MeViS layout).

Why: a benchmark with known answers that needs no download lets every command (run,
evaluate, stats, report) be exercised end to end, and lets tests check the readers and
metrics against masks that are right by construction.

Each video shows 2-4 shapes (circles, squares, triangles), each in a distinct named colour,
moving with constant velocity over a textured, noisy background; later shapes are drawn on
top of earlier ones, so some occlude others. A shape's mask is its *visible* part (what a
video-segmentation annotator would draw), and a frame where it is fully hidden gets a
``null`` RLE, as in MeViS. Expressions name one shape ("the red circle", "the blue square
moving left") or occasionally two ("the two squares", target = their union).

Everything is a function of :class:`SynthConfig`; video ``i`` draws from
``numpy.random.default_rng([seed, i])``, so a video does not change when more are asked for.
Pixel membership is tested at pixel centres, so masks are exact, not anti-aliased.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from decafbench.errors import InputError

if TYPE_CHECKING:
    import numpy as np

GENERATOR_VERSION = 1
SPLIT = "valid_u"
#: Named colours, far apart from each other and from the muted background.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 70, 225), "yellow": (240, 215, 30),
    "purple": (140, 40, 190), "orange": (250, 135, 20), "cyan": (30, 205, 215), "white": (250, 250, 250),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthetic benchmark (recorded in its ``synth.json``)."""

    videos: int = 4
    frames: int = 20
    height: int = 120
    width: int = 160
    seed: int = 0
    expressions_per_video: int = 2
    jpeg_quality: int = 85

    def __post_init__(self) -> None:
        if self.videos < 1 or self.frames < 1 or self.expressions_per_video < 1:
            raise InputError("--videos, --frames and --expressions-per-video must be >= 1")
        if self.height < 32 or self.width < 32:
            raise InputError(f"--size {self.height}x{self.width} is too small (at least 32x32)")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError("jpeg_quality must be in 1..100")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class ShapeTrack:
    """One object: a shape of ``size`` (radius / half side / circumradius) at
    ``(x0 + vx t, y0 + vy t)`` in pixel coordinates (x right, y down)."""

    obj_id: int
    shape: str
    colour: str
    size: float
    x0: float
    y0: float
    vx: float
    vy: float
    direction: str

    def centre(self, t: int) -> tuple[float, float]:
        return self.x0 + self.vx * t, self.y0 + self.vy * t


@dataclass
class SynthVideo:
    name: str
    frames: "np.ndarray"  # (T, H, W, 3) uint8, before JPEG
    objects: list[ShapeTrack]  # in drawing order (last on top)
    masks: "np.ndarray"  # (N, T, H, W) bool, visible part of each object
    expressions: list[tuple[str, list[int]]] = field(default_factory=list)  # (text, object indices)


def shape_mask(shape: str, cx: float, cy: float, size: float, height: int, width: int) -> "np.ndarray":
    """Pixels whose centre lies inside the shape (boolean ``(H, W)``)."""
    import numpy as np

    y = np.arange(height, dtype=np.float64)[:, None] + 0.5
    x = np.arange(width, dtype=np.float64)[None, :] + 0.5
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= size * size
    if shape == "square":
        return (np.abs(x - cx) <= size) & (np.abs(y - cy) <= size)
    if shape == "triangle":  # equilateral, apex up, circumradius = size
        return (y >= cy - size) & (y <= cy + size / 2) & (np.abs(x - cx) * math.sqrt(3) <= y - cy + size)
    raise ValueError(f"unknown shape {shape!r}")


def _make_tracks(rng: "np.random.Generator", cfg: SynthConfig) -> list[ShapeTrack]:
    h, w, t_last = cfg.height, cfg.width, max(cfg.frames - 1, 1)
    n = int(rng.integers(2, 5))
    colours = [str(c) for c in rng.choice(list(COLOURS), size=n, replace=False)]
    shapes = [str(s) for s in rng.choice(SHAPES, size=n)]
    tracks = []
    for i in range(n):
        size = float(rng.uniform(0.08, 0.14) * min(h, w))
        direction = str(rng.choice(DIRECTIONS))
        along = w if direction in ("left", "right") else h
        speed = float(rng.uniform(0.25, 0.5) * (along - 2 * size) / t_last)
        drift = float(rng.uniform(-0.25, 0.25) * speed)
        sign = -1.0 if direction in ("left", "up") else 1.0
        vx, vy = (sign * speed, drift) if direction in ("left", "right") else (drift, sign * speed)

        def start(v: float, extent: int) -> float:
            travel = v * t_last
            lo, hi = size - min(0.0, travel), extent - size - max(0.0, travel)
            return float(rng.uniform(lo, hi)) if hi > lo else extent / 2 - travel / 2

        x0, y0 = start(vx, w), start(vy, h)
        tracks.append(ShapeTrack(i, shapes[i], colours[i], size, x0, y0, vx, vy, direction))
    return tracks


def _background(rng: "np.random.Generator", cfg: SynthConfig) -> "np.ndarray":
    """Muted base colour + gradient + low-frequency texture + static noise, float (H, W, 3)."""
    import numpy as np

    h, w = cfg.height, cfg.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = rng.uniform(95, 145) + rng.uniform(-12, 12, size=3)
    gx, gy = rng.uniform(-25, 25, size=2)
    bg = base[None, None, :] + (gx * xx / w + gy * yy / h)[..., None]
    for _ in range(3):
        fx, fy = rng.uniform(1, 6, size=2)
        phase = rng.uniform(0, 2 * math.pi)
        amp = rng.uniform(4, 10)
        bg += (amp * np.sin(2 * math.pi * (fx * xx / w + fy * yy / h) + phase))[..., None]
    bg += rng.normal(0, 5, size=(h, w, 1))
    return bg


def _expressions(rng: "np.random.Generator", tracks: list[ShapeTrack], k: int) -> list[tuple[str, list[int]]]:
    singles: list[tuple[str, list[int]]] = []
    for i, tr in enumerate(tracks):
        singles.append((f"the {tr.colour} {tr.shape}", [i]))
        singles.append((f"the {tr.colour} {tr.shape} moving {tr.direction}", [i]))
        if sum(o.shape == tr.shape for o in tracks) == 1:
            singles.append((f"the {tr.shape} moving {tr.direction}", [i]))
    multis = []
    for shape in SHAPES:
        idx = [i for i, tr in enumerate(tracks) if tr.shape == shape]
        if len(idx) == 2:
            multis.append((f"the two {shape}s", idx))
    order = [singles[j] for j in rng.permutation(len(singles))]
    if multis and rng.random() < 0.5:  # occasionally a multi-object expression
        order.insert(0, multis[int(rng.integers(len(multis)))])
    chosen, seen = [], set()
    for text, idx in order:
        if text not in seen:
            seen.add(text)
            chosen.append((text, idx))
        if len(chosen) == k:
            break
    return chosen


def generate_video(cfg: SynthConfig, index: int) -> SynthVideo:
    """Video ``index`` of the benchmark described by ``cfg`` (independent of ``cfg.videos``)."""
    import numpy as np

    rng = np.random.default_rng([cfg.seed, index])
    tracks = _make_tracks(rng, cfg)
    bg = _background(rng, cfg)
    T, H, W, N = cfg.frames, cfg.height, cfg.width, len(tracks)
    frames = np.empty((T, H, W, 3), dtype=np.uint8)
    masks = np.zeros((N, T, H, W), dtype=bool)
    for t in range(T):
        img = bg.copy()
        full = [shape_mask(tr.shape, *tr.centre(t), tr.size, H, W) for tr in tracks]
        for tr, m in zip(tracks, full):  # draw bottom to top
            img[m] = COLOURS[tr.colour]
        covered = np.zeros((H, W), dtype=bool)
        for i in range(N - 1, -1, -1):  # visible part: not covered by anything drawn later
            masks[i, t] = full[i] & ~covered
            covered |= full[i]
        img += rng.normal(0, 3, size=(H, W, 1))
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    exps = _expressions(rng, tracks, cfg.expressions_per_video)
    return SynthVideo(name=f"synth{index:03d}", frames=frames, objects=tracks, masks=masks, expressions=exps)


def video_records(cfg: SynthConfig, video: SynthVideo, first_anno_id: int) -> tuple[dict, dict[str, list]]:
    """The video's ``meta_expressions.json`` entry and its ``mask_dict.json`` entries."""
    from decafbench.maskio import encode_rle

    anno = {i: str(first_anno_id + i) for i in range(len(video.objects))}
    mask_dict = {anno[i]: [encode_rle(m) if m.any() else None for m in video.masks[i]]
                 for i in range(len(video.objects))}
    expressions = {str(e): {"exp": text, "obj_id": [video.objects[i].obj_id for i in idx],
                            "anno_id": [int(anno[i]) for i in idx]}
                   for e, (text, idx) in enumerate(video.expressions)}
    entry = {"expressions": expressions, "frames": [f"{t:05d}" for t in range(cfg.frames)]}
    return entry, mask_dict


def write_synth(cfg: SynthConfig, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the benchmark under ``out`` (``valid_u/`` in the MeViS layout + ``synth.json``)."""
    from PIL import Image

    from decafbench.atomicio import atomic_write_text

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("output exists and is not a folder", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError("output folder is not empty (pass --overwrite to replace its benchmark)", out)
    split = out / SPLIT
    meta: dict[str, Any] = {"videos": {}}
    mask_dict: dict[str, list] = {}
    objects: dict[str, list] = {}
    for i in range(cfg.videos):
        video = generate_video(cfg, i)
        entry, md = video_records(cfg, video, len(mask_dict))
        meta["videos"][video.name] = entry
        mask_dict.update(md)
        objects[video.name] = [asdict(o) for o in video.objects]
        frame_dir = split / "JPEGImages" / video.name
        frame_dir.mkdir(parents=True, exist_ok=True)
        for t, name in enumerate(entry["frames"]):
            Image.fromarray(video.frames[t]).save(frame_dir / f"{name}.jpg", format="JPEG", quality=cfg.jpeg_quality)
    atomic_write_text(split / "meta_expressions.json", json.dumps(meta, separators=(",", ":")) + "\n")
    atomic_write_text(split / "mask_dict.json", json.dumps(mask_dict, separators=(",", ":")) + "\n")
    record = {"generator": "decafbench.benchmarks.synth", "version": GENERATOR_VERSION, "split": SPLIT,
              "params": cfg.to_dict(), "objects": objects,
              "note": "synthetic moving shapes; regenerate with `decaf benchmarks synth` and these params"}
    atomic_write_text(out / "synth.json", json.dumps(record, indent=1) + "\n")
    return out


def read_synth_params(root: str | Path) -> SynthConfig:
    """The :class:`SynthConfig` recorded in ``root/synth.json``."""
    from decafbench.maskio import read_json, require

    path = Path(root) / "synth.json"
    params = require(read_json(path, "synth record"), "params", path, "", dict)
    try:
        return SynthConfig(**params)
    except TypeError as exc:
        raise InputError(f"field params does not describe a SynthConfig ({exc})", path) from None
