"""decaf show: attention overlays, checked against slow references written from the definitions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from decafbench.errors import InputError

from helpers_show import build_records, cli

#: real frames, beside the repository: ``<repo root>/../shared/data/bedroom``
BEDROOM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bedroom"


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, Path]:
    return build_records(tmp_path_factory.mktemp("runs"), limit=3)


# -- slow references, straight from the definitions ----------------------------------------------
def ref_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, align_corners=False: sample at ((i + 0.5) H / h - 0.5), clamped, one pixel at a time."""
    big_h, big_w = x.shape
    out = np.zeros(size)
    for i in range(size[0]):
        for j in range(size[1]):
            sy = min(max((i + 0.5) * big_h / size[0] - 0.5, 0.0), big_h - 1)
            sx = min(max((j + 0.5) * big_w / size[1] - 0.5, 0.0), big_w - 1)
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            y1, x1 = min(y0 + 1, big_h - 1), min(x0 + 1, big_w - 1)
            fy, fx = sy - y0, sx - x0
            out[i, j] = ((1 - fy) * (1 - fx) * x[y0, x0] + (1 - fy) * fx * x[y0, x1]
                         + fy * (1 - fx) * x[y1, x0] + fy * fx * x[y1, x1])
    return out


def ref_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = np.zeros(size, dtype=bool)
    for i in range(size[0]):
        for j in range(size[1]):
            out[i, j] = mask[min(int((i + 0.5) * mask.shape[0] / size[0]), mask.shape[0] - 1),
                             min(int((j + 0.5) * mask.shape[1] / size[1]), mask.shape[1] - 1)]
    return out


def ref_overlay(frame: np.ndarray, heat: np.ndarray, vmin: float, vmax: float, alpha: float) -> np.ndarray:
    from matplotlib import colormaps

    up = ref_bilinear(heat, frame.shape[:2])
    out = np.zeros_like(frame)
    for i in range(frame.shape[0]):
        for j in range(frame.shape[1]):
            v = min(max((up[i, j] - vmin) / (vmax - vmin), 0.0), 1.0)
            rgb = np.array(colormaps["jet"](v)[:3]) * 255
            out[i, j] = np.round((1 - alpha) * frame[i, j] + alpha * rgb)
    return out


def ref_minmax_video(x: np.ndarray) -> np.ndarray:
    lo, hi = min(x.ravel()), max(x.ravel())
    return np.zeros_like(x) if hi == lo else (x - lo) / (hi - lo)


# -- pure helpers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("src,dst", [((3, 4), (17, 23)), ((6, 8), (6, 8)), ((9, 7), (4, 3)), ((1, 5), (3, 11)),
                                     ((14, 24), (90, 160))])
def test_bilinear_resize_matches_reference_and_torch(src, dst):
    import torch

    from decafbench.show import bilinear_resize

    x = np.random.default_rng(sum(src + dst)).random(src)
    fast = bilinear_resize(x, dst)
    np.testing.assert_allclose(fast, ref_bilinear(x, dst), atol=1e-12)
    tx = torch.nn.functional.interpolate(torch.from_numpy(x)[None, None], size=dst, mode="bilinear", align_corners=False)
    np.testing.assert_allclose(fast, tx[0, 0].numpy(), atol=1e-9)


@pytest.mark.parametrize("src,dst", [((120, 160), (45, 60)), ((5, 7), (13, 2)), ((1, 1), (3, 3)), ((8, 8), (8, 8))])
def test_nearest_resize_matches_reference(src, dst):
    from decafbench.show import nearest_resize

    m = np.random.default_rng(1).random(src) > 0.5
    np.testing.assert_array_equal(nearest_resize(m, dst), ref_nearest(m, dst))


def test_display_maps_shared_scale():
    from decafbench.show import display_maps

    rng = np.random.default_rng(2)
    stages = {"object_video": rng.random((3, 4, 5)) * 1e-3, "fused": rng.random((3, 4, 5)),
              "background_video": np.full((3, 4, 5), 0.25), "skipped": None}
    shown, lo, hi = display_maps(stages, "video")
    assert (lo, hi) == (0.0, 1.0) and set(shown) == {"object_video", "fused", "background_video"}
    for k in shown:
        np.testing.assert_allclose(shown[k], ref_minmax_video(np.asarray(stages[k], dtype=np.float32)), atol=1e-6)
    assert not shown["background_video"].any()  # a constant stage is 0, never NaN
    raw, lo, hi = display_maps(stages, "none")
    assert lo == pytest.approx(min(float(np.min(v)) for v in raw.values()))
    assert hi == pytest.approx(max(float(np.max(v)) for v in raw.values()))
    with pytest.raises(InputError, match="normalize"):
        display_maps(stages, "frame")
    with pytest.raises(InputError, match="fused"):
        display_maps({"fused": np.zeros((4, 5))})


def ref_outline(mask: np.ndarray, thickness: int) -> np.ndarray:
    """Mask pixels within city-block distance ``thickness`` of a non-mask pixel or the frame's edge."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for i in range(h):
        for j in range(w):
            if not mask[i, j]:
                continue
            for di in range(-thickness, thickness + 1):
                for dj in range(-thickness, thickness + 1):
                    if abs(di) + abs(dj) > thickness:
                        continue
                    y, x = i + di, j + dj
                    if not (0 <= y < h and 0 <= x < w) or not mask[y, x]:
                        out[i, j] = True
    return out


@pytest.mark.parametrize("thickness", [1, 2, 3])
def test_outline_matches_reference(thickness):
    from decafbench.show import outline

    rng = np.random.default_rng(thickness)
    mask = np.zeros((20, 30), dtype=bool)
    mask[3:15, 4:20] = True
    mask[0:5, 25:30] = True  # touches the border: closed there
    mask |= rng.random(mask.shape) > 0.93
    np.testing.assert_array_equal(outline(mask, thickness), ref_outline(mask, thickness))
    assert not outline(np.zeros((4, 4), bool)).any()


def test_overlays_match_reference():
    from decafbench.show import MASK_COLOURS, overlay_heat, overlay_outline

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    heat = rng.random((4, 5))
    fast = overlay_heat(frame, heat, vmin=0.1, vmax=0.8, alpha=0.4)
    assert np.abs(fast.astype(int) - ref_overlay(frame, heat, 0.1, 0.8, 0.4).astype(int)).max() <= 1
    mask = np.zeros((18, 26), dtype=bool)
    mask[4:14, 6:20] = True
    gt = np.zeros((18, 26), dtype=bool)
    gt[2:10, 2:12] = True
    out = overlay_outline(frame, mask, MASK_COLOURS["sam2"], reference=gt, thickness=1)
    line = ref_outline(ref_nearest(mask, (9, 13)), 1)
    gt_line = ref_outline(ref_nearest(gt, (9, 13)), 1) & ~line
    colour = np.round(255 * np.array(MASK_COLOURS["sam2"])).astype(np.uint8)
    np.testing.assert_array_equal(out[line], np.broadcast_to(colour, out[line].shape))  # the outline, on top
    np.testing.assert_array_equal(out[gt_line], np.broadcast_to([51, 255, 51], out[gt_line].shape))
    untouched = ~line & ~gt_line
    np.testing.assert_array_equal(out[untouched], frame[untouched])  # inside stays the frame: no fill
    assert untouched[ref_nearest(mask, (9, 13))].any()
    np.testing.assert_array_equal(overlay_outline(frame, None, (1, 0, 0)), np.round(frame * 0.35).astype(np.uint8))


def test_parse_rows():
    from decafbench.show import default_rows, parse_rows

    assert default_rows(16) == [0, 5, 10, 15] and default_rows(2) == [0, 1] and default_rows(0) == []
    assert parse_rows(None, 16) == [0, 5, 10, 15]
    assert parse_rows("0, 5,10,5", 16) == [0, 5, 10]
    assert parse_rows("-1", 16) == [15]
    for bad, msg in (("16", "outside"), ("a", "not an integer"), ("-17", "outside")):
        with pytest.raises(InputError, match=msg):
            parse_rows(bad, 16)


# -- figures --------------------------------------------------------------------------------------------
def _synthetic_stages(t: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:14, 0:24]
    blob = np.exp(-((yy - 7.0) ** 2 + (xx - 12.0) ** 2) / 20.0)
    stages = {k: np.stack([blob * rng.uniform(1e-3, 1e-2) + rng.random((14, 24)) * 1e-3 for _ in range(t)])
              for k in ("object_video", "background_video", "object_frame", "background_frame")}
    stages["contrastive_video"] = np.clip(stages["object_video"] - stages["background_video"], 0, 1)
    stages["contrastive_frame"] = rng.random((t, 14, 24))
    stages["fused"] = np.repeat(blob[None], t, axis=0)
    return stages


def _check_figure(frames, tmp_path, name):
    from PIL import Image

    from decafbench.show import (MASK_COLOURS, STAGE_ORDER, compose_panels, display_maps, overlay_heat,
                                 overlay_outline, save_figure, show_maps, thumbnail)

    rng = np.random.default_rng(4)
    t = len(frames)
    stages = _synthetic_stages(t, rng)
    h, w = np.asarray(frames[0]).shape[:2]
    gt = np.zeros((t, h, w), dtype=bool)
    gt[:, h // 3: 2 * h // 3, w // 3: 2 * w // 3] = True
    masks = {"coarse": gt, "sam2": [None] * t, "ground truth": list(gt)}
    rows = [0, t - 1]
    fig = show_maps(frames, stages, masks=masks, rows=rows, caption=["\"the bed\"", "J 50.0"], title=name)
    assert len([ax for ax in fig.axes if ax.get_label() == "colorbar"]) == 1  # one shared colour bar
    out = save_figure(fig, tmp_path / f"{name}.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 1000
    panels = compose_panels(frames, stages, masks=masks, rows=rows)
    assert panels.columns == ["frame", *STAGE_ORDER, "coarse", "sam2", "ground truth"]
    shown, lo, hi = display_maps(stages)
    for i, r in enumerate(rows):
        thumb = thumbnail(np.asarray(frames[r]), 240)
        np.testing.assert_array_equal(panels.panel(i, 0), thumb)
        for c, stage in enumerate(STAGE_ORDER, start=1):
            # overlay_heat is checked against the pixel-loop reference above; here: right stage,
            # right row, normalized over all frames, one shared scale
            np.testing.assert_array_equal(panels.panel(i, c), overlay_heat(thumb, shown[stage][r], vmin=lo, vmax=hi))
        np.testing.assert_array_equal(panels.panel(i, 1 + len(STAGE_ORDER)),
                                      overlay_outline(thumb, gt[r], MASK_COLOURS["coarse"], reference=gt[r]))
        assert (i, 1 + len(STAGE_ORDER) + 1) in panels.missing  # sam2 n/a


def test_columns_choice_and_missing_stages():
    from decafbench.show import STAGE_ORDER, compose_panels, parse_columns

    assert parse_columns(None) is None and parse_columns("all") is None
    assert parse_columns("frame,fused,gt") == ["frame", "fused", "ground truth"]
    assert parse_columns("masks") == ["frame", "fused", "coarse", "sam2", "prediction", "ground truth"]
    assert parse_columns("frame, obj-v, frame") == ["frame", "object_video"]
    with pytest.raises(InputError, match="unknown column 'nope'"):
        parse_columns("frame,nope")
    rng = np.random.default_rng(6)
    frames = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(2)]
    stages = {k: None for k in STAGE_ORDER}  # no attention maps: every stage is drawn n/a
    stages["fused"] = rng.random((2, 5, 6))
    gt = [np.ones((30, 40), bool)] * 2
    p = compose_panels(frames, stages, masks={"ground truth": gt, "sam2": None},
                       columns=["frame", "object_video", "fused", "sam2", "ground truth"])
    assert p.columns == ["frame", "object_video", "fused", "sam2", "ground truth"]
    assert sorted(p.missing) == [(0, 1), (0, 3), (1, 1), (1, 3)]  # the missing stage and the missing mask
    np.testing.assert_array_equal(p.panel(0, 1), np.round(frames[0] * 0.35).astype(np.uint8))


def test_show_maps_on_bedroom_frames(tmp_path):
    from PIL import Image

    paths = sorted(BEDROOM.glob("*.jpg"))[:4] if BEDROOM.is_dir() else []
    if not paths:
        message = f"bedroom frames not found in {BEDROOM} (the repository's ../shared/data/bedroom)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)  # CI promises the shared data: a missing folder is a broken setup
        pytest.skip(message)
    frames = [Image.open(p).convert("RGB") for p in paths]
    _check_figure(frames, tmp_path, "bedroom")


def test_show_maps_on_random_frames(tmp_path):
    rng = np.random.default_rng(5)
    _check_figure([rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(3)], tmp_path, "random")


# -- run records ---------------------------------------------------------------------------------------
def test_view_gathers_maps_masks_and_texts(records):
    from decafbench import fusion
    from decafbench.benchmarks.registry import get_benchmark
    from decafbench.cache import AttentionCache
    from decafbench.maskio import read_mask_png
    from decafbench.runstore import read_record
    from decafbench.show_record import load_expression_view

    rec = read_record(records["coarse"])
    row = rec.table.iloc[0]
    view = load_expression_view(records["coarse"], row["video"], row["exp_id"], frames="0,-1")
    keys = row["key_frames"].split()
    assert view.rows == [0, 15] and view.frame_names == [keys[0], keys[15]] and view.notes == []
    maps = AttentionCache(records["coarse"].parent / "cache").get(row["cache_key"])
    stages = fusion.stages("decaf", maps.obj_video, maps.bg_video, maps.obj_frame, maps.bg_frame, temporal_stride=2)
    for k, v in stages.items():
        np.testing.assert_allclose(view.stages[k], v.numpy()[[0, 15]], atol=1e-6)
    bench = get_benchmark("embedded")
    expr = next(e for e in bench.expressions() if (e.video, e.exp_id) == (row["video"], row["exp_id"]))
    gt = bench.ground_truth(expr)
    for i, name in enumerate(view.frame_names):
        pred = Path(records["coarse"]) / "predictions" / row["video"] / row["exp_id"] / f"{name}.png"
        np.testing.assert_array_equal(view.masks["coarse"][i], read_mask_png(pred))
        sam = Path(records["sam2"]) / "predictions" / row["video"] / row["exp_id"] / f"{name}.png"
        np.testing.assert_array_equal(view.masks["sam2"][i], read_mask_png(sam))  # from the sibling record
        np.testing.assert_array_equal(view.masks["ground truth"][i], gt.masks[list(gt.frames).index(name)])
    text = "\n".join(view.caption)
    assert expr.text in text and "object word: shape" in text and "grey floor" in text
    assert f"J&F {100 * row['JF']:.1f}" in text and "fused" in text and "diagnostics" in text


def test_view_tolerates_missing_pieces(records, tmp_path):
    from decafbench.runstore import read_record
    from decafbench.show_record import load_expression_view


    alone = build_records(tmp_path, limit=1, kinds=("sam2",))["sam2"]
    row = read_record(alone).table.iloc[0]
    view = load_expression_view(alone, row["video"], row["exp_id"])
    assert "coarse" in view.masks and any("recomputed" in n for n in view.notes)
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    view = load_expression_view(alone, row["video"], row["exp_id"], cache_dir=empty)
    assert view.stages == {} and any("not in" in n for n in view.notes)
    assert view.maps_missing
    fig = view.figure(thumb_width=80)  # still draws frames and masks, every stage as n/a
    assert sum(t.get_text() == "n/a" for ax in fig.axes for t in ax.texts) >= 7 * len(view.rows)
    with pytest.raises(InputError, match="no expression"):
        load_expression_view(alone, "nope", "0")
    with pytest.raises(InputError, match="does not exist"):
        load_expression_view(tmp_path / "missing", "synth000", "0")


def test_records_and_cache_move_together(tmp_path, capsys):
    """The manifest names the cache relative to the record folder: a results folder copied
    elsewhere keeps its maps; a record copied without its cache says so in one warning line,
    and --cache points it at the maps."""
    import shutil

    from decafbench.show_record import load_expression_view

    made = build_records(tmp_path / "a", limit=1, kinds=("coarse",))["coarse"]
    moved = tmp_path / "elsewhere" / "results"
    shutil.copytree(tmp_path / "a", moved)
    shutil.rmtree(tmp_path / "a" / "cache")  # the original cache is gone: only the copy can serve the maps
    view = load_expression_view(moved / made.name, "synth000", "0")
    assert not view.maps_missing and set(view.stages) >= {"fused", "object_video"}
    alone = tmp_path / "alone"
    shutil.copytree(moved / made.name, alone / made.name)
    code, out, err = cli(["show", str(alone / made.name), "--video", "synth000", "--exp", "0", "--width", "40",
                          "--out", str(tmp_path / "f.png")], capsys)
    assert code == 0 and [line for line in err.splitlines() if line.startswith("warning:")] == [
        "warning: attention maps missing for 1 of 1 expressions (every stage drawn n/a); pass --cache DIR"]
    code, out, err = cli(["show", str(alone / made.name), "--video", "synth000", "--exp", "0", "--width", "40",
                          "--cache", str(moved / "cache"), "--out", str(tmp_path / "g.png")], capsys)
    assert code == 0 and "warning" not in err


def test_show_command(records, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "fig.png"
    code, stdout, _ = cli(["show", str(records["sam2"]), "--video", "synth000", "--exp", "0", "--frames", "0,5",
                            "--out", str(out), "--width", "120"], capsys)
    assert code == 0 and "wrote" in stdout
    with Image.open(out) as im:
        assert im.format == "PNG"
    for bad, msg in ((["--video", "nope", "--exp", "0"], "no expression"),
                     (["--video", "synth000", "--exp", "0", "--frames", "99"], "outside"),
                     (["--video", "synth000", "--exp", "0", "--out", str(tmp_path / "x.nope")], "format")):
        code, _, err = cli(["show", str(records["sam2"]), *bad], capsys)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    code, stdout, _ = cli(["show", "--help"], capsys)
    assert code == 0 and "Example" in stdout
