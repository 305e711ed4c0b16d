"""A small typed, lazy registry (the good parts of lm-evaluation-harness's).

Entries are declared explicitly as ``name -> "module:attr"`` targets (or objects) and are
imported only when first asked for, so listing names never imports torch. Registering the
same name twice is an error; an unknown name gets a "did you mean" hint; a resolved target
is checked against the registry's base class (or protocol check) before it is returned.
Nothing registers itself by being imported.

``Registry[T]`` is generic in what :meth:`Registry.get` returns: ``Registry[type[Benchmark]]``
for classes, ``Registry[Variant]`` for objects. :func:`did_you_mean` is the one place that
suggests close names (registries, fusion parameters, sweep keys).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar, cast

from .errors import RegistryError

T = TypeVar("T")


def close_matches(name: str, known: Iterable[str], *, n: int = 3, cutoff: float = 0.5) -> list[str]:
    """The names in ``known`` close to ``name``, best first (for messages built differently)."""
    return difflib.get_close_matches(str(name), list(known), n=n, cutoff=cutoff)


def did_you_mean(name: str, known: Iterable[str], *, n: int = 3, cutoff: float = 0.5) -> str:
    """``"; did you mean 'x', 'y'?"`` for the names in ``known`` close to ``name``, else ``""``.

    The only "did you mean" in decafbench: every unknown-name message is built with it.
    """
    close = close_matches(name, known, n=n, cutoff=cutoff)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def load_target(target: str) -> Any:
    """Import ``"package.module:attr"`` (attr may be dotted) and return the attribute."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise RegistryError(f"target {target!r} is not of the form 'module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import {module_name!r} for target {target!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise RegistryError(f"target {target!r}: {module_name} has no attribute {attr!r}") from exc
    return obj


@dataclass
class _Entry:
    target: Any
    description: str = ""
    loaded: Any = None


@dataclass
class Registry(Generic[T]):
    """Named entries of one kind (benchmarks, adapters, fusion variants, prompt sets...).

    ``base``: a resolved entry must be a subclass of it; ``check``: a predicate it must pass.
    """

    kind: str
    base: type | None = None
    check: Callable[[Any], bool] | None = None
    _entries: dict[str, _Entry] = field(default_factory=dict)

    def add(self, name: str, target: T | str, description: str = "") -> None:
        """Declare ``name``; ``target`` is an object or a lazy ``"module:attr"`` string.

        An object target is checked now (a wrong registration fails where it is made); a string
        target is checked when first loaded.
        """
        if not isinstance(name, str) or not name.strip():
            raise RegistryError(f"{self.kind} name must be a non-empty string, not {name!r}")
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        entry = _Entry(target, description)
        if not isinstance(target, str):
            self._validate(name, target)
            entry.loaded = target
        self._entries[name] = entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (unknown names raise, with a hint)."""
        self._lookup(name)
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by a glob such as ``"qwen*"``."""
        names = sorted(self._entries)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def describe(self, name: str) -> str:
        return self._lookup(name).description

    def unknown(self, name: str) -> RegistryError:
        """The one-line error for an unknown ``name``: close matches, then every known name."""
        known = ", ".join(self.names()) or "none"
        return RegistryError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)} (known: {known})")

    def _lookup(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self.unknown(name) from None

    def get(self, name: str) -> T:
        entry = self._lookup(name)
        if entry.loaded is None:
            obj = load_target(entry.target) if isinstance(entry.target, str) else entry.target
            self._validate(name, obj)
            entry.loaded = obj
        return cast(T, entry.loaded)

    def _validate(self, name: str, obj: Any) -> None:
        if self.base is not None:
            ok = isinstance(obj, type) and issubclass(obj, self.base)
            if not ok:
                raise RegistryError(f"{self.kind} {name!r} resolves to {obj!r}, not a subclass of {self.base.__name__}")
        if self.check is not None and not self.check(obj):
            raise RegistryError(f"{self.kind} {name!r} resolves to {obj!r}, which fails the {self.kind} check")

    def update(self, items: Iterable[tuple[str, T | str, str]]) -> None:
        for name, target, description in items:
            self.add(name, target, description)
