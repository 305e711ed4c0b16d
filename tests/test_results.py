"""results.json per run record, and `decaf leaderboard --format json`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from decafbench.results import summarize_record, write_results, write_results_lenient
from decafbench.runstore import RunWriter, read_record


def _rows(n=40, splits=None):
    rng = np.random.default_rng(1)
    j = rng.random(n)
    return [{"video": f"v{i // 4:02d}", "exp_id": str(i), "split": (splits or [""] * n)[i], "J": j[i],
             "F": j[i] / 2, "JF": 0.75 * j[i], "J_decay": -0.5 + j[i] / 2, "error": ""} for i in range(n)]


def test_finalize_writes_results_json_with_means_cis_n_failures(tmp_path):
    rows = _rows()
    rows[3].update(error="boom", J="", F="", JF="", J_decay="")
    w = RunWriter(tmp_path / "run", {"name": "r", "benchmark": "mevis", "split": "valid_u", "seed": 7,
                                     "config": {"model": "tiny"}, "versions": {"numpy": "x"}})
    for r in rows:
        w.add(r)
    w.finalize(after=write_results_lenient)
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert doc["config"] == {"model": "tiny"} and doc["versions"] == {"numpy": "x"} and doc["seed"] == 7
    assert doc["benchmark"] == "mevis" and doc["split"] == "valid_u"
    jf = doc["results"]["JF"]["all"]
    vals = [0.0 if r["error"] else r["JF"] for r in rows]  # failure = empty mask = 0
    assert jf["mean"] == pytest.approx(100 * np.mean(vals), rel=1e-12)
    assert jf["n"] == 40 and jf["failures"] == 1
    assert jf["ci_low"] < jf["mean"] < jf["ci_high"]
    assert "J_decay" in doc["results"] and "A" not in doc["results"]


def test_revos_groups_and_overall(tmp_path):
    splits = ["referring"] * 10 + ["reasoning"] * 30
    rows = _rows(splits=splits)
    path = tmp_path / "rv"
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps({"name": "rv", "benchmark": "revos", "split": "valid"}))
    pd.DataFrame(rows).to_csv(path / "per_expression.csv", index=False)
    doc = summarize_record(read_record(path), resamples=200)
    j = np.array([r["J"] for r in rows])
    ref, rea = j[:10].mean(), j[10:].mean()
    got = doc["results"]["J"]
    assert got["referring"]["mean"] == pytest.approx(100 * ref) and got["reasoning"]["n"] == 30
    assert got["overall"]["mean"] == pytest.approx(100 * (ref + rea) / 2)
    assert write_results(path, resamples=100).name == "results.json"


def test_garbled_scores_do_not_kill_a_finishing_run(tmp_path):
    from decafbench.errors import InputError

    rows = _rows(8)
    rows[2]["JF"] = 67.5  # a percent value among fractions
    w = RunWriter(tmp_path / "g", {"name": "g", "benchmark": "mevis", "split": "valid_u"})
    for r in rows:
        w.add(r)
    w.finalize(after=write_results_lenient)  # the run still ends, its results.json says why it has no numbers
    doc = json.loads((tmp_path / "g" / "results.json").read_text())
    assert doc["results"] == {} and "row 4" in doc["error"] and "percent" in doc["error"]
    with pytest.raises(InputError, match="row 4"):
        write_results(tmp_path / "g")


def test_a_failed_run_expression_carries_its_empty_mask_scores():
    """What decaf run writes into a failed row: the expression scored as an empty mask."""
    from decafbench.benchmarks.registry import get_benchmark
    from decafbench.metrics import jaccard
    from decafbench.pipeline import Worker

    worker = Worker.__new__(Worker)
    worker.benchmark = get_benchmark("embedded")
    expr = worker.benchmark.expressions()[0]
    scores = worker._empty_mask_scores(expr)
    gt = worker.benchmark.ground_truth(expr).masks
    assert scores["J"] == pytest.approx(float(jaccard(gt, np.zeros_like(gt)).mean()))
    assert {"J", "F", "JF", "J_recall", "J_decay"} <= set(scores) and "error" not in scores
