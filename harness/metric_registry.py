"""Every metric decafbench scores, as a small class in one registry (TrackEval's habit).

Why: the evaluation, the run records, the statistics, the leaderboards, ``decaf power`` and
the report all need to know the same facts about a metric -- its column name, its label in
tables, how it is computed from per-frame values, its range, whether higher is better, which
benchmarks have it, and what a failed expression (an empty mask) scores when the record does
not say. They all read them from here, so adding a metric touches this module only.

A metric is either a per-frame series reduced over an expression's frames (``series`` names
the series: ``J``, ``F``, ``A`` or ``R``, computed by :mod:`decafbench.metrics`) or a
reduction of other expression-level values (``J&F`` from J and F). ``reduce`` takes the
dict of per-frame series and returns one float in ``[low, high]``.

Recall and decay follow the DAVIS 2017 toolkit's ``db_statistics``: recall is the share of
frames scoring above 0.5; decay is the mean of the first quarter bin minus the mean of the
last, bins ``values[ids[i] : ids[i+1] + 1]`` with ``ids = round(linspace(1, N, 5) + 1e-10) - 1``.
The toolkit casts ``ids`` to uint8, so past 255 frames its bins wrap around (NaN or silently
wrong decay); here they are plain integers, correct for any length.
"""

from __future__ import annotations

from typing import ClassVar, Mapping, Sequence

import numpy as np

from .errors import InputError
from .registry import Registry

#: per-frame series the metrics module computes, and what each needs
FRAME_SERIES = ("J", "F", "A", "R")


class Metric:
    """One metric: subclass, set the class attributes, implement :meth:`reduce`."""

    name: ClassVar[str] = ""  # column in per_expression.csv and the --metric value
    label: ClassVar[str] = ""  # header in tables
    description: ClassVar[str] = ""
    series: ClassVar[tuple[str, ...]] = ()  # per-frame series it needs (FRAME_SERIES)
    low: ClassVar[float] = 0.0
    high: ClassVar[float] = 1.0
    higher_is_better: ClassVar[bool] = True
    #: benchmarks that report it (None: every benchmark); a benchmark may also list it in
    #: its own ``metrics``
    benchmarks: ClassVar[tuple[str, ...] | None] = None
    #: score of a failed expression (an empty mask) when the record does not store it; None
    #: when it depends on the ground truth (such failures can only be dropped)
    on_failure: ClassVar[float | None] = 0.0

    @classmethod
    def reduce(cls, frames: Mapping[str, np.ndarray]) -> float:
        raise NotImplementedError

    @classmethod
    def applies_to(cls, benchmark) -> bool:
        declared = tuple(getattr(benchmark, "metrics", ()) or ())
        return cls.benchmarks is None or benchmark.name in cls.benchmarks or cls.name in declared


def db_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of per-frame values, the toolkit's ``db_statistics`` without the
    uint8 cast of the bin edges; NaN frames are ignored as its ``nanmean`` does."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise ValueError("db_statistics needs a non-empty 1-D array of per-frame values")
    ok = ~np.isnan(v)
    mean = float(v[ok].mean()) if ok.any() else float("nan")
    recall = float((v[ok] > 0.5).mean()) if ok.any() else float("nan")
    ids = (np.round(np.linspace(1, v.size, 5) + 1e-10) - 1).astype(np.int64)
    first, last = v[ids[0]:ids[1] + 1], v[ids[3]:ids[4] + 1]
    with np.errstate(invalid="ignore"):
        f = first[~np.isnan(first)].mean() if (~np.isnan(first)).any() else np.nan
        la = last[~np.isnan(last)].mean() if (~np.isnan(last)).any() else np.nan
    return mean, recall, float(f - la)


class _FrameMean(Metric):
    @classmethod
    def reduce(cls, frames):
        return float(np.mean(frames[cls.series[0]]))


class J(_FrameMean):
    name, label, series = "J", "J", ("J",)
    description = "region similarity: IoU per frame (empty union = 1), mean over frames"


class F(_FrameMean):
    name, label, series = "F", "F", ("F",)
    description = "boundary F-measure per frame (DAVIS tolerance), mean over frames"


class JF(Metric):
    name, label, series = "JF", "J&F", ("J", "F")
    description = "(mean J + mean F) / 2"

    @classmethod
    def reduce(cls, frames):
        return (float(np.mean(frames["J"])) + float(np.mean(frames["F"]))) / 2


class A(_FrameMean):
    name, label, series, benchmarks = "A", "A", ("A",), ("revos",)
    description = "ReVOS accuracy: share of pixels where prediction equals ground truth"
    on_failure = None  # 1 - |gt| / (H W): needs the ground truth


class R(_FrameMean):
    name, label, series, benchmarks = "R", "R", ("R",), ("revos",)
    description = "ReVOS robustness: max(0, 1 - false-positive pixels / foreground pixels)"
    on_failure = 1.0  # an empty mask has no false positives


class _Recall(Metric):
    description = "share of frames above 0.5 (DAVIS db_statistics)"

    @classmethod
    def reduce(cls, frames):
        return db_statistics(frames[cls.series[0]])[1]


class _Decay(Metric):
    description = "mean of the first quarter of frames minus the last (DAVIS db_statistics, no uint8 cast)"
    low, high, higher_is_better = -1.0, 1.0, False

    @classmethod
    def reduce(cls, frames):
        return db_statistics(frames[cls.series[0]])[2]


class J_recall(_Recall):
    name, label, series = "J_recall", "J-Recall", ("J",)


class J_decay(_Decay):
    name, label, series = "J_decay", "J-Decay", ("J",)


class F_recall(_Recall):
    name, label, series = "F_recall", "F-Recall", ("F",)


class F_decay(_Decay):
    name, label, series = "F_decay", "F-Decay", ("F",)


class _PointPrecision(Metric):
    """Point precision of the official keypoint mode (``decaf run --masks keypoints``): the share
    of the k best fused-map points whose window holds ground truth. Scored from the points by
    :mod:`decafbench.keypoints`, never from masks, so no benchmark lists it for mask records."""

    description = "keypoint mode: share of the k best fused-map points on the target (+-14 px window)"
    benchmarks = ()
    on_failure = 0.0  # a failed expression has no points, so no hits

    @classmethod
    def reduce(cls, frames):
        raise InputError(f"{cls.name} is scored from keypoints (decafbench.keypoints), not from per-frame masks")


class PP_1(_PointPrecision):
    name, label = "PP@1", "PP@1"


class PP_5(_PointPrecision):
    name, label = "PP@5", "PP@5"


class PP_10(_PointPrecision):
    name, label = "PP@10", "PP@10"


class PP_50(_PointPrecision):
    name, label = "PP@50", "PP@50"


class PP_100(_PointPrecision):
    name, label = "PP@100", "PP@100"


#: the keypoint mode's metrics, in column order
POINT_METRICS: tuple[str, ...] = ("PP@1", "PP@5", "PP@10", "PP@50", "PP@100")

METRICS: Registry[type[Metric]] = Registry("metric", base=Metric)
for _cls in (J, F, JF, A, R, J_recall, J_decay, F_recall, F_decay, PP_1, PP_5, PP_10, PP_50, PP_100):
    METRICS.add(_cls.name, _cls, _cls.description)
#: registration order: the column order of per_expression.csv
ORDER: tuple[str, ...] = (J.name, F.name, JF.name, A.name, R.name, J_recall.name, J_decay.name,
                          F_recall.name, F_decay.name, *POINT_METRICS)
ALIASES = {"J&F": "JF", "JANDF": "JF"}


def names() -> tuple[str, ...]:
    return ORDER + tuple(n for n in METRICS.names() if n not in ORDER)


def get(name: str) -> type[Metric]:
    """The metric called ``name`` (case-insensitive; ``J&F`` = ``JF``), or a one-line error."""
    key = ALIASES.get(name.upper(), name)
    lower = {n.lower(): n for n in names()}
    return METRICS.get(lower.get(key.lower(), key))


def metric_option(name: str) -> str:
    """Validate a ``--metric`` value; returns the column name."""
    try:
        return get(name).name
    except InputError as exc:
        raise InputError(f"--metric: {exc}") from None


def for_benchmark(benchmark) -> tuple[str, ...]:
    """Names of the metrics ``benchmark`` reports, in column order."""
    return tuple(n for n in names() if get(n).applies_to(benchmark))


def score_frames(frames: Mapping[str, np.ndarray], metrics: Sequence[str]) -> dict[str, float]:
    """Reduce per-frame series to one value per metric (fractions)."""
    return {m: float(get(m).reduce(frames)) for m in metrics}
