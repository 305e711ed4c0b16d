"""J + F per frame: decafbench.metrics against the DAVIS toolkit's algorithm, same run.

The baseline is ``decafbench.reference.metrics.toolkit_*`` (full-frame numpy ``_seg2bmap``,
``cv2.dilate`` by ``skimage.morphology.disk``), which is what every DAVIS / MeViS / ReVOS
evaluation script runs. Masks are realistic: a smooth blob covering 5-20% of the frame, the
prediction a perturbed copy (shifted centre, different wobble). Prints ms per frame, the
speed-up and the largest |difference| of J and F (which must be 0).

    python bench/bench_metrics.py [--quick]
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np


def blob(h: int, w: int, rng: np.random.Generator, frac: float, jitter: float = 0.0,
         params: tuple | None = None) -> tuple[np.ndarray, tuple]:
    """A smooth star-shaped object covering about ``frac`` of the frame; ``params`` re-draws
    the same object with the centre and wobble perturbed by ``jitter``."""
    if params is None:
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        amp = rng.uniform(0.05, 0.25, size=3)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        params = (cy, cx, amp, phase)
    cy, cx, amp, phase = params
    if jitter:
        cy, cx = cy + rng.normal(0, jitter * h), cx + rng.normal(0, jitter * w)
        amp = amp * rng.uniform(0.7, 1.3, size=3)
        phase = phase + rng.normal(0, 0.2, size=3)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    ang = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + sum(a * np.sin((k + 2) * ang + ph) for k, (a, ph) in enumerate(zip(amp, phase)))
    r0 = np.sqrt(frac * h * w / np.pi)
    mask = (yy - cy) ** 2 + ((xx - cx) * 0.8) ** 2 < (r0 * wobble) ** 2
    return mask, params


def video(h: int, w: int, frames: int, seed: int, frac: tuple[float, float] = (0.05, 0.2)):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(frames):
        g, params = blob(h, w, rng, rng.uniform(*frac))
        p, _ = blob(h, w, rng, rng.uniform(*frac), jitter=0.005, params=params)
        gts.append(g)
        preds.append(p)
    return np.stack(gts), np.stack(preds)


def interleaved(fns: dict, rounds: int) -> dict:
    """Best wall time of each function over ``rounds`` rounds, one call of each per round
    (interleaving keeps a shared machine's load changes from favouring one side)."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def fast_pair(g, p):
    from decafbench.metrics import boundary_f, jaccard

    return jaccard(g, p), boundary_f(g, p)


def toolkit_pair(g, p):
    from decafbench.reference.metrics import toolkit_f_measure, toolkit_jaccard

    return (np.array([toolkit_jaccard(gi, pi) for gi, pi in zip(g, p)], dtype=np.float64),
            np.array([toolkit_f_measure(pi, gi) for gi, pi in zip(g, p)], dtype=np.float64))


def row(label: str, g, p, rounds: int, toolkit_frames: int | None = None) -> float:
    from decafbench.metrics import jaccard_and_f

    n = len(g)
    m = n if toolkit_frames is None else min(n, toolkit_frames)
    t = interleaved({"fast": lambda: fast_pair(g, p), "fused": lambda: jaccard_and_f(g, p),
                     "toolkit": lambda: toolkit_pair(g[:m], p[:m])}, rounds)
    t_fast, t_fused, t_tk = t["fast"] / n, t["fused"] / n, t["toolkit"] / m
    jf, ff = fast_pair(g[:m], p[:m])
    jt, ft = toolkit_pair(g[:m], p[:m])
    diff = max(np.abs(jf - jt).max(), np.abs(ff - ft).max())
    print(f"{label:<30} {t_tk * 1e3:9.3f} {t_fast * 1e3:9.3f} {t_fused * 1e3:9.3f} "
          f"{t_tk / t_fast:7.1f}x {t_tk / t_fused:7.1f}x {diff:9.1e}", flush=True)
    SPEEDUPS.append((label, t_tk / t_fused))
    return diff


SPEEDUPS: list[tuple[str, float]] = []


def main(quick: bool) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores "
          f"(shared; load average {load:.1f} at start), python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print("wall ms per frame, best of interleaved rounds. toolkit = DAVIS db_eval_iou + "
          "f_measure (cv2); fast = jaccard() + boundary_f(); fused = jaccard_and_f()")
    print(f"{'case':<30} {'toolkit':>9} {'fast':>9} {'fused':>9} {'speedup':>8} {'fused':>8} "
          f"{'max|diff|':>9}")
    rounds = 2 if quick else 5
    g, p = video(64, 96, 2, seed=9)
    toolkit_pair(g, p)  # warm up: the toolkit imports cv2 and skimage on first use
    diffs = []
    g, p = video(480, 854, 8 if quick else 16, seed=0)
    diffs.append(row(f"480x854 blob 5-20% T={len(g)}", g, p, rounds))
    for frames in ((1, 8, 32) if quick else (1, 8, 32, 128)):
        g, p = video(480, 854, frames, seed=1)
        diffs.append(row(f"480x854 T={frames}", g, p, rounds, toolkit_frames=8))
    for h, w in ((240, 427), (480, 854)) if quick else ((240, 427), (480, 854), (720, 1280), (1080, 1920)):
        g, p = video(h, w, 4 if quick else 8, seed=2)
        diffs.append(row(f"{h}x{w} T={len(g)}", g, p, rounds, toolkit_frames=4))
    g, p = video(480, 854, 4 if quick else 8, seed=3, frac=(0.9, 1.2))
    diffs.append(row("480x854 full-frame object", g, p, rounds))
    print(f"max |fast - toolkit| over all frames: {max(diffs):.1e}")
    from summary import emit  # bench/summary.py: the line run_all.py's table shows

    ratios = [r for _, r in SPEEDUPS]
    emit("metrics", f"J+F {min(ratios):.1f}-{max(ratios):.1f}x the DAVIS toolkit per frame; "
                    f"max |diff| {max(diffs):.1g}")


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
