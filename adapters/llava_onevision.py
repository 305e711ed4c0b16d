"""LLaVA-OneVision adapter (family ``llava-onevision``), stock transformers classes only.

Token layout in transformers 5.x (checked in the tests against the model's own feature
functions and a per-tile reference):

* **Video view.** ``get_video_features`` pools each frame's ``(p, p)`` SigLIP grid 2x2
  (bilinear, to ``ceil(p/2)`` per side: 27 -> 14 for the 384 px checkpoints) and appends
  **one** ``image_newline`` vector after the last frame (one per video, not per frame or
  row); the processor expands ``<video>`` to ``T*h*w + 1`` tokens to match. The published
  DecAF runs use no newline token, so by default (``video_newline=False``) the adapter drops
  that trailing feature and one placeholder; ``video_newline=True`` keeps the stock sequence
  and leaves the newline out of the visual mask. The visual tokens are ``(T, h, w)``
  row-major either way (temporal stride 1).
* **Frame view.** ``get_image_features`` returns, per image, the base overview tile
  (``p*p`` tokens) and then the anyres high-resolution tiles stitched into one grid,
  unpadded (and shrunk when larger than ``anyres_max_N`` allows), each row followed by a
  newline vector. The adapter calls that stock method and keeps only the stitched grid: it
  drops the base tile and the newline column (a small wrapper, no modeling change) and
  builds the prompt with exactly ``h*w`` ``<image>`` placeholders, fed to the model as
  ``inputs_embeds``. ``(h, w)`` comes from the processor's own anyres arithmetic and is
  checked against the feature length. One sequence per key frame, in chunks of
  ``frame_batch_size`` (float32 attention of a ~3.7k-token sequence is ~1.5 GB per layer
  for 28 heads, so 16 at once would not fit).

Reuse: with ``reuse=True`` (default) ``open()`` encodes the frames once and every prompt on
that view reuses the features; ``reuse=False`` re-encodes per prompt (same maps, more work).
With reuse, ``prefix_reuse=True`` (default) also prefills the prompts' shared prefix (through
the last visual placeholder) once per view and sequence chunk and each prompt only its suffix
(see :mod:`decafbench.adapters.embeds`; maps equal to float rounding, same answers).
``session.counters``: ``vision_passes`` (a forward hook on the vision tower: real passes),
``prefill_tokens``, ``prompts``. Attention: each prefill streams float32 attention of the
rolled-out layers into :class:`decafbench.rollout.StreamingRollout`; decoding runs on sdpa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from decafbench.errors import InputError

from .base import AdapterOptions, View, load_with_options, resolve_options

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from decafbench.rollout import RolloutConfig

DEFAULT_CHECKPOINT = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
DEFAULT_SYSTEM = "You are a helpful assistant."

#: chat template of the llava-hf OneVision checkpoints (as transformers' conversion script
#: writes it): visual placeholders of a message first, then its text, in content order
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
#: the released checkpoints' vision geometry: 384 px SigLIP tiles of 14 px patches (27x27 =
#: 729 tokens), anyres pinpoints up to 6x6 tiles, ``anyres_max_9``
REAL_TILE, REAL_PATCH = 384, 14
REAL_PINPOINTS = [[REAL_TILE * i, REAL_TILE * j] for i in range(1, 7) for j in range(1, 7)]
#: offline checkpoints: name -> build_tiny structure
TINY_CHECKPOINTS = {"tiny": "tiny", "tiny-real": "real"}
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]


def build_tiny(seed: int = 0, attn_implementation: str = "sdpa", structure: str = "tiny") -> tuple[Any, Any]:
    """A random-weight LLaVA-OneVision of the real architecture with its real processor class.

    ``structure="tiny"``: SigLIP tower on 32 px tiles of 4 px patches (8x8 tokens per tile,
    4x4 per video frame after pooling), anyres pinpoints up to 3x2 tiles. ``"real"``: the
    released checkpoints' vision geometry (384 px tiles, 14 px patches, 27x27 tokens per
    tile, 14x14 per pooled video frame, pinpoints up to 6x6 tiles) with a one-layer, narrow
    tower, for token-count and layout checks against the official preprocessing. Both: a
    4-layer Qwen2 decoder and a locally trained tokenizer, the checkpoints' chat template;
    no network.
    """
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    from .tiny import seeded

    if structure == "real":
        tile, patch, pinpoints, layers = REAL_TILE, REAL_PATCH, REAL_PINPOINTS, 1
    elif structure == "tiny":
        tile, patch, layers = 32, 4, 2
        pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64], [64, 96], [96, 64]]
    else:
        raise InputError(f"structure must be 'tiny' or 'real', got {structure!r}")
    tok = build_tiny_tokenizer()
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size={"height": tile, "width": tile}, image_grid_pinpoints=pinpoints),
        tokenizer=tok,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": tile, "width": tile}),
        num_image_tokens=(tile // patch) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
        vision_aspect_ratio="anyres_max_9",
    )
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2, image_size=tile, patch_size=patch
        ),
        text_config=Qwen2Config(
            hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=len(tok), max_position_embeddings=4096, eos_token_id=eos, pad_token_id=pad,
        ),
        image_token_id=processor.image_token_id,
        video_token_id=processor.video_token_id,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        vision_aspect_ratio="anyres_max_9",
        attn_implementation=attn_implementation,
    )
    with seeded(seed):
        model = LlavaOnevisionForConditionalGeneration(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    return model.eval(), processor


def build_tiny_tokenizer() -> Any:
    """The tiny checkpoints' tokenizer: trained locally, the family's special tokens, the
    checkpoints' chat template, left padding (also exported for the golden fixtures)."""
    from .tiny import build_tokenizer

    tok = build_tokenizer(SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, extra_words=prompt_words())
    tok.padding_side = "left"
    return tok


def anyres_grid(processor: Any, height: int, width: int, aspect_ratio: str | None = None) -> tuple[int, int]:
    """``(h, w)`` of the stitched, unpadded anyres tile grid of one ``height x width`` image.

    The processor's own arithmetic (best pinpoint, unpadding, ``anyres_max_N`` shrink): its
    row count is the number of newline tokens and its area the unpadded feature count.
    ``aspect_ratio`` overrides the processor's ``anyres_max_N`` (on a copy, never in place).
    """
    import copy

    from transformers.image_processing_utils import select_best_resolution

    if aspect_ratio is not None:
        processor = copy.copy(processor)
        processor.vision_aspect_ratio = aspect_ratio

    size = processor.image_processor.size
    tile = int(size["height"] if size.get("height") else size["shortest_edge"])
    best_h, best_w = select_best_resolution([height, width], processor.image_processor.image_grid_pinpoints)
    side = int(round(processor.num_image_tokens**0.5))
    from ._compat_transformers import unpadded_features

    area, rows = unpadded_features(processor, height, width, side, side, best_h // tile, best_w // tile)
    return int(rows), int(area) // int(rows)


def stitched_grid(packed: "torch.Tensor", base_tokens: int, h: int, w: int) -> "torch.Tensor":
    """The high-resolution grid of one packed image feature, without base tile and newlines.

    ``packed`` is ``(base_tokens + h * (w + 1), D)`` as ``pack_image_features`` lays it out
    (overview tile, then ``h`` rows of ``w`` grid tokens each followed by a newline);
    returns ``(h * w, D)`` row-major.
    """
    expected = base_tokens + h * (w + 1)
    if packed.shape[0] != expected:
        raise ValueError(f"packed image feature has {packed.shape[0]} tokens, expected {expected} for a {h}x{w} grid")
    return packed[base_tokens:].reshape(h, w + 1, -1)[:, :w].reshape(h * w, -1)


# ------------------------------------------------------------------------------------------
# The embeds-based adapter flow, shared with the InternVL adapter: both models take visual
# features as rows of ``inputs_embeds`` at placeholder tokens, so one flow (encode once per
# view, expand placeholders, scatter features, prefill with streaming rollout, greedy
# decode) serves both; each family only supplies the hooks below.
# ------------------------------------------------------------------------------------------

from .common import load_checked, prompt_words, torch_dtype
from .embeds import EmbedsAdapter


class LlavaOneVisionAdapter(EmbedsAdapter):
    """LLaVA-OneVision (``llava-hf/llava-onevision-qwen2-*-hf``): video + frame view, rollout, reuse."""

    family = "llava-onevision"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        checkpoint: str,
        dtype: str = "float32",
        device: str = "cpu",
        rollout: "RolloutConfig | None" = None,
        frame_aspect_ratio: str | None = None,
        video_newline: bool = False,
        frame_batch_size: int = 4,
        system_prompt: str | None = DEFAULT_SYSTEM,
        reuse: bool = True,
        prefix_reuse: bool = True,
        head_columns: str = "tokens",
    ) -> None:
        super().__init__(
            model, processor, checkpoint=checkpoint, dtype=dtype, device=device, rollout=rollout,
            frame_batch_size=frame_batch_size, system_prompt=system_prompt, reuse=reuse, prefix_reuse=prefix_reuse,
            head_columns=head_columns,
        )
        ratio = frame_aspect_ratio or getattr(model.config, "vision_aspect_ratio", None) or "anyres_max_9"
        if not (isinstance(ratio, str) and ratio.startswith("anyres_max_") and ratio[len("anyres_max_"):].isdigit()):
            raise InputError(f"frame_aspect_ratio {ratio!r} is not of the form 'anyres_max_N'")
        self.frame_aspect_ratio = ratio
        self.video_newline = bool(video_newline)
        vcfg = model.config.vision_config
        self.tile_tokens = (vcfg.image_size // vcfg.patch_size) ** 2

    @classmethod
    def from_checkpoint(cls, checkpoint: str = DEFAULT_CHECKPOINT, options: AdapterOptions | None = None, **kwargs: Any):
        """The harness passes one :class:`AdapterOptions`; its ``model_args`` are the keyword
        arguments of :meth:`_load` (direct callers may pass them, and option fields, loosely)."""
        return load_with_options(cls._load, cls.family, checkpoint, resolve_options(options, kwargs))

    @classmethod
    def _load(
        cls,
        checkpoint: str = DEFAULT_CHECKPOINT,
        dtype: str = "float32",
        device: str = "cpu",
        rollout: "RolloutConfig | None" = None,
        frame_aspect_ratio: str | None = None,
        video_newline: bool = False,
        frame_batch_size: int = 4,
        system_prompt: str | None = DEFAULT_SYSTEM,
        reuse: bool = True,
        prefix_reuse: bool = True,
        head_columns: str = "tokens",
        attn_implementation: str = "sdpa",
        seed: int = 0,
    ) -> "LlavaOneVisionAdapter":
        """``tiny``: random tiny model built offline (``tiny-real``: with the released
        checkpoints' vision geometry, for token budgets); else a local folder or hub id.

        ``frame_aspect_ratio`` (``anyres_max_N``) bounds the frame-view grid (checkpoint
        default: ``anyres_max_9``, i.e. at most ~9 tiles of tokens per frame).
        """
        dt = torch_dtype(dtype)
        if checkpoint in TINY_CHECKPOINTS:
            model, processor = build_tiny(seed=seed, attn_implementation=attn_implementation, structure=TINY_CHECKPOINTS[checkpoint])
        else:
            from transformers import LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor

            model, processor = load_checked(
                checkpoint, ("llava_onevision",), LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor, dt, attn_implementation, rollout
            )
        return cls(
            model.to(device=device, dtype=dt), processor, checkpoint=checkpoint, dtype=dtype, device=device, rollout=rollout,
            frame_aspect_ratio=frame_aspect_ratio, video_newline=video_newline, frame_batch_size=frame_batch_size,
            system_prompt=system_prompt, reuse=reuse, prefix_reuse=prefix_reuse, head_columns=head_columns,
        )

    def settings(self) -> dict:
        return {"frame_aspect_ratio": self.frame_aspect_ratio, "video_newline": self.video_newline}

    # -- model-specific hooks (see EmbedsAdapter) -------------------------------------------
    def vision_tower(self) -> Any:
        return self.model.model.vision_tower

    def preprocess(self, images: Sequence[Any], view: View) -> dict:
        if view == "video":
            out = self.processor.video_processor(videos=[list(images)], do_sample_frames=False, return_tensors="pt")
            return {"pixel_values_videos": out["pixel_values_videos"]}
        out = self.processor.image_processor(images=list(images), return_tensors="pt")
        return {"pixel_values": out["pixel_values"], "image_sizes": out["image_sizes"]}

    def encode(self, pixels: dict, view: View) -> tuple[list["torch.Tensor"], tuple[int, int, int]]:
        """Per sequence the ``(n, D)`` features in placeholder order, and the ``(t, h, w)`` grid.

        Frame view: the stock method also encodes the base overview tile; it is dropped here.
        """
        base = self.model.model
        if view == "video":
            px = pixels["pixel_values_videos"].to(self.device, self.model.dtype)
            feats = base.get_video_features(px, return_dict=True).pooler_output[0]  # (T*h*w + 1, D)
            t = px.shape[1]
            side = int(round(((feats.shape[0] - 1) // t) ** 0.5))
            if t * side * side + 1 != feats.shape[0]:
                raise ValueError(f"unexpected video feature length {feats.shape[0]} for {t} frames")
            return [feats if self.video_newline else feats[:-1]], (t, side, side)
        px = pixels["pixel_values"].to(self.device, self.model.dtype)
        sizes = pixels["image_sizes"]
        packed = base.get_image_features(
            px, sizes.to(self.device), vision_aspect_ratio=self.frame_aspect_ratio, return_dict=True
        ).pooler_output
        h, w = anyres_grid(self.processor, int(sizes[0, 0]), int(sizes[0, 1]), self.frame_aspect_ratio)
        return [stitched_grid(p, self.tile_tokens, h, w) for p in packed], (len(packed), h, w)

    def placeholder(self, view: View) -> tuple[str, str, int]:
        """(chat content type, placeholder token, its id) of ``view``."""
        if view == "video":
            return "video", self.processor.video_token, int(self.processor.video_token_id)
        return "image", self.processor.image_token, int(self.processor.image_token_id)

    def geometry(self, session: Any) -> dict:
        """Frame size given to the model, map grid and visual tokens per sequence, from the
        preprocessed pixels and the processor's own arithmetic (no forward pass).

        Video view: every frame resized to one tile and pooled 2x2 (``ceil(p/2)`` per side).
        Frame view: the anyres canvas (best pinpoint, tiles of ``tile`` px) and the unpadded,
        ``anyres_max_N``-bounded grid of its tiles, no overview tile, no newlines.
        """
        import math

        from transformers.image_processing_utils import select_best_resolution

        vcfg = self.model.config.vision_config
        side = vcfg.image_size // vcfg.patch_size
        px = session.state["pixels"]
        t = session.num_frames
        if session.view == "video":
            h, w = (int(v) for v in px["pixel_values_videos"].shape[-2:])
            pooled = math.ceil(side / 2)
            tokens = t * pooled * pooled + (1 if self.video_newline else 0)
            return {"frame_size": (h, w), "grid": (t, pooled, pooled), "visual_tokens": tokens, "extra": {"newline": self.video_newline}}
        height, width = (int(v) for v in px["image_sizes"][0])
        best_h, best_w = select_best_resolution([height, width], self.processor.image_processor.image_grid_pinpoints)
        gh, gw = anyres_grid(self.processor, height, width, self.frame_aspect_ratio)
        tile = vcfg.image_size
        return {"frame_size": (int(best_h), int(best_w)), "grid": (t, gh, gw), "visual_tokens": gh * gw,
                "extra": {"tiles": [int(best_h) // tile, int(best_w) // tile], "aspect_ratio": self.frame_aspect_ratio}}

    def visual_mask(self, input_ids: "torch.Tensor", view: View) -> "torch.Tensor":
        """Grid tokens only: the video's trailing newline (when kept) is no grid cell."""
        mask = input_ids == self.placeholder(view)[2]
        if view == "video" and self.video_newline:
            for b in range(mask.shape[0]):
                idx = mask[b].nonzero().flatten()
                if idx.numel():
                    mask[b, idx[-1]] = False
        return mask


__all__ = ["LlavaOneVisionAdapter", "anyres_grid", "stitched_grid", "build_tiny", "DEFAULT_CHECKPOINT"]
