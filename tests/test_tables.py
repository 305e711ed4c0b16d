"""decafbench.tables: renderers and leaderboards (sorting, bold, ties, ReVOS splits, CLI)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from decafbench import tables as T
from decafbench.commands.stats import register
from decafbench.errors import InputError
from decafbench.runstore import read_record


def write_run(path: Path, rows: list[dict], **manifest) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps({"name": path.name, **manifest}))
    pd.DataFrame(rows).to_csv(path / "per_expression.csv", index=False)
    return path


def rows_from(jf, splits=None) -> list[dict]:
    splits = splits or ["valid"] * len(jf)
    return [{"video": f"v{i // 2:03d}", "exp_id": str(i % 2), "split": s, "J": x, "F": x / 2, "JF": 0.75 * x,
             "error": ""} for i, (x, s) in enumerate(zip(jf, splits))]


def small_table() -> T.Table:
    cells = [[T.Cell(75.25, 74.0, 76.5, best=True), T.Cell(60.0, 59.0, 61.0, tied=True)],
             [T.Cell(70.0, 69.0, 71.0, tied=True), T.Cell()]]
    return T.Table(["adapter", "variant"], [("qwen|2", "full_a&b"), ("intern<vl>", "obj")],
                   [("ref_davis", ["J&F"]), ("revos", ["J&F"])], cells, title="Board", notes=["a note"])


def test_markdown_render():
    md = T.to_markdown(small_table())
    # untrusted text is escaped: HTML as entities, Markdown punctuation with backslashes
    assert "| qwen\\|2 | full\\_a&amp;b | **75.2** ±1.2 | 60.0 ±1.0\u2020 |" in md  # 75.25 -> "75.2" (banker's)
    assert "| intern&lt;vl&gt; | obj | 70.0 ±1.0\u2020 | \u2013 |" in md
    assert md.splitlines()[3] == "|:---|:---|---:|---:|"
    assert "a note" in md


def test_latex_render_escapes_and_marks():
    tex = T.to_latex(small_table())
    assert r"\multicolumn{1}{c}{ref\_davis}" in tex and r"full\_a\&b" in tex
    assert r"\textbf{75.2}" in tex and r"$^\dagger$" in tex and r"\bottomrule" in tex
    assert tex.count(r"\\") == 4 and tex.rstrip().endswith("a note}")


def test_html_render_escapes_and_marks():
    out = T.to_html(small_table())
    assert "intern&lt;vl&gt;" in out and "<strong>75.2</strong>" in out and "<sup>&dagger;</sup>" in out
    assert '<th colspan="1">ref_davis</th>' in out and "<caption>Board</caption>" in out


def test_csv_render_is_the_frame():
    frame = pd.read_csv(pd.io.common.StringIO(T.render(small_table(), "csv")))
    assert list(frame.columns[:4]) == ["adapter", "variant", "ref_davis J&F", "ref_davis J&F ci_low"]
    assert frame["ref_davis J&F best"].tolist() == [True, False]
    assert math.isnan(frame["revos J&F"][1])
    with pytest.raises(InputError):
        T.render(small_table(), "xls")


def test_format_for():
    assert T.format_for("x/board.TEX", None) == "tex"
    assert T.format_for("board.csv", "md") == "md"
    assert T.format_for(None, None) == "md"


@pytest.fixture()
def board_runs(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.random(40)
    noise = lambda: rng.normal(0, 0.01, 40)  # noqa: E731
    good = write_run(tmp_path / "good", rows_from(np.clip(base + 0.2 + noise(), 0, 1)),
                     benchmark="refdavis", split="valid", adapter="qwen", checkpoint="7b", variant="full",
                     mask_kind="sam")
    near = write_run(tmp_path / "near", rows_from(np.clip(base + 0.2 + noise(), 0, 1)),
                     benchmark="refdavis", split="valid", adapter="intern", checkpoint="8b", variant="full",
                     mask_kind="sam")
    bad = write_run(tmp_path / "bad", rows_from(np.clip(base + noise(), 0, 1)),
                    benchmark="refdavis", split="valid", adapter="llava", checkpoint="7b", variant="full",
                    mask_kind="sam")
    splits = ["referring" if i < 10 else "reasoning" for i in range(40)]
    revos = write_run(tmp_path / "revos", rows_from(base, splits), benchmark="revos", split="valid",
                      adapter="qwen", checkpoint="7b", variant="full", mask_kind="sam")
    return good, near, bad, revos, base, splits


def test_leaderboard_sorting_best_and_ties(board_runs):
    good, near, bad, revos, base, splits = board_runs
    t = T.build_leaderboard([read_record(p) for p in (bad, near, good, revos)], resamples=300)
    assert t.index_names == ["adapter", "checkpoint"]  # constant variant / mask kind: a note
    cols = t.columns
    jf = cols.index(("refdavis valid", "J&F"))
    vals = [row[jf].value for row in t.cells]
    assert vals[:3] == sorted(vals[:3], reverse=True)
    assert t.index[-1][0] == "llava"
    best = [row[jf].best for row in t.cells]
    assert sum(best) == 1
    tied = {key[0]: row[jf].tied for key, row in zip(t.index, t.cells)}
    assert tied["llava"] is False
    loser = [key[0] for key, row in zip(t.index, t.cells) if row[jf].value < max(vals[:2])][0]
    assert tied[loser] is True  # the near-identical run is not significantly worse
    # ReVOS: per-split groups and overall = mean of the two split means
    headers = [g for g, _ in t.groups]
    assert headers[1:] == ["revos valid referring", "revos valid reasoning", "revos valid overall"]
    qwen = t.index.index(("qwen", "7b"))
    b = np.asarray(base)
    ref = b[[s == "referring" for s in splits]].mean()
    rea = b[[s == "reasoning" for s in splits]].mean()
    assert t.cells[qwen][cols.index(("revos valid overall", "J"))].value == pytest.approx(100 * (ref + rea) / 2)
    assert t.cells[qwen][cols.index(("revos valid referring", "J"))].value == pytest.approx(100 * ref)
    assert t.cells[qwen][cols.index(("revos valid reasoning", "F"))].value == pytest.approx(50 * rea)
    cell = t.cells[qwen][cols.index(("revos valid overall", "J&F"))]
    assert cell.low < cell.value < cell.high


def test_leaderboard_same_config_twice_adds_run_column(board_runs, tmp_path):
    good = board_runs[0]
    twin = tmp_path / "twin"
    twin.mkdir()
    for f in ("manifest.json", "per_expression.csv"):
        (twin / f).write_text((good / f).read_text())
    t = T.build_leaderboard([read_record(good), read_record(twin)], resamples=100)
    assert t.index_names[0] == "run" and len(t.index) == 2


def test_leaderboard_cli_formats(board_runs, tmp_path):
    app = typer.Typer()
    register(app)
    paths = [str(p) for p in board_runs[:4]]
    res = CliRunner().invoke(app, ["leaderboard", *paths, "--resamples", "100"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("| adapter | checkpoint |") and "**" in res.output
    for ext in ("csv", "tex", "html", "md"):
        out = tmp_path / f"board.{ext}"
        res = CliRunner().invoke(app, ["leaderboard", *paths, "--resamples", "100", "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert out.read_text()
    assert "refdavis valid J&F ci_low" in pd.read_csv(tmp_path / "board.csv").columns
    res = CliRunner().invoke(app, ["leaderboard", *paths, "--format", "xls"])
    assert isinstance(res.exception, InputError)


def test_leaderboard_rows_show_full_variant_and_mask_labels(tmp_path):
    """A sweep's rows differ only in parameters: the row names them (decaf[sigma=2.0]), not
    just the variant's name, and SAM2 thresholds appear with the mask kind."""
    rows = rows_from([0.5, 0.6, 0.7, 0.4])
    common = {"benchmark": "embedded", "split": "valid_u", "adapter": "qwen2-vl", "checkpoint": "tiny",
              "variant": "decaf"}
    runs = [write_run(tmp_path / "a", rows, **common, variant_label="decaf[sigma=0.5]", mask_kind="coarse"),
            write_run(tmp_path / "b", rows, **common, variant_label="decaf[sigma=2.0]", mask_kind="coarse"),
            write_run(tmp_path / "c", rows, **common, variant_label="decaf[sigma=2.0]", mask_kind="sam2",
                      mask_params={"point_threshold": 0.7, "final_score_threshold": 0.8})]
    table = T.build_leaderboard([read_record(p) for p in runs], resamples=50)
    assert table.index_names == ["variant", "mask_kind"]
    assert sorted(table.index) == [("decaf[sigma=0.5]", "coarse"), ("decaf[sigma=2.0]", "coarse"),
                                   ("decaf[sigma=2.0]", "sam2[pq=0.7,trk=0.8]")]


def test_leaderboard_warns_when_a_group_has_fewer_than_ten_videos(tmp_path):
    """A bootstrap over a handful of videos under-covers: the table says so, for that group
    only, with decaf compare's rule (runstats.FEW_VIDEOS)."""
    rng = np.random.default_rng(4)
    few = write_run(tmp_path / "few", rows_from(rng.random(8)), benchmark="refdavis", split="valid",
                    adapter="qwen", variant="full", mask_kind="sam")  # 4 videos
    many = write_run(tmp_path / "many", rows_from(rng.random(24)), benchmark="mevis", split="valid_u",
                     adapter="qwen", variant="full", mask_kind="sam")  # 12 videos
    notes = T.build_leaderboard([read_record(few), read_record(many)], resamples=200).notes
    warned = [n for n in notes if "unreliable below 10" in n]
    assert len(warned) == 1 and warned[0].startswith("refdavis valid: only 4 videos")


def test_run_leaderboard_refuses_records_of_neither_kind(tmp_path):
    """decaf run's leaderboard ranks mask records on J, F, J&F and keypoint records on PP@k;
    a record with neither is one line naming it, not a traceback."""
    from decafbench.commands.run import write_leaderboard

    rec = write_run(tmp_path / "odd", [{"video": "v0", "exp_id": "0", "split": "valid", "A": 0.5, "error": ""}],
                    benchmark="revos", split="valid", adapter="qwen", variant="full", mask_kind="sam")
    with pytest.raises(InputError, match="no record has the mask metrics"):
        write_leaderboard([rec], tmp_path / "leaderboard.md")
    assert not (tmp_path / "leaderboard.md").exists()
