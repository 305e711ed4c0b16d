"""InternVL adapter on the offline tiny checkpoint (real InternVL classes, random weights).

The prompt layout is compared token for token with the stock processor, the pixel-shuffle
token order and the tile stitching with slow references written from the definitions, and
the streaming rollout with the batch rollout of full eager attention on the same input.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from decafbench.adapters.internvl import InternVLAdapter, stitch_tiles, tile_grid  # noqa: E402
from decafbench.errors import InputError  # noqa: E402
from decafbench.rollout import rollout  # noqa: E402

PROMPT = "The dog on the left. Which main object does this expression refer to? Answer in one word."
S, SIDE = 16, 4  # tiny: 4x4 tokens per 32 px tile


def _frames(n: int = 3, h: int = 40, w: int = 72, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def adapter() -> InternVLAdapter:
    return InternVLAdapter.from_checkpoint("tiny", frame_batch_size=2)


@pytest.fixture(scope="module")
def frames() -> list[Image.Image]:
    return _frames()


def _sibling(a: InternVLAdapter, **kw) -> InternVLAdapter:
    opts = dict(checkpoint="tiny", frame_batch_size=a.frame_batch_size, reuse=a.reuse)
    opts.update(kw)
    return InternVLAdapter(a.model, a.processor, **opts)


def _inputs(a: InternVLAdapter, session, prompt: str = PROMPT) -> dict:
    feats, _ = session.state["encoded"]
    text = a.chat_text(prompt, a.placeholder(session.view)[0])
    with torch.no_grad():
        return a.prompt_inputs([a.expand(text, session.view, int(f.shape[0])) for f in feats], feats, session.view)


def test_tiny_loads_offline(adapter):
    spec = adapter.spec()
    assert spec.family == "internvl" and spec.checkpoint == "tiny"
    assert adapter.layers == range(2, 4)
    assert spec.config["tile_tokens"] == S and spec.config["frame_thumbnail"] is False


def test_prompt_layout_equals_stock_processor(adapter, frames):
    """Video: 'FrameN: <img>...</img>' per frame; frame view with thumbnail kept: the stock sequence."""
    proc = adapter.processor
    video_text = adapter.chat_text(PROMPT, "video")
    stock = proc(text=[video_text], videos=[frames], return_tensors="pt")["input_ids"]
    ours = _inputs(adapter, adapter.open(frames, "video"))["input_ids"]
    assert torch.equal(stock, ours)
    kept = _sibling(adapter, frame_thumbnail=True)
    image_text = adapter.chat_text(PROMPT, "image")
    stock = proc(text=[image_text] * len(frames), images=frames, return_tensors="pt")["input_ids"]
    inputs = _inputs(kept, kept.open(frames, "frame"))
    assert torch.equal(stock, inputs["input_ids"])
    ctx = inputs["input_ids"][0] == proc.image_token_id
    assert int(ctx.sum()) == (1 * 2 + 1) * S  # 1x2 tiles + thumbnail for a 40x72 frame
    assert int(inputs["visual_mask"][0].sum()) == 2 * S  # the thumbnail is no map cell
    last = ctx.nonzero().flatten()[-S:]
    assert not bool(inputs["visual_mask"][0, last].any())


def test_pixel_shuffle_token_order(adapter):
    """Token i*side + j of a tile holds patches (2i..2i+1, 2j..2j+1): a row-major (side, side) grid."""
    p = 2 * SIDE
    rows = torch.arange(p).view(p, 1).expand(p, p).float()
    cols = torch.arange(p).view(1, p).expand(p, p).float()
    feats = torch.stack([rows, cols], dim=-1).unsqueeze(0)  # (1, p, p, 2) as get_image_features reshapes it
    out = adapter.model.model.pixel_shuffle(feats, scale_factor=0.5).reshape(1, SIDE * SIDE, -1)[0]
    for k in range(SIDE * SIDE):
        i, j = divmod(k, SIDE)
        vals = out[k].view(-1, 2)  # the 4 merged patches' (row, col)
        assert set(vals[:, 0].tolist()) == {2 * i, 2 * i + 1}
        assert set(vals[:, 1].tolist()) == {2 * j, 2 * j + 1}


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 3), (2, 2), (3, 2)])
def test_stitch_tiles_matches_loop_reference(rows, cols):
    side = 3
    cells = torch.randn(rows * cols * side * side, 2)
    expected = torch.empty(rows * side, cols * side, 2)
    for n in range(rows * cols):
        for k in range(side * side):
            expected[n // cols * side + k // side, n % cols * side + k % side] = cells[n * side * side + k]
    assert torch.equal(stitch_tiles(cells, rows, cols, side), expected)


@pytest.mark.parametrize("h,w,lo,hi", [(40, 72, 1, 12), (64, 64, 4, 4), (30, 200, 1, 6), (50, 50, 1, 1)])
def test_tile_grid_matches_image_processor(adapter, h, w, lo, hi):
    rows, cols = tile_grid(h, w, 32, lo, hi)
    out = adapter.processor.image_processor(images=_frames(1, h, w), crop_to_patches=True, min_patches=lo, max_patches=hi)
    assert int(out["num_patches"][0]) == rows * cols + (1 if rows * cols > 1 else 0)


def test_frame_features_are_tiles_in_order(adapter, frames):
    session = adapter.open(frames, "frame")
    feats, grid = session.state["encoded"]
    assert grid == (len(frames), 1 * SIDE, 2 * SIDE)
    stock = adapter.processor.image_processor(images=frames, crop_to_patches=True, min_patches=1, max_patches=12, return_tensors="pt")
    per = int(stock["num_patches"][0])
    with torch.no_grad():
        for i in (0, len(frames) - 1):
            tiles = stock["pixel_values"][i * per : i * per + 2]  # the 2 tiles, thumbnail dropped
            ref = adapter.model.model.get_image_features(tiles, return_dict=True).pooler_output.flatten(0, 1)
            assert torch.allclose(feats[i], ref, atol=1e-5)


@pytest.mark.slow
def test_view_shapes_and_frame_batching(adapter, frames):
    video = adapter.attend(adapter.open(frames, "video"), PROMPT, max_new_tokens=3)
    assert len(video.texts) == 1 and video.temporal_stride == 1
    assert tuple(video.attention.shape) == (len(frames), SIDE, SIDE)
    frame = adapter.attend(adapter.open(frames, "frame"), PROMPT, max_new_tokens=3)
    assert len(frame.texts) == len(frames) and tuple(frame.attention.shape) == (len(frames), SIDE, 2 * SIDE)
    whole = _sibling(adapter, frame_batch_size=len(frames))
    again = whole.attend(whole.open(frames, "frame"), PROMPT, max_new_tokens=3)
    assert torch.allclose(frame.attention, again.attention, atol=1e-5) and frame.texts == again.texts
    tiled = _sibling(adapter, frame_min_tiles=4, frame_max_tiles=4)
    res = tiled.attend(tiled.open(frames[:2], "frame"), PROMPT, max_new_tokens=2)
    assert tuple(res.attention.shape) == (2, 2 * SIDE, 2 * SIDE)  # 2x2 tiles stitched into one map
    kept = _sibling(adapter, frame_thumbnail=True)
    res = kept.attend(kept.open(frames[:2], "frame"), PROMPT, max_new_tokens=2)
    assert tuple(res.attention.shape) == (2, SIDE, 2 * SIDE)


@pytest.mark.parametrize("view,opts", [("video", {}), ("frame", {"frame_min_tiles": 4, "frame_max_tiles": 4})])
def test_streaming_rollout_equals_batch_rollout(adapter, frames, view, opts):
    a = _sibling(adapter, **opts)
    session = a.open(frames[:2], view)
    _, (t, h, w) = session.state["encoded"]
    inputs = _inputs(a, session)
    vmask = inputs.pop("visual_mask")
    a.model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = a.model(inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"], output_attentions=True)
    finally:
        a.model.set_attn_implementation("sdpa")
    # official: vmax head weights over exactly the <IMG_CONTEXT> columns (not the span)
    vec = rollout(out.attentions, vmask, a.layers.start, a.layers.stop, head_columns="tokens")
    rows = vmask.shape[0]
    per = t // rows
    if view == "video":
        expected = vec[0][vmask[0]].reshape(t, h, w)
    else:
        expected = torch.stack([stitch_tiles(vec[b][vmask[b]], h // SIDE, w // SIDE, SIDE) for b in range(rows)])
    got = a.attend(session, PROMPT, max_new_tokens=2).attention
    assert torch.allclose(got, expected, atol=1e-6)
    if view == "video":  # FrameN: separators sit between the frames' runs: span != tokens
        span = rollout(out.attentions, vmask, a.layers.start, a.layers.stop, head_columns="span")[0][vmask[0]].reshape(t, h, w)
        assert not torch.allclose(span, expected, atol=1e-6)
        spanned = _sibling(a, head_columns="span").attend(a.open(frames[:2], view), PROMPT, max_new_tokens=2).attention
        assert torch.allclose(spanned, span, atol=1e-6)
    # planted index check: in the frame view, cell (r*side + i, c*side + j) is token (r*cols + c)*S + i*side + j
    if view == "frame":
        plant = torch.arange(vmask.shape[1], dtype=torch.float32)
        first = int(vmask[0].nonzero()[0])
        cells = a._to_grid(plant, vmask[0], (per, h, w), view, 0)
        r, c, i, j = 1, 0, 2, 3
        assert cells[0, r * SIDE + i, c * SIDE + j].item() == first + (r * 2 + c) * S + i * SIDE + j


def test_reuse_counts_and_identical_maps(adapter, frames):
    """Encoder reuse alone (prefix reuse off: it is tested below) changes nothing but the work."""
    naive = _sibling(adapter, reuse=False)
    adapter = _sibling(adapter, prefix_reuse=False)
    for view in ("video", "frame"):
        s_reuse, s_naive = adapter.open(frames[:2], view), naive.open(frames[:2], view)
        assert s_reuse.counters["vision_passes"] == 1 and s_naive.counters["vision_passes"] == 0
        a1, a2 = adapter.attend(s_reuse, PROMPT, max_new_tokens=1), adapter.attend(s_reuse, "Describe the background.", max_new_tokens=1)
        b1, b2 = naive.attend(s_naive, PROMPT, max_new_tokens=1), naive.attend(s_naive, "Describe the background.", max_new_tokens=1)
        assert s_reuse.counters["vision_passes"] == 1 and s_naive.counters["vision_passes"] == 2
        assert s_reuse.counters["prefill_tokens"] == s_naive.counters["prefill_tokens"] > 0
        assert torch.equal(a1.attention, b1.attention) and torch.equal(a2.attention, b2.attention)


def test_answer_text_only(adapter):
    """answer() is the greedy decode of the chat-formatted text prompt, with no image tokens:
    checked against a plain argmax loop over the model's own forward (no generate()). The
    random tiny model only ever emits newlines (an empty answer), so the output row of a word
    is planted to outscore them first: the answer must then be that word, repeated."""
    prompt = "Expression: the dog. Candidate objects: dog, cat. Answer in one word."
    tok = adapter.processor.tokenizer
    head = adapter.model.get_output_embeddings().weight
    word = tok.convert_tokens_to_ids(tok.tokenize("dog"))[0]
    ids = tok([adapter.chat_text(prompt, None)], return_tensors="pt")["input_ids"]
    assert not (ids == adapter.placeholder("frame")[2]).any()  # text only: no visual placeholder
    with torch.no_grad():
        usual = int(adapter.model(input_ids=ids).logits[0, -1].argmax())
    saved = head[word].detach().clone()
    try:
        with torch.no_grad():
            head[word] = 3.0 * head[usual]  # its logit: 3x the usual winner's (positive) logit
        out = adapter.answer(prompt, max_new_tokens=3)
        eos = adapter.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
        new = []
        with torch.no_grad():
            for _ in range(3):
                nxt = int(adapter.model(input_ids=ids).logits[0, -1].argmax())
                if nxt in eos:
                    break
                new.append(nxt)
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    finally:
        with torch.no_grad():
            head[word] = saved
    assert new and new[0] == word
    assert out == tok.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()
    assert out.startswith("dog")


def test_empty_visual_span_and_bad_inputs(adapter, frames):
    text = adapter.chat_text(PROMPT, None)
    with pytest.raises(InputError, match="empty visual span"):
        adapter.prompt_inputs([text], [torch.zeros(0, adapter.model.config.text_config.hidden_size)], "frame")
    with pytest.raises(InputError, match="frame_min_tiles"):
        _sibling(adapter, frame_min_tiles=5, frame_max_tiles=4)
    with pytest.raises(InputError, match="differ in size"):
        adapter.open([frames[0], frames[0].resize((32, 32))], "video")
    with pytest.raises(InputError, match="no key frames"):
        adapter.open([], "frame")
    with pytest.raises(InputError, match="does not exist"):
        InternVLAdapter.from_checkpoint("./no/such/internvl")
