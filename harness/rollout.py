"""Attention rollout (method section 3).

:class:`RolloutConfig` is the shared configuration; adapters take it and the attention
cache keys on it. Beside it:

- :func:`rollout` / :func:`rollout_from_config`: the last prompt token's rollout row from a
  list of per-layer attentions (as transformers returns them);
- :class:`StreamingRollout`: the same numbers fed one layer at a time from forward hooks,
  holding one head-reduced ``(B, L, L)`` matrix per rolled-out layer instead of every
  layer's ``(B, H, L, L)`` attention;
- :func:`head_weights`, :func:`visual_spans`: the vmax head weights and the visual spans.

The slow matrix-chain definition they are tested against is
:mod:`decafbench.reference.rollout`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

from .errors import InputError

HeadWeighting = Literal["vmax", "mean", "max"]
#: Which key columns set the vmax head weights: ``span`` = every token from the first to the
#: last visual token (the method page), ``tokens`` = exactly the visual tokens (the official
#: code gathers the visual-token positions; differs only when separators sit between visual
#: runs, e.g. InternVL's ``FrameN: <img>`` lines).
HeadColumns = Literal["span", "tokens"]
HEAD_COLUMNS: tuple[str, ...] = ("span", "tokens")


class RolloutRangeError(InputError):
    """The rolled-out layers are not a range of the model's layers (known once its config is read)."""


@dataclass(frozen=True)
class RolloutConfig:
    """Which layers to roll out and how.

    ``start``/``end`` are layer indices ``[start, end)``; ``None`` means the defaults
    ``start = N // 2`` and ``end = N`` for a model with N language layers (negative values
    count from the end, as in Python). ``residual`` is the identity weight in
    ``R = (1 - residual) * Abar + residual * I``.
    """

    start: int | None = None
    end: int | None = None
    head_weighting: HeadWeighting = "vmax"
    residual: float = 0.5

    def layers(self, num_layers: int) -> range:
        start = num_layers // 2 if self.start is None else self.start
        end = num_layers if self.end is None else self.end
        start = start + num_layers if start < 0 else start
        end = end + num_layers if end < 0 else end
        if not 0 <= start < end <= num_layers:
            raise RolloutRangeError(f"rollout layers [{self.start}, {self.end}) (rollout_start, rollout_end) are not a "
                             f"non-empty range of a {num_layers}-layer model")
        return range(start, end)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------
# Fast rollout: a chain of vector-matrix products.
#
# Only the last prompt token's row of P = R_{end-1} @ ... @ R_start is ever used, so we
# evaluate e^T R_{end-1} ... R_start from the left: O(H L^2) per layer (one read of the
# attention) instead of O(L^3). All arithmetic is float32 whatever the input dtype (the
# blocked partial sums of each product are added up in float64, see _vecmat).
# --------------------------------------------------------------------------------------

HEAD_WEIGHTINGS: tuple[str, ...] = ("vmax", "mean", "max")


def _torch():  # imported lazily so `import decafbench.rollout` stays light for the CLI
    import torch

    return torch


def _check_options(head_weighting: str, residual: float) -> None:
    from .errors import InputError

    if head_weighting not in HEAD_WEIGHTINGS:
        raise InputError(f"head_weighting {head_weighting!r} is not one of {', '.join(HEAD_WEIGHTINGS)}")
    if not 0.0 <= float(residual) <= 1.0:
        raise InputError(f"residual {residual!r} is not in [0, 1]")


def visual_spans(visual_mask: Any) -> list[tuple[int, int]]:
    """Per batch element, the inclusive ``(first, last)`` visual token index.

    The span (not the mask itself) sets the vmax head weights, as in the method: tokens
    between two visual runs (frame separators, timestamps) count as part of the span.
    """
    from .errors import InputError

    torch = _torch()
    mask = torch.as_tensor(visual_mask)
    if mask.dim() != 2:
        raise InputError(f"visual_mask must be (B, L), got shape {tuple(mask.shape)}")
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise InputError(f"visual_mask must be boolean, got {mask.dtype}")
    mask = mask != 0
    spans = []
    for b in range(mask.shape[0]):
        idx = torch.nonzero(mask[b]).flatten()
        if idx.numel() == 0:
            raise InputError(f"empty visual span in visual_mask row {b}: no visual tokens")
        spans.append((int(idx[0]), int(idx[-1])))
    return spans


def visual_runs(visual_mask: Any, head_columns: str = "span") -> list[list[tuple[int, int]]]:
    """Per batch element, the inclusive ``(first, last)`` column runs that set the vmax weights.

    ``span``: one run from the first to the last visual token; ``tokens``: each maximal run
    of consecutive visual tokens (their union is exactly the visual mask).
    """
    from .errors import InputError

    if head_columns not in HEAD_COLUMNS:
        raise InputError(f"head_columns {head_columns!r} is not one of {', '.join(HEAD_COLUMNS)}")
    spans = visual_spans(visual_mask)
    if head_columns == "span":
        return [[span] for span in spans]
    torch = _torch()
    mask = torch.as_tensor(visual_mask) != 0
    runs = []
    for b in range(mask.shape[0]):
        idx = torch.nonzero(mask[b]).flatten()
        breaks = (torch.nonzero(idx[1:] - idx[:-1] > 1).flatten() + 1).tolist()
        starts, ends = [0, *breaks], [*breaks, int(idx.numel())]
        runs.append([(int(idx[s]), int(idx[e - 1])) for s, e in zip(starts, ends)])
    return runs


def _check_layer(attn: Any, layer: int, batch: int, length: int) -> None:
    from .errors import InputError

    torch = _torch()
    if not isinstance(attn, torch.Tensor) or attn.dim() != 4:
        shape = tuple(attn.shape) if hasattr(attn, "shape") else type(attn).__name__
        raise InputError(f"attention of layer {layer} must be a (B, H, L, L) tensor, got {shape}")
    if tuple(attn.shape[:1]) + tuple(attn.shape[2:]) != (batch, length, length):
        raise InputError(f"attention of layer {layer} has shape {tuple(attn.shape)}, expected ({batch}, H, {length}, {length}) to match visual_mask")
    if not attn.dtype.is_floating_point:
        raise InputError(f"attention of layer {layer} has dtype {attn.dtype}, expected a floating dtype")


def _all_finite(t: Any) -> bool:
    """One cheap reduction; the exact elementwise test only when the sum is not finite."""
    torch = _torch()
    if bool(torch.isfinite(t.sum(dtype=torch.float32))):
        return True
    return bool(torch.isfinite(t).all())


def _require_finite(attn: Any, layer: int) -> None:
    from .errors import InputError

    if not _all_finite(attn):
        raise InputError(f"attention of layer {layer} contains NaN or inf")


def _vmax_weights(attn: Any, runs: list[list[tuple[int, int]]]) -> Any:
    torch = _torch()
    rows = []
    for b, element_runs in enumerate(runs):
        # max is exact in any dtype, so take it before the float32 cast (no full copy);
        # one view per run, never a gathered copy of the visual columns
        peak = None
        for first, last in element_runs:
            run_peak = attn[b, :, :, first : last + 1].amax(dim=-1)  # (H, L)
            peak = run_peak if peak is None else torch.maximum(peak, run_peak)
        rows.append(peak.to(torch.float32).mean(dim=-1))
    w = torch.stack(rows)  # (B, H)
    top = w.amax(dim=1, keepdim=True)
    # all-zero weights (no head looks at the visual span at all) stay zero instead of NaN
    return torch.where(top > 0, w / torch.where(top > 0, top, torch.ones_like(top)), torch.zeros_like(w))


def head_weights(attn: Any, visual_mask: Any, layer: int = 0, head_columns: HeadColumns = "span") -> Any:
    """vmax head weights ``(B, H)`` float32 of one layer's attention ``(B, H, L, L)``.

    Per head: for each query row the max attention over the visual span columns, averaged
    over all query rows; then divided by the largest head's value so the strongest head
    weighs 1. Exposed for diagnostics (which heads look at the video); ``layer`` only
    names the layer in error messages; ``head_columns`` picks the columns (:data:`HeadColumns`).
    """
    runs = visual_runs(visual_mask, head_columns)
    _check_layer(attn, layer, len(runs), int(_torch().as_tensor(visual_mask).shape[1]))
    return _vmax_weights(attn, runs)


def _layer_weights(attn: Any, spans: list[list[tuple[int, int]]], head_weighting: str) -> Any:
    """``(B, H)`` float32 factors w_h / H such that Abar = sum_h factor_h * A_h (not for max)."""
    torch = _torch()
    heads = attn.shape[1]
    if head_weighting == "vmax":
        return _vmax_weights(attn, spans) / heads
    return torch.full((attn.shape[0], heads), 1.0 / heads, dtype=torch.float32, device=attn.device)


def _head_chunks(attn: Any) -> list[tuple[int, int]]:
    """Heads per float32 cast: all at once when no cast is needed, else one head at a time
    so a bf16/fp16 layer never has a full float32 copy."""
    heads = attn.shape[1]
    if attn.dtype == _torch().float32:
        return [(0, heads)]
    return [(h, h + 1) for h in range(heads)]


def _vecmat(x: Any, m: Any, block: int = 128) -> Any:
    """``x (B, K) @ m (B, K, L) -> (B, L)`` float32, summed in blocks of ``block`` rows.

    A plain gemv accumulates K = H*L products one row after another, and its float32
    error grows with K (about 1e-5 relative per layer at L = 2048, compounding over 16
    layers). Blocked partial products summed in float64 cost the same memory pass but
    keep the result within ~1e-7 of the float64 reference.
    """
    torch = _torch()
    rows, length = x.shape[1], m.shape[-1]
    nblocks = rows // block
    split = nblocks * block
    out = []
    for b in range(x.shape[0]):
        xb, mb = x[b], m[b]
        partial = torch.bmm(xb[:split].reshape(nblocks, 1, block), mb[:split].reshape(nblocks, block, length))
        acc = partial.sum(dim=0, dtype=torch.float64).view(length)
        if split < rows:
            acc += (xb[split:] @ mb[split:]).to(torch.float64)
        out.append(acc)
    return torch.stack(out).to(torch.float32)


def _vec_abar(v: Any, attn: Any, factors: Any, head_weighting: str, layer: int) -> Any:
    """``v @ Abar_l`` for a batch of row vectors ``v (B, L)`` without forming Abar (mean/vmax).

    sum_h f_h sum_i v_i A[h, i, :] is one vector-matrix product of the outer product
    x = f (x) v (length H*L) with the attention viewed as an (H*L, L) matrix.
    """
    from .errors import InputError

    torch = _torch()
    batch, length = v.shape
    if head_weighting == "max":
        abar = attn.amax(dim=1).to(torch.float32)  # max is exact before the cast
        _require_finite(attn, layer)  # amax hides a -inf beside a finite head: check A itself
        return _vecmat(v, abar)
    out = torch.zeros(batch, length, dtype=torch.float32, device=v.device)
    x_full = factors.unsqueeze(2) * v.unsqueeze(1)  # (B, H, L)
    for h0, h1 in _head_chunks(attn):
        stacked = attn[:, h0:h1].to(torch.float32).reshape(batch, (h1 - h0) * length, length)
        out += _vecmat(x_full[:, h0:h1].reshape(batch, (h1 - h0) * length), stacked)
    # With every x_i > 0, any NaN/inf in A reaches the product, so checking the (B, L)
    # result replaces a full pass over A; otherwise (a zero head weight or a zero entry of
    # v, e.g. masked padding) check A itself.
    if bool((x_full > 0).all()) and _all_finite(out):
        return out
    _require_finite(attn, layer)
    if not _all_finite(out):
        raise InputError(f"rollout overflowed at layer {layer}: attention values are too large")
    return out


def _top_row(attn: Any, spans: list[list[tuple[int, int]]], head_weighting: str, layer: int) -> Any:
    """Last row of Abar ``(B, L)`` float32: all the first chain step (``e_last^T R``) reads.

    Only H rows of the attention enter the product, so NaN/inf elsewhere would go unseen:
    this layer is checked in full.
    """
    torch = _torch()
    _require_finite(attn, layer)
    last_rows = attn[:, :, -1, :]  # (B, H, L)
    if head_weighting == "max":
        return last_rows.amax(dim=1).to(torch.float32)
    factors = _layer_weights(attn, spans, head_weighting)
    return (factors.unsqueeze(2) * last_rows.to(torch.float32)).sum(dim=1)


def _first_step(top_row: Any, residual: float) -> Any:
    """``e_last^T R = (1 - residual) Abar[-1, :] + residual e_last``."""
    v = (1.0 - residual) * top_row
    v[:, -1] += residual
    return v


def rollout(
    attentions: Sequence[Any],
    visual_mask: Any,
    start: int | None,
    end: int | None,
    residual: float = 0.5,
    head_weighting: HeadWeighting = "vmax",
    head_columns: HeadColumns = "span",
) -> Any:
    """Last-token row ``P[-1, :]`` of the head-weighted residual rollout, ``(B, L)`` float32.

    ``attentions[l]`` is layer l's ``(B, H, L, L)`` attention as transformers returns it
    (entries outside ``[start, end)`` are never read and may be None); ``visual_mask`` is a
    boolean ``(B, L)``. ``start``/``end`` follow :class:`RolloutConfig` (None = defaults,
    negative = from the end). ``R_l = (1 - residual) Abar_l + residual I`` and
    ``P = R_{end-1} @ ... @ R_start``, evaluated right to left as vector-matrix products.
    ``head_columns`` picks the key columns of the vmax head weights (:data:`HeadColumns`).
    """
    torch = _torch()
    _check_options(head_weighting, residual)
    spans = visual_runs(visual_mask, head_columns)
    batch, length = len(spans), int(torch.as_tensor(visual_mask).shape[1])
    layers = RolloutConfig(start=start, end=end).layers(len(attentions))
    top = attentions[layers[-1]]
    _check_layer(top, layers[-1], batch, length)
    v = _first_step(_top_row(top, spans, head_weighting, layers[-1]), residual)
    for layer in reversed(layers[:-1]):
        attn = attentions[layer]
        _check_layer(attn, layer, batch, length)
        factors = None if head_weighting == "max" else _layer_weights(attn, spans, head_weighting)
        v = (1.0 - residual) * _vec_abar(v, attn, factors, head_weighting, layer) + residual * v
    return v


def rollout_from_config(attentions: Sequence[Any], visual_mask: Any, config: RolloutConfig) -> Any:
    """:func:`rollout` with layers, residual and head weighting from a :class:`RolloutConfig`."""
    layers = config.layers(len(attentions))
    return rollout(attentions, visual_mask, layers.start, layers.stop, config.residual, config.head_weighting)


class StreamingRollout:
    """The same rollout, fed one layer at a time during the prefill (for adapters).

    ``observe(layer, attn)`` is called from a forward hook with each layer's attention; it
    keeps only what the backward vector chain needs: the head-reduced ``(B, L, L)`` Abar per
    rolled-out layer in ``store_dtype`` and, for the last rolled-out layer, only its last
    row. The caller can drop each layer's full ``(B, H, L, L)`` attention right after, so a
    28-layer model never holds every layer's attention at once. Layers outside ``layers``
    are ignored; observing a layer twice is an error. ``result()`` equals :func:`rollout`.
    """

    def __init__(
        self,
        visual_mask: Any,
        layers: range,
        head_weighting: HeadWeighting = "vmax",
        residual: float = 0.5,
        store_dtype: Any = None,
        head_columns: HeadColumns = "span",
    ) -> None:
        from .errors import InputError

        torch = _torch()
        _check_options(head_weighting, residual)
        if not isinstance(layers, range) or len(layers) == 0 or layers.step != 1 or layers.start < 0:
            raise InputError(f"layers must be a non-empty range of layer indices with step 1, got {layers!r}")
        self.spans = visual_runs(visual_mask, head_columns)
        self.batch = len(self.spans)
        self.length = int(torch.as_tensor(visual_mask).shape[1])
        self.layers = layers
        self.head_weighting = head_weighting
        self.residual = float(residual)
        self.store_dtype = torch.float32 if store_dtype is None else store_dtype
        self._store: dict[int, Any] = {}

    @classmethod
    def from_config(cls, visual_mask: Any, num_layers: int, config: RolloutConfig, store_dtype: Any = None) -> "StreamingRollout":
        """Resolve the layer range of a ``num_layers``-layer model from a :class:`RolloutConfig`."""
        return cls(visual_mask, config.layers(num_layers), config.head_weighting, config.residual, store_dtype)

    @property
    def nbytes(self) -> int:
        """Bytes held for the backward chain so far."""
        return sum(t.numel() * t.element_size() for t in self._store.values())

    def observe(self, layer: int, attn: Any) -> None:
        """Take layer ``layer``'s ``(B, H, L, L)`` attention (any float dtype, any device)."""
        from .errors import InputError

        if layer not in self.layers:
            return
        if layer in self._store:
            raise InputError(f"attention of layer {layer} observed twice in one rollout")
        _check_layer(attn, layer, self.batch, self.length)
        self._store[layer] = self._reduce(attn, layer).to(self.store_dtype)

    def _reduce(self, attn: Any, layer: int) -> Any:
        """Abar of one layer in float32: ``(B, L, L)``, or ``(B, L)`` (last row) for the last layer."""
        torch = _torch()
        if layer == self.layers[-1]:
            return _top_row(attn, self.spans, self.head_weighting, layer)
        if self.head_weighting == "max":
            _require_finite(attn, layer)  # amax hides a -inf beside a finite head
            return attn.amax(dim=1).to(torch.float32)
        factors = _layer_weights(attn, self.spans, self.head_weighting)  # (B, H)
        batch, heads, length = attn.shape[0], attn.shape[1], self.length
        if attn.dtype == torch.float32:
            flat = attn.reshape(batch, heads, length * length)
            abar = torch.bmm(factors.unsqueeze(1), flat).view(batch, length, length)
        else:  # one head at a time: no full float32 copy of a half-precision layer
            abar = torch.zeros(batch, length, length, dtype=torch.float32, device=attn.device)
            for h in range(heads):
                abar.addcmul_(attn[:, h].to(torch.float32), factors[:, h, None, None])
        # with every factor > 0 a NaN/inf anywhere in A shows up in Abar (1/H of the data)
        if not (bool((factors > 0).all()) and _all_finite(abar)):
            _require_finite(attn, layer)
        return abar

    def result(self) -> Any:
        """The rollout row ``(B, L)`` float32; every layer in ``layers`` must have been observed."""
        from .errors import InputError

        torch = _torch()
        missing = [layer for layer in self.layers if layer not in self._store]
        if missing:
            raise InputError(f"rollout layers never observed: {', '.join(map(str, missing))}")
        r = self.residual
        v = _first_step(self._store[self.layers[-1]].to(torch.float32), r)
        for layer in reversed(self.layers[:-1]):
            abar = self._store[layer].to(torch.float32)
            v = (1.0 - r) * _vecmat(v, abar) + r * v
        return v
