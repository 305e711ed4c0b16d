"""Run records: a directory with ``manifest.json`` and ``per_expression.csv``.

Layout of ``RUN_DIR``::

    manifest.json          config, versions, git commit, seed, machine, summary
    per_expression.csv     one row per expression: video, exp_id, split, J, F, JF (fractions
                           0..1, full precision), A, R where they apply, error, diagnostics
    parts/                 one small JSON per finished expression, written atomically while
                           the run goes; a rerun skips what is there (resume)
    predictions/           (decaf run) VIDEO/EXP_ID/FRAME.png, the layout decaf evaluate reads

Every file is written to a temporary name in the same folder and renamed, so an interrupted
run never leaves a half-written file. Statistics and leaderboards read only records.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

# atomic writes live in the low-level decafbench.atomicio; re-exported, as records are written with them
from .atomicio import (  # noqa: F401
    apply_umask,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    current_umask,
    json_dumps,
    json_safe,
)
from .errors import InputError
from .metric_registry import names as _metric_names

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TABLE = "per_expression.csv"
PARTS = "parts"
#: first columns of every per-expression table, in this order
KEY_COLUMNS = ("video", "exp_id", "split")
#: every registered metric (decafbench.metric_registry), in column order
METRIC_COLUMNS = _metric_names()


# -- provenance -------------------------------------------------------------------------------
def git_commit(cwd: str | Path | None = None) -> str | None:
    """The commit of the decafbench checkout (with ``-dirty`` when it has local changes)."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of the packages that change numbers; modules not yet imported are not imported."""
    from importlib import metadata

    names = ["decafbench", "numpy", "scipy", "pandas", "pycocotools", "pillow", *extra]
    for heavy in ("torch", "transformers", "sam2"):
        if heavy in sys.modules:
            names.append(heavy)
    out = {"python": platform.python_version()}
    for name in dict.fromkeys(names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def base_manifest(kind: str, command: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    """A manifest with provenance filled in; ``fields`` (benchmark, config, seed...) go on top."""
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "command": list(sys.argv if command is None else command),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "machine": machine_info(),
    }
    manifest.update(fields)
    return manifest


# -- writing ------------------------------------------------------------------------------------
def part_name(video: str, exp_id: str) -> str:
    """A file name for one expression's part, safe whatever the ids contain."""
    digest = hashlib.sha1(f"{video}\0{exp_id}".encode()).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{video}__{exp_id}")[:80]
    return f"{safe}.{digest}.json"


def check_output_dir(path: str | Path, what: str = "--out") -> Path:
    """A folder we may write a record into: not a file, creatable and writable (checked before
    any work, so a bad ``--out`` fails in a second, not after an hour)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} is a file, not a folder", path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what}: its parent {parent} is a file, not a folder", path)
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{what}: a parent of it is a file, not a folder", path) from None
    except OSError as exc:
        raise InputError(f"{what} cannot be created ({exc.strerror or exc})", path) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{what} is not writable", path)
    return path


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class RunWriter:
    """Writes one run record; per-expression rows land atomically as they finish.

    ``done()`` tells which expressions a previous, interrupted run already finished, so a
    rerun of the same command resumes. ``finalize()`` writes the table and the manifest.
    Holds the folder's :class:`~decafbench.locks.RecordLock` from construction to
    ``close()`` (or process exit): a second writer of the same folder stops with one line.
    A folder holding a finished record of another kind (``run`` vs ``evaluate``) is refused.
    """

    def __init__(self, run_dir: str | Path, manifest: Mapping[str, Any], *, lock: bool = True):
        from .locks import RecordLock

        self.dir = check_output_dir(run_dir)
        self.manifest = dict(manifest)
        self.lock = RecordLock(self.dir)
        if lock:
            self.lock.acquire()
        try:
            self._check_kind()
            self.parts = self.dir / PARTS
            self.parts.mkdir(parents=True, exist_ok=True)
        except BaseException:
            self.lock.release()
            raise
        self._warned: set[str] = set()

    def _check_kind(self) -> None:
        kind = self.manifest.get("kind")
        mpath = self.dir / MANIFEST
        if kind is None or not mpath.is_file():
            return
        try:
            old = json.loads(mpath.read_text())
        except (OSError, ValueError):
            return  # an unreadable manifest is rewritten by finalize
        old_kind = old.get("kind") if isinstance(old, dict) else None
        if old_kind is not None and old_kind != kind:
            raise InputError(f"holds a record of kind {old_kind!r}, not {kind!r}; write to another --out "
                             "(or delete the folder)", self.dir)

    def clear(self) -> None:
        """Forget every finished part (a fresh record in the same folder)."""
        for p in self.parts.glob("*.json"):
            p.unlink(missing_ok=True)

    def _read_part(self, p: Path) -> dict | None:
        """One part, or None (with one warning line) when it is unreadable or malformed: the
        expression is then recomputed rather than the run crashing."""
        try:
            row = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            problem = f"unreadable ({type(exc).__name__})"
        else:
            if (isinstance(row, dict) and isinstance(row.get("video"), str)
                    and isinstance(row.get("exp_id"), str)):
                return row
            problem = "not a per-expression row (needs string 'video' and 'exp_id')"
        if p.name not in self._warned:
            self._warned.add(p.name)
            _warn(f"{p}: {problem}; recomputing that expression")
        return None

    def done(self) -> dict[tuple[str, str], dict]:
        rows = {}
        for p in sorted(self.parts.glob("*.json")):
            row = self._read_part(p)
            if row is None or row.get("error"):
                continue  # unreadable parts are redone, failures are retried on resume
            rows[(row["video"], row["exp_id"])] = row
        return rows

    def add(self, row: Mapping[str, Any]) -> None:
        if "video" not in row or "exp_id" not in row:
            raise ValueError("a per-expression row needs 'video' and 'exp_id'")
        atomic_write_json(self.parts / part_name(row["video"], row["exp_id"]), dict(row))

    def rows(self, keys: Iterable[tuple[str, str]] | None = None) -> list[dict]:
        """Every readable part (the last written per expression), or those of ``keys``."""
        wanted = None if keys is None else set(keys)
        out: dict[tuple[str, str], dict] = {}
        for p in sorted(self.parts.glob("*.json")):
            row = self._read_part(p)
            if row is None:
                continue
            key = (row["video"], row["exp_id"])
            if wanted is None or key in wanted:
                out[key] = row
        return list(out.values())

    def prediction_dir(self, video: str, exp_id: str) -> Path:
        """``RUN_DIR/predictions/VIDEO/EXP_ID``, refused if the ids would leave the record."""
        from .safepath import check_id, safe_join

        check_id(video, "video id")
        check_id(exp_id, "expression id")
        return safe_join(self.dir, "predictions", video, exp_id, what="prediction folder")

    def finalize(self, summary: Mapping[str, Any] | None = None, *, keys: Iterable[tuple[str, str]] | None = None,
                 summarize: Any = None, after: Any = None):
        """Write the table and the manifest from the parts (only those of ``keys`` when given:
        a ``--limit 2`` rerun over a full record gives a 2-row table with its 2-row summary,
        while the other parts stay for a later full run). ``summarize(rows)`` computes the
        summary from exactly the rows of the table; ``after(run_dir)`` runs once the record is
        complete, before the folder's lock is released."""
        import pandas as pd

        rows = self.rows(keys)
        table = rows_to_frame(rows)
        if summarize is not None:
            summary = summarize(rows)
        # RFC 4180 line ends: the csv writer then quotes any field holding \r or \n (a model's
        # free-text answer can hold a bare \r, which a \n-terminated file leaves unquoted and
        # every reader splits into two rows)
        atomic_write_text(self.dir / TABLE, table.to_csv(index=False, float_format="%.17g", lineterminator="\r\n"))
        manifest = dict(self.manifest)
        manifest["n_expressions"] = int(len(table))
        manifest["n_failed"] = int(table["error"].fillna("").astype(bool).sum()) if "error" in table else 0
        if summary is not None:
            manifest["summary"] = dict(summary)
        atomic_write_json(self.dir / MANIFEST, manifest)
        if after is not None:  # e.g. results.json (decafbench.results), still under the folder's lock
            after(self.dir)
        self.close()  # the record is complete: the folder is free again
        return table if isinstance(table, pd.DataFrame) else None

    def close(self) -> None:
        self.lock.release()


def rows_to_frame(rows: list[Mapping[str, Any]]):
    import pandas as pd

    table = pd.DataFrame(list(rows))
    if table.empty:
        table = pd.DataFrame(columns=list(KEY_COLUMNS) + ["J", "F", "JF", "error"])
    for col in KEY_COLUMNS:
        if col not in table:
            table[col] = ""
    if "error" not in table:
        table["error"] = ""
    table["error"] = table["error"].fillna("")
    first = [c for c in (*KEY_COLUMNS, *METRIC_COLUMNS) if c in table]
    table = table[first + [c for c in table.columns if c not in first]]
    return table.sort_values(["video", "exp_id"], kind="stable").reset_index(drop=True)


# -- reading ------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """A finished run as statistics and tables see it."""

    path: Path
    manifest: dict
    table: Any  # pandas.DataFrame

    @property
    def label(self) -> str:
        return str(self.manifest.get("name") or self.path.name)

    def scores(self, metric: str = "JF", *, drop_failed: bool = True):
        """Per-expression values of ``metric`` indexed by (video, exp_id), as a pandas Series."""
        if metric not in self.table:
            raise InputError(f"run has no column {metric!r}", self.path / TABLE)
        t = self.table
        if drop_failed and "error" in t:
            t = t[~t["error"].fillna("").astype(str).str.len().astype(bool)]
        s = t.set_index(["video", "exp_id"])[metric].astype(float)
        return s[~s.isna()]


def read_record(run_dir: str | Path) -> RunRecord:
    """Load a run record; a missing or malformed file is a one-line InputError naming it."""
    import pandas as pd

    run_dir = Path(run_dir)
    mpath, tpath = run_dir / MANIFEST, run_dir / TABLE
    if not run_dir.is_dir():
        raise InputError("run record folder does not exist", run_dir)
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise InputError("missing manifest (not a finished run record)", mpath) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc}", mpath) from None
    if not isinstance(manifest, dict):
        raise InputError("manifest is not a JSON object", mpath)
    try:
        table = pd.read_csv(tpath, dtype={"video": str, "exp_id": str, "split": str}, keep_default_na=False,
                            na_values={c: [""] for c in METRIC_COLUMNS})
    except FileNotFoundError:
        raise InputError("missing per-expression table", tpath) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable CSV: {exc}", tpath) from None
    for col in ("video", "exp_id"):
        if col not in table:
            raise InputError(f"column {col!r} is missing", tpath)
    for col in METRIC_COLUMNS:
        if col in table:
            table[col] = pd.to_numeric(table[col], errors="coerce")
    if "split" not in table:
        table["split"] = ""
    if "error" not in table:
        table["error"] = ""
    return RunRecord(run_dir, manifest, table)

