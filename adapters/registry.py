"""Adapters by name, through the ``decafbench.adapters`` entry-point group.

Built-in adapters are declared in decafbench's own ``pyproject.toml``; a third-party package
adds one by declaring an entry point in the same group, with no change here. Entry points
are read with :func:`importlib.metadata.entry_points` and loaded only when asked for (so
``decaf adapters list`` never imports torch), checked to be :class:`Adapter` subclasses, and
two distributions declaring the same name is an error rather than a silent override.

``create_adapter("qwen2-vl:tiny")`` splits ``FAMILY:CHECKPOINT`` (the checkpoint may be
``tiny``, a local folder or a hub id; it is passed through to the family's
``from_checkpoint``).
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from decafbench.errors import RegistryError

from .base import Adapter

if TYPE_CHECKING:  # pragma: no cover
    from decafbench.rollout import RolloutConfig

GROUP = "decafbench.adapters"


@dataclass(frozen=True)
class AdapterEntry:
    """One declared adapter: name, ``module:attr`` target and the distribution declaring it."""

    name: str
    target: str
    distribution: str


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=GROUP))


def _dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?"
    try:
        return dist.metadata["Name"] or dist.name
    except Exception:  # noqa: BLE001 - broken metadata must not hide the adapter
        return getattr(dist, "name", "?") or "?"


def adapter_entries() -> dict[str, AdapterEntry]:
    """Every declared adapter by name; a name declared by two distributions is an error.

    The same distribution seen twice (e.g. an editable install listed on two paths) with
    the same target is one entry, not a collision.
    """
    found: dict[str, AdapterEntry] = {}
    for ep in _entry_points():
        entry = AdapterEntry(ep.name, ep.value, _dist_name(ep))
        old = found.get(ep.name)
        if old is not None and old != entry:
            raise RegistryError(
                f"adapter {ep.name!r} is declared twice: {old.target} ({old.distribution}) and "
                f"{entry.target} ({entry.distribution}); uninstall one of the distributions"
            )
        found[ep.name] = entry
    return found


def list_adapters(pattern: str | None = None) -> list[AdapterEntry]:
    """Declared adapters sorted by name, optionally filtered by a glob (``"qwen*"``)."""
    entries = adapter_entries()
    return [entries[n] for n in sorted(entries) if pattern is None or fnmatch.fnmatch(n, pattern)]


def _unknown(name: str, known: list[str]) -> RegistryError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return RegistryError(f"unknown adapter {name!r}{hint} (known: {', '.join(known) or 'none'})")


def get_adapter_class(name: str) -> type[Adapter]:
    """Import and check the adapter class declared under ``name``."""
    from decafbench.registry import load_target

    entries = adapter_entries()
    if name not in entries:
        raise _unknown(name, sorted(entries))
    obj = load_target(entries[name].target)
    if not (isinstance(obj, type) and issubclass(obj, Adapter)):
        raise RegistryError(f"adapter {name!r} resolves to {obj!r}, not a subclass of Adapter")
    return obj


def parse_adapter_name(spec: str) -> tuple[str, str]:
    """``"family:checkpoint"`` -> (family, checkpoint); the checkpoint defaults to ``tiny``.

    Only the first ``:`` splits, so hub ids and local paths pass through unchanged.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise RegistryError("adapter name is empty (expected FAMILY:CHECKPOINT, e.g. qwen2-vl:tiny)")
    family, sep, checkpoint = spec.strip().partition(":")
    if not family:
        raise RegistryError(f"adapter {spec!r} has no family (expected FAMILY:CHECKPOINT, e.g. qwen2-vl:tiny)")
    return family, (checkpoint if sep and checkpoint else "tiny")


def create_adapter(
    spec: str,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    rollout: "RolloutConfig | None" = None,
    **options: Any,
) -> Adapter:
    """Build an adapter from ``"family:checkpoint"`` (``qwen2-vl:tiny``, ``qwen2-vl:/models/x``,
    ``qwen2-vl:Qwen/Qwen2-VL-2B-Instruct``); ``options`` go to the family's ``from_checkpoint``.
    """
    from decafbench.rollout import RolloutConfig

    family, checkpoint = parse_adapter_name(spec)
    cls = get_adapter_class(family)
    factory = getattr(cls, "from_checkpoint", None)
    if factory is None:
        raise RegistryError(f"adapter {family!r} ({cls.__name__}) has no from_checkpoint()")
    return factory(checkpoint, dtype=dtype, device=device, rollout=rollout or RolloutConfig(), **options)
