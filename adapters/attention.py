"""Capture the language model's prefill attention, layer by layer, with stock transformers.

DecAF needs float32 per-head attention weights of the rolled-out decoder layers during the
prefill pass only. Asking transformers for ``output_attentions=True`` forces eager attention
in *every* layer (and the vision tower) and keeps every layer's ``(B, H, L, L)`` tensor
alive until the forward ends: for 16 frames of 400 tokens that is gigabytes. Instead, this
module registers a wrapper in transformers' ``AttentionInterface`` (and the matching mask
function in ``AttentionMaskInterface``) under a fresh name, points only the language
model's config at it (``set_attn_implementation({text_config_key: name})``), and the wrapper
dispatches per call: the captured layers' attention modules compute eager attention in
float32 when the query length is > 1 and hand ``(layer_idx, attn)`` to ``observe`` (which
can fold it into a streaming rollout and drop it); everything else (other layers, decode
steps) runs the model's original implementation. On exit the config and the interface
tables are restored. No modeling file is copied or patched.

Shared-prefix reuse (``with_inputs=True``): a prompt prefilled on top of a cached prefix
has query length S < key length P + S. The observer then also gets the call's post-RoPE
query and key (:class:`Captured`), so the caller can rebuild the prefix rows exactly with
:func:`causal_weights` from a query it kept during the prefix pass (causal rows of the
prefix do not depend on what follows).
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ._compat_transformers import check_once, eager_attention, force_attn_implementation, unregister_attention

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor, nn

Observe = Callable[[int, "Tensor"], None]


@dataclass(frozen=True)
class Captured:
    """What the attention function of one captured call saw: post-RoPE ``query (B, H, Lq, d)``,
    ``key (B, Hkv, Lk, d)`` (cache included) and the softmax ``scaling``."""

    query: "Tensor"
    key: "Tensor"
    scaling: float

_names = itertools.count()  # unique interface names, so nested/parallel captures never collide


def language_model(model: "nn.Module") -> "nn.Module":
    """The decoder-only language model inside a multimodal model (has ``.layers``)."""
    candidates = []
    inner = getattr(model, "model", None)
    for owner in (inner, model):
        if owner is not None:
            candidates.append(getattr(owner, "language_model", None))
    if hasattr(model, "get_decoder"):
        try:
            candidates.append(model.get_decoder())
        except Exception:  # noqa: BLE001 - some models raise for a missing decoder
            pass
    candidates.append(model)
    for cand in candidates:
        if cand is None:
            continue
        layers = getattr(cand, "layers", None)
        if layers is None and hasattr(cand, "model"):
            layers = getattr(cand.model, "layers", None)
            cand = cand.model if layers is not None else cand
        if layers is not None and len(layers) > 0:
            return cand
    raise TypeError(f"cannot find the language model's decoder layers in {type(model).__name__}")


def language_layers(model: "nn.Module") -> int:
    """Number of decoder layers of the model's language model."""
    return len(language_model(model).layers)


def _config_key(model: "nn.Module", lm_config: Any) -> str | None:
    """The sub-config key (e.g. ``text_config``) under which ``model.config`` holds ``lm_config``."""
    config = model.config
    if config is lm_config:
        return None
    for key in getattr(config, "sub_configs", {}) or {}:
        if getattr(config, key, None) is lm_config:
            return key
    return None


def _masked_softmax(query: "Tensor", key: "Tensor", mask: "Tensor | None", scaling: float) -> "Tensor":
    """float32 ``softmax(Q K^T * scaling + mask)``; bottom-right causal when ``mask`` is None."""
    import torch

    groups = query.shape[1] // key.shape[1]
    k = key.float().repeat_interleave(groups, dim=1) if groups > 1 else key.float()
    scores = torch.matmul(query.float(), k.transpose(2, 3)) * scaling
    lq, lk = scores.shape[-2], scores.shape[-1]
    neg = torch.finfo(torch.float32).min
    if mask is None:
        causal = torch.ones(lq, lk, dtype=torch.bool, device=scores.device).tril(diagonal=lk - lq)
        scores = scores.masked_fill(~causal, neg)
    elif mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask[..., :lk], neg)
    else:
        scores = scores + mask[..., :lk].float()
        scores = scores.clamp_min(neg)
    return torch.softmax(scores, dim=-1)


def causal_weights(query: "Tensor", key: "Tensor", scaling: float) -> "Tensor":
    """Causal float32 attention weights ``(B, H, Lq, Lk)`` of unpadded sequences, computed as
    the capture computes them (same ops), e.g. to rebuild a cached prefix's rows."""
    return _masked_softmax(query, key, None, scaling)


def _eager_float32(
    module: "nn.Module", query: "Tensor", key: "Tensor", value: "Tensor", mask: "Tensor | None", scaling: float
) -> tuple["Tensor", "Tensor"]:
    """Causal (masked) softmax attention in float32; returns (output (B, Lq, H, D), weights)."""
    import torch

    groups = query.shape[1] // key.shape[1]
    v = value.float().repeat_interleave(groups, dim=1) if groups > 1 else value.float()
    weights = _masked_softmax(query, key, mask, scaling)
    out = torch.matmul(weights, v).to(query.dtype).transpose(1, 2).contiguous()
    return out, weights


def _original_interface(name: str, module: "nn.Module") -> Callable:
    """The attention function the model would have used (eager comes from its modeling file)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name == "eager":
        return eager_attention(module)
    return ALL_ATTENTION_FUNCTIONS[name]


@contextmanager
def capture_attention(model: "nn.Module", layers: range, observe: Callable[..., None], *,
                      with_inputs: bool = False) -> Iterator[None]:
    """Within the block, feed float32 prefill attention of ``layers`` to ``observe``.

    ``observe(layer_idx, attn)`` receives ``attn`` of shape ``(B, H, Lq, Lk)`` (float32,
    causal mask and padding applied) for each captured decoder layer of every forward
    pass whose query length is > 1; decode steps and other layers are untouched. Only the
    language model's attention implementation changes; the vision tower keeps its own.
    With ``with_inputs=True`` it is called as ``observe(layer_idx, attn, Captured(...))``;
    ``Lk`` exceeds ``Lq`` when the pass runs on top of a cache.
    """
    from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask
    from transformers.modeling_utils import AttentionInterface

    check_once()  # the private transformers symbols below exist in this release (else: one clear error)
    lm = language_model(model)
    num_layers = len(lm.layers)
    if len(layers) == 0 or layers[0] < 0 or layers[-1] >= num_layers:
        raise ValueError(f"layers {layers} out of range for a {num_layers}-layer language model")
    lm_config = lm.config
    original = lm_config._attn_implementation or "eager"
    # Flash/flex kernels use masks the eager path cannot read: run those models on sdpa here.
    base = original if original in ("sdpa", "eager") else "sdpa"
    captured = {id(lm.layers[i].self_attn): i for i in layers}
    name = f"decafbench_capture_{base}_{next(_names)}"

    def attention(module: "nn.Module", query: "Tensor", key: "Tensor", value: "Tensor", attention_mask: Any, **kwargs: Any):
        layer_idx = captured.get(id(module))
        if layer_idx is None or query.shape[2] <= 1:
            return _original_interface(base, module)(module, query, key, value, attention_mask, **kwargs)
        out, weights = _eager_float32(module, query, key, value, attention_mask, kwargs["scaling"])
        if with_inputs:
            observe(layer_idx, weights, Captured(query, key, float(kwargs["scaling"])))
        else:
            observe(layer_idx, weights)
        return out, None

    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, sdpa_mask if base == "sdpa" else eager_mask)
    key = _config_key(model, lm_config)
    try:
        _set_lm_attn(model, lm, key, name)
        yield
    finally:
        _set_lm_attn(model, lm, key, original)
        unregister_attention(name)


def _set_lm_attn(model: "nn.Module", lm: "nn.Module", key: str | None, name: str) -> None:
    """Switch only the language model's attention implementation (stock API first)."""
    if key is not None and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation({key: name})
    elif hasattr(lm, "set_attn_implementation"):
        lm.set_attn_implementation(name)
    if lm.config._attn_implementation != name:  # a model that refused the stock path
        force_attn_implementation(lm.config, name)
