"""Statistics input is untrusted: bad scores, mixed benchmarks, failures, coverage, escaping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from decafbench import runstats as RS
from decafbench import tables as T
from decafbench.cli import build_app
from decafbench.errors import InputError
from decafbench.runstore import read_record


def write(path: Path, rows: list[dict], **manifest) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps({"name": path.name, "benchmark": "mevis", "split": "valid_u",
                                                    **manifest}))
    pd.DataFrame(rows).to_csv(path / "per_expression.csv", index=False)
    return path


def rows(values, n_videos=None, error=None):
    n = len(values)
    n_videos = n_videos or n
    return [{"video": f"v{i % n_videos:02d}", "exp_id": str(i), "split": "", "J": v, "F": v, "JF": v,
             "error": (error or {}).get(i, "")} for i, v in enumerate(values)]


def invoke(*args):
    res = CliRunner().invoke(build_app(), [str(a) for a in args])
    return res.exit_code, res.output  # click 8.2+: stdout and stderr together


GOOD = list(np.linspace(0.2, 0.8, 24))


@pytest.mark.parametrize("bad, needle", [
    (67.59, "outside [0, 1] (a percent column"),
    ("nan", "'nan', not a number"),
    ("inf", "inf, not finite"),
    ("-inf", "-inf, not finite"),
    ("good", "'good', not a number"),
    ("", "is empty"),
    (-0.2, "outside [0, 1]"),
])
@pytest.mark.parametrize("command", ["compare", "leaderboard", "regress", "power"])
def test_bad_scores_are_refused_naming_file_and_row(tmp_path, bad, needle, command):
    vals = list(GOOD)
    vals[5] = bad
    a = write(tmp_path / "a", rows(GOOD))
    b = write(tmp_path / "b", rows(vals))
    args = {"compare": ["compare", a, b], "leaderboard": ["leaderboard", a, b],
            "regress": ["regress", "--baseline", a, "--candidate", b],
            "power": ["power", "--baseline", a, "--candidate", b, "--delta", "1"]}[command]
    code, out = invoke(*args, "--resamples" if command != "power" else "--alpha",
                       "50" if command != "power" else "0.05")
    assert code == 2
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and "per_expression.csv" in lines[0] and "row 7 " in lines[0], out
    assert needle in lines[0] and "v05" in lines[0]


@pytest.mark.parametrize("command", ["compare", "regress", "power"])
def test_different_benchmarks_or_splits_are_not_paired(tmp_path, command):
    a = write(tmp_path / "a", rows(GOOD))
    b = write(tmp_path / "b", rows(GOOD), split="valid")
    args = {"compare": ["compare", a, b], "regress": ["regress", "--baseline", a, "--candidate", b],
            "power": ["power", "--baseline", a, "--candidate", b, "--delta", "1"]}[command]
    code, out = invoke(*args)
    assert code == 2 and "cannot be paired" in out and str(b / "manifest.json") in out


def test_leaderboard_group_mixing_benchmarks_is_refused(tmp_path):
    a = write(tmp_path / "a", rows(GOOD))
    b = write(tmp_path / "b", rows(GOOD), benchmark="revos")
    code, out = invoke("leaderboard", a, b, "--group-by", "adapter", "--resamples", "50")
    assert code == 2 and "cannot be paired" in out
    code, out = invoke("leaderboard", a, b, "--resamples", "50")  # one group each: fine
    assert code == 0, out


def test_failures_zero_counts_empty_masks_drop_leaves_out(tmp_path):
    base = write(tmp_path / "base", rows(GOOD))
    failed = rows(GOOD, error={0: "boom", 1: "boom"})
    for i in (0, 1):
        failed[i].update(J="", F="", JF="")
    cand = read_record(write(tmp_path / "cand", failed))
    zero = RS.metric_scores(cand, "JF", "zero")
    assert zero.failed == 2 and len(zero.values) == 24 and zero.values.iloc[:2].tolist() == [0.0, 0.0]
    drop = RS.metric_scores(cand, "JF", "drop")
    assert len(drop.values) == 22
    assert RS.metric_scores(cand, "R" if "R" in cand.table else "JF").values.notna().all()
    code, out = invoke("leaderboard", base, tmp_path / "cand", "--resamples", "50")
    assert code == 0, out
    assert "counted as empty masks (--failures zero): cand: 2" in " ".join(out.split())
    mean_zero = 100 * (sum(GOOD[2:]) / 24)
    assert f"{mean_zero:.1f}" in out
    code, out = invoke("leaderboard", base, tmp_path / "cand", "--resamples", "50", "--failures", "drop")
    assert "left out (--failures drop)" in " ".join(out.split())
    assert "rows cover different expressions (n 22 to 24, 22 shared)" in " ".join(out.split())


def test_n_column_in_every_format(tmp_path):
    a = write(tmp_path / "a", rows(GOOD, 8), adapter="qwen")
    b = write(tmp_path / "b", rows(GOOD[:20], 8), adapter="intern")
    for fmt in ("md", "csv", "tex", "html", "json"):
        code, out = invoke("leaderboard", a, b, "--resamples", "50", "--format", fmt)
        assert code == 0, out
        if fmt == "json":
            doc = json.loads(out)
            ns = sorted(r["groups"]["mevis valid_u"]["n"] for r in doc["rows"])
            assert ns == [20, 24]
            assert doc["rows"][0]["groups"]["mevis valid_u"]["J&F"]["n"] in (20, 24)
        elif fmt == "csv":
            assert sorted(pd.read_csv(__import__("io").StringIO(out))["mevis valid_u n"]) == [20, 24]
        else:
            assert ">n<" in out or "| n |" in out or " & n &" in out or "mevis valid\\_u n" in out or "n |" in out
            assert "24" in out and "20" in out


def test_markdown_escapes_untrusted_text(tmp_path):
    evil = '<img src=x onerror=alert(1)>*x*|[a](javascript:b)'
    a = write(tmp_path / "a", rows(GOOD), adapter=evil)
    b = write(tmp_path / "b", rows(GOOD), adapter="ok")
    code, out = invoke("leaderboard", a, b, "--resamples", "50", "--format", "md")
    assert code == 0, out
    assert "<img" not in out and "&lt;img" in out
    assert "\\*x\\*" in out and "\\|" in out and "\\[a\\]" in out


@pytest.mark.parametrize("args, needle", [
    (["--digits", "-2"], "--digits"),
    (["--resamples", "1000000000"], "--resamples"),
    (["--failures", "maybe"], "--failures"),
    (["--metric", "Jrecall"], "--metric"),
])
def test_bad_options_one_line(tmp_path, args, needle):
    a = write(tmp_path / "a", rows(GOOD))
    code, out = invoke("leaderboard", a, *args)
    assert code == 2 and needle in out and len(out.strip().splitlines()) == 1


def test_compare_refuses_one_unit_and_warns_below_ten_videos(tmp_path):
    a = write(tmp_path / "a", rows(GOOD, 1))
    b = write(tmp_path / "b", rows(list(np.asarray(GOOD) * 0.9), 1))
    code, out = invoke("compare", a, b, "--resamples", "50")
    assert code == 2 and "resampling unit" in out
    code, out = invoke("regress", "--baseline", a, "--candidate", b, "--resamples", "50")
    assert code == 2 and "resampling unit" in out
    a = write(tmp_path / "a5", rows(GOOD, 5))
    b = write(tmp_path / "b5", rows(list(np.asarray(GOOD) * 0.9), 5))
    code, out = invoke("compare", a, b, "--resamples", "50")
    assert code == 0 and "only 5 videos" in out and "unreliable" in out


def test_compare_has_t_and_clustered_columns(tmp_path):
    a = write(tmp_path / "a", rows(GOOD, 12))
    b = write(tmp_path / "b", rows(list(np.asarray(GOOD) * 0.9), 12))
    out = tmp_path / "c.csv"
    code, text = invoke("compare", a, b, "--resamples", "200", "--out", out, "--metric", "J")
    assert code == 0, text
    table = pd.read_csv(out)
    for col in ("p_ttest", "se_clustered", "p_clustered", "se_t", "n_units"):
        assert col in table
    assert table["n_units"].iloc[0] == 12


def test_lower_is_better_metric_bolds_the_lowest_and_regress_flips(tmp_path):
    def with_decay(vals, decay):
        rs = rows(vals, 12)
        for r, d in zip(rs, decay):
            r["J_decay"] = d
        return rs

    low = write(tmp_path / "low", with_decay(GOOD, [0.05] * 24), adapter="a")
    high = write(tmp_path / "high", with_decay(GOOD, list(np.linspace(0.3, 0.5, 24))), adapter="b")
    t = T.build_leaderboard([read_record(high), read_record(low)], metrics=["J_decay"], resamples=100)
    col = t.columns.index(("mevis valid_u", "J-Decay"))
    best = [key for key, row in zip(t.index, t.cells) if row[col].best]
    assert best == [("a",)] and t.index[0] == ("a",)  # sorted ascending too
    code, out = invoke("regress", "--baseline", low, "--candidate", high, "--metric", "J_decay",
                       "--resamples", "300")
    assert code == 1 and "REGRESSION" in out
    code, out = invoke("regress", "--baseline", high, "--candidate", low, "--metric", "j_decay",
                       "--resamples", "300")
    assert code == 0, out


def test_report_takes_a_registered_metric_only(tmp_path):
    a = write(tmp_path / "a", rows(GOOD))
    code, out = invoke("report", a, "--metric", "Jrecall", "--out", tmp_path / "r.html")
    assert code == 2 and "--metric" in out and len(out.strip().splitlines()) == 1
