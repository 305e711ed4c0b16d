"""Scale-out: `decaf run --executor ray` against the local executor on this machine.

Prints, in one run:
1. Ray's own cost: starting a local instance, starting an actor (no model), and the
   overhead per job (a job that does nothing, through 1 and 2 actors, against a plain loop);
2. the embedded benchmark with the tiny models (coarse masks, no attention cache): model
   load and expressions per second with the local executor, Ray with 1 worker and Ray with
   2 workers, and whether every number equals the local run's;
3. the per-expression costs the README's GPU estimate starts from (MLLM, fusion, masks).

    python bench/bench_scale.py [--quick]

Every row runs one torch thread per worker (a Ray actor with one CPU gets one; the local row
is set to one), so the rows compare workers; on a 2-core machine 2 workers can at most double
the rate. On a shared machine compare rows of one run, not runs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class NoopWorker:
    """A worker that does nothing: what is left is the executor's own cost per job."""

    def load(self):
        return self

    def process(self, job):
        return [(name, {"video": job.expression.video, "exp_id": job.expression.exp_id, "error": ""})
                for name in job.records]


@dataclass(frozen=True)
class NoopJob:
    expression: Any
    records: tuple = ("r",)

    @property
    def key(self):
        return (self.expression.video, self.expression.exp_id)


def noop_jobs(n: int):
    from decafbench.benchmarks.base import Expression

    return [NoopJob(Expression(f"v{i // 4}", str(i % 4), "x")) for i in range(n)]


def start_ray() -> float:
    """One local Ray instance for the whole bench (the executors join it): seconds to start."""
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False, logging_level=logging.WARNING)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return time.perf_counter() - t0


def overhead(n: int, ray_workers: tuple[int, ...]) -> dict:

    from decafbench.executors import LocalExecutor, RayExecutor, group_by_video

    out: dict = {}
    groups = group_by_video(noop_jobs(n))
    t0 = time.perf_counter()
    LocalExecutor().run(NoopWorker, groups, lambda r: None)
    out["local_ms_per_job"] = 1e3 * (time.perf_counter() - t0) / n
    for workers in ray_workers:
        with RayExecutor(workers=workers) as ex:
            t_first: list[float] = []
            t0 = time.perf_counter()
            ex.run(NoopWorker, groups, lambda r: t_first.append(time.perf_counter()))
            total = time.perf_counter() - t0
        # the first result waits for the actor to start; the rest is the per-job cost
        out[f"ray{workers}_actor_start_s"] = t_first[0] - t0
        out[f"ray{workers}_ms_per_job"] = 1e3 * (t_first[-1] - t_first[0]) / max(n - 1, 1)
        out[f"ray{workers}_total_s"] = total
    return out


def pipeline(limit: int, frames: int, tmp: Path, ray_workers: tuple[int, ...]) -> dict:
    import pandas as pd
    import torch

    from decafbench.config import RunConfig
    from decafbench.driver import RunDriver
    from decafbench.executors import LocalExecutor, RayExecutor, run_jobs
    from decafbench.pipeline import Worker

    torch.set_num_threads(1)  # like a Ray actor with one CPU: rows compare workers, not threads
    rows: dict = {}
    tables = {}
    executors = [("local", LocalExecutor)] + [(f"ray x{w}", functools.partial(RayExecutor, w)) for w in ray_workers]
    for name, make in executors:
        config = RunConfig.from_mapping({"masks": "coarse", "limit": limit, "frames": frames, "cache": None, "max_new_tokens": 8,
                                         "out": tmp / name.replace(" ", "")})
        driver = RunDriver(config, ["bench"])
        jobs = driver.prepare()
        done: list[float] = []
        ready: list[float] = []
        t0 = time.perf_counter()
        ex = make()
        if name == "local":
            ex.preload(functools.partial(Worker, config))
            ready.append(time.perf_counter())
        with ex:
            t_started = time.perf_counter()

            class Timing:
                def advance(self, worker, failed=0):
                    done.append(time.perf_counter())

                def set_status(self, text):
                    if text.startswith("worker"):
                        ready.append(time.perf_counter())

            result = run_jobs(driver, jobs, ex, Timing())
        t_end = time.perf_counter()
        table = pd.read_csv(result.paths[0] / "per_expression.csv")
        tables[name] = table
        # after the first model is loaded: the rate at which expressions finish
        rows[name] = {"load_s": ready[0] - (t_started if name != "local" else t0),
                      "total_s": t_end - t0, "n": len(done),
                      "expr_per_s_after_load": len(done) / (done[-1] - ready[0]),
                      "mllm_s": float(table["time_mllm"].mean()), "fusion_s": float(table["time_fusion"].mean()),
                      "masks_s": float(table["time_masks"].mean()), "score_s": float(table["time_score"].mean())}
    cols = [c for c in tables["local"].columns if not c.startswith("time_")]
    for name, table in tables.items():
        rows[name]["identical_to_local"] = bool(table[cols].equals(tables["local"][cols]))
    return rows


def main(quick: bool) -> None:
    import ray

    # --quick: one Ray instance, 2 workers only, 2 expressions (a smoke pass of about 20 s)
    n = 50 if quick else 200
    limit = 2 if quick else 8
    frames = 4 if quick else 16
    ray_workers = (2,) if quick else (1, 2)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load average {load:.1f} at start")
    try:
        init_s = start_ray()
        o = overhead(n, ray_workers)
        o["ray_init_s"] = init_s
        with tempfile.TemporaryDirectory() as tmp:
            p = pipeline(limit, frames, Path(tmp), ray_workers)
    finally:
        ray.shutdown()
    print(f"\n1. Ray's own cost ({n} jobs that do nothing)")
    print(f"   ray.init (local, 2 CPUs): {o['ray_init_s']:.1f} s")
    print(f"   plain loop: {o['local_ms_per_job']:.3f} ms per job")
    for w in ray_workers:
        print(f"   ray x{w}: actor start {o[f'ray{w}_actor_start_s']:.1f} s, then {o[f'ray{w}_ms_per_job']:.2f} ms per job")
    print(f"\n2. decaf run, embedded benchmark, tiny models, coarse masks, {frames} key frames, {limit} expressions, "
          "no cache, one torch thread per worker")
    print(f"   {'executor':8s} {'load s':>7s} {'total s':>8s} {'expr/s after load':>18s} "
          f"{'MLLM s':>7s} {'fusion s':>8s} {'masks s':>8s} {'score s':>8s}  numbers == local")
    for name, r in p.items():
        print(f"   {name:8s} {r['load_s']:7.1f} {r['total_s']:8.1f} "
              f"{r['expr_per_s_after_load']:18.3f} {r['mllm_s']:7.2f} {r['fusion_s']:8.3f} {r['masks_s']:8.3f} "
              f"{r['score_s']:8.3f}  {r['identical_to_local']}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load:.1f} at end (a shared machine: compare rows of this run, not across runs)")
    print(json.dumps({"overhead": o, "pipeline": p}, default=float))
    from summary import emit  # bench/summary.py: the line run_all.py's table shows

    emit("scale", f"ray x2 {o['ray2_ms_per_job']:.2f} ms/job after {o['ray2_actor_start_s']:.1f} s actor start; "
                  "numbers == local: " + ", ".join(f"{k} {r['identical_to_local']}" for k, r in p.items()))


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
