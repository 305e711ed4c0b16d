"""Paired statistics over run records: align runs on shared expressions, then compare them.

Why a module apart from :mod:`decafbench.stats`: that one is pure arithmetic on arrays
(resampling, intervals, tests, Holm); this one knows what a run record is (labels, the
``per_expression.csv`` scores, failed rows) and turns several records into the summary and
pairwise tables that ``decaf stats compare``, the leaderboard and the report print. One
bootstrap matrix serves all runs and all differences (see :func:`analyse_runs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from .stats import (Design, bca_interval, bootstrap_means, bootstrap_p_two_sided, holm, percentile_interval,
                    permutation_p_two_sided, signflip_means, streams, tie_tolerance, wilcoxon_p)

if TYPE_CHECKING:
    import pandas as pd

Unit = Literal["expression", "video"]


@dataclass(frozen=True)
class Aligned:
    """Scores of several runs on the expressions they all share, in one matrix."""

    labels: list[str]
    keys: list[tuple[str, str]]  # shared (video, exp_id), sorted
    values: np.ndarray  # (n shared, k runs), fractions
    unshared: list[int]  # per run: its scored expressions outside the shared set

    @property
    def videos(self) -> np.ndarray:
        return np.asarray([v for v, _ in self.keys], dtype=object)

    def clusters(self, unit: Unit) -> np.ndarray | None:
        if unit not in ("expression", "video"):
            from .errors import InputError

            raise InputError(f"--unit must be 'expression' or 'video', not {unit!r}")
        return self.videos if unit == "video" else None


def unique_labels(records: Sequence) -> list[str]:
    """Run labels (manifest name or folder); the path where two runs share a name."""
    labels = [r.label for r in records]
    return [str(r.path) if labels.count(lab) > 1 else lab for r, lab in zip(records, labels)]


def align_runs(records: Sequence, metric: str = "JF") -> Aligned:
    """Pair runs on their shared, non-failed expressions (InputError if none are shared)."""
    from .errors import InputError

    series = []
    for rec in records:
        s = rec.scores(metric)
        if s.index.duplicated().any():
            video, exp = s.index[s.index.duplicated()][0]
            raise InputError(f"expression ({video}, {exp}) appears twice", rec.path / "per_expression.csv")
        series.append(s)
    shared = series[0].index
    for s in series[1:]:
        shared = shared.intersection(s.index)
    if len(shared) == 0:
        raise InputError(f"the runs share no scored expressions for metric {metric!r}: "
                         + ", ".join(str(r.path) for r in records))
    shared = shared.sort_values()
    values = np.column_stack([s.loc[shared].to_numpy(dtype=float) for s in series])
    return Aligned(unique_labels(records), [tuple(map(str, k)) for k in shared], values,
                   [int(len(s) - len(shared)) for s in series])


def analyse_runs(aligned: Aligned, *, baseline: int | None = None, unit: Unit = "video",
                 resamples: int = 10_000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-run means with percentile and BCa CIs, and every pairwise (or vs-baseline)
    comparison: diff = run_b - run_a in points (0..100), paired-bootstrap CI, bootstrap,
    sign-flip permutation and Wilcoxon p, and Holm over the permutation p-values.

    One bootstrap matrix serves all runs and differences, one sign matrix all differences.
    """
    import pandas as pd

    k = aligned.values.shape[1]
    pairs = ([(baseline, j) for j in range(k) if j != baseline] if baseline is not None
             else [(i, j) for i in range(k) for j in range(i + 1, k)])
    clusters = aligned.clusters(unit)
    vals = aligned.values
    diffs = np.column_stack([vals[:, j] - vals[:, i] for i, j in pairs]) if pairs else np.empty((len(vals), 0))
    design = Design.build(np.column_stack([vals, diffs]), clusters)
    boot_rng, perm_rng = streams(seed)
    boot = bootstrap_means(design, resamples, boot_rng)
    est = design.estimate()
    lo, hi = percentile_interval(boot, confidence)
    jk = design.jackknife() if design.units > 1 else est[None]
    blo, bhi = bca_interval(boot[:, :k], est[:k], jk[:, :k], confidence)
    runs = pd.DataFrame({
        "run": aligned.labels, "n": len(vals), "not_shared": aligned.unshared,
        "mean": 100 * est[:k], "ci_low": 100 * lo[:k], "ci_high": 100 * hi[:k],
        "bca_low": 100 * blo, "bca_high": 100 * bhi,
    })
    cols = ["run_a", "run_b", "n", "diff", "ci_low", "ci_high", "p_bootstrap", "p_permutation",
            "p_wilcoxon", "p_holm"]
    if not pairs:
        return runs, pd.DataFrame(columns=cols)
    dd = Design(design.num[:, k:], design.den)
    tol = tie_tolerance(dd)
    p_boot = bootstrap_p_two_sided(boot[:, k:], tol)
    if dd.units < 2:  # one resampling unit: every resample is the data itself, no evidence either way
        p_boot = np.full_like(p_boot, np.nan)
    p_perm = permutation_p_two_sided(signflip_means(dd, resamples, perm_rng), est[k:], tol)
    p_wil = [wilcoxon_p(vals[:, i], vals[:, j], clusters) for i, j in pairs]
    table = pd.DataFrame({
        "run_a": [aligned.labels[i] for i, _ in pairs], "run_b": [aligned.labels[j] for _, j in pairs],
        "n": len(vals), "diff": 100 * est[k:], "ci_low": 100 * lo[k:], "ci_high": 100 * hi[k:],
        "p_bootstrap": p_boot, "p_permutation": p_perm, "p_wilcoxon": p_wil, "p_holm": holm(p_perm),
    })
    return runs, table[cols]

