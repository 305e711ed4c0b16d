"""`make bench`: run every bench/bench_*.py in turn (each prints its own table).

Speed and memory are measured here, never in tests. Pass --quick for a short smoke pass,
or names to run a subset: ``python bench/run_all.py metrics stats``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str]):
    import argparse

    known = [s.stem.removeprefix("bench_") for s in sorted(HERE.glob("bench_*.py"))]
    parser = argparse.ArgumentParser(
        prog="bench/run_all.py", description="Run the speed and memory benchmarks (bench/bench_*.py) in turn; "
        "each prints the fast path against a slow reference in the same run. Never part of the tests.",
        epilog="examples: python bench/run_all.py --quick;  python bench/run_all.py metrics stats")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"only these benchmarks ({', '.join(known)})")
    parser.add_argument("--quick", action="store_true", help="a short smoke pass of each")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r} (known: {', '.join(known)})")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    quick, names = args.quick, args.names
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
          f"python {platform.python_version()}, {platform.platform()}")
    failed = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *(["--quick"] if quick else [])])
        print(f"--- {script.name}: {time.perf_counter() - t0:.1f} s, exit {rc}", flush=True)
        if rc:
            failed.append(script.name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
