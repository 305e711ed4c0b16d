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

A variant is a registered pure function (:func:`register_variant`): the built-ins are
:func:`decaf_fusion` with some switches fixed; a new one is any function of the four maps
whose keyword parameters are declared at registration (checked against its signature then,
so a typo is an error where it is written)::

    @register_variant("max-views", description="per-pixel max of the two contrastive views")
    def max_views(obj_video, bg_video, obj_frame, bg_frame, *, temporal_stride, sigma=1.0): ...

``decaf run --variant``, sweeps, diagnostics and figures all call the registered function.

Ablations that are not fusion (last-layer attention, other rollout layer ranges) are
:class:`decafbench.rollout.RolloutConfig` settings, not variants.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .errors import InputError, RegistryError
from .registry import Registry, did_you_mean

NORM_MODES = ("video", "frame", "none")
_NORMS = ("norm_video", "norm_frame", "norm_final")
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
def coerce_param(key: str, value: Any, default: Any = None) -> Any:
    """Coerce ``value`` (possibly a string from a config file or the CLI) to ``key``'s type.

    Types come from :data:`BASE_DEFAULTS` (or, for a parameter only a registered variant takes,
    from ``default``, its default in the variant function's signature); ranges of the shared
    parameters are checked here so a bad value fails before any tensor work, with a one-line
    error naming the parameter.
    """
    if key in BASE_DEFAULTS:
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
            if key.startswith("kernel_") and (out < 1 or out % 2 == 0):
                raise InputError(f"fusion parameter {key}={value!r}: kernel size must be a positive odd integer")
        elif isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError
            out = float(text) if text is not None else float(value)
            if key == "sigma" and not out > 0:
                raise InputError(f"fusion parameter sigma={value!r}: must be > 0")
            if key == "weight_video" and not 0.0 <= out <= 1.0:
                raise InputError(f"fusion parameter weight_video={value!r}: must be in [0, 1]")
        elif key in _NORMS:
            out = str(value).strip().lower()
            if out not in NORM_MODES:
                raise InputError(f"fusion parameter {key}={value!r}: must be one of {', '.join(NORM_MODES)}")
        elif isinstance(default, str):
            out = str(value).strip()
        else:
            out = value
    except (ValueError, TypeError, OverflowError):
        raise InputError(f"fusion parameter {key}={value!r}: expected {type(default).__name__}") from None
    return out


# -- variants ------------------------------------------------------------------------------------
_INPUTS = ("obj_video", "bg_video", "obj_frame", "bg_frame")


@dataclass(frozen=True)
class Variant:
    """One registered fusion variant: a pure function plus its declared parameters.

    ``fn(obj_video, bg_video, obj_frame, bg_frame, *, temporal_stride, **params)`` gets the
    four validated float32 maps (see the module docstring) and returns the fused ``(T, h, w)``
    map, or a mapping with ``"fused"`` and optionally intermediate stages named as in
    :data:`STAGE_NAMES` (``contrastive_video``, ``contrastive_frame``) for diagnostics.
    ``params``: the keyword parameters a caller may override (defaults from the function's
    signature, else :data:`BASE_DEFAULTS`); ``fixed``: keyword values the variant pins. Build
    one with :func:`make_variant` (or :func:`register_variant`), which checks both against the
    function's signature, so a typo fails at registration instead of silently doing nothing.
    Calling the variant runs ``fn``; :meth:`stages` runs the same ``fn``.
    """

    name: str
    description: str
    fn: Callable[..., Any]
    params: tuple[str, ...]
    fixed: Mapping[str, Any]
    signature_defaults: Mapping[str, Any]
    help: Mapping[str, str] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        """The overridable parameters and their defaults (what `decaf variants show` lists)."""
        return {k: self.signature_defaults[k] for k in self.params}

    def settings(self) -> dict[str, Any]:
        """Every keyword setting of ``fn`` at its default (fixed values applied)."""
        return {**self.signature_defaults, **self.fixed}

    def resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """All keyword settings of ``fn`` (defaults < fixed < validated overrides) for one call."""
        unknown = [k for k in overrides if k not in self.params]
        if unknown:
            key = unknown[0]
            valid = ", ".join(sorted(self.params)) or "none"
            raise InputError(f"fusion variant {self.name!r} has no parameter {key!r}"
                             f"{did_you_mean(key, self.params, n=1, cutoff=0.6)}; valid: {valid}")
        out = self.settings()
        out.update({k: coerce_param(k, v, self.signature_defaults[k]) for k, v in overrides.items()})
        return out

    def _run(self, maps: Sequence[Any], temporal_stride: Any, params: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
        """Validate the inputs, run ``fn`` once, check its output: (stages from fn, inputs)."""
        import torch

        settings = self.resolve(params)
        stride = _check_stride(temporal_stride)
        ov, bv, of, bf = _check_inputs(*maps)
        num_frames, size = of.shape[0], (of.shape[1], of.shape[2])
        align_video(ov[:, :1, :1], num_frames, (1, 1), stride)  # same time contract for every variant
        result = self.fn(ov, bv, of, bf, temporal_stride=stride, **settings)
        stages = dict(result) if isinstance(result, Mapping) else {"fused": result}
        extra = [k for k in stages if k not in STAGE_NAMES]
        if extra or "fused" not in stages:
            raise ValueError(f"fusion variant {self.name!r} returned keys {sorted(stages)}: expected a map "
                             f"or a mapping with 'fused' and stages among {', '.join(STAGE_NAMES)}")
        for key, value in stages.items():
            if value is None:
                continue
            value = torch.as_tensor(value)
            if tuple(value.shape) != (num_frames, *size) or not bool(torch.isfinite(value).all()):
                raise ValueError(f"fusion variant {self.name!r} returned {key} of shape {tuple(value.shape)}"
                                 f" (finite values expected, shape {(num_frames, *size)})")
            stages[key] = value
        fused = stages["fused"].to(torch.float32)
        if float(fused.min()) < -1e-6 or float(fused.max()) > 1 + 1e-6:
            raise ValueError(f"fusion variant {self.name!r} returned a fused map outside [0, 1] "
                             f"({float(fused.min()):.3g}..{float(fused.max()):.3g})")
        stages["fused"] = fused.clamp(0.0, 1.0).contiguous()
        return stages, (ov, bv, of, bf, stride)

    def __call__(self, obj_video: Any, bg_video: Any, obj_frame: Any, bg_frame: Any,
                 temporal_stride: int = 2, **params: Any) -> Any:
        """The fused ``(T, h, w)`` float32 map in ``[0, 1]``."""
        stages, _ = self._run((obj_video, bg_video, obj_frame, bg_frame), temporal_stride, params)
        return stages["fused"]

    def stages(self, obj_video: Any, bg_video: Any, obj_frame: Any, bg_frame: Any,
               temporal_stride: int = 2, **params: Any) -> dict[str, Any]:
        """Every stage of :data:`STAGE_NAMES` (the inputs aligned to the frame view, what ``fn``
        reported, ``None`` for what it did not) from one run of ``fn``."""
        got, (ov, bv, of, bf, stride) = self._run((obj_video, bg_video, obj_frame, bg_frame), temporal_stride, params)
        num_frames, size = of.shape[0], (of.shape[1], of.shape[2])
        return {
            "object_video": align_video(ov, num_frames, size, stride),
            "background_video": align_video(bv, num_frames, size, stride),
            "object_frame": of,
            "background_frame": bf,
            "contrastive_video": got.get("contrastive_video"),
            "contrastive_frame": got.get("contrastive_frame"),
            "fused": got["fused"],
        }


def make_variant(name: str, fn: Callable[..., Any], *, description: str,
                 params: Iterable[str] | None = None, fixed: Mapping[str, Any] | None = None,
                 help: Mapping[str, str] | None = None) -> Variant:  # noqa: A002 - the CLI's word
    """Check ``fn``'s signature against the declared ``params`` / ``fixed`` and build the variant.

    ``fn`` takes the four maps positionally, then keyword ``temporal_stride``, then its
    parameters as keywords (each with a default unless it is one of :data:`BASE_DEFAULTS`).
    ``params`` defaults to every keyword parameter not in ``fixed``. Raises RegistryError
    naming the variant and the bad name: a parameter or fixed value the function does not
    take, one in both lists, a parameter without a default, a bad fixed value.
    """
    import inspect

    def fail(message: str) -> RegistryError:
        return RegistryError(f"fusion variant {name!r}: {message}")

    if not callable(fn):
        raise fail(f"{fn!r} is not callable")
    if not isinstance(description, str) or not description.strip() or "\n" in description:
        raise fail("needs a one-line description")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise fail(f"cannot read the signature of {fn!r} ({exc})") from None
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        raise fail("the function takes **kwargs; declare each parameter by name so typos are caught")
    if len(positional) < 4 and not any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()):
        raise fail(f"the function must take the four maps {', '.join(_INPUTS)} first; signature {sig}")
    keywords = {p.name: p for p in list(sig.parameters.values())[4:]
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if "temporal_stride" not in keywords:
        raise fail(f"the function must take keyword 'temporal_stride'; signature {sig}")
    del keywords["temporal_stride"]
    defaults: dict[str, Any] = {}
    for key, p in keywords.items():
        if p.default is not p.empty:
            defaults[key] = p.default
        elif key in BASE_DEFAULTS:
            defaults[key] = BASE_DEFAULTS[key]
        else:
            raise fail(f"parameter {key!r} needs a default in the function's signature")
    fixed = dict(fixed or {})
    declared = list(params) if params is not None else [k for k in keywords if k not in fixed]
    for group, keys in (("parameter", declared), ("fixed parameter", list(fixed))):
        for key in keys:
            if key not in keywords:
                raise fail(f"{group} {key!r} is not a keyword of {getattr(fn, '__name__', fn)}()"
                           f"{did_you_mean(key, keywords, n=1, cutoff=0.6)}; it takes: {', '.join(keywords) or 'none'}")
    both = sorted(set(declared) & set(fixed))
    if both:
        raise fail(f"{both[0]!r} is both a parameter and fixed")
    if len(set(declared)) != len(declared):
        raise fail("a parameter is declared twice")
    try:
        fixed = {k: coerce_param(k, v, defaults[k]) for k, v in fixed.items()}
        defaults = {k: coerce_param(k, v, v) for k, v in defaults.items()}
    except InputError as exc:
        raise fail(str(exc)) from None
    help_text = {k: PARAM_HELP.get(k, "") for k in declared}
    for key, text in (help or {}).items():
        if key not in declared:
            raise fail(f"help for {key!r}, which is not a parameter{did_you_mean(key, declared, n=1, cutoff=0.6)}")
        help_text[key] = str(text)
    return Variant(name, description.strip(), fn, tuple(declared), MappingProxyType(fixed),
                   MappingProxyType(defaults), MappingProxyType(help_text))


def register_variant(name: str, fn: Callable[..., Any] | None = None, *, description: str,
                     params: Iterable[str] | None = None, fixed: Mapping[str, Any] | None = None,
                     help: Mapping[str, str] | None = None,  # noqa: A002
                     registry: "Registry[Variant] | None" = None) -> Any:
    """Register ``fn`` as fusion variant ``name`` (validated now, see :func:`make_variant`).

    Used directly, ``register_variant("x", fn, description=...)`` returns the :class:`Variant`;
    as a decorator, ``@register_variant("x", description=...)`` registers the function and
    returns it unchanged. A name already registered is an error.
    """
    reg = VARIANTS if registry is None else registry

    def add(func: Callable[..., Any]) -> Variant:
        variant = make_variant(name, func, description=description, params=params, fixed=fixed, help=help)
        reg.add(name, variant, variant.description)
        return variant

    if fn is not None:
        return add(fn)

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        add(func)
        return func

    return decorator


def decaf_fusion(obj_video: Any, bg_video: Any, obj_frame: Any, bg_frame: Any, *, temporal_stride: int,
                 use_video: bool = True, use_frame: bool = True, background: bool = True,
                 kernel_video: int = 3, kernel_frame: int = 7, sigma: float = 1.0, clamp: bool = True,
                 norm_video: str = "video", norm_frame: str = "frame", norm_final: str = "video",
                 weight_video: float = 0.5) -> dict[str, Any]:
    """The method's fusion (section 5); the built-in variants fix some of its switches.

    Per view: smooth, subtract the smoothed background map (``background``), clamp, min-max;
    the video view is then aligned to the frame view; the used views are fused (weighted
    mean) and min-maxed again. Both views' contrastive maps are returned for diagnostics.
    """
    num_frames, size = obj_frame.shape[0], (obj_frame.shape[1], obj_frame.shape[2])

    def contrast(obj: Any, bg: Any, kernel: int, norm: str) -> Any:
        o = smooth(obj, kernel, sigma)
        c = o - smooth(bg, kernel, sigma) if background else o
        return minmax(c.clamp(0.0, 1.0) if clamp else c, norm)

    cv = align_video(contrast(obj_video, bg_video, kernel_video, norm_video), num_frames, size, temporal_stride)
    cf = contrast(obj_frame, bg_frame, kernel_frame, norm_frame)
    if use_video and use_frame:
        fused = (cv + cf) / 2 if weight_video == 0.5 else weight_video * cv + (1.0 - weight_video) * cf
    else:
        fused = cv if use_video else cf
    return {"contrastive_video": cv, "contrastive_frame": cf, "fused": minmax(fused, norm_final)}


_NO_SMOOTH = {"kernel_video": 1, "kernel_frame": 1}


def _builtin(name: str, description: str, *, params: tuple[str, ...] = tuple(BASE_DEFAULTS),
             **fixed: Any) -> Variant:
    structure = {"use_video": True, "use_frame": True, "background": True}
    return make_variant(name, decaf_fusion, description=description, params=params, fixed={**structure, **fixed})


#: the built-in variants (order = display order of `decaf variants list`)
VARIANT_TABLE: tuple[Variant, ...] = (
    _builtin("decaf", "full method: smoothed object-minus-background maps of both views, fused"),
    _builtin("no-smoothing", "full method without Gaussian smoothing",
             params=("clamp", *_NORMS, "weight_video"), **_NO_SMOOTH),
    _builtin("video-frame-no-contrast", "smoothed object maps of both views fused, no background subtraction",
             background=False),
    _builtin("contrastive-video", "video view only: smoothed object-minus-background map",
             use_frame=False, params=("kernel_video", "sigma", "clamp", "norm_video", "norm_final")),
    _builtin("contrastive-frame", "frame view only: smoothed object-minus-background map",
             use_video=False, params=("kernel_frame", "sigma", "clamp", "norm_frame", "norm_final")),
    _builtin("object-only", "raw object maps of both views fused (no smoothing, no background)",
             background=False, params=("clamp", *_NORMS, "weight_video"), **_NO_SMOOTH),
    _builtin("object-only-video", "raw object map of the video view only (no smoothing, no background)",
             use_frame=False, background=False, params=("clamp", "norm_video", "norm_final"), **_NO_SMOOTH),
    _builtin("object-only-frame", "raw object map of the frame view only (no smoothing, no background)",
             use_video=False, background=False, params=("clamp", "norm_frame", "norm_final"), **_NO_SMOOTH),
)


def _registry(table: Iterable[Variant]) -> Registry[Variant]:
    reg: Registry[Variant] = Registry("fusion variant", check=lambda v: isinstance(v, Variant))
    reg.update((v.name, v, v.description) for v in table)
    return reg


VARIANTS: Registry[Variant] = _registry(VARIANT_TABLE)


def names(pattern: str | None = None) -> list[str]:
    """Variant names, sorted, optionally filtered by a glob (``"object-*"``)."""
    return VARIANTS.names(pattern)


def ordered_names(pattern: str | None = None) -> list[str]:
    """Built-in variants in table order (``decaf`` first), then registered ones by name."""
    matching = set(names(pattern))
    builtin = [v.name for v in VARIANT_TABLE if v.name in matching]
    return builtin + sorted(matching - set(builtin))


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
    view repeated in time and bilinearly resized). ``contrastive_*``: what the variant's
    function reports (built-ins: smoothed, contrasted (object-only variants: object map
    alone) and normalized per view, as they enter the fusion, for both views even when the
    variant fuses only one; ``None`` where a registered function reports none). ``fused``:
    the variant's output, from the variant's registered function. For diagnostics and figures.
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
    resolved = [get(n) for n in variants]
    known = dict.fromkeys([*BASE_DEFAULTS, *(k for n in names() for k in get(n).params)])
    for key, values in grid.items():
        if key not in known:
            raise InputError(f"sweep key {key!r} is not a fusion parameter{did_you_mean(key, known, n=1, cutoff=0.6)}; "
                             f"valid: variant, {', '.join(known)}")
        if not values:
            raise InputError(f"sweep key {key!r} has no values")
    unused = [k for k in grid if not any(k in v.params for v in resolved)]
    if unused:
        raise InputError(f"sweep key {unused[0]!r} is not a parameter of any of {', '.join(variants)}")
    for variant in resolved:
        keys = [k for k in grid if k in variant.params]
        values = [[coerce_param(k, v, variant.signature_defaults[k]) for v in grid[k]] for k in keys]
        for combo in itertools.product(*values):
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


def _check_stride(temporal_stride: Any) -> int:
    try:
        if isinstance(temporal_stride, bool):
            raise TypeError
        stride = operator.index(temporal_stride)  # int, numpy or 0-d torch integers
    except TypeError:
        raise InputError(f"temporal_stride must be a positive integer, not {temporal_stride!r}") from None
    if stride < 1:
        raise InputError(f"temporal_stride must be a positive integer, not {temporal_stride!r}")
    return stride


def _check_inputs(obj_video: Any, bg_video: Any, obj_frame: Any, bg_frame: Any) -> tuple[Any, Any, Any, Any]:
    """The four maps as finite float32 tensors on one device, object and background shapes equal."""
    ov, bv = _as_maps("obj_video", obj_video), _as_maps("bg_video", bg_video)
    of, bf = _as_maps("obj_frame", obj_frame), _as_maps("bg_frame", bg_frame)
    if ov.shape != bv.shape:
        raise InputError(f"fusion inputs obj_video {tuple(ov.shape)} and bg_video {tuple(bv.shape)} differ in shape")
    if of.shape != bf.shape:
        raise InputError(f"fusion inputs obj_frame {tuple(of.shape)} and bg_frame {tuple(bf.shape)} differ in shape")
    return ov.to(of.device), bv.to(of.device), of, bf
