"""Tiny random-weight Qwen2-VL / Qwen2.5-VL of the real architecture, built offline.

``qwen2-vl:tiny`` (and ``tiny-2.5``) checkpoints: small configs of the real classes, a tokenizer
trained locally on the prompt vocabulary with Qwen's special tokens and chat template shape,
and the stock processors. Used by the tests and the embedded default run.
"""

from __future__ import annotations

from typing import Any

from decafbench.errors import InputError

from .common import prompt_words

#: Qwen2-VL's chat template (same rendering as the released checkpoints' template)
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]


#: Weight init std of tiny models. At transformers' default (0.02) a 64-wide random model's
#: attention is near uniform, so the object and background maps differ only by a global factor
#: and the contrastive map is identically zero: nothing downstream would be exercised. A wider
#: init gives peaked random attention; the outputs are still whatever random weights give.
TINY_INIT_RANGE = 0.3


def build_tiny_tokenizer() -> Any:
    """The tiny checkpoints' tokenizer: trained locally on the prompt vocabulary, Qwen's special
    tokens and chat template, padding on the left (deterministic; the golden fixtures use it too)."""
    from .tiny import build_tokenizer

    tok = build_tokenizer(SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, extra_words=prompt_words())
    tok.padding_side = "left"
    return tok


def build_tiny(version: str = "2", seed: int = 0, attn_implementation: str = "sdpa",
               initializer_range: float = TINY_INIT_RANGE) -> tuple[Any, Any]:
    """A random-weight Qwen2-VL (``"2"``) or Qwen2.5-VL (``"2.5"``) of the real architecture with
    4 language layers, a 2-block vision tower and a locally trained tokenizer: no network.
    """
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from .tiny import seeded

    tok = build_tiny_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        initializer_range=initializer_range,
    )
    common = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        attn_implementation=attn_implementation,
    )
    if version == "2":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2, initializer_range=initializer_range)
        config = Qwen2VLConfig(text_config=text, vision_config=vision, initializer_range=initializer_range, **common)
        model_cls, proc_cls = Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    elif version == "2.5":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

        # tokens_per_second: the released Qwen2.5-VL checkpoints' value (the config class default is 4)
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=64, window_size=56,
                      fullatt_block_indexes=[1], tokens_per_second=2, initializer_range=initializer_range)
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, initializer_range=initializer_range, **common)
        model_cls, proc_cls = Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    else:
        raise InputError(f"tiny Qwen version must be '2' or '2.5', got {version!r}")
    with seeded(seed):
        model = model_cls(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    processor = proc_cls(
        image_processor=Qwen2VLImageProcessor(), tokenizer=tok, video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE
    )
    return model.eval(), processor
