"""One aggregated progress display for a run, whatever executes it.

On a terminal: one rich bar (expressions done of total, failures, expressions per second of
each worker, elapsed, ETA). Anywhere else (a log file, Slurm's output, CI): a plain line at
start, at least every ``interval`` seconds while the run goes (a timer thread, so a long job
cannot silence it), and at the end. The local and the Ray executor feed it the same events.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TextIO


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class RunProgress:
    """``start(total)``, then ``advance(worker, failed=...)`` per finished expression; ``close()``."""

    def __init__(self, label: str = "decaf run", console: Any = None, interval: float = 30.0,
                 plain: bool | None = None, stream: TextIO | None = None):
        from rich.console import Console

        self.label = label
        self.console = console or Console(stderr=True)
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.interval = interval
        self.stream = stream
        self.total: int | None = None
        self.done = 0
        self.failed = 0
        self.status = ""
        self.per_worker: dict[Any, int] = {}
        self.t0 = time.monotonic()
        self._t_first: dict[Any, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = None
        self._task: Any = None

    # -- events -----------------------------------------------------------------------------------
    def __enter__(self) -> "RunProgress":
        if self.plain:
            self._thread = threading.Thread(target=self._ticker, name="decaf-progress", daemon=True)
            self._thread.start()
        else:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                                 TaskProgressColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=self.console)
            self._bar.__enter__()
            self._task = self._bar.add_task("run", total=None, info="", start=False)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, total: int) -> None:
        with self._lock:
            self.total = total
            self.t0 = time.monotonic()
        if self._bar is not None:
            self._bar.update(self._task, total=total)
            self._bar.start_task(self._task)
        else:
            self._line()

    def set_status(self, text: str) -> None:
        """A short state (loading models, waiting for workers) shown until the first result."""
        self.status = text
        self._refresh()

    def advance(self, worker: Any = 0, n: int = 1, failed: int = 0) -> None:
        now = time.monotonic()
        with self._lock:
            self.done += n
            self.failed += failed
            self.per_worker[worker] = self.per_worker.get(worker, 0) + n
            self._t_first.setdefault(worker, self.t0)
            self.status = ""
        if self._bar is not None:
            self._bar.advance(self._task, n)
        self._refresh(now)

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=1.0)
            self._thread = None
            self._line(final=True)
        if self._bar is not None:
            self._refresh()
            self._bar.__exit__(None, None, None)
            self._bar = None

    # -- rendering ----------------------------------------------------------------------------------
    def rates(self, now: float | None = None) -> dict[Any, float]:
        """Expressions per second of each worker since the run started."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.t0, 1e-9)
        return {w: n / elapsed for w, n in sorted(self.per_worker.items(), key=lambda kv: str(kv[0]))}

    def eta(self, now: float | None = None) -> float | None:
        rate = sum(self.rates(now).values())
        if self.total is None or rate <= 0:
            return None
        return max(self.total - self.done, 0) / rate

    def info(self, now: float | None = None) -> str:
        parts = [f"{self.failed} failed"] if self.failed else []
        rates = self.rates(now)
        if len(rates) > 1:
            parts.append(" ".join(f"w{w} {r:.2f}/s" for w, r in rates.items()))
        elif rates:
            parts.append(f"{next(iter(rates.values())):.2f} expr/s")
        if self.status:
            parts.append(self.status)
        return "  ".join(parts)

    def line(self, now: float | None = None) -> str:
        """The plain progress line."""
        now = time.monotonic() if now is None else now
        total = "?" if self.total is None else str(self.total)
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        rates = self.rates(now)
        per = ", ".join(f"w{w} {r:.2f}/s" for w, r in rates.items())
        text = (f"{self.label}: {self.done}/{total} expressions{pct}, {self.failed} failed, "
                f"{sum(rates.values()):.2f} expr/s" + (f" [{per}]" if len(rates) > 1 else "")
                + f", elapsed {_clock(now - self.t0)}, ETA {_clock(self.eta(now))}")
        return text + (f" ({self.status})" if self.status else "")

    def _refresh(self, now: float | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, info=self.info(now))

    def _line(self, final: bool = False) -> None:
        text = self.line()
        if self.stream is not None:
            print(text, file=self.stream, flush=True)
        else:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _ticker(self) -> None:
        while not self._stop.wait(self.interval):
            self._line()
