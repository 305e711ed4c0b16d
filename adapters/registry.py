"""Adapters by name, through the ``decafbench.adapters`` entry-point group.

Built-in adapters are declared in decafbench's own ``pyproject.toml``; a third-party package
adds one by declaring an entry point in the same group, with no change here. Entry points
are read with :func:`importlib.metadata.entry_points` and loaded only when asked for (so
``decaf adapters list`` never imports torch), checked to be :class:`Adapter` subclasses, and
two distributions declaring the same name is an error rather than a silent override.

``create_adapter("qwen2-vl:tiny", options)`` splits ``FAMILY:CHECKPOINT`` (the checkpoint
may be ``tiny``, a local folder or a hub id) and calls the family's
``from_checkpoint(checkpoint, options)`` with one :class:`~.base.AdapterOptions`, switching
off the work-saving options the class does not declare (``supports_reuse``...). Lookup,
the base-class check and "did you mean" are :class:`decafbench.registry.Registry`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from decafbench.errors import RegistryError
from decafbench.registry import Registry

from .base import Adapter, AdapterOptions, resolve_options

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


def adapter_registry() -> Registry[type[Adapter]]:
    """The declared adapters as a lazy :class:`Registry` (read afresh: plugins come and go)."""
    registry: Registry[type[Adapter]] = Registry("adapter", base=Adapter)
    registry.update((e.name, e.target, e.distribution) for e in adapter_entries().values())
    return registry


def list_adapters(pattern: str | None = None) -> list[AdapterEntry]:
    """Declared adapters sorted by name, optionally filtered by a glob (``"qwen*"``)."""
    entries = adapter_entries()
    return [entries[n] for n in adapter_registry().names(pattern)]


def get_adapter_class(name: str) -> type[Adapter]:
    """Import and check the adapter class declared under ``name``."""
    return adapter_registry().get(name)


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


def supported_options(cls: type[Adapter], options: AdapterOptions) -> AdapterOptions:
    """``options`` with the work-saving switches the class does not declare turned off."""
    reuse = options.reuse and cls.supports_reuse
    return replace(options, reuse=reuse, prefix_reuse=reuse and options.prefix_reuse and cls.supports_prefix_reuse)


def create_adapter(spec: str, options: AdapterOptions | None = None, **kwargs: Any) -> Adapter:
    """Build an adapter from ``"family:checkpoint"`` (``qwen2-vl:tiny``, ``qwen2-vl:/models/x``,
    ``qwen2-vl:Qwen/Qwen2-VL-2B-Instruct``) and one :class:`AdapterOptions`. Loose keywords
    (for scripts and tests) fold into the options: option fields, else ``model_args``.
    """
    family, checkpoint = parse_adapter_name(spec)
    cls = get_adapter_class(family)
    if getattr(cls.from_checkpoint, "__func__", None) is Adapter.from_checkpoint.__func__:
        raise RegistryError(f"adapter {family!r} ({cls.__name__}) does not implement from_checkpoint(checkpoint, options)")
    return cls.from_checkpoint(checkpoint, supported_options(cls, resolve_options(options, kwargs)))
