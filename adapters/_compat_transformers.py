"""The private parts of ``transformers`` that the adapters rely on, in one place.

Capturing one layer's attention needs a temporary entry in transformers' attention tables
(which have ``register`` but no public ``unregister``), a config switch a model may refuse
through the stock ``set_attn_implementation``, a modeling file's ``eager_attention_forward``
and, for Qwen2-VL's shared-prefix reuse, the position ids ``generate`` would compute. Each is
reached only through a function here; :func:`check` verifies every one against the installed
transformers and fails with a message naming the symbol and the versions, so an upstream
release that moves one fails at once (tests/test_compat.py), not with an AttributeError in a
run. ``pyproject.toml`` pins transformers to the tested range; raise the pin only after the
check passes on the new release.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

from decafbench.errors import DecafError

#: transformers releases this module was checked against (pyproject.toml pins the same range)
TESTED = ">=5.0,<5.25"

#: what we use, for the messages and the check: symbol -> why
PRIVATE_SYMBOLS: dict[str, str] = {
    "AttentionInterface._global_mapping": "removing a capture's temporary attention function",
    "AttentionMaskInterface._global_mapping": "removing a capture's temporary mask function",
    "PretrainedConfig._attn_implementation_internal": "switching a model that refuses set_attn_implementation",
    "<modeling module>.eager_attention_forward": "the model's own eager attention for uncaptured layers",
    "GenerationMixin._prepare_position_ids_for_generation": "Qwen2-VL's multimodal (M-RoPE) position ids",
    "LlavaOnevisionProcessor._get_unpadded_features": "LLaVA-OneVision's AnyRes token count (the processor's own rule)",
}


class TransformersCompatError(DecafError):
    """The installed transformers no longer has a private symbol an adapter relies on."""


def installed_version() -> str:
    import transformers

    return transformers.__version__


def _error(symbol: str, problem: str) -> TransformersCompatError:
    return TransformersCompatError(
        f"transformers {installed_version()} (tested: {TESTED}): {symbol} {problem}; decafbench uses it for "
        f"{PRIVATE_SYMBOLS[symbol]} (see decafbench/adapters/_compat_transformers.py)")


def _mapping(interface: Any, symbol: str) -> dict:
    table = vars(interface).get("_global_mapping")  # its own table, not one inherited from GeneralInterface
    if not isinstance(table, dict):
        raise _error(symbol, "is gone or no longer a dict")
    return table


def unregister_attention(name: str) -> None:
    """Drop ``name`` from the attention and attention-mask tables (no public API for it)."""
    from transformers.masking_utils import AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface

    _mapping(AttentionInterface, "AttentionInterface._global_mapping").pop(name, None)
    _mapping(AttentionMaskInterface, "AttentionMaskInterface._global_mapping").pop(name, None)


def force_attn_implementation(config: Any, name: str) -> None:
    """Set a config's attention implementation where the stock setter refused it."""
    if not hasattr(config, "_attn_implementation_internal"):
        raise _error("PretrainedConfig._attn_implementation_internal", "is gone")
    config._attn_implementation_internal = name


def eager_attention(module: Any) -> Callable:
    """The ``eager_attention_forward`` of the modeling file ``module`` comes from."""
    fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if fn is None:
        raise _error("<modeling module>.eager_attention_forward", f"is missing from {type(module).__module__}")
    return fn


def generation_position_ids(model: Any, input_ids: Any, model_kwargs: dict) -> Any:
    """The position ids ``generate`` computes for ``input_ids`` (M-RoPE for Qwen2-VL)."""
    method = getattr(model, "_prepare_position_ids_for_generation", None)
    if method is None:
        raise _error("GenerationMixin._prepare_position_ids_for_generation", f"is missing on {type(model).__name__}")
    return method(input_ids, model_kwargs)


def unpadded_features(processor: Any, *args: Any) -> Any:
    """LLaVA-OneVision's processor rule for the unpadded AnyRes feature count: (area, rows)."""
    method = getattr(processor, "_get_unpadded_features", None)
    if method is None:
        raise _error("LlavaOnevisionProcessor._get_unpadded_features", f"is missing on {type(processor).__name__}")
    return method(*args)


@functools.lru_cache(maxsize=None)
def check_once() -> None:
    """:func:`check`, once per process (called before the first attention capture)."""
    check()


def check() -> None:
    """Verify every symbol of :data:`PRIVATE_SYMBOLS` on the installed transformers."""
    import inspect

    from transformers import GenerationMixin, PretrainedConfig
    from transformers.masking_utils import AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface
    from transformers.models.qwen2_vl import modeling_qwen2_vl

    _mapping(AttentionInterface, "AttentionInterface._global_mapping")
    _mapping(AttentionMaskInterface, "AttentionMaskInterface._global_mapping")
    if not hasattr(PretrainedConfig(), "_attn_implementation_internal"):
        raise _error("PretrainedConfig._attn_implementation_internal", "is gone")
    if not callable(getattr(modeling_qwen2_vl, "eager_attention_forward", None)):
        raise _error("<modeling module>.eager_attention_forward", "is missing from modeling_qwen2_vl")
    from transformers import Qwen2VLForConditionalGeneration

    method = getattr(Qwen2VLForConditionalGeneration, "_prepare_position_ids_for_generation", None)
    if method is None or not issubclass(Qwen2VLForConditionalGeneration, GenerationMixin):
        raise _error("GenerationMixin._prepare_position_ids_for_generation", "is missing on Qwen2VLForConditionalGeneration")
    params = [p for p in inspect.signature(method).parameters if p != "self"]
    if params[:2] != ["inputs_tensor", "model_kwargs"]:
        raise _error("GenerationMixin._prepare_position_ids_for_generation",
                     f"takes ({', '.join(params)}), not (inputs_tensor, model_kwargs)")
    from transformers import LlavaOnevisionProcessor

    unpadded = getattr(LlavaOnevisionProcessor, "_get_unpadded_features", None)
    expected = ["height", "width", "patches_height", "patches_width", "scale_height", "scale_width"]
    if unpadded is None:
        raise _error("LlavaOnevisionProcessor._get_unpadded_features", "is gone")
    params = [p for p in inspect.signature(unpadded).parameters if p != "self"]
    if params != expected:
        raise _error("LlavaOnevisionProcessor._get_unpadded_features", f"takes ({', '.join(params)}), not ({', '.join(expected)})")
