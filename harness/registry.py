"""A small typed, lazy registry (the good parts of lm-evaluation-harness's).

Entries are declared explicitly as ``name -> "module:attr"`` targets (or objects) and are
imported only when first asked for, so listing names never imports torch. Registering the
same name twice is an error; an unknown name gets a "did you mean" hint; a resolved target
is checked against the registry's base class (or protocol check) before it is returned.
Nothing registers itself by being imported.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, TypeVar

from .errors import RegistryError

T = TypeVar("T")


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
    """Named entries of one kind (benchmarks, adapters, fusion variants, prompt sets...)."""

    kind: str
    base: type | None = None
    check: Callable[[Any], bool] | None = None
    _entries: dict[str, _Entry] = field(default_factory=dict)

    def add(self, name: str, target: Any, description: str = "") -> None:
        """Declare ``name``; ``target`` is an object or a lazy ``"module:attr"`` string."""
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = _Entry(target, description)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by a glob such as ``"qwen*"``."""
        names = sorted(self._entries)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def describe(self, name: str) -> str:
        return self._lookup(name).description

    def _lookup(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def get(self, name: str) -> T:
        entry = self._lookup(name)
        if entry.loaded is None:
            obj = load_target(entry.target) if isinstance(entry.target, str) else entry.target
            self._validate(name, obj)
            entry.loaded = obj
        return entry.loaded

    def _validate(self, name: str, obj: Any) -> None:
        if self.base is not None:
            ok = isinstance(obj, type) and issubclass(obj, self.base)
            if not ok:
                raise RegistryError(f"{self.kind} {name!r} resolves to {obj!r}, not a subclass of {self.base.__name__}")
        if self.check is not None and not self.check(obj):
            raise RegistryError(f"{self.kind} {name!r} resolves to {obj!r}, which fails the {self.kind} check")

    def update(self, items: Iterable[tuple[str, Any, str]]) -> None:
        for name, target, description in items:
            self.add(name, target, description)
