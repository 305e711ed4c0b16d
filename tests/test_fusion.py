"""Fusion variants: fast torch code == slow numpy reference, plus the registry's contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from decafbench import fusion
from decafbench.errors import InputError
from decafbench.reference import fusion as ref

# structure of each variant, written out independently of the registry table
STRUCTURE = {
    "decaf": {},
    "no-smoothing": {"kernel_video": 1, "kernel_frame": 1},
    "video-frame-no-contrast": {"background": False},
    "contrastive-video": {"use_frame": False},
    "contrastive-frame": {"use_video": False},
    "object-only": {"background": False, "kernel_video": 1, "kernel_frame": 1},
    "object-only-video": {"use_frame": False, "background": False, "kernel_video": 1, "kernel_frame": 1},
    "object-only-frame": {"use_video": False, "background": False, "kernel_video": 1, "kernel_frame": 1},
}


def maps(seed: int, t: int = 16, tv: int = 8, video_hw=(5, 6), frame_hw=(9, 11), scale: float = 1.0):
    """Random rollout-like maps (non-negative, object and background overlapping)."""
    rng = np.random.default_rng(seed)
    ov = rng.random((tv, *video_hw)) * scale
    bv = rng.random((tv, *video_hw)) * scale * 0.6
    of = rng.random((t, *frame_hw)) * scale
    bf = rng.random((t, *frame_hw)) * scale * 0.6
    return [torch.tensor(a, dtype=torch.float32) for a in (ov, bv, of, bf)]


def reference(name: str, m, stride: int = 2, **params):
    return ref.fuse(*[x.double().numpy() for x in m], stride, **{**STRUCTURE[name], **params})


def test_names_cover_the_required_variants():
    assert set(STRUCTURE) <= set(fusion.names())
    assert fusion.names("object-only*") == ["object-only", "object-only-frame", "object-only-video"]
    for name in fusion.names():
        assert fusion.describe(name) and "\n" not in fusion.describe(name)


@pytest.mark.parametrize("name", sorted(STRUCTURE))
@pytest.mark.parametrize("t, tv", [(16, 8), (15, 8)])
def test_every_variant_matches_reference(name, t, tv):
    m = maps(seed=sorted(STRUCTURE).index(name) * 100 + t, t=t, tv=tv)
    out = fusion.get(name)(*m, temporal_stride=2)
    assert out.shape == (t, 9, 11) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    np.testing.assert_allclose(out.numpy(), reference(name, m), atol=1e-6, rtol=0)


@pytest.mark.parametrize("params", [
    {"sigma": 2.0, "kernel_video": 5, "kernel_frame": 3},
    {"clamp": False, "norm_video": "frame", "norm_frame": "video", "norm_final": "frame"},
    {"weight_video": 0.25, "norm_final": "none"},
    {"weight_video": 1.0, "kernel_frame": 1},
    {"norm_video": "none", "norm_frame": "none", "sigma": 0.5},
])
def test_overrides_match_reference(params):
    m = maps(seed=7)
    out = fusion.get("decaf")(*m, temporal_stride=2, **params)
    np.testing.assert_allclose(out.numpy(), reference("decaf", m, **params), atol=1e-6, rtol=0)


def test_tiny_raw_attention_values_match_reference():
    # real rollout entries are ~1e-3; min-max must still agree to float precision
    m = maps(seed=3, scale=1e-3)
    for name in ("decaf", "object-only"):
        out = fusion.get(name)(*m)
        np.testing.assert_allclose(out.numpy(), reference(name, m), atol=1e-5, rtol=0)


def test_other_strides_and_same_grid():
    m = maps(seed=11, t=9, tv=3, video_hw=(9, 11))
    out = fusion.get("decaf")(*m, temporal_stride=3)
    np.testing.assert_allclose(out.numpy(), reference("decaf", m, stride=3), atol=1e-6, rtol=0)
    m1 = maps(seed=12, t=4, tv=4)
    np.testing.assert_allclose(fusion.get("decaf")(*m1, temporal_stride=1).numpy(),
                               reference("decaf", m1, stride=1), atol=1e-6, rtol=0)


def test_pieces_match_reference():
    x = torch.rand(3, 8, 10)
    for k, s in ((3, 1.0), (7, 1.0), (5, 0.7), (1, 1.0)):
        np.testing.assert_allclose(fusion.smooth(x, k, s).numpy(), ref.smooth(x.numpy(), k, s), atol=1e-6)
    assert abs(float(fusion.gaussian_kernel(7, 1.0).sum()) - 1.0) < 1e-6
    for mode in ("video", "frame", "none"):
        np.testing.assert_allclose(fusion.minmax(x, mode).numpy(), ref.minmax(x.numpy(), mode), atol=1e-6)
    v = torch.rand(8, 4, 5)
    got = fusion.align_video(v, 15, (7, 9), 2)
    np.testing.assert_allclose(got.numpy(), ref.align_video(v.numpy(), 15, (7, 9), 2), atol=1e-6)
    # frame t shows video step t // 2; the 16th copy of step 7 is dropped for 15 frames
    same = fusion.align_video(v, 15, (4, 5), 2)
    assert same.shape == (15, 4, 5)
    for t in range(15):
        assert torch.equal(same[t], v[t // 2])


@pytest.mark.parametrize("name", sorted(STRUCTURE))
def test_constant_and_zero_maps_give_zeros_not_nan(name):
    zeros = [torch.zeros(8, 5, 6), torch.zeros(8, 5, 6), torch.zeros(16, 9, 11), torch.zeros(16, 9, 11)]
    const = [torch.full_like(z, 0.3) for z in zeros]
    for m in (zeros, const):
        out = fusion.get(name)(*m)
        assert not torch.isnan(out).any()
        if name.startswith("object-only"):
            assert float(out.abs().max()) == 0.0  # constant object map: nothing to localise
    same = maps(seed=1)
    same[1], same[3] = same[0].clone(), same[2].clone()  # object == background: C = 0
    out = fusion.get("decaf")(*same)
    assert float(out.abs().max()) == 0.0


def test_one_constant_frame_among_others():
    m = maps(seed=5)
    m[2][4] = 0.5
    m[3][4] = 0.5
    out = fusion.get("contrastive-frame")(*m)
    np.testing.assert_allclose(out.numpy(), reference("contrastive-frame", m), atol=1e-6)


def test_alignment_must_cover_frames():
    for tv in (7, 9, 16):
        m = maps(seed=2, t=16, tv=tv)
        with pytest.raises(InputError, match="temporal_stride"):
            fusion.get("decaf")(*m, temporal_stride=2)
    m = maps(seed=2)
    with pytest.raises(InputError, match="temporal_stride"):
        fusion.get("decaf")(*m, temporal_stride=0)


def test_bad_inputs_are_input_errors():
    m = maps(seed=4)
    with pytest.raises(InputError, match="bg_video"):
        fusion.get("decaf")(m[0], m[1][:, :4], m[2], m[3])
    with pytest.raises(InputError, match="obj_frame"):
        fusion.get("decaf")(m[0], m[1], m[2][0], m[3])
    bad = m[2].clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        fusion.get("decaf")(m[0], m[1], bad, m[3])


def test_numpy_and_float64_inputs():
    m = maps(seed=6)
    out = fusion.get("decaf")(*[x.double().numpy() for x in m])
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), fusion.get("decaf")(*m).numpy(), atol=1e-6)


def test_unknown_names():
    with pytest.raises(InputError, match="did you mean 'decaf'"):
        fusion.get("decaff")
    with pytest.raises(InputError) as err:
        fusion.get("decaf")(*maps(seed=0), sigm=2.0)
    assert "sigma" in str(err.value) and "kernel_frame" in str(err.value)
    with pytest.raises(InputError, match="no parameter 'sigma'"):
        fusion.get("no-smoothing")(*maps(seed=0), sigma=2.0)


def test_defaults_and_parse_params():
    assert fusion.defaults("decaf") == {
        "kernel_video": 3, "kernel_frame": 7, "sigma": 1.0, "clamp": True, "norm_video": "video",
        "norm_frame": "frame", "norm_final": "video", "weight_video": 0.5}
    assert "sigma" not in fusion.defaults("object-only")
    got = fusion.parse_params("decaf", ["sigma=2", "clamp=false", "kernel_video=5", "norm_final=Frame",
                                        "weight_video=0.3"])
    assert got == {"sigma": 2.0, "clamp": False, "kernel_video": 5, "norm_final": "frame", "weight_video": 0.3}
    assert isinstance(got["sigma"], float) and isinstance(got["kernel_video"], int)
    # strings are coerced at call time too, so configs can pass them straight through
    m = maps(seed=9)
    np.testing.assert_array_equal(fusion.get("decaf")(*m, sigma="2", clamp="no").numpy(),
                                  fusion.get("decaf")(*m, sigma=2.0, clamp=False).numpy())
    for bad in (["sigma"], ["sigma=abc"], ["kernel_video=4"], ["kernel_video=2.5"], ["clamp=maybe"],
                ["norm_video=global"], ["weight_video=1.5"], ["sigma=0"], ["bogus=1"]):
        with pytest.raises(InputError):
            fusion.parse_params("decaf", bad)


def test_expand_grid():
    spec = {"variant": ["decaf", "no-smoothing"], "sigma": [0.5, 1.0], "clamp": ["true", "false"]}
    combos = list(fusion.expand_grid(spec))
    assert combos == [
        ("decaf", {"sigma": 0.5, "clamp": True}), ("decaf", {"sigma": 0.5, "clamp": False}),
        ("decaf", {"sigma": 1.0, "clamp": True}), ("decaf", {"sigma": 1.0, "clamp": False}),
        ("no-smoothing", {"clamp": True}), ("no-smoothing", {"clamp": False}),
    ]
    assert list(fusion.expand_grid({"sigma": 2})) == [("decaf", {"sigma": 2.0})]
    assert list(fusion.expand_grid({"variant": "object-only"})) == [("object-only", {})]
    with pytest.raises(InputError, match="did you mean 'sigma'"):
        list(fusion.expand_grid({"sigmaa": [1.0]}))
    with pytest.raises(InputError, match="not a parameter of any"):
        list(fusion.expand_grid({"variant": ["no-smoothing"], "sigma": [1.0]}))
    with pytest.raises(InputError):
        list(fusion.expand_grid({"variant": ["nope"]}))


def test_stages():
    m = maps(seed=8, t=15)
    st = fusion.stages(*m, temporal_stride=2)
    assert list(st) == list(fusion.STAGE_NAMES)
    for name, value in st.items():
        assert value.shape == (15, 9, 11), name
        assert not torch.isnan(value).any()
    assert torch.equal(st["fused"], fusion.get("decaf")(*m))
    assert torch.equal(st["object_frame"], m[2])
    np.testing.assert_allclose(st["object_video"].numpy(), ref.align_video(m[0].numpy(), 15, (9, 11), 2), atol=1e-6)
    # the fused map is the normalized mean of the two contrastive stages
    mean = (st["contrastive_video"] + st["contrastive_frame"]) / 2
    np.testing.assert_allclose(st["fused"].numpy(), ref.minmax(mean.numpy(), "video"), atol=1e-6)
    # single-view variants still report both views' contrastive stages
    st1 = fusion.stages(*m, variant="contrastive-frame")
    assert st1["contrastive_video"] is not None
    np.testing.assert_allclose(st1["fused"].numpy(), ref.minmax(st1["contrastive_frame"].numpy(), "video"), atol=1e-6)
    assert math.isclose(float(st1["fused"].max()), 1.0)


def test_cli_variants_list_and_show():
    import typer
    from typer.testing import CliRunner

    from decafbench.commands import method

    app = typer.Typer()
    method.register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["variants", "list"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for name in STRUCTURE:
        assert name in res.output
    res = runner.invoke(app, ["variants", "list", "object-*"], terminal_width=200)
    assert "object-only-frame" in res.output and "no-smoothing" not in res.output
    res = runner.invoke(app, ["variants", "show", "decaf"], terminal_width=200)
    assert res.exit_code == 0 and "kernel_frame" in res.output and "weight_video" in res.output
    res = runner.invoke(app, ["variants", "show", "decaff"])
    assert isinstance(res.exception, InputError) and "did you mean" in str(res.exception)


def test_stages_call_forms_and_validate():
    m = maps(seed=10)
    a = fusion.stages(*m, temporal_stride=2, variant="no-smoothing", clamp=False)
    b = fusion.stages("no-smoothing", *m, temporal_stride=2, clamp=False)
    c = fusion.stages("no-smoothing", *m, 2, clamp=False)
    for key in fusion.STAGE_NAMES:
        assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key])
    with pytest.raises(InputError, match="four maps"):
        fusion.stages(*m[:3])
    assert fusion.validate("decaf", {"sigma": "2", "clamp": "off"}) == {"sigma": 2.0, "clamp": False}
    with pytest.raises(InputError, match="no parameter"):
        fusion.validate("object-only", {"sigma": 1.0})
