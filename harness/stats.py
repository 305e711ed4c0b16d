"""Paired statistics over per-expression scores: bootstrap CIs, paired tests, Holm.

Why this shape: every comparison of two runs is paired (same expressions, same videos), and
expressions of one video are correlated, so every function takes optional ``clusters``
(video ids): with them, resampling and sign flips act on whole videos. The statistic is
always the (optionally weighted) mean over expressions, written as a ratio of per-unit
sums ``sum(c_u * num_u) / sum(c_u * den_u)``; a unit is an expression or a video.

Speed comes from one index (or sign) matrix of shape (resamples, units), drawn in chunks
that bound memory and turned into counts, so that a single matrix product gives the
resampled means of all runs and all differences at once. No Python loop per resample;
:mod:`decafbench.reference.stats` has the one-resample-at-a-time versions that the tests
compare against, draw for draw (same seed, same random stream).

Randomness: every function takes ``seed`` (an int or a ``numpy.random.Generator``).
:func:`streams` splits one seed into independent bootstrap and permutation streams.

Run records (aligning runs on shared expressions, the compare tables) live in
:mod:`decafbench.runstats`, which builds on this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import special

Method = Literal["percentile", "bca"]
Seed = int | np.random.Generator | None
#: cap on the entries of one chunk of the (resamples x units) matrix (~32 MB as int64)
DEFAULT_MAX_ELEMENTS = 1 << 22


def rng_of(seed: Seed) -> np.random.Generator:
    """A Generator from an int seed (or the Generator itself, to continue its stream)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent (bootstrap, permutation) generators derived from one user seed."""
    boot, perm = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(boot), np.random.default_rng(perm)


# -- the design: per-unit numerators and denominators ---------------------------------------
@dataclass(frozen=True)
class Design:
    """Per-unit sums: ``num`` (units x k) of weighted values, ``den`` (units,) of weights."""

    num: np.ndarray
    den: np.ndarray

    @classmethod
    def build(cls, values: np.ndarray, clusters: Sequence | np.ndarray | None = None,
              weights: np.ndarray | None = None) -> "Design":
        """Units are expressions (no clusters) or the sorted unique cluster ids."""
        v = np.asarray(values, dtype=float)
        v = v[:, None] if v.ndim == 1 else v
        if v.ndim != 2 or v.shape[0] == 0:
            raise ValueError("values must be a non-empty 1-D or 2-D array")
        if not np.isfinite(v).all():
            raise ValueError("values must be finite")
        w = np.ones(v.shape[0]) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (v.shape[0],) or (w <= 0).any():
            raise ValueError("weights must be positive, one per value")
        if clusters is None:
            return cls(v * w[:, None], w)
        labels = np.asarray(clusters)
        if labels.shape != (v.shape[0],):
            raise ValueError("clusters must give one id per value")
        _, inverse = np.unique(labels, return_inverse=True)
        n_units = int(inverse.max()) + 1
        num = np.zeros((n_units, v.shape[1]))
        np.add.at(num, inverse, v * w[:, None])
        return cls(num, np.bincount(inverse, weights=w, minlength=n_units))

    @property
    def units(self) -> int:
        return int(self.den.shape[0])

    def estimate(self) -> np.ndarray:
        return self.num.sum(0) / self.den.sum()

    def jackknife(self) -> np.ndarray:
        """Leave-one-unit-out estimates, (units x k); needs at least two units."""
        return (self.num.sum(0) - self.num) / (self.den.sum() - self.den)[:, None]

    def unit_means(self) -> np.ndarray:
        return self.num / self.den[:, None]


def _chunks(resamples: int, units: int, max_elements: int):
    step = max(1, max_elements // max(units, 1))
    for start in range(0, resamples, step):
        yield start, min(step, resamples - start)


def bootstrap_means(design: Design, resamples: int, seed: Seed = 0,
                    max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Resampled estimates (resamples x k): units drawn with replacement, row by row.

    Row r uses the r-th ``rng.integers(0, units, units)`` draw, exactly as the loop
    reference does, so both see the same resamples for the same seed.
    """
    rng, c = rng_of(seed), design.units
    out = np.empty((resamples, design.num.shape[1]))
    for start, m in _chunks(resamples, c, max_elements):
        idx = rng.integers(0, c, size=(m, c))
        idx += (np.arange(m) * c)[:, None]
        counts = np.bincount(idx.ravel(), minlength=m * c).reshape(m, c).astype(float)
        out[start:start + m] = (counts @ design.num) / (counts @ design.den)[:, None]
    return out


def signflip_means(design: Design, resamples: int, seed: Seed = 0,
                   max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Estimates after flipping the sign of each unit's (difference) sum at random.

    Row r uses the r-th ``rng.random(units) < 0.5`` draw (True = flipped).
    """
    rng, c = rng_of(seed), design.units
    out = np.empty((resamples, design.num.shape[1]))
    total = design.den.sum()
    for start, m in _chunks(resamples, c, max_elements):
        signs = np.where(rng.random((m, c)) < 0.5, -1.0, 1.0)
        out[start:start + m] = (signs @ design.num) / total
    return out


# -- intervals and p-values from resampled statistics -----------------------------------------
def tie_tolerance(design: Design) -> np.ndarray:
    """Absolute slack for ``>=`` comparisons so that float noise never decides a tie."""
    return 1e-10 * (np.abs(design.num).sum(0) / design.den.sum() + 1e-300)


def percentile_interval(boot: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1.0 - confidence
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return lo, hi


def bca_interval(boot: np.ndarray, estimate: np.ndarray, jackknife: np.ndarray,
                 confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Efron's bias-corrected and accelerated interval (Efron & Tibshirani 14.3, 15.4).

    z0 from the share of resamples below the estimate (ties count half, as scipy does),
    clipped to [1/(2B), 1 - 1/(2B)] so it stays finite; acceleration from the jackknife
    (0 when the jackknife has no spread). A degenerate bootstrap distribution (constant up
    to float noise) gives the point interval at the estimate.
    """
    b = boot.shape[0]
    alpha = 1.0 - confidence
    below = (boot < estimate).sum(0) + (boot <= estimate).sum(0)
    prop = np.clip(below / (2.0 * b), 0.5 / b, 1 - 0.5 / b)
    z0 = special.ndtri(prop)
    dev = jackknife.mean(0) - jackknife
    den = 6.0 * (dev ** 2).sum(0) ** 1.5
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(den > 0, (dev ** 3).sum(0) / np.where(den > 0, den, 1.0), 0.0)
    lo, hi = np.empty_like(estimate), np.empty_like(estimate)
    for j in range(boot.shape[1]):
        col = boot[:, j]
        if col.max() - col.min() <= 1e-12 * max(1.0, float(np.abs(col).max())):
            lo[j] = hi[j] = estimate[j]
            continue
        qs = []
        for z in (special.ndtri(alpha / 2), special.ndtri(1 - alpha / 2)):
            qs.append(special.ndtr(z0[j] + (z0[j] + z) / (1 - acc[j] * (z0[j] + z))))
        lo[j], hi[j] = np.quantile(col, qs)
    return lo, hi


def bootstrap_p_two_sided(boot: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """Two-sided p of H0 "difference = 0" from a paired bootstrap distribution.

    ``2 * min(P*(d <= 0), P*(d >= 0))`` with the +1 correction; p < alpha exactly when 0
    lies outside the (1 - alpha) percentile interval, up to that correction.
    """
    b = boot.shape[0]
    le = (boot <= tol).sum(0)
    ge = (boot >= -tol).sum(0)
    return np.minimum(1.0, 2.0 * (1.0 + np.minimum(le, ge)) / (b + 1.0))


def permutation_p_two_sided(flipped: np.ndarray, observed: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """``(1 + #{|t*| >= |t|}) / (B + 1)`` over sign-flip statistics."""
    hits = (np.abs(flipped) >= np.abs(observed) - tol).sum(0)
    return (1.0 + hits) / (flipped.shape[0] + 1.0)


# -- one-call public API ------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    method: str


def bootstrap_ci(values: np.ndarray, *, clusters: Sequence | np.ndarray | None = None,
                 weights: np.ndarray | None = None, resamples: int = 10_000, confidence: float = 0.95,
                 method: Method = "percentile", seed: Seed = 0) -> Interval:
    """CI of the (weighted) mean of ``values``; with ``clusters`` a cluster bootstrap."""
    design = Design.build(values, clusters, weights)
    boot = bootstrap_means(design, resamples, seed)
    est = design.estimate()
    if method == "percentile":
        lo, hi = percentile_interval(boot, confidence)
    elif method == "bca":
        jk = design.jackknife() if design.units > 1 else np.repeat(est[None], 1, axis=0)
        lo, hi = bca_interval(boot, est, jk, confidence)
    else:
        raise ValueError(f"unknown method {method!r} (percentile or bca)")
    return Interval(float(est[0]), float(lo[0]), float(hi[0]), method)


def _paired_design(a: np.ndarray, b: np.ndarray, clusters, weights) -> Design:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("a and b must be 1-D arrays of the same length (paired)")
    return Design.build(b - a, clusters, weights)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, clusters=None, weights=None,
                     resamples: int = 10_000, confidence: float = 0.95,
                     seed: Seed = 0) -> tuple[Interval, float]:
    """Percentile CI of mean(b - a) and the two-sided bootstrap p of H0: no difference."""
    design = _paired_design(a, b, clusters, weights)
    boot = bootstrap_means(design, resamples, seed)
    lo, hi = percentile_interval(boot, confidence)
    p = bootstrap_p_two_sided(boot, tie_tolerance(design))
    p0 = float(p[0]) if design.units > 1 else float("nan")  # one unit: resamples are the data itself
    return Interval(float(design.estimate()[0]), float(lo[0]), float(hi[0]), "percentile"), p0


def permutation_test(a: np.ndarray, b: np.ndarray, *, clusters=None, weights=None,
                     resamples: int = 10_000, seed: Seed = 0) -> float:
    """Two-sided approximate randomization test: random sign flips of the paired
    differences (of whole clusters' sums when ``clusters`` is given)."""
    design = _paired_design(a, b, clusters, weights)
    flipped = signflip_means(design, resamples, seed)
    return float(permutation_p_two_sided(flipped, design.estimate(), tie_tolerance(design))[0])


def wilcoxon_p(a: np.ndarray, b: np.ndarray, clusters=None) -> float:
    """scipy's Wilcoxon signed-rank p (on per-cluster mean differences when clustered);
    1.0 when every difference is zero (scipy has nothing to rank)."""
    from scipy import stats

    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if clusters is not None:
        d = Design.build(d, clusters).unit_means()[:, 0]
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def holm(pvals: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order (NaNs stay NaN, not counted)."""
    p = np.asarray(pvals, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


@dataclass(frozen=True)
class RegressionResult:
    """candidate - baseline; ``regressed`` when it is below -tolerance at one-sided alpha."""

    diff: float
    low: float
    high: float
    p_one_sided: float
    tolerance: float
    alpha: float

    @property
    def regressed(self) -> bool:
        return self.diff < -self.tolerance and self.p_one_sided < self.alpha


def regression_test(baseline: np.ndarray, candidate: np.ndarray, *, tolerance: float = 0.005,
                    alpha: float = 0.05, clusters=None, resamples: int = 10_000,
                    confidence: float = 0.95, seed: Seed = 0) -> RegressionResult:
    """One-sided paired bootstrap of H0: diff >= -tolerance vs H1: diff < -tolerance.

    ``p = (1 + #{d* >= -tolerance}) / (B + 1)``: small when almost every resampled
    difference lies below -tolerance. Same units as the values (fractions here).
    """
    design = _paired_design(baseline, candidate, clusters, None)
    boot = bootstrap_means(design, resamples, seed)
    lo, hi = percentile_interval(boot, confidence)
    p = (1.0 + (boot[:, 0] >= -tolerance - tie_tolerance(design)[0]).sum()) / (resamples + 1.0)
    return RegressionResult(float(design.estimate()[0]), float(lo[0]), float(hi[0]), float(p),
                            tolerance, alpha)


# -- normal-theory companions: paired t-test, clustered standard errors, power ---------------
#: most resamples one statistics command draws: a (resamples x columns) float matrix is kept
#: for the percentiles, so memory grows with both; beyond this, refuse rather than swap
MAX_RESAMPLES = 1_000_000
MAX_RESAMPLED_VALUES = 1 << 25  # resamples x columns: 256 MiB of float64


def check_resamples(resamples: int, columns: int = 1) -> None:
    """InputError unless ``resamples`` is in 1..MAX_RESAMPLES and the kept matrix fits."""
    from .errors import InputError

    if resamples < 1 or resamples > MAX_RESAMPLES:
        raise InputError(f"--resamples must be between 1 and {MAX_RESAMPLES:,}, not {resamples}")
    if resamples * max(columns, 1) > MAX_RESAMPLED_VALUES:
        most = MAX_RESAMPLED_VALUES // max(columns, 1)
        raise InputError(f"--resamples {resamples:,} x {columns} statistics would keep "
                         f"{8 * resamples * columns / 2**30:.1f} GiB of resampled values; "
                         f"use at most {most:,} here (or compare fewer runs at once)")


def _cluster_sums(e: np.ndarray, clusters) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums of the rows of ``e`` (n x k) and the cluster sizes."""
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    g = int(inverse.max()) + 1
    sums = np.zeros((g, e.shape[1]))
    np.add.at(sums, inverse, e)
    return sums, np.bincount(inverse, minlength=g).astype(float)


def clustered_se(d: np.ndarray, clusters: Sequence | np.ndarray | None = None) -> np.ndarray:
    """Standard error of mean(d), Miller (2024) eq. 4, per column of ``d`` (n,) or (n, k).

    ``SE^2 = SE_CLT^2 + (1/n^2) sum_c sum_{i != j in c} (d_i - dbar)(d_j - dbar)`` with
    ``SE_CLT^2 = var(d, ddof=1) / n``: the plain paired-t standard error plus the covariance
    of differences within a cluster (video). Without clusters it is the paired-t SE.
    """
    x = np.asarray(d, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    n = x.shape[0]
    if n < 2:
        return np.full(x.shape[1], np.nan)
    e = x - x.mean(0)
    se2 = (e ** 2).sum(0) / (n - 1) / n
    if clusters is not None:
        sums, _ = _cluster_sums(e, clusters)
        sq, _ = _cluster_sums(e ** 2, clusters)
        se2 = se2 + (sums ** 2 - sq).sum(0) / n ** 2
    return np.sqrt(np.maximum(se2, 0.0))


def t_p_two_sided(estimate: np.ndarray, se: np.ndarray, df: float) -> np.ndarray:
    """Two-sided p of estimate / se under Student t with ``df`` degrees of freedom (0 < df);
    a zero SE gives p = 1 for a zero estimate and 0 otherwise; NaN when df < 1."""
    from scipy import stats as sst

    est, se = np.asarray(estimate, dtype=float), np.asarray(se, dtype=float)
    if df < 1:
        return np.full(est.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, np.abs(est) / np.where(se > 0, se, 1.0), np.where(est == 0, 0.0, np.inf))
    return 2.0 * sst.t.sf(t, df)


def paired_t(d: np.ndarray, clusters=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(se, p) of the paired t-test (expressions, df n - 1) and (se, p) with video-clustered
    SEs (Miller eq. 4, Student t with G - 1 df for G clusters), per column of ``d``."""
    x = np.asarray(d, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    est = x.mean(0)
    se_t = clustered_se(x)
    p_t = t_p_two_sided(est, se_t, x.shape[0] - 1)
    if clusters is None:
        return se_t, p_t, se_t, p_t
    se_c = clustered_se(x, clusters)
    return se_t, p_t, se_c, t_p_two_sided(est, se_c, len(np.unique(np.asarray(clusters))) - 1)


@dataclass(frozen=True)
class Power:
    """Sample size for a paired comparison; numbers in the units of ``d`` (points in the CLI)."""

    unit: str
    delta: float
    alpha: float
    power: float
    mean_diff: float
    sd_diff: float  # sd of per-unit mean differences (clustered; ddof 1)
    units: int  # pilot size in units
    expressions: int  # pilot size in expressions
    n_units: int  # units needed
    n_expressions: int  # expressions needed (at the pilot's expressions per unit)
    mde: float  # minimum detectable effect at the pilot size

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def clustered_sd(d: np.ndarray, clusters=None) -> tuple[float, int]:
    """(sd, units): the sd of one unit's contribution to the mean difference.

    Without clusters: ``std(d, ddof=1)`` over expressions. With clusters (videos) of sizes
    ``m_c``: ``sqrt(sum_c (V m_c / n)^2 (ubar_c - dbar)^2 / (V - 1))``, which for equal
    expressions per video is the sd (ddof 1) of the per-video mean differences, and in
    general is ``sqrt(V)`` times the cluster-robust SE of the expression-weighted mean.
    """
    x = np.asarray(d, dtype=float)
    if clusters is None:
        return float(x.std(ddof=1)) if x.size > 1 else float("nan"), int(x.size)
    sums, sizes = _cluster_sums((x - x.mean())[:, None], clusters)
    v = sizes.size
    if v < 2:
        return float("nan"), v
    return float(np.sqrt(((sums[:, 0] * v / x.size) ** 2).sum() / (v - 1))), v


def power_analysis(d: np.ndarray, delta: float, *, clusters=None, alpha: float = 0.05,
                   power: float = 0.8) -> Power:
    """Normal approximation: ``n = ceil(((z_{1-alpha/2} + z_power) sd / delta)^2)`` units and
    ``mde = (z_{1-alpha/2} + z_power) sd / sqrt(units)`` at the pilot size."""
    x = np.asarray(d, dtype=float)
    sd, units = clustered_sd(x, clusters)
    z = special.ndtri(1 - alpha / 2) + special.ndtri(power)
    need = int(np.ceil((z * sd / abs(delta)) ** 2)) if sd > 0 else 1
    need = max(need, 2)
    per_unit = x.size / units
    return Power("video" if clusters is not None else "expression", float(delta), alpha, power,
                 float(x.mean()), sd, units, int(x.size), need, int(np.ceil(need * per_unit)),
                 float(z * sd / np.sqrt(units)))


def simulate_power(d: np.ndarray, delta: float, n_units: int, *, clusters=None, alpha: float = 0.05,
                   simulations: int = 2000, seed: Seed = 0,
                   max_elements: int = DEFAULT_MAX_ELEMENTS) -> float:
    """Share of simulated studies that reject H0 at ``alpha`` when the true difference is
    ``delta``: the pilot's units (videos with their expressions) are centred, shifted by
    ``delta`` and drawn ``n_units`` at a time with replacement; each study is the two-sided
    z-test with the clustered SE of :func:`clustered_sd`. Checks :func:`power_analysis`."""
    x = np.asarray(d, dtype=float)
    e = x - x.mean() + delta
    if clusters is None:
        s, m = e, np.ones_like(e)
    else:
        sums, m = _cluster_sums(e[:, None], clusters)
        s = sums[:, 0]
    feats = np.column_stack([s, m, s * s, s * m, m * m])
    rng, v = rng_of(seed), s.size
    z = special.ndtri(1 - alpha / 2)
    hits = 0
    for _, k in _chunks(simulations, max(n_units, v), max_elements):
        idx = rng.integers(0, v, size=(k, n_units))
        idx += (np.arange(k) * v)[:, None]
        counts = np.bincount(idx.ravel(), minlength=k * v).reshape(k, v).astype(float)
        a = counts @ feats
        mean = a[:, 0] / a[:, 1]
        q = a[:, 2] - 2 * mean * a[:, 3] + mean ** 2 * a[:, 4]
        sd = np.sqrt(np.maximum(q, 0) * (n_units / a[:, 1]) ** 2 / max(n_units - 1, 1))
        hits += int((np.abs(mean) > z * sd / np.sqrt(n_units)).sum())
    return hits / simulations
