"""Decomposed attention fusion (method section 5) as a registry of named variants.

Every variant is one pure torch function of the four rollout maps (object/background x
video/frame view) plus the video view's temporal stride::

    fused = get("decaf")(obj_video, bg_video, obj_frame, bg_frame, temporal_stride=2, sigma=2.0)

Video-view maps are ``(Tv, hv, wv)`` with ``Tv == ceil(T / temporal_stride)``; frame-view maps
are ``(T, h, w)``. The result is always float32 ``(T, h, w)`` in ``[0, 1]``.

A variant is the full method with some structure fixed (which views are fused, whether the
background map is subtracted, whether maps are smoothed) and the rest left as named,
overridable parameters. "No smoothing" is simply kernel size 1 (a 1x1 normalized Gaussian is
the identity), so the ablations differ only in data, not in code paths. Structure that is
fixed by a variant is not a parameter of it: asking ``no-smoothing`` for ``sigma`` is an error,
and :func:`expand_grid` skips it for that variant instead of running duplicate configs.

``object-only`` vs ``video-frame-no-contrast``: both drop the background map; the first also
drops smoothing (the raw rollout maps, only normalized and fused), the second keeps it (the
full method minus the contrastive step). ``object-only-video/-frame`` are the raw maps of one
view. Order and definitions of steps follow the DecAF reference code: normalize per view,
then align the video view (repeat, drop, bilinear resize), then fuse and normalize again.

Ablations that are not fusion (last-layer attention, other rollout layer ranges) are
:class:`decafbench.rollout.RolloutConfig` settings, not variants.
"""

from __future__ import annotations

import difflib
import itertools
import operator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping

from .errors import InputError
from .registry import Registry

NORM_MODES = ("video", "frame", "none")
#: every parameter any variant can take, with the published default
BASE_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "kernel_video": 3,
    "kernel_frame": 7,
    "sigma": 1.0,
    "clamp": True,
    "norm_video": "video",
    "norm_frame": "frame",
    "norm_final": "video",
    "weight_video": 0.5,
})
PARAM_HELP: Mapping[str, str] = MappingProxyType({
    "kernel_video": "Gaussian kernel size (odd, 1 = off) for video-view maps",
    "kernel_frame": "Gaussian kernel size (odd, 1 = off) for frame-view maps",
    "sigma": "Gaussian sigma (> 0)",
    "clamp": "clamp the (object - background) map to [0, 1]",
    "norm_video": "min-max of the video-view map: video | frame | none",
    "norm_frame": "min-max of the frame-view map: video | frame | none",
    "norm_final": "min-max of the fused map: video | frame | none",
    "weight_video": "weight of the video view in the fused map (frame view: 1 - w)",
})
STAGE_NAMES = ("object_video", "background_video", "object_frame", "background_frame",
               "contrastive_video", "contrastive_frame", "fused")
_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f"}


# -- parameter coercion -------------------------------------------------------------------------
def coerce_param(key: str, value: Any) -> Any:
    """Coerce ``value`` (possibly a string from a config file or the CLI) to ``key``'s type.

    Types come from :data:`BASE_DEFAULTS`; ranges are checked here so a bad value fails before
    any tensor work, with a one-line error naming the parameter.
    """
    default = BASE_DEFAULTS[key]
    text = value.strip() if isinstance(value, str) else None
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                out: Any = value
            elif text is not None and text.lower() in _TRUE | _FALSE:
                out = text.lower() in _TRUE
            else:
                raise ValueError
        elif isinstance(default, int):
            if isinstance(value, bool):
                raise ValueError
            num = float(text) if text is not None else float(value)
            if num != int(num):
                raise ValueError
            out = int(num)
            if out < 1 or out % 2 == 0:
                raise InputError(f"fusion parameter {key}={value!r}: kernel size must be a positive odd integer")
        elif isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError
            out = float(text) if text is not None else float(value)
            if key == "sigma" and not out > 0:
                raise InputError(f"fusion parameter sigma={value!r}: must be > 0")
            if key == "weight_video" and not 0.0 <= out <= 1.0:
                raise InputError(f"fusion parameter weight_video={value!r}: must be in [0, 1]")
        else:
            out = str(value).strip().lower()
            if out not in NORM_MODES:
                raise InputError(f"fusion parameter {key}={value!r}: must be one of {', '.join(NORM_MODES)}")
    except (ValueError, TypeError, OverflowError):
        raise InputError(f"fusion parameter {key}={value!r}: expected {type(default).__name__}") from None
    return out


# -- variants ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One fusion variant: fixed structure plus overridable parameters.

    ``use_video``/``use_frame``: which views enter the fused map. ``background``: subtract the
    background map (contrastive fusion) or use the object map alone. ``fixed``: parameter
    values the variant pins (e.g. kernels of 1 for no smoothing); ``params``: names a caller
    may override. Calling the variant runs it (see :func:`fuse_maps`).
    """

    name: str
    description: str
    use_video: bool = True
    use_frame: bool = True
    background: bool = True
    fixed: Mapping[str, Any] = field(default_factory=dict)
    params: tuple[str, ...] = tuple(BASE_DEFAULTS)

    def defaults(self) -> dict[str, Any]:
        """The overridable parameters and their defaults (what `decaf variants show` lists)."""
        return {k: BASE_DEFAULTS[k] for k in self.params}

    def resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """All eight settings (defaults < fixed < validated overrides) for one call."""
        unknown = [k for k in overrides if k not in self.params]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, self.params, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            valid = ", ".join(sorted(self.params)) or "none"
            raise InputError(f"fusion variant {self.name!r} has no parameter {key!r}{hint}; valid: {valid}")
        out = dict(BASE_DEFAULTS)
        out.update(self.fixed)
        out.update({k: coerce_param(k, v) for k, v in overrides.items()})
        return out

    def __call__(self, obj_video: Any, bg_video: Any, obj_frame: Any, bg_frame: Any,
                 temporal_stride: int = 2, **params: Any) -> Any:
        return fuse_maps(self, obj_video, bg_video, obj_frame, bg_frame, temporal_stride,
                         self.resolve(params))["fused"]

    def stages(self, obj_video: Any, bg_video: Any, obj_frame: Any, bg_frame: Any,
               temporal_stride: int = 2, **params: Any) -> dict[str, Any]:
        return fuse_maps(self, obj_video, bg_video, obj_frame, bg_frame, temporal_stride,
                         self.resolve(params), all_stages=True)


_NORMS = ("norm_video", "norm_frame", "norm_final")
_NO_SMOOTH = {"kernel_video": 1, "kernel_frame": 1}

#: the explicit table of variants (order = display order of `decaf variants list`)
VARIANT_TABLE: tuple[Variant, ...] = (
    Variant("decaf", "full method: smoothed object-minus-background maps of both views, fused"),
    Variant("no-smoothing", "full method without Gaussian smoothing",
            fixed=_NO_SMOOTH, params=("clamp", *_NORMS, "weight_video")),
    Variant("video-frame-no-contrast", "smoothed object maps of both views fused, no background subtraction",
            background=False),
    Variant("contrastive-video", "video view only: smoothed object-minus-background map",
            use_frame=False, params=("kernel_video", "sigma", "clamp", "norm_video", "norm_final")),
    Variant("contrastive-frame", "frame view only: smoothed object-minus-background map",
            use_video=False, params=("kernel_frame", "sigma", "clamp", "norm_frame", "norm_final")),
    Variant("object-only", "raw object maps of both views fused (no smoothing, no background)",
            background=False, fixed=_NO_SMOOTH, params=("clamp", *_NORMS, "weight_video")),
    Variant("object-only-video", "raw object map of the video view only (no smoothing, no background)",
            use_frame=False, background=False, fixed=_NO_SMOOTH, params=("clamp", "norm_video", "norm_final")),
    Variant("object-only-frame", "raw object map of the frame view only (no smoothing, no background)",
            use_video=False, background=False, fixed=_NO_SMOOTH, params=("clamp", "norm_frame", "norm_final")),
)


def _registry(table: Iterable[Variant]) -> Registry[Variant]:
    reg: Registry[Variant] = Registry("fusion variant", check=lambda v: isinstance(v, Variant))
    reg.update((v.name, v, v.description) for v in table)
    return reg


VARIANTS: Registry[Variant] = _registry(VARIANT_TABLE)


def names(pattern: str | None = None) -> list[str]:
    """Variant names, sorted, optionally filtered by a glob (``"object-*"``)."""
    return VARIANTS.names(pattern)


def get(name: str) -> Variant:
    """The callable variant ``name``; an unknown name is an InputError with a "did you mean"."""
    return VARIANTS.get(name)


def describe(name: str) -> str:
    return VARIANTS.describe(name)


def defaults(name: str) -> dict[str, Any]:
    return get(name).defaults()


def stages(*args: Any, temporal_stride: int = 2, variant: str = "decaf", **params: Any) -> dict[str, Any]:
    """Every intermediate map of a variant, each aligned to the frame-view ``(T, h, w)``.

    Called as ``stages(obj_video, bg_video, obj_frame, bg_frame, temporal_stride=2,
    variant="decaf", **params)``; the variant name may also come first,
    ``stages("decaf", obj_video, ...)``. Keys (:data:`STAGE_NAMES`):
    ``object_*``/``background_*``: the raw input maps (no smoothing, no normalization; video
    view repeated in time and bilinearly resized). ``contrastive_*``: smoothed, contrasted
    (object-only variants: object map alone) and normalized per view, as they enter the
    fusion; computed for both views even when the variant fuses only one. ``fused``: the
    variant's output. For diagnostics and figures.
    """
    if args and isinstance(args[0], str):
        variant, args = args[0], args[1:]
    if len(args) == 5:
        *args, temporal_stride = args  # type: ignore[assignment]
    if len(args) != 4:
        raise InputError(f"fusion stages needs the four maps obj_video, bg_video, obj_frame, bg_frame; got {len(args)} arrays")
    return get(variant).stages(*args, temporal_stride=temporal_stride, **params)


def validate(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``params`` against variant ``name`` before any work; returns them coerced."""
    resolved = get(name).resolve(params)
    return {k: resolved[k] for k in params}


def parse_params(name: str, items: Iterable[str]) -> dict[str, Any]:
    """``["sigma=2", "clamp=false"]`` -> ``{"sigma": 2.0, "clamp": False}`` for variant ``name``."""
    raw: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise InputError(f"fusion parameter {item!r} is not of the form name=value")
        raw[key] = value
    return validate(name, raw)


def expand_grid(spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Sweep configurations: ``{"variant": [...], "sigma": [0.5, 1.0], ...}`` -> (name, params).

    Each variant is crossed with the values of the parameters it takes; a parameter it does
    not take is skipped for it (never crossed, so no duplicate runs). ``variant`` defaults to
    ``"decaf"``; scalars count as one-value lists. Values are coerced like :func:`parse_params`.
    A parameter that no listed variant takes is an InputError (a typo would else vanish).
    Order: variants as listed, then ``itertools.product`` over parameters in spec order.
    """
    spec = dict(spec)
    variants = spec.pop("variant", ["decaf"])
    variants = [variants] if isinstance(variants, str) else list(variants)
    grid = {k: ([v] if isinstance(v, (str, bool, int, float)) else list(v)) for k, v in spec.items()}
    for key, values in grid.items():
        if key not in BASE_DEFAULTS:
            close = difflib.get_close_matches(key, list(BASE_DEFAULTS), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"sweep key {key!r} is not a fusion parameter{hint}; valid: variant, {', '.join(BASE_DEFAULTS)}")
        if not values:
            raise InputError(f"sweep key {key!r} has no values")
        grid[key] = [coerce_param(key, v) for v in values]
    resolved = [get(n) for n in variants]
    unused = [k for k in grid if not any(k in v.params for v in resolved)]
    if unused:
        raise InputError(f"sweep key {unused[0]!r} is not a parameter of any of {', '.join(variants)}")
    for variant in resolved:
        keys = [k for k in grid if k in variant.params]
        for combo in itertools.product(*(grid[k] for k in keys)):
            yield variant.name, dict(zip(keys, combo))


# -- the computation -----------------------------------------------------------------------------
def gaussian_kernel(size: int, sigma: float, device: Any = None) -> Any:
    """Normalized 2-D Gaussian ``exp(-(x^2 + y^2) / (2 sigma^2))`` on offsets ``-k//2..k//2``."""
    import torch

    ax = torch.arange(size, dtype=torch.float64, device=device) - size // 2
    kernel = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2.0 * sigma**2))
    return (kernel / kernel.sum()).to(torch.float32)


def smooth(maps: Any, kernel: int, sigma: float) -> Any:
    """Gaussian smoothing of ``(T, h, w)`` maps, zero padding, same size; kernel 1 = identity."""
    import torch.nn.functional as F

    if kernel == 1:
        return maps
    weight = gaussian_kernel(kernel, sigma, maps.device)[None, None]
    return F.conv2d(maps[:, None], weight, padding=kernel // 2)[:, 0]


def minmax(maps: Any, mode: str) -> Any:
    """Min-max to [0, 1] over the whole video or per frame; a constant map becomes 0, not NaN."""
    import torch

    if mode == "none":
        return maps
    flat = maps.reshape(1, -1) if mode == "video" else maps.reshape(maps.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    rng = flat.max(dim=1, keepdim=True).values - lo
    out = (flat - lo) / torch.where(rng > 0, rng, torch.ones_like(rng))
    return out.reshape(maps.shape)


def align_video(maps: Any, num_frames: int, size: tuple[int, int], temporal_stride: int) -> Any:
    """Video-view maps ``(Tv, hv, wv)`` -> ``(T, h, w)``: repeat each step ``temporal_stride``
    times, drop the trailing extras, bilinear resize (align_corners=False)."""
    import torch.nn.functional as F

    steps = maps.shape[0]
    if steps != -(-num_frames // temporal_stride):
        raise InputError(f"video-view maps have {steps} time steps; temporal_stride={temporal_stride} "
                         f"needs {-(-num_frames // temporal_stride)} to cover {num_frames} frames")
    out = maps.repeat_interleave(temporal_stride, dim=0)[:num_frames]
    if tuple(out.shape[1:]) != tuple(size):
        out = F.interpolate(out[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return out


def _as_maps(name: str, value: Any) -> Any:
    import torch

    if value is None:
        raise InputError(f"fusion input {name} is missing")
    x = torch.as_tensor(value)
    if x.ndim != 3 or min(x.shape) < 1:
        raise InputError(f"fusion input {name} must be a non-empty (t, h, w) map, got shape {tuple(x.shape)}")
    x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"fusion input {name} has NaN or infinite values")
    return x


def fuse_maps(variant: Variant, obj_video: Any, bg_video: Any, obj_frame: Any, bg_frame: Any,
              temporal_stride: int, p: Mapping[str, Any], all_stages: bool = False) -> dict[str, Any]:
    """Run ``variant`` with resolved settings ``p`` (see :meth:`Variant.resolve`)."""
    import torch

    try:
        if isinstance(temporal_stride, bool):
            raise TypeError
        temporal_stride = operator.index(temporal_stride)  # int, numpy or 0-d torch integers
    except TypeError:
        raise InputError(f"temporal_stride must be a positive integer, not {temporal_stride!r}") from None
    if temporal_stride < 1:
        raise InputError(f"temporal_stride must be a positive integer, not {temporal_stride!r}")
    ov, bv = _as_maps("obj_video", obj_video), _as_maps("bg_video", bg_video)
    of, bf = _as_maps("obj_frame", obj_frame), _as_maps("bg_frame", bg_frame)
    if ov.shape != bv.shape:
        raise InputError(f"fusion inputs obj_video {tuple(ov.shape)} and bg_video {tuple(bv.shape)} differ in shape")
    if of.shape != bf.shape:
        raise InputError(f"fusion inputs obj_frame {tuple(of.shape)} and bg_frame {tuple(bf.shape)} differ in shape")
    num_frames, size = of.shape[0], (of.shape[1], of.shape[2])
    device = of.device
    ov, bv = ov.to(device), bv.to(device)

    def contrast(obj: Any, bg: Any, kernel: int, norm: str) -> Any:
        o = smooth(obj, kernel, p["sigma"])
        c = o - smooth(bg, kernel, p["sigma"]) if variant.background else o
        return minmax(c.clamp(0.0, 1.0) if p["clamp"] else c, norm)

    out: dict[str, Any] = {}
    cv = cf = None
    if variant.use_video or all_stages:
        cv = align_video(contrast(ov, bv, p["kernel_video"], p["norm_video"]), num_frames, size, temporal_stride)
    else:
        align_video(ov[:, :1, :1], num_frames, (1, 1), temporal_stride)  # same shape contract for every variant
    if variant.use_frame or all_stages:
        cf = contrast(of, bf, p["kernel_frame"], p["norm_frame"])
    if variant.use_video and variant.use_frame:
        w = p["weight_video"]
        fused = (cv + cf) / 2 if w == 0.5 else w * cv + (1.0 - w) * cf
    else:
        fused = cv if variant.use_video else cf
    out["fused"] = minmax(fused, p["norm_final"]).clamp(0.0, 1.0).to(torch.float32).contiguous()
    if all_stages:
        out = {
            "object_video": align_video(ov, num_frames, size, temporal_stride),
            "background_video": align_video(bv, num_frames, size, temporal_stride),
            "object_frame": of,
            "background_frame": bf,
            "contrastive_video": cv,
            "contrastive_frame": cf,
            "fused": out["fused"],
        }
    return out
