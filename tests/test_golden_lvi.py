"""LLaVA-OneVision and InternVL inputs against the official pipeline's golden fixtures.

``tests/fixtures/golden/{llava_onevision,internvl}.json`` were written by
``tools/golden/official_lvi.py`` inside the official stack (transformers 4.52.1, the official
processor patches and prompting functions of HYUNJS/DecAF, a recording stand-in model) on
synthetic frames, for the released checkpoints' vision geometry (``real``: the project's
``tiny-real`` checkpoints) and for the ``tiny`` checkpoints. Here the project's adapters lay
out the same prompts on the same frames and must give the same token ids, visual-token
positions, token counts, grids, tiles and system prompts, exactly.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from decafbench.adapters.internvl import InternVLAdapter  # noqa: E402
from decafbench.adapters.llava_onevision import LlavaOneVisionAdapter  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
ADAPTERS = {"llava_onevision": LlavaOneVisionAdapter, "internvl": InternVLAdapter}
RECIPE = "rgb[y, x, c] = (3*x + 5*y + 17*t + 50*c + (x*y) % 7) % 256, uint8"
#: cases whose real-geometry preprocessing is heavy (16 frames of 384/448 px tiles, 1280 px frames)
SLOW = {(f, c) for f in ("llava_onevision", "internvl") for c in ("real_f16_48x64", "real_f2_720x1280")}


def _golden_common():
    """tools/golden/common.py: the one copy of the synthetic frames and the run-length layout."""
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("golden_common", root / "tools" / "golden" / "common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


G = _golden_common()
run_length = G.run_length


def synthetic_frame(t: int, height: int, width: int) -> Image.Image:
    """Frame ``t`` of the fixtures' synthetic video (:data:`RECIPE`), as the PIL image the adapters take."""
    return Image.fromarray(G.synthetic_frame(t, height, width))


def load(family: str) -> dict:
    return json.loads((GOLDEN / f"{family}.json").read_text(encoding="utf-8"))


_ADAPTERS: dict = {}


def adapter(family: str, structure: str, reuse: bool = False):
    key = (family, structure, reuse)
    if key not in _ADAPTERS:
        ckpt = "tiny" if structure == "tiny" else "tiny-real"
        _ADAPTERS[key] = ADAPTERS[family].from_checkpoint(ckpt, reuse=reuse)
    return _ADAPTERS[key]


def cases(slow: bool = False):
    out = []
    for family in ADAPTERS:
        for case in load(family)["cases"]:
            mark = [pytest.mark.slow] if (family, case["case"]) in SLOW else []
            out.append(pytest.param(family, case["case"], marks=mark, id=f"{family}-{case['case']}"))
    return out


def get_case(family: str, name: str) -> dict:
    return next(c for c in load(family)["cases"] if c["case"] == name)


def frames_of(case: dict) -> list[Image.Image]:
    f = case["frames"]
    assert f["recipe"] == RECIPE
    return [synthetic_frame(t, f["height"], f["width"]) for t in range(f["count"])]


def official_rows(case: dict, step: str) -> tuple[list, list, list]:
    """Every sequence's (input_ids, visual positions, visual token count) of one official prompt
    step, over its batches (frame view: ceil(T / max_batch) generate calls)."""
    calls = [v for k, v in case["calls"].items() if k == step or k.startswith(step + "_")]
    ids, pos, counts = [], [], []
    for call in calls:
        n = call["batch"]
        rep = n if call["identical_sequences"] else 1
        ids += [r for r in call["input_ids"] for _ in range(rep)]
        pos += [r for r in call.get("visual_positions", []) for _ in range(rep)]
        counts += call.get("visual_tokens", [])
    return ids, pos, counts


def _digest(tok) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest()


@pytest.mark.parametrize("family", list(ADAPTERS))
def test_tokenizer_and_system_prompt(family):
    """The fixtures' token ids only compare with the same tiny tokenizer; the system prompt is
    the official one (LLaVA-OneVision: SYS_QWEN2's text; InternVL: SYS_INTERNVL's)."""
    data = load(family)
    a = adapter(family, "tiny")
    assert _digest(a.processor.tokenizer) == data["tokenizer_digest"], (
        "the tiny tokenizer changed: regenerate the golden fixtures (tools/golden/make_fixtures.py)")
    for case in data["cases"]:
        for step, msg in case["messages"].items():
            assert msg["roles"] == ["system", "user"], step
            assert msg["system"] == a.system_prompt, step


@pytest.mark.parametrize("family,name", cases())
def test_prompt_ids_and_visual_positions_equal_official(family, name):
    """Per view, the project's token ids of each sequence (chat template + system prompt +
    visual placeholder layout + the official user text) and its visual-token positions equal
    the official processor's, for every frame size and both geometries."""
    case = get_case(family, name)
    a = adapter(family, case["structure"])
    frames = frames_of(case)
    for view in ("video", "frame"):
        geo = a.geometry(a.open(frames, view))
        for step in (f"object_{view}", f"background_{view}"):
            check_step(a, case, step, view, geo, len(frames))


def check_step(a, case: dict, step: str, view: str, geo: dict, t: int) -> None:
    """One official prompt step on one view: ids, visual positions and counts of every sequence."""
    text = a.chat_text(case["messages"][f"{step}_0" if view == "frame" else step]["user_text"], a.placeholder(view)[0])
    rows = [a.expand(text, view, geo["visual_tokens"])] * (1 if view == "video" else t)
    ids = a.processor.tokenizer(rows, return_tensors="pt", padding=True)["input_ids"]
    vmask = a.visual_mask(ids, view)
    want_ids, want_pos, want_counts = official_rows(case, step)
    assert [run_length(r) for r in ids] == want_ids, (step, view)
    assert [run_length(r.int()) for r in vmask] == want_pos, (step, view)
    assert [int(v) for v in vmask.sum(dim=1)] == want_counts == [geo["visual_tokens"]] * len(want_counts)


@pytest.mark.parametrize("family,name", cases())
def test_geometry_equals_official(family, name):
    """Frame size given to the model, map grid, tiles: the official values."""
    case = get_case(family, name)
    a = adapter(family, case["structure"])
    frames = frames_of(case)
    t = len(frames)
    video = a.geometry(a.open(frames, "video"))
    frame = a.geometry(a.open(frames, "frame"))
    tile = case["tile"]
    assert video["frame_size"] == (tile, tile)
    assert frame["frame_size"] == tuple(case["frame_canvas"])
    grids = case["official_grids"]
    if family == "llava_onevision":
        assert list(video["grid"]) == grids["object_video"]["visual_grid_thw"][0]
        per_frame = grids["object_frame"]["visual_grid_thw"]  # [1, h, w] per frame (unpadded, bounded)
        assert [[1, *frame["grid"][1:]]] * t == per_frame and frame["grid"][0] == t
        shape = case["calls"]["object_frame_0"]["pixel_values"]["shape"]  # official: tiles only, no overview
        assert frame["extra"]["tiles"][0] * frame["extra"]["tiles"][1] == shape[1]
    else:
        assert frame["extra"]["tiles"] == case["tiling_hw"] == grids["object_frame"]["tiling_hw"][0]
        side = a.side
        assert video["grid"] == (t, side, side) and frame["grid"] == (t, case["tiling_hw"][0] * side, case["tiling_hw"][1] * side)
        if case["structure"] == "real":  # the official readers hard-code 16x16 tokens per 448 px tile
            assert list(video["grid"]) == grids["object_video"]["visual_grid_thw"][0]
            assert grids["object_frame"]["visual_grid_thw"][0] == [1, side, side]
        # official pixel tiles: one per frame (video), rows*cols per frame and no thumbnail (frame view)
        assert case["calls"]["object_video"]["pixel_values"]["shape"][0] == t
        per = case["tiling_hw"][0] * case["tiling_hw"][1]
        batch = case["calls"]["object_frame_0"]["batch"]
        assert case["calls"]["object_frame_0"]["pixel_values"]["shape"][0] == per * batch
        assert frame["extra"]["thumbnail"] is False


@pytest.mark.parametrize("family", list(ADAPTERS))
def test_choice_prompt_ids_equal_official(family):
    """The text-only object-choice prompt: same system message, same ids."""
    case = get_case(family, "tiny_f3_40x72")
    a = adapter(family, "tiny")
    text = a.chat_text(case["messages"]["choice"]["user_text"], None)
    ids = a.processor.tokenizer([text], return_tensors="pt")["input_ids"]
    assert [run_length(r) for r in ids] == case["calls"]["choice"]["input_ids"]


@pytest.mark.parametrize("family", list(ADAPTERS))
def test_tiny_features_match_the_official_layout(family):
    """The full encode path of the tiny checkpoints (features from the vision tower, as ``attend``
    feeds them) gives exactly the official placeholder counts and ids."""
    case = get_case(family, "tiny_f3_40x72")
    a = adapter(family, "tiny", reuse=True)
    frames = frames_of(case)
    for step, view in (("object_video", "video"), ("object_frame", "frame")):
        session = a.open(frames, view)
        feats, grid = session.state["encoded"]
        text = a.chat_text(case["messages"][f"{step}_0" if view == "frame" else step]["user_text"], a.placeholder(view)[0])
        with torch.no_grad():
            inputs = a.prompt_inputs([a.expand(text, view, int(f.shape[0])) for f in feats], feats, view)
        want_ids, want_pos, _ = official_rows(case, step)
        assert [run_length(r) for r in inputs["input_ids"]] == want_ids
        assert [run_length(r.int()) for r in inputs["visual_mask"]] == want_pos
        assert tuple(grid) == a.geometry(session)["grid"]
