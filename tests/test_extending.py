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
