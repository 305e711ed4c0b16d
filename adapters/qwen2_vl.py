"""Qwen2-VL and Qwen2.5-VL adapter (stock transformers classes, no copied modeling code).

Views (method section 2): the video view feeds all key frames as one video input (one
sequence; the vision tower merges 2 frames per temporal patch, so the map has ceil(T/2)
time steps); the frame view feeds each key frame as its own image input, a batch of T
sequences, at 2x the video view's per-frame token grid per side (400 video tokens per frame
and 1600 per image, published). Frames are resized here to a size the processor keeps
unchanged (multiples of ``patch * merge``), so the grid is exactly what the budget says.

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
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from decafbench.errors import InputError

from .base import Adapter, AdapterOptions, AdapterSpec, Session, View, ViewResult, load_with_options, resolve_options
from .common import check_frames, load_checked, no_grad, torch_dtype

if TYPE_CHECKING:  # pragma: no cover
    from decafbench.rollout import RolloutConfig

#: budgets of the tiny checkpoints when none are given (the real defaults are 400 / 1600)
TINY_BUDGETS = (16, 64)


def budget_size(height: int, width: int, tokens: int, factor: int) -> tuple[int, int]:
    """Pixel size (multiples of ``factor``) closest to ``tokens`` merged tokens at the frame's aspect.

    Same rounding as Qwen's ``smart_resize`` with min_pixels = max_pixels = tokens * factor^2,
    so the processor leaves frames of this size unchanged.
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    pixels = tokens * factor * factor
    return smart_resize(height, width, factor=factor, min_pixels=pixels, max_pixels=pixels)


class Qwen2VLAdapter(Adapter):
    """Qwen2-VL / Qwen2.5-VL: video view + frame view, streaming rollout, encoder reuse."""

    family = "qwen2-vl"
    supports_reuse = True
    supports_prefix_reuse = True

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
        image_tokens: int = 1600,
        reuse: bool = True,
        prefix_reuse: bool = True,
    ) -> None:
        from decafbench.rollout import RolloutConfig

        if video_tokens_per_frame < 1 or image_tokens < 1:
            raise InputError(f"token budgets must be >= 1 (video_tokens_per_frame={video_tokens_per_frame}, image_tokens={image_tokens})")
        self.model = model.eval()
        self.processor = processor
        self.checkpoint = checkpoint
        self.dtype = dtype
        self.device = device
        self.rollout = rollout or RolloutConfig()
        self.video_tokens_per_frame = int(video_tokens_per_frame)
        self.image_tokens = int(image_tokens)
        self.reuse = reuse
        self.prefix_reuse = prefix_reuse
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
        reuse: bool = True,
        prefix_reuse: bool = True,
        attn_implementation: str = "sdpa",
        seed: int = 0,
    ) -> "Qwen2VLAdapter":
        """``tiny`` / ``tiny-2.5``: random tiny Qwen2-VL / Qwen2.5-VL built offline; else a local
        folder or hub id loaded with AutoModelForImageTextToText / AutoProcessor.

        Budgets default to 400 video tokens per frame and 1600 per image (16 / 64 for tiny).
        ``prefix_reuse`` prefills the prompts' shared prefix once per view (needs ``reuse``);
        it changes work done, not outputs, so it is not part of :meth:`spec`.
        """
        dt = torch_dtype(dtype)
        if checkpoint in ("tiny", "tiny-2.5"):
            from .qwen2_vl_tiny import build_tiny

            model, processor = build_tiny(version="2.5" if checkpoint == "tiny-2.5" else "2", seed=seed, attn_implementation=attn_implementation)
            default_budgets = TINY_BUDGETS
        else:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            model, processor = load_checked(checkpoint, ("qwen2_vl", "qwen2_5_vl"), AutoModelForImageTextToText,
                                            AutoProcessor, dt, attn_implementation, rollout)
            default_budgets = (400, 1600)
        model = model.to(device=device, dtype=dt)
        return cls(
            model,
            processor,
            checkpoint=checkpoint,
            dtype=dtype,
            device=device,
            rollout=rollout,
            video_tokens_per_frame=video_tokens_per_frame or default_budgets[0],
            image_tokens=image_tokens or default_budgets[1],
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
                "rollout": self.rollout.to_dict(),
                "layers": [self.layers.start, self.layers.stop],
            },
        )

    # -- sizes ------------------------------------------------------------------------------
    def view_size(self, height: int, width: int, view: View) -> tuple[int, int]:
        """Pixel size the frames of ``view`` are resized to.

        Frame view: exactly 2x the video view per side when ``image_tokens`` is 4x the video
        budget (the published setting), else the image budget on its own.
        """
        hv, wv = budget_size(height, width, self.video_tokens_per_frame, self.factor)
        if view == "video":
            return hv, wv
        if self.image_tokens == 4 * self.video_tokens_per_frame:
            return 2 * hv, 2 * wv
        return budget_size(height, width, self.image_tokens, self.factor)

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
        with self._count_vision(session), capture_attention(self.model, self.layers, streaming.observe), no_grad():
            out = self.model.generate(**kwargs, **self._greedy(max_new_tokens))
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

    def _positions(self, inputs: dict) -> Any:
        """The position ids ``generate`` computes for the full prompt (the model's own method)."""
        model_kwargs = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "pixel_values_videos")}
        from ._compat_transformers import generation_position_ids

        return generation_position_ids(self.model, inputs["input_ids"], model_kwargs)

    # -- internals --------------------------------------------------------------------------
    def _visual_kwargs(self, session: Session) -> dict:
        h, w = session.state["size"]
        size = {"shortest_edge": h * w, "longest_edge": h * w}
        if session.view == "video":
            return {"videos": [session.state["frames"]], "videos_kwargs": {"size": size, "do_sample_frames": False, "cap_pixels_per_frame": False}}
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


def _bicubic() -> Any:
    from PIL import Image

    return Image.Resampling.BICUBIC
