"""User-facing run settings -> :class:`~decafbench.config.RunConfig`.

One table, :data:`SETTINGS`, names every setting once; the CLI options (``--frames``,
``--final-score-threshold``) and a sweep file's ``[run]`` keys (``frames``,
``final_score_threshold``) are the same names. Types are checked here, with a one-line
error naming the setting; ranges and names are checked by ``RunConfig.validate``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Mapping

from .errors import InputError
from .registry import did_you_mean

#: setting -> (type, help). Types: str, path, int, float, bool, dict, plus ``?`` for "may be
#: empty (None)", ``floats`` (one value or a list: crossed into SAM2 mask settings) and the
#: ``variants`` / ``masks`` lists.
SETTINGS: dict[str, tuple[str, str]] = {
    "benchmark": ("str", "benchmark name (decaf benchmarks list)"),
    "root": ("path?", "dataset root (default: the benchmark's own)"),
    "split": ("str?", "split (default: the benchmark's first)"),
    "model": ("str", "ADAPTER[:CHECKPOINT]; checkpoint a local folder, a hub id or 'tiny'"),
    "model_args": ("dict", "extra keyword arguments of the adapter (a table, JSON object or k=v,k=v)"),
    "dtype": ("str", "model dtype: auto (bfloat16 on CUDA, float32 elsewhere), float32, bfloat16, float16"),
    "device": ("str", "cpu, cuda, cuda:N or mps"),
    "frames": ("int", "key frames sampled uniformly per video"),
    "prompts": ("str", "prompt wording version"),
    "max_new_tokens": ("int", "tokens generated per prompt"),
    "rollout_start": ("int?", "first rolled-out layer (default N//2)"),
    "rollout_end": ("int?", "end layer, exclusive (default N)"),
    "head_weighting": ("str", "vmax, mean or max"),
    "residual": ("float", "identity weight r in R = (1-r) A + r I, in [0, 1]"),
    "variant": ("variants", "fusion variants: NAME or NAME:key=value,..."),
    "masks": ("masks", "coarse, sam2, keypoints or both (or a list of kinds)"),
    "point_threshold": ("floats", "tau_pq: attention threshold of SAM2 point candidates"),
    "final_score_threshold": ("floats", "tau_trk: final tracklet score threshold"),
    "sam2": ("str", "SAM2 as CONFIG:CHECKPOINT or 'tiny'"),
    "out": ("path", "folder of run records (one per variant and mask kind)"),
    "cache": ("path?", "attention cache folder (empty or false: no cache)"),
    "seed": ("int", "random seed"),
    "limit": ("int?", "only the first N expressions"),
    "reuse": ("bool", "encode the visual input once per view"),
    "prefix_reuse": ("auto-bool", "prefill the prompts' shared prefix once per view (unset: on in float32 only)"),
    "allow_failures": ("bool", "exit 0 even when some expressions failed"),
    "executor": ("str", "local (this process) or ray (one actor per worker)"),
    "workers": ("int?", "workers (Ray actors) of executor ray; default 2"),
    "ray_address": ("str?", "join this Ray cluster (HOST:PORT); default: start a local Ray instance"),
    "gpus_per_worker": ("float", "GPUs each Ray worker reserves (a fraction shares a GPU)"),
}

DEFAULTS: dict[str, Any] = {
    "benchmark": "embedded", "root": None, "split": None, "model": "qwen2-vl:tiny", "model_args": {},
    "dtype": "auto", "device": "cpu", "frames": 16, "prompts": "v0", "max_new_tokens": 128,
    "rollout_start": None, "rollout_end": None, "head_weighting": "vmax", "residual": 0.5,
    "variant": ["decaf"], "masks": "both", "point_threshold": 0.8, "final_score_threshold": 0.8,
    "sam2": "tiny", "out": Path("results/embedded"), "cache": Path("results/cache"), "seed": 0,
    "limit": None, "reuse": True, "prefix_reuse": None, "allow_failures": False,
    "executor": "local", "workers": None, "ray_address": None, "gpus_per_worker": 0.0,
}


def where(key: str, source: str | None) -> str:
    return f"--{key.replace('_', '-')}" if source is None else key


def _fail(key: str, source: str | None, message: str) -> InputError:
    return InputError(f"{where(key, source)}: {message}", source)


def build(cls: type, mapping: Mapping[str, Any], source: str | None):
    """Check names and types of ``mapping`` and build a ``cls`` (RunConfig)."""
    from decafbench.rollout import RolloutConfig

    unknown = [k for k in mapping if k not in SETTINGS]
    if unknown:
        hint = did_you_mean(str(unknown[0]), SETTINGS, n=1, cutoff=0.6)
        raise InputError(f"unknown setting {unknown[0]!r}{hint} (known: {', '.join(SETTINGS)})", source)
    s = {k: _coerce(k, v, source) for k, v in {**DEFAULTS, **mapping}.items()}
    return cls(
        benchmark=s["benchmark"], root=s["root"], split=s["split"], model=s["model"], model_args=dict(s["model_args"]),
        dtype=s["dtype"], device=s["device"], num_frames=s["frames"], prompt_version=s["prompts"],
        max_new_tokens=s["max_new_tokens"],
        rollout=RolloutConfig(s["rollout_start"], s["rollout_end"], s["head_weighting"], s["residual"]),
        variants=tuple(variant_specs(s["variant"], source)),
        masks=tuple(mask_specs(s["masks"], s["point_threshold"], s["final_score_threshold"], source)),
        sam2=s["sam2"], out=s["out"], cache_dir=s["cache"], seed=s["seed"], limit=s["limit"], reuse=s["reuse"],
        prefix_reuse=s["prefix_reuse"], allow_failures=s["allow_failures"], executor=s["executor"],
        workers=s["workers"], ray_address=s["ray_address"], gpus_per_worker=s["gpus_per_worker"], source=source,
    )


# -- types ------------------------------------------------------------------------------------------
def _coerce(key: str, value: Any, source: str | None) -> Any:
    kind = SETTINGS[key][0]
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if optional and (value is None or value == "" or value is False):
        return None
    try:
        return _COERCE[kind](value)
    except (TypeError, ValueError) as exc:
        raise _fail(key, source, f"expected {_EXPECTED[kind]}, got {value!r}{_detail(exc)}") from None


def _detail(exc: Exception) -> str:
    return f" ({exc})" if str(exc) and not str(exc).startswith("!") else ""


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("!")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("!")
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("!")
    return value.strip()


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("!")
    return value


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    return Path(_str(value))


def _floats(value: Any) -> tuple[float, ...]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError("an empty list")
    return tuple(_float(v) for v in values)


def _dict(value: Any) -> dict:
    """A mapping, a JSON object or ``k=v,k=v`` (values read as JSON where they parse)."""
    if isinstance(value, Mapping):
        return dict(value)
    text = _str(value)
    if text.startswith("{"):
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise TypeError("!")
        return obj
    out = {}
    for item in text.split(","):
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"{item!r} is not key=value")
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v.strip()
    return out


def _list(value: Any) -> list:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values:
        raise TypeError("!")
    return list(values)


def _kinds(value: Any) -> list:
    """Mask kinds: a list, or one string of comma-separated kinds (``--masks coarse,keypoints``)."""
    if isinstance(value, str):
        return _list([k.strip() for k in value.split(",")])
    return _list(value)


def _auto_bool(value: Any) -> bool | None:
    """A boolean, or None (unset: decided from other settings, e.g. prefix reuse from the dtype)."""
    return None if value is None or value == "auto" else _bool(value)


_COERCE = {"str": _str, "path": _path, "int": _int, "float": _float, "bool": _bool, "auto-bool": _auto_bool, "dict": _dict,
           "floats": _floats, "variants": _list, "masks": _kinds}
_EXPECTED = {"str": "a non-empty string", "path": "a path", "int": "an integer", "float": "a number",
             "bool": "true or false", "auto-bool": "true, false or auto", "dict": "a table of arguments",
             "floats": "a number or a list of numbers",
             "variants": "a variant name or a list of them", "masks": "coarse, sam2, keypoints, both or a list of kinds"}


# -- lists -------------------------------------------------------------------------------------------
def variant_specs(values: list, source: str | None) -> list:
    """``NAME`` or ``NAME:key=value,...`` (or ready VariantSpecs) -> VariantSpec, params coerced."""
    from . import fusion
    from .config import VariantSpec

    specs = []
    for value in values:
        if isinstance(value, VariantSpec):
            specs.append(value)
            continue
        if not isinstance(value, str):
            raise _fail("variant", source, f"expected a variant name, got {value!r}")
        name, _, rest = value.strip().partition(":")
        try:
            params = fusion.parse_params(name, [p for p in rest.split(",") if p]) if rest else {}
            fusion.get(name)
        except InputError as exc:
            raise _fail("variant", source, str(exc)) from None
        specs.append(VariantSpec(name, tuple(sorted(params.items()))))
    return specs


def mask_specs(kinds: list, point: tuple[float, ...], final: tuple[float, ...], source: str | None) -> list:
    """Mask kinds crossed with every (point, final score) threshold pair for ``sam2``."""
    from .config import MASK_KINDS, MaskSpec

    if isinstance(kinds, (list, tuple)) and len(kinds) == 1 and kinds[0] == "both":
        kinds = ["coarse", "sam2"]
    unknown = [k for k in kinds if k not in MASK_KINDS]
    if unknown:
        raise _fail("masks", source, f"must be coarse, sam2, keypoints or both, not {unknown[0]!r}")
    specs = []
    for kind in dict.fromkeys(kinds):
        if kind in ("coarse", "keypoints"):
            specs.append(MaskSpec(kind))
        else:
            specs += [MaskSpec("sam2", pq, trk) for pq, trk in itertools.product(point, final)]
    return specs
