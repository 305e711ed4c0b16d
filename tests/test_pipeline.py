"""decaf run end to end with the tiny models on a tiny synthetic benchmark."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from decafbench.benchmarks.synth import SynthConfig, write_synth
from decafbench.cli import build_app
from decafbench.pipeline import key_frame_indices
from decafbench.runstore import read_record

runner = CliRunner()


def test_key_frames_follow_linspace_cast_to_int():
    assert key_frame_indices(5, 16) == [0, 1, 2, 3, 4]
    assert key_frame_indices(20, 16) == [int(x) for x in np.linspace(0, 19, 16)]
    assert key_frame_indices(100, 16)[-1] == 99 and len(key_frame_indices(100, 16)) == 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_synth(SynthConfig(videos=2, frames=6, height=48, width=64, seed=5, expressions_per_video=1), root)
    return root


def _run(data, out, cache, *extra, code=0):
    args = ["run", "-b", "mevis", "--root", str(data), "--split", "valid_u", "--frames", "4",
            "--out", str(out), "--cache", str(cache), *extra]
    res = runner.invoke(build_app(), args)
    assert res.exit_code == code, res.output + repr(res.exception)
    return res


@pytest.mark.slow
def test_run_writes_one_scored_record_per_variant_and_mask_kind(data, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    _run(data, out, cache, "--masks", "both", "--variant", "decaf", "--variant", "object-only")
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["decaf__coarse", "decaf__sam2", "object-only__coarse", "object-only__sam2"]
    assert (out / "leaderboard.md").is_file()
    for name in names:
        rec = read_record(out / name)
        assert len(rec.table) == 2 and (rec.table["error"] == "").all()
        assert rec.table["JF"].between(0, 1).all()
        assert rec.manifest["adapter"] == "qwen2-vl" and rec.manifest["checkpoint"] == "tiny"
        assert rec.manifest["variant"] in ("decaf", "object-only") and rec.manifest["seed"] == 0
        assert any(c.startswith("diag_fused_") for c in rec.table.columns)
    # one MLLM pass per expression, shared by every variant and mask kind
    assert len(list(cache.rglob("*.safetensors"))) == 2
    assert (read_record(out / "decaf__coarse").table["obj_name"].values ==
            read_record(out / "object-only__sam2").table["obj_name"].values).all()


@pytest.mark.slow
def test_sam2_predictions_score_the_same_through_decaf_evaluate(data, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    _run(data, out, cache, "--masks", "sam2")
    rec = read_record(out / "decaf__sam2")
    res = runner.invoke(build_app(), ["evaluate", "-b", "mevis", "--root", str(data), "--pred",
                                      str(out / "decaf__sam2" / "predictions"), "--out", str(tmp_path / "ev"), "-j", "1"])
    assert res.exit_code == 0, res.output
    ev = read_record(tmp_path / "ev")
    assert np.array_equal(ev.table["JF"].to_numpy(), rec.table["JF"].to_numpy())


@pytest.mark.slow
def test_rerun_resumes_and_failures_are_recorded(data, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    _run(data, out, cache, "--masks", "coarse", "--limit", "1")
    first = read_record(out / "decaf__coarse")
    assert len(first.table) == 1
    part = next((out / "decaf__coarse" / "parts").glob("*.json"))
    stamp = part.stat().st_mtime_ns
    _run(data, out, cache, "--masks", "coarse")
    again = read_record(out / "decaf__coarse")
    assert len(again.table) == 2
    assert part.stat().st_mtime_ns == stamp  # the finished expression was not redone
    assert again.table["cache_hit"].tolist() == [0, 0]  # both computed once, in separate runs
    # adding a variant to the same --out: only the new record has work, from the cached maps
    _run(data, out, cache, "--masks", "coarse", "--variant", "decaf", "--variant", "object-only")
    assert part.stat().st_mtime_ns == stamp
    added = read_record(out / "object-only__coarse")
    assert len(added.table) == 2 and added.table["cache_hit"].tolist() == [1, 1]


def test_rollout_start_beyond_the_model_is_refused_before_any_work(data, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(build_app(), ["run", "-b", "mevis", "--root", str(data), "--frames", "4", "--masks", "coarse",
                                      "--rollout-start", "7", "--out", str(out), "--cache", str(tmp_path / "c")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --rollout-start: rollout layers [7, None)")
    assert "4-layer model" in lines[0]
    assert not list(out.rglob("*.json"))  # no part, no identity, no manifest


@pytest.mark.slow
def test_a_broken_video_fails_alone(data, tmp_path):
    import shutil

    broken = tmp_path / "data"
    shutil.copytree(data, broken)
    frame = sorted((broken / "valid_u" / "JPEGImages" / "synth000").glob("*.jpg"))[0]
    frame.write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    res = _run(broken, out, tmp_path / "cache", "--masks", "coarse", code=1)  # a failed expression: exit 1
    rec = read_record(out / "decaf__coarse")
    errors = dict(zip(rec.table["video"], rec.table["error"]))
    assert errors["synth001"] == "" and str(frame) in errors["synth000"]
    assert rec.manifest["n_failed"] == 1
    from decafbench.runstats import metric_scores

    # statistics count the failure as an empty mask (the frame is unreadable, so is its ground
    # truth here: the registry's empty-mask value, J = 0)
    scores = metric_scores(rec, "J", "zero").values
    assert scores[scores.index.get_level_values(0) == "synth000"].tolist() == [0.0]
    assert "1 failed" in res.output and "1 of 2 expressions failed" in res.output
    # the records are complete either way; --allow-failures makes it exit 0 (and retries the failed one)
    _run(broken, out, tmp_path / "cache", "--masks", "coarse", "--allow-failures")
    assert read_record(out / "decaf__coarse").manifest["n_failed"] == 1


@pytest.mark.slow
def test_sweep_runs_a_grid_from_one_mllm_pass(data, tmp_path):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(f"""
[run]
benchmark = "mevis"
root = "{data}"
frames = 4
masks = "coarse"
out = "{tmp_path / 'sweep'}"
cache = "{tmp_path / 'cache'}"

[grid]
variant = ["decaf", "no-smoothing"]
sigma = [0.5, 2.0]
""")
    res = runner.invoke(build_app(), ["sweep", str(cfg)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    names = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert names == ["decaf-sigma0.5__coarse", "decaf-sigma2.0__coarse", "no-smoothing__coarse"]  # shell-safe
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 2
    manifest = json.loads((tmp_path / "sweep" / "decaf-sigma2.0__coarse" / "manifest.json").read_text())
    assert manifest["variant_params"]["sigma"] == 2.0 and manifest["variant_label"] == "decaf[sigma=2.0]"


def test_bad_options_exit_2(tmp_path):
    for args in (["run", "--model", "qwen3:tiny"], ["run", "--variant", "decaff"], ["run", "--masks", "fine"],
                 ["run", "--variant", "decaf:sigmaa=1"]):
        res = runner.invoke(build_app(), args + ["--out", str(tmp_path / "o")])
        assert res.exit_code == 2, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_no_reuse_reproduces_the_reference_pattern_with_the_same_maps(data, tmp_path):
    _run(data, tmp_path / "a", tmp_path / "ca", "--masks", "coarse", "--limit", "1")
    _run(data, tmp_path / "b", tmp_path / "cb", "--masks", "coarse", "--limit", "1", "--no-reuse")
    a, b = read_record(tmp_path / "a" / "decaf__coarse"), read_record(tmp_path / "b" / "decaf__coarse")
    assert a.table["vision_passes"].iloc[0] == 2  # one per view
    assert b.table["vision_passes"].iloc[0] == 4  # one per prompt and view
    assert a.table["JF"].iloc[0] == b.table["JF"].iloc[0]
    assert a.table["cache_key"].iloc[0] == b.table["cache_key"].iloc[0]  # reuse does not change outputs


@pytest.mark.slow
def test_resume_refuses_a_different_configuration(data, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    _run(data, out, cache, "--masks", "coarse", "--limit", "1")
    res = runner.invoke(build_app(), ["run", "-b", "mevis", "--root", str(data), "--frames", "3", "--masks", "coarse",
                                      "--out", str(out), "--cache", str(cache)])
    assert res.exit_code == 2
    assert "different 'num_frames'" in res.output and str(out / "decaf__coarse") in res.output


@pytest.mark.slow
def test_no_prefix_reuse_keeps_encoder_reuse_and_outputs(data, tmp_path):
    _run(data, tmp_path / "a", tmp_path / "ca", "--masks", "coarse", "--limit", "1")
    _run(data, tmp_path / "b", tmp_path / "cb", "--masks", "coarse", "--limit", "1", "--no-prefix-reuse")
    _run(data, tmp_path / "c", tmp_path / "cc", "--masks", "coarse", "--limit", "1", "--no-reuse")
    a, b, c = (read_record(tmp_path / k / "decaf__coarse").table.iloc[0] for k in "abc")
    assert (a["vision_passes"], b["vision_passes"], c["vision_passes"]) == (2, 2, 4)
    assert a["prefill_tokens"] < b["prefill_tokens"] == c["prefill_tokens"]
    assert a["JF"] == b["JF"] == c["JF"]


@pytest.mark.slow
def test_run_on_a_split_without_ground_truth_writes_predictions_and_no_scores(data, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(data / "valid_u", root / "valid")  # MeViS 'valid': the server keeps its masks
    (root / "valid" / "mask_dict.json").unlink()
    out = tmp_path / "out"
    res = runner.invoke(build_app(), ["run", "-b", "mevis", "--root", str(root), "--split", "valid", "--frames", "4",
                                      "--masks", "coarse", "--limit", "1", "--out", str(out), "--cache", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    rec = read_record(out / "decaf__coarse")
    assert len(rec.table) == 1 and rec.table["error"].iloc[0] == ""
    assert "JF" not in rec.table.columns and "summary" not in rec.manifest
    assert not (out / "leaderboard.md").exists()
    row = rec.table.iloc[0]
    pngs = list((out / "decaf__coarse" / "predictions" / row["video"] / row["exp_id"]).glob("*.png"))
    assert len(pngs) == 4  # one mask per key frame, ready for `decaf export`
