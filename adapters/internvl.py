"""InternVL adapter (family ``internvl``): the transformers-native InternVL3 classes.

Token layout in transformers 5.x (checked in the tests against the model's own functions):

* Every 448 px tile goes through InternViT; ``get_image_features`` drops the CLS token,
  pixel-shuffles the ``32x32`` patch grid by 0.5 to ``16x16`` (each token = a 2x2 patch
  block, row-major) and projects: 256 tokens per tile, ``<IMG_CONTEXT>`` placeholders.
* **Video view.** One tile per frame (the video processor resizes each frame to the tile);
  the processor lays the video out as ``Frame1: <img>`` + 256 placeholders + ``</img>\\n
  Frame2: ...``. The map is ``(T, 16, 16)``, temporal stride 1; the ``FrameN:`` and
  ``<img>`` tokens between frames are inside the visual span (head weighting) but are no
  grid cells.
* **Frame view.** Each key frame is tiled into ``rows x cols`` 448 px tiles (the image
  processor's ``crop_to_patches``, tile count in ``[frame_min_tiles, frame_max_tiles]``,
  published: up to 12), tiles row-major, then a thumbnail tile of the whole frame when more
  than one tile is used. The tile grids are stitched back into one ``(rows*16, cols*16)``
  map. The thumbnail is never a map cell: by default (``frame_thumbnail=False``, as in the
  published runs) it is not fed to the model at all; ``frame_thumbnail=True`` keeps the
  stock sequence and leaves its tokens out of the visual mask.

Visual features go in as ``inputs_embeds`` (the shared flow of
:class:`decafbench.adapters.llava_onevision.EmbedsAdapter`): encoded once per view with
``reuse=True``, per prompt otherwise; with reuse, ``prefix_reuse=True`` (default) prefills the
prompts' shared prefix (through the last ``<IMG_CONTEXT>``) once per view and sequence chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from decafbench.errors import InputError

from .base import AdapterOptions, View, load_with_options, resolve_options
from .common import load_checked, prompt_words, torch_dtype
from .embeds import EmbedsAdapter

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from decafbench.rollout import RolloutConfig

DEFAULT_CHECKPOINT = "OpenGVLab/InternVL3-8B-hf"
#: InternVL's own system prompt, given as the system message of all four prompts by the
#: official pipeline (``SYS_INTERNVL`` in ``evaluation/inf_utils.py``); checked against the
#: golden fixture ``tests/fixtures/golden/internvl.json``
DEFAULT_SYSTEM = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"

#: chat template of the InternVL3 ``-hf`` checkpoints (as transformers' conversion script
#: writes it): a message's parts in content order, ``<IMG_CONTEXT>`` / ``<video>`` placeholders
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)
#: the released checkpoints' vision geometry: 448 px tiles of 14 px patches, pixel-shuffled
#: to 16x16 = 256 tokens per tile
REAL_TILE, REAL_PATCH = 448, 14
#: offline checkpoints: name -> build_tiny structure
TINY_CHECKPOINTS = {"tiny": "tiny", "tiny-real": "real"}
NAMED_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *NAMED_TOKENS.values()]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def build_tiny(seed: int = 0, attn_implementation: str = "sdpa", structure: str = "tiny") -> tuple[Any, Any]:
    """A random-weight InternVL of the real architecture with its real processor classes.

    ``structure="tiny"``: 32 px tiles of 4 px patches (8x8 patches, 4x4 tokens per tile
    after pixel shuffle), a 2-layer InternViT. ``"real"``: the released checkpoints' 448 px
    tiles of 14 px patches (16x16 tokens per tile), a one-layer narrow InternViT, for token
    counts and layout checks. Both: up to 12 tiles per frame, a 4-layer Qwen2 decoder, the
    checkpoints' chat template and a locally trained tokenizer whose named image tokens match
    the ``-hf`` checkpoints': no network.
    """
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
        InternVLVisionConfig,
        Qwen2Config,
    )

    from .tiny import seeded

    if structure == "real":
        tile, patch, layers = REAL_TILE, REAL_PATCH, 1
    elif structure == "tiny":
        tile, patch, layers = 32, 4, 2
    else:
        raise InputError(f"structure must be 'tiny' or 'real', got {structure!r}")
    tok = build_tiny_tokenizer()
    norm = {"image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size={"height": tile, "width": tile}, crop_to_patches=True, max_patches=12, **norm),
        tokenizer=tok,
        video_processor=InternVLVideoProcessor(size={"height": tile, "width": tile}, **norm),
        image_seq_length=(tile // patch // 2) ** 2,
        chat_template=CHAT_TEMPLATE,
    )
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
            image_size=[tile, tile], patch_size=[patch, patch],
        ),
        text_config=Qwen2Config(
            hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=len(tok), max_position_embeddings=4096, eos_token_id=eos, pad_token_id=pad,
        ),
        image_token_id=processor.image_token_id,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        attn_implementation=attn_implementation,
    )
    with seeded(seed):
        model = InternVLForConditionalGeneration(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    return model.eval(), processor


def build_tiny_tokenizer() -> Any:
    """The tiny checkpoints' tokenizer: trained locally, named image tokens as the ``-hf``
    checkpoints declare them, their chat template, left padding (also exported for the
    golden fixtures)."""
    from transformers import PreTrainedTokenizerFast

    from .tiny import build_tokenizer

    base = build_tokenizer(SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, extra_words=[*prompt_words(), DEFAULT_SYSTEM])
    # re-wrap to declare the named image tokens InternVLProcessor reads (tokenizer.start_image_token, ...)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=base.backend_tokenizer, pad_token=base.pad_token, eos_token=base.eos_token,
        chat_template=CHAT_TEMPLATE, extra_special_tokens=dict(NAMED_TOKENS), padding_side="left",
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})  # skipped when decoding, as in the real one
    return tok


def tile_grid(height: int, width: int, tile: int, min_tiles: int, max_tiles: int) -> tuple[int, int]:
    """``(rows, cols)`` of tiles the image processor cuts a ``height x width`` frame into."""
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    cols, rows = get_optimal_tiled_canvas((height, width), (tile, tile), min_tiles, max_tiles)
    return int(rows), int(cols)


def stitch_tiles(cells: "torch.Tensor", rows: int, cols: int, side: int) -> "torch.Tensor":
    """Tile-major values ``(rows*cols*side*side, ...)`` -> one ``(rows*side, cols*side, ...)`` map.

    Tiles are row-major over the frame and each tile's ``side x side`` tokens row-major
    inside it, so token ``k`` of tile ``n`` lands at ``(n // cols * side + k // side,
    n % cols * side + k % side)``.
    """
    rest = cells.shape[1:]
    grid = cells.reshape(rows, cols, side, side, *rest).transpose(1, 2)
    return grid.reshape(rows * side, cols * side, *rest)


class InternVLAdapter(EmbedsAdapter):
    """InternVL3 ``-hf`` checkpoints: video view (1 tile/frame) + tiled frame view, rollout, reuse."""

    family = "internvl"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        checkpoint: str,
        dtype: str = "float32",
        device: str = "cpu",
        rollout: "RolloutConfig | None" = None,
        frame_min_tiles: int = 1,
        frame_max_tiles: int = 12,
        frame_thumbnail: bool = False,
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
        if not 1 <= int(frame_min_tiles) <= int(frame_max_tiles):
            raise InputError(f"need 1 <= frame_min_tiles <= frame_max_tiles, got {frame_min_tiles}, {frame_max_tiles}")
        self.frame_min_tiles, self.frame_max_tiles = int(frame_min_tiles), int(frame_max_tiles)
        self.frame_thumbnail = bool(frame_thumbnail)
        self.tile_tokens = int(processor.image_seq_length)
        self.side = int(round(self.tile_tokens**0.5))
        if self.side * self.side != self.tile_tokens:
            raise InputError(f"image_seq_length {self.tile_tokens} is not a square number of tokens per tile")
        size = processor.image_processor.size
        self.tile = int(size["height"])

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
        frame_min_tiles: int = 1,
        frame_max_tiles: int = 12,
        frame_thumbnail: bool = False,
        frame_batch_size: int = 4,
        system_prompt: str | None = DEFAULT_SYSTEM,
        reuse: bool = True,
        prefix_reuse: bool = True,
        head_columns: str = "tokens",
        attn_implementation: str = "sdpa",
        seed: int = 0,
    ) -> "InternVLAdapter":
        """``tiny``: random tiny model built offline (``tiny-real``: with the released
        checkpoints' 448 px tiles, for token budgets); else a local folder or hub id (``*-hf``).

        The frame view tiles each key frame into ``frame_min_tiles..frame_max_tiles`` tiles
        (published: 1..12); the video view always uses one tile per frame. ``system_prompt``:
        InternVL's own (official); ``None`` leaves it to the chat template. ``head_columns``:
        ``tokens`` (official: vmax head weights over exactly the ``<IMG_CONTEXT>`` positions)
        or ``span`` (first to last, the ``FrameN: <img>`` separators included).
        """
        dt = torch_dtype(dtype)
        if checkpoint in TINY_CHECKPOINTS:
            model, processor = build_tiny(seed=seed, attn_implementation=attn_implementation, structure=TINY_CHECKPOINTS[checkpoint])
        else:
            from transformers import InternVLForConditionalGeneration, InternVLProcessor

            model, processor = load_checked(
                checkpoint, ("internvl",), InternVLForConditionalGeneration, InternVLProcessor, dt, attn_implementation, rollout
            )
        return cls(
            model.to(device=device, dtype=dt), processor, checkpoint=checkpoint, dtype=dtype, device=device, rollout=rollout,
            frame_min_tiles=frame_min_tiles, frame_max_tiles=frame_max_tiles, frame_thumbnail=frame_thumbnail,
            frame_batch_size=frame_batch_size, system_prompt=system_prompt, reuse=reuse, prefix_reuse=prefix_reuse,
            head_columns=head_columns,
        )

    def settings(self) -> dict:
        return {"frame_min_tiles": self.frame_min_tiles, "frame_max_tiles": self.frame_max_tiles,
                "frame_thumbnail": self.frame_thumbnail, "tile_tokens": self.tile_tokens}

    # -- model-specific hooks (see EmbedsAdapter) -------------------------------------------
    def vision_tower(self) -> Any:
        return self.model.model.vision_tower

    def preprocess(self, images: Sequence[Any], view: View) -> dict:
        if view == "video":
            out = self.processor.video_processor(videos=[list(images)], do_sample_frames=False, return_tensors="pt")
            return {"pixel_values": out["pixel_values_videos"][0]}
        out = self.processor.image_processor(
            images=list(images), crop_to_patches=True, min_patches=self.frame_min_tiles,
            max_patches=self.frame_max_tiles, return_tensors="pt",
        )
        counts = [int(n) for n in out["num_patches"]]
        rows, cols = tile_grid(images[0].height, images[0].width, self.tile, self.frame_min_tiles, self.frame_max_tiles)
        thumb = 1 if rows * cols > 1 else 0
        if any(n != rows * cols + thumb for n in counts):
            raise ValueError(f"image processor made {counts} tiles per frame, expected {rows}x{cols} + {thumb} thumbnail")
        px = out["pixel_values"].reshape(len(counts), counts[0], *out["pixel_values"].shape[1:])
        if thumb and not self.frame_thumbnail:
            px = px[:, : rows * cols]
        return {"pixel_values": px.flatten(0, 1), "tiles": (rows, cols), "per_frame": px.shape[1]}

    def encode(self, pixels: dict, view: View) -> tuple[list["torch.Tensor"], tuple[int, int, int]]:
        px = pixels["pixel_values"].to(self.device, self.model.dtype)
        feats = self.model.model.get_image_features(px, return_dict=True).pooler_output  # (tiles, S, D)
        if feats.shape[1] != self.tile_tokens:
            raise ValueError(f"{feats.shape[1]} tokens per tile, the processor expects {self.tile_tokens}")
        if view == "video":
            return [feats.flatten(0, 1)], (feats.shape[0], self.side, self.side)
        per = pixels["per_frame"]
        rows, cols = pixels["tiles"]
        frames = feats.reshape(-1, per * self.tile_tokens, feats.shape[-1])
        return list(frames), (frames.shape[0], rows * self.side, cols * self.side)

    def placeholder(self, view: View) -> tuple[str, str, int]:
        token = self.processor.video_token if view == "video" else self.processor.image_token
        return ("video" if view == "video" else "image"), token, int(self.processor.image_token_id)

    def expand(self, text: str, view: View, n_tokens: int) -> str:
        """The processor's own layout: ``FrameN: <img>...</img>`` lines, or one ``<img>...</img>``."""
        import torch

        _, token, _ = self.placeholder(view)
        if text.count(token) != 1:
            raise InputError(f"chat template rendered {text.count(token)} {token!r} placeholders, expected 1")
        tiles = n_tokens // self.tile_tokens
        if view == "video":
            layout = self.processor.replace_video_token({"pixel_values_videos": [torch.empty(tiles, 0)]}, 0)
        else:
            layout = self.processor.replace_image_token({"num_patches": [tiles]}, 0)
        return text.replace(token, layout)

    def geometry(self, session: Any) -> dict:
        """Frame size given to the model, map grid and ``<IMG_CONTEXT>`` tokens per sequence,
        from the preprocessed tiles (no forward pass): video view one ``tile`` px tile per
        frame; frame view a ``rows x cols`` canvas of tiles (plus the thumbnail when kept)."""
        t = session.num_frames
        if session.view == "video":
            return {"frame_size": (self.tile, self.tile), "grid": (t, self.side, self.side),
                    "visual_tokens": t * self.tile_tokens, "extra": {"tiles_per_frame": 1}}
        rows, cols = session.state["pixels"]["tiles"]
        per = session.state["pixels"]["per_frame"]
        return {"frame_size": (rows * self.tile, cols * self.tile), "grid": (t, rows * self.side, cols * self.side),
                "visual_tokens": per * self.tile_tokens,
                "extra": {"tiles": [rows, cols], "thumbnail": per > rows * cols, "max_tiles": self.frame_max_tiles}}

    def visual_mask(self, input_ids: "torch.Tensor", view: View) -> "torch.Tensor":
        """Context tokens, minus the kept thumbnail's (the last tile of each frame)."""
        mask = input_ids == self.processor.image_token_id
        if view == "frame" and self.frame_thumbnail:
            for b in range(mask.shape[0]):
                idx = mask[b].nonzero().flatten()
                if idx.numel() > self.tile_tokens:
                    mask[b, idx[-self.tile_tokens :]] = False
        return mask

    def cells_to_grid(self, vals: "torch.Tensor", shape: tuple[int, int, int], view: View) -> "torch.Tensor":
        if view == "video":
            return vals.reshape(shape)
        rows, cols = shape[1] // self.side, shape[2] // self.side
        return stitch_tiles(vals, rows, cols, self.side).reshape(shape)


__all__ = ["InternVLAdapter", "build_tiny", "stitch_tiles", "tile_grid", "DEFAULT_CHECKPOINT"]
