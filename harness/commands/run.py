"""``decaf run`` and ``decaf sweep``: DecAF end to end, one run record per (variant, mask kind)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def execute(config, command: list[str]) -> None:
    """Run a config with a progress bar, print the leaderboard of its records; exit 1 when
    any expression failed (unless ``allow_failures``)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from decafbench.driver import RunDriver, run_local
    from decafbench.pipeline import Worker

    console = Console(stderr=True)
    driver = RunDriver(config, command)
    jobs = driver.prepare()  # every check that needs no model: bad settings exit 2 here
    worker = None
    if jobs:
        with console.status("loading models"):
            worker = Worker(config).load()
    columns = (TextColumn("[bold]decaf run"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("run", total=len(jobs), rate="")

        def advance(k: int) -> None:
            progress.advance(task, k)
            speed = progress.tasks[0].speed
            progress.update(task, rate=f"{speed:.2f} expr/s" if speed else "")

        result = run_local(driver, jobs, worker, on_progress=advance)
    from rich.markup import escape

    for e in result.errors[:10]:
        console.print(f"[red]failed[/red] {escape(e)}", highlight=False)
    console.print(f"{result.expressions} expressions, {result.failed} failed; attention cache: {result.cache_hits} hits, "
                  f"{result.cache_misses} misses; records: {config.out}", markup=False)
    if result.scored:
        write_leaderboard(result.paths, config.out / "leaderboard.md", seed=config.seed)
    if result.failed and not config.allow_failures:
        console.print(f"error: {result.failed} of {result.expressions} expressions failed (their rows say why; "
                      "a rerun retries them; --allow-failures exits 0)", markup=False)
        raise typer.Exit(1)


def write_leaderboard(paths: list[Path], out: Path, seed: int = 0) -> None:
    """The leaderboard of a run's records, on the terminal and as Markdown beside them."""
    from rich.console import Console
    from rich.markdown import Markdown

    from decafbench import tables
    from decafbench.runstore import atomic_write_text, read_record

    records = [read_record(p) for p in paths]
    table = tables.build_leaderboard(records, group_by=["benchmark", "split"], resamples=2000, seed=seed)
    text = tables.render(table, "md")
    atomic_write_text(out, text)
    Console().print(Markdown(text))
    Console(stderr=True).print(f"leaderboard: {out}")


def run_command(
    benchmark: str = typer.Option("embedded", "--benchmark", "-b", help="Benchmark name (decaf benchmarks list)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root (default: the benchmark's own; the embedded one ships in the repo)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split (default: the benchmark's first)."),
    model: str = typer.Option("qwen2-vl:tiny", "--model", "-m", help="ADAPTER[:CHECKPOINT], checkpoint a local path, a hub id or 'tiny'."),
    variant: Optional[List[str]] = typer.Option(None, "--variant", "-v", help="Fusion variant NAME or NAME:key=value,... (repeatable; default decaf)."),
    masks: str = typer.Option("both", "--masks", help="coarse, sam2, both or keypoints (the official keypoint "
                              "mode: top-100 fused-map cells as points, scored by point precision PP@1..100); "
                              "several as coarse,keypoints."),
    frames: int = typer.Option(16, "--frames", help="Key frames sampled uniformly per video."),
    out: Path = typer.Option(Path("results/embedded"), "--out", "-o", help="Folder of run records (one per variant and mask kind)."),
    cache: Optional[Path] = typer.Option(Path("results/cache"), "--cache", help="Attention cache folder."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the attention cache."),
    sam2: str = typer.Option("tiny", "--sam2", help="SAM2 as CONFIG:CHECKPOINT (local files) or 'tiny' (random weights)."),
    point_threshold: float = typer.Option(0.8, "--point-threshold", help="tau_pq: attention threshold of SAM2 point candidates."),
    final_score_threshold: float = typer.Option(0.8, "--final-score-threshold", help="tau_trk: final tracklet score threshold."),
    final_threshold: Optional[float] = typer.Option(None, "--final-threshold", hidden=True, help="Deprecated name of --final-score-threshold."),
    rollout_start: Optional[int] = typer.Option(None, "--rollout-start", help="First rolled-out layer (default N//2)."),
    rollout_end: Optional[int] = typer.Option(None, "--rollout-end", help="End layer, exclusive (default N)."),
    head_weighting: str = typer.Option("vmax", "--head-weighting", help="vmax, mean or max."),
    residual: float = typer.Option(0.5, "--residual", help="Identity weight in R = (1-r) A + r I, in [0, 1]."),
    prompts: str = typer.Option("v0", "--prompts", help="Prompt wording version."),
    max_new_tokens: int = typer.Option(8, "--max-new-tokens", help="Tokens generated per prompt."),
    dtype: str = typer.Option("float32", "--dtype", help="Model dtype: float32, bfloat16, float16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1 ..."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N expressions."),
    reuse: bool = typer.Option(True, "--reuse/--no-reuse", help="--no-reuse: encode the visual input and prefill the "
                               "whole prompt once per prompt, as the reference implementation does (same outputs; for "
                               "comparing vision passes, prefilled tokens and time)."),
    prefix_reuse: bool = typer.Option(True, "--prefix-reuse/--no-prefix-reuse", help="--no-prefix-reuse: keep "
                                      "vision-encoder reuse but prefill each prompt whole (saves the kept prefix cache "
                                      "and queries: GPU memory)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (each expression derives its own from it)."),
    allow_failures: bool = typer.Option(False, "--allow-failures", help="Exit 0 even when some expressions failed."),
) -> None:
    """Run DecAF end to end and score it. With no arguments: the embedded benchmark and tiny models.

    Every option is a setting of the same name in a sweep file's [run] table
    (--final-score-threshold is final_score_threshold). Exit codes: 0 done, 1 some
    expressions failed (see --allow-failures), 2 bad settings or input (nothing loaded).

    Examples:

        decaf run

        decaf run --benchmark ref-davis17 --root data/ref-davis --model qwen2-vl:Qwen/Qwen2.5-VL-7B-Instruct \\
            --sam2 configs/sam2.1/sam2.1_hiera_l.yaml:ckpt/sam2.1_hiera_large.pt --device cuda --dtype bfloat16

        decaf run --variant decaf --variant no-smoothing --variant decaf:sigma=2 --masks coarse
    """
    settings = dict(locals())  # exactly the options above, by their setting names
    import sys

    from decafbench.config import RunConfig

    if settings.pop("no_cache"):
        settings["cache"] = None
    old = settings.pop("final_threshold")
    if old is not None:
        settings["final_score_threshold"] = old
    settings["variant"] = variant or ["decaf"]
    execute(RunConfig.from_mapping(settings), ["decaf", *sys.argv[1:]])


def sweep_command(config: Path = typer.Argument(..., help="Sweep file (TOML).")) -> None:
    """Run a grid of fusion variants and SAM2 thresholds from one MLLM pass per expression.

    Example sweep.toml:

        [run]
        benchmark = "embedded"
        model = "qwen2-vl:tiny"
        masks = "coarse"
        out = "results/sweep"

        [grid]
        variant = ["decaf", "no-smoothing", "object-only"]
        sigma = [0.5, 1.0, 2.0]

        [sam2]
        point_threshold = [0.7, 0.8, 0.9]

    Then: decaf sweep sweep.toml
    """
    import sys

    from decafbench.sweep import load_sweep

    execute(load_sweep(config), ["decaf", *sys.argv[1:]])


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("sweep")(sweep_command)
