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


def outline(mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    """The mask's inner boundary band: mask pixels within city-block distance ``thickness``
    of a pixel outside the mask (the frame's border counts as outside, so a mask that
    touches the border is closed there too)."""
    from scipy.ndimage import binary_erosion

    m = np.asarray(mask, dtype=bool)
    if thickness <= 0 or not m.any():
        return np.zeros_like(m)
    inner = binary_erosion(m, structure=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool), iterations=thickness,
                           border_value=0)
    return m & ~inner


def overlay_outline(frame: np.ndarray, mask: np.ndarray | None, colour: tuple[float, float, float], *,
                    reference: np.ndarray | None = None, thickness: int = 2,
                    reference_colour: tuple[float, float, float] = (0.2, 1.0, 0.2)) -> np.ndarray:
    """The frame with the mask's outline (nearest-resized to the frame, ``thickness`` pixels,
    in ``colour``) and, beneath it, a one-pixel outline of ``reference`` (the ground truth);
    outlines, not fills, so the object itself stays visible. ``None``: frame darkened (n/a)."""
    if mask is None:
        return np.round(frame * 0.35).astype(np.uint8)
    out = frame.copy()
    if reference is not None:
        ref = outline(nearest_resize(np.asarray(reference, dtype=bool), frame.shape[:2]), 1)
        out[ref] = np.round(255.0 * np.asarray(reference_colour)).astype(np.uint8)
    line = outline(nearest_resize(np.asarray(mask, dtype=bool), frame.shape[:2]), thickness)
    out[line] = np.round(255.0 * np.asarray(colour)).astype(np.uint8)
    return out


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


# -- column choice --------------------------------------------------------------------------------
#: ``--columns`` presets; any comma-separated list of column names works too
COLUMN_PRESETS = {
    "all": ("frame", *STAGE_ORDER, *MASK_ORDER),
    "maps": ("frame", *STAGE_ORDER),
    "masks": ("frame", "fused", *MASK_ORDER),
    "compact": ("frame", "object_frame", "background_frame", "fused", *MASK_ORDER),
}
#: short names accepted by ``--columns`` (``gt`` for ground truth, ``obj-v`` ...)
COLUMN_ALIASES = {"gt": "ground truth", "ground-truth": "ground truth", "ground_truth": "ground truth",
                  "obj-v": "object_video", "bg-v": "background_video", "obj-f": "object_frame",
                  "bg-f": "background_frame", "con-v": "contrastive_video", "con-f": "contrastive_frame"}


def parse_columns(text: str | Sequence[str] | None) -> list[str] | None:
    """``--columns``: a preset (``all``, ``maps``, ``masks``, ``compact``) or a comma-separated
    list of column names (``frame``, the stage names, ``coarse``, ``sam2``, ``prediction``,
    ``gt``); ``None``/``all`` -> ``None`` (every column). Unknown names are an InputError."""
    if text is None:
        return None
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if str(p).strip()]
    if not parts or parts == ["all"]:
        return None
    known = ("frame", *STAGE_ORDER, *MASK_ORDER)
    out: list[str] = []
    for part in parts:
        if part in COLUMN_PRESETS:
            names = list(COLUMN_PRESETS[part])
        else:
            name = COLUMN_ALIASES.get(part.lower(), part.lower().replace("-", "_"))
            if name not in known:
                raise InputError(f"--columns: unknown column {part!r} (presets: {', '.join(COLUMN_PRESETS)}; "
                                 f"columns: frame, {', '.join(STAGE_ORDER)}, coarse, sam2, prediction, gt)")
            names = [name]
        out += [n for n in names if n not in out]
    return out


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
                   alpha: float = 0.5, thumb_width: int | None = 240, gap: int = 4,
                   columns: Sequence[str] | None = None) -> Panels:
    """The panel mosaic of :func:`show_maps` (see there for the arguments)."""
    count = len(frames)
    if count == 0:
        raise InputError("show_maps needs at least one frame")
    shown, vmin, vmax = display_maps(stages, normalize)
    for k, x in shown.items():
        if x.shape[0] != count:
            raise InputError(f"stage map {k!r} has {x.shape[0]} frames, the frames have {count}")
    mask_rows = {k: _mask_rows(k, v, count) for k, v in (masks or {}).items()}
    if columns is None:
        order = [k for k in STAGE_ORDER if k in stages] + [k for k in stages if k not in STAGE_ORDER]
        mask_order = [k for k in MASK_ORDER if k in mask_rows] + [k for k in mask_rows if k not in MASK_ORDER]
        columns = ["frame", *order, *mask_order]
    columns = list(columns)
    rows = list(range(count)) if rows is None else [int(r) for r in rows]
    if not rows or any(not 0 <= r < count for r in rows):
        raise InputError(f"rows must be indices into the {count} frames, got {rows}")
    thumbs = [thumbnail(as_rgb(frames[r]), thumb_width) for r in rows]
    th, tw = thumbs[0].shape[:2]
    if any(t.shape[:2] != (th, tw) for t in thumbs):
        raise InputError("the frames differ in size")
    gt = mask_rows.get("ground truth")
    missing: list[tuple[int, int]] = []
    mosaic = np.full((len(rows) * (th + gap) - gap, len(columns) * (tw + gap) - gap, 3), 255, dtype=np.uint8)
    for i, (r, frame) in enumerate(zip(rows, thumbs)):
        for c, name in enumerate(columns):
            if name == "frame":
                tile = frame
            elif name in shown:
                tile = overlay_heat(frame, shown[name][r], vmin=vmin, vmax=vmax, cmap=cmap, alpha=alpha)
            elif name in mask_rows and mask_rows[name][r] is not None:
                ref = gt[r] if gt is not None and name != "ground truth" else None
                tile = overlay_outline(frame, mask_rows[name][r], MASK_COLOURS.get(name, (1.0, 0.0, 0.0)),
                                       reference=ref)
            else:  # a stage or mask this expression does not have: darkened, drawn "n/a"
                tile = np.round(frame * 0.35).astype(np.uint8)
                missing.append((i, c))
            y, x = i * (th + gap), c * (tw + gap)
            mosaic[y:y + th, x:x + tw] = tile
    return Panels(mosaic, columns, th, tw, gap, vmin, vmax, missing)


def show_maps(frames: Sequence[Any], stages: Mapping[str, Any], *, masks: Mapping[str, Any] | None = None,
              rows: Sequence[int] | None = None, row_labels: Sequence[str] | None = None,
              caption: str | Sequence[str] = "", title: str = "", normalize: str = "video",
              cmap: str = "jet", alpha: float = 0.5, thumb_width: int | None = 240, dpi: int = 100,
              columns: Sequence[str] | None = None, fontsize: float = 9.0) -> Any:
    """A matplotlib ``Figure``: a row per chosen frame; columns: the frame, each stage map as
    a heat-map overlay (one shared colour scale and colour bar), then each mask as an outline
    (the ground truth's outline drawn thin in green beneath every other mask).

    ``frames``: T images (PIL or ``(H, W, 3)`` arrays); ``stages``: name -> ``(T, h, w)``
    (:data:`STAGE_ORDER` first; a ``None`` value is a missing stage, drawn darkened with
    "n/a"); ``masks``: name -> T masks ``(H, W)``, a ``None`` entry (or value) drawn "n/a";
    ``rows``: indices into T (default all); ``columns``: which columns, in order (see
    :func:`parse_columns`; default every stage and mask given); normalization is over all T
    frames, not only the drawn rows. Panels are composed in numpy (:func:`compose_panels`)
    and drawn as one image at one pixel per pixel, which is what keeps a 16-row figure fast;
    ``thumb_width`` bounds a panel's width in pixels, ``fontsize`` (points) every text.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    p = compose_panels(frames, stages, masks=masks, rows=rows, normalize=normalize, cmap=cmap, alpha=alpha,
                       thumb_width=thumb_width, columns=columns)
    n_rows = (p.mosaic.shape[0] + p.gap) // (p.height + p.gap)
    labels = list(row_labels) if row_labels is not None else [str(r) for r in (rows or range(n_rows))]
    lines = [caption] if isinstance(caption, str) else list(caption)
    line_h = 1.35 * fontsize / 72.0  # inches per text line
    mos_w, mos_h = p.mosaic.shape[1] / dpi, p.mosaic.shape[0] / dpi
    has_masks = [c for c in p.columns if c in MASK_ORDER or (masks and c in masks)]
    if has_masks:
        lines = [("outlines: " + ", ".join(f"{c} ({_COLOUR_NAMES.get(c, 'red')})" for c in has_masks)
                  + ("; ground truth also thin green on every mask" if "ground truth" in (masks or {}) else "")),
                 *lines]
    has_bar = any(stages.get(c) is not None for c in shown_stage_names(p.columns))
    chars = max(40, int((mos_w + (0.9 if has_bar else 0.0)) * 72.0 / (0.55 * fontsize)))
    wrapped = [w for line in lines if line for w in textwrap.wrap(line, chars)]
    left, right = 0.15 + 2.4 * line_h, (0.35 + 4.2 * line_h) if has_bar else 0.2
    top = 0.15 + 2.3 * line_h + (1.3 * line_h if title else 0.0)
    bottom = 0.2 + line_h * len(wrapped)
    fig_w, fig_h = left + mos_w + right, top + mos_h + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, mos_w / fig_w, mos_h / fig_h))
    ax.imshow(p.mosaic, interpolation="nearest")
    ax.set_axis_off()
    for c, name in enumerate(p.columns):
        x = (left + (c * (p.width + p.gap) + p.width / 2) / dpi) / fig_w
        fig.text(x, (bottom + mos_h + 0.06) / fig_h, STAGE_TITLES.get(name, name), ha="center", va="bottom",
                 fontsize=fontsize, linespacing=1.1)
    for i, c in p.missing:
        ax.text(c * (p.width + p.gap) + p.width / 2, i * (p.height + p.gap) + p.height / 2, "n/a",
                color="white", ha="center", va="center", fontsize=fontsize + 1, weight="bold")
    for i, label in enumerate(labels[:n_rows]):
        y = (bottom + mos_h - (i * (p.height + p.gap) + p.height / 2) / dpi) / fig_h
        fig.text((left - 0.05) / fig_w, y, label, ha="right", va="center", rotation=90, fontsize=fontsize,
                 linespacing=1.1, multialignment="center")
    if has_bar:
        cax = fig.add_axes(((left + mos_w + 0.15) / fig_w, bottom / fig_h, 0.15 / fig_w, mos_h / fig_h),
                           label="colorbar")
        bar = fig.colorbar(ScalarMappable(norm=Normalize(p.vmin, p.vmax), cmap=colormaps[cmap]), cax=cax)
        bar.ax.tick_params(labelsize=fontsize - 1)
        bar.set_label("attention, min-max per stage" if normalize == "video" else "attention (raw)",
                      fontsize=fontsize)
    if title:
        fig.text(0.5, 1 - 0.1 / fig_h, title, ha="center", va="top", fontsize=fontsize + 1, weight="bold")
    for i, line in enumerate(wrapped):
        fig.text(left / fig_w, (bottom - 0.1 - line_h * i) / fig_h, line, ha="left", va="top", fontsize=fontsize)
    return fig


_COLOUR_NAMES = {"coarse": "orange", "sam2": "cyan", "prediction": "magenta", "ground truth": "green"}


def shown_stage_names(columns: Sequence[str]) -> list[str]:
    """The columns that are heat maps (everything but the frame and the masks)."""
    return [c for c in columns if c != "frame" and c not in MASK_ORDER]


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
