"""decafbench.stats: fast (matrix) vs plain-loop reference, known-truth calibration, CLI.

Calibration uses small simulations (200 datasets) with bounds from the binomial
distribution at 0.1% / 99.9%, so a correct method fails by chance about once in 500 runs of
the whole file per check; the seeds are fixed, so the outcome is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from scipy import stats as sst
from typer.testing import CliRunner

from decafbench import runstats as RS
from decafbench import stats as S
from decafbench.commands.stats import register
from decafbench.errors import InputError
from decafbench.reference import stats as R
from decafbench.runstore import read_record


def write_run(path: Path, name: str, rows: list[dict], **manifest) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps({"name": name, **manifest}))
    pd.DataFrame(rows).to_csv(path / "per_expression.csv", index=False)
    return path


def rows_from(jf: np.ndarray, per_video: int = 3, keys=None) -> list[dict]:
    keys = keys or [(f"v{i // per_video:03d}", str(i % per_video)) for i in range(len(jf))]
    return [{"video": v, "exp_id": e, "split": "valid", "J": x, "F": x, "JF": x, "error": ""}
            for (v, e), x in zip(keys, jf)]


def bounds(sims: int, p: float) -> tuple[int, int]:
    return int(sst.binom.ppf(0.001, sims, p)), int(sst.binom.ppf(0.999, sims, p))


# -- fast vs reference --------------------------------------------------------------------------
@pytest.mark.parametrize("clustered", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_resampling_matches_loop_reference(clustered, weighted):
    rng = np.random.default_rng(7)
    n = 41  # odd on purpose
    x = rng.random(n)
    cl = rng.integers(0, 11, n).astype(str) if clustered else None
    w = rng.random(n) + 0.1 if weighted else None
    design = S.Design.build(x, cl, w)
    boot = S.bootstrap_means(design, 300, 5, max_elements=97)  # many small chunks
    ref = R.bootstrap_means_loop(x, cl, w, 300, np.random.default_rng(5))
    np.testing.assert_allclose(boot[:, 0], ref, rtol=1e-12, atol=1e-14)
    flips = S.signflip_means(design, 300, 5, max_elements=50)
    ref_f = R.signflip_means_loop(x, cl, w, 300, np.random.default_rng(5))
    np.testing.assert_allclose(flips[:, 0], ref_f, rtol=1e-12, atol=1e-14)
    lo, hi = S.percentile_interval(boot)
    np.testing.assert_allclose([lo[0], hi[0]], R.percentile_ci_loop(ref), rtol=1e-12)
    jk = design.jackknife()
    blo, bhi = S.bca_interval(boot, design.estimate(), jk)
    np.testing.assert_allclose([blo[0], bhi[0]], R.bca_ci_loop(x, ref, cl, w), rtol=1e-10)


@pytest.mark.parametrize("unit", ["expression", "video"])
def test_analyse_runs_matches_loop_reference(unit):
    rng = np.random.default_rng(3)
    n, k = 60, 4
    values = np.clip(rng.random((n, 1)) + rng.normal(0, 0.1, (n, k)) + [0, 0.02, 0.0, -0.05], 0, 1)
    keys = [(f"v{i // 4:02d}", str(i % 4)) for i in range(n)]
    aligned = RS.Aligned([f"r{j}" for j in range(k)], keys, values, [0] * k)
    runs, pairs = RS.analyse_runs(aligned, baseline=0, unit=unit, resamples=400, seed=11)
    cl = aligned.clusters(unit)
    ref = R.compare_loop(values, [(0, j) for j in range(1, k)], cl, 400, 11)
    for (_, row), expect in zip(pairs.iterrows(), ref):
        for col in ("diff", "ci_low", "ci_high"):
            assert row[col] == pytest.approx(expect[col], rel=1e-10, abs=1e-12)
        assert row["p_bootstrap"] == expect["p_bootstrap"]
        assert row["p_permutation"] == expect["p_permutation"]
    np.testing.assert_allclose(pairs["p_holm"], R.holm_loop(pairs["p_permutation"]), rtol=1e-15)
    assert runs["mean"].to_numpy() == pytest.approx(100 * values.mean(0))
    from scipy.stats import ttest_rel

    for (_, row), j in zip(pairs.iterrows(), range(1, k)):  # the t column is scipy's paired t-test
        assert row["p_ttest"] == pytest.approx(ttest_rel(values[:, j], values[:, 0]).pvalue, rel=1e-10)


def test_same_seed_same_numbers_other_seed_other_numbers():
    x = np.random.default_rng(0).random(50)
    assert S.bootstrap_ci(x, seed=4, resamples=300) == S.bootstrap_ci(x, seed=4, resamples=300)
    assert S.bootstrap_ci(x, seed=4, resamples=300) != S.bootstrap_ci(x, seed=5, resamples=300)
    y = x + 0.01
    assert S.permutation_test(x, y, seed=1, resamples=300) == S.permutation_test(x, y, seed=1, resamples=300)


# -- against scipy and by hand ------------------------------------------------------------------
def test_bca_close_to_scipy():
    x = np.random.default_rng(2).beta(2, 5, 150)
    ours = S.bootstrap_ci(x, method="bca", resamples=4000, seed=0)
    ref = sst.bootstrap((x,), np.mean, n_resamples=4000, method="BCa", random_state=1).confidence_interval
    width = ref.high - ref.low
    assert abs(ours.low - ref.low) < 0.1 * width and abs(ours.high - ref.high) < 0.1 * width
    assert ours.low < x.mean() < ours.high


def test_holm_hand_example():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    np.testing.assert_allclose(S.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(S.holm([0.5, 0.9]), [1.0, 1.0])
    out = S.holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)
    p = np.random.default_rng(0).random(17) ** 3
    np.testing.assert_allclose(S.holm(p), R.holm_loop(p))


def test_edge_cases():
    same = np.full(10, 0.3)
    ci = S.bootstrap_ci(same, method="bca", resamples=100)
    assert ci.low == ci.high == pytest.approx(0.3)
    assert S.permutation_test(same, same, resamples=100) == 1.0
    assert S.paired_bootstrap(same, same, resamples=100)[1] == 1.0
    assert S.wilcoxon_p(same, same) == 1.0
    one = S.bootstrap_ci(np.array([0.7]), method="bca", resamples=50)
    assert (one.low, one.high) == (pytest.approx(0.7), pytest.approx(0.7))
    with pytest.raises(ValueError):
        S.Design.build(np.array([]))
    with pytest.raises(ValueError):
        S.Design.build(np.array([0.1, np.nan]))


# -- calibration with a known truth -------------------------------------------------------------
def simulate(rng, n_videos=40, per_video=3, shift=0.0, video_sd=0.0):
    n = n_videos * per_video
    base = np.repeat(rng.beta(2, 2, n_videos), per_video) + rng.normal(0, 0.1, n)
    va = np.repeat(rng.normal(0, video_sd, n_videos), per_video)
    vb = np.repeat(rng.normal(0, video_sd, n_videos), per_video)
    a = np.clip(base + va + rng.normal(0, 0.08, n), 0, 1)
    b = np.clip(base + vb + shift + rng.normal(0, 0.08, n), 0, 1)
    return a, b, np.repeat(np.arange(n_videos), per_video)


@pytest.mark.parametrize("unit", ["expression", "video"])
def test_null_rejection_rate_is_nominal(unit):
    rng, sims = np.random.default_rng(100 if unit == "video" else 200), 200
    rej_boot = rej_perm = 0
    for s in range(sims):
        a, b, videos = simulate(rng, video_sd=0.05 if unit == "video" else 0.0)
        cl = videos if unit == "video" else None
        rej_boot += S.paired_bootstrap(a, b, clusters=cl, resamples=400, seed=s)[1] < 0.05
        rej_perm += S.permutation_test(a, b, clusters=cl, resamples=400, seed=s) < 0.05
    lo, hi = bounds(sims, 0.05)
    assert lo <= rej_boot <= hi and lo <= rej_perm <= hi, (rej_boot, rej_perm)


def test_planted_difference_is_detected():
    rng = np.random.default_rng(1)
    for s in range(20):
        a, b, videos = simulate(rng, shift=0.06, video_sd=0.03)
        assert S.permutation_test(a, b, clusters=videos, resamples=400, seed=s) < 0.05
        ci, p = S.paired_bootstrap(a, b, clusters=videos, resamples=400, seed=s)
        assert p < 0.05 and ci.low > 0


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_ci_coverage_is_nominal(method):
    rng, sims, covered = np.random.default_rng(5), 200, 0
    truth = 2 / 7  # mean of Beta(2, 5)
    for s in range(sims):
        x = rng.beta(2, 5, 80)
        ci = S.bootstrap_ci(x, method=method, resamples=400, seed=s)
        covered += ci.low <= truth <= ci.high
    lo, hi = bounds(sims, 0.95)
    assert lo <= covered <= hi, covered


def test_regression_test_decisions():
    rng = np.random.default_rng(9)
    base = rng.random(300)
    noise = rng.normal(0, 0.02, 300)
    assert S.regression_test(base, base - 0.03 + noise, tolerance=0.005, seed=0).regressed
    assert not S.regression_test(base, base - 0.002 + noise, tolerance=0.005, seed=0).regressed
    assert not S.regression_test(base, base + 0.02 + noise, tolerance=0.005, seed=0).regressed


# -- run records and the CLI --------------------------------------------------------------------
@pytest.fixture()
def runs(tmp_path):
    rng = np.random.default_rng(4)
    base = rng.random(30)
    a = write_run(tmp_path / "a", "a", rows_from(base), benchmark="refdavis", split="valid")
    b_rows = rows_from(np.clip(base + 0.15 + rng.normal(0, 0.02, 30), 0, 1))
    b_rows[0]["error"], b_rows[0]["JF"] = "boom", ""  # failed: not shared
    b = write_run(tmp_path / "b", "b", b_rows, benchmark="refdavis", split="valid")
    c_rows = rows_from(base[:28])  # two expressions missing
    c = write_run(tmp_path / "c", "c", c_rows, benchmark="refdavis", split="valid")
    return a, b, c


def app() -> typer.Typer:
    application = typer.Typer()
    register(application)
    return application


def flat(text: str) -> str:
    return " ".join(text.split())


def test_align_counts_shared_and_unshared(runs):
    aligned = RS.align_runs([read_record(p) for p in runs], failures="drop")
    assert len(aligned.keys) == 27
    assert aligned.unshared == [3, 2, 1]
    # default --failures zero: b's failed expression counts (as an empty mask, J&F 0)
    aligned = RS.align_runs([read_record(p) for p in runs])
    assert len(aligned.keys) == 28 and aligned.unshared == [2, 2, 0] and aligned.failed == [0, 1, 0]
    assert aligned.values[aligned.keys.index(("v000", "0")), 1] == 0.0


def test_compare_cli_csv_and_json(runs, tmp_path):
    out = tmp_path / "cmp.csv"
    res = CliRunner().invoke(app(), ["compare", *map(str, runs), "--resamples", "200", "--out", str(out),
                                     "--failures", "drop"])
    assert res.exit_code == 0, res.output
    assert "Paired over 27 shared expressions" in flat(res.output)
    assert "Not shared: a: 3, b: 2, c: 1" in flat(res.output)
    assert "Failed expressions (dropped, --failures drop): a: 0, b: 1, c: 0" in flat(res.output)
    table = pd.read_csv(out)
    assert list(table.columns) == ["run_a", "run_b", "n", "n_units", "diff", "ci_low", "ci_high", "p_bootstrap",
                                   "p_permutation", "p_wilcoxon", "p_holm", "se_t", "p_ttest", "se_clustered",
                                   "p_clustered"]
    assert len(table) == 3 and (table["n"] == 27).all()
    ab = table[(table.run_a == "a") & (table.run_b == "b")].iloc[0]
    assert 9 < ab["diff"] < 16 and ab["p_holm"] < 0.05
    out_json = tmp_path / "cmp.json"
    res = CliRunner().invoke(app(), ["compare", str(runs[1]), "--baseline", str(runs[0]), "--unit", "video",
                                     "--resamples", "200", "--out", str(out_json)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out_json.read_text())
    assert [(r["run_a"], r["run_b"]) for r in rows] == [("a", "b")]


def test_compare_cli_bad_input(runs, tmp_path):
    res = CliRunner().invoke(app(), ["compare", str(runs[0]), str(tmp_path / "nope")])
    assert isinstance(res.exception, InputError) and "nope" in str(res.exception)
    res = CliRunner().invoke(app(), ["compare", *map(str, runs[:2]), "--metric", "Q"])
    assert isinstance(res.exception, InputError) and "--metric" in str(res.exception)
    res = CliRunner().invoke(app(), ["compare", str(runs[0])])
    assert isinstance(res.exception, InputError)


def test_regress_cli_exit_codes(runs, tmp_path):
    a, b, _ = runs
    res = CliRunner().invoke(app(), ["regress", "--baseline", str(b), "--candidate", str(a), "--resamples", "300"])
    assert res.exit_code == 1, res.output
    assert "REGRESSION" in res.output and "Largest drops" in res.output
    res = CliRunner().invoke(app(), ["regress", "--baseline", str(a), "--candidate", str(b), "--resamples", "300"])
    assert res.exit_code == 0, res.output
    # a drop smaller than a generous tolerance passes
    res = CliRunner().invoke(app(), ["regress", "--baseline", str(b), "--candidate", str(a),
                                     "--tolerance", "30", "--resamples", "300"])
    assert res.exit_code == 0, res.output


def test_one_resampling_unit_gives_no_bootstrap_p():
    """With a single video (unit=video) every resample is the data itself: no p-value, not 0.001."""
    from decafbench import runstats as RS2
    from decafbench.stats import paired_bootstrap

    a, b = np.array([0.1, 0.2, 0.3]), np.array([0.2, 0.3, 0.4])
    interval, p = paired_bootstrap(a, b, clusters=["v", "v", "v"], resamples=500)
    assert np.isnan(p) and interval.estimate == pytest.approx(0.1)
    aligned = RS2.Aligned(["a", "b"], [("v", "0"), ("v", "1"), ("v", "2")], np.stack([a, b], 1), [0, 0])
    _, pairs = RS2.analyse_runs(aligned, unit="video", resamples=500)
    assert np.isnan(pairs["p_bootstrap"].iloc[0])
    _, pairs = RS2.analyse_runs(aligned, unit="expression", resamples=500)
    assert pairs["p_bootstrap"].iloc[0] < 0.05
