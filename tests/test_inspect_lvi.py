"""``decaf inspect`` on LLaVA-OneVision and InternVL: 16 small frames, the official values.

The golden fixtures' ``*_f16_48x64`` cases hold what the official pipeline gives each model for
16 synthetic 48x64 frames (tools/golden/official_lvi.py); ``decaf inspect`` on the same frames
must report the same frame sizes, grids, visual tokens per sequence, system prompt and object
prompt text, and no temporal rotary positions (1-D positions in both families).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("transformers")

from decafbench.cli import build_app  # noqa: E402

from test_golden_lvi import frames_of, get_case  # noqa: E402

FAMILIES = {"llava_onevision": "llava-onevision", "internvl": "internvl"}


def official_views(family: str, case: dict) -> dict:
    """The per-view values ``decaf inspect`` must show, read off the official fixture."""
    calls, grids = case["calls"], case["official_grids"]
    t = case["frames"]["count"]
    tile = case["tile"]
    video_tokens = calls["object_video"]["visual_tokens"][0]
    frame_tokens = calls["object_frame_0"]["visual_tokens"][0]
    if family == "llava_onevision":
        video_grid = grids["object_video"]["visual_grid_thw"][0]
        frame_grid = [t, *grids["object_frame"]["visual_grid_thw"][0][1:]]
    else:  # tokens per tile side: the official 16 at 448 px; tiny tiles: sqrt(tokens per tile)
        side = int(round((video_tokens // t) ** 0.5))
        rows, cols = case["tiling_hw"]
        video_grid, frame_grid = [t, side, side], [t, rows * side, cols * side]
    system = case["messages"]["object_video"]["system"]
    return {"video": {"frame_size": [tile, tile], "grid": video_grid, "visual_tokens": video_tokens,
                      "temporal_positions": None, "system_prompt": system},
            "frame": {"frame_size": case["frame_canvas"], "grid": frame_grid, "visual_tokens": frame_tokens,
                      "temporal_positions": None, "system_prompt": system}}


def _inspect(tmp_path, family: str, checkpoint: str, case: dict) -> dict:
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, im in enumerate(frames_of(case)):
        im.save(folder / f"{t:05d}.png")
    out = tmp_path / "inspect.json"
    res = CliRunner().invoke(build_app(), ["inspect", "--model", f"{FAMILIES[family]}:{checkpoint}", "--frames", str(folder),
                                           "--expression", case["expression"], "--max-new-tokens", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return json.loads(out.read_text(encoding="utf-8"))


def _check(report: dict, family: str, case: dict) -> None:
    want = official_views(family, case)
    for view in ("video", "frame"):
        got = {k: report["views"][view][k] for k in want[view]}
        assert got == want[view], view
    assert report["prompts"]["object"] == case["messages"]["object_video"]["user_text"]
    assert report["frames"]["key_frame_indices"] == list(range(16))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_inspect_tiny_16_small_frames_shows_official_values(tmp_path, family):
    case = get_case(family, "tiny_f16_48x64")
    _check(_inspect(tmp_path, family, "tiny", case), family, case)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llava_onevision"])
def test_inspect_real_geometry_16_small_frames_shows_official_values(tmp_path, family):
    """``tiny-real``: the released checkpoints' tiles (384 px), so the values are the ones a user
    of the real checkpoints sees (16 x 14 x 14 = 3136 video tokens, a 21 x 27 frame grid; ~2.5
    min of CPU). InternVL's real geometry (16 frames x 12 tiles of 448 px: ~8 min through
    inspect) is checked on the same frames by test_golden_lvi's slow cases instead."""
    case = get_case(family, "real_f16_48x64")
    _check(_inspect(tmp_path, family, "tiny-real", case), family, case)
