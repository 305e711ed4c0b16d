"""Synthetic benchmark: determinism, masks equal to the drawn shapes, the embedded copy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decafbench.benchmarks.registry import get_benchmark
from decafbench.benchmarks.synth import (COLOURS, SHAPES, SynthConfig, generate_video, read_synth_params, shape_mask,
                                         write_synth)
from decafbench.errors import InputError

SMALL = SynthConfig(videos=3, frames=6, height=40, width=48, seed=7, expressions_per_video=3)


def ref_inside(shape: str, cx: float, cy: float, s: float, px: float, py: float) -> bool:
    """Point-in-shape for one pixel centre, from the shape's geometry (slow, obvious)."""
    if shape == "circle":
        return math.hypot(px - cx, py - cy) <= s + 1e-9
    if shape == "square":
        return cx - s <= px <= cx + s and cy - s <= py <= cy + s
    # apex (cx, cy - s), base corners (cx -/+ s*sqrt(3)/2, cy + s/2): inside all three edges
    a, b, c = (cx, cy - s), (cx - s * math.sqrt(3) / 2, cy + s / 2), (cx + s * math.sqrt(3) / 2, cy + s / 2)

    def side(p, q):
        return (q[0] - p[0]) * (py - p[1]) - (q[1] - p[1]) * (px - p[0])

    d = [side(a, b), side(b, c), side(c, a)]
    return all(x <= 1e-9 for x in d) or all(x >= -1e-9 for x in d)


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_mask_matches_geometry(shape):
    rng = np.random.default_rng(SHAPES.index(shape))
    for _ in range(3):
        cx, cy, s = rng.uniform(5, 20), rng.uniform(5, 15), rng.uniform(2, 7)
        m = shape_mask(shape, cx, cy, s, 20, 25)
        ref = np.array([[ref_inside(shape, cx, cy, s, j + 0.5, i + 0.5) for j in range(25)] for i in range(20)])
        assert np.array_equal(m, ref)
        assert m.any()


def test_generation_is_deterministic_and_per_video():
    a, b = generate_video(SMALL, 1), generate_video(SMALL, 1)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
    assert a.expressions == b.expressions and a.objects == b.objects
    more = SynthConfig(**{**SMALL.to_dict(), "videos": 9})
    assert np.array_equal(generate_video(more, 1).masks, a.masks)  # video i ignores the count
    other = SynthConfig(**{**SMALL.to_dict(), "seed": 8})
    assert not np.array_equal(generate_video(other, 1).frames, a.frames)


def test_masks_are_the_visible_drawn_shapes():
    for i in range(SMALL.videos):
        v = generate_video(SMALL, i)
        n = len(v.objects)
        assert 2 <= n <= 4 and len({o.colour for o in v.objects}) == n
        for t in range(SMALL.frames):
            covered = np.zeros((SMALL.height, SMALL.width), bool)
            for k in range(n - 1, -1, -1):  # later objects are drawn on top
                o = v.objects[k]
                cx, cy = o.x0 + o.vx * t, o.y0 + o.vy * t
                full = shape_mask(o.shape, cx, cy, o.size, SMALL.height, SMALL.width)
                assert np.array_equal(v.masks[k, t], full & ~covered)
                covered |= full
                # the drawn pixels carry the object's colour (up to the frame noise)
                px = v.frames[t][v.masks[k, t]].astype(float)
                if len(px):
                    assert np.abs(px - COLOURS[o.colour]).mean() < 6
            assert not np.logical_and(v.masks[0, t], v.masks[1, t]).any()  # visible parts are disjoint


def test_expressions_name_their_targets():
    seen_multi = False
    for seed in range(6):
        cfg = SynthConfig(videos=2, frames=4, height=40, width=48, seed=seed, expressions_per_video=3)
        for i in range(cfg.videos):
            v = generate_video(cfg, i)
            assert len(v.expressions) == 3 and len({t for t, _ in v.expressions}) == 3
            for text, idx in v.expressions:
                words = text.split()
                if words[1] == "two":
                    seen_multi = True
                    shape = words[2].rstrip("s")
                    assert len(idx) == 2 and sum(o.shape == shape for o in v.objects) == 2
                    assert all(v.objects[k].shape == shape for k in idx)
                    continue
                (k,) = idx
                o = v.objects[k]
                assert o.shape in words
                if words[1] in COLOURS:
                    assert words[1] == o.colour
                else:  # "the circle moving left": the shape is unique in the video
                    assert sum(p.shape == o.shape for p in v.objects) == 1
                if "moving" in words:
                    assert words[-1] == o.direction
                    assert {"left": o.vx < 0, "right": o.vx > 0, "up": o.vy < 0, "down": o.vy > 0}[o.direction]
    assert seen_multi


def test_written_benchmark_reads_back(tmp_path):
    from decafbench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["benchmarks", "synth", "--videos", "3", "--frames", "6", "--size", "40x48", "--seed", "7",
              "--expressions-per-video", "3", "--out", str(tmp_path / "s")])
    assert exc.value.code in (0, None)
    assert read_synth_params(tmp_path / "s") == SMALL
    b = get_benchmark("mevis", root=tmp_path / "s", split="valid_u")
    assert len(b.videos()) == 3 and len(b.expressions()) == 9
    md = json.loads((tmp_path / "s" / "valid_u" / "mask_dict.json").read_text())
    for e in b.expressions():
        v = generate_video(SMALL, int(e.video[5:]))
        (text, idx), = [x for k, x in enumerate(v.expressions) if str(k) == e.exp_id]
        assert e.text == text
        gt = b.ground_truth(e)
        assert np.array_equal(gt.masks, v.masks[idx].any(axis=0))
        for a, k in zip(e.anno_ids, idx):  # a hidden object is a null RLE
            assert [r is None for r in md[a]] == [not m.any() for m in v.masks[k]]
        jpg = np.asarray(Image.open(b.video(e.video).frame_paths[0]), dtype=float)
        for k in idx:  # JPEG frames agree with the masks away from the edges
            inner = v.masks[k, 0] & np.roll(v.masks[k, 0], 2, 0) & np.roll(v.masks[k, 0], -2, 1)
            if inner.sum() > 4:
                assert np.abs(jpg[inner] - COLOURS[v.objects[k].colour]).mean() < 30
    with pytest.raises(InputError, match="not empty"):
        write_synth(SMALL, tmp_path / "s")
    with pytest.raises(SystemExit) as exc:
        main(["benchmarks", "synth", "--size", "40by48", "--out", str(tmp_path / "t")])
    assert exc.value.code == 2


def test_embedded_regenerates_identically(tmp_path):
    cls_root = get_benchmark("embedded").root
    root = Path(cls_root)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 1_000_000
    cfg = read_synth_params(root)
    write_synth(cfg, tmp_path / "again")
    for name in ("meta_expressions.json", "mask_dict.json"):
        assert json.loads((root / "valid_u" / name).read_text()) == json.loads((tmp_path / "again" / "valid_u" / name).read_text())
    emb = get_benchmark("embedded")
    assert any(len(e.anno_ids) > 1 for e in emb.expressions())  # at least one multi-object expression
    assert len(emb.videos()) == cfg.videos and all(len(v.frames) == cfg.frames for v in emb.videos())


def test_synth_defaults_to_a_git_ignored_data_folder(tmp_path, monkeypatch):
    """Without --out the benchmark goes to data/synth, which .gitignore keeps out of commits."""
    import subprocess

    from decafbench.cli import main

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["benchmarks", "synth", "--videos", "1", "--frames", "3", "--size", "32x40"])
    assert exc.value.code in (0, None)
    assert (tmp_path / "data" / "synth" / "valid_u" / "meta_expressions.json").is_file()
    res = subprocess.run(["git", "check-ignore", "-q", "data/synth/valid_u/x.jpg"], cwd=repo)
    assert res.returncode == 0  # ignored in the repository
