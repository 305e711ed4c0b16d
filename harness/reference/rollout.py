"""Attention rollout written straight from the method page (section 3), in float64.

Full L x L matrices and matrix-matrix products, one batch element at a time: slow and
obvious on purpose. It is the baseline that tests and ``bench/bench_rollout.py`` compare
:func:`decafbench.rollout.rollout` against; never on the fast path.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


def reference_head_weights(attn: torch.Tensor, first: int, last: int, columns: torch.Tensor | None = None) -> torch.Tensor:
    """vmax weights ``(H,)`` float64 of one element's attention ``(H, L, L)``.

    For each head: max over the visual span columns ``first..last`` (or exactly the column
    indices ``columns`` when given: the official code's gather of the visual tokens) of
    every query row, averaged over all query rows; the vector is divided by its max
    (all-zero stays zero).
    """
    heads = attn.shape[0]
    w = torch.zeros(heads, dtype=torch.float64)
    for h in range(heads):
        cols = attn[h, :, first : last + 1] if columns is None else attn[h][:, columns]
        span_cols = cols.to(torch.float64)
        w[h] = span_cols.max(dim=1).values.mean()
    top = w.max()
    return w / top if top > 0 else torch.zeros_like(w)


def reference_abar(attn: torch.Tensor, first: int, last: int, head_weighting: str, columns: torch.Tensor | None = None) -> torch.Tensor:
    """Head-reduced attention ``Abar (L, L)`` float64 of one element's ``(H, L, L)``."""
    heads, length = attn.shape[0], attn.shape[1]
    if head_weighting == "max":
        abar = torch.full((length, length), float("-inf"), dtype=torch.float64)
        for h in range(heads):
            abar = torch.maximum(abar, attn[h].to(torch.float64))
        return abar
    if head_weighting == "mean":
        w = torch.ones(heads, dtype=torch.float64)
    elif head_weighting == "vmax":
        w = reference_head_weights(attn, first, last, columns)
    else:
        raise ValueError(f"unknown head weighting {head_weighting!r}")
    abar = torch.zeros(length, length, dtype=torch.float64)
    for h in range(heads):
        abar += w[h] * attn[h].to(torch.float64)
    return abar / heads


def reference_rollout(
    attentions: Sequence[Any],
    visual_mask: torch.Tensor,
    start: int,
    end: int,
    residual: float = 0.5,
    head_weighting: str = "vmax",
    head_columns: str = "span",
) -> torch.Tensor:
    """``P[-1, :]`` of ``P = R_{end-1} @ ... @ R_start``, ``R_l = (1-residual) Abar_l + residual I``.

    Returns ``(B, L)`` float64. ``start``/``end`` are plain non-negative layer indices.
    ``head_columns="tokens"``: vmax weights over exactly the visual tokens' columns.
    """
    mask = torch.as_tensor(visual_mask).bool()
    batch, length = mask.shape
    rows = []
    for b in range(batch):
        visual = torch.nonzero(mask[b]).flatten()
        if visual.numel() == 0:
            raise ValueError(f"empty visual span in row {b}")
        first, last = int(visual[0]), int(visual[-1])
        columns = visual if head_columns == "tokens" else None
        eye = torch.eye(length, dtype=torch.float64)
        p = None
        for layer in range(start, end):
            abar = reference_abar(attentions[layer][b].cpu(), first, last, head_weighting, columns)
            r = (1.0 - residual) * abar + residual * eye
            p = r if p is None else r @ p  # later layers on the left
        rows.append(p[-1, :])
    return torch.stack(rows)
