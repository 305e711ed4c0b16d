"""Plain-loop statistics, one resample at a time, written straight from the definitions.

The tests and ``bench/bench_stats.py`` compare :mod:`decafbench.stats` against these. They
draw from the generator in the same order as the fast code (resample r uses the r-th
``integers(0, units, units)`` or ``random(units)`` draw), so for the same seed both see the
same resamples and agree up to floating-point summation order.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from ..stats import streams


def units_of(n: int, clusters=None) -> list[np.ndarray]:
    """Indices of the expressions in each unit: one per expression, or per sorted cluster id."""
    if clusters is None:
        return [np.array([i]) for i in range(n)]
    labels = np.asarray(clusters)
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]


def weighted_mean(x: np.ndarray, w: np.ndarray, idx: np.ndarray) -> float:
    return float(np.sum(w[idx] * x[idx]) / np.sum(w[idx]))


def bootstrap_means_loop(x, clusters=None, weights=None, resamples: int = 1000,
                         rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw units with replacement, pool their expressions, take the weighted mean."""
    x = np.asarray(x, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    units = units_of(len(x), clusters)
    out = np.empty(resamples)
    for r in range(resamples):
        pick = rng.integers(0, len(units), size=len(units))
        idx = pick if clusters is None else np.concatenate([units[p] for p in pick])
        out[r] = weighted_mean(x, w, idx)
    return out


def signflip_means_loop(d, clusters=None, weights=None, resamples: int = 1000,
                        rng: np.random.Generator | None = None) -> np.ndarray:
    """Flip the sign of every unit's differences with probability 1/2; weighted mean."""
    d = np.asarray(d, dtype=float)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=float)
    units = units_of(len(d), clusters)
    unit_of = np.empty(len(d), dtype=int)  # which unit each expression belongs to
    for u, members in enumerate(units):
        unit_of[members] = u
    out = np.empty(resamples)
    for r in range(resamples):
        flip = rng.random(len(units)) < 0.5
        signed = np.where(flip[unit_of], -d, d)
        out[r] = float(np.sum(w * signed) / np.sum(w))
    return out


def quantile_type7(sorted_x: np.ndarray, q: float) -> float:
    """Hyndman & Fan type 7 (numpy's default 'linear') on sorted data."""
    h = (len(sorted_x) - 1) * q
    lo = int(math.floor(h))
    hi = min(lo + 1, len(sorted_x) - 1)
    return float(sorted_x[lo] + (h - lo) * (sorted_x[hi] - sorted_x[lo]))


def percentile_ci_loop(boot: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    s = np.sort(boot)
    a = 1 - confidence
    return quantile_type7(s, a / 2), quantile_type7(s, 1 - a / 2)


def bca_ci_loop(x, boot: np.ndarray, clusters=None, weights=None,
                confidence: float = 0.95) -> tuple[float, float]:
    """BCa from its definition: z0 from the share below the estimate (ties half), a from
    the leave-one-unit-out jackknife, adjusted percentiles of the bootstrap distribution."""
    x = np.asarray(x, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    units = units_of(len(x), clusters)
    est = weighted_mean(x, w, np.arange(len(x)))
    b = len(boot)
    if max(boot) - min(boot) <= 1e-12 * max(1.0, max(abs(t) for t in boot)):
        return est, est
    below = sum(1.0 if t < est else 0.5 if t == est else 0.0 for t in boot)
    nd = NormalDist()
    z0 = nd.inv_cdf(min(max(below / b, 0.5 / b), 1 - 0.5 / b))
    jack = []
    for u in units:
        keep = np.setdiff1d(np.arange(len(x)), u)
        jack.append(weighted_mean(x, w, keep))
    jbar = sum(jack) / len(jack)
    s2 = sum((jbar - j) ** 2 for j in jack)
    s3 = sum((jbar - j) ** 3 for j in jack)
    acc = s3 / (6 * s2 ** 1.5) if s2 > 0 else 0.0
    s = np.sort(boot)
    out = []
    for q in ((1 - confidence) / 2, 1 - (1 - confidence) / 2):
        z = nd.inv_cdf(q)
        out.append(quantile_type7(s, nd.cdf(z0 + (z0 + z) / (1 - acc * (z0 + z)))))
    return out[0], out[1]


def tol_loop(d, clusters=None, weights=None) -> float:
    """Same tie slack as the fast code: 1e-10 times the largest possible |statistic|."""
    d = np.asarray(d, dtype=float)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=float)
    units = units_of(len(d), clusters)
    return 1e-10 * (sum(abs(float(np.sum(w[u] * d[u]))) for u in units) / float(np.sum(w)) + 1e-300)


def bootstrap_p_loop(boot: np.ndarray, tol: float) -> float:
    le = sum(1 for t in boot if t <= tol)
    ge = sum(1 for t in boot if t >= -tol)
    return min(1.0, 2.0 * (1 + min(le, ge)) / (len(boot) + 1))


def permutation_p_loop(flipped: np.ndarray, observed: float, tol: float) -> float:
    hits = sum(1 for t in flipped if abs(t) >= abs(observed) - tol)
    return (1 + hits) / (len(flipped) + 1)


def holm_loop(pvals) -> list[float]:
    """Holm (1979): the i-th smallest p times (m - i), made monotone, capped at 1."""
    p = [float(v) for v in pvals]
    order = sorted(range(len(p)), key=lambda i: p[i])
    m = len(p)
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def compare_loop(values: np.ndarray, pairs: list[tuple[int, int]], clusters=None,
                 resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> list[dict]:
    """Each comparison on its own, with fresh streams from ``seed`` (as the fast path's
    common random numbers): diff (points), percentile CI, bootstrap and permutation p."""
    rows = []
    for i, j in pairs:
        d = values[:, j] - values[:, i]
        boot_rng, perm_rng = streams(seed)
        boot = bootstrap_means_loop(d, clusters, None, resamples, boot_rng)
        flipped = signflip_means_loop(d, clusters, None, resamples, perm_rng)
        tol = tol_loop(d, clusters)
        est = float(np.mean(d))
        lo, hi = percentile_ci_loop(boot, confidence)
        rows.append({"diff": 100 * est, "ci_low": 100 * lo, "ci_high": 100 * hi,
                     "p_bootstrap": bootstrap_p_loop(boot, tol),
                     "p_permutation": permutation_p_loop(flipped, est, tol)})
    return rows
