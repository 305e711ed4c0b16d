"""Time per expression of fusion, coarse masks and diagnostics at realistic sizes.

Sizes follow Qwen2.5-VL in the published setup: video view 8 steps x 20 x 20 (400 tokens per
frame), frame view 16 x 40 x 40 (1600 tokens per image); frames 480 x 854 (DAVIS) and
720 x 1280. Baselines in the same run: the slow numpy reference of the fusion
(:mod:`decafbench.reference.fusion`) and, for coarse masks, the DecAF reference's own path
(torch resize + ``cv2.threshold(..., THRESH_OTSU)`` per frame) when OpenCV is installed.

    python bench/bench_fusion.py [--quick]
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from decafbench import fusion
from decafbench.coarse import coarse_masks
from decafbench.diagnostics import diagnose
from decafbench.reference import fusion as ref


def timeit(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cv2_coarse(fused: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    import cv2

    up = F.interpolate(fused[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    u8 = (up * 255).numpy().astype(np.uint8)
    return np.stack([cv2.threshold(f, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1] > 0 for f in u8])


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    vgrid, fgrid = ((10, 10), (20, 20)) if quick else ((20, 20), (40, 40))
    maps = [torch.tensor(rng.random(s), dtype=torch.float32) * 1e-3
            for s in ((8, *vgrid), (8, *vgrid), (16, *fgrid), (16, *fgrid))]
    repeat = 3 if quick else 10
    rows: list[tuple[str, float, float | None]] = []

    decaf = fusion.get("decaf")
    fast = timeit(lambda: decaf(*maps), repeat)
    slow = timeit(lambda: ref.fuse(*[m.double().numpy() for m in maps]), 1)
    err = float(np.abs(decaf(*maps).numpy() - ref.fuse(*[m.double().numpy() for m in maps])).max())
    rows.append((f"fusion decaf, frame grid {fgrid[0]}x{fgrid[1]} (max |fast-ref| {err:.1e})", fast, slow))
    rows.append(("fusion stages (7 maps)", timeit(lambda: fusion.stages(*maps), repeat), None))

    fused = decaf(*maps)
    try:
        import cv2  # noqa: F401
        have_cv2 = True
    except ImportError:
        have_cv2 = False
    sizes = [(480, 854)] if quick else [(480, 854), (720, 1280)]
    for size in sizes:
        fast = timeit(lambda: coarse_masks(fused, size), repeat)
        slow = timeit(lambda: cv2_coarse(fused, size), repeat) if have_cv2 else None
        if have_cv2:
            assert np.array_equal(coarse_masks(fused, size), cv2_coarse(fused, size))
        rows.append((f"coarse masks 16 x {size[0]}x{size[1]} (ref: cv2 Otsu)", fast, slow))

    gt = np.zeros((16, 480, 854), dtype=bool)
    gt[:, 100:300, 200:500] = True
    st = fusion.stages(*maps)
    rows.append(("diagnose 7 stages vs 16 x 480x854 masks", timeit(lambda: diagnose(st, gt), max(1, repeat // 3)), None))

    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
          f"torch {torch.__version__} (1 thread), python {platform.python_version()}"
          f"{', quick' if quick else ''}")
    print(f"{'case':<62} {'fast ms':>9} {'ref ms':>9} {'ratio':>8}")
    for name, fast, slow in rows:
        ref_ms = f"{slow * 1e3:9.1f}" if slow is not None else f"{'-':>9}"
        ratio = f"{slow / fast:7.1f}x" if slow is not None else f"{'-':>8}"
        print(f"{name:<62} {fast * 1e3:9.2f} {ref_ms} {ratio}")
    from summary import emit  # bench/summary.py: the line run_all.py's table shows

    emit("fusion", "; ".join(f"{name.split(' (')[0]} {slow / fast:.1f}x ref"
                             for name, fast, slow in rows if slow is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
