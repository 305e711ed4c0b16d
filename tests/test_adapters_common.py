"""Adapter layer: entry-point registry, attention capture, tiny tokenizer, prompts, CLI."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from decafbench.adapters import registry as areg  # noqa: E402
from decafbench.adapters.base import Adapter, AdapterOptions, AdapterSpec, Session, ViewResult  # noqa: E402
from decafbench.errors import InputError, RegistryError  # noqa: E402


# -- registry --------------------------------------------------------------------------------
class FakeAdapter(Adapter):
    """A third-party adapter, declared only through a (fake) entry point."""

    family = "fake-vl"

    def __init__(self, checkpoint: str, options):
        self.checkpoint, self.options = checkpoint, options

    @classmethod
    def from_checkpoint(cls, checkpoint, options):
        return cls(checkpoint, options)

    def spec(self):
        return AdapterSpec(self.family, self.checkpoint, dict(self.options.model_args))

    def open(self, frames, view):
        return Session(view=view, num_frames=len(frames))

    def attend(self, session, prompt, *, max_new_tokens=8):
        return ViewResult(texts=["x"], attention=None)

    def answer(self, prompt, *, max_new_tokens=8):
        return "x"


class NotAnAdapter:
    pass


@dataclass
class _Dist:
    name: str

    @property
    def metadata(self):
        return {"Name": self.name}


@dataclass
class _EP:
    name: str
    value: str
    dist: _Dist | None
    group: str = areg.GROUP


@pytest.fixture
def fake_eps(monkeypatch):
    """Replace importlib.metadata.entry_points with a controllable list plus a plugin module."""
    plugin = types.ModuleType("fake_decaf_plugin")
    plugin.FakeAdapter = FakeAdapter
    plugin.NotAnAdapter = NotAnAdapter
    monkeypatch.setitem(sys.modules, "fake_decaf_plugin", plugin)
    eps = [
        _EP("qwen2-vl", "decafbench.adapters.qwen2_vl:Qwen2VLAdapter", _Dist("decafbench")),
        _EP("fake-vl", "fake_decaf_plugin:FakeAdapter", _Dist("fake-plugin")),
        _EP("broken", "fake_decaf_plugin:NotAnAdapter", _Dist("fake-plugin")),
    ]
    import importlib.metadata as md

    def entry_points(group=None):
        return [e for e in eps if group is None or e.group == group]

    monkeypatch.setattr(md, "entry_points", entry_points)
    return eps


def test_list_and_create_third_party(fake_eps):
    names = [e.name for e in areg.list_adapters()]
    assert names == ["broken", "fake-vl", "qwen2-vl"]
    assert [e.name for e in areg.list_adapters("f*")] == ["fake-vl"]
    assert areg.adapter_entries()["fake-vl"].distribution == "fake-plugin"
    ad = areg.create_adapter("fake-vl:/some/path:with-colon", AdapterOptions(dtype="bfloat16", model_args={"budget": 3}))
    assert isinstance(ad, FakeAdapter)
    assert ad.checkpoint == "/some/path:with-colon"
    assert ad.options.dtype == "bfloat16" and ad.options.model_args == {"budget": 3} and ad.options.device == "cpu"
    # no declared capability: the work-saving switches never reach it
    assert ad.options.reuse is False and ad.options.prefix_reuse is False
    assert areg.create_adapter("fake-vl").checkpoint == "tiny"


def test_unknown_duplicate_and_bad_target(fake_eps):
    with pytest.raises(RegistryError, match="did you mean 'qwen2-vl'"):
        areg.get_adapter_class("qwen2vl")
    with pytest.raises(RegistryError, match="not a subclass of Adapter"):
        areg.get_adapter_class("broken")
    with pytest.raises(RegistryError, match="empty"):
        areg.parse_adapter_name("  ")
    # the same distribution listed twice is fine; a second distribution is a collision
    fake_eps.append(_EP("fake-vl", "fake_decaf_plugin:FakeAdapter", _Dist("fake-plugin")))
    assert len(areg.list_adapters()) == 3
    fake_eps.append(_EP("fake-vl", "other_plugin:Adapter", _Dist("other-plugin")))
    with pytest.raises(RegistryError, match="declared twice"):
        areg.list_adapters()
    assert isinstance(RegistryError("x"), InputError)


def test_builtin_entry_points_declared():
    names = {e.name for e in areg.list_adapters()}
    assert {"qwen2-vl", "llava-onevision", "internvl"} <= names
    assert areg.get_adapter_class("qwen2-vl").family == "qwen2-vl"


# -- tiny tokenizer ----------------------------------------------------------------------------
def test_tiny_tokenizer_deterministic_and_specials():
    from decafbench.adapters.tiny import build_tokenizer, seeded

    specials = ["<pad>", "<|im_end|>", "<image>"]
    a = build_tokenizer(specials, chat_template="{{ messages }}", extra_words=["zebra"])
    b = build_tokenizer(specials, chat_template="{{ messages }}", extra_words=["zebra"])
    assert a.get_vocab() == b.get_vocab()
    assert [a.convert_tokens_to_ids(t) for t in specials] == [0, 1, 2]
    text = "<image><image>Which object is the zebra? cat."
    ids = a(text)["input_ids"]
    assert ids[:2] == [2, 2]
    assert a.decode(ids) == text
    assert a.pad_token == "<pad>" and a.eos_token == "<|im_end|>" and a.chat_template == "{{ messages }}"
    with seeded(3):
        x = torch.rand(4)
    with seeded(3):
        y = torch.rand(4)
    assert torch.equal(x, y)


# -- attention capture -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    from decafbench.adapters.qwen2_vl_tiny import build_tiny

    model, processor = build_tiny("2", seed=0)
    return model, processor


def _text_inputs(processor, text="the cat on the left. Which object? Answer in one word."):
    return processor(text=[text], return_tensors="pt")


def test_capture_only_requested_layers_prefill_and_restore(tiny_model, monkeypatch):
    from transformers.masking_utils import AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface

    from decafbench.adapters.attention import capture_attention, language_layers

    model, processor = tiny_model
    assert language_layers(model) == 4
    inputs = _text_inputs(processor)
    calls = {"sdpa": 0}
    real_sdpa = AttentionInterface._global_mapping["sdpa"]

    def counting_sdpa(*args, **kwargs):
        calls["sdpa"] += 1
        return real_sdpa(*args, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, "sdpa", counting_sdpa)
    seen = []
    before_keys = set(AttentionInterface._global_mapping), set(AttentionMaskInterface._global_mapping)
    with torch.no_grad():
        ref = model(**inputs).logits
        calls["sdpa"] = 0
        with capture_attention(model, range(1, 3), lambda i, a: seen.append((i, a))):
            assert model.config.text_config._attn_implementation.startswith("decafbench_capture")
            assert model.config.vision_config._attn_implementation == "sdpa"
            got = model(**inputs).logits
            assert calls["sdpa"] == 2  # layers 0 and 3 stayed on sdpa
            calls["sdpa"] = 0
            model.generate(**inputs, max_new_tokens=3, do_sample=False)
            assert calls["sdpa"] == 2 + 4 * 2  # prefill: 2 uncaptured layers; 2 decode steps: all 4
    assert [i for i, _ in seen] == [1, 2, 1, 2]  # prefills only, never a decode step
    L = inputs["input_ids"].shape[1]
    for _, a in seen:
        assert a.dtype == torch.float32 and a.shape == (1, 4, L, L)
        assert torch.allclose(a.sum(-1), torch.ones(1, 4, L), atol=1e-5)
        assert torch.all(a.triu(diagonal=1) == 0)  # causal
    assert torch.allclose(got, ref, atol=1e-4)
    assert model.config.text_config._attn_implementation == "sdpa"
    assert (set(AttentionInterface._global_mapping), set(AttentionMaskInterface._global_mapping)) == before_keys


def test_capture_equals_eager_output_attentions(tiny_model):
    from decafbench.adapters.attention import capture_attention

    model, processor = tiny_model
    inputs = processor(text=["a dog.", "the big red car on the road."], return_tensors="pt", padding=True)
    seen = {}
    with torch.no_grad():
        with capture_attention(model, range(0, 4), lambda i, a: seen.__setitem__(i, a)):
            model(**inputs)
        model.set_attn_implementation("eager")
        try:
            ref = model(**inputs, output_attentions=True).attentions
        finally:
            model.set_attn_implementation("sdpa")
    for i in range(4):  # left padding: padded query rows are garbage in both; compare real rows
        mask = inputs["attention_mask"].bool()
        for b in range(2):
            rows = mask[b]
            assert torch.allclose(seen[i][b][:, rows][:, :, rows], ref[i][b][:, rows][:, :, rows].float(), atol=1e-5)


def test_capture_restores_on_error_and_checks_layers(tiny_model):
    from decafbench.adapters.attention import capture_attention

    model, processor = tiny_model
    with pytest.raises(ValueError, match="out of range"):
        with capture_attention(model, range(2, 9), lambda i, a: None):
            pass

    def boom(i, a):
        raise RuntimeError("observer failed")

    with pytest.raises(RuntimeError, match="observer failed"), torch.no_grad():
        with capture_attention(model, range(3, 4), boom):
            model(**_text_inputs(processor))
    assert model.config.text_config._attn_implementation == "sdpa"


def test_capture_with_inputs_on_cached_prefill_rebuilds_full_rows(tiny_model):
    """Prefix pass, then the suffix on top of its cache: the suffix rows (Lq < Lk) and the
    prefix rows rebuilt with causal_weights from the prefix query equal the full pass's rows."""
    from decafbench.adapters.attention import Captured, capture_attention, causal_weights

    model, processor = tiny_model
    ids = _text_inputs(processor)["input_ids"]
    L, P = ids.shape[1], 5
    full, pre, suf = {}, {}, {}
    with torch.no_grad():
        with capture_attention(model, range(1, 4), lambda i, a, c: full.__setitem__(i, (a, c)), with_inputs=True):
            model(input_ids=ids)
        with capture_attention(model, range(1, 4), lambda i, a, c: pre.__setitem__(i, (a, c)), with_inputs=True):
            cache = model(input_ids=ids[:, :P], use_cache=True).cache
        with capture_attention(model, range(1, 4), lambda i, a, c: suf.__setitem__(i, (a, c)), with_inputs=True):
            model(input_ids=ids[:, P:], cache=cache, use_cache=True)
    assert sorted(full) == sorted(pre) == sorted(suf) == [1, 2, 3]
    for i in range(1, 4):
        attn, seen = full[i]
        assert isinstance(seen, Captured) and seen.query.shape[2] == seen.key.shape[2] == L and seen.scaling > 0
        assert torch.equal(causal_weights(seen.query, seen.key, seen.scaling), attn)  # same ops as the capture
        sattn, sseen = suf[i]
        assert sattn.shape == (1, 4, L - P, L) and sseen.key.shape[2] == L
        rebuilt = torch.zeros_like(attn)
        rebuilt[:, :, :P, :P] = causal_weights(pre[i][1].query, sseen.key[:, :, :P], sseen.scaling)
        rebuilt[:, :, P:] = sattn
        assert torch.allclose(rebuilt, attn, rtol=1e-5, atol=1e-5)  # float32 rounding of other matmul shapes
        assert torch.all(rebuilt.triu(diagonal=1) == 0)


# -- prompts ------------------------------------------------------------------------------------
def test_prompt_registry():
    """Names, cache-key revision and lookup hints (the strings themselves: tests/test_golden_qwen.py)."""
    from decafbench.prompts import PROMPT_VERSION, PROMPTS, get_prompts, prompt_key

    assert PROMPTS.names() == ["v0", "v1", "v2", "v3"]
    for name in PROMPTS.names():
        p = get_prompts(name)
        assert "the dog." in p.object_prompt("The dog.")
        c = p.choice_prompt("the dog.", ["Dog", "dog", "puppy", ""])
        assert "{" not in c and ("dog,dog,puppy," in c) == (name != "v3")
        assert ("dog" in p.background_prompt("dog", "the cat.")) == (name in ("v0", "v2"))
    assert "primary subject or agent" in get_prompts("v0").object
    assert prompt_key("v2") == f"{PROMPT_VERSION}:v2"
    with pytest.raises(RegistryError, match="did you mean"):
        get_prompts("v9")


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_adapters_list_and_show():
    from typer.testing import CliRunner

    from decafbench.cli import build_app

    runner = CliRunner()
    app = build_app()
    res = runner.invoke(app, ["adapters", "list", "qwen*"])
    assert res.exit_code == 0, res.output
    assert "qwen2-vl" in res.output and "internvl" not in res.output
    res = runner.invoke(app, ["adapters", "show", "qwen2-vl"])
    assert res.exit_code == 0, res.output
    # the contract a plugin author needs: the options object's fields and the family's model args
    for word in ("AdapterOptions", "prefix_reuse", "model_args", "video_tokens_per_frame", "qwen2-vl:tiny"):
        assert word in res.output, word
    res = runner.invoke(app, ["adapters", "show", "--help"])
    assert "Example" in res.output


def test_tiny_vocabulary_does_not_follow_the_prompt_registry(monkeypatch):
    """The tiny tokenizers train on a frozen word list: adding or editing a prompt wording must
    not change a tiny model's vocabulary (its token ids, hence the golden fixtures)."""
    from decafbench import prompts
    from decafbench.adapters.common import TINY_PROMPT_WORDS, prompt_words
    from decafbench.registry import Registry

    before = prompt_words()
    assert before == list(TINY_PROMPT_WORDS) and len(before) > 100
    empty: Registry = Registry("prompt set")
    monkeypatch.setattr(prompts, "PROMPTS", empty)
    assert prompt_words() == before
