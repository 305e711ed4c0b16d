"""Paired t-test, Miller's clustered SE and power analysis against literal formulas and simulation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from scipy import stats as sst
from typer.testing import CliRunner

from decafbench import stats as S
from decafbench.commands.power import register as register_power


def miller_eq4_loop(d, clusters) -> float:
    """Miller (2024) eq. 4 written out: SE_CLT^2 plus the within-cluster cross products."""
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    total = var / n
    for i in range(n):
        for j in range(n):
            if i != j and clusters[i] == clusters[j]:
                total += (d[i] - mean) * (d[j] - mean) / n ** 2
    return math.sqrt(total)


def test_paired_t_matches_scipy_and_clustered_se_matches_eq4():
    rng = np.random.default_rng(3)
    videos = np.repeat(np.arange(12), rng.integers(1, 6, 12))
    a = rng.random(videos.size)
    b = a + 0.03 + rng.normal(0, 0.05, 12)[videos] + rng.normal(0, 0.02, videos.size)
    se_t, p_t, se_c, p_c = S.paired_t(b - a, videos)
    ref = sst.ttest_rel(b, a)
    assert p_t[0] == pytest.approx(ref.pvalue, rel=1e-10)
    assert se_t[0] == pytest.approx(np.std(b - a, ddof=1) / np.sqrt(videos.size), rel=1e-12)
    assert se_c[0] == pytest.approx(miller_eq4_loop(list(b - a), list(videos)), rel=1e-12)
    t = abs(np.mean(b - a)) / se_c[0]
    assert p_c[0] == pytest.approx(2 * sst.t.sf(t, 11), rel=1e-10)  # G - 1 = 11 df
    # singleton clusters: the clustered SE is the paired-t SE
    assert S.clustered_se(b - a, np.arange(videos.size))[0] == pytest.approx(se_t[0], rel=1e-12)


def test_power_literal_formulas_equal_sized_videos():
    rng = np.random.default_rng(5)
    videos = np.repeat(np.arange(40), 3)
    d = 1.0 + rng.normal(0, 4, 40)[videos] + rng.normal(0, 1, videos.size)
    res = S.power_analysis(d, 2.0, clusters=videos, alpha=0.05, power=0.8)
    per_video = d.reshape(40, 3).mean(1)
    sd = per_video.std(ddof=1)
    z = 1.959963984540054 + 0.8416212335729143
    assert res.sd_diff == pytest.approx(sd, rel=1e-12)
    assert res.n_units == math.ceil((z * sd / 2.0) ** 2)
    assert res.n_expressions == 3 * res.n_units
    assert res.mde == pytest.approx(z * sd / math.sqrt(40), rel=1e-12)
    flat = S.power_analysis(d, 2.0, alpha=0.05, power=0.8)  # expression unit ignores clustering
    assert flat.sd_diff == pytest.approx(d.std(ddof=1)) and flat.n_units == math.ceil((z * flat.sd_diff / 2) ** 2)
    assert flat.n_units < res.n_expressions  # ignoring clustering understates the videos needed


def test_power_sample_size_reaches_the_power_in_fresh_studies():
    """Independent check: draw new studies of the computed size from the true model."""
    rng = np.random.default_rng(11)
    video_sd, expr_sd, per_video, delta = 3.0, 2.0, 4, 1.0

    def study(n_videos):
        v = np.repeat(np.arange(n_videos), per_video)
        return delta + rng.normal(0, video_sd, n_videos)[v] + rng.normal(0, expr_sd, v.size), v

    pilot, pv = study(400)
    res = S.power_analysis(pilot, delta, clusters=pv, power=0.8)
    hits = 0
    for _ in range(1000):
        d, v = study(res.n_units)
        se = S.clustered_se(d, v)[0]
        hits += abs(d.mean()) > 1.959963984540054 * se
    assert 0.75 <= hits / 1000 <= 0.86
    sim = S.simulate_power(pilot, delta, res.n_units, clusters=pv, simulations=2000, seed=1)
    assert abs(sim - 0.8) < 0.04


def test_resample_cap_is_a_one_line_error():
    from decafbench.errors import InputError

    S.check_resamples(10_000, 40)
    with pytest.raises(InputError, match="between 1 and"):
        S.check_resamples(10 ** 12)
    with pytest.raises(InputError, match="GiB"):
        S.check_resamples(1_000_000, 100)


def _record(path: Path, values, videos, benchmark="mevis", split="valid_u") -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"name": path.name, "benchmark": benchmark, "split": split}))
    pd.DataFrame({"video": [f"v{v:03d}" for v in videos], "exp_id": [str(i) for i in range(len(videos))],
                  "split": "", "J": values, "F": values, "JF": values, "error": ""}).to_csv(
        path / "per_expression.csv", index=False)
    return path


def test_power_cli_json(tmp_path):
    rng = np.random.default_rng(2)
    videos = np.repeat(np.arange(30), 2)
    base = rng.uniform(0.3, 0.7, videos.size)
    cand = np.clip(base + 0.02 + rng.normal(0, 0.04, 30)[videos], 0, 1)
    a, b = _record(tmp_path / "a", base, videos), _record(tmp_path / "b", cand, videos)
    app = typer.Typer()
    register_power(app)
    app.command("noop")(lambda: None)
    out = tmp_path / "p.json"
    res = CliRunner().invoke(app, ["power", "--baseline", str(a), "--candidate", str(b), "--delta", "1",
                                   "--simulate", "--simulations", "500", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    for key in ("n_units", "n_expressions", "mde", "sd_diff", "unit", "simulated_power"):
        assert key in doc
    d = 100 * (cand - base)
    assert doc["sd_diff"] == pytest.approx(d.reshape(30, 2).mean(1).std(ddof=1), rel=1e-9)
    assert doc["unit"] == "video" and doc["n_expressions"] == 2 * doc["n_units"]
