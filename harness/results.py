"""``results.json``: one machine-readable summary per run record (lm-evaluation-harness's habit).

Why: a record's ``per_expression.csv`` has every number but no interval, and its manifest has
the provenance but only plain means. ``results.json`` puts the two together -- config,
versions, git commit, seed, and per metric and group the mean, its bootstrap CI, n and the
failures, in points (0-100) -- so a script or a paper table reads one small file. It is
derived from the record (``write_results`` can rebuild it at any time) and statistics never
read it back: the per-expression table stays the source of truth.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from . import metric_registry, runstats, stats
from .errors import InputError

RESULTS = "results.json"
SCHEMA = "decafbench.results/1"


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _groups(rec, metric: str, failures: str) -> dict[str, tuple[Any, np.ndarray | None]]:
    """group -> (scores, weights): ``all``, and for ReVOS-style records each split and
    ``overall`` (mean of the referring and reasoning means)."""
    from .tables import REVOS_SPLITS

    s = runstats.metric_scores(rec, metric, failures).values
    split_of = rec.table.assign(split=rec.table["split"].astype(str).str.lower()).set_index(
        ["video", "exp_id"])["split"].loc[s.index]
    out: dict[str, tuple[Any, np.ndarray | None]] = {"all": (s, None)}
    if set(split_of.unique()) - {""} == set(REVOS_SPLITS):
        for name in REVOS_SPLITS:
            out[name] = (s[split_of == name], None)
        w = (1.0 / (2.0 * split_of.map(split_of.value_counts()))).to_numpy(dtype=float)
        out["overall"] = (s, w)
    return out


def summarize_record(rec, *, unit: runstats.Unit = "video", resamples: int = 10_000, seed: int = 0,
                     confidence: float = 0.95, failures: runstats.Failures = "zero") -> dict:
    """The ``results.json`` document of one record (a dict ready for JSON, no NaN)."""
    m = rec.manifest
    doc: dict[str, Any] = {
        "schema": SCHEMA, "name": rec.label, "kind": m.get("kind"),
        "benchmark": runstats.data_of(rec)[0], "split": runstats.data_of(rec)[1],
        "config": m.get("config", {}), "versions": m.get("versions", {}), "git_commit": m.get("git_commit"),
        "seed": m.get("seed", (m.get("config") or {}).get("seed") if isinstance(m.get("config"), dict) else None),
        "created": m.get("created"), "n_expressions": int(len(rec.table)),
        "statistics": {"unit": unit, "resamples": resamples, "seed": seed, "confidence": confidence,
                       "failures": failures, "interval": "percentile bootstrap", "scale": "points (0-100)"},
        "results": {},
    }
    boot_rng = stats.streams(seed)[0]
    for name in metric_registry.names():
        if name not in rec.table:
            continue
        try:
            groups = _groups(rec, name, failures)
        except InputError as exc:
            if "needs the ground truth" in str(exc):  # e.g. A of failed rows: only drop is possible
                groups = _groups(rec, name, "drop")
            else:
                raise
        failed = runstats.metric_scores(rec, name, "drop").failed
        per_group = {}
        for group, (s, w) in groups.items():
            if len(s) == 0:
                per_group[group] = {"mean": None, "ci_low": None, "ci_high": None, "n": 0, "failures": failed}
                continue
            clusters = s.index.get_level_values(0).to_numpy() if unit == "video" else None
            design = stats.Design.build(s.to_numpy(dtype=float), clusters, w)
            boot = stats.bootstrap_means(design, resamples, boot_rng)
            lo, hi = stats.percentile_interval(boot, confidence)
            per_group[group] = {"mean": _num(100 * design.estimate()[0]), "ci_low": _num(100 * lo[0]),
                                "ci_high": _num(100 * hi[0]), "n": int(len(s)), "failures": failed}
        doc["results"][name] = per_group
    return doc


def write_results(run_dir: str | Path, *, strict: bool = True, **options) -> Path:
    """Read the record at ``run_dir`` and write its ``results.json`` (atomically).

    ``strict=False`` (what a finishing run uses): a record whose scores fail validation
    still gets a ``results.json``, with the one-line reason under ``error`` and no results,
    so a long run never dies at its last step; the statistics commands refuse it later.
    """
    import json

    from .runstore import atomic_write_text, read_record

    rec = read_record(run_dir)
    try:
        doc = summarize_record(rec, **options)
    except InputError as exc:
        if strict:
            raise
        doc = {"schema": SCHEMA, "name": rec.label, "error": str(exc), "results": {}}
    path = Path(run_dir) / RESULTS
    atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return path


def write_results_lenient(run_dir: str | Path) -> Path:
    """:func:`write_results` as a finishing run calls it (``strict=False``)."""
    return write_results(run_dir, strict=False)
