"""Attention overlays: one figure per expression, every fusion stage on its key frames.

Why: a J&F number says that an expression failed, not why. The figure puts the raw rollout
maps (object / background x video / frame view), the contrastive maps and the fused map next
to the coarse mask, the SAM2 mask and the ground truth, on the same frames, so a reader sees
at which stage the object signal appears or is lost.

Two layers: :func:`show_maps` (here) draws frames + stage maps + masks given directly (works
on any frames, e.g. the bedroom photos, with synthetic maps);
:func:`decafbench.show_record.load_expression_view` gathers those inputs for one expression of
a run record (frames from the benchmark, maps from the attention cache through
:func:`decafbench.fusion.stages`, masks from the record's and its sibling records'
``predictions/``). Drawing uses matplotlib's object API on an Agg canvas: no pyplot state,
no display.

Colour scale: every heat map shares one scale and one colour bar. With ``normalize="video"``
(default) each stage is min-max normalized over all its frames first (raw rollout values
are tiny and would otherwise be invisible next to the fused map, which is already in
[0, 1]); with ``"none"`` the raw values are drawn on the global min..max of all stages.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import InputError

#: stage maps in drawing order (the keys of :func:`decafbench.fusion.stages`)
STAGE_ORDER = ("object_video", "background_video", "object_frame", "background_frame",
               "contrastive_video", "contrastive_frame", "fused")
STAGE_TITLES = {"object_video": "object\nvideo view", "background_video": "background\nvideo view",
                "object_frame": "object\nframe view", "background_frame": "background\nframe view",
                "contrastive_video": "contrastive\nvideo view", "contrastive_frame": "contrastive\nframe view",
                "fused": "fused\n(DecAF)"}
MASK_ORDER = ("coarse", "sam2", "prediction", "ground truth")
MASK_COLOURS = {"coarse": (1.0, 0.55, 0.0), "sam2": (0.0, 0.8, 1.0), "prediction": (1.0, 0.2, 0.8),
                "ground truth": (0.2, 1.0, 0.2)}
NORMALIZE = ("video", "none")


# -- pure helpers (tested against slow references) ----------------------------------------------
def to_numpy_maps(name: str, value: Any) -> np.ndarray:
    """A ``(T, h, w)`` float32 array from a torch tensor or array-like (NaN drawn as 0)."""
    x = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if x.ndim != 3 or min(x.shape) < 1:
        raise InputError(f"stage map {name!r} must be a non-empty (T, h, w) array, got shape {x.shape}")
    return np.nan_to_num(x.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def display_maps(stages: Mapping[str, Any], normalize: str = "video") -> tuple[dict[str, np.ndarray], float, float]:
    """Stage maps as drawn and the shared colour limits ``(vmin, vmax)``.

    ``video``: each stage min-max over all its frames to [0, 1] (a constant stage becomes 0),
    limits (0, 1). ``none``: values unchanged, limits the global min and max.
    """
    if normalize not in NORMALIZE:
        raise InputError(f"normalize must be one of {', '.join(NORMALIZE)}, not {normalize!r}")
    maps = {k: to_numpy_maps(k, v) for k, v in stages.items() if v is not None}
    if normalize == "video":
        out = {}
        for k, x in maps.items():
            lo, hi = float(x.min()), float(x.max())
            out[k] = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
        return out, 0.0, 1.0
    if not maps:
        return maps, 0.0, 1.0
    lo = min(float(x.min()) for x in maps.values())
    hi = max(float(x.max()) for x in maps.values())
    return maps, lo, (hi if hi > lo else lo + 1.0)


def nearest_resize(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D mask: output pixel ``i`` takes source ``floor((i + 0.5) H / h)``."""
    h, w = size
    big_h, big_w = mask.shape
    rows = np.minimum(((np.arange(h) + 0.5) * big_h / h).astype(np.int64), big_h - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * big_w / w).astype(np.int64), big_w - 1)
    return mask[rows[:, None], cols[None, :]]


def resize_weights(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` 1-D bilinear weights, ``align_corners=False`` (as torch and the
    coarse masks resize): source coordinate ``(i + 0.5) n_in / n_out - 0.5``, clamped."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(out, (np.arange(n_out), hi), frac)
    return out


def bilinear_resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``size`` (separable: ``Ry @ x @ Rx^T``)."""
    return resize_weights(size[0], x.shape[0]) @ np.asarray(x, dtype=np.float64) @ resize_weights(size[1], x.shape[1]).T


def overlay_heat(frame: np.ndarray, heat: np.ndarray, *, vmin: float = 0.0, vmax: float = 1.0,
                 cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """``(1 - alpha) frame + alpha cmap((heat - vmin) / (vmax - vmin))`` after resizing the
    map bilinearly to the frame; uint8 ``(H, W, 3)``."""
    from matplotlib import colormaps

    up = bilinear_resize(heat, frame.shape[:2])
    scaled = np.clip((up - vmin) / (vmax - vmin), 0.0, 1.0)
    colour = colormaps[cmap](scaled)[..., :3] * 255.0
    return np.round((1.0 - alpha) * frame + alpha * colour).astype(np.uint8)


def overlay_mask(frame: np.ndarray, mask: np.ndarray | None, colour: tuple[float, float, float],
                 alpha: float = 0.55) -> np.ndarray:
    """The mask (nearest-resized to the frame) tinted in ``colour``; ``None``: frame darkened."""
    if mask is None:
        return np.round(frame * 0.35).astype(np.uint8)
    small = nearest_resize(np.asarray(mask, dtype=bool), frame.shape[:2])[..., None]
    tinted = (1.0 - alpha) * frame + alpha * 255.0 * np.asarray(colour)
    return np.where(small, np.round(tinted), frame).astype(np.uint8)


def default_rows(num_key_frames: int, count: int = 4) -> list[int]:
    """``count`` key-frame indices spread evenly (first and last included)."""
    if num_key_frames <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, num_key_frames - 1, min(count, num_key_frames))})


def parse_rows(text: str | None, num_key_frames: int, count: int = 4) -> list[int]:
    """``"0,5,10"`` -> key-frame indices (negative counts from the end); None -> defaults."""
    if text is None or not str(text).strip():
        return default_rows(num_key_frames, count)
    out: list[int] = []
    for part in str(text).split(","):
        try:
            i = int(part.strip())
        except ValueError:
            raise InputError(f"--frames: {part.strip()!r} is not an integer (example: --frames 0,5,10)") from None
        j = i + num_key_frames if i < 0 else i
        if not 0 <= j < num_key_frames:
            raise InputError(f"--frames: index {i} is outside the {num_key_frames} key frames (0..{num_key_frames - 1})")
        if j not in out:
            out.append(j)
    return out


def as_rgb(frame: Any) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 array from a PIL image or array (grey is repeated, alpha dropped)."""
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"frame must be an (H, W, 3) image, got shape {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return arr


def thumbnail(frame: np.ndarray, max_width: int | None) -> np.ndarray:
    """The frame scaled down (PIL bilinear, antialiased) to at most ``max_width`` pixels wide."""
    if max_width is None or frame.shape[1] <= max_width:
        return frame
    from PIL import Image

    height = max(1, round(frame.shape[0] * max_width / frame.shape[1]))
    return np.asarray(Image.fromarray(frame).resize((max_width, height), Image.BILINEAR))


def _mask_rows(name: str, value: Any, count: int) -> list[np.ndarray | None]:
    if value is None:
        return [None] * count
    rows = list(value)
    if len(rows) != count:
        raise InputError(f"mask {name!r} has {len(rows)} frames, the frames have {count}")
    return [None if m is None else np.asarray(m).astype(bool) for m in rows]


# -- drawing --------------------------------------------------------------------------------------
@dataclass
class Panels:
    """The figure's pixels before matplotlib: ``mosaic`` holds ``rows x columns`` panels of
    ``(height, width)`` with ``gap`` pixels between them (white)."""

    mosaic: np.ndarray
    columns: list[str]
    height: int
    width: int
    gap: int
    vmin: float
    vmax: float
    missing: list[tuple[int, int]] = field(default_factory=list)  # (row, column) drawn as n/a

    def panel(self, r: int, c: int) -> np.ndarray:
        y, x = r * (self.height + self.gap), c * (self.width + self.gap)
        return self.mosaic[y:y + self.height, x:x + self.width]


def compose_panels(frames: Sequence[Any], stages: Mapping[str, Any], *, masks: Mapping[str, Any] | None = None,
                   rows: Sequence[int] | None = None, normalize: str = "video", cmap: str = "jet",
                   alpha: float = 0.5, thumb_width: int | None = 240, gap: int = 4) -> Panels:
    """The panel mosaic of :func:`show_maps` (see there for the arguments)."""
    count = len(frames)
    if count == 0:
        raise InputError("show_maps needs at least one frame")
    shown, vmin, vmax = display_maps(stages, normalize)
    for k, x in shown.items():
        if x.shape[0] != count:
            raise InputError(f"stage map {k!r} has {x.shape[0]} frames, the frames have {count}")
    order = [k for k in STAGE_ORDER if k in shown] + [k for k in shown if k not in STAGE_ORDER]
    mask_rows = {k: _mask_rows(k, v, count) for k, v in (masks or {}).items()}
    mask_order = [k for k in MASK_ORDER if k in mask_rows] + [k for k in mask_rows if k not in MASK_ORDER]
    rows = list(range(count)) if rows is None else [int(r) for r in rows]
    if not rows or any(not 0 <= r < count for r in rows):
        raise InputError(f"rows must be indices into the {count} frames, got {rows}")
    thumbs = [thumbnail(as_rgb(frames[r]), thumb_width) for r in rows]
    th, tw = thumbs[0].shape[:2]
    if any(t.shape[:2] != (th, tw) for t in thumbs):
        raise InputError("the frames differ in size")
    columns = ["frame", *order, *mask_order]
    missing: list[tuple[int, int]] = []
    mosaic = np.full((len(rows) * (th + gap) - gap, len(columns) * (tw + gap) - gap, 3), 255, dtype=np.uint8)
    for i, (r, frame) in enumerate(zip(rows, thumbs)):
        tiles = [frame] + [overlay_heat(frame, shown[k][r], vmin=vmin, vmax=vmax, cmap=cmap, alpha=alpha) for k in order]
        tiles += [overlay_mask(frame, mask_rows[k][r], MASK_COLOURS.get(k, (1.0, 0.0, 0.0))) for k in mask_order]
        for c, tile in enumerate(tiles):
            y, x = i * (th + gap), c * (tw + gap)
            mosaic[y:y + th, x:x + tw] = tile
        missing += [(i, 1 + len(order) + j) for j, k in enumerate(mask_order) if mask_rows[k][r] is None]
    return Panels(mosaic, columns, th, tw, gap, vmin, vmax, missing)


def show_maps(frames: Sequence[Any], stages: Mapping[str, Any], *, masks: Mapping[str, Any] | None = None,
              rows: Sequence[int] | None = None, row_labels: Sequence[str] | None = None,
              caption: str | Sequence[str] = "", title: str = "", normalize: str = "video",
              cmap: str = "jet", alpha: float = 0.5, thumb_width: int | None = 240, dpi: int = 100) -> Any:
    """A matplotlib ``Figure``: a row per chosen frame; columns: the frame, each stage map as
    a heat-map overlay (one shared colour scale and colour bar), then each mask.

    ``frames``: T images (PIL or ``(H, W, 3)`` arrays); ``stages``: name -> ``(T, h, w)``
    (``None`` skipped; :data:`STAGE_ORDER` first); ``masks``: name -> T masks ``(H, W)``, a
    ``None`` entry (or value) drawn darkened with "n/a"; ``rows``: indices into T (default
    all); normalization is over all T frames, not only the drawn rows. Panels are composed
    in numpy (:func:`compose_panels`) and drawn as one image at one pixel per pixel, which is
    what keeps a 16-row figure fast; ``thumb_width`` bounds a panel's width in pixels.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    p = compose_panels(frames, stages, masks=masks, rows=rows, normalize=normalize, cmap=cmap, alpha=alpha,
                       thumb_width=thumb_width)
    n_rows = (p.mosaic.shape[0] + p.gap) // (p.height + p.gap)
    labels = list(row_labels) if row_labels is not None else [str(r) for r in (rows or range(n_rows))]
    lines = [caption] if isinstance(caption, str) else list(caption)
    mos_w, mos_h = p.mosaic.shape[1] / dpi, p.mosaic.shape[0] / dpi
    wrapped = [w for line in lines if line for w in textwrap.wrap(line, max(40, int(mos_w * 14)))]
    left, right, top = 0.3, 0.9, 0.45 + (0.3 if title else 0.0)
    bottom = 0.15 + 0.16 * len(wrapped)
    fig_w, fig_h = left + mos_w + right, top + mos_h + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, mos_w / fig_w, mos_h / fig_h))
    ax.imshow(p.mosaic, interpolation="nearest")
    ax.set_axis_off()
    for c, name in enumerate(p.columns):
        x = (left + (c * (p.width + p.gap) + p.width / 2) / dpi) / fig_w
        fig.text(x, (bottom + mos_h + 0.05) / fig_h, STAGE_TITLES.get(name, name), ha="center", va="bottom", fontsize=8)
    for i, c in p.missing:
        ax.text(c * (p.width + p.gap) + p.width / 2, i * (p.height + p.gap) + p.height / 2, "n/a",
                color="white", ha="center", va="center", fontsize=9)
    for i, label in enumerate(labels[:n_rows]):
        y = (bottom + mos_h - (i * (p.height + p.gap) + p.height / 2) / dpi) / fig_h
        fig.text((left - 0.05) / fig_w, y, label, ha="right", va="center", rotation=90, fontsize=8)
    if any(c in STAGE_TITLES or c not in ("frame", *MASK_ORDER) for c in p.columns[1:]):
        cm = colormaps[cmap]
        cax = fig.add_axes(((left + mos_w + 0.15) / fig_w, bottom / fig_h, 0.12 / fig_w, mos_h / fig_h), label="colorbar")
        bar = fig.colorbar(ScalarMappable(norm=Normalize(p.vmin, p.vmax), cmap=cm), cax=cax)
        bar.ax.tick_params(labelsize=6)
        bar.set_label("attention (min-max per stage)" if normalize == "video" else "attention", fontsize=6)
    if title:
        fig.text(0.5, 1 - 0.1 / fig_h, title, ha="center", va="top", fontsize=9, weight="bold")
    for i, line in enumerate(wrapped):
        fig.text(left / fig_w, (bottom - 0.1 - 0.16 * i) / fig_h, line, ha="left", va="top", fontsize=8)
    return fig


def save_figure(fig: Any, path: str | Path, dpi: int | None = None) -> Path:
    """Write the figure atomically (PNG, or any format matplotlib knows by the suffix)."""
    from .runstore import atomic_write_bytes

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, dpi=dpi or fig.dpi)
    except ValueError as exc:
        raise InputError(f"cannot write a figure in format {fmt!r} ({exc})", path) from None
    atomic_write_bytes(path, buf.getvalue())
    return path


# -- backwards compatibility --------------------------------------------------------------------
#: names that moved to :mod:`decafbench.show_record`; resolved lazily because show_record
#: imports this module (an eager import here would be circular)
