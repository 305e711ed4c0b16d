"""``decaf compare``, ``decaf leaderboard`` and ``decaf regress``: statistics over run records.

numpy/pandas/rich are imported inside the command bodies so ``decaf --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError

METRIC_ALIASES = {"JF": "JF", "J&F": "JF", "J": "J", "F": "F"}

Resamples = Annotated[int, typer.Option(help="bootstrap / permutation resamples")]
Seed = Annotated[int, typer.Option(help="seed of every random draw (numpy Generator)")]
Unit = Annotated[str, typer.Option(help="resampling unit: video (default: cluster bootstrap, sign flips per "
                                        "video; expressions of a video are correlated) or expression")]
Metric = Annotated[str, typer.Option(help="JF (J&F), J or F")]


def _metric(name: str) -> str:
    try:
        return METRIC_ALIASES[name.upper()]
    except KeyError:
        raise InputError(f"--metric must be JF, J or F, not {name!r}") from None


def _check(resamples: int, unit: str, confidence: float = 0.95, alpha: float = 0.05) -> None:
    if resamples < 1:
        raise InputError(f"--resamples must be at least 1, not {resamples}")
    if unit not in ("expression", "video"):
        raise InputError(f"--unit must be 'expression' or 'video', not {unit!r}")
    if not 0 < confidence < 1:
        raise InputError(f"--confidence must lie in (0, 1), not {confidence}")
    if not 0 < alpha < 1:
        raise InputError(f"--alpha must lie in (0, 1), not {alpha}")


def _fmt_p(p: float) -> str:
    return "nan" if p != p else (f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}")


def compare(
    runs: Annotated[list[Path], typer.Argument(help="run record folders (RUN_DIR with manifest.json)")],
    baseline: Annotated[Optional[Path], typer.Option(help="compare every run against this one "
                                                          "instead of all pairs")] = None,
    metric: Metric = "JF",
    unit: Unit = "video",
    resamples: Resamples = 10_000,
    seed: Seed = 0,
    confidence: Annotated[float, typer.Option(help="CI level")] = 0.95,
    out: Annotated[Optional[Path], typer.Option(help="write the comparisons to FILE.csv or FILE.json")] = None,
) -> None:
    """Paired comparison of runs on the expressions they share: means with bootstrap CIs
    (percentile, BCa), differences with paired-bootstrap CIs, bootstrap / permutation /
    Wilcoxon p-values and Holm-adjusted permutation p-values. Differences are run_b - run_a
    in points (0-100).

    Example: decaf compare runs/qwen7b runs/internvl8b --baseline runs/qwen2 --unit video --out cmp.csv
    """
    from rich.console import Console
    from rich.table import Table

    from .. import runstats
    from ..runstore import read_record

    metric = _metric(metric)
    _check(resamples, unit, confidence)
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise InputError("--out must end in .csv or .json", out)
    paths = list(runs)
    base_idx = None
    if baseline is not None:
        resolved = [p.resolve() for p in paths]
        if baseline.resolve() in resolved:
            base_idx = resolved.index(baseline.resolve())
        else:
            paths, base_idx = [baseline, *paths], 0
    if len(paths) < 2:
        raise InputError("compare needs at least two runs (or one run and --baseline)")
    records = [read_record(p) for p in paths]
    aligned = runstats.align_runs(records, metric)
    summary, pairs = runstats.analyse_runs(aligned, baseline=base_idx, unit=unit, resamples=resamples,
                                           seed=seed, confidence=confidence)
    console = Console(markup=False, highlight=False)
    n_units = len(set(aligned.videos)) if unit == "video" else len(aligned.keys)
    not_shared = ", ".join(f"{lab}: {u}" for lab, u in zip(aligned.labels, aligned.unshared))
    console.print(f"Paired over {len(aligned.keys)} shared expressions ({n_units} {unit} units), "
                  f"metric {metric}, {resamples} resamples, seed {seed}. Not shared: {not_shared}.")
    pct = round(100 * confidence)
    t = Table(title=f"Runs ({metric}, points)")
    for col in ("run", "n", "mean", f"{pct}% CI percentile", f"{pct}% CI BCa", "not shared"):
        t.add_column(col, justify="left" if col == "run" else "right")
    for r in summary.itertuples():
        t.add_row(r.run, str(r.n), f"{r.mean:.2f}", f"[{r.ci_low:.2f}, {r.ci_high:.2f}]",
                  f"[{r.bca_low:.2f}, {r.bca_high:.2f}]", str(r.not_shared))
    console.print(t)
    if len(pairs):
        t = Table(title="Comparisons (diff = run_b - run_a; Holm over permutation p)")
        for col in ("run_a", "run_b", "diff", f"{pct}% CI", "p boot", "p perm", "p wilcoxon", "p Holm"):
            t.add_column(col, justify="left" if col.startswith("run") else "right")
        for r in pairs.itertuples():
            t.add_row(r.run_a, r.run_b, f"{r.diff:+.2f}", f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]",
                      _fmt_p(r.p_bootstrap), _fmt_p(r.p_permutation), _fmt_p(r.p_wilcoxon),
                      _fmt_p(r.p_holm) + (" *" if r.p_holm < 1 - confidence else ""))
        console.print(t)
    if out is not None:
        from ..runstore import atomic_write_text

        if out.suffix.lower() == ".csv":
            atomic_write_text(out, pairs.to_csv(index=False, float_format="%.10g"))
        else:
            atomic_write_text(out, pairs.to_json(orient="records", indent=2) + "\n")
        console.print(f"wrote {out}")


def leaderboard(
    runs: Annotated[list[Path], typer.Argument(help="run record folders")],
    group_by: Annotated[str, typer.Option(help="manifest keys that make the column groups")] = "benchmark,split",
    format: Annotated[Optional[str], typer.Option("--format", help="md, csv, tex or html "
                                                   "(default: from --out, else md)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="write the table here instead of stdout")] = None,
    unit: Unit = "video",
    resamples: Resamples = 10_000,
    seed: Seed = 0,
    alpha: Annotated[float, typer.Option(help="level of the test against the best")] = 0.05,
    digits: Annotated[int, typer.Option(help="decimals shown")] = 1,
) -> None:
    """One row per configuration (adapter, checkpoint, variant, mask kind), J / F / J&F per
    benchmark split with bootstrap CIs; best bold, a dagger on rows not significantly
    different from the best. ReVOS-style runs get referring / reasoning / overall columns.

    Example: decaf leaderboard runs/* --group-by benchmark,split --format tex --out board.tex
    """
    from .. import tables
    from ..runstore import atomic_write_text, read_record

    _check(resamples, unit, alpha=alpha)
    fmt = tables.format_for(str(out) if out else None, format)
    if fmt not in tables.FORMATS:
        raise InputError(f"--format must be one of {', '.join(tables.FORMATS)}, not {fmt!r}")
    keys = [k.strip() for k in group_by.split(",") if k.strip()]
    records = [read_record(p) for p in runs]
    table = tables.build_leaderboard(records, group_by=keys, unit=unit, resamples=resamples, seed=seed,
                                     alpha=alpha, digits=digits)
    text = tables.render(table, fmt)
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}")


def regress(
    baseline: Annotated[Path, typer.Option(help="the reference run record")],
    candidate: Annotated[Path, typer.Option(help="the run under test")],
    tolerance: Annotated[float, typer.Option(help="allowed drop in points")] = 0.5,
    alpha: Annotated[float, typer.Option(help="one-sided significance level")] = 0.05,
    metric: Metric = "JF",
    unit: Unit = "video",
    resamples: Resamples = 10_000,
    seed: Seed = 0,
    show: Annotated[int, typer.Option(help="how many of the largest drops to list")] = 10,
) -> None:
    """Exit 1 when the candidate is worse than the baseline by more than --tolerance points,
    significantly at --alpha (one-sided paired bootstrap of H0: diff >= -tolerance), else 0.

    Example: decaf regress --baseline runs/main --candidate runs/pr-123 --tolerance 0.5
    """
    from rich.console import Console
    from rich.table import Table

    from .. import runstats, stats
    from ..runstore import read_record

    metric = _metric(metric)
    _check(resamples, unit, alpha=alpha)
    if tolerance < 0:
        raise InputError(f"--tolerance must be >= 0 points, not {tolerance}")
    aligned = runstats.align_runs([read_record(baseline), read_record(candidate)], metric)
    base, cand = aligned.values[:, 0], aligned.values[:, 1]
    res = stats.regression_test(base, cand, tolerance=tolerance / 100, alpha=alpha,
                                clusters=aligned.clusters(unit), resamples=resamples,
                                seed=stats.streams(seed)[0])
    console = Console(markup=False, highlight=False)
    console.print(f"{metric} candidate - baseline: {100 * res.diff:+.2f} points, 95% CI "
                  f"[{100 * res.low:+.2f}, {100 * res.high:+.2f}] over {len(base)} shared expressions "
                  f"(not shared: baseline {aligned.unshared[0]}, candidate {aligned.unshared[1]}); "
                  f"one-sided p = {_fmt_p(res.p_one_sided)} for H0: diff >= -{tolerance:g}")
    drops = sorted(range(len(base)), key=lambda i: (cand[i] - base[i], aligned.keys[i]))[:max(show, 0)]
    if drops:
        t = Table(title=f"Largest drops ({metric}, points)")
        for col in ("video", "exp_id", "baseline", "candidate", "diff"):
            t.add_column(col, justify="left" if col in ("video", "exp_id") else "right")
        for i in drops:
            t.add_row(*aligned.keys[i], f"{100 * base[i]:.2f}", f"{100 * cand[i]:.2f}",
                      f"{100 * (cand[i] - base[i]):+.2f}")
        console.print(t)
    if res.regressed:
        console.print(f"REGRESSION: more than {tolerance:g} points lower at alpha={alpha:g}")
        raise typer.Exit(1)
    console.print("OK: no significant regression beyond the tolerance")


def register(app: typer.Typer) -> None:
    """Add compare, leaderboard and regress to the ``decaf`` app."""
    app.command("compare")(compare)
    app.command("leaderboard")(leaderboard)
    app.command("regress")(regress)
