"""Qwen2-VL and Qwen2.5-VL adapter (stock transformers classes, no copied modeling code).

Views (method section 2): the video view feeds all key frames as one video input (one
sequence; the vision tower merges 2 frames per temporal patch, so the map has ceil(T/2)
time steps); the frame view feeds each key frame as its own image input, a batch of T
sequences.

Inputs follow the official pipeline (HYUNJS/DecAF ``evaluation/inference_attn_map_qwenvl.py``
with ``qwen_vl_utils``):

- video view size: ``qwen_vl_utils.smart_resize`` with ``max_pixels = budget * 28^2`` and
  ``min_pixels = 4 * 28^2`` (:func:`smart_resize` here): frames are shrunk to the budget,
  never enlarged to it (640x480 at 400 tokens -> 476x644, 17x23 = 391 tokens);
- frame view size: ``frame_scale`` (2) times the video view's token grid per side, again
  through ``smart_resize`` (official ``resized_height/width``); an explicit ``image_tokens``
  budget instead resizes the original frame (official ``--attn_max_token_per_image``);
- video timing: the frames are a 2 fps video (qwen_vl_utils' default for frame lists, which
  the official processor call inherits), so Qwen2.5-VL gets ``second_per_grid_ts`` =
  temporal_patch / fps = 1.0 and temporal rotary ids 0, 2, 4, ... with the released
  checkpoints' ``tokens_per_second`` = 2;
- system prompt: none sent, so the chat template's default ("You are a helpful assistant.").

Model arguments (``--model-args``): ``video_tokens_per_frame`` (400; tiny: 16),
``image_tokens`` (unset: frame_scale rule), ``frame_scale`` (2), ``fps`` (2.0),
``attn_implementation`` ("sdpa"), ``seed`` (tiny checkpoints' random weights, 0).

Reuse: ``open()`` runs the vision tower once per view and keeps its output; ``attend()``
passes it to ``generate`` through the stock ``mm_encoder_outputs`` argument, so the object
and background prompts of a view share one encoder pass. ``reuse=False`` passes pixels
instead (the naive pattern: one encoder pass per prompt), for comparison; both give the
same maps. Work is counted in ``session.counters``: ``vision_passes`` (counted by a
forward hook on the vision tower, so it counts real passes), ``prefill_tokens``, ``prompts``.

Prefix reuse (``prefix_reuse=True``, only with ``reuse``): every prompt of a view starts with
the same tokens (chat header, vision start, visual pads, vision end); the first ``attend``
prefills them once into a KV cache kept in the session, and each prompt then prefills only
its suffix on a copy of that cache and decodes from it. Positions are the model's own 3D
rope positions of the full sequence (so the suffix sees exactly the positions of a full
pass). Rollout still gets each layer's full ``(B, H, L, L)`` attention: the prefix rows are
causal, so they are rebuilt from the prefix queries kept per rolled-out layer
(``B*H*P*d`` values each, about ``P*d/L^2`` of one full attention matrix) and the
suffix's keys (the cache's prefix keys). Maps and answers equal the full-prefill ones up to
float rounding (different matmul shapes); ``prefill_tokens`` counts the prefix once.

Attention: the prefill of each prompt streams float32 attention of the rolled-out layers
into :class:`decafbench.rollout.StreamingRollout` via
:func:`decafbench.adapters.attention.capture_attention`; decode steps run on sdpa.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

from decafbench.errors import InputError

from .base import (Adapter, AdapterOptions, AdapterSpec, Session, View, ViewLayout, ViewResult, load_with_options,
                   resolve_options)
from .common import check_frames, load_checked, no_grad, prefix_reuse_default, resolve_dtype, torch_dtype

if TYPE_CHECKING:  # pragma: no cover
    from decafbench.rollout import RolloutConfig

#: video-view budget (merged tokens per frame) of the tiny checkpoints when none is given;
#: the real default is the published 400
TINY_VIDEO_TOKENS = 16
#: qwen_vl_utils constants: MIN_PIXELS = 4 * 28 * 28, MAX_PIXELS = 16384 * 28 * 28, MAX_RATIO
MIN_TOKENS, MAX_TOKENS, MAX_RATIO = 4, 16384, 200

#: model arguments this family accepts (``--model-args``), with their types
MODEL_ARGS = {"video_tokens_per_frame": int, "image_tokens": int, "frame_scale": int, "fps": float,
              "attn_implementation": str, "seed": int}


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = MIN_TOKENS * 28 * 28,
                 max_pixels: int = MAX_TOKENS * 28 * 28) -> tuple[int, int]:
    """``(H, W)``, multiples of ``factor``, that ``qwen_vl_utils`` resizes a frame to.

    The published rule: round each side to the nearest multiple of ``factor`` (at least one
    factor); if that exceeds ``max_pixels``, scale both sides by sqrt(H*W / max_pixels) and
    round down; if it is under ``min_pixels``, scale up by sqrt(min_pixels / (H*W)) and round
    up. Frames are therefore shrunk to a budget, never enlarged to it.
    """
    if min(height, width) < 1:
        raise InputError(f"frame size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise InputError(f"frame aspect ratio must be under {MAX_RATIO}, got {height}x{width}")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = math.floor(height / beta / factor) * factor
        w = math.floor(width / beta / factor) * factor
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


class Qwen2VLAdapter(Adapter):
    """Qwen2-VL / Qwen2.5-VL: video view + frame view, streaming rollout, encoder reuse."""

    family = "qwen2-vl"
    supports_reuse = True
    supports_prefix_reuse = True
    #: ``--model-args`` keys and types (see the module docstring)
    MODEL_ARGS: ClassVar[dict[str, type]] = MODEL_ARGS

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        checkpoint: str,
        dtype: str = "float32",
        device: str = "cpu",
        rollout: "RolloutConfig | None" = None,
        video_tokens_per_frame: int = 400,
        image_tokens: int | None = None,
        frame_scale: int = 2,
        fps: float = 2.0,
        reuse: bool = True,
        prefix_reuse: bool | None = None,
    ) -> None:
        from decafbench.rollout import RolloutConfig

        if video_tokens_per_frame < 1 or (image_tokens is not None and image_tokens < 1):
            raise InputError(f"token budgets must be >= 1 (video_tokens_per_frame={video_tokens_per_frame}, image_tokens={image_tokens})")
        if frame_scale < 1:
            raise InputError(f"model arg frame_scale must be >= 1, got {frame_scale}")
        if not fps > 0:
            raise InputError(f"model arg fps must be > 0, got {fps}")
        self.model = model.eval()
        self.processor = processor
        self.checkpoint = checkpoint
        self.dtype = dtype
        self.device = device
        self.rollout = rollout or RolloutConfig()
        self.video_tokens_per_frame = int(video_tokens_per_frame)
        self.image_tokens = None if image_tokens is None else int(image_tokens)
        self.frame_scale = int(frame_scale)
        self.fps = float(fps)
        self.reuse = reuse
        # shared-prefix reuse changes float rounding; it is exact enough only in float32 (see
        # prefix_reuse_default), so in half precision it is opt-in
        self.prefix_reuse = prefix_reuse_default(dtype) if prefix_reuse is None else bool(prefix_reuse)
        cfg = model.config
        self.vision_end_token_id = int(cfg.vision_end_token_id)
        self.video_token_id = int(cfg.video_token_id)
        self.image_token_id = int(cfg.image_token_id)
        vp = processor.video_processor
        self.merge = int(vp.merge_size)
        self.factor = int(vp.patch_size) * self.merge
        self.temporal_patch = int(vp.temporal_patch_size)
        from .attention import language_layers

        self.num_layers = language_layers(model)
        self.layers = self.rollout.layers(self.num_layers)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, checkpoint: str = "tiny", options: AdapterOptions | None = None, **kwargs: Any):
        """The harness passes one :class:`AdapterOptions`; its ``model_args`` are the keyword
        arguments of :meth:`_load` (direct callers may pass them, and option fields, loosely)."""
        return load_with_options(cls._load, cls.family, checkpoint, resolve_options(options, kwargs))

    @classmethod
    def _load(
        cls,
        checkpoint: str,
        dtype: str = "float32",
        device: str = "cpu",
        rollout: "RolloutConfig | None" = None,
        video_tokens_per_frame: int | None = None,
        image_tokens: int | None = None,
        frame_scale: int = 2,
        fps: float = 2.0,
        reuse: bool = True,
        prefix_reuse: bool | None = None,
        attn_implementation: str = "sdpa",
        seed: int = 0,
    ) -> "Qwen2VLAdapter":
        """``tiny`` / ``tiny-2.5``: random tiny Qwen2-VL / Qwen2.5-VL built offline; else a local
        folder or hub id loaded with AutoModelForImageTextToText / AutoProcessor.

        ``video_tokens_per_frame`` defaults to the published 400 (16 for tiny); the frame view
        is ``frame_scale`` times the video grid per side unless ``image_tokens`` is given.
        ``prefix_reuse`` (None: on in float32, off in half precision) prefills the prompts'
        shared prefix once per view (needs ``reuse``); the run's cache key records it where it is
        not exact (half precision).
        """
        dtype = resolve_dtype(dtype, device)
        dt = torch_dtype(dtype)
        if checkpoint in ("tiny", "tiny-2.5"):
            from .qwen2_vl_tiny import build_tiny

            model, processor = build_tiny(version="2.5" if checkpoint == "tiny-2.5" else "2", seed=seed, attn_implementation=attn_implementation)
            default_tokens = TINY_VIDEO_TOKENS
        else:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            model, processor = load_checked(checkpoint, ("qwen2_vl", "qwen2_5_vl"), AutoModelForImageTextToText,
                                            AutoProcessor, dt, attn_implementation, rollout)
            default_tokens = 400
        model = model.to(device=device, dtype=dt)
        return cls(
            model,
            processor,
            checkpoint=checkpoint,
            dtype=dtype,
            device=device,
            rollout=rollout,
            video_tokens_per_frame=video_tokens_per_frame or default_tokens,
            image_tokens=image_tokens,
            frame_scale=frame_scale,
            fps=fps,
            reuse=reuse,
            prefix_reuse=prefix_reuse,
        )

    def spec(self) -> AdapterSpec:
        return AdapterSpec(
            family=self.family,
            checkpoint=self.checkpoint,
            config={
                "model_type": self.model.config.model_type,
                "dtype": self.dtype,
                "video_tokens_per_frame": self.video_tokens_per_frame,
                "image_tokens": self.image_tokens,
                "frame_scale": self.frame_scale,
                "fps": self.fps,
                "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
                "rollout": self.rollout.to_dict(),
                "layers": [self.layers.start, self.layers.stop],
            },
        )

    # -- sizes ------------------------------------------------------------------------------
    def view_size(self, height: int, width: int, view: View) -> tuple[int, int]:
        """Pixel size ``(H, W)`` the frames of ``view`` are given to the model at.

        Video view: :func:`smart_resize` with max_pixels = budget * factor^2 and the default
        min_pixels. Frame view: ``frame_scale`` times the video view's token grid per side,
        through :func:`smart_resize` with its defaults (official ``resized_height/width``), or,
        with an explicit ``image_tokens`` budget, the original frame resized to that budget.
        """
        f = self.factor
        hv, wv = smart_resize(height, width, f, MIN_TOKENS * f * f, self.video_tokens_per_frame * f * f)
        if view == "video":
            size = hv, wv
        elif self.image_tokens is None:
            size = smart_resize(hv * self.frame_scale, wv * self.frame_scale, f)
        else:
            size = smart_resize(height, width, f, MIN_TOKENS * f * f, self.image_tokens * f * f)
        if min(size) < f:  # qwen_vl_utils rounds a very elongated frame's short side down to 0
            raise InputError(f"a {height}x{width} frame has no {view}-view size at this token budget (got {size[0]}x{size[1]})")
        return size

    # -- protocol ---------------------------------------------------------------------------
    def open(self, frames: Sequence[Any], view: View) -> Session:
        """Resize the key frames for ``view``, preprocess them and (with reuse) encode them once."""
        images = check_frames(frames)
        if view not in ("video", "frame"):
            raise InputError(f"view must be 'video' or 'frame', got {view!r}")
        h, w = self.view_size(images[0].height, images[0].width, view)
        resized = [im.resize((w, h), _bicubic()) for im in images]
        session = Session(view=view, num_frames=len(images))
        session.counters.update(vision_passes=0, prefill_tokens=0, prompts=0)
        session.state.update(frames=resized, size=(h, w))
        if self.reuse:
            visual = self._visual_inputs(session)
            with self._count_vision(session), no_grad():
                if view == "video":
                    enc = self.model.model.get_video_features(visual["pixel_values_videos"], visual["video_grid_thw"], return_dict=True)
                    session.state["encoded"] = {"video": enc}
                else:
                    enc = self.model.model.get_image_features(visual["pixel_values"], visual["image_grid_thw"], return_dict=True)
                    session.state["encoded"] = {"image": enc}
        return session

    def attend(self, session: Session, prompt: str, *, max_new_tokens: int = 8) -> ViewResult:
        """Prefill with streaming rollout of the configured layers, then greedy decoding."""
        import torch

        from decafbench.rollout import StreamingRollout

        from .attention import capture_attention

        inputs = self._prompt_inputs(session, prompt)
        pad_id = self.video_token_id if session.view == "video" else self.image_token_id
        visual_mask = inputs["input_ids"] == pad_id
        empty = (visual_mask.sum(dim=1) == 0).nonzero().flatten().tolist()
        if empty:
            raise InputError(f"empty visual span in sequence(s) {empty}: no {'video' if session.view == 'video' else 'image'} pad tokens in the prompt")
        if self.reuse and self.prefix_reuse and bool(inputs["attention_mask"].all()):  # rebuilt prefix rows assume no padding
            return self._attend_shared(session, prompt, inputs, visual_mask, max_new_tokens)
        kwargs = dict(inputs)
        if self.reuse:
            kwargs.pop("pixel_values", None)
            kwargs.pop("pixel_values_videos", None)
            kwargs["mm_encoder_outputs"] = dict(session.state["encoded"])
        streaming = StreamingRollout(
            visual_mask,
            self.layers,
            head_weighting=self.rollout.head_weighting,
            residual=self.rollout.residual,
            store_dtype=torch.float32,
        )
        positions = self._positions(inputs)
        with self._count_vision(session), capture_attention(self.model, self.layers, streaming.observe), no_grad():
            out = self.model.generate(**kwargs, position_ids=positions, **self._greedy(max_new_tokens))
        session.counters["prefill_tokens"] += int(inputs["input_ids"].numel())
        session.counters["prompts"] += 1
        return self._result(session, prompt, streaming, out, inputs, visual_mask, int(inputs["input_ids"].shape[1]), 0)

    def _result(self, session: Session, prompt: str, streaming: Any, out: Any, inputs: dict, visual_mask: Any,
                prefilled: int, prefix: int) -> ViewResult:
        """Map and texts of one prompt; ``stats["prefill_tokens"]`` is what this call prefilled per
        sequence (the shared prefix counts in the call that prefilled it), so the stats of a
        view's prompts add up to ``session.counters["prefill_tokens"]`` per sequence."""
        import torch

        vec = streaming.result()
        if not bool(torch.isfinite(vec).all()):
            raise InputError(f"NaN or inf in the rollout map of prompt {prompt[:40]!r} ({session.view} view)")
        attention = self._to_grid(vec, visual_mask, inputs, session.view)
        texts = self._decode(out[:, inputs["input_ids"].shape[1]:])
        return ViewResult(
            texts=texts,
            attention=attention,
            temporal_stride=self.temporal_patch if session.view == "video" else 1,
            stats={"grid": list(attention.shape), "prefill_tokens": prefilled,
                   "prompt_tokens": int(inputs["input_ids"].shape[1]), "prefix_tokens": prefix, "visual_tokens": int(visual_mask[0].sum())},
        )

    def answer(self, prompt: str, *, max_new_tokens: int = 8) -> str:
        """Greedy answer to a text-only prompt (the object-choice step)."""
        messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(text=[text], return_tensors="pt").to(self.device)
        with no_grad():
            out = self.model.generate(**inputs, **self._greedy(max_new_tokens))
        return self._decode(out[:, inputs["input_ids"].shape[1]:])[0]

    def layout(self, session: Session, prompt: str) -> ViewLayout:
        """Frame size, attention grid, visual tokens and temporal rotary ids of ``prompt`` on the
        view, read from the processor's inputs and the model's own position ids."""
        inputs = self._prompt_inputs(session, prompt)
        pad_id = self.video_token_id if session.view == "video" else self.image_token_id
        visual = inputs["input_ids"][0] == pad_id
        grid_key = "video_grid_thw" if session.view == "video" else "image_grid_thw"
        t, gh, gw = (int(x) for x in inputs[grid_key][0])
        hw = (gh // self.merge) * (gw // self.merge)
        temporal = self.rope_index(inputs)[0, 0][visual].reshape(t, hw)[:, 0]
        temporal = (temporal - temporal[0]).tolist()
        extra: dict = {"sequences": int(inputs["input_ids"].shape[0]), "prompt_tokens": int(inputs["input_ids"].shape[1])}
        if "second_per_grid_ts" in inputs and session.view == "video":
            extra["second_per_grid_ts"] = [float(x) for x in inputs["second_per_grid_ts"]]
        tps = getattr(getattr(self.model.config, "vision_config", None), "tokens_per_second", None)
        if tps is not None and self.model.config.model_type == "qwen2_5_vl":
            extra["tokens_per_second"] = tps
        if session.view == "frame":
            t, temporal = session.num_frames, temporal * session.num_frames
        return ViewLayout(view=session.view, frame_size=tuple(session.state["size"]), grid=(t, gh // self.merge, gw // self.merge),
                          visual_tokens=int(visual.sum()), temporal_positions=[int(x) for x in temporal],
                          system_prompt=None, extra=extra)

    # -- shared prefix ----------------------------------------------------------------------
    def _attend_shared(self, session: Session, prompt: str, inputs: dict, visual_mask: Any, max_new_tokens: int) -> ViewResult:
        """``attend`` with the session's prefix prefilled once and only this prompt's suffix here."""
        import copy

        import torch

        from decafbench.rollout import StreamingRollout

        from .attention import capture_attention, causal_weights

        ids = inputs["input_ids"]
        positions = self._positions(inputs)
        before = session.counters["prefill_tokens"]
        prefix = self._prefix(session, inputs, positions)
        plen, length = prefix["length"], ids.shape[1]
        streaming = StreamingRollout(
            visual_mask,
            self.layers,
            head_weighting=self.rollout.head_weighting,
            residual=self.rollout.residual,
            store_dtype=torch.float32,
        )

        def observe(layer: int, attn: Any, seen: Any) -> None:
            # suffix rows come from this pass; prefix rows (causal) from the kept prefix query
            # and the cached prefix keys; prefix rows are zero in the suffix columns
            full = attn.new_zeros(attn.shape[0], attn.shape[1], length, length)
            full[:, :, :plen, :plen] = causal_weights(prefix["queries"][layer], seen.key[:, :, :plen], seen.scaling)
            full[:, :, plen:, :] = attn
            streaming.observe(layer, full)

        kwargs = {k: v for k, v in inputs.items() if k not in ("pixel_values", "pixel_values_videos")}
        with self._count_vision(session), capture_attention(self.model, self.layers, observe, with_inputs=True), no_grad():
            out = self.model.generate(**kwargs, position_ids=positions, cache=copy.deepcopy(prefix["cache"]),
                                      **self._greedy(max_new_tokens))
        session.counters["prefill_tokens"] += int(ids.shape[0] * (length - plen))
        session.counters["prompts"] += 1
        prefilled = (session.counters["prefill_tokens"] - before) // ids.shape[0]
        return self._result(session, prompt, streaming, out, inputs, visual_mask, prefilled, plen)

    def _prefix_length(self, ids: Any) -> int:
        """Tokens through the (last) vision-end token: what every prompt of a view shares."""
        ends = [int(hits[-1]) + 1 if hits.numel() else 0 for hits in ((row == self.vision_end_token_id).nonzero().flatten() for row in ids)]
        if len(set(ends)) != 1 or ends[0] == 0 or ends[0] >= ids.shape[1]:
            raise InputError(f"prompt has no vision-end token before its question (vision-end positions {ends})")
        return ends[0]

    def _prefix(self, session: Session, inputs: dict, positions: Any) -> dict:
        """The session's prefilled prefix (KV cache + prefix queries of the rolled-out layers),
        prefilled on first use, or again if this prompt's prefix differs from the kept one."""
        import torch

        from .attention import capture_attention

        ids = inputs["input_ids"]
        plen = self._prefix_length(ids)
        kept = session.state.get("prefix")
        if kept is not None and kept["length"] == plen and torch.equal(kept["ids"], ids[:, :plen]):
            return kept
        queries: dict[int, Any] = {}

        def keep_query(layer: int, _attn: Any, seen: Any) -> None:
            queries[layer] = seen.query

        part = {k: v[:, :plen] for k, v in inputs.items() if k in ("input_ids", "attention_mask", "mm_token_type_ids")}
        grids = {k: v for k, v in inputs.items() if k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")}
        with self._count_vision(session), capture_attention(self.model, self.layers, keep_query, with_inputs=True), no_grad():
            out = self.model.model(**part, **grids, position_ids=positions[..., :plen], use_cache=True,
                                   mm_encoder_outputs=dict(session.state["encoded"]))
        kept = {"length": plen, "ids": ids[:, :plen].clone(), "cache": out.cache, "queries": queries}
        session.state["prefix"] = kept
        session.counters["prefill_tokens"] += int(ids.shape[0] * plen)
        return kept

    def rope_index(self, inputs: dict) -> Any:
        """``(3, B, L)`` temporal/height/width rotary position ids of ``inputs`` by the official
        stack's rule (:func:`mrope_positions`); these are what the model is given."""
        tps = None
        if self.model.config.model_type == "qwen2_5_vl":
            tps = self.model.config.vision_config.tokens_per_second
        return mrope_positions(inputs["input_ids"], inputs.get("attention_mask"), inputs.get("image_grid_thw"),
                               inputs.get("video_grid_thw"), inputs.get("second_per_grid_ts"),
                               image_token_id=self.image_token_id, video_token_id=self.video_token_id,
                               merge=self.merge, tokens_per_second=tps)

    def stock_rope_index(self, inputs: dict) -> Any:
        """The installed transformers' own ``get_rope_index`` (differs from the official 4.52 rule
        for text after a video whose temporal extent exceeds its spatial one)."""
        keys = ("mm_token_type_ids", "image_grid_thw", "video_grid_thw", "second_per_grid_ts", "attention_mask")
        positions, _ = self.model.model.get_rope_index(inputs["input_ids"], **{k: inputs[k] for k in keys if k in inputs})
        return positions

    def _positions(self, inputs: dict) -> Any:
        """Position ids for ``generate``: the model's own layout (a text row first where it has
        one) with the rotary rows of :meth:`rope_index`."""
        import torch

        model_kwargs = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "pixel_values_videos")}
        from ._compat_transformers import generation_position_ids

        stock = generation_position_ids(self.model, inputs["input_ids"], model_kwargs)
        rope = self.rope_index(inputs).to(stock.device, stock.dtype)
        return torch.cat([stock[:-3], rope], dim=0)

    # -- internals --------------------------------------------------------------------------
    def _visual_kwargs(self, session: Session) -> dict:
        h, w = session.state["size"]
        size = {"shortest_edge": h * w, "longest_edge": h * w}
        if session.view == "video":
            # the key frames are a video at ``fps`` (official: qwen_vl_utils' 2.0 for frame lists),
            # which gives Qwen2.5-VL second_per_grid_ts = temporal_patch / fps
            from transformers.video_utils import VideoMetadata

            n = len(session.state["frames"])
            meta = VideoMetadata(total_num_frames=n, fps=self.fps, frames_indices=list(range(n)))
            return {"videos": [session.state["frames"]], "videos_kwargs": {"size": size, "do_sample_frames": False,
                                                                          "cap_pixels_per_frame": False, "video_metadata": [meta]}}
        return {"images": list(session.state["frames"]), "images_kwargs": {"size": size}}

    def _visual_inputs(self, session: Session) -> dict:
        """Preprocessed pixels and grids of the session's frames (no text)."""
        kw = self._visual_kwargs(session)
        if session.view == "video":
            out = self.processor.video_processor(videos=kw["videos"], return_tensors="pt", **kw["videos_kwargs"])
        else:
            out = self.processor.image_processor(images=kw["images"], return_tensors="pt", **kw["images_kwargs"])
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in out.items()}

    def _prompt_inputs(self, session: Session, prompt: str) -> dict:
        kind = "video" if session.view == "video" else "image"
        messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        batch = 1 if session.view == "video" else session.num_frames
        inputs = self.processor(text=[text] * batch, return_tensors="pt", padding=True, **self._visual_kwargs(session))
        lengths = inputs["attention_mask"].sum(dim=1)
        if bool((lengths != lengths[0]).any()):
            raise InputError("frame view: key frames gave prompts of different lengths (frames must share one size)")
        return dict(inputs.to(self.device))

    def _to_grid(self, vec: Any, visual_mask: Any, inputs: dict, view: View) -> Any:
        """Visual entries of each row of the rollout vector, reshaped to (t, h, w)."""
        import torch

        grid = inputs["video_grid_thw"] if view == "video" else inputs["image_grid_thw"]
        maps = []
        for b in range(vec.shape[0]):
            t, gh, gw = (int(x) for x in grid[b if view == "frame" else 0])
            vals = vec[b][visual_mask[b]].float()
            shape = (t, gh // self.merge, gw // self.merge)
            if vals.numel() != math.prod(shape):
                raise InputError(f"visual span of sequence {b} has {vals.numel()} tokens, grid {tuple(shape)} needs {math.prod(shape)}")
            maps.append(vals.reshape(shape))
        return torch.cat(maps, dim=0).cpu().contiguous()

    def _greedy(self, max_new_tokens: int) -> dict:
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        tok = self.processor.tokenizer
        return {
            "max_new_tokens": int(max_new_tokens),
            "do_sample": False,
            "num_beams": 1,
            "temperature": None,
            "top_p": None,
            "top_k": None,
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        }

    def _decode(self, ids: Any) -> list[str]:
        texts = self.processor.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return [t.strip() for t in texts]

    @contextmanager
    def _count_vision(self, session: Session) -> Iterator[None]:
        """Count real forward passes of the vision tower into ``session.counters``."""

        def hook(*_: Any) -> None:
            session.counters["vision_passes"] += 1

        handle = self.model.model.visual.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


def mrope_positions(input_ids: Any, attention_mask: Any, image_grid_thw: Any, video_grid_thw: Any,
                    second_per_grid_ts: Any, *, image_token_id: int, video_token_id: int, merge: int = 2,
                    tokens_per_second: float | None = None) -> Any:
    """Qwen2-VL / Qwen2.5-VL 3D rotary position ids ``(3, B, L)`` by the official stack's rule
    (transformers 4.52 ``get_rope_index``, which the official pipeline ran on).

    Text tokens count up by one from the largest position so far; each run of image/video pad
    tokens (one grid ``(t, h, w)`` in patches, in order) gets temporal, row and column indices
    of its merged ``(t, h/merge, w/merge)`` grid, all offset by the position where the run
    starts. Temporal indices are ``t`` (Qwen2-VL, ``tokens_per_second`` None) or
    ``int(t * second_per_grid_t * tokens_per_second)`` for videos (Qwen2.5-VL; 0 for images).
    Text after a visual span continues from the span's largest index over all three axes;
    transformers 5 continues from the spatial extent only, which differs when a video's
    temporal extent is the larger (e.g. 16 frames at a small token budget).
    """
    import torch

    batch, length = input_ids.shape
    out = torch.zeros(3, batch, length, dtype=torch.long)
    grids = {int(image_token_id): iter([] if image_grid_thw is None else image_grid_thw.tolist()),
             int(video_token_id): iter([] if video_grid_thw is None else video_grid_thw.tolist())}
    seconds = iter([] if second_per_grid_ts is None else [float(x) for x in second_per_grid_ts])
    for b in range(batch):
        keep = torch.ones(length, dtype=torch.bool) if attention_mask is None else attention_mask[b].bool().cpu()
        ids = input_ids[b].cpu()[keep].tolist()
        rows: list[list[int]] = [[], [], []]
        nxt, i = 0, 0
        while i < len(ids):
            tok = ids[i]
            if tok not in grids:
                for r in rows:
                    r.append(nxt)
                nxt, i = nxt + 1, i + 1
                continue
            t, gh, gw = next(grids[tok])
            h, w = gh // merge, gw // merge
            if tokens_per_second is not None and tok == int(video_token_id):
                step = next(seconds, 1.0) * tokens_per_second
                tids = [int(k * step) for k in range(t)]
            else:
                tids = list(range(t))
            span = [(tt, hh, ww) for tt in tids for hh in range(h) for ww in range(w)]
            for tt, hh, ww in span:
                rows[0].append(nxt + tt)
                rows[1].append(nxt + hh)
                rows[2].append(nxt + ww)
            end = i + len(span)
            if end > len(ids) or any(x != tok for x in ids[i:end]):
                raise InputError(f"sequence {b}: a visual span does not match its grid {t}x{gh}x{gw}")
            nxt = max(max(tids), h - 1, w - 1) + nxt + 1
            i = end
        out[:, b, keep] = torch.tensor(rows, dtype=torch.long)
    return out.to(input_ids.device)


def _bicubic() -> Any:
    from PIL import Image

    return Image.Resampling.BICUBIC
