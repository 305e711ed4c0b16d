"""decaf run --masks keypoints end to end: points written, PP@k equal the loop reference."""

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from decafbench.benchmarks.registry import get_benchmark
from decafbench.benchmarks.synth import SynthConfig, write_synth
from decafbench.cli import build_app
from decafbench.config import RunConfig
from decafbench.errors import InputError
from decafbench.runstore import read_record

from test_keypoints import reference_pp  # the loop definition of eval_rvos_keypoints.py

runner = CliRunner()


def test_keypoints_is_a_mask_kind_and_both_means_coarse_and_sam2():
    kinds = lambda masks: [m.kind for m in RunConfig.from_mapping({"masks": masks}).masks]  # noqa: E731
    assert kinds("keypoints") == ["keypoints"]
    assert kinds("both") == ["coarse", "sam2"]
    assert kinds(["coarse", "keypoints"]) == ["coarse", "keypoints"]
    with pytest.raises(InputError, match="keypoints"):
        RunConfig.from_mapping({"masks": "points"})


@pytest.mark.slow
def test_run_keypoints_writes_points_and_point_precision(tmp_path):
    data = tmp_path / "data"
    write_synth(SynthConfig(videos=2, frames=6, height=48, width=64, seed=5, expressions_per_video=1), data)
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["run", "-b", "mevis", "--root", str(data), "--split", "valid_u", "--frames", "4", "--masks", "coarse,keypoints",
            "--out", str(out), "--cache", str(cache)]
    res = runner.invoke(build_app(), args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["decaf__coarse", "decaf__keypoints"]
    assert len(list(cache.rglob("*.safetensors"))) == 2  # one MLLM pass serves both kinds
    board = (out / "leaderboard.md").read_text()  # one table per kind, each on its own metrics
    masks, points = board.split("## keypoints")
    assert masks.startswith("## masks") and "valid\\_u J |" in masks and "PP@" not in masks
    assert "PP@1 |" in points and "PP@100 |" in points and "valid\\_u J |" not in points
    assert "mask\\_kind=coarse" in masks and "mask\\_kind=keypoints" in points
    rec = read_record(out / "decaf__keypoints")
    bench = get_benchmark("mevis", root=data, split="valid_u")
    assert len(rec.table) == 2 and (rec.table["error"] == "").all()
    for expr in bench.expressions():
        row = rec.table[(rec.table["video"] == expr.video) & (rec.table["exp_id"].astype(str) == str(expr.exp_id))].iloc[0]
        video = bench.video(expr.video)
        with open(out / "decaf__keypoints" / "predictions" / expr.video / str(expr.exp_id) / "keypoints.csv") as f:
            points = list(csv.DictReader(f))
        assert 0 < len(points) <= 100 and [int(p["rank"]) for p in points] == list(range(len(points)))
        assert all(video.frames[int(p["frame_index"])] == p["frame"] for p in points)
        scores = [float(p["score"]) for p in points]
        assert scores == sorted(scores, reverse=True) and scores[0] == 1.0  # the fused map is min-max normalized
        gt = bench.ground_truth(expr)
        index = {name: i for i, name in enumerate(gt.frames)}
        assert all(p["frame"] in index for p in points) and row["keypoints_unannotated"] == 0
        pts = [(index[p["frame"]], float(p["y"]), float(p["x"]), float(p["score"])) for p in points]
        want = reference_pp(pts, np.asarray(gt.masks), (1, 5, 10, 50, 100), 14)
        assert {k: row[k] for k in want} == pytest.approx(want, abs=0)


def test_point_precision_metrics_are_registered_for_keypoint_records_only():
    from decafbench import metric_registry
    from decafbench.benchmarks.registry import get_benchmark as _get

    assert metric_registry.POINT_METRICS == ("PP@1", "PP@5", "PP@10", "PP@50", "PP@100")
    assert all(metric_registry.get(m).higher_is_better and metric_registry.get(m).on_failure == 0.0
               for m in metric_registry.POINT_METRICS)
    bench = _get("embedded")
    assert not set(metric_registry.POINT_METRICS) & set(metric_registry.for_benchmark(bench))  # never from masks
    with pytest.raises(InputError, match="scored from keypoints"):
        metric_registry.get("pp@1").reduce({})
