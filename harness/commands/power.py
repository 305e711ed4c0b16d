"""``decaf power``: how many videos a comparison needs, from a pilot pair of run records.

Normal approximation on the clustered paired difference (the difference of two runs on the
same expressions, videos as clusters: lmms-eval's ``power`` ignores the clustering, which
overstates power when expressions of a video move together), with ``--simulate`` to check it
by resampling the pilot's videos. Numbers in points (0-100).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError
from .stats import check_unit_and_fractions


def _check(delta: float, alpha: float, power: float, unit: str, simulations: int) -> None:
    if not (delta == delta) or delta == 0 or abs(delta) == float("inf"):
        raise InputError(f"--delta must be a non-zero number of points, not {delta}")
    check_unit_and_fractions(unit, alpha=alpha, power=power)
    if not 1 <= simulations <= 100_000:
        raise InputError(f"--simulations must be between 1 and 100,000, not {simulations}")


def power_command(
    baseline: Annotated[Path, typer.Option(help="pilot run record: the reference")],
    candidate: Annotated[Path, typer.Option(help="pilot run record: the method under study")],
    delta: Annotated[float, typer.Option(help="true difference to detect, in points (0-100)")],
    alpha: Annotated[float, typer.Option(help="two-sided significance level")] = 0.05,
    power: Annotated[float, typer.Option(help="wanted probability of detecting --delta")] = 0.8,
    unit: Annotated[str, typer.Option(help="video (default: videos are clusters) or expression")] = "video",
    metric: Annotated[str, typer.Option(help="a registered metric (JF, J, F, A, R, J_recall, ...)")] = "JF",
    failures: Annotated[str, typer.Option(help="zero (failures scored as empty masks) or drop")] = "zero",
    simulate: Annotated[bool, typer.Option("--simulate", help="check the sample size by resampling "
                                                              "the pilot's videos")] = False,
    simulations: Annotated[int, typer.Option(help="simulated studies for --simulate")] = 2000,
    seed: Annotated[int, typer.Option(help="seed of the simulation")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="write the result to FILE.json")] = None,
) -> None:
    """From a pilot pair of runs: videos (and expressions) needed to detect a true difference
    of --delta points at --alpha with --power, and the minimum detectable effect (MDE) at the
    pilot's size. n = ceil(((z_{1-alpha/2} + z_power) sd / delta)^2), mde = (z_{1-alpha/2} +
    z_power) sd / sqrt(units), sd = sd of per-video mean differences (clustered; ddof 1).

    Example: decaf power --baseline runs/qwen2 --candidate runs/qwen25 --delta 1 --simulate --out power.json
    """
    from rich.console import Console

    from .. import runstats, stats
    from ..metric_registry import metric_option
    from ..runstore import atomic_write_text, read_record

    metric = metric_option(metric)
    _check(delta, alpha, power, unit, simulations)
    if out is not None and out.suffix.lower() != ".json":
        raise InputError("--out must end in .json", out)
    aligned = runstats.align_runs([read_record(baseline), read_record(candidate)], metric, failures)
    warning = runstats.check_units(aligned, unit)
    d = 100 * (aligned.values[:, 1] - aligned.values[:, 0])
    clusters = aligned.clusters(unit)
    res = stats.power_analysis(d, delta, clusters=clusters, alpha=alpha, power=power).as_dict()
    if simulate:
        res["simulated_power"] = stats.simulate_power(d, delta, res["n_units"], clusters=clusters, alpha=alpha,
                                                      simulations=simulations, seed=seed)
        res["simulations"] = simulations
    res.update(metric=metric, failures=failures, baseline=str(baseline), candidate=str(candidate))
    console = Console(markup=False, highlight=False)
    if warning:
        console.print(warning)
    console.print(f"pilot: {res['units']} {unit} units, {res['expressions']} expressions, {metric} mean difference "
                  f"{res['mean_diff']:+.2f} points, sd of per-{unit} differences {res['sd_diff']:.2f}. "
                  f"{aligned.coverage()}")
    console.print(f"to detect {delta:g} points at alpha={alpha:g} with power {power:g}: {res['n_units']} {unit}s "
                  f"(about {res['n_expressions']} expressions)")
    console.print(f"minimum detectable effect at the pilot size: {res['mde']:.2f} points")
    if simulate:
        console.print(f"simulated power at {res['n_units']} {unit}s ({simulations} resampled studies, "
                      f"seed {seed}): {res['simulated_power']:.3f}")
    if out is not None:
        atomic_write_text(out, json.dumps(res, indent=2, allow_nan=False) + "\n")
        console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("power")(power_command)
