"""``decaf evaluate``: score a folder of predicted masks and write a run record."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from decafbench.errors import InputError


def evaluate_command(
    benchmark: str = typer.Option(..., "--benchmark", "-b", help="Benchmark name (decaf benchmarks list)."),
    pred: Path = typer.Option(..., "--pred", help="Predictions: PRED/VIDEO/EXP_ID/FRAME.png, nonzero = foreground."),
    out: Path = typer.Option(..., "--out", help="Run record folder to write (manifest.json, per_expression.csv)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root in the official layout."),
    split: Optional[str] = typer.Option(None, "--split", help="Split (default: the benchmark's first)."),
    missing: str = typer.Option("error", "--missing", help="'error' (default) or 'empty': score a missing frame as an empty mask."),
    workers: int = typer.Option(0, "--workers", "-j", help="Worker processes (0: one per core)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N expressions."),
    name: Optional[str] = typer.Option(None, "--name", help="Label of this run in tables (default: the folder name)."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow reading mask_dict.pkl (a pickle can run code)."),
    frames: str = typer.Option("annotated", "--frames", help="annotated: every annotated frame (the benchmarks' "
                               "protocol); key: only the annotated frames among each video's key frames, sampled "
                               "as decaf run samples them (where coarse attention masks exist)."),
    key_frames: int = typer.Option(16, "--key-frames", help="Key frames per video for --frames key "
                                   "(linspace(0, n-1, N) cast to int, as decaf run --frames N)."),
) -> None:
    """Score predicted masks: J, F, J&F per expression (plus A, R on ReVOS), as the DAVIS toolkit does.

    Rows are stored as each video finishes, so an interrupted evaluation resumes when rerun with
    the same options; a finished record is re-scored from scratch. A folder holding a record
    of another kind (a `decaf run` record) is refused.

    Example:

        decaf evaluate --benchmark mevis --root data/mevis --split valid_u --pred preds/ --out results/my-method

        decaf evaluate --benchmark embedded --pred results/embedded/decaf__coarse/predictions --frames key --out results/coarse-rescored
    """
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from decafbench.benchmarks.registry import get_benchmark
    from decafbench.evaluate import EvalOptions, evaluate, summarize, summary_table
    from decafbench.results import write_results_lenient
    from decafbench.runstore import MANIFEST, TABLE, RunWriter, base_manifest

    options = EvalOptions(missing=missing, workers=workers, limit=limit, frames=frames,  # type: ignore[arg-type]
                          num_frames=key_frames).validate()
    bench = get_benchmark(benchmark, root=root, split=split, trust_pickle=trust_pickle)
    if not pred.is_dir():
        raise InputError("prediction folder does not exist", pred)
    exprs = bench.expressions()
    n = len(exprs) if limit is None else min(limit, len(exprs))
    manifest = base_manifest("evaluate", command=["decaf", *sys.argv[1:]], name=name or out.name,
                             **bench.describe(), predictions=str(pred), missing=missing, limit=limit,
                             metrics=list(bench.metrics), mask_kind="external",
                             scored_frames="key" if frames == "key" else "all",
                             **({"num_frames": key_frames} if frames == "key" else {}))
    identity = {"kind": "evaluate", "benchmark": bench.name, "split": bench.split,
                "root": str(Path(bench.root).resolve()), "predictions": str(pred.resolve()), "missing": missing,
                "frames": frames, **({"num_frames": key_frames} if frames == "key" else {})}
    created = not out.exists()
    writer = RunWriter(out, manifest)  # checks --out, takes the folder's lock, refuses another kind
    try:
        done = _resume(writer, identity, finished=(out / MANIFEST).is_file())
        console = Console(stderr=True)
        with Progress(TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("evaluate", total=n)
            rows = evaluate(bench, pred, options, on_expression=lambda k: progress.advance(task, k), done=done,
                            on_rows=lambda new: [writer.add(r) for r in new])
        keys = [(r["video"], r["exp_id"]) for r in rows]
        writer.finalize(keys=keys, summarize=lambda rs: summarize(rs, bench.metrics), after=write_results_lenient)
    except BaseException:
        writer.close()
        if created:
            _remove_if_unfinished(out)
        raise
    writer.close()
    summary = summarize(rows, bench.metrics)
    Console().print(summary_table(summary, bench.metrics, title=f"{bench.name} {bench.split}: {len(rows)} expressions"))
    console.print(f"wrote {out / TABLE}")


def _resume(writer, identity: dict, finished: bool) -> dict:
    """Rows to keep from an interrupted evaluation of the same predictions; a finished record
    (or one of other predictions or options) starts over."""
    import json

    from decafbench.runstore import atomic_write_json

    path = writer.dir / "identity.json"
    try:
        old = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        old = None
    if old is not None and old.get("kind", "run") != "evaluate":
        raise InputError(f"holds a record of kind {old.get('kind', 'run')!r}, not 'evaluate'; write to another "
                         "--out (or delete the folder)", writer.dir)
    if finished or old != identity:
        writer.clear()
        atomic_write_json(path, identity)
        return {}
    return writer.done()


def _remove_if_unfinished(out: Path) -> None:
    """A folder this command created and left with nothing worth resuming: remove it (parts
    of finished expressions are kept, so a rerun resumes)."""
    import shutil

    from decafbench.runstore import MANIFEST, PARTS

    if out.is_dir() and not (out / MANIFEST).exists() and not any((out / PARTS).glob("*.json")):
        shutil.rmtree(out, ignore_errors=True)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
