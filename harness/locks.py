"""One writer per run record folder.

Two processes writing the same record would interleave parts and race on the table and
manifest. :class:`RecordLock` takes an exclusive ``flock`` on ``RUN_DIR/.lock`` and writes the
holder's pid, host and command into it. The kernel drops a ``flock`` when its process dies,
however it dies (kill -9 included), so a lock file left by a dead process is simply taken
over; a live holder makes the second process stop with one line naming it (exit 2).

Where ``fcntl`` does not exist (Windows) the lock is a no-op.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path

from .errors import InputError

LOCK_NAME = ".lock"

try:  # pragma: no cover - platform dependent
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


#: locks this process holds: real path of the lock file -> [fd, holders, owner pid]. A second writer of the
#: same folder in the same process (a test resuming in-process, a report re-reading) shares it.
_HELD: dict[str, list] = {}


@atexit.register
def _release_all() -> None:
    """A normal exit (even on an error) removes the lock files this process holds."""
    for key, (fd, _, owner) in list(_HELD.items()):
        if owner != os.getpid():  # a forked child exiting: the lock is its parent's
            continue
        try:
            os.unlink(key)
        except OSError:
            pass
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


class RecordLockedError(InputError):
    """Another live process is writing this record folder."""


class RecordLock:
    """Exclusive lock on one record folder; ``acquire()`` / ``release()`` or a ``with`` block."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._key: str | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict:
        """What the lock file says about its holder (may be stale or empty)."""
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self) -> "RecordLock":
        if self._fd is not None or fcntl is None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.path)
        if key in _HELD:
            _HELD[key][1] += 1
            self._fd, self._key = _HELD[key][0], key
            return self
        for _ in range(20):  # retry when the file we locked was unlinked by a releasing holder
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                h = self.holder()
                who = f"pid {h.get('pid', '?')} on host {h.get('host', '?')}"
                since = f" since {h['started']}" if h.get("started") else ""
                raise RecordLockedError(f"record folder is in use by {who}{since}; wait for it to finish or "
                                        "write to another --out", self.folder) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "command": " ".join(sys.argv[:8])}
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(info) + "\n").encode())
            self._fd, self._key = fd, key
            _HELD[key] = [fd, 1, os.getpid()]
            return self
        raise RecordLockedError("could not take the record lock (it keeps changing)", self.folder)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        entry = _HELD.get(self._key or "")
        if entry is not None:
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _HELD[self._key]
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: a waiter then retries on a new file
        except OSError:
            pass
        os.close(fd)

    def __enter__(self) -> "RecordLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.release()
        except Exception:
            pass
