"""Qwen2-VL / Qwen2.5-VL adapter on tiny random-weight models (no network, CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from decafbench.errors import InputError  # noqa: E402
from decafbench.rollout import RolloutConfig, rollout  # noqa: E402

PROMPT = "the cat on the left. Which main object does this expression refer to? Answer in one word."
BACKGROUND = "Describe the background scene of the video, excluding any cat, in a single word or phrase."
T = 5  # odd on purpose: the video view pads to ceil(T/2) temporal patches


def _frames(n=T, size=(120, 200), seed=0):
    from PIL import Image

    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 255, (size[0], size[1], 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def adapter():
    from decafbench.adapters.registry import create_adapter

    return create_adapter("qwen2-vl:tiny", video_tokens_per_frame=16)


def test_tiny_loads_offline_and_spec(adapter):
    assert adapter.model.config.model_type == "qwen2_vl"
    assert adapter.num_layers == 4 and adapter.layers == range(2, 4)
    spec = adapter.spec()
    assert spec.family == "qwen2-vl" and spec.checkpoint == "tiny"
    assert spec.config["video_tokens_per_frame"] == 16 and spec.config["rollout"]["head_weighting"] == "vmax"


@pytest.mark.slow
def test_views_shapes_texts_and_reuse_counts(adapter):
    frames = _frames()
    hv, wv = adapter.view_size(120, 200, "video")
    h, w = hv // adapter.factor, wv // adapter.factor
    assert h * w <= 16 and adapter.view_size(120, 200, "frame") == (2 * hv, 2 * wv)

    video = adapter.open(frames, "video")
    assert video.counters["vision_passes"] == 1
    r1 = adapter.attend(video, PROMPT, max_new_tokens=3)
    r2 = adapter.attend(video, BACKGROUND, max_new_tokens=3)
    assert video.counters["vision_passes"] == 1 and video.counters["prompts"] == 2
    assert r1.attention.shape == (math.ceil(T / 2), h, w) and r1.temporal_stride == 2
    assert r1.attention.dtype == torch.float32 and len(r1.texts) == 1
    assert video.counters["prefill_tokens"] == r1.stats["prefill_tokens"] + r2.stats["prefill_tokens"]

    frame = adapter.open(frames, "frame")
    f1 = adapter.attend(frame, PROMPT, max_new_tokens=2)
    f2 = adapter.attend(frame, BACKGROUND, max_new_tokens=2)
    assert frame.counters["vision_passes"] == 1
    assert f1.attention.shape == (T, 2 * h, 2 * w) and f1.temporal_stride == 1
    assert len(f1.texts) == T and all(isinstance(t, str) for t in f1.texts)
    assert frame.counters["prefill_tokens"] == T * (f1.stats["prefill_tokens"] + f2.stats["prefill_tokens"])

    # the naive pattern: one encoder pass per prompt, same maps and answers
    adapter.reuse = False
    try:
        naive = adapter.open(frames, "video")
        n1 = adapter.attend(naive, PROMPT, max_new_tokens=3)
        adapter.attend(naive, BACKGROUND, max_new_tokens=3)
        naive_f = adapter.open(frames, "frame")
        nf1 = adapter.attend(naive_f, PROMPT, max_new_tokens=2)
    finally:
        adapter.reuse = True
    assert naive.counters["vision_passes"] == 2 and naive_f.counters["vision_passes"] == 1
    assert torch.allclose(n1.attention, r1.attention, atol=1e-6) and n1.texts == r1.texts
    assert torch.allclose(nf1.attention, f1.attention, atol=1e-6) and nf1.texts == f1.texts


def test_visual_span_is_the_pad_tokens(adapter):
    session = adapter.open(_frames(), "video")
    inputs = adapter._prompt_inputs(session, PROMPT)
    ids = inputs["input_ids"][0].tolist()
    tok = adapter.processor.tokenizer
    start = ids.index(tok.convert_tokens_to_ids("<|vision_start|>"))
    end = ids.index(tok.convert_tokens_to_ids("<|vision_end|>"))
    thw = inputs["video_grid_thw"][0].tolist()
    n = thw[0] * thw[1] * thw[2] // adapter.merge**2
    assert end - start - 1 == n
    assert all(i == adapter.video_token_id for i in ids[start + 1 : end])
    assert ids.count(adapter.video_token_id) == n


@pytest.mark.parametrize("view", ["video", "frame"])
def test_grid_mapping_matches_model_rope_layout(adapter, view, monkeypatch):
    """Plant a distinct value on every visual token; each must land on the (t, i, j) cell that
    the model's own 3D rope positions give that token."""
    import decafbench.rollout as R

    planted = {}

    class Planting(R.StreamingRollout):
        def result(self):
            v = torch.zeros(self.batch, self.length)
            v[:] = torch.arange(self.length, dtype=torch.float32)  # value = sequence position
            planted["v"] = v
            return v

    monkeypatch.setattr(R, "StreamingRollout", Planting)
    session = adapter.open(_frames(), view)
    res = adapter.attend(session, PROMPT, max_new_tokens=1)
    inputs = adapter._prompt_inputs(session, PROMPT)
    pos, _ = adapter.model.model.get_rope_index(
        inputs["input_ids"],
        image_grid_thw=inputs.get("image_grid_thw"),
        video_grid_thw=inputs.get("video_grid_thw"),
        attention_mask=inputs["attention_mask"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
    )
    pad = adapter.video_token_id if view == "video" else adapter.image_token_id
    att = res.attention
    per_seq = 1 if view == "video" else att.shape[0]
    checked = 0
    for b in range(per_seq):
        idx = (inputs["input_ids"][b] == pad).nonzero().flatten()
        tpos, hpos, wpos = (pos[k, b, idx] - pos[k, b, idx].min() for k in range(3))
        for n, k in enumerate(idx.tolist()):
            t = int(tpos[n]) + (b if view == "frame" else 0)
            cell = att[t, int(hpos[n]), int(wpos[n])]
            assert cell == planted["v"][b, k], (b, k)
            checked += 1
    assert checked == att.numel()


@pytest.mark.slow
def test_streaming_equals_batch_rollout_from_eager(adapter):
    for view in ("video", "frame"):
        session = adapter.open(_frames(3), view)
        res = adapter.attend(session, PROMPT, max_new_tokens=1)
        inputs = adapter._prompt_inputs(session, PROMPT)
        model = adapter.model
        model.set_attn_implementation("eager")
        try:
            with torch.no_grad():
                atts = model(**inputs, output_attentions=True).attentions
        finally:
            model.set_attn_implementation("sdpa")
        pad = adapter.video_token_id if view == "video" else adapter.image_token_id
        mask = inputs["input_ids"] == pad
        vec = rollout(atts, mask, adapter.layers.start, adapter.layers.stop)
        ref = adapter._to_grid(vec, mask, inputs, view)
        assert torch.allclose(res.attention, ref, rtol=1e-4, atol=1e-7), view


def test_rollout_layers_and_head_weighting_options():
    from decafbench.adapters.registry import create_adapter

    ad = create_adapter("qwen2-vl:tiny", rollout=RolloutConfig(start=1, head_weighting="mean"), video_tokens_per_frame=4)
    assert ad.layers == range(1, 4)
    r = ad.attend(ad.open(_frames(2), "video"), PROMPT, max_new_tokens=1)
    assert r.attention.shape[0] == 1 and torch.isfinite(r.attention).all()
    with pytest.raises(InputError, match="rollout layers"):
        create_adapter("qwen2-vl:tiny", rollout=RolloutConfig(start=5))


def test_qwen25_tiny_views():
    from decafbench.adapters.registry import create_adapter

    ad = create_adapter("qwen2-vl:tiny-2.5", video_tokens_per_frame=16)
    assert ad.model.config.model_type == "qwen2_5_vl"
    frames = _frames(4)
    v = ad.attend(ad.open(frames, "video"), PROMPT, max_new_tokens=2)
    f = ad.attend(ad.open(frames, "frame"), PROMPT, max_new_tokens=2)
    h, w = v.attention.shape[1:]
    assert v.attention.shape == (2, h, w) and f.attention.shape == (4, 2 * h, 2 * w)
    assert len(f.texts) == 4 and isinstance(ad.answer("Pick one: cat, dog."), str)


def test_bad_inputs(adapter, monkeypatch):
    import decafbench.rollout as R

    with pytest.raises(InputError, match="no key frames"):
        adapter.open([], "video")
    with pytest.raises(InputError, match="differ in size"):
        adapter.open(_frames(1) + _frames(1, size=(60, 80)), "video")
    with pytest.raises(InputError, match="view"):
        adapter.open(_frames(2), "both")
    with pytest.raises(InputError, match="dtype"):
        type(adapter).from_checkpoint("tiny", dtype="float8")
    with pytest.raises(InputError, match="does not exist"):
        type(adapter).from_checkpoint("/nonexistent/qwen-folder")
    session = adapter.open(_frames(2), "video")
    monkeypatch.setattr(adapter, "video_token_id", adapter.image_token_id)
    with pytest.raises(InputError, match="empty visual span"):
        adapter.attend(session, PROMPT, max_new_tokens=1)
    monkeypatch.undo()

    class NaNRollout(R.StreamingRollout):
        def result(self):
            return torch.full((self.batch, self.length), float("nan"))

    monkeypatch.setattr(R, "StreamingRollout", NaNRollout)
    with pytest.raises(InputError, match="NaN"):
        adapter.attend(session, PROMPT, max_new_tokens=1)


def test_answer_text_only(adapter):
    a = adapter.answer("Expression: the cat. Candidates: cat, dog. Answer in one word.", max_new_tokens=3)
    assert isinstance(a, str)
    assert a == adapter.answer("Expression: the cat. Candidates: cat, dog. Answer in one word.", max_new_tokens=3)


# -- shared-prefix prefill reuse ---------------------------------------------------------------
PROMPTS3 = (PROMPT, BACKGROUND, "the small dog?")


def _run_prompts(adapter, frames, view, prefix_reuse, reuse=True, prompts=PROMPTS3, max_new_tokens=3):
    adapter.prefix_reuse, adapter.reuse = prefix_reuse, reuse
    try:
        session = adapter.open(frames, view)
        results = [adapter.attend(session, p, max_new_tokens=max_new_tokens) for p in prompts]
    finally:
        adapter.prefix_reuse, adapter.reuse = True, True
    return session, results


def _close(a, b, rel):
    """Equal up to ``rel`` of the map's scale (rollout maps span decades; tiny entries carry
    absolute, not relative, float32 rounding)."""
    return bool(((a - b).abs() <= rel * b.abs().max()).all())


@pytest.mark.slow
@pytest.mark.parametrize("view", ["video", "frame"])
def test_prefix_reuse_same_maps_texts_fewer_tokens(adapter, view):
    frames = _frames()
    shared, res = _run_prompts(adapter, frames, view, prefix_reuse=True)
    full, ref = _run_prompts(adapter, frames, view, prefix_reuse=False)
    naive, nref = _run_prompts(adapter, frames, view, prefix_reuse=True, reuse=False)  # reuse=False: no prefix reuse either
    for r, f, n in zip(res, ref, nref):
        assert r.texts == f.texts == n.texts
        assert r.attention.shape == f.attention.shape and _close(r.attention, f.attention, 1e-5)
        assert torch.allclose(r.attention, f.attention, rtol=1e-4, atol=1e-7)
        assert n.stats["prefix_tokens"] == f.stats["prefix_tokens"] == 0
    batch = 1 if view == "video" else T
    plen = res[0].stats["prefix_tokens"]
    assert 0 < plen < min(r.stats["prompt_tokens"] for r in res) and all(r.stats["prefix_tokens"] == plen for r in res)
    assert res[0].stats["prefill_tokens"] == res[0].stats["prompt_tokens"]  # the first prompt prefilled the prefix
    assert [r.stats["prefill_tokens"] for r in res[1:]] == [r.stats["prompt_tokens"] - plen for r in res[1:]]
    assert full.counters["prefill_tokens"] == naive.counters["prefill_tokens"] == batch * sum(r.stats["prompt_tokens"] for r in ref)
    assert full.counters["prefill_tokens"] - shared.counters["prefill_tokens"] == (len(PROMPTS3) - 1) * batch * plen
    assert shared.counters["prefill_tokens"] == batch * sum(r.stats["prefill_tokens"] for r in res)
    assert shared.counters["vision_passes"] == full.counters["vision_passes"] == 1
    assert naive.counters["vision_passes"] == len(PROMPTS3)  # one encoder pass per prompt
    assert shared.counters["prompts"] == full.counters["prompts"] == len(PROMPTS3)



def test_prefix_reuse_default_by_dtype():
    """Issue 9 item 8: on by default only where exact enough (float32/64); opt-in in half
    precision (the pipeline then keys its maps apart: tests/test_pipeline_contracts.py)."""
    from decafbench.adapters.common import prefix_reuse_default, resolve_dtype
    from decafbench.adapters.qwen2_vl import Qwen2VLAdapter

    assert prefix_reuse_default("float32") and prefix_reuse_default("float64")
    assert not prefix_reuse_default("bfloat16") and not prefix_reuse_default("float16")
    assert resolve_dtype("auto", "cpu") == "float32" and resolve_dtype("auto", "cuda:0") == "bfloat16"
    from decafbench.adapters.qwen2_vl_tiny import build_tiny

    model, proc = build_tiny()
    on = Qwen2VLAdapter(model, proc, checkpoint="tiny", dtype="float32")
    off = Qwen2VLAdapter(model, proc, checkpoint="tiny", dtype="bfloat16")
    opt_in = Qwen2VLAdapter(model, proc, checkpoint="tiny", dtype="bfloat16", prefix_reuse=True)
    assert on.prefix_reuse and not off.prefix_reuse and opt_in.prefix_reuse
    assert "prefix_reuse" not in on.spec().config  # work done; outputs kept (float32)


@pytest.mark.slow
def test_prefix_reuse_exact_in_float64_qwen25():
    """In float64 the only difference (matmul shapes) rounds away: maps agree to ~1e-12."""
    from decafbench.adapters.registry import create_adapter

    ad = create_adapter("qwen2-vl:tiny-2.5", video_tokens_per_frame=16, prefix_reuse=True)
    ad.model.to(torch.float64)
    frames = _frames(4)
    for view in ("video", "frame"):
        _, res = _run_prompts(ad, frames, view, prefix_reuse=True, prompts=PROMPTS3[:2])
        _, ref = _run_prompts(ad, frames, view, prefix_reuse=False, prompts=PROMPTS3[:2])
        for r, f in zip(res, ref):
            assert r.texts == f.texts and torch.allclose(r.attention, f.attention, rtol=1e-10, atol=0), view


@pytest.mark.parametrize("view", ["video", "frame"])
def test_prefix_suffix_first_token_logits_equal_full_pass(adapter, view):
    """Suffix on a copy of the prefix cache, at the model's own full-sequence 3D positions,
    gives the full pass's next-token logits (so decoding continues identically)."""
    import copy

    session = adapter.open(_frames(3), view)
    for prompt in PROMPTS3[:2]:
        inputs = adapter._prompt_inputs(session, prompt)
        positions = adapter._positions(inputs)
        prefix = adapter._prefix(session, inputs, positions)
        plen = prefix["length"]
        ids = inputs["input_ids"]
        assert torch.equal(ids[:, :plen], prefix["ids"]) and bool((ids[:, plen - 1] == adapter.vision_end_token_id).all())
        assert not bool(inputs["mm_token_type_ids"][:, plen:].any())  # the suffix is text only
        with torch.no_grad():
            kw = {k: v for k, v in inputs.items() if k not in ("pixel_values", "pixel_values_videos")}
            full = adapter.model(**kw, mm_encoder_outputs=dict(session.state["encoded"])).logits[:, -1]
            cache = copy.deepcopy(prefix["cache"])
            part = adapter.model(input_ids=ids[:, plen:], attention_mask=inputs["attention_mask"], position_ids=positions[..., plen:],
                                 cache=cache, use_cache=True).logits[:, -1]
        assert cache.get_seq_length() == ids.shape[1] and prefix["cache"].get_seq_length() == plen  # the kept cache is untouched
        assert torch.allclose(part, full, rtol=1e-5, atol=1e-5 * float(full.abs().max()))
        assert torch.equal(part.argmax(-1), full.argmax(-1))
    assert session.state["prefix"] is prefix  # one prefill per session
    before = session.counters["prefill_tokens"]
    prefix["ids"] = prefix["ids"] + 1  # a prompt whose prefix differs from the kept one is prefilled again
    again = adapter._prefix(session, inputs, positions)
    assert again is not prefix and session.state["prefix"] is again
    assert session.counters["prefill_tokens"] - before == ids.shape[0] * plen
