"""LLaVA-OneVision adapter on the offline tiny checkpoint (real classes, random weights).

Token layout is checked against slow references written from the definitions (per-frame
2x2 bilinear pooling; anyres tiles placed row-major on a canvas and centre-unpadded), the
streaming rollout against the batch rollout of full eager attention on the same input.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from decafbench.adapters.llava_onevision import LlavaOneVisionAdapter, anyres_grid, stitched_grid  # noqa: E402
from decafbench.errors import InputError  # noqa: E402
from decafbench.rollout import RolloutConfig, rollout  # noqa: E402

PROMPT = "The dog on the left. Which main object does this expression refer to? Answer in one word."


def _frames(n: int = 3, h: int = 40, w: int = 72, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def adapter() -> LlavaOneVisionAdapter:
    return LlavaOneVisionAdapter.from_checkpoint("tiny", frame_batch_size=2)


@pytest.fixture(scope="module")
def frames() -> list[Image.Image]:
    return _frames()


def _sibling(a: LlavaOneVisionAdapter, **kw) -> LlavaOneVisionAdapter:
    """Another adapter on the same model and processor with other options."""
    opts = dict(checkpoint="tiny", frame_batch_size=a.frame_batch_size, reuse=a.reuse, video_newline=a.video_newline)
    opts.update(kw)
    return LlavaOneVisionAdapter(a.model, a.processor, **opts)


def _tower(a, px):
    """Vision tower + projector, the way the config selects features (last hidden layer, all tokens)."""
    hs = a.model.model.vision_tower(px, output_hidden_states=True).hidden_states[a.model.config.vision_feature_layer]
    return a.model.model.multi_modal_projector(hs)


def test_tiny_loads_offline(adapter):
    spec = adapter.spec()
    assert spec.family == "llava-onevision" and spec.checkpoint == "tiny"
    assert adapter.layers == range(2, 4)  # N // 2 .. N of the 4-layer tiny decoder
    assert spec.config["video_newline"] is False and spec.config["frame_aspect_ratio"] == "anyres_max_9"


def test_video_layout_one_trailing_newline(adapter, frames):
    """transformers appends one newline per video: <video> expands to T*h*w + 1 tokens."""
    text = adapter.chat_text(PROMPT, "video")
    stock = adapter.processor(text=[text], videos=[frames], return_tensors="pt")
    n_stock = int((stock["input_ids"] == adapter.processor.video_token_id).sum())
    assert n_stock == len(frames) * 4 * 4 + 1
    session = adapter.open(frames, "video")
    feats, grid = session.state["encoded"]
    assert grid == (len(frames), 4, 4) and feats[0].shape[0] == n_stock - 1  # newline dropped by default
    kept = _sibling(adapter, video_newline=True)
    s2 = kept.open(frames, "video")
    feats2, _ = s2.state["encoded"]
    assert feats2[0].shape[0] == n_stock
    inputs = kept.prompt_inputs([kept.expand(text, "video", n_stock)], feats2, "video")
    assert int(inputs["visual_mask"].sum()) == n_stock - 1  # newline is no grid cell
    last = (inputs["input_ids"][0] == adapter.processor.video_token_id).nonzero().flatten()[-1]
    assert not bool(inputs["visual_mask"][0, last])
    with torch.no_grad():
        newline = adapter.model.model.image_newline
    assert torch.allclose(feats2[0][-1], newline.to(feats2[0].dtype))


def test_video_features_match_pooling_reference(adapter, frames):
    """Token t*h*w + i*w + j is frame t's 2x2-pooled cell (i, j)."""
    session = adapter.open(frames, "video")
    feats, (t, h, w) = session.state["encoded"]
    px = session.state["pixels"]["pixel_values_videos"][0]
    with torch.no_grad():
        full = _tower(adapter, px)  # (T, 64, D)
        side = int(full.shape[1] ** 0.5)
        grid = full.reshape(t, side, side, -1).permute(0, 3, 1, 2)
        pooled = torch.nn.functional.interpolate(grid, size=(h, w), mode="bilinear").permute(0, 2, 3, 1)
    assert torch.allclose(feats[0].reshape(t, h, w, -1), pooled, atol=1e-5)


def test_frame_features_match_tile_reference(adapter, frames):
    """Frame view = anyres tiles only, stitched row-major and centre-unpadded, no newline, no base tile."""
    session = adapter.open(frames, "frame")
    feats, grid = session.state["encoded"]
    assert grid == (len(frames), 14, 24)
    px = session.state["pixels"]["pixel_values"]
    assert px.shape[1] == 1 + 2 * 3  # base tile + 2x3 tiles for the 40x72 frames (best pinpoint 64x96)
    rows, cols, side = 2, 3, 8
    for i in (0, len(frames) - 1):
        with torch.no_grad():
            tiles = _tower(adapter, px[i, 1 : 1 + rows * cols])  # (6, 64, D)
        canvas = tiles.reshape(rows, cols, side, side, -1).permute(0, 2, 1, 3, 4).reshape(rows * side, cols * side, -1)
        new_h = int(round(40 * (cols * side) / 72))
        pad = (rows * side - new_h) // 2
        expected = canvas[pad : rows * side - pad]
        assert torch.allclose(feats[i].reshape(14, 24, -1), expected, atol=1e-5)


def test_anyres_grid_and_stitch_helpers(adapter):
    assert anyres_grid(adapter.processor, 40, 72) == (14, 24)
    packed = torch.arange(64 + 3 * 5, dtype=torch.float32).unsqueeze(1)  # base 64, then 3 rows of 4 + newline
    out = stitched_grid(packed, 64, 3, 4).flatten().tolist()
    assert out == [64 + r * 5 + c for r in range(3) for c in range(4)]
    with pytest.raises(ValueError):
        stitched_grid(packed, 64, 3, 5)


@pytest.mark.slow
def test_view_shapes_and_frame_batching(adapter, frames):
    video = adapter.attend(adapter.open(frames, "video"), PROMPT, max_new_tokens=3)
    assert len(video.texts) == 1 and video.temporal_stride == 1
    assert tuple(video.attention.shape) == (len(frames), 4, 4) and video.attention.dtype == torch.float32
    frame_session = adapter.open(frames, "frame")
    frame = adapter.attend(frame_session, PROMPT, max_new_tokens=3)
    assert len(frame.texts) == len(frames)  # one text per key frame
    assert tuple(frame.attention.shape) == (len(frames), 14, 24)
    whole = _sibling(adapter, frame_batch_size=len(frames))  # one batch instead of chunks 2+1
    again = whole.attend(whole.open(frames, "frame"), PROMPT, max_new_tokens=3)
    assert torch.allclose(frame.attention, again.attention, atol=1e-5)
    assert frame.texts == again.texts
    # each frame's map depends on its own frame only
    single = whole.attend(whole.open(frames[2:3], "frame"), PROMPT, max_new_tokens=3)
    assert torch.allclose(single.attention[0], frame.attention[2], atol=1e-5)


def test_smaller_anyres_budget_shrinks_grid(adapter, frames):
    small = _sibling(adapter, frame_aspect_ratio="anyres_max_1")
    res = small.attend(small.open(frames[:2], "frame"), PROMPT, max_new_tokens=2)
    assert tuple(res.attention.shape) == (2, 6, 10)  # 14x24 shrunk by sqrt(336/64)


@pytest.mark.slow
@pytest.mark.parametrize("view", ["video", "frame"])
def test_streaming_rollout_equals_batch_rollout(adapter, frames, view):
    session = adapter.open(frames[:3], view)
    feats, (t, h, w) = session.state["encoded"]
    text = adapter.chat_text(PROMPT, adapter.placeholder(view)[0])
    rows = [adapter.expand(text, view, int(f.shape[0])) for f in feats]
    with torch.no_grad():
        inputs = adapter.prompt_inputs(rows, feats, view)
        vmask = inputs.pop("visual_mask")
        adapter.model.set_attn_implementation("eager")
        try:
            out = adapter.model(inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"], output_attentions=True)
        finally:
            adapter.model.set_attn_implementation("sdpa")
    vec = rollout(out.attentions, vmask, adapter.layers.start, adapter.layers.stop)
    per = t // len(feats)
    expected = torch.cat([vec[b][vmask[b]].reshape(per, h, w) for b in range(len(feats))])
    got = adapter.attend(session, PROMPT, max_new_tokens=2).attention
    assert torch.allclose(got, expected, atol=1e-6)
    # planted index check: map cell (t, i, j) is visual token number t*h*w + i*w + j of its sequence
    first = int(vmask[0].nonzero()[0])
    plant = torch.arange(vmask.shape[1], dtype=torch.float32).expand(len(feats), -1)
    cells = adapter._to_grid(plant[0], vmask[0], (per, h, w), view, 0)
    assert cells[per - 1, h - 1, 1].item() == first + (per - 1) * h * w + (h - 1) * w + 1


@pytest.mark.slow
def test_reuse_counts_and_identical_maps(adapter, frames):
    """Encoder reuse alone (prefix reuse off: it is tested below) changes nothing but the work."""
    naive = _sibling(adapter, reuse=False)
    adapter = _sibling(adapter, prefix_reuse=False)
    for view in ("video", "frame"):
        s_reuse, s_naive = adapter.open(frames[:2], view), naive.open(frames[:2], view)
        assert s_reuse.counters["vision_passes"] == 1 and s_naive.counters["vision_passes"] == 0
        a1, a2 = adapter.attend(s_reuse, PROMPT, max_new_tokens=1), adapter.attend(s_reuse, "Describe the background.", max_new_tokens=1)
        b1, b2 = naive.attend(s_naive, PROMPT, max_new_tokens=1), naive.attend(s_naive, "Describe the background.", max_new_tokens=1)
        assert s_reuse.counters["vision_passes"] == 1  # encoder once per view
        assert s_naive.counters["vision_passes"] == 2  # once per prompt
        assert s_reuse.counters["prompts"] == s_naive.counters["prompts"] == 2
        assert s_reuse.counters["prefill_tokens"] == s_naive.counters["prefill_tokens"] > 0
        assert torch.equal(a1.attention, b1.attention) and torch.equal(a2.attention, b2.attention)
        assert a1.texts == b1.texts


def test_answer_is_text_only_and_deterministic(adapter):
    first = adapter.answer("Expression: the dog. Candidate objects: dog, cat. Answer in one word.", max_new_tokens=3)
    assert isinstance(first, str)
    assert first == adapter.answer("Expression: the dog. Candidate objects: dog, cat. Answer in one word.", max_new_tokens=3)


def test_empty_visual_span_is_input_error(adapter):
    text = adapter.chat_text(PROMPT, None)  # no placeholder at all
    with pytest.raises(InputError, match="empty visual span"):
        adapter.prompt_inputs([text], [torch.zeros(0, adapter.model.config.text_config.hidden_size)], "video")


def test_bad_inputs(adapter, frames):
    with pytest.raises(InputError, match="no key frames"):
        adapter.open([], "video")
    with pytest.raises(InputError, match="differ in size"):
        adapter.open([frames[0], frames[0].resize((50, 40))], "frame")
    with pytest.raises(InputError, match="not a PIL image"):
        adapter.open([np.zeros((4, 4, 3), np.uint8)], "video")
    with pytest.raises(InputError, match="view"):
        adapter.open(frames, "clip")
    with pytest.raises(InputError, match="max_new_tokens"):
        adapter.attend(adapter.open(frames[:1], "video"), PROMPT, max_new_tokens=0)
    with pytest.raises(InputError, match="anyres_max_N"):
        _sibling(adapter, frame_aspect_ratio="square")
    with pytest.raises(InputError, match="dtype"):
        LlavaOneVisionAdapter.from_checkpoint("tiny", dtype="float8")
    with pytest.raises(InputError, match="rollout layers"):
        LlavaOneVisionAdapter(adapter.model, adapter.processor, checkpoint="tiny", rollout=RolloutConfig(start=3, end=9))
    with pytest.raises(InputError, match="does not exist"):
        LlavaOneVisionAdapter.from_checkpoint("./no/such/checkpoint")
