"""``decaf inspect`` and ``--model-args``: what the model is given, against the official values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from decafbench.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "bedroom"
EXPR = "The girl in the blue skirt jumping on the bed"


def _write_frames(folder: Path, n: int, size: tuple[int, int], source: Path | None = None) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    real = sorted(source.glob("*.jpg")) if source is not None and source.is_dir() else []
    for i in range(n):
        if real:
            im = Image.open(real[i % len(real)]).convert("RGB").resize((size[1], size[0]))
        else:
            im = Image.fromarray(rng.randint(0, 255, (size[0], size[1], 3), dtype=np.uint8))
        im.save(folder / f"{i:05d}.png")
    return folder


def _inspect(args):
    from typer.testing import CliRunner

    from decafbench.cli import build_app

    res = CliRunner().invoke(build_app(), ["inspect", *args])
    return res


# -- model args ---------------------------------------------------------------------------------
def test_parse_model_args_types():
    from decafbench.modelargs import format_model_args, parse_model_args

    got = parse_model_args("video_tokens_per_frame=400, fps=2.5,attn_implementation=eager,flag=true,x=none")
    assert got == {"video_tokens_per_frame": 400, "fps": 2.5, "attn_implementation": "eager", "flag": True, "x": None}
    assert isinstance(got["video_tokens_per_frame"], int)
    assert parse_model_args("") == {} and parse_model_args(None) == {}
    assert parse_model_args({"fps": "2"}) == {"fps": 2}  # sweep files: mappings, strings typed the same way
    assert format_model_args({"b": True, "a": 1}) == "a=1,b=true"
    for bad in ("novalue", "=3", "a=1,a=2", "9x=1"):
        with pytest.raises(InputError):
            parse_model_args(bad)


def test_model_args_checked_per_family():
    from decafbench.adapters.qwen2_vl import Qwen2VLAdapter
    from decafbench.modelargs import check_model_args

    ok = check_model_args(Qwen2VLAdapter, {"video_tokens_per_frame": 400, "fps": 2, "frame_scale": 2})
    assert ok == {"video_tokens_per_frame": 400, "fps": 2.0, "frame_scale": 2} and isinstance(ok["fps"], float)
    with pytest.raises(InputError, match=r"unknown model arg\(s\) for qwen2-vl: 'video_tokens'.*did you mean 'video_tokens_per_frame'"):
        check_model_args(Qwen2VLAdapter, {"video_tokens": 400})
    with pytest.raises(InputError, match="max_num.*known:"):
        check_model_args(Qwen2VLAdapter, {"max_num": 12, "fps": 2})
    with pytest.raises(InputError, match="must be int"):
        check_model_args(Qwen2VLAdapter, {"frame_scale": "big"})


def test_inspect_unknown_model_arg_is_one_line_error(tmp_path):
    frames = _write_frames(tmp_path / "f", 4, (56, 84))
    res = _inspect(["--model", "qwen2-vl:tiny", "--frames", str(frames), "-e", "a cat", "--model-args", "tokens=3"])
    assert res.exit_code == 2 and "unknown model arg(s) for qwen2-vl: 'tokens'" in res.output


def test_inspect_missing_frames_folder(tmp_path):
    res = _inspect(["--frames", str(tmp_path / "nope"), "-e", "a cat"])
    assert res.exit_code == 2 and "missing frames folder" in res.output


# -- the report ---------------------------------------------------------------------------------
def test_inspect_tiny_25_official_layout(tmp_path):
    """16 small frames: official prompt texts, candidates, and Qwen2.5-VL's 2 fps time ids."""
    from decafbench.adapters.qwen2_vl import smart_resize
    from decafbench.prompts import get_prompts

    frames = _write_frames(tmp_path / "f", 20, (96, 128))
    out = tmp_path / "inspect.json"
    res = _inspect(["--model", "qwen2-vl:tiny-2.5", "--frames", str(frames), "-e", EXPR, "--max-new-tokens", "2",
                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "model input per view" in res.output and "object prompt (user message)" in res.output
    rep = json.loads(out.read_text())
    expr = EXPR + "."
    v0 = get_prompts("v0")
    assert rep["prompts"]["object"] == v0.object.format(sent=expr.lower())
    assert rep["prompts"]["background"] == v0.background.format(obj_name=rep["object_word"])
    assert rep["frames"]["key_frame_indices"] == [int(i) for i in np.linspace(0, 19, 16)]
    ans = rep["answers"]
    assert rep["candidates"] == [t.strip() for t in ans["object_video"] + ans["object_frame"]] and len(rep["candidates"]) == 17
    assert rep["prompts"]["choice"] == v0.choice.format(ref_query=expr.lower(), obj_cls_list=",".join(c.lower() for c in rep["candidates"]))
    assert rep["object_word"] == ans["choice"].strip().lower()
    video, frame = rep["views"]["video"], rep["views"]["frame"]
    h, w = smart_resize(96, 128, 28, 4 * 784, 16 * 784)  # tiny budget: 16 tokens per frame
    assert video["frame_size"] == [h, w] and video["grid"] == [8, h // 28, w // 28]
    assert video["visual_tokens"] == 8 * (h // 28) * (w // 28)
    assert video["temporal_positions"] == [0, 2, 4, 6, 8, 10, 12, 14]
    assert video["extra"]["second_per_grid_ts"] == [1.0] and video["extra"]["tokens_per_second"] == 2
    assert frame["frame_size"] == [2 * h, 2 * w] and frame["grid"] == [16, 2 * h // 28, 2 * w // 28]
    assert frame["visual_tokens"] == 4 * (h // 28) * (w // 28) and frame["temporal_positions"] == [0] * 16
    assert video["system_prompt"] is None and frame["system_prompt"] is None
    assert rep["adapter_config"]["dtype"] == "float32"  # --dtype auto on CPU


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint,temporal", [("tiny-2.5", [0, 2, 4, 6, 8, 10, 12, 14]), ("tiny", list(range(8)))])
def test_inspect_640x480_published_budget(tmp_path, checkpoint, temporal):
    """16 real 640x480 frames at the published 400-token budget: 17x23 = 391 tokens per frame
    (official qwen_vl_utils), frame view 34x46 at 952x1288, and the official time ids."""
    frames = _write_frames(tmp_path / "f", 16, (480, 640), SHARED)
    out = tmp_path / "inspect.json"
    res = _inspect(["--model", f"qwen2-vl:{checkpoint}", "--frames", str(frames), "-e", EXPR, "--max-new-tokens", "1",
                    "--model-args", "video_tokens_per_frame=400", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    video, frame = rep["views"]["video"], rep["views"]["frame"]
    assert video["frame_size"] == [476, 644] and video["grid"] == [8, 17, 23] and video["visual_tokens"] == 8 * 391
    assert video["temporal_positions"] == temporal
    assert frame["frame_size"] == [952, 1288] and frame["grid"] == [16, 34, 46] and frame["visual_tokens"] == 1564
    assert rep["model_args"] == {"video_tokens_per_frame": 400}
    assert rep["adapter_config"]["video_tokens_per_frame"] == 400


# -- run settings (issue 9 items 3, 7, 8) ----------------------------------------------------------
def test_run_config_fidelity_defaults_and_resolution():
    from decafbench.config import RunConfig

    c = RunConfig.from_mapping({})
    assert c.dtype == "auto" and c.max_new_tokens == 128 and c.prefix_reuse is None
    assert c.effective_dtype == "float32" and c.effective_prefix_reuse is True  # CPU: float32, reuse exact
    gpu = RunConfig.from_mapping({"device": "cuda"})
    assert gpu.effective_dtype == "bfloat16" and gpu.effective_prefix_reuse is False  # half precision: off
    assert RunConfig.from_mapping({"device": "cuda", "prefix_reuse": True}).effective_prefix_reuse is True  # opt-in
    assert RunConfig.from_mapping({"prefix_reuse": True, "reuse": False}).effective_prefix_reuse is False
    m = RunConfig.from_mapping({"model_args": "video_tokens_per_frame=32,fps=2"}).to_manifest()
    assert m["model_args"] == {"video_tokens_per_frame": 32, "fps": 2}
    assert m["effective"] == {"dtype": "float32", "prefix_reuse": True}


def test_run_config_rejects_unknown_model_args_before_loading():
    from decafbench.config import RunConfig

    c = RunConfig.from_mapping({"model_args": {"video_tokens": 3}})
    with pytest.raises(InputError, match=r"--model-args: unknown model arg\(s\) for qwen2-vl: 'video_tokens'"):
        c.validate()
    with pytest.raises(InputError, match="dtype"):
        RunConfig.from_mapping({"dtype": "half"}).validate()
