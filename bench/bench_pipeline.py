"""`decaf run` on the shipped benchmark with the tiny models: where the time goes.

Prints, in one run:
1. seconds per expression split into MLLM (four prompts, two views, rollout), fusion, masks
   (coarse and SAM2) and scoring, with vision-encoder passes and prefilled tokens per
   expression, with reuse (default) and with --no-reuse (the reference's pattern);
2. a 20-variant sweep served from the attention cache against 20 separate runs (each
   separate run loads the models and runs the MLLM again; measured on 3 runs and scaled).

    python bench/bench_pipeline.py [--quick]
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def _plan(out: Path, cache: Path | None, limit: int, **kw):
    from decafbench.config import MaskSpec, RunConfig

    masks = tuple(kw.pop("masks", [MaskSpec("coarse"), MaskSpec("sam2")]))
    variants = tuple(kw.pop("variants", RunConfig().variants))
    # random tiny models rarely stop early: at the official 128 new tokens generation alone
    # took minutes per expression on a loaded 2-core machine; 8 keeps the stages comparable
    kw.setdefault("max_new_tokens", 8)
    return RunConfig(out=out, cache_dir=cache, limit=limit, masks=masks, variants=variants, **kw)


def _timed_run(plan):
    """(seconds to check settings and load the models, seconds of work, record paths)."""
    from decafbench.driver import RunDriver
    from decafbench.pipeline import Worker

    t0 = time.perf_counter()
    driver = RunDriver(plan, command=["bench"])
    jobs = driver.prepare()
    worker = Worker(plan).load()
    driver.adapter_spec = worker.spec()
    t1 = time.perf_counter()
    for job in jobs:
        driver.collect(worker.process(job))
    return t1 - t0, time.perf_counter() - t1, driver.finalize().paths


def main(quick: bool) -> None:
    import pandas as pd
    import torch

    from decafbench.config import MaskSpec, VariantSpec

    torch.set_num_threads(os.cpu_count() or 1)
    # --quick: a smoke pass: 1 expression on 4 key frames, coarse masks only (bench_sam2 times
    # SAM2), no warm-up run, reuse only, a 5-variant sweep against 1 separate run
    limit = 1 if quick else 8
    extra = {"num_frames": 4} if quick else {}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"\n1. decaf run, embedded benchmark ({limit} expressions, {extra.get('num_frames', 16)} key frames of 120x160), "
              "tiny Qwen2-VL + tiny SAM2")
        print(f"{'pattern':10s} {'load s':>7s} {'MLLM':>7s} {'fusion':>7s} {'coarse':>7s} {'sam2':>7s} {'score':>7s} "
              f"{'total':>7s} {'vision passes':>14s} {'prefill tokens':>15s}")
        if not quick:
            _timed_run(_plan(tmp / "warmup", None, 1))  # first-call costs (allocator, kernels) out of the numbers
        for reuse in (True,) if quick else (True, False):
            kinds = {"masks": [MaskSpec("coarse")]} if quick else {}
            load, _, paths = _timed_run(_plan(tmp / f"r{reuse}", None, limit, reuse=reuse, **extra, **kinds))
            coarse = pd.read_csv(paths[0] / "per_expression.csv")
            sam2 = pd.read_csv(paths[1] / "per_expression.csv") if len(paths) > 1 else \
                pd.DataFrame({c: [0.0] for c in ("time_fusion", "time_masks", "time_score", "sam2_encoder_passes")})
            mllm = coarse["time_mllm"].mean()
            fusion = coarse["time_fusion"].mean() + sam2["time_fusion"].mean()
            t_coarse, t_sam2 = coarse["time_masks"].mean(), sam2["time_masks"].mean()
            score = coarse["time_score"].mean() + sam2["time_score"].mean()
            total = mllm + fusion + t_coarse + t_sam2 + score
            print(f"{'reuse' if reuse else 'no-reuse':10s} {load:7.2f} {mllm:7.2f} {fusion:7.3f} {t_coarse:7.3f} {t_sam2:7.2f} "
                  f"{score:7.3f} {total:7.2f} {coarse['vision_passes'].mean():14.1f} {coarse['prefill_tokens'].mean():15.0f}")
        print("(seconds per expression; fusion and scoring summed over the two mask kinds"
              f"{', SAM2 not run in --quick' if quick else ''};"
              " SAM2 encoder passes per expression: "
              f"{sam2['sam2_encoder_passes'].mean():.1f})")

        n_var = 5 if quick else 20
        variants = [VariantSpec("decaf", (("sigma", 0.25 + 0.1 * i),)) for i in range(n_var)]
        coarse_only = [MaskSpec("coarse")]
        print(f"\n2. {n_var}-variant sweep (coarse masks, {limit} expressions) from the cache vs {n_var} separate runs")
        cache = tmp / "cache"
        _timed_run(_plan(tmp / "warm", cache, limit, masks=coarse_only, **extra))  # fills the cache: one MLLM pass
        load, run, _ = _timed_run(_plan(tmp / "sweep", cache, limit, masks=coarse_only, variants=variants, **extra))
        sweep = load + run
        sep = []
        n_sep = 1 if quick else 3
        for i in range(n_sep):
            load, run, _ = _timed_run(_plan(tmp / f"sep{i}", None, limit, masks=coarse_only, variants=[variants[i]],
                                             **extra))
            sep.append(load + run)
        separate = sum(sep) / len(sep) * n_var
        print(f"sweep from cache (one process, {n_var} records): {sweep:7.1f} s")
        print(f"{n_var} separate runs ({n_sep} measured, x{n_var / n_sep:.2f}):  {separate:7.1f} s   "
              f"ratio {separate / sweep:.1f}x")
    from summary import emit  # bench/summary.py: the line run_all.py's table shows

    emit("pipeline", f"{n_var}-variant sweep from the cache {separate / sweep:.1f}x separate runs (tiny models)")


if __name__ == "__main__":
    main("--quick" in sys.argv)
