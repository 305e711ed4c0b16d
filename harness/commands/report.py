"""``decaf show`` and ``decaf report``: look at what a run did.

``show`` draws one expression's attention overlays (every fusion stage, the masks and the
ground truth on its key frames); ``report`` writes one self-contained HTML file for a set of
run records. matplotlib, numpy and pandas are imported inside the command bodies so
``decaf --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

CacheDir = Annotated[Optional[Path], typer.Option("--cache", "--cache-dir", help="attention cache folder (default: "
                                                  "where the manifest says, relative to the record folder)")]
Root = Annotated[Optional[Path], typer.Option("--root", help="dataset root (default: the manifest's root)")]
TrustPickle = Annotated[bool, typer.Option("--trust-pickle", help="allow reading the dataset's mask_dict.pkl "
                                                                  "(a pickle runs code); never taken from a record")]


def show_command(
    run_dir: Annotated[Path, typer.Argument(help="run record folder (RUN_DIR with manifest.json)")],
    video: Annotated[str, typer.Option("--video", help="video name")],
    exp: Annotated[str, typer.Option("--exp", help="expression id within the video")],
    frames: Annotated[Optional[str], typer.Option("--frames", help="key-frame indices, comma separated "
                                                                   "(default: 4 spread evenly)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="figure file (.png, .pdf, .svg, .jpg); default "
                                                              "show_VIDEO_EXP.png")] = None,
    cache_dir: CacheDir = None,
    root: Root = None,
    normalize: Annotated[str, typer.Option(help="video: min-max each stage over the video (shared 0..1 "
                                                "scale); none: raw values")] = "video",
    width: Annotated[int, typer.Option(help="panel width in pixels")] = 240,
    trust_pickle: TrustPickle = False,
    columns: Annotated[str, typer.Option(help="all, maps, masks, compact, or a comma-separated list of "
                                              "frame, object_video, background_video, object_frame, "
                                              "background_frame, contrastive_video, contrastive_frame, fused, "
                                              "coarse, sam2, prediction, gt")] = "all",
    fontsize: Annotated[float, typer.Option(help="text size in points")] = 10.0,
) -> None:
    """One figure for one expression: a row per chosen key frame; columns for the frame, the
    four cached maps (object / background, video / frame view), the contrastive and fused
    maps (heat maps with one shared colour scale), the coarse and SAM2 masks and the ground
    truth (outlines); the expression, generated words, J, F and diagnostics as the caption.
    Whatever is missing is drawn "n/a"; missing attention maps are a warning.

    Example: decaf show results/embedded/decaf__coarse --video synth000 --exp 0 --frames 0,5,10 --out fig.png
    """
    from decafbench.errors import InputError
    from decafbench.show import parse_columns, save_figure
    from decafbench.show_record import load_expression_view

    if width < 16:
        raise InputError(f"--width must be at least 16 pixels, not {width}")
    if not 4 <= fontsize <= 40:
        raise InputError(f"--fontsize must lie in 4..40 points, not {fontsize}")
    cols = parse_columns(columns)
    view = load_expression_view(run_dir, video, exp, frames=frames, cache_dir=cache_dir, root=root,
                                trust_pickle=trust_pickle)
    fig = view.figure(columns=cols, normalize=normalize, thumb_width=width, fontsize=fontsize)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{video}_{exp}")
    path = save_figure(fig, out or Path(f"show_{safe}.png"))
    for note in view.notes:
        typer.echo(f"note: {note}", err=True)
    if view.maps_missing:
        typer.echo("warning: attention maps missing for 1 of 1 expressions (every stage drawn n/a); "
                   "pass --cache DIR", err=True)
    typer.echo(f"wrote {path}")


def report_command(
    runs: Annotated[list[Path], typer.Argument(help="run record folders; the first is the one whose "
                                                    "figures are shown")],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path("report.html"),
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="run the others are compared with "
                                                                        "(default: the first run)")] = None,
    figures: Annotated[str, typer.Option("--figures", help="N: figures of the N worst and N best expressions; "
                                                           "'all': every expression; 0: none")] = "5",
    resamples: Annotated[int, typer.Option(help="bootstrap / permutation resamples")] = 10_000,
    seed: Annotated[int, typer.Option(help="seed of every random draw")] = 0,
    metric: Annotated[str, typer.Option(help="registered metric of the comparisons and figures "
                                             "(JF, J, F, A, R, J_recall, J_decay, F_recall, F_decay)")] = "JF",
    cache_dir: CacheDir = None,
    root: Root = None,
    trust_pickle: TrustPickle = False,
) -> None:
    """One self-contained HTML file (images inline, no network): leaderboard with CIs, J&F
    distributions, paired differences against the baseline, how each fusion stage moves
    the diagnostics, a sortable per-expression table linked to embedded `show` figures.

    Example: decaf report results/embedded/decaf__sam2 results/embedded/decaf__coarse --baseline results/embedded/decaf__coarse --out report.html --figures 5
    """
    from decafbench.errors import InputError
    from decafbench.report import ReportOptions, write_report

    if figures.strip().lower() == "all":
        n_fig: int | None = None
    else:
        try:
            n_fig = int(figures)
        except ValueError:
            raise InputError(f"--figures must be a number or 'all', not {figures!r}") from None
        if n_fig < 0:
            raise InputError(f"--figures must be >= 0, not {n_fig}")
    if resamples < 1:
        raise InputError(f"--resamples must be at least 1, not {resamples}")
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError("--out must end in .html", out)
    if out.is_dir():  # before the work, not after it
        raise InputError("--out is a folder; give a file name to write", out)
    from decafbench.metric_registry import metric_option

    opts = ReportOptions(figures=n_fig, resamples=resamples, seed=seed, cache_dir=cache_dir, root=root,
                         trust_pickle=trust_pickle, metric=metric_option(metric))
    result = write_report(runs, out, baseline=baseline, options=opts)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {out} ({result.n_expressions} expressions, {result.n_figures} figures, "
               f"{out.stat().st_size / 1e6:.1f} MB)")


def register(app: typer.Typer) -> None:
    app.command("show")(show_command)
    app.command("report")(report_command)
