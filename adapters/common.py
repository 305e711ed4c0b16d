"""Helpers every adapter family shares: dtype names, checkpoint loading, key-frame checks."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from decafbench.errors import InputError

DTYPES = ("float32", "bfloat16", "float16")


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """``auto`` -> bfloat16 on CUDA (the official precision), float32 elsewhere; names pass through."""
    if dtype == "auto":
        return "bfloat16" if str(device).startswith("cuda") else "float32"
    return dtype


def prefix_reuse_default(dtype: str) -> bool:
    """Whether shared-prefix reuse is on by default in ``dtype``.

    Prefilling the shared prefix once and each prompt's suffix on its cache runs matmuls of
    other shapes than one full prefill. In float32 the maps agree to ~1e-6 and the greedy
    answers match; in bfloat16/float16 the rounding is large enough to flip a greedy token, so
    there the default is the official full prefill and reuse is opt-in.
    """
    return dtype in ("float32", "float64")


def torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in DTYPES:
        raise InputError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)


#: The tiny tokenizers' training words: every word of the prompt wordings as of prompts-3-official, in order.
#: Frozen here (the adapters never read the harness's prompt registry), so editing a prompt never
#: changes a tiny model's vocabulary, and with it its token ids and the golden fixtures; a word
#: added later still tokenizes (byte-level BPE), into more pieces.
TINY_PROMPT_WORDS: tuple[str, ...] = (
    '{sent}', 'What', 'is', 'the', 'main', 'object', '(or', 'objects)', 'referred', 'to', 'in',
    'the', 'given', 'expression', 'or', 'question?', 'Focus', 'on', 'the', '**primary', 'subject',
    'or', 'agent**', 'involved', 'in', 'the', 'described', 'action', 'or', 'behavior.', 'Respond',
    'with', 'a', 'single', 'word', '(e.g.,', "'cat',", "'person',", "'dog')", 'that', 'best',
    'describes', 'the', 'target', 'object(s).', 'Given:', '-', 'Expression:', "'{ref_query}'", '-',
    'Candidate', 'object', 'class', 'list:', '{obj_cls_list}', 'Goal:', 'Identify', 'the', 'object',
    'class', 'referred', 'to', 'by', 'the', 'expression.', 'Instructions:', '1.', 'If', 'the',
    'expression', 'is', '**clear**,', 'rely', 'on', 'it', 'directly', '(e.g.,', "'a", 'person',
    'driving', 'a', "car'", '→', "'person').", '2.', 'If', 'the', 'expression', 'is', '**vague**,',
    'use', 'the', 'object', 'class', 'list', 'to', 'support', 'your', 'decision', '(e.g.,', 'check',
    'frequency', 'and', 'plausibility).', '3.', 'Avoid', 'defaulting', 'to', 'the', 'most',
    'frequent', 'class', 'unless', 'the', 'expression', 'lacks', 'clarity.', 'Output', 'the',
    'most', 'likely', 'referred', 'object', 'class', '-', 'just', 'the', 'label.', 'Describe',
    'the', 'background', 'scene', 'of', 'the', 'video,', 'excluding', 'any', '{obj_name}.',
    'Answer', 'the', 'question', 'using', 'a', 'single', 'word', 'or', 'phrase.', '{sent}',
    'Identify', 'the', 'primary', 'object', 'referred', 'to', 'in', 'the', 'expression', 'and',
    'answer', 'with', 'a', 'single', 'word.', 'Given', 'the', 'expression', '‘{ref_query}’', 'and',
    'the', 'candidate', 'object', 'classes', '{obj_cls_list},', 'select', 'the', 'single', 'class',
    'label', 'that', 'best', 'matches', 'the', 'object', 'referred', 'to', 'in', 'the',
    'expression.', 'Describe', 'the', 'background', 'scene', 'of', 'the', 'video.', 'Answer', 'the',
    'question', 'using', 'a', 'single', 'word', 'or', 'phrase.', '{sent}', 'Identify', 'the',
    'primary', 'object', 'referred', 'to', 'in', 'the', 'expression.', 'Focus', 'on', 'the',
    '**primary', 'subject', 'or', 'agent**', 'involved', 'in', 'the', 'described', 'action', 'or',
    'behavior.', 'Respond', 'with', 'a', 'single', 'word', '(e.g.,', "'cat',", "'person',",
    "'dog')", 'that', 'best', 'describes', 'the', 'target', 'object(s).', 'Using', 'the',
    'expression', '‘{ref_query}’', 'and', 'the', 'candidate', 'object', 'classes',
    '{obj_cls_list},', 'determine', 'which', 'object', 'class', 'the', 'expression', 'refers',
    'to.', 'If', 'the', 'reference', 'is', 'explicit,', 'rely', 'on', 'the', 'expression;', 'if',
    'ambiguous,', 'use', 'the', 'class', 'list', 'as', 'support.', 'Output', 'only', 'the', 'most',
    'likely', 'object', 'class.', 'Describe', 'the', 'background', 'of', 'the', 'video', 'while',
    'excluding', 'any', '{obj_name},', 'using', 'a', 'single', 'word', 'or', 'short', 'phrase.',
    '{sent}', 'Determine', 'the', 'primary', 'subject', 'or', 'agent', 'mentioned', 'in', 'the',
    'expression', 'or', 'question,', 'and', 'provide', 'the', "object's", 'label', 'within', 'a',
    'single', 'word', 'or', 'phrase.', 'Given:', '-', 'Expression:', "'{ref_query}'", 'Goal:',
    'Identify', 'the', 'object', 'class', 'referred', 'to', 'by', 'the', 'expression.', '(e.g.,',
    "'a", 'person', 'driving', 'a', "car'", '→', "'person').", 'Output', 'the', 'most', 'likely',
    'referred', 'object', 'class', '-', 'just', 'the', 'label.', 'Describe', 'the', 'background',
    'scene', 'of', 'the', 'video,', 'excluding', 'the', 'objects', 'referred', 'to', 'in', 'the',
    'given', 'expression', 'or', 'question', "'{sent}'.", 'Answer', 'the', 'question', 'using', 'a',
    'single', 'word', 'or', 'phrase.'
)


def prompt_words() -> list[str]:
    """The tiny tokenizers' extra training words (:data:`TINY_PROMPT_WORDS`)."""
    return list(TINY_PROMPT_WORDS)


def load_checked(checkpoint: str, model_types: tuple[str, ...], model_cls: Any, proc_cls: Any, dt: Any, attn: str,
                 rollout: Any = None) -> tuple[Any, Any]:
    """A local folder or hub id with the family's stock classes, after a model_type check and
    (given ``rollout``) a check of its layers against the config's layer count: both before
    any weights are read."""
    from transformers import AutoConfig

    looks_local = checkpoint.startswith((".", "/", "~")) or Path(checkpoint).expanduser().exists()
    if looks_local and not Path(checkpoint).expanduser().is_dir():
        raise InputError("checkpoint folder does not exist", path=checkpoint)
    try:
        config = AutoConfig.from_pretrained(checkpoint)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load checkpoint config: {exc}", path=checkpoint) from exc
    if config.model_type not in model_types:
        raise InputError(f"model_type {config.model_type!r} is not {' or '.join(model_types)}", path=checkpoint)
    layers = getattr(getattr(config, "text_config", None) or config, "num_hidden_layers", None)
    if rollout is not None and isinstance(layers, int):
        rollout.layers(layers)
    model = model_cls.from_pretrained(checkpoint, dtype=dt, attn_implementation=attn)
    processor = proc_cls.from_pretrained(checkpoint)
    processor.tokenizer.padding_side = "left"
    return model, processor


def check_frames(frames: Sequence[Any]) -> list[Any]:
    """Key frames as RGB PIL images of one size (one view's grid must be one shape)."""
    from PIL import Image

    if frames is None or len(frames) == 0:
        raise InputError("no key frames given")
    images = []
    for i, im in enumerate(frames):
        if not isinstance(im, Image.Image):
            raise InputError(f"key frame {i} is a {type(im).__name__}, not a PIL image")
        images.append(im.convert("RGB"))
    if len({im.size for im in images}) != 1:
        raise InputError(f"key frames differ in size: {sorted({im.size for im in images})}")
    return images


@contextmanager
def no_grad() -> Iterator[None]:
    import torch

    with torch.inference_mode():
        yield
