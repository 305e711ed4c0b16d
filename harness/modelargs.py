"""``--model-args K=V,...``: per-family model settings (lm-evaluation-harness's convention).

``parse_model_args("video_tokens_per_frame=768,fps=1.5,attn_implementation=eager")`` gives a
typed dict (ints, floats, booleans ``true``/``false``, ``none``, else strings). Which keys a
family accepts, and their types, the adapter class declares in ``MODEL_ARGS``;
:func:`check_model_args` rejects unknown keys by name and coerces values to those types. The
checked dict goes to the family's ``from_checkpoint`` and is recorded in the run manifest and
the attention-cache key.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from .errors import InputError
from .registry import close_matches

#: from_checkpoint parameters that are run settings, not model args
RESERVED = frozenset({"cls", "self", "checkpoint", "dtype", "device", "rollout", "reuse", "prefix_reuse", "options"})


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text.strip())
        except ValueError:
            pass
    return text.strip()


def parse_model_args(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """``"k=v,k2=v2"`` (or a mapping, as in sweep files) -> typed dict; empty -> ``{}``."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        out = {}
        for k, v in text.items():
            if not isinstance(k, str) or not k.isidentifier():
                raise InputError(f"model_args: key {k!r} is not a name")
            out[k] = _value(v) if isinstance(v, str) else v
        return out
    if not isinstance(text, str):
        raise InputError(f"model_args must be 'K=V,...' or a mapping, not {type(text).__name__}")
    out: dict[str, Any] = {}
    for part in (p for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise InputError(f"--model-args: {part.strip()!r} is not KEY=VALUE")
        if key in out:
            raise InputError(f"--model-args: {key!r} given twice")
        out[key] = _value(value)
    return out


def accepted_model_args(adapter_cls: type) -> dict[str, Any]:
    """The family's model args and types: its ``MODEL_ARGS``, else the keyword parameters of its
    loader (``_load``, else ``from_checkpoint``; types from their defaults, ``object`` when unknown)."""
    declared = getattr(adapter_cls, "MODEL_ARGS", None)
    if declared is not None:
        return dict(declared)
    sig = inspect.signature(getattr(adapter_cls, "_load", adapter_cls.from_checkpoint))  # built-ins load through _load
    return {n: (type(p.default) if p.default not in (None, inspect.Parameter.empty) else object)
            for n, p in sig.parameters.items() if n not in RESERVED and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_model_args(adapter_cls: type, args: Mapping[str, Any], family: str = "") -> dict[str, Any]:
    """``args`` checked against the family's accepted keys and coerced to their types."""
    known = accepted_model_args(adapter_cls)
    name = family or getattr(adapter_cls, "family", "") or adapter_cls.__name__
    unknown = sorted(set(args) - set(known))
    if unknown:
        def hint(key: str) -> str:
            close = [n for n in sorted(known) if n.startswith(key) or key.startswith(n)]
            close = close or close_matches(key, known, n=1, cutoff=0.6)
            return f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)

        hints = [hint(k) for k in unknown]
        raise InputError(f"unknown model arg(s) for {name}: {', '.join(hints)} (known: {', '.join(sorted(known)) or 'none'})")
    out = {}
    for k, v in args.items():
        want = known[k]
        if v is None or want is object or isinstance(v, want) and not (want is int and isinstance(v, bool)):
            out[k] = v
        elif want is float and isinstance(v, int) and not isinstance(v, bool):
            out[k] = float(v)
        elif want is str:
            out[k] = str(v)
        else:
            raise InputError(f"model arg {k}={v!r} for {name} must be {want.__name__}")
    return out


def format_model_args(args: Mapping[str, Any]) -> str:
    """The inverse of :func:`parse_model_args` for display (sorted keys)."""
    return ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(args.items()))
