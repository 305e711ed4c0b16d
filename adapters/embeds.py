"""Shared machinery of adapters that feed visual features as ``inputs_embeds``.

LLaVA-OneVision and InternVL both encode a view's frames once with the stock model's own
feature methods, lay the prompt out with exactly the visual tokens the map needs, splice the
features into the token embeddings and run prefill (with attention capture and streaming
rollout) and greedy decoding. Each family supplies the hooks (encode, prompt layout, grid).

Prefix reuse (``prefix_reuse=True``, only with ``reuse``): every prompt of a view starts with
the same tokens (chat header and system prompt through the last visual placeholder), and with
reused features the same ``inputs_embeds`` there. The first ``attend`` prefills that prefix
once per sequence chunk into a KV cache kept in the session, together with the post-RoPE
queries of the rolled-out layers; each prompt then prefills only its suffix (plain 1-D
positions continue at ``P``: ``generate`` slices the full ``inputs_embeds`` to what the cache
lacks) on a copy of the cache and decodes from it. The prefix rows of each layer's attention
are causal, so they are rebuilt exactly from the kept queries and the cached prefix keys
(:func:`decafbench.adapters.attention.causal_weights`) and rollout still sees the full
``(B, H, L, L)`` matrix. ``prefill_tokens`` counts the prefix once per chunk, then each suffix.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from decafbench.errors import InputError

from .base import Adapter, AdapterSpec, Session, View, ViewResult
from .common import check_frames, no_grad

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from decafbench.rollout import RolloutConfig


class EmbedsAdapter(Adapter):
    """Adapter flow for models fed visual features through ``inputs_embeds``.

    Subclasses implement :meth:`vision_tower`, :meth:`preprocess`, :meth:`encode`,
    :meth:`placeholder`, and may override :meth:`expand` (placeholder text layout),
    :meth:`visual_mask` (grid tokens among the placeholders) and :meth:`settings`.
    """

    supports_reuse = True
    supports_prefix_reuse = True

    def __init__(
        self, model: Any, processor: Any, *, checkpoint: str, dtype: str, device: str, rollout: "RolloutConfig | None",
        frame_batch_size: int, system_prompt: str | None, reuse: bool, prefix_reuse: bool = True,
        head_columns: str = "tokens",
    ) -> None:
        from decafbench.rollout import RolloutConfig

        from .attention import language_layers

        if int(frame_batch_size) < 1:
            raise InputError(f"frame_batch_size must be >= 1, got {frame_batch_size}")
        self.model, self.processor = model.eval(), processor
        self.checkpoint, self.dtype, self.device = checkpoint, dtype, device
        self.rollout = rollout or RolloutConfig()
        self.frame_batch_size = int(frame_batch_size)
        self.system_prompt = system_prompt
        self.reuse = bool(reuse)
        self.prefix_reuse = bool(prefix_reuse)  # work done, not outputs: not in spec()
        if head_columns not in ("span", "tokens"):
            raise InputError(f"head_columns must be 'tokens' (official) or 'span', got {head_columns!r}")
        # "tokens": vmax head weights over exactly the visual placeholder columns, as the
        # official code gathers them; "span": first..last visual token (separators included)
        self.head_columns = head_columns
        self.num_layers = language_layers(model)
        self.layers = self.rollout.layers(self.num_layers)

    # -- hooks ------------------------------------------------------------------------------
    def vision_tower(self) -> Any:
        raise NotImplementedError

    def preprocess(self, images: Sequence[Any], view: View) -> dict:
        raise NotImplementedError

    def encode(self, pixels: dict, view: View) -> tuple[list["torch.Tensor"], tuple[int, int, int]]:
        """Per sequence the ``(n, D)`` features in placeholder order, and the ``(t, h, w)`` map grid."""
        raise NotImplementedError

    def placeholder(self, view: View) -> tuple[str, str, int]:
        """(chat content type, placeholder token, its id) of ``view``."""
        raise NotImplementedError

    def expand(self, text: str, view: View, n_tokens: int) -> str:
        """Replace the chat template's one placeholder with ``n_tokens`` placeholder tokens."""
        _, token, _ = self.placeholder(view)
        if text.count(token) != 1:
            raise InputError(f"chat template rendered {text.count(token)} {token!r} placeholders, expected 1")
        return text.replace(token, token * n_tokens)

    def visual_mask(self, input_ids: "torch.Tensor", view: View) -> "torch.Tensor":
        """Which tokens are map cells (default: every placeholder token)."""
        return input_ids == self.placeholder(view)[2]

    def cells_to_grid(self, vals: "torch.Tensor", shape: tuple[int, int, int], view: View) -> "torch.Tensor":
        """One sequence's map-cell values, in token order, as its ``(t, h, w)`` map (default: row-major)."""
        return vals.reshape(shape)

    def settings(self) -> dict:
        return {}

    def geometry(self, session: Session) -> dict:
        """``frame_size`` (H, W), ``grid`` (t, h, w), ``visual_tokens`` (per sequence) and
        ``extra`` of an opened view, from its preprocessed pixels (no forward pass)."""
        raise NotImplementedError

    def layout(self, session: Session, prompt: str) -> Any:
        """What the model is given for ``prompt`` on ``session`` (``decaf inspect``): frame
        size, map grid, visual tokens per sequence, no temporal rotary index (these families
        use 1-D positions), and the system message sent."""
        from .base import ViewLayout

        geo = self.geometry(session)
        return ViewLayout(view=session.view, frame_size=tuple(geo["frame_size"]), grid=tuple(geo["grid"]),
                          visual_tokens=int(geo["visual_tokens"]), temporal_positions=None,
                          system_prompt=self.system_prompt, extra=dict(geo.get("extra", {})))

    # -- protocol ---------------------------------------------------------------------------
    def spec(self) -> AdapterSpec:
        config = {"model_type": self.model.config.model_type, "dtype": self.dtype, "rollout": self.rollout.to_dict(),
                  "layers": [self.layers.start, self.layers.stop], "system_prompt": self.system_prompt, "head_columns": self.head_columns, **self.settings()}
        return AdapterSpec(family=self.family, checkpoint=self.checkpoint, config=config)

    def open(self, frames: Sequence[Any], view: View) -> Session:
        """Preprocess the key frames for ``view`` and (with reuse) encode them once."""
        images = check_frames(frames)
        if view not in ("video", "frame"):
            raise InputError(f"view must be 'video' or 'frame', got {view!r}")
        session = Session(view=view, num_frames=len(images))
        session.counters.update(vision_passes=0, prefill_tokens=0, prompts=0)
        session.state["pixels"] = self.preprocess(images, view)
        if self.reuse:
            session.state["encoded"] = self._encode(session)
        return session

    def attend(self, session: Session, prompt: str, *, max_new_tokens: int = 8) -> ViewResult:
        """Prefill each sequence with streaming rollout of the configured layers, then greedy decoding."""
        import torch

        feats, grid = session.state["encoded"] if self.reuse else self._encode(session)
        kind = self.placeholder(session.view)[0]
        text = self.chat_text(prompt, kind)
        step = len(feats) if session.view == "video" else self.frame_batch_size
        maps, texts, stats = [], [], {}
        for start in range(0, len(feats), step):
            chunk = feats[start : start + step]
            rows = [self.expand(text, session.view, int(f.shape[0])) for f in chunk]
            vec, vmask, out_texts, length, plen, prefilled = self._run(session, start, rows, chunk, max_new_tokens)
            per_row = (grid[0] // len(feats), grid[1], grid[2])
            maps += [self._to_grid(vec[b], vmask[b], per_row, session.view, start + b) for b in range(len(chunk))]
            texts += out_texts
            session.counters["prefill_tokens"] += prefilled * len(chunk)
            stats = {"prefill_tokens": prefilled, "prompt_tokens": length, "prefix_tokens": plen, "visual_tokens": int(vmask[0].sum())}
        session.counters["prompts"] += 1
        attention = torch.cat(maps).cpu().contiguous()
        if not bool(torch.isfinite(attention).all()):
            raise InputError(f"NaN or inf in the rollout map of prompt {prompt[:40]!r} ({session.view} view)")
        return ViewResult(texts=texts, attention=attention, temporal_stride=1, stats={"grid": list(attention.shape), **stats})

    def answer(self, prompt: str, *, max_new_tokens: int = 8) -> str:
        """Greedy answer to a text-only prompt (the object-choice step)."""
        enc = self.processor.tokenizer([self.chat_text(prompt, None)], return_tensors="pt").to(self.device)
        with no_grad():
            out = self.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **self._greedy(max_new_tokens))
        return self._decode(out[:, enc["input_ids"].shape[1] :])[0]

    # -- internals --------------------------------------------------------------------------
    def prompt_inputs(self, rows: list[str], feats: Sequence["torch.Tensor"], view: View) -> dict:
        """Token ids, attention mask, ``inputs_embeds`` and visual mask of a batch of prompt rows."""
        import torch

        enc = self.processor.tokenizer(rows, return_tensors="pt", padding=True).to(self.device)
        ids = enc["input_ids"]
        lengths = enc["attention_mask"].sum(dim=1)
        if bool((lengths != lengths[0]).any()):
            raise InputError(f"{view} view: prompt rows differ in length (key frames must share one size)")
        place = ids == self.placeholder(view)[2]
        counts = place.sum(dim=1).tolist()
        if counts != [int(f.shape[0]) for f in feats]:
            raise InputError(f"{view} view: prompt has {counts} visual placeholders, features have {[int(f.shape[0]) for f in feats]}")
        vmask = self.visual_mask(ids, view)
        empty = (vmask.sum(dim=1) == 0).nonzero().flatten().tolist()
        if empty:
            raise InputError(f"empty visual span in sequence(s) {empty}: no visual tokens in the {view} view prompt")
        embeds = self.model.get_input_embeddings()(ids)
        visual = torch.cat(list(feats)).to(embeds.device, embeds.dtype)
        embeds = embeds.masked_scatter(place.unsqueeze(-1), visual)
        return {"input_ids": ids, "attention_mask": enc["attention_mask"], "inputs_embeds": embeds, "visual_mask": vmask}

    def _run(self, session: Session, key: int, rows: list[str], feats: Sequence[Any],
             max_new_tokens: int) -> tuple[Any, Any, list[str], int, int, int]:
        """Rollout vector, visual mask, texts, prompt length, prefix length (0: no prefix reuse)
        and tokens prefilled per sequence here, for one chunk (``key``: its first sequence)."""
        import copy

        import torch

        from decafbench.rollout import StreamingRollout

        from .attention import capture_attention, causal_weights

        with no_grad():
            inputs = self.prompt_inputs(rows, feats, session.view)
        vmask = inputs.pop("visual_mask")
        length = int(inputs["input_ids"].shape[1])
        streaming = StreamingRollout(vmask, self.layers, head_weighting=self.rollout.head_weighting,
                                     residual=self.rollout.residual, store_dtype=torch.float32,
                                     head_columns=self.head_columns)
        if not (self.reuse and self.prefix_reuse and bool(inputs["attention_mask"].all())):  # rebuilt rows assume no padding
            with capture_attention(self.model, self.layers, streaming.observe), no_grad():
                out = self.model.generate(**inputs, **self._greedy(max_new_tokens))
            return streaming.result(), vmask, self._decode(out[:, length:]), length, 0, length
        prefix, prefilled = self._prefix(session, key, inputs)
        plen = prefix["length"]

        def observe(layer: int, attn: Any, seen: Any) -> None:
            # suffix rows come from this pass; prefix rows (causal) from the kept prefix query
            # and the cached prefix keys; prefix rows are zero in the suffix columns
            full = attn.new_zeros(attn.shape[0], attn.shape[1], length, length)
            full[:, :, :plen, :plen] = causal_weights(prefix["queries"][layer], seen.key[:, :, :plen], seen.scaling)
            full[:, :, plen:, :] = attn
            streaming.observe(layer, full)

        with capture_attention(self.model, self.layers, observe, with_inputs=True), no_grad():
            out = self.model.generate(**inputs, cache=copy.deepcopy(prefix["cache"]), **self._greedy(max_new_tokens))
        return streaming.result(), vmask, self._decode(out[:, length:]), length, plen, prefilled + length - plen

    def _prefix_length(self, ids: Any, view: View) -> int:
        """Tokens through the (last) visual placeholder: what every prompt of a view shares."""
        pid = self.placeholder(view)[2]
        ends = [int(hits[-1]) + 1 if hits.numel() else 0 for hits in ((row == pid).nonzero().flatten() for row in ids)]
        if len(set(ends)) != 1 or ends[0] == 0 or ends[0] >= ids.shape[1]:
            raise InputError(f"{view} view: prompt has no visual placeholder before its question (last placeholder ends {ends})")
        return ends[0]

    def _prefix(self, session: Session, key: int, inputs: dict) -> tuple[dict, int]:
        """Chunk ``key``'s prefilled prefix (KV cache + prefix queries of the rolled-out layers)
        and the tokens per sequence prefilled for it now: prefilled on first use, or again if this
        prompt's prefix differs from the kept one."""
        import torch

        from .attention import capture_attention

        ids = inputs["input_ids"]
        plen = self._prefix_length(ids, session.view)
        store = session.state.setdefault("prefix", {})
        kept = store.get(key)
        if kept is not None and kept["length"] == plen and torch.equal(kept["ids"], ids[:, :plen]):
            return kept, 0
        queries: dict[int, Any] = {}

        def keep_query(layer: int, _attn: Any, seen: Any) -> None:
            queries[layer] = seen.query

        with capture_attention(self.model, self.layers, keep_query, with_inputs=True), no_grad():
            out = self.model.model(inputs_embeds=inputs["inputs_embeds"][:, :plen], attention_mask=inputs["attention_mask"][:, :plen],
                                   use_cache=True)
        kept = {"length": plen, "ids": ids[:, :plen].clone(), "cache": out.cache, "queries": queries}
        store[key] = kept
        return kept, plen

    def _encode(self, session: Session) -> tuple[list[Any], tuple[int, int, int]]:
        with self._count_vision(session), no_grad():
            return self.encode(session.state["pixels"], session.view)

    def _to_grid(self, vec: Any, vmask: Any, shape: tuple[int, int, int], view: View, row: int) -> Any:
        vals = vec[vmask].float()
        if vals.numel() != math.prod(shape):
            raise InputError(f"visual span of sequence {row} has {vals.numel()} tokens, grid {shape} needs {math.prod(shape)}")
        return self.cells_to_grid(vals, shape, view)

    def chat_text(self, prompt: str, kind: str | None) -> str:
        content = ([{"type": kind}] if kind else []) + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _greedy(self, max_new_tokens: int) -> dict:
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        tok = self.processor.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return {"max_new_tokens": int(max_new_tokens), "do_sample": False, "num_beams": 1,
                "temperature": None, "top_p": None, "top_k": None, "pad_token_id": pad}

    def _decode(self, ids: Any) -> list[str]:
        texts = self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return [t.strip() for t in texts]

    @contextmanager
    def _count_vision(self, session: Session) -> Iterator[None]:
        """Count real forward passes of the vision tower into ``session.counters``."""

        def hook(*_: Any) -> None:
            session.counters["vision_passes"] += 1

        handle = self.vision_tower().register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()
