"""``decaf run`` and ``decaf sweep``: DecAF end to end, one run record per (variant, mask kind)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def _variant_specs(values: list[str]):
    """``NAME`` or ``NAME:key=value,key=value`` -> VariantSpec (parameters checked by the registry)."""
    from decafbench import fusion
    from decafbench.pipeline import VariantSpec

    specs = []
    for value in values:
        name, _, rest = value.partition(":")
        params = fusion.parse_params(name, [p for p in rest.split(",") if p]) if rest else {}
        specs.append(VariantSpec(name, tuple(sorted(params.items()))))
    return specs


def _mask_specs(masks: str, point_threshold: float, final_threshold: float):
    from decafbench.errors import InputError
    from decafbench.pipeline import MaskSpec

    kinds = {"coarse": ["coarse"], "sam2": ["sam2"], "both": ["coarse", "sam2"]}.get(masks)
    if kinds is None:
        raise InputError(f"--masks must be coarse, sam2 or both, not {masks!r}")
    return [MaskSpec(k, point_threshold, final_threshold) for k in kinds]


def execute(plan, command: list[str]) -> list[Path]:
    """Run a plan with a rich progress bar, then print the leaderboard of its records."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from decafbench.pipeline import Runner

    console = Console(stderr=True)
    with console.status("loading benchmark and models"):
        runner = Runner(plan, command=command)
    n = len(runner.benchmark.expressions()) if plan.limit is None else min(plan.limit, len(runner.benchmark.expressions()))
    errors: list[str] = []
    columns = (TextColumn("[bold]decaf run"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("run", total=n, rate="")

        def advance(k: int) -> None:
            progress.advance(task, k)
            speed = progress.tasks[0].speed
            progress.update(task, rate=f"{speed:.2f} expr/s" if speed else "")

        paths = runner.run(on_progress=advance, on_error=errors.append)
    for e in errors[:10]:
        console.print(f"[red]failed[/red] {e}")
    console.print(f"{n} expressions, {len(errors)} failed; attention cache: {runner.cache.hits} hits, "
                  f"{runner.cache.misses} misses; records: {plan.out}")
    if runner.benchmark.has_ground_truth:
        write_leaderboard(paths, plan.out / "leaderboard.md", seed=plan.seed)
    return paths


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
    masks: str = typer.Option("both", "--masks", help="coarse, sam2 or both."),
    frames: int = typer.Option(16, "--frames", help="Key frames sampled uniformly per video."),
    out: Path = typer.Option(Path("results/embedded"), "--out", "-o", help="Folder of run records (one per variant and mask kind)."),
    cache: Optional[Path] = typer.Option(Path("results/cache"), "--cache", help="Attention cache folder."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the attention cache."),
    sam2: str = typer.Option("tiny", "--sam2", help="SAM2 as CONFIG:CHECKPOINT (local files) or 'tiny' (random weights)."),
    point_threshold: float = typer.Option(0.8, "--point-threshold", help="tau_pq: attention threshold of SAM2 point candidates."),
    final_threshold: float = typer.Option(0.8, "--final-threshold", help="tau_trk: final tracklet score threshold."),
    rollout_start: Optional[int] = typer.Option(None, "--rollout-start", help="First rolled-out layer (default N//2)."),
    rollout_end: Optional[int] = typer.Option(None, "--rollout-end", help="End layer, exclusive (default N)."),
    head_weighting: str = typer.Option("vmax", "--head-weighting", help="vmax, mean or max."),
    residual: float = typer.Option(0.5, "--residual", help="Identity weight in R = (1-r) A + r I."),
    prompts: str = typer.Option("v0", "--prompts", help="Prompt wording version."),
    dtype: str = typer.Option("float32", "--dtype", help="Model dtype: float32, bfloat16, float16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1 ..."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N expressions."),
    no_reuse: bool = typer.Option(False, "--no-reuse", help="Encode the visual input and prefill the whole prompt once per "
                                  "prompt, as the reference implementation does (same outputs; for comparing vision "
                                  "passes, prefilled tokens and time)."),
    no_prefix_reuse: bool = typer.Option(False, "--no-prefix-reuse", help="Keep vision-encoder reuse but prefill "
                                         "each prompt whole (saves the kept prefix cache and queries: GPU memory)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Run DecAF end to end and score it. With no arguments: the embedded benchmark and tiny models.

    Examples:

        decaf run

        decaf run --benchmark ref-davis17 --root data/ref-davis --model qwen2-vl:Qwen/Qwen2.5-VL-7B-Instruct \\
            --sam2 configs/sam2.1/sam2.1_hiera_l.yaml:ckpt/sam2.1_hiera_large.pt --device cuda --dtype bfloat16

        decaf run --variant decaf --variant no-smoothing --variant decaf:sigma=2 --masks coarse
    """
    import sys

    from decafbench.errors import InputError
    from decafbench.pipeline import RunPlan
    from decafbench.rollout import RolloutConfig

    if head_weighting not in ("vmax", "mean", "max"):
        raise InputError(f"--head-weighting must be vmax, mean or max, not {head_weighting!r}")
    plan = RunPlan(benchmark=benchmark, root=root, split=split, model=model, dtype=dtype, device=device,
                   num_frames=frames, prompt_version=prompts,
                   rollout=RolloutConfig(rollout_start, rollout_end, head_weighting, residual),
                   variants=_variant_specs(variant or ["decaf"]),
                   masks=_mask_specs(masks, point_threshold, final_threshold), sam2=sam2, out=out,
                   cache_dir=None if no_cache else cache, seed=seed, limit=limit, reuse=not no_reuse,
                   prefix_reuse=not no_prefix_reuse)
    execute(plan, ["decaf", *sys.argv[1:]])


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
