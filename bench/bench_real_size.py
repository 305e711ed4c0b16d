"""Real-size cost of one expression per MLLM family (issue 15): real architectures, random weights.

Weights cannot be downloaded here, but cost does not depend on their values: each model below
is the stock ``transformers`` class built from the released checkpoint's configuration numbers
(``REAL``: widths, layers, heads, kv heads, intermediate sizes, vision tower, vocabulary, each
with its source) with random weights, wrapped in the project's own adapter (the same class a
real checkpoint loads into) with a locally trained tokenizer (the tokenizer's size does not
matter; the model's embedding and output head have the real vocabulary). Inputs are the real
budgets: 16 key frames of 854x480 (``/work/shared/data/bedroom``), 400 video tokens per frame
and 1600 per image (Qwen), 2x2-pooled 384 px SigLIP tiles and anyres_max_9 (LLaVA-OneVision),
448 px tiles, up to 12 per frame (InternVL).

One expression is the pipeline's own flow (``extract_maps``): open video view, open frame view,
object prompt on both, object choice (text only), background prompt on both; each
``attend`` prefills with streaming rollout of layers ``[N//2, N)`` and decodes greedily up to
``--max-new-tokens`` (the run default, 8; random weights rarely stop early, so this is the
upper end of what a real model generates). Three reuse modes: ``reuse`` (default: vision
once per view + shared-prefix prefill), ``no-prefix-reuse`` and ``no-reuse`` (vision per prompt).

Stages are timed with forward hooks (CUDA-synchronised on a GPU): ``vision`` = the vision
tower's forward; ``prefill`` = language-model forwards with more than one query token (plus
the output head in that phase), less ``rollout`` = :class:`StreamingRollout.observe` (the
float32 rollout reduce of the captured attention); ``generation`` = language-model forwards of
one token (decode steps) plus their output head; ``other`` = wall time less those (processor,
tokenizer, embedding splice, cache copies).

Composition (CPU only; ``--layers 0 --frame-subset 16`` measures everything directly, the
GPU command does): a 2-core CPU cannot run a full expression of a 2-3B model in the time a
session has, so ``--layers K`` builds the real widths with K decoder layers and K vision
blocks, times every layer and block with hooks, and composes the full depth per stage as
``measured - sum(measured layers) + sum over kinds(measured layers of that kind * N_kind/K_kind)``
(kinds: rolled-out vs plain decoder layers, full vs windowed Qwen2.5 vision blocks; rollout
scales by rolled-out layers); ``--frame-subset n`` runs the frame view on n of the 16 frames
(each frame is its own sequence) and scales that view's times and prefilled tokens by 16/n.
Composed figures are labelled as such, with the layers and frames actually run.
Memory: the process's peak RSS (a sampling thread, CPU) or ``max_memory_allocated`` (GPU);
with ``--layers`` the full model's weights are added (exact parameter count of the full
config, built on the meta device) in place of the built ones, labelled composed.

    python bench/bench_real_size.py --quick                       # configs only (make bench --quick)
    python bench/bench_real_size.py --models llava-ov-0.5b --layers 2 --frame-subset 1   # CPU units
    python bench/bench_real_size.py --device cuda --dtype bfloat16 --layers 0 --frame-subset 16 \\
        --models all --attn sdpa,eager --json real_size_gpu.json   # a GPU machine: everything measured
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

FRAMES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bedroom"  # ../shared beside the repo

# --------------------------------------------------------------------------------------------
# The released configurations' numbers (config.json of each hub checkpoint).
# --------------------------------------------------------------------------------------------
_QWEN2_VIT = dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
_QWEN25_VIT = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14, spatial_merge_size=2,
                   temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31])
_SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16, image_size=384, patch_size=14,
                      vision_use_head=False)
_INTERN_VIT_300M = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                        image_size=[448, 448], patch_size=[14, 14])


def _text(hidden: int, inter: int, layers: int, heads: int, kv: int, vocab: int, tie: bool, theta: float = 1e6) -> dict:
    return dict(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv, vocab_size=vocab, tie_word_embeddings=tie, rope_theta=theta)


#: name -> family (adapter), source, text config, vision config; smallest member of each family first
REAL: dict[str, dict] = {
    "qwen2-vl-2b": dict(family="qwen2-vl", version="2", source="Qwen/Qwen2-VL-2B-Instruct config.json",
                        text=_text(1536, 8960, 28, 12, 2, 151936, True), vision={**_QWEN2_VIT, "hidden_size": 1536}),
    "qwen2-vl-7b": dict(family="qwen2-vl", version="2", source="Qwen/Qwen2-VL-7B-Instruct config.json",
                        text=_text(3584, 18944, 28, 28, 4, 152064, False), vision={**_QWEN2_VIT, "hidden_size": 3584}),
    "qwen2.5-vl-3b": dict(family="qwen2-vl", version="2.5", source="Qwen/Qwen2.5-VL-3B-Instruct config.json",
                          text=_text(2048, 11008, 36, 16, 2, 151936, True), vision={**_QWEN25_VIT, "out_hidden_size": 2048}),
    "qwen2.5-vl-7b": dict(family="qwen2-vl", version="2.5", source="Qwen/Qwen2.5-VL-7B-Instruct config.json",
                          text=_text(3584, 18944, 28, 28, 4, 152064, False), vision={**_QWEN25_VIT, "out_hidden_size": 3584}),
    "llava-ov-0.5b": dict(family="llava-onevision", source="llava-hf/llava-onevision-qwen2-0.5b-ov-hf config.json",
                          text=_text(896, 4864, 24, 14, 2, 151936, True), vision=_SIGLIP_SO400M),
    "llava-ov-7b": dict(family="llava-onevision", source="llava-hf/llava-onevision-qwen2-7b-ov-hf config.json",
                        text=_text(3584, 18944, 28, 28, 4, 152128, False), vision=_SIGLIP_SO400M),
    "internvl3-1b": dict(family="internvl", source="OpenGVLab/InternVL3-1B-hf config.json",
                         text=_text(896, 4864, 24, 14, 2, 151674, True), vision=_INTERN_VIT_300M),
    "internvl3-2b": dict(family="internvl", source="OpenGVLab/InternVL3-2B-hf config.json",
                         text=_text(1536, 8960, 28, 12, 2, 151674, True), vision=_INTERN_VIT_300M),
    "internvl3-8b": dict(family="internvl", source="OpenGVLab/InternVL3-8B-hf config.json",
                         text=_text(3584, 18944, 28, 28, 4, 151674, False), vision=_INTERN_VIT_300M),
}
SMALLEST = ["qwen2-vl-2b", "qwen2.5-vl-3b", "llava-ov-0.5b", "internvl3-1b"]
MODES = {"reuse": (True, True), "no-prefix-reuse": (True, False), "no-reuse": (False, False)}
EXPRESSION = "the person sitting on the bed"
NUM_FRAMES = 16


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def _vision_depth_key(vision: dict) -> str:
    return "depth" if "depth" in vision else "num_hidden_layers"


def _truncate(spec: dict, layers: int) -> tuple[dict, dict]:
    """Text and vision config numbers with ``layers`` decoder layers and vision blocks (0: all).
    A truncated Qwen2.5 tower keeps both block kinds: its last block is a full-attention one."""
    text, vision = dict(spec["text"]), copy.deepcopy(spec["vision"])
    if layers:
        text["num_hidden_layers"] = min(layers, text["num_hidden_layers"])
        key = _vision_depth_key(vision)
        vision[key] = min(layers, vision[key])
        if "fullatt_block_indexes" in vision:
            vision["fullatt_block_indexes"] = [vision[key] - 1]
    return text, vision


def _with(sub: Any, numbers: dict) -> Any:
    """A sub-config of the same class as ``sub`` (the tiny builder's, so token ids and
    family defaults carry over) with the real numbers."""
    base = {k: v for k, v in sub.to_dict().items() if k not in ("transformers_version", "architectures")}
    if "rope_theta" in numbers and "rope_parameters" in base and isinstance(base["rope_parameters"], dict):
        rope = dict(base["rope_parameters"])
        rope["rope_theta"] = numbers["rope_theta"]
        if "mrope_section" in rope:  # Qwen2(.5)-VL: [16, 24, 24] for head_dim 128
            hd = numbers["hidden_size"] // numbers["num_attention_heads"]
            rope["mrope_section"] = [hd // 8, hd * 3 // 16, hd * 3 // 16]
        numbers = {k: v for k, v in numbers.items() if k != "rope_theta"}
        numbers["rope_parameters"] = rope
    for derived in ("initializer_range", "layer_types", "head_dim", "max_window_layers"):
        base.pop(derived, None)  # derived from the numbers (or tiny-specific): recomputed
    return type(sub)(**{**base, **numbers})


def _tiny(name: str) -> tuple[Any, Any]:
    """The family's offline builder: processor (real geometry) + tokenizer + a tiny model whose
    config carries the token ids (one per family and version: the tokenizer is trained here)."""
    spec = REAL[name]
    return _tiny_family(spec["family"], spec.get("version", ""))


@functools.lru_cache(maxsize=None)
def _tiny_family(family: str, version: str) -> tuple[Any, Any]:
    spec = {"family": family, "version": version}
    if spec["family"] == "qwen2-vl":
        from decafbench.adapters.qwen2_vl_tiny import build_tiny

        return build_tiny(version=spec["version"])
    if spec["family"] == "llava-onevision":
        from decafbench.adapters.llava_onevision import build_tiny

        return build_tiny(structure="real")
    from decafbench.adapters.internvl import build_tiny

    return build_tiny(structure="real")


def stock_model(name: str) -> Any:
    """A model of the family's stock class at its default config, on the meta device (no
    memory, no tokenizer): stands in for the tiny model where only the structure matters."""
    import torch
    import transformers as tf

    spec = REAL[name]
    classes = {("qwen2-vl", "2"): ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration"),
               ("qwen2-vl", "2.5"): ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration"),
               ("llava-onevision", ""): ("LlavaOnevisionConfig", "LlavaOnevisionForConditionalGeneration"),
               ("internvl", ""): ("InternVLConfig", "InternVLForConditionalGeneration")}
    cfg_name, model_name = classes[(spec["family"], spec.get("version", ""))]
    cfg = getattr(tf, cfg_name)()
    for sub in ("text_config", "vision_config"):
        small = {"depth" if sub == "vision_config" and hasattr(getattr(cfg, sub), "depth") else "num_hidden_layers": 1}
        setattr(cfg, sub, _with(getattr(cfg, sub), small))
    with torch.device("meta"):
        return getattr(tf, model_name)(cfg)


def real_config(name: str, tiny_model: Any, layers: int = 0, attn: str = "sdpa") -> Any:
    spec = REAL[name]
    text, vision = _truncate(spec, layers)
    cfg = copy.deepcopy(tiny_model.config)
    cfg.text_config = _with(cfg.text_config, text)
    cfg.vision_config = _with(cfg.vision_config, vision)
    if hasattr(cfg, "tie_word_embeddings"):
        cfg.tie_word_embeddings = text["tie_word_embeddings"]
    cfg.initializer_range = 0.02
    cfg._attn_implementation = attn
    return cfg


def count_params(name: str, tiny_model: Any) -> int:
    """Exact parameter count of the full real config (built on the meta device: no memory)."""
    import torch

    cfg = real_config(name, tiny_model, layers=0)
    with torch.device("meta"):
        model = type(tiny_model)(cfg)
    return sum(p.numel() for p in model.parameters())


def build(name: str, dtype: str, device: str, layers: int, attn: str) -> tuple[Any, Any, int]:
    import torch

    from decafbench.adapters.common import torch_dtype

    tiny, processor = _tiny(name)
    full_params = count_params(name, tiny)
    cfg = real_config(name, tiny, layers=layers, attn=attn)
    torch.manual_seed(0)
    model = type(tiny)._from_config(cfg, dtype=torch_dtype(dtype), attn_implementation=attn)
    model.generation_config = copy.deepcopy(tiny.generation_config)
    return model.to(device).eval(), processor, full_params


def make_adapter(name: str, model: Any, processor: Any, dtype: str, device: str, reuse: bool, prefix_reuse: bool) -> Any:
    family = REAL[name]["family"]
    kw = dict(checkpoint=f"real-size:{name}", dtype=dtype, device=device, reuse=reuse, prefix_reuse=prefix_reuse)
    if family == "qwen2-vl":
        from decafbench.adapters.qwen2_vl import Qwen2VLAdapter

        # decaf run's defaults: 400 video tokens per frame (frames shrunk to it, never enlarged,
        # as qwen_vl_utils does) and the frame view at 2x the video grid per side
        return Qwen2VLAdapter(model, processor, video_tokens_per_frame=400, **kw)
    if family == "llava-onevision":
        from decafbench.adapters.llava_onevision import LlavaOneVisionAdapter

        return LlavaOneVisionAdapter(model, processor, **kw)
    from decafbench.adapters.internvl import InternVLAdapter

    return InternVLAdapter(model, processor, **kw)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
def _largest_modulelist(module: Any) -> Any:
    from torch import nn

    lists = [m for m in module.modules() if isinstance(m, nn.ModuleList)]
    return max(lists, key=len)


def _seq_len(args: tuple, kwargs: dict) -> int:
    for key in ("input_ids", "inputs_embeds", "hidden_states"):
        t = kwargs.get(key)
        if t is not None and hasattr(t, "shape") and t.dim() >= 2:
            return int(t.shape[1])
    for t in args:
        if hasattr(t, "shape") and t.dim() >= 2:
            return int(t.shape[1])
    return 1


class StageTimer:
    """Forward hooks that split wall time into stages, per scope (video / frame / text)."""

    def __init__(self, model: Any, vision: Any, layers_rolled: range, sync: bool) -> None:
        from decafbench.adapters.attention import language_model

        self.model, self.vision, self.sync = model, vision, sync
        self.lm = language_model(model)
        self.rolled = set(layers_rolled)
        self.vblocks = _largest_modulelist(vision)
        vcfg = model.config.vision_config
        self.vfull = set(getattr(vcfg, "fullatt_block_indexes", None) or [])
        self.scope = "text"
        # accumulators hold [wall s, process CPU s] (CPU time: all threads; robust to other load)
        self.t: dict = defaultdict(lambda: [0.0, 0.0])       # (scope, stage)
        self.layer: dict = defaultdict(lambda: [0.0, 0.0])   # (scope, phase, kind), summed over layers
        self.vblock: dict = defaultdict(lambda: [0.0, 0.0])  # (scope, kind)
        self.decode_steps: dict = defaultdict(int)  # scope -> language-model forwards of one token
        self.phase = "prefill"
        self._handles: list = []
        self._starts: dict = {}

    def _now(self) -> tuple[float, float]:
        if self.sync:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter(), time.process_time()

    @staticmethod
    def _add(acc: list, t0: tuple[float, float], t1: tuple[float, float]) -> None:
        acc[0] += t1[0] - t0[0]
        acc[1] += t1[1] - t0[1]

    def _pair(self, module: Any, key: Any, on_end: Any, with_phase: bool = False) -> None:
        def pre(_m: Any, args: tuple, kwargs: dict) -> None:
            if with_phase:
                self.phase = "prefill" if _seq_len(args, kwargs) > 1 else "decode"
            self._starts[key] = self._now()

        def post(_m: Any, _args: tuple, _kwargs: dict, _out: Any) -> None:
            on_end(self._starts.pop(key), self._now())

        self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        self._handles.append(module.register_forward_hook(post, with_kwargs=True))

    @contextmanager
    def active(self) -> Iterator["StageTimer"]:
        from decafbench.rollout import StreamingRollout

        def vision_end(t0: tuple, t1: tuple) -> None:
            self._add(self.t[(self.scope, "vision")], t0, t1)

        def lm_end(t0: tuple, t1: tuple) -> None:
            self._add(self.t[(self.scope, self.phase)], t0, t1)
            if self.phase == "decode":
                self.decode_steps[self.scope] += 1

        self._pair(self.vision, "vision", vision_end)
        self._pair(self.lm, "lm", lm_end, with_phase=True)
        head = self.model.get_output_embeddings()
        if head is not None:
            self._pair(head, "head", lambda t0, t1: self._add(self.t[(self.scope, self.phase)], t0, t1))
        for i, layer in enumerate(self.lm.layers):
            kind = "rolled" if i in self.rolled else "plain"
            self._pair(layer, ("layer", i), lambda t0, t1, k=kind: self._add(self.layer[(self.scope, self.phase, k)], t0, t1))
        for i, block in enumerate(self.vblocks):
            kind = "full" if (not self.vfull or i in self.vfull) else "window"
            self._pair(block, ("vblock", i), lambda t0, t1, k=kind: self._add(self.vblock[(self.scope, k)], t0, t1))
        original = StreamingRollout.observe
        timer = self

        def observe(self_: Any, layer: int, attn: Any) -> None:
            t0 = timer._now()
            original(self_, layer, attn)
            timer._add(timer.t[(timer.scope, "rollout")], t0, timer._now())

        StreamingRollout.observe = observe
        try:
            yield self
        finally:
            StreamingRollout.observe = original
            for h in self._handles:
                h.remove()
            self._handles.clear()

    @contextmanager
    def within(self, scope: str) -> Iterator[None]:
        self.scope = scope
        t0 = self._now()
        try:
            yield
        finally:
            self._add(self.t[(scope, "wall")], t0, self._now())


class PeakMemory:
    """Peak resident set size of this process (sampled every 10 ms) or CUDA peak allocation."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            return self
        self.peak = self.rss()

        def sample() -> None:
            while not self._stop.wait(0.01):
                self.peak = max(self.peak, self.rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            import torch

            self.peak = int(torch.cuda.max_memory_allocated())
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


# --------------------------------------------------------------------------------------------
# One expression
# --------------------------------------------------------------------------------------------
def key_frames() -> list:
    from PIL import Image

    from decafbench.pipeline import key_frame_indices

    paths = sorted(FRAMES_DIR.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no frames under {FRAMES_DIR}")
    frames = []
    for i in key_frame_indices(len(paths), NUM_FRAMES):
        with Image.open(paths[i]) as im:
            frames.append(im.convert("RGB").resize((854, 480)) if im.size != (854, 480) else im.convert("RGB"))
    return frames


def expression(adapter: Any, frames: list, frame_subset: int, max_new_tokens: int, timer: StageTimer) -> dict:
    """The pipeline's flow (``extract_maps``), with the frame view on ``frame_subset`` frames."""
    from decafbench.prompts import get_prompts, normalize_expression, object_word

    prompts = get_prompts()
    text = normalize_expression(EXPRESSION)
    obj = prompts.object_prompt(text)
    with timer.within("video"):
        sv = adapter.open(frames, "video")
        ov = adapter.attend(sv, obj, max_new_tokens=max_new_tokens)
    with timer.within("frame"):
        sf = adapter.open(frames[:: NUM_FRAMES // frame_subset][:frame_subset], "frame")
        of = adapter.attend(sf, obj, max_new_tokens=max_new_tokens)
    # the choice prompt lists 1 + 16 candidates, as in a full run (frame answers cycled)
    frame_texts = [of.texts[i % len(of.texts)] for i in range(NUM_FRAMES)]
    with timer.within("text"):
        answer = adapter.answer(prompts.choice_prompt(text, [t.strip() for t in [*ov.texts, *frame_texts]]),
                                max_new_tokens=max_new_tokens)
    bg = prompts.background_prompt(object_word(answer), text)
    with timer.within("video"):
        adapter.attend(sv, bg, max_new_tokens=max_new_tokens)
    with timer.within("frame"):
        adapter.attend(sf, bg, max_new_tokens=max_new_tokens)
    return {"video": dict(sv.counters), "frame": dict(sf.counters),
            "grid": {"video": list(ov.attention.shape), "frame": list(of.attention.shape)},
            "prompt_tokens": {"video": ov.stats.get("prompt_tokens"), "frame": of.stats.get("prompt_tokens")}}


STAGES = ("vision", "prefill", "rollout", "generation", "other")


def compose(timer: StageTimer, n_text: int, n_vision: int, k_text: int, k_vision: int, rolled_real: int,
            rolled_built: int, full_real: int, full_built: int, frame_scale: float, clock: int = 0) -> dict:
    """Per-stage seconds of one expression: measured (as run) and composed to full depth and 16 frames.
    ``clock``: 0 wall seconds, 1 process CPU seconds."""
    kinds_real = {"rolled": rolled_real, "plain": n_text - rolled_real}
    kinds_built = {"rolled": rolled_built, "plain": k_text - rolled_built}
    vk_real = {"full": full_real, "window": n_vision - full_real}
    vk_built = {"full": full_built, "window": k_vision - full_built}
    measured, composed = defaultdict(float), defaultdict(float)
    for scope in ("video", "frame", "text"):
        t = {k: timer.t[(scope, k)][clock] if (scope, k) in timer.t else 0.0 for k in ("vision", "prefill", "decode", "rollout", "wall")}
        stages = {"vision": t["vision"], "prefill": t["prefill"] - t["rollout"], "rollout": t["rollout"], "generation": t["decode"]}
        stages["other"] = t["wall"] - sum(stages.values())
        comp = dict(stages)
        for phase, stage in (("prefill", "prefill"), ("decode", "generation")):
            for kind in ("rolled", "plain"):
                s = timer.layer[(scope, phase, kind)][clock] if (scope, phase, kind) in timer.layer else 0.0
                if kinds_built[kind]:
                    comp[stage] += s * (kinds_real[kind] / kinds_built[kind] - 1)
        # rollout time sits inside the rolled layers' time: keep it out of the prefill scaling
        if rolled_built:
            comp["prefill"] -= stages["rollout"] * (rolled_real / rolled_built - 1)
            comp["rollout"] = stages["rollout"] * rolled_real / rolled_built
        for kind in ("full", "window"):
            s = timer.vblock[(scope, kind)][clock] if (scope, kind) in timer.vblock else 0.0
            if vk_built[kind]:
                comp["vision"] += s * (vk_real[kind] / vk_built[kind] - 1)
        scale = frame_scale if scope == "frame" else 1.0
        for k in STAGES:
            measured[k] += stages[k]
            composed[k] += comp[k] * scale
    return {"measured": dict(measured), "composed": dict(composed)}


def run_model(name: str, args: argparse.Namespace, attn: str, console: Any) -> list[dict]:
    import torch

    spec = REAL[name]
    t0 = time.perf_counter()
    model, processor, full_params = build(name, args.dtype, args.device, args.layers, attn)
    built_params = sum(p.numel() for p in model.parameters())
    build_s = time.perf_counter() - t0
    elt = torch.empty((), dtype=model.dtype).element_size()
    frames = key_frames()
    rows = []
    n_text, n_vision = spec["text"]["num_hidden_layers"], spec["vision"][_vision_depth_key(spec["vision"])]
    text_cfg, vision_cfg = _truncate(spec, args.layers)
    k_text, k_vision = text_cfg["num_hidden_layers"], vision_cfg[_vision_depth_key(vision_cfg)]
    full_real = len(spec["vision"].get("fullatt_block_indexes", [])) or n_vision
    full_built = len(vision_cfg.get("fullatt_block_indexes", [])) or k_vision
    # Untimed warm-up: first calls pay for allocator growth and oneDNN primitives per shape
    # (measured: 1.3-3x the time of a later identical pass). Prefix reuse prefills other shapes
    # (the suffix alone) than a full prefill, so each shape class present is warmed once.
    classes = list(dict.fromkeys(MODES[m][1] for m in args.modes))
    for prefix_class in classes * args.warmup:
        mode = next(m for m in args.modes if MODES[m][1] == prefix_class)
        reuse, prefix = MODES[mode]
        adapter = make_adapter(name, model, processor, args.dtype, args.device, reuse, prefix)
        vision = adapter.model.model.visual if spec["family"] == "qwen2-vl" else adapter.vision_tower()
        warm = StageTimer(adapter.model, vision, adapter.layers, sync=args.device.startswith("cuda"))
        console.print(f"[dim]{name}: warm-up pass ({mode}, not timed) ...[/dim]")
        with warm.active():
            expression(adapter, frames, args.frame_subset, args.max_new_tokens, warm)
    for mode in args.modes:
        reuse, prefix = MODES[mode]
        adapter = make_adapter(name, model, processor, args.dtype, args.device, reuse, prefix)
        vision = adapter.model.model.visual if spec["family"] == "qwen2-vl" else adapter.vision_tower()
        timer = StageTimer(adapter.model, vision, adapter.layers, sync=args.device.startswith("cuda"))
        rolled_built = len(adapter.layers)
        rolled_real = n_text - n_text // 2
        console.print(f"[dim]{name} {mode} attn={attn}: layers {k_text}/{n_text}, vision blocks {k_vision}/{n_vision}, "
                      f"frame view on {args.frame_subset}/16 frames ...[/dim]")
        with PeakMemory(args.device) as mem, timer.active():
            w0 = time.perf_counter()
            counters = expression(adapter, frames, args.frame_subset, args.max_new_tokens, timer)
            wall = time.perf_counter() - w0
        scale = NUM_FRAMES / args.frame_subset
        units = (timer, n_text, n_vision, k_text, k_vision, rolled_real, rolled_built, full_real, full_built, scale)
        times, cpu = compose(*units, clock=0), compose(*units, clock=1)
        direct = k_text == n_text and k_vision == n_vision and args.frame_subset == NUM_FRAMES
        kv = 2 * spec["text"]["num_key_value_heads"] * (spec["text"]["hidden_size"] // spec["text"]["num_attention_heads"]) * elt
        longest = max(int(v or 0) for v in counters["prompt_tokens"].values()) + args.max_new_tokens
        weights_full, weights_built = full_params * elt, built_params * elt
        peak_composed = mem.peak + (weights_full - weights_built) + (n_text - k_text) * kv * longest * (
            max(args.frame_subset, 4) if spec["family"] != "qwen2-vl" else NUM_FRAMES)
        row = {
            "model": name, "source": spec["source"], "family": spec["family"], "mode": mode, "attn": attn,
            "device": args.device, "dtype": args.dtype, "params_full": full_params, "params_built": built_params,
            "layers_run": [k_text, n_text], "vision_blocks_run": [k_vision, n_vision], "frame_subset": args.frame_subset,
            "composed": not direct, "build_s": build_s, "wall_s_as_run": wall,
            "stages_as_run": times["measured"], "stages_per_expression": times["composed"],
            "seconds_per_expression": sum(times["composed"].values()),
            "cpu_stages_as_run": cpu["measured"], "cpu_stages_per_expression": cpu["composed"],
            "cpu_seconds_per_expression": sum(cpu["composed"].values()), "threads": torch.get_num_threads(),
            "load_average_1min_after": os.getloadavg()[0],
            "decode_steps": dict(timer.decode_steps), "max_new_tokens": args.max_new_tokens,
            "vision_passes": {"video": counters["video"]["vision_passes"], "frame": counters["frame"]["vision_passes"]},
            "prefill_tokens": {"video": counters["video"]["prefill_tokens"],
                               "frame": int(counters["frame"]["prefill_tokens"] * scale)},
            "prompt_tokens": counters["prompt_tokens"], "grid": counters["grid"],
            "peak_mem_bytes_as_run": mem.peak, "peak_mem_kind": "cuda max_memory_allocated" if mem.cuda else "process RSS",
            "peak_mem_bytes": mem.peak if direct else int(peak_composed),
            "weights_bytes_full": weights_full,
        }
        rows.append(row)
        console.print(f"[dim]  {wall:.1f} s as run; {row['seconds_per_expression']:.1f} s per expression"
                      f"{' (composed)' if not direct else ''}[/dim]")
        if args.json:
            _dump(args, rows_so_far=[*args._done, *rows])
    del model
    return rows


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def _gib(b: float) -> str:
    return f"{b / 2**30:.1f}"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{platform.machine()} {cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, "
            f"load average {os.getloadavg()[0]:.1f} at start")


def table(rows: list[dict]) -> Any:
    from rich.table import Table

    t = Table(title="Real-size cost per expression (s; composed = from measured per-layer/per-frame units)")
    for col in ("model", "mode", "attn", "dtype", "vision", "prefill", "rollout", "gen", "other", "total", "CPU-s", "kind",
                "vision passes v/f", "prefilled tok v/f", "peak GiB"):
        t.add_column(col, justify="left" if col in ("model", "mode", "attn", "dtype", "kind") else "right")
    for r in rows:
        s = r["stages_per_expression"]
        t.add_row(r["model"], r["mode"], r["attn"], r["dtype"], *(f"{s[k]:.1f}" for k in STAGES),
                  f"{r['seconds_per_expression']:.1f}", f"{r['cpu_seconds_per_expression']:.1f}",
                  (f"composed ({r['layers_run'][0]}/{r['layers_run'][1]} layers, {r['frame_subset']}/16 frames)"
                   if r["composed"] else "measured"),
                  f"{r['vision_passes']['video']}/{r['vision_passes']['frame']}",
                  f"{r['prefill_tokens']['video']}/{r['prefill_tokens']['frame']}", _gib(r["peak_mem_bytes"]))
    return t


def markdown(rows: list[dict]) -> str:
    """README rows: CPU s per stage (load-robust), CPU and wall totals, counters, peak memory."""
    out = ["| model | dtype | mode | vision | prefill | rollout | generation | other | CPU s total | wall s "
           "| vision passes v/f | prefilled tokens v/f | peak GiB |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s = r["cpu_stages_per_expression"]
        out.append(f"| {r['model']} | {r['dtype']} | {r['mode']} | " + " | ".join(f"{s[k]:,.0f}" for k in STAGES)
                   + f" | {r['cpu_seconds_per_expression']:,.0f} | {r['seconds_per_expression']:,.0f} | "
                   f"{r['vision_passes']['video']}/{r['vision_passes']['frame']} | "
                   f"{r['prefill_tokens']['video']:,}/{r['prefill_tokens']['frame']:,} | {_gib(r['peak_mem_bytes'])} |")
    return "\n".join(out)


def configs_table() -> Any:
    from rich.table import Table

    t = Table(title="Real configurations (random weights; numbers from each checkpoint's config.json)")
    for col in ("model", "adapter", "params", "bf16 GiB", "text L/d/heads/kv/ffn/vocab", "vision blocks/d", "source"):
        t.add_column(col)
    for name, spec in REAL.items():
        n = count_params(name, stock_model(name))
        tx, v = spec["text"], spec["vision"]
        vd = v.get("embed_dim") or v.get("hidden_size")
        t.add_row(name, spec["family"], f"{n / 1e9:.2f} B", _gib(2 * n),
                  f"{tx['num_hidden_layers']}/{tx['hidden_size']}/{tx['num_attention_heads']}/{tx['num_key_value_heads']}/"
                  f"{tx['intermediate_size']}/{tx['vocab_size']}", f"{v[_vision_depth_key(v)]}/{vd}", spec["source"])
    return t


def _dump(args: argparse.Namespace, rows_so_far: list[dict]) -> None:
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"machine": args._machine, "argv": sys.argv[1:], "rows": rows_so_far}, indent=1))
    tmp.replace(path)


def _summary(headline: str) -> None:
    """The marked line ``bench/run_all.py`` collects into its summary table (when present)."""
    try:
        from summary import emit
    except ImportError:
        return
    emit("real_size", headline)


def main(argv: list[str] | None = None) -> int:
    global FRAMES_DIR
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="build every real config on the meta device and print it (seconds)")
    p.add_argument("--models", default="smallest", help="comma list of names, 'smallest' or 'all': " + ", ".join(REAL))
    p.add_argument("--modes", default="reuse,no-prefix-reuse,no-reuse")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes per prefill shape class (prefix reuse or not) before measuring")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--attn", default="sdpa", help="base attention of non-captured layers: sdpa, eager or both (comma)")
    p.add_argument("--layers", type=int, default=2, help="decoder layers and vision blocks built (0 = all; composed otherwise)")
    p.add_argument("--frame-subset", type=int, default=1, help="frames the frame view runs on (16 = all; composed otherwise)")
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--frames", default=str(FRAMES_DIR), help="folder of real frames (16 key frames are sampled)")
    p.add_argument("--json", default="")
    p.add_argument("--markdown", default="", help="print README table rows from these JSON files (comma list) and exit")
    args = p.parse_args(argv)
    from rich.console import Console

    console = Console(width=max(Console().width, 200))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args._machine = machine()
    console.print(f"machine: {args._machine}")
    if args.markdown:
        print(markdown([r for f in args.markdown.split(",") for r in json.loads(Path(f).read_text())["rows"]]))
        return 0
    FRAMES_DIR = Path(args.frames)
    if args.quick:
        console.print(configs_table())
        _summary(f"{len(REAL)} real configs built on the meta device (no forward pass in --quick)")
        return 0
    if NUM_FRAMES % args.frame_subset:
        p.error("--frame-subset must divide 16")
    names = SMALLEST if args.models == "smallest" else list(REAL) if args.models == "all" else args.models.split(",")
    bad = [n for n in names if n not in REAL]
    if bad or any(m not in MODES for m in args.modes.split(",")):
        p.error(f"unknown model or mode: {bad or args.modes}")
    args.modes = args.modes.split(",")
    args._done = []
    for name in names:
        for attn in args.attn.split(","):
            args._done += run_model(name, args, attn, console)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    console.print(table(args._done))
    _summary("; ".join(f"{r['model']} {r['mode']} {r['cpu_seconds_per_expression']:,.0f} CPU s/expression"
                       f"{' (composed)' if r['composed'] else ''}" for r in args._done))
    if args.json:
        _dump(args, args._done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
