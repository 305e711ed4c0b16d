"""decaf run's records as a user meets them: shell-safe folder names with the full label in
the manifest, a cache found relative to the records after both move, and progress lines
when the output is a log file rather than a terminal."""

from __future__ import annotations

import re
import shutil

import pytest
from typer.testing import CliRunner

from decafbench.benchmarks.synth import SynthConfig, write_synth
from decafbench.cli import build_app
from decafbench.runstore import read_record


@pytest.mark.slow
def test_run_records_are_slugged_relocatable_and_logged(tmp_path):
    data = tmp_path / "data"
    write_synth(SynthConfig(videos=1, frames=4, height=48, width=64, seed=5, expressions_per_video=1), data)
    results = tmp_path / "results"
    res = CliRunner().invoke(build_app(), [
        "run", "-b", "mevis", "--root", str(data), "--split", "valid_u", "--frames", "4", "--masks", "coarse",
        "--variant", "decaf:sigma=2", "--out", str(results / "runs"), "--cache", str(results / "cache")])
    assert res.exit_code == 0, res.output
    # CliRunner's streams are not a terminal: plain progress lines, not a redrawn bar
    lines = [line for line in res.output.splitlines() if line.startswith("decaf run: ")]
    assert any(re.match(r"decaf run: 1/1 expressions \(100%\), 0 failed", line) for line in lines), res.output
    folders = [p.name for p in (results / "runs").iterdir() if p.is_dir()]
    assert folders == ["decaf-sigma2.0__coarse"] or folders == ["decaf-sigma2__coarse"], folders
    rec = read_record(results / "runs" / folders[0])
    assert rec.manifest["variant_label"].startswith("decaf[sigma=2") and rec.manifest["mask_label"] == "coarse"
    assert rec.manifest["attention_cache"] == "../../cache"
    moved = tmp_path / "elsewhere"
    shutil.move(str(results), str(moved))
    from decafbench.show_record import load_expression_view

    view = load_expression_view(moved / "runs" / folders[0], "synth000", "0")
    assert not view.maps_missing and "fused" in view.stages
