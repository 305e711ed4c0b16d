"""A process pool whose workers die with their parent.

``ProcessPoolExecutor`` workers notice a dead parent only when they next talk to it; a worker
busy scoring a long video after its parent was killed with ``kill -9`` keeps running (and
holding memory and the record's lock file descriptor) until it finishes. Each worker here asks
the kernel to send it SIGKILL when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)`` through
ctypes) and, everywhere, runs a watchdog thread that exits the worker as soon as its parent
pid changes (re-parenting to init or a subreaper).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

PR_SET_PDEATHSIG = 1
WATCHDOG_SECONDS = 0.5


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        import time

        while True:
            time.sleep(WATCHDOG_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _init(parent_pid: int, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    _die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def pool_context():
    """fork is cheapest, but not safe once torch (with its thread pools) is loaded."""
    return mp.get_context("fork" if "torch" not in sys.modules and sys.platform != "win32" else "spawn")


def parent_bound_pool(workers: int, initializer: Callable[..., Any] | None = None,
                      initargs: tuple = ()) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` processes that exit when this process dies."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=pool_context(), initializer=_init,
                               initargs=(os.getpid(), initializer, tuple(initargs)))
