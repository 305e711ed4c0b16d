"""`make bench`: run every bench/bench_*.py in turn, then print one summary table.

Speed and memory are measured here, never in tests. Each script prints its own table as it
goes and one marked summary line (``bench/summary.py``: the headline ratio or figure); the
table at the end lists, per script, that headline, its seconds and its exit status.

    python bench/run_all.py                 # everything (minutes)
    python bench/run_all.py --quick         # every script's short mode, 2 at a time (under a minute idle)
    python bench/run_all.py metrics decode  # a subset, by name without the bench_ prefix
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from summary import parse  # noqa: E402


def run_one(script: Path, quick: bool, relay: bool = True) -> tuple[int, float, str, str]:
    """Run one bench script; (exit status, seconds, headline, its output). With ``relay`` its
    output is printed as it comes, else returned for the caller to print."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-u", str(script), *(["--quick"] if quick else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    headline, last, kept = "", "", []
    assert proc.stdout is not None
    for line in proc.stdout:
        found = parse(line)
        if found is not None:
            headline = str(found.get("headline", ""))
            continue
        if relay:
            sys.stdout.write(line)
            sys.stdout.flush()
        else:
            kept.append(line)
        if line.strip():
            last = line.strip()
    rc = proc.wait()
    if not headline:  # a script without a summary line: its last line says most
        headline = last[:90]
    return rc, time.perf_counter() - t0, headline, "".join(kept)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run_all.py", description=__doc__.split("\n\n")[0],
        epilog="Each script can also be run alone: python bench/bench_NAME.py [--quick].")
    parser.add_argument("names", nargs="*", help="scripts to run (bench_NAME.py -> NAME); default: all")
    parser.add_argument("--quick", action="store_true", help="each script's short smoke mode")
    parser.add_argument("--jobs", type=int, default=None,
                        help="scripts run at once (default: 1; 2 with --quick, a smoke pass whose timings "
                             "are not figures); each script's output is printed whole, in order")
    args = parser.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    known = [s.stem.removeprefix("bench_") for s in scripts]
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r} (known: {', '.join(known)})")
    if args.names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.names]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = (f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, load average "
               f"{load:.1f} at start, python {platform.python_version()}, {platform.platform()}")
    print(f"machine: {machine}")
    jobs = args.jobs or (2 if args.quick else 1)
    results = []
    t_all = time.perf_counter()
    flag = " --quick" if args.quick else ""
    if jobs <= 1:
        for script in scripts:
            print(f"\n=== {script.name}{flag} ===", flush=True)
            rc, secs, headline, _ = run_one(script, args.quick)
            results.append((script.stem.removeprefix("bench_"), headline, secs, rc))
    else:
        from concurrent.futures import ThreadPoolExecutor

        print(f"({jobs} scripts at a time: their seconds include waiting for a core)")
        with ThreadPoolExecutor(jobs) as pool:
            # the longest first (Ray start, model loads, transformers imports) so the two lanes
            # end together; printed in name order all the same
            heavy = ("scale", "pipeline", "real_size", "sam2")
            order = sorted(scripts, key=lambda s: (s.stem.removeprefix("bench_") not in heavy,
                                                   heavy.index(s.stem.removeprefix("bench_"))
                                                   if s.stem.removeprefix("bench_") in heavy else 0))
            futures = {script: pool.submit(run_one, script, args.quick, False) for script in order}
            for script in scripts:
                rc, secs, headline, output = futures[script].result()
                print(f"\n=== {script.name}{flag} ===\n{output}", end="", flush=True)
                results.append((script.stem.removeprefix("bench_"), headline, secs, rc))
    total = time.perf_counter() - t_all
    width = max([5] + [len(r[0]) for r in results])
    print(f"\n=== summary{' (--quick)' if args.quick else ''}: {machine} ===")
    print(f"{'bench':{width}s}  {'seconds':>8s}  {'exit':>4s}  headline")
    for name, headline, secs, rc in results:
        print(f"{name:{width}s}  {secs:8.1f}  {rc:4d}  {headline}")
    failed = [r[0] for r in results if r[3]]
    print(f"{'total':{width}s}  {total:8.1f}  {len(failed):4d}  "
          f"{'failed: ' + ', '.join(failed) if failed else 'all passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
