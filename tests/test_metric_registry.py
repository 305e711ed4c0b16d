"""The metric registry, and recall / decay against the DAVIS toolkit's algorithm."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from decafbench import metric_registry as MR
from decafbench import metrics as M
from decafbench.errors import InputError


def toolkit_db_statistics(per_frame_values, cast_uint8: bool = False):
    """davis2017-evaluation's ``utils.db_statistics``, line for line; ``cast_uint8`` keeps
    its ``ids.astype(np.uint8)`` (the bug), otherwise the edges stay integers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        M_ = np.nanmean(per_frame_values)
        O = np.nanmean(per_frame_values > 0.5)
    N_bins = 4
    ids = np.round(np.linspace(1, len(per_frame_values), N_bins + 1) + 1e-10) - 1
    ids = ids.astype(np.uint8) if cast_uint8 else ids.astype(int)
    D_bins = [per_frame_values[ids[i]:ids[i + 1] + 1] for i in range(0, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        D = np.nanmean(D_bins[0]) - np.nanmean(D_bins[3])
    return M_, O, D


def by_definition(values):
    """Recall and decay from the words: share above 0.5; first quarter bin minus the last."""
    n = len(values)
    edges = [int(round(1 + (n - 1) * i / 4 + 1e-10)) - 1 for i in range(5)]
    first = [values[i] for i in range(edges[0], edges[1] + 1)]
    last = [values[i] for i in range(edges[3], edges[4] + 1)]
    return sum(v > 0.5 for v in values) / n, sum(first) / len(first) - sum(last) / len(last)


def test_long_video_decay_is_right_where_the_toolkit_cast_is_wrong() -> None:
    j = np.linspace(1.0, 0.0, 500)  # steady decline over 500 frames
    mean, recall, decay = MR.db_statistics(j)
    assert decay == pytest.approx(0.749, abs=5e-4)
    assert toolkit_db_statistics(j, cast_uint8=True)[2] == pytest.approx(0.236, abs=5e-4)  # the bug
    assert decay == pytest.approx(toolkit_db_statistics(j)[2], abs=1e-12)
    assert recall == pytest.approx(0.5) and mean == pytest.approx(0.5)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 30, 255, 256, 257, 300, 511, 1000])
def test_recall_decay_match_toolkit_with_cast_fixed(n: int) -> None:
    rng = np.random.default_rng(n)
    v = np.clip(rng.random(n) + np.linspace(0.3, -0.3, n), 0, 1)
    _, recall, decay = MR.db_statistics(v)
    m_ref, o_ref, d_ref = toolkit_db_statistics(v)
    assert recall == pytest.approx(o_ref, abs=1e-12)
    assert decay == pytest.approx(d_ref, abs=1e-12)
    r_def, d_def = by_definition(list(v))
    assert recall == pytest.approx(r_def, abs=1e-12) and decay == pytest.approx(d_def, abs=1e-12)
    if n <= 255:  # below the wrap-around (ids[4] + 1 must fit a uint8) the cast changes nothing
        assert decay == pytest.approx(toolkit_db_statistics(v, cast_uint8=True)[2], abs=1e-12)


def test_score_expression_adds_recall_and_decay_per_frame_series() -> None:
    rng = np.random.default_rng(0)
    gt = np.zeros((300, 24, 32), bool)
    gt[:, 6:18, 8:24] = True
    pred = gt.copy()
    pred[150:] = np.roll(gt[150:], 9, axis=2)  # second half drifts off the object
    pred[rng.random(300) < 0.1] = False
    names = ("J", "F", "JF", "J_recall", "J_decay", "F_recall", "F_decay")
    out = M.score_expression(gt, pred, metrics=names)
    j, f = M.jaccard(gt, pred), M.boundary_f(gt, pred)
    for series, vals in (("J", j), ("F", f)):
        _, o, d = toolkit_db_statistics(vals)
        assert out[f"{series}_recall"] == pytest.approx(o, abs=1e-12)
        assert out[f"{series}_decay"] == pytest.approx(d, abs=1e-12)
    assert out["J_decay"] > 0.3  # the drift shows as decay
    assert out["JF"] == pytest.approx((j.mean() + f.mean()) / 2, abs=1e-12)


def test_registry_facts_and_lookup() -> None:
    assert MR.names()[:5] == ("J", "F", "JF", "A", "R")
    assert MR.get("j&f") is MR.JF and MR.get("j_DECAY") is MR.J_decay
    assert MR.J_decay.higher_is_better is False and MR.J_decay.low == -1.0
    assert MR.R.on_failure == 1.0 and MR.A.on_failure is None
    with pytest.raises(InputError, match="did you mean"):
        MR.metric_option("J_recal")

    class Revos:
        name, metrics = "revos", ("J", "F", "JF", "A", "R")

    class Davis:
        name, metrics = "ref-davis17", ("J", "F", "JF")

    assert "A" in MR.for_benchmark(Revos) and "A" not in MR.for_benchmark(Davis)
    assert "J_decay" in MR.for_benchmark(Davis)


def test_adding_a_metric_touches_only_the_registry(monkeypatch) -> None:
    class Jmin(MR.Metric):
        name, label, series, description = "J_min", "J-min", ("J",), "worst frame"

        @classmethod
        def reduce(cls, frames):
            return float(np.min(frames["J"]))

    reg = MR.Registry("metric", base=MR.Metric)
    for n in MR.METRICS.names():
        reg.add(n, MR.METRICS.get(n))
    reg.add("J_min", Jmin)
    monkeypatch.setattr(MR, "METRICS", reg)
    gt = np.zeros((3, 8, 8), bool)
    gt[:, 2:6, 2:6] = True
    pred = gt.copy()
    pred[1] = False
    assert M.score_expression(gt, pred, metrics=("J_min", "J")) == {"J_min": 0.0, "J": pytest.approx(2 / 3)}
