"""Attention rollout (method section 3). Implementation: see the rollout issue.

The dataclass below is the shared configuration; adapters take it and the attention cache
keys on it. Functions are added beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

HeadWeighting = Literal["vmax", "mean", "max"]


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
            from .errors import InputError

            raise InputError(f"rollout layers [{self.start}, {self.end}) are not a non-empty range of a {num_layers}-layer model")
        return range(start, end)

    def to_dict(self) -> dict:
        return asdict(self)
