"""Score predicted masks against a benchmark's ground truth (``decaf evaluate``).

TrackEval's shape: compute per sequence (a video and all its expressions) in worker
processes, then combine. Predictions are read from ``PRED_DIR/VIDEO/EXP_ID/FRAME.png`` (any
nonzero pixel is foreground). Only the benchmark reader touches ground truth; only this module
touches predictions; the metrics are pure functions of the two.
"""

from __future__ import annotations

import os
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal, Mapping, Sequence

import numpy as np

from .errors import InputError

MissingPolicy = Literal["error", "empty"]
FrameSet = Literal["annotated", "key"]
FRAME_SETS = ("annotated", "key")


@dataclass(frozen=True)
class EvalOptions:
    """``frames``: ``annotated`` scores every annotated frame (the benchmarks' protocol);
    ``key`` only the annotated frames among each video's ``num_frames`` key frames, sampled
    exactly as ``decaf run`` samples them (``linspace(0, n-1, num_frames)`` cast to int), which
    is where coarse attention masks exist."""

    missing: MissingPolicy = "error"
    workers: int = 0  # 0: one per core (capped by the number of videos); 1: in this process
    limit: int | None = None  # only the first N expressions (sorted by video, expression id)
    frames: FrameSet = "annotated"
    num_frames: int = 16

    def validate(self) -> "EvalOptions":
        if self.missing not in ("error", "empty"):
            raise InputError(f"--missing must be 'error' or 'empty', not {self.missing!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise InputError(f"--workers must be 0 (one per core) or a positive number, not {self.workers!r}")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)
                                       or self.limit < 1):
            raise InputError(f"--limit must be a positive number of expressions, not {self.limit!r}")
        if self.frames not in FRAME_SETS:
            raise InputError(f"--frames must be {' or '.join(FRAME_SETS)}, not {self.frames!r}")
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise InputError(f"--key-frames must be a positive number, not {self.num_frames!r}")
        return self


def restrict_ground_truth(gt, frames: Iterable[str]):
    """``gt`` restricted to ``frames`` (in ``gt``'s order; frames it does not annotate ignored)."""
    from decafbench.benchmarks.base import GroundTruth

    wanted = set(frames)
    keep = [i for i, f in enumerate(gt.frames) if f in wanted]
    fg = None if gt.foreground is None else gt.foreground[keep]
    return GroundTruth(tuple(gt.frames[i] for i in keep), gt.masks[keep], fg, gt.meta)


def scored_ground_truth(benchmark, expression, options: EvalOptions):
    """The ground truth over the frames ``options.frames`` scores; an expression without an
    annotated key frame is an error naming it (nothing to score is not a score of 0 or 1)."""
    from .keyframes import key_frame_indices

    gt = benchmark.ground_truth(expression)
    if options.frames == "annotated":
        return gt
    video = benchmark.video(expression.video)
    keys = [video.frames[i] for i in key_frame_indices(len(video.frames), options.num_frames)]
    sub = restrict_ground_truth(gt, keys)
    if not sub.frames:
        raise InputError(f"expression {expression.exp_id!r} of video {expression.video!r} has no annotated frame among "
                         f"its {len(keys)} key frames (use --frames annotated)")
    return sub


def prediction_path(pred_dir: Path, video: str, exp_id: str, frame: str) -> Path:
    """``PRED/VIDEO/EXP_ID/FRAME.png``, refused if it would resolve outside ``pred_dir``."""
    from .safepath import check_id, safe_join

    for value, what in ((video, "video id"), (exp_id, "expression id"), (frame, "frame name")):
        check_id(value, what)
    return safe_join(pred_dir, video, exp_id, f"{frame}.png", what="prediction")


def read_prediction(pred_dir: Path, video: str, exp_id: str, frames: Sequence[str], shape: tuple[int, int],
                    missing: MissingPolicy = "error") -> np.ndarray:
    """Predicted masks ``(T, H, W)`` for ``frames``; checks presence and size of every file."""
    from .maskio import read_mask_png

    from .safepath import check_id, inside

    out = np.zeros((len(frames), *shape), dtype=bool)
    folder = prediction_path(pred_dir, video, exp_id, "x").parent  # resolved inside pred_dir, once
    for i, frame in enumerate(frames):
        path = folder / f"{check_id(frame, 'frame name')}.png"
        if path.is_symlink() and not inside(pred_dir, path):  # a plain file in a checked folder is inside
            raise InputError(f"prediction resolves outside the folder {str(pred_dir)!r}", path)
        if not path.is_file():
            if missing == "empty":
                continue
            raise InputError("missing prediction (pass --missing empty to score it as an empty mask)", path)
        mask = read_mask_png(path, out=out[i])  # decoded straight into the batch
        if mask.shape != tuple(shape):
            raise InputError(f"prediction is {mask.shape[1]}x{mask.shape[0]} but the ground truth is "
                             f"{shape[1]}x{shape[0]} (WxH)", path)
    return out


def score_expression(benchmark, expression, pred_masks: np.ndarray, gt=None) -> dict:
    """One per-expression row: keys, metrics (fractions 0..1) and the frame count."""
    from .metric_registry import for_benchmark
    from .metrics import score_expression as _score

    gt = benchmark.ground_truth(expression) if gt is None else gt
    scores = _score(gt.masks, pred_masks, foreground=gt.foreground, metrics=for_benchmark(benchmark))
    row = {"video": expression.video, "exp_id": expression.exp_id, "split": expression.split,
           "n_frames": int(gt.masks.shape[0])}
    row.update({k: float(v) for k, v in scores.items()})
    return row


def _load(benchmark, expr, pred_dir: Path, options: EvalOptions):
    """Ground truth and predictions of one expression, each frame decoded once."""
    gt = scored_ground_truth(benchmark, expr, options)
    return gt, read_prediction(pred_dir, expr.video, expr.exp_id, gt.frames, gt.masks.shape[1:], options.missing)


def _evaluate_video(benchmark, expressions, pred_dir: Path, options: EvalOptions,
                    overlap: bool = True) -> list[dict]:
    """Rows of one video's expressions, in order.

    Evaluation is decode-bound (PNG inflate, RLE decode: bench/bench_decode.py), so with
    ``overlap`` one thread loads expression i + 1 while expression i is scored: Pillow and
    OpenCV release the GIL while they inflate, and so do the numpy kernels of the metrics.
    Loads stay in order on that one thread (the benchmark's per-video track cache is touched
    by it alone) and every result or error is taken in the serial order, so rows and the
    first error raised are those of the plain loop (``overlap=False``).
    """
    if not overlap or len(expressions) < 2:
        rows = []
        for expr in expressions:
            gt, pred = _load(benchmark, expr, pred_dir, options)
            rows.append(score_expression(benchmark, expr, pred, gt))
        return rows
    from concurrent.futures import ThreadPoolExecutor

    rows = []
    with ThreadPoolExecutor(1, thread_name_prefix="decaf-decode") as loader:
        nxt = loader.submit(_load, benchmark, expressions[0], pred_dir, options)
        try:
            for i, expr in enumerate(expressions):
                gt, pred = nxt.result()
                if i + 1 < len(expressions):
                    nxt = loader.submit(_load, benchmark, expressions[i + 1], pred_dir, options)
                rows.append(score_expression(benchmark, expr, pred, gt))
        except BaseException:
            nxt.cancel()
            raise
    return rows


_WORKER_BENCHMARK = None  # set once per worker process by _init_worker (reads stay cached there)


def _init_worker(benchmark) -> None:
    global _WORKER_BENCHMARK
    _WORKER_BENCHMARK = benchmark


def _evaluate_video_in_worker(expressions, pred_dir: Path, options: EvalOptions) -> list[dict]:
    return _evaluate_video(_WORKER_BENCHMARK, expressions, pred_dir, options)


def group_by_video(expressions: Iterable) -> dict[str, list]:
    groups: dict[str, list] = {}
    for e in expressions:
        groups.setdefault(e.video, []).append(e)
    return groups


def _pool_context():
    from .pool import pool_context

    return pool_context()


def evaluate(benchmark, pred_dir: str | Path, options: EvalOptions = EvalOptions(),
             on_expression: Callable[[int], None] | None = None, *,
             done: Mapping[tuple[str, str], dict] | None = None,
             on_rows: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Score every expression of ``benchmark`` against ``pred_dir``; rows sorted by (video, exp_id).

    ``done`` holds rows a previous, interrupted evaluation already finished (they are not
    recomputed); ``on_rows`` receives each video's new rows as they finish (the record
    writer stores them atomically). Workers die with this process (see :mod:`.pool`).
    """
    from .pool import parent_bound_pool

    options.validate()
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError("prediction folder does not exist", pred_dir)
    if not benchmark.has_ground_truth:
        raise InputError(f"benchmark {benchmark.name!r} split {benchmark.split!r} has no public ground truth "
                         "(use decaf export for its evaluation server)")
    expressions = benchmark.expressions()
    if options.limit is not None:
        expressions = expressions[: options.limit]
    done = dict(done or {})
    rows: list[dict] = [done[e.key] for e in expressions if e.key in done]
    if on_expression and rows:
        on_expression(len(rows))
    groups = group_by_video(e for e in expressions if e.key not in done)
    workers = options.workers or min(os.cpu_count() or 1, max(1, len(groups)))

    def finished(new: list[dict], n: int) -> None:
        rows.extend(new)
        if on_rows:
            on_rows(new)
        if on_expression:
            on_expression(n)

    if workers == 1 or len(groups) <= 1:
        for exprs in groups.values():
            finished(_evaluate_video(benchmark, exprs, pred_dir, options), len(exprs))
    else:
        # the benchmark goes to each worker once, so its parsed JSON and mask dictionary are
        # read once per process, not once per video
        with parent_bound_pool(workers, _init_worker, (benchmark,)) as pool:
            futures = {pool.submit(_evaluate_video_in_worker, exprs, pred_dir, options): len(exprs)
                       for exprs in groups.values()}
            try:
                for fut in as_completed(futures):
                    finished(fut.result(), futures[fut])
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    return sorted(rows, key=lambda r: (r["video"], r["exp_id"]))


def summarize(rows: Sequence[dict], metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """Means per group, as fractions. Groups: ``all``; with expression splits (ReVOS) also one per
    split and ``overall`` = the mean of the referring and reasoning means, as ReVOS reports it."""
    ok = [r for r in rows if not r.get("error")]

    def mean(rs, m):
        vals = [r[m] for r in rs if r.get(m) is not None and not np.isnan(r[m])]
        return float(np.mean(vals)) if vals else float("nan")

    out = {"all": {m: mean(ok, m) for m in metrics}}
    out["all"]["n"] = len(ok)
    splits = sorted({r.get("split") or "" for r in ok} - {""})
    if splits:
        for s in splits:
            rs = [r for r in ok if r.get("split") == s]
            out[s] = {m: mean(rs, m) for m in metrics}
            out[s]["n"] = len(rs)
        # ReVOS: overall = mean of referring and reasoning (other types stay out of it, as in its script)
        groups = [s for s in ("referring", "reasoning") if s in splits] if "referring" in splits else splits
        out["overall"] = {m: float(np.mean([out[s][m] for s in groups])) for m in metrics}
        out["overall"]["n"] = len(ok)
    return out


def summary_table(summary: dict[str, dict[str, float]], metrics: Sequence[str], title: str = ""):
    """A rich table of the summary in percent."""
    from rich.table import Table

    names = {"JF": "J&F"}
    table = Table(title=title or None)
    table.add_column("group")
    table.add_column("n", justify="right")
    for m in metrics:
        table.add_column(names.get(m, m), justify="right")
    for group, vals in summary.items():
        table.add_row(group, str(vals.get("n", "")), *[f"{100 * vals[m]:.2f}" for m in metrics])
    return table
