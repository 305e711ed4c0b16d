"""Writing files so that a reader never sees half of one, with the process umask's modes.

The lowest layer of file output: every file decafbench writes (run records, masks, caches,
converted datasets, figures) goes through :func:`atomic_write_bytes` (a temporary file in the
same folder, then a rename). JSON is written strictly: NaN and infinities become ``null``.
Imports nothing from decafbench but the errors module, so readers and writers at any layer
can use it (run records live in :mod:`decafbench.runstore`, above).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (Linux); elsewhere the
    classic set-and-restore."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | Path, mode: int = 0o666) -> None:
    """Give a file made by ``mkstemp`` (always 0600) the mode a plain ``open`` would give it,
    so records in shared lab folders are readable by the group when the umask says so."""
    os.chmod(path, mode & ~current_umask())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    from .errors import InputError

    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder; give a file name to write", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except (FileExistsError, NotADirectoryError):
        raise InputError("cannot write here: a parent of it is a file, not a folder", path) from None
    except OSError as exc:
        raise InputError(f"cannot write ({exc.strerror or exc})", path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return json_safe(obj.item())
        if isinstance(obj, np.ndarray):
            return json_safe(obj.tolist())
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN / inf float replaced by None: JSON has no NaN (``NaN`` in a file
    breaks strict readers such as browsers' ``JSON.parse`` and jq)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    try:
        import numpy as np

        if isinstance(obj, np.floating):
            return float(obj) if np.isfinite(obj) else None
    except ImportError:  # pragma: no cover
        pass
    return obj


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes null for NaN / inf and refuses anything else non-standard."""
    return json.dumps(json_safe(obj), allow_nan=False, default=_json_default, **kwargs)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json_dumps(obj, indent=2, sort_keys=False) + "\n")
