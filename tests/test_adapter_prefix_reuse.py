"""Shared-prefix prefill reuse of the embeds-based adapters (LLaVA-OneVision and InternVL).

The prefix (everything through the last visual placeholder) is prefilled once per view chunk;
each prompt prefills only its suffix on a copy of the cache, and the prefix attention rows are
rebuilt for the rollout. Both families run the same checks on their offline tiny checkpoints.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from decafbench.adapters.internvl import InternVLAdapter  # noqa: E402
from decafbench.adapters.llava_onevision import LlavaOneVisionAdapter  # noqa: E402

PROMPT = "The dog on the left. Which main object does this expression refer to? Answer in one word."


@pytest.fixture(scope="module", params=[LlavaOneVisionAdapter, InternVLAdapter], ids=["llava-onevision", "internvl"])
def adapter(request):
    return request.param.from_checkpoint("tiny", frame_batch_size=2)


@pytest.fixture(scope="module")
def frames() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40, 72, 3), dtype=np.uint8)) for _ in range(3)]


def _sibling(a, **kw):
    """Another adapter of the same family on the same model and processor, other options."""
    opts = dict(checkpoint="tiny", frame_batch_size=a.frame_batch_size, reuse=a.reuse)
    opts.update(kw)
    return type(a)(a.model, a.processor, **opts)


PROMPTS3 = (PROMPT, "Describe the background.", "the small dog?")


def _run_prompts(a, frames, view, prompts=PROMPTS3, max_new_tokens=4):
    """Session, results and the raw generated token ids of each prompt (texts drop special tokens)."""
    ids, decode = [], a._decode

    def record(out):
        ids.append(out.clone())
        return decode(out)

    a._decode = record  # instance attribute on a throwaway sibling, never on the shared fixture
    session = a.open(frames, view)
    return session, [a.attend(session, p, max_new_tokens=max_new_tokens) for p in prompts], ids


def _close(a, b, rel):
    """Equal up to ``rel`` of the map's scale (tiny entries carry absolute float32 rounding)."""
    return bool(((a - b).abs() <= rel * b.abs().max()).all())


@pytest.mark.slow
@pytest.mark.parametrize("view", ["video", "frame"])
def test_prefix_reuse_same_maps_texts_fewer_tokens(adapter, frames, view):
    """Prefix prefilled once per chunk: same maps (to 1e-5 of the max) and texts as a full
    prefill per prompt and as --no-reuse; prefill drops by (prompts - 1) x B x P; same encoder passes."""
    assert adapter.prefix_reuse and adapter.frame_batch_size == 2  # the frame view runs chunks of 2 + 1
    shared, res, ids = _run_prompts(_sibling(adapter), frames, view)
    full, ref, fids = _run_prompts(_sibling(adapter, prefix_reuse=False), frames, view)
    naive, nref, nids = _run_prompts(_sibling(adapter, reuse=False, prefix_reuse=True), frames, view)  # no prefix reuse either
    assert len(ids) == len(fids) == len(nids) > 0 and all(x.shape[1] >= 1 for x in ids)
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(ids, fids, nids))
    for r, f, n in zip(res, ref, nref):
        assert r.texts == f.texts == n.texts
        assert r.attention.shape == f.attention.shape and _close(r.attention, f.attention, 1e-5)
        assert torch.allclose(r.attention, f.attention, rtol=1e-4, atol=1e-7)
        assert torch.equal(f.attention, n.attention)
        assert n.stats["prefix_tokens"] == f.stats["prefix_tokens"] == 0
    batch = 1 if view == "video" else len(frames)
    plen = res[0].stats["prefix_tokens"]
    assert 0 < plen < min(r.stats["prompt_tokens"] for r in res) and all(r.stats["prefix_tokens"] == plen for r in res)
    assert res[0].stats["prefill_tokens"] == res[0].stats["prompt_tokens"]  # the first prompt prefilled the prefix
    assert [r.stats["prefill_tokens"] for r in res[1:]] == [r.stats["prompt_tokens"] - plen for r in res[1:]]
    assert full.counters["prefill_tokens"] == naive.counters["prefill_tokens"] == batch * sum(r.stats["prompt_tokens"] for r in ref)
    assert full.counters["prefill_tokens"] - shared.counters["prefill_tokens"] == (len(PROMPTS3) - 1) * batch * plen
    assert shared.counters["prefill_tokens"] == batch * sum(r.stats["prefill_tokens"] for r in res)
    assert shared.counters["vision_passes"] == full.counters["vision_passes"] == 1
    assert naive.counters["vision_passes"] == len(PROMPTS3)
    assert shared.counters["prompts"] == full.counters["prompts"] == len(PROMPTS3)
    assert sorted(shared.state["prefix"]) == ([0] if view == "video" else [0, 2])  # one kept prefix per chunk
    assert "prefix_reuse" not in adapter.spec().config  # work done, not outputs


@pytest.mark.slow
@pytest.mark.parametrize("view", ["video", "frame"])
def test_prefix_suffix_logits_equal_full_pass(adapter, frames, view):
    """Prefix = tokens through the last visual placeholder; the suffix on a copy of its cache
    (1-D positions continuing at P) gives the full pass's next-token logits; the kept cache is
    untouched; a prompt whose prefix differs from the kept one is prefilled again."""
    import copy

    session = adapter.open(frames[:2], view)
    feats, _ = session.state["encoded"]
    pid = adapter.placeholder(view)[2]
    for prompt in PROMPTS3[:2]:
        text = adapter.chat_text(prompt, adapter.placeholder(view)[0])
        with torch.no_grad():
            inputs = adapter.prompt_inputs([adapter.expand(text, view, int(f.shape[0])) for f in feats], feats, view)
        ids = inputs["input_ids"]
        prefix, _ = adapter._prefix(session, 0, inputs)
        plen = prefix["length"]
        assert bool((ids[:, plen - 1] == pid).all()) and not bool((ids[:, plen:] == pid).any())
        with torch.no_grad():
            whole = adapter.model(inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"]).logits[:, -1]
            cache = copy.deepcopy(prefix["cache"])
            part = adapter.model(inputs_embeds=inputs["inputs_embeds"][:, plen:], attention_mask=inputs["attention_mask"],
                                 position_ids=torch.arange(plen, ids.shape[1]).expand(ids.shape[0], -1), cache=cache,
                                 use_cache=True).logits[:, -1]
        assert cache.get_seq_length() == ids.shape[1] and prefix["cache"].get_seq_length() == plen
        assert torch.allclose(part, whole, rtol=1e-5, atol=1e-5 * float(whole.abs().max()))
        assert torch.equal(part.argmax(-1), whole.argmax(-1))
    assert session.state["prefix"][0] is prefix  # one prefill per session chunk
    prefix["ids"] = prefix["ids"] + 1
    again, prefilled = adapter._prefix(session, 0, inputs)
    assert again is not prefix and session.state["prefix"][0] is again and prefilled == plen
