"""decaf evaluate end to end on synthetic data with exact ground truth."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from decafbench.benchmarks.registry import get_benchmark
from decafbench.benchmarks.synth import SynthConfig, write_synth
from decafbench.cli import build_app
from decafbench.errors import InputError
from decafbench.evaluate import EvalOptions, evaluate, summarize
from decafbench.maskio import write_mask_png
from decafbench.reference.metrics import boundary_f_ref, jaccard_ref

runner = CliRunner()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synth(SynthConfig(videos=3, frames=6, height=48, width=64, seed=3), root)
    return root


def _write_preds(bench, out, transform):
    for e in bench.expressions():
        gt = bench.ground_truth(e)
        for name, mask in zip(gt.frames, gt.masks):
            write_mask_png(out / e.video / e.exp_id / f"{name}.png", transform(e, mask))


def _shift(e, mask):
    return np.roll(mask, shift=2 + len(e.exp_id), axis=1)


def test_perfect_predictions_score_one(synth, tmp_path):
    bench = get_benchmark("mevis", root=synth, split="valid_u")
    _write_preds(bench, tmp_path / "pred", lambda e, m: m)
    rows = evaluate(bench, tmp_path / "pred", EvalOptions(workers=1))
    assert len(rows) == len(bench.expressions())
    assert all(r["J"] == 1.0 and r["F"] == 1.0 and r["JF"] == 1.0 for r in rows)


def test_scores_match_a_plain_loop_and_pool_matches_serial(synth, tmp_path):
    bench = get_benchmark("mevis", root=synth, split="valid_u")
    _write_preds(bench, tmp_path / "pred", _shift)
    serial = evaluate(bench, tmp_path / "pred", EvalOptions(workers=1))
    pooled = evaluate(bench, tmp_path / "pred", EvalOptions(workers=2))
    assert serial == pooled
    for row in serial:
        e = next(x for x in bench.expressions() if x.key == (row["video"], row["exp_id"]))
        gt = bench.ground_truth(e)
        j = np.mean([jaccard_ref(g, _shift(e, g)) for g in gt.masks])
        f = np.mean([boundary_f_ref(g, _shift(e, g)) for g in gt.masks])
        assert row["J"] == pytest.approx(j, abs=1e-12) and row["F"] == pytest.approx(f, abs=1e-12)
        assert row["JF"] == pytest.approx((j + f) / 2, abs=1e-12)


def test_cli_writes_record_with_full_precision(synth, tmp_path):
    bench = get_benchmark("mevis", root=synth, split="valid_u")
    _write_preds(bench, tmp_path / "pred", _shift)
    out = tmp_path / "run"
    res = runner.invoke(build_app(), ["evaluate", "-b", "mevis", "--root", str(synth), "--split", "valid_u",
                                      "--pred", str(tmp_path / "pred"), "--out", str(out), "-j", "1"])
    assert res.exit_code == 0, res.output
    assert "J&F" in res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["benchmark"] == "mevis" and manifest["split"] == "valid_u"
    assert {"versions", "git_commit", "machine", "created", "command"} <= set(manifest)
    import pandas as pd

    table = pd.read_csv(out / "per_expression.csv", dtype={"exp_id": str})
    assert list(table.columns[:6]) == ["video", "exp_id", "split", "J", "F", "JF"]
    rows = evaluate(bench, tmp_path / "pred", EvalOptions(workers=1))
    assert np.array_equal(table["JF"].to_numpy(), np.array([r["JF"] for r in rows]))  # bit-exact


def _first(bench):
    e = bench.expressions()[0]
    return e, bench.ground_truth(e)


def test_missing_prediction_is_one_line_exit_2_and_nothing_written(synth, tmp_path):
    bench = get_benchmark("mevis", root=synth, split="valid_u")
    _write_preds(bench, tmp_path / "pred", lambda e, m: m)
    e, gt = _first(bench)
    victim = tmp_path / "pred" / e.video / e.exp_id / f"{gt.frames[1]}.png"
    victim.unlink()
    out = tmp_path / "run"
    res = runner.invoke(build_app(), ["evaluate", "-b", "mevis", "--root", str(synth), "--pred",
                                      str(tmp_path / "pred"), "--out", str(out), "-j", "1"])
    assert res.exit_code == 2
    assert str(victim) in res.output and len(res.output.strip().splitlines()) == 1
    assert not (out / "per_expression.csv").exists() and not (out / "manifest.json").exists()
    # --missing empty is the explicit opt-in
    res = runner.invoke(build_app(), ["evaluate", "-b", "mevis", "--root", str(synth), "--pred",
                                      str(tmp_path / "pred"), "--out", str(out), "-j", "1", "--missing", "empty"])
    assert res.exit_code == 0, res.output
    rows = evaluate(bench, tmp_path / "pred", EvalOptions(missing="empty", workers=1))
    row = next(r for r in rows if (r["video"], r["exp_id"]) == e.key)
    assert row["J"] < 1.0 or not gt.masks[1].any()


def test_size_mismatch_and_corrupt_png_name_the_file(synth, tmp_path):
    bench = get_benchmark("mevis", root=synth, split="valid_u")
    _write_preds(bench, tmp_path / "pred", lambda e, m: m)
    e, gt = _first(bench)
    bad = tmp_path / "pred" / e.video / e.exp_id / f"{gt.frames[0]}.png"
    write_mask_png(bad, np.zeros((10, 10), bool))
    with pytest.raises(InputError, match=r"10x10.*64x48") as info:
        evaluate(bench, tmp_path / "pred", EvalOptions(workers=1))
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InputError) as info:
        evaluate(bench, tmp_path / "pred", EvalOptions(workers=1))
    assert str(bad) in str(info.value)


def test_unknown_benchmark_and_missing_pred_dir(tmp_path):
    res = runner.invoke(build_app(), ["evaluate", "-b", "mevsi", "--pred", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "did you mean 'mevis'" in res.output


def test_revos_overall_is_mean_of_referring_and_reasoning():
    rows = [{"split": "referring", "J": 1.0, "F": 1.0, "JF": 1.0},
            {"split": "referring", "J": 1.0, "F": 1.0, "JF": 1.0},
            {"split": "reasoning", "J": 0.0, "F": 0.0, "JF": 0.0},
            {"split": "other", "J": 0.5, "F": 0.5, "JF": 0.5}]
    s = summarize(rows, ["J", "F", "JF"])
    assert s["overall"]["JF"] == 0.5 and s["referring"]["JF"] == 1.0 and s["all"]["n"] == 4


def test_frames_key_scores_only_annotated_key_frames(tmp_path):
    """--frames key: exactly the annotated frames among decaf run's key frames, checked
    against a plain loop; predictions on other frames are neither needed nor read."""
    from decafbench.keyframes import key_frame_indices

    root = tmp_path / "synth"
    write_synth(SynthConfig(videos=2, frames=20, height=40, width=48, seed=5), root)
    bench = get_benchmark("mevis", root=root, split="valid_u")
    pred = tmp_path / "pred"
    keys_of = {}
    for e in bench.expressions():
        gt = bench.ground_truth(e)
        video = bench.video(e.video)
        keys = [video.frames[i] for i in key_frame_indices(len(video.frames), 6)]
        keys_of[e.key] = keys
        for name, mask in zip(gt.frames, gt.masks):
            if name in keys:  # coarse masks: key frames only
                write_mask_png(pred / e.video / e.exp_id / f"{name}.png", _shift(e, mask))
    with pytest.raises(InputError, match="missing prediction"):
        evaluate(bench, pred, EvalOptions(workers=1))  # annotated (default): every annotated frame
    rows = evaluate(bench, pred, EvalOptions(workers=1, frames="key", num_frames=6))
    assert len(rows) == len(bench.expressions())
    for row in rows:
        e = next(x for x in bench.expressions() if x.key == (row["video"], row["exp_id"]))
        gt = bench.ground_truth(e)
        scored = [(g, name) for g, name in zip(gt.masks, gt.frames) if name in keys_of[e.key]]
        assert row["n_frames"] == len(scored) == 6
        j = np.mean([jaccard_ref(g, _shift(e, g)) for g, _ in scored])
        f = np.mean([boundary_f_ref(g, _shift(e, g)) for g, _ in scored])
        assert row["J"] == pytest.approx(j, abs=1e-12) and row["F"] == pytest.approx(f, abs=1e-12)
    out = tmp_path / "rec"
    res = runner.invoke(build_app(), ["evaluate", "-b", "mevis", "--root", str(root), "--split", "valid_u",
                                      "--pred", str(pred), "--out", str(out), "-j", "1", "--frames", "key",
                                      "--key-frames", "6"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scored_frames"] == "key" and manifest["num_frames"] == 6
    res = runner.invoke(build_app(), ["evaluate", "-b", "mevis", "--root", str(root), "--split", "valid_u",
                                      "--pred", str(pred), "--out", str(out), "--frames", "some"])
    assert res.exit_code == 2


def _per_expression_plain(bench, pred_dir):
    """The toolkit's shape: every expression on its own, every RLE and PNG decoded again."""
    from decafbench.maskio import decode_rle, read_mask_png
    from decafbench.metric_registry import for_benchmark
    from decafbench.metrics import score_expression

    split = bench.split_dir
    meta = json.loads((split / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split / "mask_dict.json").read_text())
    out = {}
    for video, vmeta in meta.items():
        for exp_id, exp in vmeta["expressions"].items():
            gts, preds = [], []
            for t, frame in enumerate(vmeta["frames"]):
                pred = read_mask_png(pred_dir / video / exp_id / f"{frame}.png")
                gt = np.zeros_like(pred)
                for anno in exp["anno_id"]:
                    rle = mask_dict[str(anno)][t]
                    if rle:
                        gt = gt | np.ascontiguousarray(decode_rle(rle, pred.shape))
                gts.append(gt)
                preds.append(pred)
            out[(video, str(exp_id))] = score_expression(np.stack(gts), np.stack(preds),
                                                         metrics=for_benchmark(bench))
    return out


def test_overlapped_decode_once_scores_equal_the_serial_and_plain_paths(tmp_path, monkeypatch):
    """Overlapped loading (next expression decoded on a thread), the serial loop, the process
    pool and a plain per-expression decode-everything loop give exactly the same scores; and
    each ground-truth RLE is decoded once per video however many expressions name it."""
    import decafbench.evaluate as ev
    import decafbench.maskio as maskio

    root = tmp_path / "synth"
    write_synth(SynthConfig(videos=3, frames=5, height=40, width=56, seed=11, expressions_per_video=4), root)
    bench = get_benchmark("mevis", root=root, split="valid_u")
    _write_preds(bench, tmp_path / "pred", _shift)
    overlapped = evaluate(bench, tmp_path / "pred", EvalOptions(workers=1))
    serial = []
    for exprs in ev.group_by_video(get_benchmark("mevis", root=root, split="valid_u").expressions()).values():
        serial += ev._evaluate_video(bench, exprs, tmp_path / "pred", EvalOptions(), overlap=False)
    assert overlapped == sorted(serial, key=lambda r: (r["video"], r["exp_id"]))
    assert evaluate(bench, tmp_path / "pred", EvalOptions(workers=2)) == overlapped
    plain = _per_expression_plain(bench, tmp_path / "pred")
    assert len(plain) == len(overlapped)
    for row in overlapped:
        want = plain[(row["video"], row["exp_id"])]
        assert {k: row[k] for k in want} == want
    # decode once: count pycocotools decodes on a fresh benchmark
    calls = []
    real = maskio.decode_rle
    monkeypatch.setattr(maskio, "decode_rle", lambda *a, **k: calls.append(1) or real(*a, **k))
    import decafbench.benchmarks.formats as formats
    monkeypatch.setattr(formats, "decode_rle", maskio.decode_rle)
    evaluate(get_benchmark("mevis", root=root, split="valid_u"), tmp_path / "pred", EvalOptions(workers=1))
    mask_dict = json.loads((bench.split_dir / "mask_dict.json").read_text())
    meta = json.loads((bench.split_dir / "meta_expressions.json").read_text())["videos"]
    named = {str(a) for v in meta.values() for e in v["expressions"].values() for a in e["anno_id"]}
    assert len(calls) == sum(1 for a in named for rle in mask_dict[a] if rle)
    shared = sum(len(e["anno_id"]) for v in meta.values() for e in v["expressions"].values())
    assert shared > len(named)  # the benchmark does name objects more than once


def test_overlapped_loading_raises_the_serial_first_error(synth, tmp_path):
    """With loading overlapped, the first bad prediction (in expression order) is the one
    reported, as in the serial loop, and a later expression's error never hides it."""
    bench = get_benchmark("mevis", root=synth, split="valid_u")
    _write_preds(bench, tmp_path / "pred", _shift)
    exprs = bench.expressions()
    video = exprs[0].video
    same = [e for e in exprs if e.video == video]
    assert len(same) >= 2
    first = tmp_path / "pred" / video / same[0].exp_id
    later = tmp_path / "pred" / video / same[1].exp_id
    next(iter(sorted(first.iterdir()))).write_bytes(b"not a png")
    next(iter(sorted(later.iterdir()))).unlink()
    import decafbench.evaluate as ev

    for overlap in (True, False):
        with pytest.raises(InputError, match="not a PNG") as err:
            ev._evaluate_video(bench, same, tmp_path / "pred", EvalOptions(), overlap=overlap)
        assert same[0].exp_id in str(err.value)
