"""Fast attention rollout (vector chain) against the float64 matrix-chain reference."""

from __future__ import annotations

import pytest
import torch

from decafbench.errors import InputError
from decafbench.reference.rollout import reference_head_weights, reference_rollout
from decafbench.rollout import (
    RolloutConfig,
    StreamingRollout,
    head_weights,
    rollout,
    rollout_from_config,
    visual_spans,
)


def causal_attention(layers: int, batch: int, heads: int, length: int, seed: int, dtype=torch.float32):
    """Random causal softmax attentions, heads of varied sharpness (so vmax weights differ)."""
    gen = torch.Generator().manual_seed(seed)
    causal = torch.ones(length, length, dtype=torch.bool).triu(1)
    out = []
    for _ in range(layers):
        scale = torch.rand(1, heads, 1, 1, generator=gen) * 4
        scores = torch.randn(batch, heads, length, length, generator=gen) * scale
        out.append(scores.masked_fill(causal, float("-inf")).softmax(dim=-1).to(dtype))
    return out


def span_mask(batch: int, length: int, seed: int) -> torch.Tensor:
    """Per element a different visual span, with holes inside it (span != mask)."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for b in range(batch):
        first = int(torch.randint(0, length // 2, (1,), generator=gen))
        last = int(torch.randint(first, length - 1, (1,), generator=gen))
        mask[b, first : last + 1] = torch.rand(last - first + 1, generator=gen) > 0.3
        mask[b, first] = mask[b, last] = True
    return mask


def assert_rel_close(fast: torch.Tensor, ref: torch.Tensor, rtol: float = 1e-5) -> None:
    assert fast.dtype == torch.float32
    ref = ref.to(torch.float64)
    err = (fast.to(torch.float64) - ref).abs()
    # elementwise relative, with a floor at rtol * the row's largest entry
    floor = ref.abs().amax(dim=-1, keepdim=True) * rtol
    assert bool((err <= rtol * ref.abs() + floor).all()), float((err / (ref.abs() + 1e-30)).max())


LONG_ATTENTION = tuple(causal_attention(8, 1, 8, 256, seed=5))  # read-only, shared

CASES = [  # (B, H, L, N, start, end)
    (1, 2, 5, 3, 0, 3),
    (2, 4, 17, 6, 3, 6),
    (3, 3, 33, 4, 1, 3),
    (1, 6, 64, 8, None, None),
    (2, 1, 9, 2, 1, 2),  # one layer: last-layer row
]


@pytest.mark.parametrize("head_weighting", ["vmax", "mean", "max"])
@pytest.mark.parametrize("residual", [0.5, 0.0, 0.2])
@pytest.mark.parametrize("case", CASES)
def test_fast_matches_reference(case, residual, head_weighting):
    batch, heads, length, n, start, end = case
    atts = causal_attention(n, batch, heads, length, seed=batch * 100 + length)
    mask = span_mask(batch, length, seed=length)
    layers = RolloutConfig(start, end).layers(n)
    fast = rollout(atts, mask, start, end, residual=residual, head_weighting=head_weighting)
    ref = reference_rollout(atts, mask, layers.start, layers.stop, residual, head_weighting)
    assert fast.shape == (batch, length)
    assert_rel_close(fast, ref)


@pytest.mark.parametrize("head_weighting", ["vmax", "mean", "max"])
def test_long_sequence_accuracy(head_weighting):
    """Long enough (8 heads x 256 rows per product) for naive float32 summation to drift."""
    atts = LONG_ATTENTION
    mask = span_mask(1, 256, seed=8)
    fast = rollout(atts, mask, 0, 8, head_weighting=head_weighting)
    assert_rel_close(fast, reference_rollout(atts, mask, 0, 8, 0.5, head_weighting))


@pytest.mark.parametrize("head_weighting", ["vmax", "mean", "max"])
def test_residual_zero_last_layer_is_last_attention_row(head_weighting):
    atts = causal_attention(4, 2, 3, 12, seed=7)
    mask = span_mask(2, 12, seed=3)
    out = rollout(atts, mask, 3, 4, residual=0.0, head_weighting=head_weighting)
    a = atts[3][:, :, -1, :]
    if head_weighting == "max":
        expect = a.amax(dim=1)
    else:
        w = head_weights(atts[3], mask) if head_weighting == "vmax" else torch.ones(2, 3)
        expect = (w[:, :, None] * a).mean(dim=1)
    torch.testing.assert_close(out, expect, rtol=1e-6, atol=1e-7)


def test_hand_computed_three_tokens():
    a0 = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]])
    a1 = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0.6, 0.2, 0.2]])
    mask = torch.tensor([[False, True, False]])
    one_head = [a0[None, None]]
    torch.testing.assert_close(rollout(one_head, mask, 0, 1, head_weighting="mean"), torch.tensor([[0.1, 0.15, 0.75]]))
    two_layers = [a0[None, None], a0[None, None]]
    torch.testing.assert_close(rollout(two_layers, mask, 0, 2, head_weighting="mean"), torch.tensor([[0.2125, 0.225, 0.5625]]))
    two_heads = [torch.stack([a0, a1])[None]]
    # vmax: per-row max over column 1 -> head 0 mean 0.8/3, head 1 mean 0.3/3 -> w = (1, 0.375)
    torch.testing.assert_close(head_weights(two_heads[0], mask), torch.tensor([[1.0, 0.375]]))
    torch.testing.assert_close(rollout(two_heads, mask, 0, 1), torch.tensor([[0.10625, 0.09375, 0.64375]]))
    torch.testing.assert_close(rollout(two_heads, mask, 0, 1, head_weighting="max"), torch.tensor([[0.3, 0.15, 0.75]]))


def test_head_weights_match_reference_per_element_span():
    att = causal_attention(1, 3, 5, 20, seed=11)[0]
    mask = span_mask(3, 20, seed=5)
    w = head_weights(att, mask)
    for b, (first, last) in enumerate(visual_spans(mask)):
        torch.testing.assert_close(w[b].double(), reference_head_weights(att[b], first, last))
    assert torch.allclose(w.amax(dim=1), torch.ones(3))


def test_mean_weighting_rows_sum_to_one():
    atts = causal_attention(5, 2, 4, 40, seed=3)
    mask = span_mask(2, 40, seed=1)
    for residual in (0.0, 0.5, 0.9):
        out = rollout(atts, mask, 0, 5, residual=residual, head_weighting="mean")
        torch.testing.assert_close(out.sum(dim=1), torch.ones(2))
    vmax = rollout(atts, mask, 0, 5, head_weighting="vmax").sum(dim=1)
    assert bool((vmax <= 1 + 1e-6).all()) and bool((vmax > 0).all())  # mean_h(w_h) <= 1


@pytest.mark.parametrize("head_weighting", ["vmax", "mean", "max"])
def test_streaming_equals_batch(head_weighting):
    n, batch, heads, length = 6, 2, 4, 30
    atts = causal_attention(n, batch, heads, length, seed=21)
    mask = span_mask(batch, length, seed=4)
    config = RolloutConfig(start=2, head_weighting=head_weighting, residual=0.4)
    stream = StreamingRollout.from_config(mask, n, config)
    for layer, att in enumerate(atts):
        stream.observe(layer, att)
    expect = rollout_from_config(atts, mask, config)
    torch.testing.assert_close(stream.result(), expect, rtol=1e-5, atol=1e-7)
    # only the rolled-out layers are kept; the last one as a single row
    assert stream.nbytes == 4 * batch * length * (length * (n - 2 - 1) + 1)


def test_streaming_half_precision_input_and_store():
    atts = causal_attention(4, 1, 3, 24, seed=9, dtype=torch.bfloat16)
    mask = span_mask(1, 24, seed=2)
    ref = reference_rollout(atts, mask, 1, 4)
    for store_dtype, rtol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        stream = StreamingRollout(mask, range(1, 4), store_dtype=store_dtype)
        for layer, att in enumerate(atts):
            stream.observe(layer, att)
        out = stream.result()
        assert out.dtype == torch.float32
        assert_rel_close(out, ref, rtol=rtol)
    assert_rel_close(rollout(atts, mask, 1, 4), ref)


def test_layers_outside_range_are_not_needed():
    atts = causal_attention(4, 1, 2, 10, seed=1)
    mask = span_mask(1, 10, seed=1)
    sparse = [None, None, atts[2], atts[3]]
    torch.testing.assert_close(rollout(sparse, mask, 2, 4), rollout(atts, mask, -2, None))


def test_empty_visual_span():
    atts = causal_attention(2, 2, 2, 8, seed=1)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, 3] = True
    with pytest.raises(InputError, match="empty visual span.*row 1"):
        rollout(atts, mask, 0, 2)
    with pytest.raises(InputError, match="empty visual span"):
        StreamingRollout(mask, range(0, 2))


@pytest.mark.parametrize("head_weighting", ["vmax", "mean", "max"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", [(1, 0, 0, 1, 0), (2, 0, 1, 9, 9), (3, 0, 0, 0, 5), (3, 0, 1, 4, 2)])
def test_non_finite_attention_names_layer(head_weighting, bad, where):
    atts = causal_attention(4, 1, 2, 10, seed=2)
    mask = span_mask(1, 10, seed=2)
    layer = where[0]
    atts[layer][where[1:]] = bad
    with pytest.raises(InputError, match=f"layer {layer} contains NaN or inf"):
        rollout(atts, mask, 0, 4, head_weighting=head_weighting)
    stream = StreamingRollout(mask, range(0, 4), head_weighting=head_weighting)
    with pytest.raises(InputError, match=f"layer {layer} contains NaN or inf"):
        for i, att in enumerate(atts):
            stream.observe(i, att)


def test_zero_head_weight_still_checks_every_head():
    atts = causal_attention(3, 1, 2, 8, seed=4)
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, 6] = True
    for att in atts:  # head 1 never attends to token 6 -> vmax weight 0
        att[:, 1, :, 6] = 0.0
    atts[0][0, 1, 7, 0] = float("nan")
    with pytest.raises(InputError, match="layer 0 contains NaN"):
        rollout(atts, mask, 0, 3)


def test_bad_arguments():
    atts = causal_attention(3, 2, 2, 6, seed=1)
    mask = span_mask(2, 6, seed=1)
    with pytest.raises(InputError, match="head_weighting"):
        rollout(atts, mask, 0, 3, head_weighting="median")
    with pytest.raises(InputError, match="residual"):
        rollout(atts, mask, 0, 3, residual=1.5)
    with pytest.raises(InputError, match="rollout layers"):
        rollout(atts, mask, 2, 2)
    with pytest.raises(InputError, match="layer 2 has shape"):
        rollout(atts, mask[:1], 0, 3)
    with pytest.raises(InputError, match="visual_mask must be boolean"):
        rollout(atts, mask.float(), 0, 3)
    with pytest.raises(InputError, match="layer 2 must be a"):
        rollout([atts[0], atts[1], atts[2][0]], mask, 0, 3)
    stream = StreamingRollout(mask, range(1, 3))
    stream.observe(0, torch.full((1,), float("nan")))  # outside the range: ignored
    stream.observe(1, atts[1])
    with pytest.raises(InputError, match="layer 1 observed twice"):
        stream.observe(1, atts[1])
    with pytest.raises(InputError, match="never observed: 2"):
        stream.result()


def test_non_contiguous_attention():
    atts = causal_attention(3, 2, 3, 140, seed=6)
    mask = span_mask(2, 140, seed=6)
    strided = [a.transpose(-1, -2).contiguous().transpose(-1, -2) for a in atts]
    assert not strided[0].is_contiguous()
    torch.testing.assert_close(rollout(strided, mask, 0, 3), rollout(atts, mask, 0, 3))


@pytest.mark.parametrize("head_weighting", ["vmax", "mean", "max"])
def test_token_columns_match_gathered_reference(head_weighting):
    """``head_columns="tokens"``: vmax weights over exactly the visual columns (the official
    gather), against the float64 reference that indexes those columns one by one."""
    atts = causal_attention(4, 3, 4, 40, seed=11)
    mask = span_mask(3, 40, seed=7)  # holes inside each span: tokens != span
    ref = reference_rollout(atts, mask, 1, 4, head_weighting=head_weighting, head_columns="tokens")
    assert_rel_close(rollout(atts, mask, 1, 4, head_weighting=head_weighting, head_columns="tokens"), ref)
    stream = StreamingRollout(mask, range(1, 4), head_weighting=head_weighting, head_columns="tokens")
    for layer, att in enumerate(atts):
        stream.observe(layer, att)
    assert_rel_close(stream.result(), ref)
    if head_weighting == "vmax":  # the choice matters when separators sit between visual runs
        span_ref = reference_rollout(atts, mask, 1, 4, head_columns="span")
        assert not torch.allclose(ref, span_ref)
    for b in range(3):
        cols = torch.nonzero(mask[b]).flatten()
        expect = reference_head_weights(atts[2][b], int(cols[0]), int(cols[-1]), cols)
        got = head_weights(atts[2], mask, head_columns="tokens")[b]
        torch.testing.assert_close(got.double(), expect, rtol=1e-6, atol=1e-9)


def test_visual_runs():
    from decafbench.rollout import visual_runs

    mask = torch.tensor([[0, 1, 1, 0, 0, 1, 0, 1, 1, 1], [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    assert visual_runs(mask, "tokens") == [[(1, 2), (5, 5), (7, 9)], [(0, 0), (9, 9)]]
    assert visual_runs(mask, "span") == [[(1, 9)], [(0, 9)]]
    with pytest.raises(InputError, match="head_columns"):
        visual_runs(mask, "gather")
