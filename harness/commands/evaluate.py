"""``decaf evaluate``: score a folder of predicted masks and write a run record."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def evaluate_command(
    benchmark: str = typer.Option(..., "--benchmark", "-b", help="Benchmark name (decaf benchmarks list)."),
    pred: Path = typer.Option(..., "--pred", help="Predictions: PRED/VIDEO/EXP_ID/FRAME.png, nonzero = foreground."),
    out: Path = typer.Option(..., "--out", help="Run record folder to write (manifest.json, per_expression.csv)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root in the official layout."),
    split: Optional[str] = typer.Option(None, "--split", help="Split (default: the benchmark's first)."),
    missing: str = typer.Option("error", "--missing", help="'error' (default) or 'empty': score a missing frame as an empty mask."),
    workers: int = typer.Option(0, "--workers", "-j", help="Worker processes (0: one per core)."),
    name: Optional[str] = typer.Option(None, "--name", help="Label of this run in tables (default: the folder name)."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow reading mask_dict.pkl (a pickle can run code)."),
) -> None:
    """Score predicted masks: J, F, J&F per expression (plus A, R on ReVOS), as the DAVIS toolkit does.

    Example:

        decaf evaluate --benchmark mevis --root data/mevis --split valid_u --pred preds/ --out results/my-method
    """
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from decafbench.benchmarks.registry import get_benchmark
    from decafbench.errors import InputError
    from decafbench.evaluate import EvalOptions, evaluate, summarize, summary_table
    from decafbench.runstore import TABLE, MANIFEST, atomic_write_json, atomic_write_text, base_manifest, rows_to_frame

    if missing not in ("error", "empty"):
        raise InputError(f"--missing must be 'error' or 'empty', not {missing!r}")
    bench = get_benchmark(benchmark, root=root, split=split, trust_pickle=trust_pickle)
    n = len(bench.expressions())
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("evaluate", total=n)
        rows = evaluate(bench, pred, EvalOptions(missing=missing, workers=workers),
                        on_expression=lambda k: progress.advance(task, k))
    summary = summarize(rows, bench.metrics)
    manifest = base_manifest("evaluate", command=["decaf", *sys.argv[1:]], name=name or out.name,
                             **bench.describe(), predictions=str(pred), missing=missing,
                             metrics=list(bench.metrics), mask_kind="external")
    manifest["n_expressions"] = len(rows)
    manifest["n_failed"] = 0
    manifest["summary"] = summary
    # everything is scored before anything is written: no half-written record on error
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / TABLE, rows_to_frame(rows).to_csv(index=False, float_format="%.17g"))
    atomic_write_json(out / MANIFEST, manifest)
    Console().print(summary_table(summary, bench.metrics, title=f"{bench.name} {bench.split}: {len(rows)} expressions"))
    console.print(f"wrote {out / TABLE}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
