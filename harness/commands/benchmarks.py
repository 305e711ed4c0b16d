"""``decaf benchmarks ...`` (list, synth, convert, published) and the top-level ``decaf export``.

Heavy imports (numpy, PIL, pycocotools) stay inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

bench_app = typer.Typer(help="Benchmark datasets: list them, generate synthetic ones, convert formats.",
                        no_args_is_help=True, rich_markup_mode="rich")


@bench_app.command("list")
def list_command() -> None:
    """List the benchmarks: name, description, splits, metrics, and which splits have ground truth.

    Example:

        decaf benchmarks list
    """
    from rich.console import Console
    from rich.table import Table

    from decafbench.benchmarks.registry import BENCHMARKS

    table = Table(title="benchmarks")
    for col in ("name", "description", "splits", "metrics", "ground truth"):
        table.add_column(col, overflow="fold", no_wrap=col in ("name", "metrics"))
    for name in BENCHMARKS.names():
        cls = BENCHMARKS.get(name)
        gt = cls.ground_truth_splits
        table.add_row(name, cls.description or BENCHMARKS.describe(name), ", ".join(cls.splits),
                      " ".join(cls.metrics), ", ".join(gt) if gt else "none (server)")
    Console().print(table)


@bench_app.command("synth")
def synth_command(
    out: Path = typer.Option(Path("data/synth"), "--out", help="Folder to write (valid_u/ in the MeViS layout, "
                             "synth.json); data/ is ignored by git, so a large benchmark never lands in a commit."),
    videos: int = typer.Option(4, "--videos", help="Number of videos."),
    frames: int = typer.Option(20, "--frames", help="Frames per video."),
    size: str = typer.Option("120x160", "--size", help="Frame size HxW."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the output is a function of the options."),
    expressions_per_video: int = typer.Option(2, "--expressions-per-video", help="Expressions per video."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder."),
) -> None:
    """Generate a synthetic moving-shapes benchmark with exact masks (read it as --benchmark mevis).

    Example:

        decaf benchmarks synth --videos 8 --frames 30 --size 240x320 --seed 1 --out data/synth-small

        decaf run --benchmark mevis --root data/synth-small --split valid_u --masks coarse --limit 2 --out results/synth-small
    """
    from rich.console import Console

    from decafbench.benchmarks.synth import SynthConfig, write_synth
    from decafbench.errors import InputError

    try:
        h_str, w_str = size.lower().split("x")
        height, width = int(h_str), int(w_str)
    except ValueError:
        raise InputError(f"--size must look like 120x160 (height x width), not {size!r}") from None
    cfg = SynthConfig(videos=videos, frames=frames, height=height, width=width, seed=seed,
                      expressions_per_video=expressions_per_video)
    write_synth(cfg, out, overwrite=overwrite)
    Console(stderr=True).print(f"wrote {videos} videos x {frames} frames ({height}x{width}) to {out}/valid_u")


@bench_app.command("convert")
def convert_command(
    root: Path = typer.Option(..., "--root", help="Folder holding mask_dict.pkl (or its valid/ subfolder)."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Confirm the pickle's source is trusted (loading a pickle runs code)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing mask_dict.json."),
) -> None:
    """Convert a pickled RLE mask dict (mask_dict.pkl) to mask_dict.json beside it.

    After this the readers never need --trust-pickle again.

    Example:

        decaf benchmarks convert --root data/ref-davis17 --trust-pickle
    """
    from rich.console import Console

    from decafbench.benchmarks.convert import convert_mask_dict

    out = convert_mask_dict(root, trust_pickle=trust_pickle, overwrite=overwrite)
    Console(stderr=True).print(f"wrote {out}")


@bench_app.command("published")
def published_command(
    benchmark: Optional[str] = typer.Option(None, "--benchmark", "-b", help="Only this benchmark."),
) -> None:
    """Print the DecAF paper's published J&F numbers (NOT harness output: reference values to reproduce).

    Example:

        decaf benchmarks published --benchmark ref-davis17
    """
    from rich.console import Console
    from rich.table import Table

    from decafbench.benchmarks.published import SOURCE, published_results

    rows = [r for r in published_results() if benchmark is None or r.benchmark == benchmark]
    table = Table(title="Published numbers (not harness output)", caption=SOURCE)
    for col in ("MLLM", "benchmark", "masks", "setting", "J&F (%)"):
        table.add_column(col, justify="right" if col == "J&F (%)" else "left")
    for r in rows:
        table.add_row(r.mllm, r.benchmark, "SAM2" if r.output == "sam" else "attention (coarse)", r.setting, f"{r.jf:.1f}")
    Console().print(table)


def export_command(
    benchmark: str = typer.Option(..., "--benchmark", "-b", help="Benchmark name (decaf benchmarks list)."),
    pred: Path = typer.Option(..., "--pred", help="Predictions PRED/VIDEO/EXP_ID/FRAME.png (or a run folder with predictions/)."),
    out: Path = typer.Option(..., "--out", help="Zip file to write."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root in the official layout."),
    split: Optional[str] = typer.Option(None, "--split", help="Split (default: the benchmark's first)."),
) -> None:
    """Write the evaluation server's zip (Annotations/VIDEO/EXP_ID/FRAME.png), refusing incomplete predictions.

    Example:

        decaf export --benchmark ref-youtube-vos --root data/ref-youtube-vos --pred results/run1 --out submission.zip
    """
    from rich.console import Console

    from decafbench.benchmarks.convert import export_submission
    from decafbench.benchmarks.registry import get_benchmark

    bench = get_benchmark(benchmark, root=root, split=split)
    n = export_submission(bench, pred, out)
    Console(stderr=True).print(f"wrote {out}: {n} masks for {len(bench.expressions())} expressions")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="benchmarks")
    app.command("export")(export_command)
