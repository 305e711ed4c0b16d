"""The project's Qwen2-VL / Qwen2.5-VL inputs against the official pipeline's (golden fixtures).

tests/fixtures/golden/qwen2{,_5}_vl.json were written by tools/golden/make_fixtures.py, which
ran the official DecAF prompting functions on transformers 4.52.1 + qwen-vl-utils 0.0.11 with
the same tiny tokenizer and fixed synthetic frames (see README "Golden-input tests"). Here the
adapter builds its inputs for the same frames and prompts; they must match exactly: input id
layout, grids, second_per_grid_ts, rotary position ids, frame sizes, prompt texts.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
VIEW_STEPS = {"object_video": "video", "object_frame": "frame", "background_video": "video", "background_frame": "frame"}


def _golden_common():
    spec = importlib.util.spec_from_file_location("golden_common", ROOT / "tools" / "golden" / "common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


G = _golden_common()


def _load(name):
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


FILES = {"2": "qwen2_vl.json", "2.5": "qwen2_5_vl.json"}
CASES = [(v, c["case"]) for v, f in FILES.items() for c in _load(f)["cases"]]


@pytest.fixture(scope="module")
def tiny_models():
    from decafbench.adapters.qwen2_vl_tiny import build_tiny

    return {v: build_tiny(version=v) for v in FILES}


def _frames(spec):
    from PIL import Image

    assert spec["recipe"] == G.FRAME_RECIPE
    return [Image.fromarray(G.synthetic_frame(t, spec["height"], spec["width"])) for t in range(spec["count"])]


def _adapter(tiny_models, version, budget):
    from decafbench.adapters.qwen2_vl import Qwen2VLAdapter

    model, processor = tiny_models[version]
    return Qwen2VLAdapter(model, processor, checkpoint="tiny", video_tokens_per_frame=budget, reuse=False)


def test_tokenizer_is_the_fixtures_one():
    """Input ids compare exactly only with the tokenizer the fixtures were made with."""
    sys_path = str(ROOT / "tools" / "golden")
    import sys

    sys.path.insert(0, sys_path)
    try:
        from make_fixtures import tokenizer_digest
    finally:
        sys.path.remove(sys_path)
    from decafbench.adapters.qwen2_vl_tiny import build_tiny_tokenizer

    digest = tokenizer_digest(build_tiny_tokenizer())
    for f in FILES.values():
        assert _load(f)["tokenizer_digest"] == digest, "tiny tokenizer changed: rerun tools/golden/make_fixtures.py"


@pytest.mark.parametrize("version,case", [
    pytest.param(v, c, marks=[pytest.mark.slow] if "b400" in c else []) for v, c in CASES
])
def test_view_inputs_match_official(tiny_models, version, case):
    data = next(c for c in _load(FILES[version])["cases"] if c["case"] == case)
    frames = _frames(data["frames"])
    ad = _adapter(tiny_models, version, data["video_tokens_per_frame"])
    sessions = {v: ad.open(frames, v) for v in ("video", "frame")}
    fr_h, fr_w = data["frame_resize"]
    assert tuple(sessions["frame"].state["size"]) == (fr_h, fr_w)
    for step, view in VIEW_STEPS.items():
        want = data["calls"][step]
        prompt = data["messages"][step]["user_text"]
        inputs = ad._prompt_inputs(sessions[view], prompt)
        ids = inputs["input_ids"]
        assert ids.shape[0] == want["batch"] and ids.shape[1] == want["length"], step
        assert [G.run_length(ids[0])] == want["input_ids"][:1], step
        assert bool((ids == ids[0:1]).all()) == want["identical_sequences"]
        key = "video_grid_thw" if view == "video" else "image_grid_thw"
        assert inputs[key].tolist() == want["grid_thw"], step
        got_spg = inputs.get("second_per_grid_ts")
        if want["second_per_grid_ts"] is None:
            assert got_spg is None, step
        else:
            assert [float(x) for x in got_spg] == want["second_per_grid_ts"], step
        pos = ad.rope_index(inputs)
        assert pos[:, 0, -8:].tolist() == want["position_ids_last8"], step
        assert G.int_digest(pos[:, 0].flatten().tolist()) == want["position_ids_digest"], step
        lay = ad.layout(sessions[view], prompt)
        assert lay.temporal_positions[: len(want["temporal_positions"])] == want["temporal_positions"]
        assert lay.visual_tokens == want["visual_tokens"]
        pv = inputs["pixel_values_videos" if view == "video" else "pixel_values"].float()
        ref = want["pixel_values"]
        assert list(pv.shape) == ref["shape"]
        # same resize (PIL bicubic) and normalisation; the processors' float paths differ slightly
        assert abs(float(pv.mean()) - ref["mean"]) < 1e-3 and abs(float(pv.std()) - ref["std"]) < 1e-3, step


class _Canned:
    """An adapter stand-in that returns the fixture's canned answers (to test the text flow)."""

    def __init__(self, answers, frames):
        self.answers, self.frames, self.calls = answers, frames, []

    def attend(self, session, prompt, *, max_new_tokens):
        from decafbench.adapters.base import ViewResult

        self.calls.append(("attend", session, prompt, max_new_tokens))
        if session == "video":
            texts = [self.answers["object_video" if len(self.calls) == 1 else "background"]]
        else:
            texts = (self.answers["object_frame"] * 8)[: self.frames] if len(self.calls) == 2 else ["bed"] * self.frames
        return ViewResult(texts=[t.strip() for t in texts], attention=None)

    def answer(self, prompt, *, max_new_tokens):
        self.calls.append(("answer", None, prompt, max_new_tokens))
        return self.answers["choice"].strip()


@pytest.mark.parametrize("version", list(FILES))
def test_prompt_texts_candidates_and_object_word_match_official(version):
    from decafbench.prompts import DEFAULT_MAX_NEW_TOKENS, get_prompts, run_dialogue

    for data in _load(FILES[version])["cases"]:
        canned = _Canned(data["answers"], data["frames"]["count"])
        d = run_dialogue(canned, "video", "frame", data["expression"], get_prompts("v0"))
        msgs = data["messages"]
        assert d.prompts["object"] == msgs["object_video"]["user_text"] == msgs["object_frame"]["user_text"]
        assert d.prompts["choice"] == msgs["choice"]["user_text"]
        assert d.prompts["background"] == msgs["background_video"]["user_text"]
        assert d.candidates == data["candidates"] and d.object_word == data["object_word"]
        assert [c[0] for c in canned.calls] == ["attend", "attend", "answer", "attend", "attend"]  # official order
        assert [c[1] for c in canned.calls if c[0] == "attend"] == ["video", "frame", "video", "frame"]
        # Qwen: no system message is sent (the chat template's default applies)
        assert all(m["roles"] == ["user"] for m in msgs.values())
        for step in data["calls"].values():
            assert step["gen_kwargs"]["max_new_tokens"] == DEFAULT_MAX_NEW_TOKENS
            assert step["gen_kwargs"]["do_sample"] is False and step["gen_kwargs"]["num_beams"] == 1


def test_prompt_sets_are_the_official_strings():
    from decafbench.prompts import PROMPTS, get_prompts

    consts = {k: v["value"] for k, v in _load("prompts.json")["constants"].items()}
    assert PROMPTS.names() == ["v0", "v1", "v2", "v3"]
    for name in PROMPTS.names():
        p = get_prompts(name)
        for field, const in zip(("object", "choice", "background"), p.source):
            assert getattr(p, field) == consts[const], (name, field)
    # v3: background names the expression, choice has no candidate list
    v3 = get_prompts("v3")
    assert "'the dog.'" in v3.background_prompt("dog", "The dog.") and "{" not in v3.choice_prompt("x.", ["a"])
    assert "a,b" not in v3.choice_prompt("x.", ["a", "b"]) and "a,b" in get_prompts("v0").choice_prompt("x.", ["A", "b"])


def test_expression_and_answer_handling():
    from decafbench.errors import InputError
    from decafbench.prompts import candidate_list, normalize_expression, object_word

    assert normalize_expression("a cat") == "a cat."
    assert normalize_expression("which one?") == "which one?" and normalize_expression("the dog.") == "the dog."
    assert normalize_expression("a cat ") == "a cat ."  # official: no strip before the check
    assert candidate_list(["Dog", "dog", "", "Puppy"]) == "dog,dog,,puppy"  # duplicates and order kept
    assert object_word("  Dog.\n") == "dog."
    with pytest.raises(InputError):
        normalize_expression("  ")


def test_smart_resize_published_numbers():
    """qwen_vl_utils' rule: shrink to the budget, never enlarge to it (min_pixels 4*28^2)."""
    from decafbench.adapters.qwen2_vl import smart_resize

    f = 28
    assert smart_resize(480, 640, f, 4 * f * f, 400 * f * f) == (476, 644)  # 17 x 23 = 391 tokens
    assert smart_resize(540, 960, f, 4 * f * f, 400 * f * f) == (392, 728)  # shrunk: 14 x 26 = 364
    assert smart_resize(20, 30, f, 4 * f * f, 16 * f * f) == (56, 84)  # enlarged only up to min_pixels
    assert smart_resize(952, 1288, f) == (952, 1288)  # the frame view's 2x size passes unchanged
    for h, w, budget in [(480, 640, 400), (112, 140, 16), (64, 90, 16), (1080, 1920, 400), (720, 1280, 768)]:
        rh, rw = smart_resize(h, w, f, 4 * f * f, budget * f * f)
        assert rh % f == 0 and rw % f == 0 and (rh // f) * (rw // f) <= budget
        assert np.isclose(rh / rw, h / w, rtol=0.15)


def test_smart_resize_matches_qwen_vl_utils():
    from decafbench.adapters.qwen2_vl import smart_resize

    rows = _load("qwen_smart_resize.json")["rows [h, w, budget, resized_h, resized_w]"]
    assert len(rows) >= 50
    for h, w, budget, rh, rw in rows:
        assert smart_resize(h, w, 28, 4 * 28 * 28, budget * 28 * 28) == (rh, rw), (h, w, budget)
