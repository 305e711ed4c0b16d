"""Errors a user can act on.

Every problem with the user's input (a missing file, a corrupt PNG, a malformed JSON field,
an unknown name) is raised as :class:`InputError` with one line that names the file or field.
The CLI prints that line and exits with code 2; library callers can catch it.
"""

from __future__ import annotations

from pathlib import Path


class DecafError(Exception):
    """Base class of decafbench's own errors."""


class InputError(DecafError):
    """Bad user input: one line naming the file or field. CLI exit code 2."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None):
        message = " ".join(str(message).split())  # always one line
        if path is not None:
            message = f"{path}: {message}"
        super().__init__(message)
        self.path = None if path is None else str(path)


class RegistryError(InputError):
    """Unknown or colliding registry name."""
