"""Paired statistics over run records: validate, align runs on shared expressions, compare.

Why a module apart from :mod:`decafbench.stats`: that one is pure arithmetic on arrays
(resampling, intervals, tests, Holm); this one knows what a run record is (labels, the
``per_expression.csv`` scores, failed rows, benchmark and split) and turns several records
into the summary and pairwise tables that ``decaf compare``, ``regress``, ``power``, the
leaderboard and the report print. One bootstrap matrix serves all runs and all differences
(see :func:`analyse_runs`).

Records are untrusted input: every score used is checked (a number, finite, inside the
metric's range from :mod:`decafbench.metric_registry`) and runs are paired only when they
score the same benchmark and split; anything else is a one-line :class:`InputError` naming
the file and the row.

Failed expressions (a non-empty ``error``) count as ``--failures zero`` (default: a failure
is an empty mask, scored as such -- the score stored in the row when the run could compute
it, else the metric's ``on_failure`` value, e.g. J = F = 0) or ``--failures drop`` (left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from . import metric_registry
from .errors import InputError
from .stats import (Design, bca_interval, bootstrap_means, bootstrap_p_two_sided, holm, paired_t,
                    percentile_interval, permutation_p_two_sided, signflip_means, streams, tie_tolerance,
                    wilcoxon_p)

if TYPE_CHECKING:
    import pandas as pd

Unit = Literal["expression", "video"]
Failures = Literal["zero", "drop"]
FAILURES = ("zero", "drop")
#: below this many videos, interval and p-value coverage is unreliable (Bowyer et al. 2025)
FEW_VIDEOS = 10
_SLACK = 1e-9  # float noise allowed outside a metric's range


# -- reading scores from a record -----------------------------------------------------------------
@dataclass(frozen=True)
class Scores:
    """One run's validated values of one metric, indexed by (video, exp_id)."""

    values: pd.Series
    failed: int  # failed expressions (counted as empty masks, or dropped)
    failures: str


def _raw_cell(rec, column: str, row: int) -> str:
    """The text of one CSV cell as written (the parsed table has lost it)."""
    import pandas as pd

    try:
        raw = pd.read_csv(rec.path / "per_expression.csv", dtype=str, keep_default_na=False, usecols=[column])
        return str(raw[column].iloc[row])
    except Exception:  # noqa: BLE001 - only used to word the error
        return "?"


def _bad_value(rec, metric, row: int, key: tuple[str, str], value: float) -> InputError:
    where = f"row {row + 2} (video {key[0]!r}, expression {key[1]!r})"
    m = metric_registry.get(metric)
    if isinstance(value, float) and math.isnan(value):
        text = _raw_cell(rec, metric, row)
        what = "is empty" if text.strip() == "" else f"is {text!r}, not a number"
    elif math.isinf(value):
        what = f"is {value}, not finite"
    else:
        what = f"is {value:g}, outside [{m.low:g}, {m.high:g}]"
        if m.high == 1 and 1 < abs(value) <= 100:
            what += " (a percent column? scores are fractions)"
    return InputError(f"{where}: {metric} {what}", rec.path / "per_expression.csv")


def metric_scores(rec, metric: str = "JF", failures: Failures = "zero") -> Scores:
    """Validated per-expression values of ``metric``; failures counted or dropped."""
    import pandas as pd

    if failures not in FAILURES:
        raise InputError(f"--failures must be 'zero' or 'drop', not {failures!r}")
    m = metric_registry.get(metric)
    t = rec.table
    path = rec.path / "per_expression.csv"
    if m.name not in t:
        raise InputError(f"run has no column {m.name!r} (metric {m.label}; recorded before it existed, or "
                         "not a metric of this benchmark)", path)
    failed = t["error"].fillna("").astype(str).str.strip().str.len().to_numpy() > 0 if "error" in t \
        else np.zeros(len(t), bool)
    raw = pd.to_numeric(t[m.name], errors="coerce").to_numpy(dtype=float)
    keys = list(zip(t["video"].astype(str), t["exp_id"].astype(str)))
    values = raw.copy()
    for i in np.flatnonzero(failed):
        if math.isfinite(raw[i]) and m.low - _SLACK <= raw[i] <= m.high + _SLACK:
            continue  # the run stored the empty-mask score
        if m.on_failure is None and failures == "zero":
            raise InputError(f"row {i + 2} (video {keys[i][0]!r}, expression {keys[i][1]!r}) failed and "
                             f"{m.name} of an empty mask needs the ground truth; pass --failures drop", path)
        values[i] = np.nan if m.on_failure is None else m.on_failure
    bad = ~failed & ~(np.isfinite(raw) & (raw >= m.low - _SLACK) & (raw <= m.high + _SLACK))
    bad |= failed & np.isfinite(raw) & ~((raw >= m.low - _SLACK) & (raw <= m.high + _SLACK))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _bad_value(rec, m.name, i, keys[i], float(raw[i]))
    keep = ~failed if failures == "drop" else np.ones(len(t), bool)
    index = pd.MultiIndex.from_tuples([k for k, ok in zip(keys, keep) if ok], names=["video", "exp_id"]) \
        if keep.any() else pd.MultiIndex.from_tuples([], names=["video", "exp_id"])
    s = pd.Series(np.clip(values[keep], m.low, m.high), index=index, name=m.name)
    if s.index.duplicated().any():
        video, exp = s.index[s.index.duplicated()][0]
        raise InputError(f"expression ({video}, {exp}) appears twice", path)
    return Scores(s, int(failed.sum()), failures)


def data_of(rec) -> tuple[str, str]:
    """(benchmark, split) a record scores, from its manifest (top level or ``config``)."""
    from .tables import manifest_value

    return manifest_value(rec.manifest, "benchmark"), manifest_value(rec.manifest, "split")


def check_same_data(records: Sequence) -> None:
    """Refuse to pair runs of different benchmarks or splits (one line naming the manifest)."""
    if not records:
        return
    first = data_of(records[0])
    for rec in records[1:]:
        other = data_of(rec)
        if other != first:
            raise InputError(f"benchmark/split {'/'.join(other) or '?'} differs from "
                             f"{'/'.join(first) or '?'} of {records[0].path}; runs of different benchmarks "
                             "or splits cannot be paired", rec.path / "manifest.json")


# -- aligning runs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Aligned:
    """Scores of several runs on the expressions they all share, in one matrix."""

    labels: list[str]
    keys: list[tuple[str, str]]  # shared (video, exp_id), sorted
    values: np.ndarray  # (n shared, k runs), fractions
    unshared: list[int]  # per run: its scored expressions outside the shared set
    failed: list[int] = field(default_factory=list)  # per run: failed expressions
    failures: str = "zero"
    metric: str = "JF"

    @property
    def videos(self) -> np.ndarray:
        return np.asarray([v for v, _ in self.keys], dtype=object)

    def clusters(self, unit: Unit) -> np.ndarray | None:
        if unit not in ("expression", "video"):
            raise InputError(f"--unit must be 'expression' or 'video', not {unit!r}")
        return self.videos if unit == "video" else None

    def n_units(self, unit: Unit) -> int:
        return len(set(self.videos)) if unit == "video" else len(self.keys)

    def coverage(self) -> str:
        """One sentence on what is shared, what is not and how failures count."""
        not_shared = ", ".join(f"{lab}: {u}" for lab, u in zip(self.labels, self.unshared))
        text = f"Not shared: {not_shared}."
        if any(self.failed):
            how = "counted as empty masks" if self.failures == "zero" else "dropped"
            text += (" Failed expressions (" + how + f", --failures {self.failures}): "
                     + ", ".join(f"{lab}: {f}" for lab, f in zip(self.labels, self.failed)) + ".")
        return text


def unique_labels(records: Sequence) -> list[str]:
    """Run labels (manifest name or folder); the path where two runs share a name."""
    labels = [r.label for r in records]
    return [str(r.path) if labels.count(lab) > 1 else lab for r, lab in zip(records, labels)]


def align_runs(records: Sequence, metric: str = "JF", failures: Failures = "zero") -> Aligned:
    """Pair runs of one benchmark split on their shared scored expressions (InputError if none)."""
    check_same_data(records)
    scores = [metric_scores(rec, metric, failures) for rec in records]
    series = [s.values for s in scores]
    shared = series[0].index
    for s in series[1:]:
        shared = shared.intersection(s.index)
    if len(shared) == 0:
        raise InputError(f"the runs share no scored expressions for metric {metric!r}: "
                         + ", ".join(str(r.path) for r in records))
    shared = shared.sort_values()
    values = np.column_stack([s.loc[shared].to_numpy(dtype=float) for s in series])
    return Aligned(unique_labels(records), [tuple(map(str, k)) for k in shared], values,
                   [int(len(s) - len(shared)) for s in series], [s.failed for s in scores], failures,
                   metric_registry.get(metric).name)


def check_units(aligned: Aligned, unit: Unit) -> str | None:
    """InputError below 2 resampling units; a warning line below FEW_VIDEOS videos."""
    n = aligned.n_units(unit)
    if n < 2:
        raise InputError(f"only {n} resampling unit ({unit}) shared: no interval or test is possible "
                         "(need at least 2; use --unit expression only if expressions are independent)")
    videos = aligned.n_units("video")
    if videos < FEW_VIDEOS:
        return (f"warning: only {videos} videos; intervals and p-values are unreliable below "
                f"{FEW_VIDEOS} (too narrow, Bowyer et al. 2025)")
    return None


# -- analysis ---------------------------------------------------------------------------------
def _pairs(k: int, baseline: int | None) -> list[tuple[int, int]]:
    return ([(baseline, j) for j in range(k) if j != baseline] if baseline is not None
            else [(i, j) for i in range(k) for j in range(i + 1, k)])


def _run_summary(aligned: Aligned, design: Design, boot: np.ndarray, confidence: float) -> pd.DataFrame:
    import pandas as pd

    k = aligned.values.shape[1]
    est = design.estimate()
    lo, hi = percentile_interval(boot[:, :k], confidence)
    jk = design.jackknife() if design.units > 1 else est[None]
    blo, bhi = bca_interval(boot[:, :k], est[:k], jk[:, :k], confidence)
    return pd.DataFrame({
        "run": aligned.labels, "n": len(aligned.keys), "not_shared": aligned.unshared,
        "failed": aligned.failed or [0] * k,
        "mean": 100 * est[:k], "ci_low": 100 * lo, "ci_high": 100 * hi,
        "bca_low": 100 * blo, "bca_high": 100 * bhi,
    })


PAIR_COLUMNS = ["run_a", "run_b", "n", "n_units", "diff", "ci_low", "ci_high", "p_bootstrap", "p_permutation",
                "p_wilcoxon", "p_holm", "se_t", "p_ttest", "se_clustered", "p_clustered"]


def _pair_table(aligned: Aligned, pairs, design: Design, boot: np.ndarray, clusters, resamples: int,
                perm_rng, confidence: float) -> pd.DataFrame:
    """Resampling tests (bootstrap, sign flips, Wilcoxon, Holm) and normal-theory ones
    (paired t, video-clustered SE) for every pair; ``boot`` holds the differences only."""
    import pandas as pd

    vals = aligned.values
    est = design.estimate()
    lo, hi = percentile_interval(boot, confidence)
    tol = tie_tolerance(design)
    p_boot = bootstrap_p_two_sided(boot, tol)
    if design.units < 2:  # one resampling unit: every resample is the data itself, no evidence either way
        p_boot = np.full_like(p_boot, np.nan)
    p_perm = permutation_p_two_sided(signflip_means(design, resamples, perm_rng), est, tol)
    diffs = np.column_stack([vals[:, j] - vals[:, i] for i, j in pairs])
    se_t, p_t, se_c, p_c = paired_t(diffs, aligned.videos)
    table = pd.DataFrame({
        "run_a": [aligned.labels[i] for i, _ in pairs], "run_b": [aligned.labels[j] for _, j in pairs],
        "n": len(vals), "n_units": design.units, "diff": 100 * est, "ci_low": 100 * lo, "ci_high": 100 * hi,
        "p_bootstrap": p_boot, "p_permutation": p_perm,
        "p_wilcoxon": [wilcoxon_p(vals[:, i], vals[:, j], clusters) for i, j in pairs],
        "p_holm": holm(p_perm), "se_t": 100 * se_t, "p_ttest": p_t, "se_clustered": 100 * se_c,
        "p_clustered": p_c,
    })
    return table[PAIR_COLUMNS]


def analyse_runs(aligned: Aligned, *, baseline: int | None = None, unit: Unit = "video",
                 resamples: int = 10_000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-run means with percentile and BCa CIs, and every pairwise (or vs-baseline)
    comparison: diff = run_b - run_a in points (0..100), paired-bootstrap CI, bootstrap,
    sign-flip permutation and Wilcoxon p, Holm over the permutation p-values, and the
    paired t-test and Miller's clustered SE (always video clusters) with their p-values.

    One bootstrap matrix serves all runs and differences, one sign matrix all differences.
    """
    import pandas as pd

    k = aligned.values.shape[1]
    pairs = _pairs(k, baseline)
    clusters = aligned.clusters(unit)
    vals = aligned.values
    diffs = np.column_stack([vals[:, j] - vals[:, i] for i, j in pairs]) if pairs else np.empty((len(vals), 0))
    design = Design.build(np.column_stack([vals, diffs]), clusters)
    boot_rng, perm_rng = streams(seed)
    boot = bootstrap_means(design, resamples, boot_rng)
    runs = _run_summary(aligned, design, boot, confidence)
    if not pairs:
        return runs, pd.DataFrame(columns=PAIR_COLUMNS)
    dd = Design(design.num[:, k:], design.den)
    return runs, _pair_table(aligned, pairs, dd, boot[:, k:], clusters, resamples, perm_rng, confidence)
