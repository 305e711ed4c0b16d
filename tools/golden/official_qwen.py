"""Golden inputs of the official Qwen2-VL / Qwen2.5-VL pipeline (run inside the official stack).

Runs in a venv with the official pins (transformers 4.52.1, qwen-vl-utils 0.0.11) and the
official repository on ``sys.path``. It calls the official prompting functions themselves
(``evaluation.llm_prompting_utils.obj_cls_predict_prompting``, ``obj_choice_prompting``,
``background_caption_prompting``) in the official order of
``evaluation/inference_attn_map_qwenvl.py``, with a stand-in model whose ``generate`` records
the exact inputs it is given and returns fixed answers. Rotary position ids come from the
stock 4.52 model's ``get_rope_index`` on those inputs (a tiny config of the real class, with
the released checkpoints' ``tokens_per_second`` = 2 for 2.5). The processor is built like the
released checkpoints' (``use_fast=False``, padding right, min/max pixels 3136 / 12845056) with
decafbench's tiny tokenizer, so the project's tests can compare input ids exactly.

Not run in CI; see tools/golden/make_fixtures.py and README "Golden-input tests".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FRAME_RECIPE, int_digest, run_length, write_frames, write_json  # noqa: E402

#: (name, frames, height, width, video budget): the headline 640x480 case at the published
#: 400-token budget, a shrink at a tiny budget, an odd frame count, and an enlargement to min_pixels
CASES = [
    ("f16_480x640_b400", 16, 480, 640, 400),
    ("f16_112x140_b16", 16, 112, 140, 16),
    ("f15_64x90_b16", 15, 64, 90, 16),
    ("f4_20x30_b16", 4, 20, 30, 16),
]
#: raw answers the stand-in model gives (case and spaces on purpose: the official code strips
#: them, lower-cases the candidates and the object word)
ANSWERS = {"object_video": " Girl \n", "object_frame": ["girl", " Child", "GIRL ", "person"], "choice": " Girl. ",
           "background": "bed"}
EXPRESSION = "The girl in the Blue skirt jumping on the bed"
RESIZE_SCALE = 2  # official --attn_resize_scale in every released script


class RecordingModel:
    """Stands in for the MLLM: records each generate call's inputs, returns fixed answers."""

    def __init__(self, tokenizer, answers):
        import torch

        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.tok = tokenizer
        self.answers = answers
        self.calls: list[dict] = []
        self.model = SimpleNamespace(language_model=SimpleNamespace(visual_token_mask=None))

    def generate(self, **kwargs):
        import torch

        inputs = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor) or k == "second_per_grid_ts"}
        gen = {k: v for k, v in kwargs.items() if k not in inputs}
        self.calls.append({"inputs": inputs, "gen_kwargs": gen})
        ids = inputs["input_ids"]
        texts = self.answers.pop(0)
        texts = texts if isinstance(texts, list) else [texts] * ids.shape[0]
        new = [self.tok(t, add_special_tokens=False)["input_ids"] + [self.tok.convert_tokens_to_ids("<|im_end|>")]
               for t in texts[: ids.shape[0]]]
        width = max(len(n) for n in new)
        pad = self.tok.pad_token_id
        out = torch.tensor([n + [pad] * (width - len(n)) for n in new], dtype=ids.dtype)
        seq = torch.cat([ids, out], dim=1)
        if gen.get("return_dict_in_generate"):
            return SimpleNamespace(sequences=seq, attentions=((torch.zeros(ids.shape[0], 1, 1, 1),),))
        return seq


def build_processor(version: str, tokenizer_dir: Path, chat_template: str):
    from transformers import (Qwen2_5_VLProcessor, Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen2VLProcessor,
                              Qwen2VLVideoProcessor)

    tok = Qwen2TokenizerFast.from_pretrained(str(tokenizer_dir))
    tok.padding_side = "right"  # official: AutoProcessor.from_pretrained(..., padding_side="right", use_fast=False)
    pixels = dict(min_pixels=3136, max_pixels=12845056)  # released checkpoints' preprocessor_config.json
    cls = Qwen2_5_VLProcessor if version == "2.5" else Qwen2VLProcessor
    proc = cls(image_processor=Qwen2VLImageProcessor(**pixels), video_processor=Qwen2VLVideoProcessor(**pixels),
               tokenizer=tok, chat_template=chat_template)
    return proc, tok


def rope_model(version: str, tok):
    """A tiny stock 4.52 model of the real class: only its ``get_rope_index`` is used."""
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=2, image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                  rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
    if version == "2.5":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=64, tokens_per_second=2)
        return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(vision_config=vision, **common)).eval()
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    vision = dict(depth=1, embed_dim=32, hidden_size=64, num_heads=4)
    return Qwen2VLForConditionalGeneration(Qwen2VLConfig(vision_config=vision, **common)).eval()


def describe_call(call: dict, model, view: str | None) -> dict:
    """What one generate call was given: layout, grids, timing, rotary ids (digests + excerpts)."""
    import torch

    x = call["inputs"]
    ids = x["input_ids"]
    out = {"batch": int(ids.shape[0]), "length": int(ids.shape[1]),
           "input_ids": [run_length(row) for row in ids] if view != "frame" else [run_length(ids[0])],
           "identical_sequences": bool((ids == ids[0:1]).all()),
           "gen_kwargs": {k: v for k, v in call["gen_kwargs"].items()}}
    if view is None:
        return out
    key = "video_grid_thw" if view == "video" else "image_grid_thw"
    out["grid_thw"] = x[key].tolist()
    spg = x.get("second_per_grid_ts")
    out["second_per_grid_ts"] = None if spg is None else [float(v) for v in (spg.tolist() if hasattr(spg, "tolist") else spg)]
    with torch.no_grad():
        kw = {"image_grid_thw": x.get("image_grid_thw"), "video_grid_thw": x.get("video_grid_thw"),
              "attention_mask": x.get("attention_mask")}
        if model.config.model_type == "qwen2_5_vl":
            kw["second_per_grid_ts"] = x.get("second_per_grid_ts")
        pos, _ = model.model.get_rope_index(ids, **kw)
    pad = model.config.video_token_id if view == "video" else model.config.image_token_id
    visual = ids[0] == pad
    t, gh, gw = (int(v) for v in x[key][0])
    hw = (gh // 2) * (gw // 2)
    temporal = pos[0, 0][visual].reshape(t, hw)[:, 0]
    out["visual_tokens"] = int(visual.sum())
    out["temporal_positions"] = (temporal - temporal[0]).tolist()
    out["position_ids_digest"] = int_digest(pos[:, 0].flatten().tolist())
    out["position_ids_last8"] = pos[:, 0, -8:].tolist()
    pv = x["pixel_values_videos" if view == "video" else "pixel_values"].float()
    out["pixel_values"] = {"shape": list(pv.shape), "mean": float(pv.mean()), "std": float(pv.std()),
                           "first8": pv.flatten()[:8].tolist()}
    return out


def run_case(version: str, case: tuple, work: Path, tokenizer_dir: Path, chat_template: str) -> dict:
    import evaluation.llm_prompting_utils as L

    name, count, height, width, budget = case
    paths = write_frames(work / name, count, height, width)
    proc, tok = build_processor(version, tokenizer_dir, chat_template)
    recorded_messages: list = []
    original = proc.apply_chat_template

    def recording_template(conversation, *args, **kwargs):
        recorded_messages.append(json.loads(json.dumps(conversation, default=str)))
        return original(conversation, *args, **kwargs)

    proc.apply_chat_template = recording_template
    answers = [ANSWERS["object_video"], ANSWERS["object_frame"] * 4, ANSWERS["choice"], ANSWERS["background"],
               ANSWERS["background"]]
    model = RecordingModel(tok, answers)
    L.MAX_BATCH = 16  # official --attn_max_batch; 16 keeps the frame view one call (values are per sequence)
    # the official main loop (inference_attn_map_qwenvl.py), step by step
    ref_query = EXPRESSION
    if not ref_query.endswith("?") and not ref_query.endswith("."):
        ref_query += "."
    obj_v = L.obj_cls_predict_prompting(model, proc, ref_query, paths, video_flag=True, tokens_per_frame=budget)
    grid_t, grid_h, grid_w = obj_v["visual_grid_thw"][0].tolist()
    grid_h, grid_w = grid_h // 2, grid_w // 2
    rh, rw = grid_h * 28 * RESIZE_SCALE, grid_w * 28 * RESIZE_SCALE
    obj_f = L.obj_cls_predict_prompting(model, proc, ref_query, paths, video_flag=False,
                                        tokens_per_frame=budget * RESIZE_SCALE ** 2, resized_height=rh, resized_width=rw)
    obj_list = [*obj_v["obj_cls_list"], *obj_f["obj_cls_list"]]
    obj_name = L.obj_choice_prompting(model, proc, ref_query, obj_list)
    L.background_caption_prompting(model, proc, obj_name, paths, video_flag=True, tokens_per_frame=budget,
                                   ref_query=ref_query)
    L.background_caption_prompting(model, proc, obj_name, paths, video_flag=False,
                                   tokens_per_frame=budget * RESIZE_SCALE ** 2, resized_height=rh, resized_width=rw,
                                   ref_query=ref_query)
    rm = rope_model(version, tok)
    views = ["video", "frame", None, "video", "frame"]
    steps = ["object_video", "object_frame", "choice", "background_video", "background_frame"]
    calls = {s: describe_call(c, rm, v) for s, c, v in zip(steps, model.calls, views)}
    texts = {}
    # apply_chat_template calls: 1 (object, video), count (object, one per frame), 1 (choice),
    # 1 (background, video), count (background, frames)
    firsts = [0, 1, 1 + count, 2 + count, 3 + count]
    for step, msgs in zip(steps, [recorded_messages[i] for i in firsts]):
        msg = msgs[0] if isinstance(msgs[0], list) else msgs
        content = msg[-1]["content"]
        texts[step] = {"user_text": next(c["text"] for c in content if c.get("type") == "text"),
                       "media": [{k: v for k, v in c.items() if k not in ("video", "image", "text")} for c in content
                                 if c.get("type") != "text"],
                       "roles": [m["role"] for m in msg]}
    from PIL import Image

    video_size = Image.open(paths[0]).size
    return {"case": name, "frames": {"count": count, "height": height, "width": width, "recipe": FRAME_RECIPE},
            "video_tokens_per_frame": budget, "frame_resize": [rh, rw], "expression": EXPRESSION,
            "answers": ANSWERS, "candidates": obj_list, "object_word": obj_name,
            "messages": texts, "calls": calls, "input_frame_size": [video_size[1], video_size[0]]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--official", type=Path, required=True, help="checkout of github.com/HYUNJS/DecAF")
    ap.add_argument("--tokenizer", type=Path, required=True, help="decafbench's tiny Qwen tokenizer (saved by make_fixtures.py)")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for the synthetic frames")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--meta", type=json.loads, default={}, help="JSON merged into every fixture (commit, tokenizer digest)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.official))
    import qwen_vl_utils
    import transformers

    from qwen_vl_utils import smart_resize

    table = []
    for h, w in [(480, 640), (540, 960), (1080, 1920), (720, 1280), (112, 140), (64, 90), (20, 30), (1000, 1000),
                 (360, 640), (640, 360), (30, 2000), (952, 1288)]:
        for budget in (16, 64, 400, 768, 1600):
            table.append([h, w, budget, *smart_resize(h, w, factor=28, min_pixels=4 * 28 * 28, max_pixels=budget * 28 * 28)])
    write_json(args.out / "qwen_smart_resize.json", {"source": "qwen_vl_utils.smart_resize(h, w, factor=28, "
                                                     "min_pixels=4*28*28, max_pixels=budget*28*28)",
                                                     "rows [h, w, budget, resized_h, resized_w]": table})
    chat_template = (args.tokenizer / "chat_template.txt").read_text(encoding="utf-8")
    for version, fname in (("2", "qwen2_vl.json"), ("2.5", "qwen2_5_vl.json")):
        cases = [run_case(version, c, args.work / version, args.tokenizer, chat_template) for c in CASES]
        write_json(args.out / fname, {"family": "qwen2-vl", "version": version,
                                      "stack": {"transformers": transformers.__version__,
                                                "qwen_vl_utils": getattr(qwen_vl_utils, "__version__", "0.0.11")},
                                      **args.meta, "cases": cases})


if __name__ == "__main__":
    main()
