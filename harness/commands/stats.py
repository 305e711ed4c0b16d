"""``decaf compare``, ``decaf leaderboard`` and ``decaf regress``: statistics over run records.

numpy/pandas/rich are imported inside the command bodies so ``decaf --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError

Resamples = Annotated[int, typer.Option(help="bootstrap / permutation resamples (1 to 1,000,000; "
                                             "refused where the kept resamples would pass 256 MiB)")]
Seed = Annotated[int, typer.Option(help="seed of every random draw (numpy Generator)")]
Unit = Annotated[str, typer.Option(help="resampling unit: video (default: cluster bootstrap, sign flips per "
                                        "video; expressions of a video are correlated) or expression")]
Metric = Annotated[str, typer.Option(help="a registered metric: JF (J&F), J, F, A, R, J_recall, J_decay, "
                                          "F_recall, F_decay")]
Failures = Annotated[str, typer.Option(help="failed expressions: zero (default: scored as an empty mask, as a "
                                            "benchmark server would) or drop (left out)")]


def _metric(name: str) -> str:
    from ..metric_registry import metric_option

    return metric_option(name)


def check_unit_and_fractions(unit: str, **fractions: float) -> None:
    """--unit is expression or video; each named option (--alpha, --power, ...) lies in (0, 1)."""
    if unit not in ("expression", "video"):
        raise InputError(f"--unit must be 'expression' or 'video', not {unit!r}")
    for name, value in fractions.items():
        if not 0 < value < 1:
            raise InputError(f"--{name} must lie in (0, 1), not {value}")


def _check(resamples: int, unit: str, confidence: float = 0.95, alpha: float = 0.05, failures: str = "zero",
           columns: int = 1) -> None:
    from ..stats import check_resamples

    check_resamples(resamples, columns)
    check_unit_and_fractions(unit, confidence=confidence, alpha=alpha)
    if failures not in ("zero", "drop"):
        raise InputError(f"--failures must be 'zero' or 'drop', not {failures!r}")


def _fmt_p(p: float) -> str:
    return "nan" if p != p else (f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}")


def _warn(console, line: str | None) -> None:
    if line:
        console.print(line)


def _order_runs(runs: list[Path], baseline: Optional[Path]) -> tuple[list[Path], int | None]:
    paths, base_idx = list(runs), None
    if baseline is not None:
        resolved = [p.resolve() for p in paths]
        if baseline.resolve() in resolved:
            base_idx = resolved.index(baseline.resolve())
        else:
            paths, base_idx = [baseline, *paths], 0
    if len(paths) < 2:
        raise InputError("compare needs at least two runs (or one run and --baseline)")
    return paths, base_idx


def _print_runs(console, summary, metric: str, pct: int) -> None:
    from rich.table import Table

    t = Table(title=f"Runs ({metric}, points)")
    for col in ("run", "n", "mean", f"{pct}% CI percentile", f"{pct}% CI BCa", "not shared", "failed"):
        t.add_column(col, justify="left" if col == "run" else "right")
    for r in summary.itertuples():
        t.add_row(r.run, str(r.n), f"{r.mean:.2f}", f"[{r.ci_low:.2f}, {r.ci_high:.2f}]",
                  f"[{r.bca_low:.2f}, {r.bca_high:.2f}]", str(r.not_shared), str(r.failed))
    console.print(t)


def _print_pairs(console, pairs, pct: int, alpha: float) -> None:
    from rich.table import Table

    t = Table(title="Comparisons (diff = run_b - run_a; Holm over permutation p; t and clustered: "
                    "normal theory, video clusters)")
    for col in ("run_a", "run_b", "diff", f"{pct}% CI", "p boot", "p perm", "p wilcoxon", "p Holm",
                "p t-test", "SE clust.", "p clust."):
        t.add_column(col, justify="left" if col.startswith("run") else "right")
    for r in pairs.itertuples():
        t.add_row(r.run_a, r.run_b, f"{r.diff:+.2f}", f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]",
                  _fmt_p(r.p_bootstrap), _fmt_p(r.p_permutation), _fmt_p(r.p_wilcoxon),
                  _fmt_p(r.p_holm) + (" *" if r.p_holm < alpha else ""), _fmt_p(r.p_ttest),
                  f"{r.se_clustered:.2f}", _fmt_p(r.p_clustered))
    console.print(t)


def _write_pairs(console, out: Path, pairs) -> None:
    from ..runstore import atomic_write_text

    if out.suffix.lower() == ".csv":
        atomic_write_text(out, pairs.to_csv(index=False, float_format="%.10g"))
    else:
        atomic_write_text(out, pairs.to_json(orient="records", indent=2) + "\n")
    console.print(f"wrote {out}")


def compare(
    runs: Annotated[list[Path], typer.Argument(help="run record folders (RUN_DIR with manifest.json)")],
    baseline: Annotated[Optional[Path], typer.Option(help="compare every run against this one "
                                                          "instead of all pairs")] = None,
    metric: Metric = "JF",
    unit: Unit = "video",
    resamples: Resamples = 10_000,
    seed: Seed = 0,
    confidence: Annotated[float, typer.Option(help="CI level")] = 0.95,
    failures: Failures = "zero",
    out: Annotated[Optional[Path], typer.Option(help="write the comparisons to FILE.csv or FILE.json")] = None,
) -> None:
    """Paired comparison of runs on the expressions they share: means with bootstrap CIs
    (percentile, BCa), differences with paired-bootstrap CIs, bootstrap / permutation /
    Wilcoxon p-values, Holm-adjusted permutation p-values, and the paired t-test and
    video-clustered standard error (Miller 2024) beside them. Differences are run_b - run_a
    in points (0-100).

    Example: decaf compare runs/qwen7b runs/internvl8b --baseline runs/qwen2 --unit video --out cmp.csv
    """
    from rich.console import Console

    from .. import runstats
    from ..runstore import read_record

    metric = _metric(metric)
    paths, base_idx = _order_runs(runs, baseline)
    k = len(paths)
    _check(resamples, unit, confidence, failures=failures, columns=k + (k - 1 if base_idx is not None else k * (k - 1) // 2))
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise InputError("--out must end in .csv or .json", out)
    aligned = runstats.align_runs([read_record(p) for p in paths], metric, failures)
    warning = runstats.check_units(aligned, unit)
    summary, pairs = runstats.analyse_runs(aligned, baseline=base_idx, unit=unit, resamples=resamples,
                                           seed=seed, confidence=confidence)
    console = Console(markup=False, highlight=False)
    _warn(console, warning)
    console.print(f"Paired over {len(aligned.keys)} shared expressions ({aligned.n_units(unit)} {unit} units), "
                  f"metric {metric}, {resamples} resamples, seed {seed}. {aligned.coverage()}")
    pct = round(100 * confidence)
    _print_runs(console, summary, metric, pct)
    if len(pairs):
        _print_pairs(console, pairs, pct, 1 - confidence)
    if out is not None:
        _write_pairs(console, out, pairs)


def leaderboard(
    runs: Annotated[list[Path], typer.Argument(help="run record folders")],
    group_by: Annotated[str, typer.Option(help="manifest keys that make the column groups")] = "benchmark,split",
    format: Annotated[Optional[str], typer.Option("--format", help="md, csv, tex, html or json "
                                                   "(default: from --out, else md)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="write the table here instead of stdout")] = None,
    metric: Annotated[str, typer.Option(help="comma-separated registered metrics, one column each")] = "J,F,JF",
    unit: Unit = "video",
    resamples: Resamples = 10_000,
    seed: Seed = 0,
    alpha: Annotated[float, typer.Option(help="level of the test against the best")] = 0.05,
    digits: Annotated[int, typer.Option(help="decimals shown (0 to 6)")] = 1,
    failures: Failures = "zero",
) -> None:
    """One row per configuration (adapter, checkpoint, variant, mask kind), an n column and
    J / F / J&F (or --metric) per benchmark split with bootstrap CIs; best bold, a dagger on
    rows not significantly different from the best. ReVOS-style runs get referring /
    reasoning / overall columns. Notes say how failures count and where runs cover different
    expressions.

    Example: decaf leaderboard runs/* --group-by benchmark,split --format tex --out board.tex
    """
    from .. import tables
    from ..runstore import atomic_write_text, read_record

    _check(resamples, unit, alpha=alpha, failures=failures)
    if not 0 <= digits <= 6:
        raise InputError(f"--digits must be between 0 and 6, not {digits}")
    metrics = [_metric(m.strip()) for m in metric.split(",") if m.strip()]
    if not metrics:
        raise InputError("--metric names no metric")
    fmt = tables.format_for(str(out) if out else None, format)
    if fmt not in tables.FORMATS:
        raise InputError(f"--format must be one of {', '.join(tables.FORMATS)}, not {fmt!r}")
    keys = [k.strip() for k in group_by.split(",") if k.strip()]
    records = [read_record(p) for p in runs]
    table = tables.build_leaderboard(records, group_by=keys, unit=unit, resamples=resamples, seed=seed,
                                     alpha=alpha, digits=digits, metrics=metrics, failures=failures)
    text = tables.render(table, fmt)
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}")


def _print_drops(console, aligned, metric: str, show: int, sign: float = 1.0) -> None:
    """The ``show`` expressions that got worst (lowest ``sign * (candidate - baseline)``)."""
    from rich.table import Table

    base, cand = aligned.values[:, 0], aligned.values[:, 1]
    drops = sorted(range(len(base)), key=lambda i: (sign * (cand[i] - base[i]), aligned.keys[i]))[:max(show, 0)]
    if not drops:
        return
    t = Table(title=f"Largest {'drops' if sign > 0 else 'rises (lower is better)'} ({metric}, points)")
    for col in ("video", "exp_id", "baseline", "candidate", "diff"):
        t.add_column(col, justify="left" if col in ("video", "exp_id") else "right")
    for i in drops:
        t.add_row(*aligned.keys[i], f"{100 * base[i]:.2f}", f"{100 * cand[i]:.2f}",
                  f"{100 * (cand[i] - base[i]):+.2f}")
    console.print(t)


def regress(
    baseline: Annotated[Path, typer.Option(help="the reference run record")],
    candidate: Annotated[Path, typer.Option(help="the run under test")],
    tolerance: Annotated[float, typer.Option(help="allowed drop in points")] = 0.5,
    alpha: Annotated[float, typer.Option(help="one-sided significance level")] = 0.05,
    metric: Metric = "JF",
    unit: Unit = "video",
    resamples: Resamples = 10_000,
    seed: Seed = 0,
    failures: Failures = "zero",
    show: Annotated[int, typer.Option(help="how many of the largest drops to list")] = 10,
) -> None:
    """Exit 1 when the candidate is worse than the baseline by more than --tolerance points,
    significantly at --alpha (one-sided paired bootstrap of H0: diff >= -tolerance), else 0.
    For a lower-is-better metric (decay) "worse" means higher.

    Example: decaf regress --baseline runs/main --candidate runs/pr-123 --tolerance 0.5
    """
    from rich.console import Console

    from .. import metric_registry, runstats, stats
    from ..runstore import read_record

    metric = _metric(metric)
    _check(resamples, unit, alpha=alpha, failures=failures)
    if not tolerance >= 0:
        raise InputError(f"--tolerance must be >= 0 points, not {tolerance}")
    aligned = runstats.align_runs([read_record(baseline), read_record(candidate)], metric, failures)
    warning = runstats.check_units(aligned, unit)
    sign = 1.0 if metric_registry.get(metric).higher_is_better else -1.0
    base, cand = sign * aligned.values[:, 0], sign * aligned.values[:, 1]
    res = stats.regression_test(base, cand, tolerance=tolerance / 100, alpha=alpha,
                                clusters=aligned.clusters(unit), resamples=resamples,
                                seed=stats.streams(seed)[0])
    console = Console(markup=False, highlight=False)
    _warn(console, warning)
    better = "" if sign > 0 else " (lower is better: signs flipped, positive = better)"
    console.print(f"{metric} candidate - baseline{better}: {100 * res.diff:+.2f} points, 95% CI "
                  f"[{100 * res.low:+.2f}, {100 * res.high:+.2f}] over {len(base)} shared expressions "
                  f"({aligned.n_units(unit)} {unit} units); one-sided p = {_fmt_p(res.p_one_sided)} for "
                  f"H0: diff >= -{tolerance:g}. {aligned.coverage()}")
    _print_drops(console, aligned, metric, show, sign)
    if res.regressed:
        console.print(f"REGRESSION: more than {tolerance:g} points worse at alpha={alpha:g}")
        raise typer.Exit(1)
    console.print("OK: no significant regression beyond the tolerance")


def results(
    runs: Annotated[list[Path], typer.Argument(help="run record folders")],
    unit: Unit = "video",
    resamples: Resamples = 10_000,
    seed: Seed = 0,
    failures: Failures = "zero",
) -> None:
    """(Re)write RUN/results.json for each record: config, versions, and per metric and group
    the mean, bootstrap CI, n and failures in points. run and evaluate write it themselves;
    this rebuilds it for older records or other statistics settings.

    Example: decaf results runs/qwen7b --resamples 20000
    """
    from ..results import write_results

    _check(resamples, unit, failures=failures)
    for run in runs:
        path = write_results(run, unit=unit, resamples=resamples, seed=seed, failures=failures)
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add compare, leaderboard, regress and results to the ``decaf`` app."""
    app.command("compare")(compare)
    app.command("leaderboard")(leaderboard)
    app.command("regress")(regress)
    app.command("results")(results)
