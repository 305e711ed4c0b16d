"""Attention rollout: vector chain (fast) vs matrix chain (reference), time and peak memory.

    python bench/bench_rollout.py [--quick]

Full: L = 1024, 2048, 4096, 16 rolled-out layers, H = 16, B = 1, random causal softmax
attention in float32 on CPU. Bar: fast >= 10x the reference at L = 2048 and agreement to
1e-5 relative. Peak memory is *measured*: the peak RSS delta of the call (Linux VmHWM
reset through /proc/self/clear_refs, glibc heap trimmed first), on top of the attention
tensors that already exist. 16 layers of (1, 16, 4096, 4096) float32 would be 16 GB, so
at most ~1 GiB of distinct layers is generated and reused cyclically (each layer is far
larger than any cache, so reuse does not flatter the timings). At the largest L the
reference is run for 1 and 2 layers and extrapolated: t(n) = n*t(1) + (n-1)*(t(2)-t(1)).
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from decafbench.reference.rollout import reference_rollout
from decafbench.rollout import StreamingRollout, rollout

LAYER_BUDGET = 1 << 30  # bytes of distinct attention layers kept alive at once


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float | None]:
    """(result, seconds, peak RSS delta in MiB or None when the kernel cannot reset it)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    base = _status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        resettable = base is not None
    except OSError:
        resettable = False
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM") if resettable else None
    delta = None if peak is None or base is None else max(peak - base, 0) / 1024
    return out, seconds, delta


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def causal_layers(count: int, heads: int, length: int, seed: int) -> list[torch.Tensor]:
    """Random causal softmax layers, built in place head by head (no 2x temporaries)."""
    gen = torch.Generator().manual_seed(seed)
    causal = torch.ones(length, length, dtype=torch.bool).triu(1)
    layers = []
    for _ in range(count):
        att = torch.empty(1, heads, length, length)
        for h in range(heads):
            scores = att[0, h]
            scores.normal_(generator=gen).mul_(float(torch.rand(1, generator=gen)) * 4)
            scores.masked_fill_(causal, float("-inf"))
            torch.softmax(scores, dim=-1, out=scores)
        layers.append(att)
    return layers


def rel_err(fast: torch.Tensor, ref: torch.Tensor) -> float:
    ref = ref.double()
    return float((fast.double() - ref).abs().max() / ref.abs().max())


def run_size(length: int, n: int, heads: int, extrapolate: bool) -> dict:
    distinct = max(1, min(n, LAYER_BUDGET // (heads * length * length * 4)))
    pool = causal_layers(distinct, heads, length, seed=length)
    atts = [pool[i % distinct] for i in range(n)]
    mask = torch.zeros(1, length, dtype=torch.bool)
    mask[0, length // 32 : length - length // 16] = True  # prefix text, video, question

    fast, _, fast_mem = measure(lambda: rollout(atts, mask, 0, n))
    fast_s = best_time(lambda: rollout(atts, mask, 0, n), 3 if length <= 2048 else 2)

    def streamed() -> tuple[torch.Tensor, int]:
        stream = StreamingRollout(mask, range(0, n))
        for layer, att in enumerate(atts):
            stream.observe(layer, att)
        return stream.result(), stream.nbytes

    (stream_out, stored), stream_s, stream_mem = measure(streamed)

    if extrapolate:
        ref1, t1, ref_mem = measure(lambda: reference_rollout(atts, mask, n - 1, n))
        ref2, t2, mem2 = measure(lambda: reference_rollout(atts, mask, n - 2, n))
        ref_s = n * t1 + (n - 1) * (t2 - t1)
        ref_mem = max(m for m in (ref_mem, mem2) if m is not None) if ref_mem is not None else None
        err = max(rel_err(rollout(atts, mask, n - 1, n), ref1), rel_err(rollout(atts, mask, n - 2, n), ref2))
    else:
        ref, ref_s, ref_mem = measure(lambda: reference_rollout(atts, mask, 0, n))
        err = rel_err(fast, ref)
    return {
        "L": length, "fast_s": fast_s, "stream_s": stream_s, "ref_s": ref_s, "extrapolated": extrapolate,
        "fast_mem": fast_mem, "stream_mem": stream_mem, "stored_mib": stored / 2**20, "ref_mem": ref_mem,
        "err": err, "stream_err": rel_err(stream_out, fast.double()),
    }


def fmt_mem(mib: float | None) -> str:
    return "n/a" if mib is None else f"{mib:8.1f}"


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    heads = 16
    n = 4 if quick else 16
    sizes = (256, 512) if quick else (1024, 2048, 4096)
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"CPU float32, B=1 H={heads} layers={n}, load average at start {os.getloadavg()[0]:.1f}")
    print("memory: measured peak RSS delta of the call (MiB), attention inputs excluded")
    print(f"{'L':>5} {'fast s':>8} {'stream s':>9} {'ref s':>9} {'speedup':>8} {'fast MiB':>9} "
          f"{'stream MiB':>10} {'stored MiB':>10} {'ref MiB':>9} {'rel err':>9} {'stream err':>10}")
    ok = True
    extrapolated = False
    for i, length in enumerate(sizes):
        r = run_size(length, n, heads, extrapolate=not quick and i == len(sizes) - 1)
        speedup = r["ref_s"] / r["fast_s"]
        mark = "*" if r["extrapolated"] else " "
        extrapolated |= r["extrapolated"]
        print(f"{r['L']:>5} {r['fast_s']:8.3f} {r['stream_s']:9.3f} {r['ref_s']:8.2f}{mark} {speedup:7.1f}x "
              f"{fmt_mem(r['fast_mem']):>9} {fmt_mem(r['stream_mem']):>10} {r['stored_mib']:10.1f} "
              f"{fmt_mem(r['ref_mem']):>9} {r['err']:9.1e} {r['stream_err']:10.1e}", flush=True)
        ok &= r["err"] <= 1e-5 and r["stream_err"] <= 1e-5
        if length == 2048:
            ok &= speedup >= 10
        gc.collect()
    if extrapolated:
        print("* reference timed for 1 and 2 layers and extrapolated to all layers; its rel err is on those layers")
    print("bar: fast >= 10x reference at L=2048, rel err <= 1e-5:", "PASS" if ok else "FAIL")
    from summary import emit  # bench/summary.py: the line run_all.py's table shows

    emit("rollout", f"L={r['L']}: {speedup:.1f}x reference, rel err {r['err']:.1g}"
                    f"{'' if ok else ' (bar FAILED)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
