"""Pipeline-level contracts: what keys the attention cache, and a sweep's [sam2] grid."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from decafbench.benchmarks.synth import SynthConfig, write_synth

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_synth(SynthConfig(videos=1, frames=4, height=48, width=64, seed=3, expressions_per_video=1), root)
    return root


# -- the attention cache's key --------------------------------------------------------------------
def _cache_key(data, tmp_path, **settings) -> str:
    """The cache key of the first expression, as a worker computes and records it."""
    from decafbench.config import RunConfig
    from decafbench.pipeline import Job, Worker

    base = {"benchmark": "mevis", "root": str(data), "split": "valid_u", "frames": 2, "masks": "coarse",
            "out": str(tmp_path / "out"), "cache": None, "max_new_tokens": 2}
    config = RunConfig.from_mapping({**base, **settings}).validate()
    worker = Worker(config).load()
    job = Job(worker.benchmark.expressions()[0], tuple(worker.records))
    rows = worker.process(job)
    assert rows and all(row["error"] == "" for _, row in rows), rows
    keys = {row["cache_key"] for _, row in rows}
    assert len(keys) == 1  # every record of one expression reads the same maps
    return keys.pop()


@pytest.mark.slow
def test_every_setting_that_changes_the_maps_changes_the_cache_key(data, tmp_path):
    """Same settings: same key. Each of rollout, dtype, prompts, max_new_tokens and the model's
    arguments: a new key (a stale key would serve one model's maps to another). Fusion variants,
    mask kinds and the reuse switches do not change the maps, so they keep the key."""
    base = _cache_key(data, tmp_path)
    assert _cache_key(data, tmp_path) == base
    changed = {
        "rollout_start": {"rollout_start": 1},
        "head_weighting": {"head_weighting": "mean"},
        "residual": {"residual": 0.25},
        "dtype": {"dtype": "bfloat16"},
        "prompts": {"prompts": "v1"},
        "max_new_tokens": {"max_new_tokens": 3},
        "model_args": {"model_args": {"seed": 1}},  # another tiny model's weights
        "model_args (budget)": {"model_args": {"video_tokens_per_frame": 4}},
    }
    keys = {name: _cache_key(data, tmp_path, **settings) for name, settings in changed.items()}
    same = [name for name, key in keys.items() if key == base]
    assert not same, f"cache key ignores {same}"
    assert len(set(keys.values())) == len(keys)
    for settings in ({"variant": ["object-only"]}, {"masks": "sam2"}, {"reuse": False}, {"prefix_reuse": False}):
        assert _cache_key(data, tmp_path, **settings) == base, settings
    # issue 9 item 8: in half precision prefix reuse is not exact, so opting in keys the maps apart
    half = _cache_key(data, tmp_path, dtype="bfloat16")
    assert _cache_key(data, tmp_path, dtype="bfloat16", prefix_reuse=False) == half
    assert _cache_key(data, tmp_path, dtype="bfloat16", prefix_reuse=True) != half


# -- a sweep's [sam2] grid --------------------------------------------------------------------------
SWEEP = """
[run]
benchmark = "mevis"
root = "{root}"
split = "valid_u"
frames = 2
masks = "sam2"
out = "{out}"
cache = "{cache}"
limit = 1

[grid]
variant = ["decaf"]

[sam2]
point_threshold = [0.7, 0.9]
final_score_threshold = [0.5, 0.8]
"""


def _sweep_file(data, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(root=data, out=tmp_path / "out", cache=tmp_path / "cache"))
    return path


def test_sweep_sam2_table_crosses_both_thresholds(data, tmp_path):
    from decafbench.pipeline import plan_records
    from decafbench.sweep import load_sweep

    config = load_sweep(_sweep_file(data, tmp_path))
    pairs = [(m.kind, m.point_threshold, m.final_score_threshold) for m in config.masks]
    assert sorted(pairs) == [("sam2", 0.7, 0.5), ("sam2", 0.7, 0.8), ("sam2", 0.9, 0.5), ("sam2", 0.9, 0.8)]
    names = [r.name for r in plan_records(config)]
    assert len(names) == len(set(names)) == 4  # one record folder per threshold pair


@pytest.mark.slow
def test_sweep_sam2_grid_writes_a_record_per_threshold_pair_from_one_mllm_pass(data, tmp_path):
    from decafbench.cli import build_app
    from decafbench.runstore import read_record

    res = runner.invoke(build_app(), ["sweep", str(_sweep_file(data, tmp_path))])
    assert res.exit_code == 0, res.output + repr(res.exception)
    folders = sorted(p for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert len(folders) == 4
    seen = set()
    for folder in folders:
        rec = read_record(folder)
        params = rec.manifest["mask_params"]
        seen.add((params["point_threshold"], params["final_score_threshold"]))
        assert rec.manifest["mask_kind"] == "sam2" and len(rec.table) == 1
        assert (rec.table["error"].fillna("") == "").all() and rec.table["JF"].between(0, 1).all()
    assert seen == {(0.7, 0.5), (0.7, 0.8), (0.9, 0.5), (0.9, 0.8)}
    # the four records share one MLLM pass: one cache entry, one cache key in their tables
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 1
    assert len({read_record(f).table["cache_key"].iloc[0] for f in folders}) == 1
    # thresholds reach SAM2: point candidates differ between tau_pq 0.7 and 0.9
    points = {read_record(f).manifest["mask_params"]["point_threshold"]: read_record(f).table["sam2_points"].iloc[0]
              for f in folders}
    assert points[0.7] >= points[0.9]
