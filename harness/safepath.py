"""Ids from dataset files and run records are data, never path parts.

Two guards, used together:

* :func:`check_id` at the reader boundary: a video id, expression id or frame name read from
  a dataset file must be a single, plain path component (not empty, no ``/`` or ``\\``, not
  ``.`` or ``..``, no NUL or other control character, not absolute, not a Windows drive). A
  bad one is one :class:`InputError` line naming the file and the field.
* :func:`safe_join` at every read or write that builds a path from such ids: joins the parts
  under a root and checks that the resolved path (symlinks followed) stays inside the
  resolved root, whatever the parts were and wherever they came from.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import InputError

__all__ = ["check_id", "id_problem", "inside", "safe_join"]

_BAD_CHAR = re.compile(r"[/\\\x00-\x1f\x7f]")


def id_problem(value: object) -> str | None:
    """Why ``value`` cannot be used as one path component, or None if it can."""
    if not isinstance(value, str):
        return f"should be a string, got {type(value).__name__}"
    if value == "":
        return "is empty"
    if value in (".", ".."):
        return f"is {value!r}"
    m = _BAD_CHAR.search(value)
    if m is not None:
        bad = m.group()
        what = {"/": "a path separator '/'", "\\": "a path separator '\\'", "\0": "a NUL byte"}.get(
            bad, f"a control character {bad!r}")
        return f"contains {what}"
    if len(value) >= 2 and value[1] == ":" and value[0].isascii() and value[0].isalpha():
        return "is an absolute path (a drive letter)"
    if len(value) > 63 and len(value.encode("utf-8", "surrogatepass")) > 255:
        return "is longer than 255 bytes (a file name's limit)"
    return None


def check_id(value: object, where: str, path: str | Path | None = None) -> str:
    """``value`` if it is a safe single path component; else InputError naming file and field."""
    if value.__class__ is str and 0 < len(value) <= 63 and value.isalnum() and value.isascii():
        return value  # the common case (synth000, 00042, 3): nothing to look at
    problem = id_problem(value)
    if problem is not None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise InputError(f"field {where} = {shown} {problem}; ids must be plain names, not paths", path)
    return value  # type: ignore[return-value]


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    """The resolved root (cached: evaluate joins every frame under the same few roots)."""
    return os.path.realpath(root)


def inside(root: str | Path, path: str | Path) -> bool:
    """Whether ``path`` resolves (symlinks followed) at or under the resolved ``root``."""
    base = _real_root(str(root))
    real = os.path.realpath(path)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def safe_join(root: str | Path, *parts: str, what: str = "path") -> Path:
    """``root / part / ...``, refused unless the result stays inside ``root``.

    Each part must be a relative path without ``..`` components (a part may contain ``/``
    where it is ours, e.g. ``"Annotations/x"``); the joined path is resolved (symlinks
    followed, as far as it exists) and must lie at or under the resolved root.
    """
    root = Path(root)
    joined = root
    for part in parts:
        part = str(part)
        if "\0" in part:
            raise InputError(f"{what} part {part!r} contains a NUL byte", root)
        p = PurePosixPath(part.replace("\\", "/"))
        if p.is_absolute() or PureWindowsPath(part).drive or ".." in p.parts or part == "":
            raise InputError(f"{what} part {part!r} would leave the folder", root)
        joined = joined / part
    if not inside(root, joined):
        raise InputError(f"{what} {str(joined)!r} resolves to {os.path.realpath(joined)!r}, outside the folder",
                         root)
    return joined
