"""The README's "Extending" contracts, tried for real: a new fusion variant and a new benchmark
reader, each defined here (no plugin, no edit of decafbench), registered, and run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from decafbench import fusion
from decafbench.errors import InputError, RegistryError
from decafbench.reference import fusion as ref

runner = CliRunner()


# -- a new fusion variant: a pure function plus its registration ------------------------------------
def frame_max(obj_video, bg_video, obj_frame, bg_frame, *, temporal_stride, sigma=1.0, gain=2.0):
    """Frame view only: smoothed object map, times ``gain``, clipped to [0, 1] (not min-maxed)."""
    return (fusion.smooth(obj_frame, 3, sigma) * gain).clamp(0.0, 1.0)


def left_half(obj_video, bg_video, obj_frame, bg_frame, *, temporal_stride, width=0.5):
    """Ignores the attention: 1 on the left ``width`` of every frame, 0 elsewhere."""
    out = torch.zeros_like(obj_frame)
    out[:, :, : int(round(obj_frame.shape[2] * width))] = 1.0
    return out


@pytest.fixture
def registered():
    """Register the test's variants for one test, then forget them."""
    names = []

    def add(name, fn, **kw):
        fusion.register_variant(name, fn, **kw)
        names.append(name)
        return fusion.get(name)

    yield add
    for name in names:
        fusion.VARIANTS.remove(name)


def _maps(seed=0, t=6, tv=3):
    rng = np.random.default_rng(seed)
    shapes = [(tv, 4, 5), (tv, 4, 5), (t, 8, 10), (t, 8, 10)]
    return [torch.tensor(rng.random(s), dtype=torch.float32) for s in shapes]


def test_a_registered_function_is_what_the_variant_computes(registered):
    variant = registered("frame-max", frame_max, description="frame view, gain and clip",
                         params=("sigma", "gain"))
    m = _maps()
    # independent: the numpy reference smoothing, times the gain, clipped
    expect = np.clip(ref.smooth(m[2].double().numpy(), 3, 0.5) * 3.0, 0.0, 1.0)
    got = fusion.get("frame-max")(*m, temporal_stride=2, sigma="0.5", gain="3")
    np.testing.assert_allclose(got.numpy(), expect, atol=1e-5)
    assert variant.defaults() == {"sigma": 1.0, "gain": 2.0}
    # the pipeline's path (stages) runs the same function, not the method's fusion
    st = fusion.stages("frame-max", *m, temporal_stride=2, sigma=0.5, gain=3.0)
    assert torch.equal(st["fused"], got)
    assert st["contrastive_video"] is None and st["contrastive_frame"] is None
    assert torch.equal(st["object_frame"], m[2])
    assert not torch.allclose(st["fused"], fusion.get("decaf")(*m))
    # named, validated, listed like the built-ins
    assert "frame-max" in fusion.names() and fusion.describe("frame-max") == "frame view, gain and clip"
    assert list(fusion.expand_grid({"variant": ["frame-max", "decaf"], "gain": [1, 2]})) == [
        ("frame-max", {"gain": 1.0}), ("frame-max", {"gain": 2.0}), ("decaf", {})]
    with pytest.raises(InputError, match="no parameter 'gian'; did you mean 'gain'"):
        fusion.parse_params("frame-max", ["gian=2"])
    with pytest.raises(InputError, match="gain"):
        fusion.parse_params("frame-max", ["gain=lots"])


def test_fixed_parameters_pin_the_function(registered):
    registered("frame-max-x4", frame_max, description="gain 4", fixed={"gain": 4}, params=("sigma",))
    m = _maps(1)
    expect = np.clip(ref.smooth(m[2].double().numpy(), 3, 1.0) * 4.0, 0.0, 1.0)
    np.testing.assert_allclose(fusion.get("frame-max-x4")(*m).numpy(), expect, atol=1e-5)
    with pytest.raises(InputError, match="no parameter 'gain'"):
        fusion.get("frame-max-x4")(*m, gain=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"fixed": {"gian": 4}}, r"fixed parameter 'gian' is not a keyword of frame_max\(\); did you mean 'gain'"),
    ({"params": ("sigma", "gan")}, r"parameter 'gan' is not a keyword of frame_max\(\); did you mean 'gain'"),
    ({"params": ("sigma",), "fixed": {"gain": "x"}}, r"gain='x': expected float"),
    ({"params": ("gain",), "fixed": {"gain": 3.0}}, r"'gain' is both a parameter and fixed"),
    ({"description": ""}, r"one-line description"),
])
def test_registration_errors_name_the_variant_and_the_typo(kwargs, message):
    kw = {"description": "x", **kwargs}
    with pytest.raises(RegistryError, match=message) as info:
        fusion.register_variant("typo-variant", frame_max, **kw)
    assert "'typo-variant'" in str(info.value) and "\n" not in str(info.value)
    assert "typo-variant" not in fusion.names()


def test_registration_checks_the_signature():
    def no_stride(a, b, c, d, sigma=1.0):
        return c

    def takes_kwargs(a, b, c, d, *, temporal_stride, **kw):
        return c

    def no_default(a, b, c, d, *, temporal_stride, strength):
        return c

    def three_maps(a, b, c, *, temporal_stride):
        return c

    for fn, message in ((no_stride, "temporal_stride"), (takes_kwargs, r"\*\*kwargs"),
                        (no_default, "'strength' needs a default"), (three_maps, "four maps")):
        with pytest.raises(RegistryError, match=message):
            fusion.register_variant("bad-signature", fn, description="x")
    with pytest.raises(RegistryError, match="already registered"):
        fusion.register_variant("decaf", frame_max, description="x")


def test_a_variant_returning_a_bad_map_is_a_clear_error(registered):
    registered("too-bright", lambda a, b, c, d, *, temporal_stride: c * 0 + 2.0, description="out of range")
    registered("wrong-shape", lambda a, b, c, d, *, temporal_stride: c[:, :2], description="bad shape")
    m = _maps(2)
    with pytest.raises(ValueError, match=r"'too-bright' returned a fused map outside \[0, 1\]"):
        fusion.get("too-bright")(*m)
    with pytest.raises(ValueError, match=r"'wrong-shape' returned fused of shape \(6, 2, 10\)"):
        fusion.get("wrong-shape")(*m)


def test_decorator_form_registers_and_returns_the_function():
    try:
        @fusion.register_variant("decorated-left", description="left half, decorator form")
        def decorated(obj_video, bg_video, obj_frame, bg_frame, *, temporal_stride, width=0.5):
            return left_half(obj_video, bg_video, obj_frame, bg_frame, temporal_stride=temporal_stride, width=width)

        assert callable(decorated) and not isinstance(decorated, fusion.Variant)
        out = fusion.get("decorated-left")(*_maps(3), width=0.3)
        assert out[:, :, :3].eq(1).all() and out[:, :, 3:].eq(0).all()
    finally:
        fusion.VARIANTS.remove("decorated-left")


@pytest.mark.slow
def test_decaf_run_computes_a_new_variant_end_to_end(registered, tmp_path):
    """`decaf run --variant left-half` on the embedded benchmark writes the registered function's
    masks: the left half of every key frame, which no attention-based variant would give."""
    from decafbench.cli import build_app
    from decafbench.maskio import read_mask_png
    from decafbench.runstore import read_record

    registered("left-half", left_half, description="left half of the frame (test variant)")
    out = tmp_path / "out"
    res = runner.invoke(build_app(), ["run", "--variant", "left-half:width=0.5", "--masks", "coarse", "--limit", "1",
                                      "--frames", "4", "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1
    rec = read_record(folders[0])
    assert rec.manifest["variant"] == "left-half" and rec.manifest["variant_params"] == {"width": 0.5}
    assert len(rec.table) == 1 and (rec.table["error"] == "").all()
    pngs = sorted((folders[0] / "predictions").rglob("*.png"))
    assert len(pngs) == 4
    for png in pngs:
        mask = read_mask_png(png)
        w = mask.shape[1]
        assert mask[:, : w // 2 - 1].all() and not mask[:, w // 2 + 1:].any(), png


# -- a new benchmark reader: a Benchmark subclass in a layout of its own ------------------------------
from decafbench.benchmarks.base import Benchmark, Expression, GroundTruth, VideoInfo  # noqa: E402


class FolderVOS(Benchmark):
    """ROOT/SPLIT/expressions.json ``{video: {exp_id: text}}``, ROOT/SPLIT/frames/VIDEO/*.jpg,
    ROOT/SPLIT/masks/VIDEO/EXP_ID/FRAME.png (train only)."""

    name = "folder-vos"
    description = "test reader: one folder per video, one mask folder per expression"
    splits = ("train", "test")
    ground_truth_splits = ("train",)

    def _meta(self) -> dict:
        return json.loads((self.root / self.split / "expressions.json").read_text())

    def videos(self) -> list[VideoInfo]:
        out = []
        for video in sorted(self._meta()):
            folder = self.root / self.split / "frames" / video
            out.append(VideoInfo(video, tuple(sorted(p.stem for p in folder.glob("*.jpg"))), folder))
        return out

    def expressions(self) -> list[Expression]:
        meta = self._meta()
        return [Expression(v, e, meta[v][e]) for v in sorted(meta) for e in sorted(meta[v])]

    def ground_truth(self, expression: Expression) -> GroundTruth:
        from decafbench.maskio import read_mask_png

        if not self.has_ground_truth:
            raise InputError(f"split {self.split!r} of {self.name!r} has no ground truth")
        folder = self.root / self.split / "masks" / expression.video / expression.exp_id
        pngs = sorted(folder.glob("*.png"))
        return GroundTruth(tuple(p.stem for p in pngs), np.stack([read_mask_png(p) for p in pngs]))


class ServerOnlyVOS(FolderVOS):
    name = "server-only-vos"
    description = "test reader: ground truth on an evaluation server only"
    splits = ("test",)
    ground_truth_splits = ()


def _rect(shape, rows, cols):
    m = np.zeros(shape, dtype=bool)
    m[rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


SIZE = (48, 64)


def _write_folder_vos(root: Path, frames: int = 3, size=SIZE) -> None:
    from PIL import Image

    from decafbench.maskio import write_mask_png

    for split in FolderVOS.splits:
        meta = {"v1": {"0": "the box"}}
        (root / split).mkdir(parents=True)
        (root / split / "expressions.json").write_text(json.dumps(meta))
        for t in range(frames):
            folder = root / split / "frames" / "v1"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((*size, 3), 40 * t, dtype=np.uint8)).save(folder / f"{t:05d}.jpg")
            if split == "train":
                write_mask_png(root / split / "masks" / "v1" / "0" / f"{t:05d}.png", _rect(size, (2, 7), (2, 9)))


@pytest.fixture
def folder_vos(tmp_path):
    from decafbench.benchmarks.registry import BENCHMARKS

    root = tmp_path / "folder-vos"
    _write_folder_vos(root)
    BENCHMARKS.add("folder-vos", FolderVOS, FolderVOS.description)
    BENCHMARKS.add("server-only-vos", ServerOnlyVOS, ServerOnlyVOS.description)
    yield root
    BENCHMARKS.remove("folder-vos")
    BENCHMARKS.remove("server-only-vos")


def _list_rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0]:
            rows[cells[0]] = cells
    return rows


def test_benchmarks_list_reports_ground_truth_of_any_reader(folder_vos):
    from decafbench.cli import build_app

    res = runner.invoke(build_app(), ["benchmarks", "list"], terminal_width=250)
    assert res.exit_code == 0, res.output
    rows = _list_rows(res.output)
    assert rows["folder-vos"][2:] == ["train, test", "J F JF", "train"]
    assert rows["server-only-vos"][-1] == "none (server)"
    assert rows["mevis"][-1] == "valid_u" and rows["ref-youtube-vos"][-1] == "none (server)"


def test_evaluate_scores_a_new_reader_end_to_end(folder_vos, tmp_path):
    """Predictions shifted 3 columns right of the 5x7 box: |A & B| = 5*4, |A | B| = 50, J = 0.4."""
    import pandas as pd

    from decafbench.cli import build_app
    from decafbench.maskio import write_mask_png

    pred = tmp_path / "pred"
    for t in range(3):
        write_mask_png(pred / "v1" / "0" / f"{t:05d}.png", _rect(SIZE, (2, 7), (5, 12)))
    out = tmp_path / "run"
    res = runner.invoke(build_app(), ["evaluate", "-b", "folder-vos", "--root", str(folder_vos), "--pred", str(pred),
                                      "--out", str(out), "-j", "1"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    table = pd.read_csv(out / "per_expression.csv", dtype={"exp_id": str})
    assert list(table["video"]) == ["v1"] and table["J"].iloc[0] == pytest.approx(0.4, abs=1e-12)
    assert json.loads((out / "manifest.json").read_text())["benchmark"] == "folder-vos"
    # the split without ground truth is refused with one line, not scored as empty
    res = runner.invoke(build_app(), ["evaluate", "-b", "folder-vos", "--root", str(folder_vos), "--split", "test",
                                      "--pred", str(pred), "--out", str(tmp_path / "run2"), "-j", "1"])
    assert res.exit_code == 2 and "ground truth" in res.output


def test_reader_capabilities_are_checked_when_the_class_is_defined():
    with pytest.raises(TypeError, match="'valid', which is not one of its splits"):
        class Typo(FolderVOS):  # noqa: F841
            ground_truth_splits = ("valid",)
    with pytest.raises(TypeError, match="declare ground_truth_splits instead"):
        class Override(FolderVOS):  # noqa: F841
            @property
            def has_ground_truth(self) -> bool:
                return True


@pytest.mark.slow
def test_decaf_run_on_a_split_without_ground_truth(folder_vos, tmp_path):
    """The new reader's server-only split runs end to end: predictions for every frame, a record
    with no metric columns and no summary, no leaderboard (nothing to rank), exit 0."""
    from decafbench.cli import build_app
    from decafbench.maskio import read_mask_png
    from decafbench.runstore import read_record

    out = tmp_path / "out"
    res = runner.invoke(build_app(), ["run", "-b", "folder-vos", "--root", str(folder_vos), "--split", "test",
                                      "--masks", "coarse", "--frames", "2", "--out", str(out),
                                      "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1
    rec = read_record(folders[0])
    assert rec.manifest["benchmark"] == "folder-vos" and rec.manifest["split"] == "test"
    assert list(rec.table["video"]) == ["v1"] and (rec.table["error"].fillna("") == "").all()
    assert not rec.manifest.get("summary")
    assert "J" not in rec.table or rec.table["J"].isna().all()
    pngs = sorted((folders[0] / "predictions" / "v1" / "0").glob("*.png"))
    assert [p.stem for p in pngs] == ["00000", "00002"]  # the two key frames of three
    assert all(read_mask_png(p).shape == SIZE for p in pngs)
    assert not (out / "leaderboard.md").exists()

