"""The one line each bench script prints for ``bench/run_all.py``'s summary table.

Why a marked stdout line (not a file): a bench script stays runnable on its own, and
``run_all`` reads it from the output it already relays; nothing to clean up afterwards.
"""

from __future__ import annotations

import json

MARK = "@@bench-summary "


def emit(bench: str, headline: str) -> None:
    """Print ``headline`` (the ratio or figure that matters) for the summary table."""
    print(MARK + json.dumps({"bench": bench, "headline": headline}), flush=True)


def parse(line: str) -> dict | None:
    """The summary of a marked line, else None."""
    if not line.startswith(MARK):
        return None
    try:
        out = json.loads(line[len(MARK):])
    except json.JSONDecodeError:
        return None
    return out if isinstance(out, dict) else None
