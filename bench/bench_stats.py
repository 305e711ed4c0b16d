"""Statistics: speed of the matrix resampling vs the plain loop, and a calibration study.

    python bench/bench_stats.py [--quick | --normal-only]

1. Speed. 20 runs compared against a baseline over 10,000 shared expressions with 10,000
   paired resamples (bootstrap CIs and p, sign-flip permutation p, Wilcoxon, Holm, per-run
   percentile and BCa CIs): ``stats.analyse_runs`` against ``reference.compare_loop`` (one
   resample at a time, bootstrap + permutation only). The loop is run on a subset of
   resamples and comparisons and extrapolated linearly (its cost is linear in both); the
   table says so. Agreement is checked on the subset, same seed: identical p-values,
   differences and CIs to 1e-9 points.
2. Calibration (the table in the README): synthetic paired scores with a known truth,
   100 videos x 4 expressions, differences d = shift + video effect + noise. Rejection rate
   at alpha = 0.05 under the null (shift 0), power at a planted 1-point shift, coverage of
   the 95% paired-bootstrap CI of the shift, and coverage of the per-run mean's percentile
   and BCa CIs; for iid data (no video effects) and clustered data (per-video effects in
   both the scores and the differences), with unit=expression
   and unit=video. Binomial standard error of a rate p over S simulations: sqrt(p(1-p)/S).
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
from scipy import stats as sst

from decafbench import runstats as RS
from decafbench import stats as S
from decafbench.reference import stats as R


def machine() -> str:
    return (f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
            f"numpy {np.__version__}")


def speed(n: int, k: int, resamples: int, loop_resamples: int, loop_pairs: int) -> None:
    rng = np.random.default_rng(0)
    base = rng.beta(2, 2, n)
    values = np.clip(base[:, None] + rng.normal(0, 0.05, (n, k + 1)) + np.linspace(0, 0.02, k + 1), 0, 1)
    keys = [(f"v{i // 4:05d}", str(i % 4)) for i in range(n)]
    aligned = RS.Aligned([f"r{j}" for j in range(k + 1)], keys, values, [0] * (k + 1))
    print(f"\n## Speed: {k} runs vs a baseline, {n} expressions, {resamples} resamples ({machine()})\n")
    print("| unit | fast (s) | loop (s) | loop measured on | speed-up |")
    print("|---|---:|---:|---|---:|")
    RS.analyse_runs(aligned, baseline=0, resamples=10, seed=0)  # warm-up: imports, caches
    for unit in ("expression", "video"):
        t0 = time.perf_counter()
        RS.analyse_runs(aligned, baseline=0, unit=unit, resamples=resamples, seed=0)
        fast = time.perf_counter() - t0
        pairs = [(0, j) for j in range(1, loop_pairs + 1)]
        t0 = time.perf_counter()
        ref = R.compare_loop(values, pairs, aligned.clusters(unit), loop_resamples, 0)
        loop = (time.perf_counter() - t0) * (resamples / loop_resamples) * (k / loop_pairs)
        # agreement on the subset (same seed, same resamples)
        sub = RS.Aligned(aligned.labels[:loop_pairs + 1], keys, values[:, :loop_pairs + 1], [0] * (loop_pairs + 1))
        _, fast_sub = RS.analyse_runs(sub, baseline=0, unit=unit, resamples=loop_resamples, seed=0)
        for row, expect in zip(fast_sub.itertuples(), ref):
            assert row.p_bootstrap == expect["p_bootstrap"] and row.p_permutation == expect["p_permutation"]
            assert max(abs(row.diff - expect["diff"]), abs(row.ci_low - expect["ci_low"]),
                       abs(row.ci_high - expect["ci_high"])) < 1e-9
        note = f"{loop_pairs} pairs x {loop_resamples} resamples, extrapolated"
        print(f"| {unit} | {fast:.2f} | {loop:.1f} | {note} | {loop / fast:.0f}x |", flush=True)
        SPEEDUPS.append((unit, loop / fast))
    print("\nfast and loop agree on the measured subset (same seed): identical p-values, "
          "diff and CI within 1e-9 points.")


def simulate(rng, sims: int, shift: float, video_sd: float, n_videos: int = 100, per_video: int = 4):
    """``sims`` independent datasets as columns: scores a (n x sims), b = a + d, video ids."""
    n = n_videos * per_video
    videos = np.repeat(np.arange(n_videos), per_video)
    if video_sd > 0:  # clustered: scores and differences share per-video effects
        a = np.repeat(rng.beta(2, 5, (n_videos, sims)), per_video, axis=0) + rng.normal(0, 0.1, (n, sims))
    else:
        a = rng.beta(2, 5, (n, sims)) + rng.normal(0, 0.1, (n, sims))  # mean 2/7
    d = shift + np.repeat(rng.normal(0, video_sd, (n_videos, sims)), per_video, axis=0) \
        + rng.normal(0, 0.05, (n, sims))
    return a, a + d, videos


def rates(rng, sims: int, resamples: int, video_sd: float, unit: str, seed: int,
          shift: float = 0.01, alpha: float = 0.05) -> np.ndarray:
    """Counts of: null rejections (boot, perm, Wilcoxon), rejections at ``shift`` (boot,
    perm), shift inside the diff CI, true mean inside the percentile / BCa CI of a."""
    out = np.zeros(8)
    a0, b0, videos = simulate(rng, sims, 0.0, video_sd)
    a1, b1, _ = simulate(rng, sims, shift, video_sd)
    cl = videos if unit == "video" else None
    for j, (a, b) in enumerate(((a0, b0), (a1, b1))):
        design = S.Design.build(b - a, cl)
        boot = S.bootstrap_means(design, resamples, seed)
        flips = S.signflip_means(design, resamples, seed + 1)
        tol = S.tie_tolerance(design)
        out[3 * j] += (S.bootstrap_p_two_sided(boot, tol) < alpha).sum()
        out[3 * j + 1] += (S.permutation_p_two_sided(flips, design.estimate(), tol) < alpha).sum()
        if j == 0:
            unit_d = design.unit_means()
            out[2] += (sst.wilcoxon(unit_d, axis=0).pvalue < alpha).sum()
        else:
            lo, hi = S.percentile_interval(boot)
            out[5] += ((lo <= shift) & (shift <= hi)).sum()
    design = S.Design.build(a1, cl)
    boot = S.bootstrap_means(design, resamples, seed + 2)
    lo, hi = S.percentile_interval(boot)
    out[6] += ((lo <= 2 / 7) & (2 / 7 <= hi)).sum()
    lo, hi = S.bca_interval(boot, design.estimate(), design.jackknife())
    out[7] += ((lo <= 2 / 7) & (2 / 7 <= hi)).sum()
    return out


def calibration(sims: int, resamples: int, batch: int = 100) -> None:
    print(f"\n## Calibration: {sims} simulated datasets per row, {resamples} resamples, "
          "100 videos x 4 expressions, alpha = 0.05\n")
    print("| data | unit | null reject boot | null reject perm | null reject Wilcoxon | power boot (+1 pt) "
          "| power perm (+1 pt) | diff CI coverage | mean CI coverage pct | mean CI coverage BCa |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, video_sd in (("iid", 0.0), ("clustered (video sd 3 pt)", 0.03)):
        for unit in ("expression", "video"):
            rng = np.random.default_rng(1234)
            counts = sum(rates(rng, batch, resamples, video_sd, unit, seed=10 * c)
                         for c in range(sims // batch))
            cells = " | ".join(f"{100 * c / sims:.1f}%" for c in counts)
            print(f"| {label} | {unit} | {cells} |", flush=True)
    se = 100 * np.sqrt(0.05 * 0.95 / sims)
    print(f"\nBinomial standard error at 5% / 95%: {se:.1f} points. Datasets are simulated in batches "
          f"of {batch} columns that share one resampling stream (one matrix per batch, as the fast "
          "path does for runs). Wilcoxon: on per-video mean differences with unit=video. Expected: "
          "about 5% under the null and 95% coverage where the unit matches the data; "
          "unit=expression on clustered data rejects too often and covers too little.")
    lo, hi = sst.binom.ppf([0.001, 0.999], sims, 0.05)
    print(f"(99.8% binomial range of the null rejection count at {sims} sims: {int(lo)}..{int(hi)})")


def normal_calibration(sims: int, batch: int = 500) -> None:
    """The normal-theory columns of compare on the same simulated data: the paired t-test
    (expressions as independent) and the video-clustered SE (Miller eq. 4, t with G-1 df).
    No resampling, so many more datasets per row than the table above."""
    from scipy import stats as sst_

    print(f"\n## Calibration of the t-test and clustered SE: {sims} simulated datasets per row, "
          "100 videos x 4 expressions, alpha = 0.05\n")
    print("| data | test | null reject | power (+1 pt) | diff CI coverage |")
    print("|---|---|---:|---:|---:|")
    for label, video_sd in (("iid", 0.0), ("clustered (video sd 3 pt)", 0.03)):
        rng = np.random.default_rng(99)
        counts = np.zeros((2, 3))
        for _ in range(sims // batch):
            a0, b0, videos = simulate(rng, batch, 0.0, video_sd)
            a1, b1, _ = simulate(rng, batch, 0.01, video_sd)
            se_t0, p_t0, se_c0, p_c0 = S.paired_t(b0 - a0, videos)
            se_t1, p_t1, se_c1, p_c1 = S.paired_t(b1 - a1, videos)
            d1 = (b1 - a1).mean(0)
            for row, (p0, p1, se, df) in enumerate(((p_t0, p_t1, se_t1, videos.size - 1),
                                                    (p_c0, p_c1, se_c1, len(np.unique(videos)) - 1))):
                half = sst_.t.ppf(0.975, df) * se
                counts[row] += [(p0 < 0.05).sum(), (p1 < 0.05).sum(), (np.abs(d1 - 0.01) <= half).sum()]
        for row, name in enumerate(("paired t (expressions)", "clustered SE (videos)")):
            cells = " | ".join(f"{100 * c / sims:.1f}%" for c in counts[row])
            print(f"| {label} | {name} | {cells} |", flush=True)


SPEEDUPS: list[tuple[str, float]] = []  # (unit, loop / fast) of speed(), for the summary line


def main(argv: list[str]) -> int:
    if "--normal-only" in argv:  # the t-test / clustered-SE rows alone (no resampling, ~5 s CPU)
        normal_calibration(sims=10_000)
        return 0
    quick = "--quick" in argv
    print(f"machine: {machine()}, {platform.platform()}")
    t0 = time.perf_counter()
    if quick:
        speed(n=2000, k=5, resamples=1000, loop_resamples=100, loop_pairs=2)
        calibration(sims=200, resamples=300)
        normal_calibration(sims=1000)
    else:
        speed(n=10_000, k=20, resamples=10_000, loop_resamples=200, loop_pairs=1)
        calibration(sims=2000, resamples=1000)
        normal_calibration(sims=10_000)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    from summary import emit  # bench/summary.py: the line run_all.py's table shows

    emit("stats", "; ".join(f"{unit} {ratio:.0f}x loop" for unit, ratio in SPEEDUPS) or "calibration only")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
