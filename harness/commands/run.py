"""``decaf run`` and ``decaf sweep``: DecAF end to end, one run record per (variant, mask kind)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def execute(configs, command: list[str], leaderboard: Path | None = None) -> None:
    """Run one config (or a sweep's (model, benchmark) pairs) on one executor under one progress
    display, then print one leaderboard over all their records; exit 1 when any expression
    failed (unless ``allow_failures``)."""
    import functools

    from rich.console import Console
    from rich.markup import escape

    from decafbench.driver import RunDriver
    from decafbench.executors import make_executor, run_jobs
    from decafbench.pipeline import Worker
    from decafbench.progress import RunProgress

    configs = list(configs) if isinstance(configs, (list, tuple)) else [configs]
    first = configs[0]
    console = Console(stderr=True)
    drivers = [RunDriver(c, command) for c in configs]
    jobs = [d.prepare() for d in drivers]  # every check that needs no model: bad settings exit 2 here
    executor = make_executor(first.executor, first.workers, first.ray_address, first.gpus_per_worker)
    if executor.name == "local" and jobs[0]:
        # load before the progress display, so a load-time error (rollout range) is one line
        with console.status("loading models"):
            executor.preload(functools.partial(Worker, first))
    results = []
    with executor:  # Ray starts (or is joined) here: an unreachable address exits 2, no model loaded
        with RunProgress("decaf sweep" if len(configs) > 1 else "decaf run", console=console) as progress:
            progress.start(sum(len(j) for j in jobs))
            for driver, pending in zip(drivers, jobs):
                results.append(run_jobs(driver, pending, executor, progress))
    errors = [e for r in results for e in r.errors]
    for e in errors[:10]:
        console.print(f"[red]failed[/red] {escape(e)}", highlight=False)
    n, failed = sum(r.expressions for r in results), sum(r.failed for r in results)
    hits, misses = sum(r.cache_hits for r in results), sum(r.cache_misses for r in results)
    out = leaderboard.parent if leaderboard is not None else first.out
    console.print(f"{n} expressions, {failed} failed; attention cache: {hits} hits, {misses} misses; "
                  f"records: {out}", markup=False)
    scored = [p for r in results if r.scored for p in r.paths]
    if scored:
        write_leaderboard(scored, leaderboard or first.out / "leaderboard.md", seed=first.seed)
    if failed and not all(c.allow_failures for c in configs):
        console.print(f"error: {failed} of {n} expressions failed (their rows say why; "
                      "a rerun retries them; --allow-failures exits 0)", markup=False)
        raise typer.Exit(1)


def write_leaderboard(paths: list[Path], out: Path, seed: int = 0) -> None:
    """The leaderboard of a run's records, on the terminal and as Markdown beside them."""
    from rich.console import Console
    from rich.markdown import Markdown

    from decafbench import tables
    from decafbench.errors import InputError
    from decafbench.runstore import atomic_write_text, read_record

    from decafbench.metric_registry import POINT_METRICS

    records = [read_record(p) for p in paths]
    # mask records rank on J, F, J&F; keypoint records (--masks keypoints) on PP@1, PP@10, PP@100.
    # A run with --masks coarse,keypoints has both kinds: one table each, never a column that
    # half the rows cannot have.
    kinds = {"masks": ("J", "F", "JF"), "keypoints": POINT_METRICS[::2]}
    sections = []
    for kind, metrics in kinds.items():
        group = [r for r in records if all(m in r.table.columns for m in metrics)]
        if group:
            table = tables.build_leaderboard(group, group_by=["benchmark", "split"], resamples=2000, seed=seed,
                                             metrics=metrics)
            sections.append((kind, tables.render(table, "md")))
    if not sections:
        raise InputError("no record has the mask metrics (J, F, J&F) or the keypoint metrics (PP@k)", paths[0])
    text = sections[0][1] if len(sections) == 1 else \
        "\n".join(f"## {kind}\n\n{body}" for kind, body in sections)
    atomic_write_text(out, text)
    Console().print(Markdown(text))
    Console(stderr=True).print(f"leaderboard: {out}")


def run_command(
    benchmark: str = typer.Option("embedded", "--benchmark", "-b", help="Benchmark name (decaf benchmarks list)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root (default: the benchmark's own; the embedded one ships in the repo)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split (default: the benchmark's first)."),
    model: str = typer.Option("qwen2-vl:tiny", "--model", "-m", help="ADAPTER[:CHECKPOINT], checkpoint a local path, a hub id or 'tiny'."),
    model_args: str = typer.Option("", "--model-args", help="Family settings K=V,... (token budgets, fps, attn_implementation; "
                                   "see decaf adapters show FAMILY). Recorded in the manifest and the cache key."),
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
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Greedy answer length limit per prompt (official 128)."),
    dtype: str = typer.Option("auto", "--dtype", help="Model dtype: auto (bfloat16 on CUDA as the paper, float32 on CPU), float32, bfloat16, float16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1 ..."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N expressions."),
    reuse: bool = typer.Option(True, "--reuse/--no-reuse", help="--no-reuse: encode the visual input and prefill the "
                               "whole prompt once per prompt, as the reference implementation does (same outputs; for "
                               "comparing vision passes, prefilled tokens and time)."),
    prefix_reuse: Optional[bool] = typer.Option(None, "--prefix-reuse/--no-prefix-reuse", help="Prefill the prompts' "
                                                "shared prefix once per view. Default: on in float32 (same outputs), off "
                                                "in bfloat16/float16 (it can flip a greedy token there). --no-prefix-reuse "
                                                "also saves the kept prefix cache (GPU memory)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (each expression derives its own from it)."),
    allow_failures: bool = typer.Option(False, "--allow-failures", help="Exit 0 even when some expressions failed."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray (one actor per worker, "
                                 "jobs pulled dynamically, faults retried)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Ray workers (actors), each loading the models "
                                          "once (default 2)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster (HOST:PORT, as "
                                              "'ray start --head' prints); default: start a local Ray instance."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="GPUs each Ray worker reserves (0.5: two "
                                          "workers share a GPU); use with --device cuda."),
) -> None:
    """Run DecAF end to end and score it. With no arguments: the embedded benchmark and tiny models.

    Every option is a setting of the same name in a sweep file's [run] table
    (--final-score-threshold is final_score_threshold). Exit codes: 0 done, 1 some
    expressions failed (see --allow-failures), 2 bad settings or input (nothing loaded).

    Examples:

        decaf run

        decaf run --benchmark ref-davis17 --root data/ref-davis --model qwen2-vl:Qwen/Qwen2.5-VL-7B-Instruct \\
            --sam2 configs/sam2.1/sam2.1_hiera_l.yaml:ckpt/sam2.1_hiera_large.pt --device cuda --dtype bfloat16

        decaf run --variant decaf --variant no-smoothing --variant decaf:sigma=2 --masks coarse --limit 4 --out results/variants

        decaf run --executor ray --workers 2 --limit 4 --masks coarse

        decaf run --model qwen2-vl:tiny-2.5 --model-args video_tokens_per_frame=32,fps=2 --max-new-tokens 16 --masks coarse --limit 2 --out results/tiny-2.5
    """
    settings = dict(locals())  # exactly the options above, by their setting names
    import sys

    from decafbench.config import RunConfig

    if not settings["model_args"]:
        settings["model_args"] = {}
    if settings.pop("no_cache"):
        settings["cache"] = None
    old = settings.pop("final_threshold")
    if old is not None:
        settings["final_score_threshold"] = old
    settings["variant"] = variant or ["decaf"]
    execute(RunConfig.from_mapping(settings), ["decaf", *sys.argv[1:]])


def sweep_command(config: Path = typer.Argument(..., help="Sweep file (TOML).")) -> None:
    """Run a grid of fusion variants and SAM2 thresholds from one MLLM pass per expression.

    Example: examples/sweep.toml in the repository, which reads

        [run]                 # any run setting, by name (decaf run --help)
        benchmark = "embedded"
        masks = "coarse"
        limit = 4
        out = "results/sweep"

        [grid]                # each variant crossed with the parameters it takes
        variant = ["decaf", "no-smoothing", "object-only"]
        sigma = [0.5, 1.0, 2.0]

        [sam2]                # with masks = "sam2" or "both"
        point_threshold = [0.7, 0.8, 0.9]
        final_score_threshold = [0.8]

    Then: decaf sweep examples/sweep.toml

    model and benchmark may be lists: every (model, benchmark) pair gets its records under
    OUT/MODEL/BENCHMARK/ and OUT/leaderboard.md ranks them all. executor = "ray" and
    workers = N run it on Ray.
    """
    import sys

    from decafbench.sweep import load_sweep_configs

    configs, out = load_sweep_configs(config)
    execute(configs, ["decaf", *sys.argv[1:]], leaderboard=out / "leaderboard.md")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("sweep")(sweep_command)
