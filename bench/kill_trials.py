"""kill -9 trials: interrupt `decaf run` and `decaf evaluate` at random moments, rerun, and count.

For each command: one uninterrupted reference run, then N trials that each start the same
command into a fresh folder, SIGKILL it (the whole process group, as a scheduler would) after
a random delay within the reference's duration, rerun it to completion, and compare with the
reference: expressions lost (missing rows), duplicated (a key twice in the table), results
differing, orphan processes left, temporary files left. Not a test (it takes minutes);
README "Bad input" reports its numbers.

    .venv/bin/python bench/kill_trials.py --trials 10
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DECAF = [sys.executable, "-m", "decafbench.cli"]


def _run(args: list[str], kill_after: float | None = None) -> tuple[int, float, set[int]]:
    """Run decaf; with ``kill_after``, SIGKILL its process group then. Returns (rc, seconds, pgid members left)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(DECAF + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    if kill_after is None:
        rc = proc.wait()
        return rc, time.perf_counter() - t0, set()
    try:
        rc = proc.wait(timeout=kill_after)
        return rc, time.perf_counter() - t0, set()  # finished before the kill
    except subprocess.TimeoutExpired:
        pass
    os.kill(proc.pid, signal.SIGKILL)  # the parent only: its pool workers must follow it by themselves
    proc.wait()
    time.sleep(2.0)
    left = _group_members(proc.pid)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return -9, time.perf_counter() - t0, left


def _group_members(pgid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.add(int(d.name))
    return out


def _tables(out: Path) -> dict[str, "object"]:
    import pandas as pd

    return {str(p.parent.relative_to(out)): pd.read_csv(p, dtype={"video": str, "exp_id": str}, keep_default_na=False)
            for p in sorted(out.rglob("per_expression.csv"))}


def _compare(ref: dict, got: dict, metrics=("J", "F", "JF")) -> tuple[int, int, int]:
    """(lost, duplicated, differing) expressions over all records."""
    lost = dup = diff = 0
    for name, r in ref.items():
        g = got.get(name)
        if g is None:
            lost += len(r)
            continue
        keys_r = set(zip(r["video"], r["exp_id"]))
        keys_g = list(zip(g["video"], g["exp_id"]))
        lost += len(keys_r - set(keys_g))
        dup += len(keys_g) - len(set(keys_g))
        rr, gg = r.set_index(["video", "exp_id"]), g.drop_duplicates(["video", "exp_id"]).set_index(["video", "exp_id"])
        for m in metrics:
            if m in rr and m in gg:
                a = rr[m].reindex(sorted(keys_r)).to_numpy(float)
                b = gg[m].reindex(sorted(keys_r)).to_numpy(float)
                diff += int((~np.isclose(a, b, rtol=0, atol=1e-12, equal_nan=True)).sum())
    return lost, dup, diff


def trials(name: str, make_args, n: int, rng: random.Random, work: Path) -> dict:
    ref_dir = work / f"{name}-ref"
    rc, seconds, _ = _run(make_args(ref_dir))
    assert rc == 0, f"reference {name} failed ({rc})"
    ref = _tables(ref_dir)
    totals = {"trials": n, "killed": 0, "lost": 0, "duplicated": 0, "differing": 0, "orphans": 0, "tmp_left": 0, "parts_kept": 0,
              "reference_s": round(seconds, 1)}
    for i in range(n):
        out = work / f"{name}-{i}"
        delay = rng.uniform(0.15, 0.9) * seconds
        rc, _, left = _run(make_args(out), kill_after=delay)
        totals["killed"] += rc == -9
        totals["orphans"] += len(left)
        kept = sum(1 for _ in out.rglob("parts/*.json"))  # finished work the rerun resumes from
        totals["parts_kept"] += kept
        rc2, _, _ = _run(make_args(out))
        assert rc2 == 0, f"{name} trial {i}: rerun failed ({rc2})"
        lost, dup, diff = _compare(ref, _tables(out))
        totals["lost"] += lost
        totals["duplicated"] += dup
        totals["differing"] += diff
        totals["tmp_left"] += sum(1 for _ in out.rglob("*.tmp"))
        print(f"  {name} trial {i}: killed after {delay:.1f}s, lost {lost}, duplicated {dup}, differing {diff}, "
              f"orphans {len(left)}, parts kept {kept}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    return totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("run", "evaluate"), default=None)
    ns = ap.parse_args()
    rng = random.Random(ns.seed)
    work = Path(tempfile.mkdtemp(prefix="decaf-kill-"))
    results = {}
    try:
        if ns.only in (None, "evaluate"):
            from decafbench.benchmarks.registry import get_benchmark
            from decafbench.benchmarks.synth import SynthConfig, write_synth
            from decafbench.maskio import write_mask_png

            data = work / "data"
            write_synth(SynthConfig(videos=8, frames=30, height=160, width=200, seed=5), data)
            bench = get_benchmark("mevis", root=data, split="valid_u")
            for e in bench.expressions():
                gt = bench.ground_truth(e)
                for f, m in zip(gt.frames, gt.masks):
                    write_mask_png(work / "pred" / e.video / e.exp_id / f"{f}.png", np.roll(m, 3, axis=1))
            results["evaluate"] = trials("evaluate", lambda out: [
                "evaluate", "-b", "mevis", "--root", str(data), "--pred", str(work / "pred"), "--out", str(out),
                "-j", "2"], ns.trials, rng, work)
        if ns.only in (None, "run"):
            results["run"] = trials("run", lambda out: [
                "run", "--masks", "coarse", "--frames", "8", "--limit", "4", "--out", str(out), "--cache", str(out / "cache")],
                ns.trials, rng, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {os.cpu_count()} cores, {sys.platform}")
    for name, t in results.items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in t.items()))


if __name__ == "__main__":
    main()
