"""Golden inputs of the official LLaVA-OneVision and InternVL pipelines (run inside the official stack).

Runs in a venv with the official pins (transformers 4.52.x) and the official repository on
``sys.path``. It applies the official processor patches exactly as
``evaluation/inference_attn_map_llavaov.py`` / ``inference_attn_map_internvl.py`` do (their own
functions from ``model/modeling_*_custom.py``, assigned the same way, ``use_newline = False``
for LLaVA-OneVision), then calls the official prompting functions themselves
(``obj_cls_predict_prompting_{llavaov,internvl}``, ``obj_choice_prompting_*``,
``background_caption_prompting_*``) in the official order, with a stand-in model whose
``generate`` records the exact inputs and returns fixed answers.

Processors are built like the released checkpoints' (LLaVA-OneVision: 384 px SigLIP tiles,
729 tokens, pinpoints up to 6x6 tiles, ``anyres_max_9``, slow image processor, padding right;
InternVL3: 448 px tiles, 256 tokens per tile, ``max_patches`` 12, the fast GotOcr2 processor
the official code patches) -- structure ``real`` -- and like decafbench's ``<family>:tiny``
(32 px tiles) -- structure ``tiny`` -- both with decafbench's tiny tokenizer and the
checkpoints' chat template, so the project's tests compare input ids exactly.

Not run in CI; tools/golden/make_fixtures.py runs it (section ``lvi``, tokenizers exported by
tools/golden/export_lvi.py); see README "Golden-input tests". By hand, inside the official venv:

    python tools/golden/official_lvi.py --official /path/to/DecAF --tokenizers DIR --work /tmp/w --out tests/fixtures/golden
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FRAME_RECIPE, run_length, write_frames  # noqa: E402

#: (name, structure, frames, height, width): the 16 small frames `decaf inspect` is checked on,
#: a DAVIS-size and a YouTube-VOS-size frame (several anyres tiles / InternVL tiles, unpadding,
#: the anyres_max_9 shrink), a portrait frame
CASES = [
    ("real_f16_48x64", "real", 16, 48, 64),
    ("real_f2_480x854", "real", 2, 480, 854),
    ("real_f2_720x1280", "real", 2, 720, 1280),
    ("real_f2_500x280", "real", 2, 500, 280),
    ("tiny_f16_48x64", "tiny", 16, 48, 64),
    ("tiny_f3_40x72", "tiny", 3, 40, 72),
    ("tiny_f2_100x60", "tiny", 2, 100, 60),
]
#: raw answers of the stand-in model (the official code strips and lower-cases them)
ANSWERS = {"object": " Dog \n", "choice": " Dog. ", "background": "grass"}
EXPRESSION = "The Dog running on the left"
MAX_BATCH = 4  # official --attn_max_batch of every released LLaVA-OneVision / InternVL script
MAX_PATCHES = 12  # official --max_patches (InternVL)

TINY = {"llava_onevision": dict(tile=32, patch=4, pinpoints=[[32, 32], [32, 64], [64, 32], [64, 64], [64, 96], [96, 64]]),
        "internvl": dict(tile=32, patch=4)}
REAL = {"llava_onevision": dict(tile=384, patch=14, pinpoints=[[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]),
        "internvl": dict(tile=448, patch=14)}


class RecordingModel:
    """Stands in for the MLLM: records each ``generate`` call's inputs, returns fixed answers."""

    def __init__(self, tokenizer):
        import torch

        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.tok = tokenizer
        self.calls: list[dict] = []
        self.answer = ANSWERS["object"]
        self.model = SimpleNamespace(language_model=SimpleNamespace(visual_token_mask=None))

    def generate(self, **kwargs):
        import torch

        inputs = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
        gen = {k: v for k, v in kwargs.items() if k not in inputs}
        mask = self.model.language_model.visual_token_mask
        self.calls.append({"inputs": inputs, "gen_kwargs": gen, "visual_token_mask": None if mask is None else mask.clone()})
        ids = inputs["input_ids"]
        new = self.tok(self.answer, add_special_tokens=False)["input_ids"] + [self.tok.convert_tokens_to_ids("<|im_end|>")]
        out = torch.tensor([new] * ids.shape[0], dtype=ids.dtype)
        seq = torch.cat([ids, out], dim=1)
        if gen.get("return_dict_in_generate"):
            return SimpleNamespace(sequences=seq, attentions=((torch.zeros(ids.shape[0], 1, 1, 1),),))
        return seq


def load_tokenizer(folder: Path):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def llava_processor(structure: str, tokenizer_dir: Path):
    """Patched exactly as inference_attn_map_llavaov.py does, built like the checkpoint's."""
    from model.modeling_llavaonevision_custom import (llava_imageprocessor_preprocess, llavaov_expand_image_tokens,
                                                      llavaov_get_image_patches, llavaov_get_number_of_image_features,
                                                      llavaov_get_unpadded_features, llavaov_processor_call)
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    LlavaOnevisionProcessor.__call__ = llavaov_processor_call
    LlavaOnevisionProcessor._get_number_of_features = llavaov_get_number_of_image_features
    LlavaOnevisionProcessor._get_unpadded_features = llavaov_get_unpadded_features
    LlavaOnevisionProcessor._expand_image_tokens = llavaov_expand_image_tokens
    LlavaOnevisionImageProcessor.get_image_patches = llavaov_get_image_patches
    LlavaOnevisionImageProcessor.preprocess = llava_imageprocessor_preprocess

    geo = (REAL if structure == "real" else TINY)["llava_onevision"]
    tok = load_tokenizer(tokenizer_dir)
    tok.padding_side = "right"  # official: AutoProcessor.from_pretrained(..., padding_side="right", use_fast=False)
    size = {"height": geo["tile"], "width": geo["tile"]}
    proc = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=geo["pinpoints"]),  # slow (use_fast=False)
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tok, num_image_tokens=(geo["tile"] // geo["patch"]) ** 2, vision_feature_select_strategy="full",
        chat_template=(tokenizer_dir / "chat_template.txt").read_text(encoding="utf-8"), vision_aspect_ratio="anyres_max_9",
    )
    proc.use_newline = False  # official: suppress image & video newline tokens
    return proc, tok


def internvl_processor(structure: str, tokenizer_dir: Path):
    """Patched exactly as inference_attn_map_internvl.py does (no thumbnail), built like the checkpoint's."""
    from model.modeling_intern_vl_custom import _got_ocr2_fast_preprocess_custom
    from transformers import InternVLProcessor, InternVLVideoProcessor
    from transformers.models.got_ocr2.image_processing_got_ocr2_fast import GotOcr2ImageProcessorFast

    GotOcr2ImageProcessorFast._preprocess = _got_ocr2_fast_preprocess_custom
    geo = (REAL if structure == "real" else TINY)["internvl"]
    tok = load_tokenizer(tokenizer_dir)
    size = {"height": geo["tile"], "width": geo["tile"]}
    norm = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    proc = InternVLProcessor(
        image_processor=GotOcr2ImageProcessorFast(size=size, max_patches=MAX_PATCHES, **norm),
        video_processor=InternVLVideoProcessor(size=size, **norm),
        tokenizer=tok, image_seq_length=(geo["tile"] // geo["patch"] // 2) ** 2,
        chat_template=(tokenizer_dir / "chat_template.txt").read_text(encoding="utf-8"),
    )
    return proc, tok


def describe_call(call: dict, family: str) -> dict:
    """What one generate call was given: layout (per sequence), visual mask, pixel inputs."""
    x = call["inputs"]
    ids = x["input_ids"]
    same = bool((ids == ids[0:1]).all())  # frame view: one sequence per frame, identical layouts
    rows = ids[:1] if same else ids
    out = {"batch": int(ids.shape[0]), "length": int(ids.shape[1]), "identical_sequences": same,
           "input_ids": [run_length(row) for row in rows],
           "gen_kwargs": {k: v for k, v in call["gen_kwargs"].items()}}
    mask = call["visual_token_mask"]
    if mask is not None:
        out["visual_tokens"] = [int(v) for v in mask.sum(dim=1)]
        out["visual_positions"] = [run_length(row.int()) for row in mask[: rows.shape[0]]]
    for key in ("pixel_values", "pixel_values_videos"):
        if key in x:
            pv = x[key].float()
            out[key] = {"shape": list(pv.shape), "mean": float(pv.mean()), "std": float(pv.std())}
    for key in ("image_sizes", "image_grid_thw", "video_grid_thw"):
        if key in x:
            out[key] = x[key].tolist()
    return out


def grids(result: dict) -> dict:
    """The official per-view grid bookkeeping (what its attention-map readers reshape to)."""
    out = {}
    for key in ("visual_grid_thw", "tiling_hw"):
        val = result.get(key)
        if val is None:
            continue
        out[key] = [v.tolist() for v in val] if isinstance(val, tuple) else val.tolist()
    return out


def run_case(family: str, case: tuple, work: Path, tokenizer_dir: Path) -> dict:
    import evaluation.llm_prompting_utils as L
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    name, structure, count, height, width = case
    paths = write_frames(work / family / name, count, height, width)
    proc, tok = (llava_processor if family == "llava_onevision" else internvl_processor)(structure, tokenizer_dir)
    recorded: list = []
    original = proc.apply_chat_template

    def recording_template(conversation, *args, **kwargs):
        recorded.append(json.loads(json.dumps(conversation, default=str)))
        return original(conversation, *args, **kwargs)

    proc.apply_chat_template = recording_template
    model = RecordingModel(tok)
    L.MAX_BATCH = MAX_BATCH
    ref_query = EXPRESSION  # the official main loop, step by step
    if not ref_query.endswith("?") and not ref_query.endswith("."):
        ref_query += "."
    results = {}
    if family == "llava_onevision":
        results["object_video"] = L.obj_cls_predict_prompting_llavaov(model, proc, ref_query, paths, video_flag=True)
        results["object_frame"] = L.obj_cls_predict_prompting_llavaov(model, proc, ref_query, paths, video_flag=False)
        obj_list = [*results["object_video"]["obj_cls_list"], *results["object_frame"]["obj_cls_list"]]
        model.answer = ANSWERS["choice"]
        obj_name = L.obj_choice_prompting_llavaov(model, proc, ref_query, obj_list)
        model.answer = ANSWERS["background"]
        results["background_video"] = L.background_caption_prompting_llavaov(model, proc, obj_name, paths, video_flag=True)
        results["background_frame"] = L.background_caption_prompting_llavaov(model, proc, obj_name, paths, video_flag=False)
        tiling = None
    else:
        # official: get_optimal_tiled_canvas(original_size, (448, 448), 1, max_patches); the tiny tile here
        tile = (REAL if structure == "real" else TINY)["internvl"]["tile"]
        tiling_w, tiling_h = get_optimal_tiled_canvas((height, width), (tile, tile), min_image_tiles=1,
                                                      max_image_tiles=MAX_PATCHES)
        tiling = (tiling_h, tiling_w)
        results["object_video"] = L.obj_cls_predict_prompting_internvl(model, proc, ref_query, paths, video_flag=True)
        results["object_frame"] = L.obj_cls_predict_prompting_internvl(model, proc, ref_query, paths, video_flag=False,
                                                                       tiling_hw=tiling)
        obj_list = [*results["object_video"]["obj_cls_list"], *results["object_frame"]["obj_cls_list"]]
        model.answer = ANSWERS["choice"]
        obj_name = L.obj_choice_prompting_internvl(model, proc, ref_query, obj_list)
        model.answer = ANSWERS["background"]
        results["background_video"] = L.background_caption_prompting_internvl(model, proc, obj_name, paths, video_flag=True)
        results["background_frame"] = L.background_caption_prompting_internvl(model, proc, obj_name, paths, video_flag=False,
                                                                             tiling_hw=tiling)
    frame_calls = -(-count // MAX_BATCH)
    # generate calls: video (1), frames (ceil(count / MAX_BATCH)), choice (1), video, frames
    steps = (["object_video"] + [f"object_frame_{i}" for i in range(frame_calls)] + ["choice", "background_video"]
             + [f"background_frame_{i}" for i in range(frame_calls)])
    calls = {s: describe_call(c, family) for s, c in zip(steps, model.calls)}
    # apply_chat_template calls: one per generate call (a batch of messages each), choice one
    messages = {}
    for step, msgs in zip(steps, recorded):
        msg = msgs[0] if msgs and isinstance(msgs[0], list) else msgs
        content = msg[-1]["content"]
        messages[step] = {"roles": [m["role"] for m in msg],
                          "system": next((m["content"][0]["text"] for m in msg if m["role"] == "system"), None),
                          "user_text": next(c["text"] for c in content if c.get("type") == "text"),
                          "media": [c["type"] for c in content if c.get("type") != "text"]}
    geo = (REAL if structure == "real" else TINY)[family]
    if family == "llava_onevision":  # the anyres canvas the official get_image_patches resizes and pads to
        from transformers.image_processing_utils import select_best_resolution

        canvas = [int(v) for v in select_best_resolution((height, width), geo["pinpoints"])]
    else:
        canvas = [tiling[0] * geo["tile"], tiling[1] * geo["tile"]]
    return {"case": name, "structure": structure, "tile": geo["tile"], "frame_canvas": canvas,
            "frames": {"count": count, "height": height, "width": width, "recipe": FRAME_RECIPE},
            "expression": EXPRESSION, "answers": ANSWERS, "candidates": obj_list, "object_word": obj_name,
            "tiling_hw": None if tiling is None else list(tiling),
            "official_grids": {k: grids(v) for k, v in results.items()},
            "messages": messages, "calls": calls}


FAMILIES = ("llava_onevision", "internvl")


def write_compact(path: Path, data: dict) -> None:
    """One JSON line per case (the run-length layouts are long; keep the fixtures small)."""
    cases = data.pop("cases")
    head = json.dumps(data, ensure_ascii=False, separators=(",", ":"))[:-1]
    body = ",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{head},"cases":[\n{body}\n]}}\n', encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="checkout of github.com/HYUNJS/DecAF")
    ap.add_argument("--tokenizers", "--tokenizer", dest="tokenizers", type=Path, required=True,
                    help="decafbench's tiny tokenizers (llava_onevision/, internvl/; saved by make_fixtures.py)")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for the synthetic frames")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*", default=list(FAMILIES))
    ap.add_argument("--meta", type=json.loads, default={}, help="JSON merged into every fixture (commit, tokenizer digest)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.official))
    import transformers

    for family in args.only:
        # shared keys (official commit) plus this family's own (its tokenizer digest)
        meta = {k: v for k, v in args.meta.items() if k not in FAMILIES}
        meta.update(args.meta.get(family, {}) if isinstance(args.meta.get(family), dict) else {})
        cases = [run_case(family, c, args.work, args.tokenizers / family) for c in CASES]
        write_compact(args.out / f"{family}.json", {"family": family, "stack": {"transformers": transformers.__version__},
                                                 "max_batch": MAX_BATCH, "max_patches": MAX_PATCHES, **meta, "cases": cases})


if __name__ == "__main__":
    main()
