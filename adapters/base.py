"""The one adapter protocol.

An adapter turns (frames, prompt, view) into generated text plus a ``(t, h, w)`` rollout
map. Everything model-specific (chat template, visual token span, grid mapping, tiling,
token budgets) stays inside the adapter. Adapters are found by name through the entry-point
group ``decafbench.adapters`` (see :mod:`decafbench.adapters.registry`).

The flow for one expression (driven by :mod:`decafbench.pipeline`)::

    session = adapter.open(frames, view)        # vision encoder runs once per view
    res = adapter.attend(session, prompt)        # prefill (+ streaming rollout) + greedy answer
    ...                                          # more prompts on the same session reuse it
    word = adapter.answer(text_prompt)           # text-only prompt (object choice)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Sequence

View = Literal["video", "frame"]
VIEWS: tuple[View, View] = ("video", "frame")


@dataclass
class ViewResult:
    """One prompt run on one view.

    ``texts``: the generated answer(s): one for the video view, one per frame for the frame
    view. ``attention``: float32 ``(t, h, w)`` raw rollout map (last prompt token's row at the
    visual positions, reshaped to the view's grid). In the frame view t is the number of key
    frames; in the video view each time step covers ``temporal_stride`` frames.
    """

    texts: list[str]
    attention: Any  # torch.Tensor (t, h, w) float32
    temporal_stride: int = 1
    stats: dict = field(default_factory=dict)


@dataclass
class Session:
    """Typed state of one (frames, view) input: what later prompts on it reuse.

    Adapters subclass it or put their own tensors in ``state`` (vision features, a prefix
    KV cache, grid sizes); ``counters`` accumulates work done (vision passes, prefilled tokens).
    """

    view: View
    num_frames: int
    state: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AdapterSpec:
    """What determines an adapter's outputs, for cache keys and run manifests."""

    family: str
    checkpoint: str
    config: dict


class Adapter(ABC):
    """Base class of MLLM adapters."""

    #: registry name of the family (``qwen2-vl``, ``llava-onevision``, ``internvl``)
    family: ClassVar[str] = ""

    @abstractmethod
    def spec(self) -> AdapterSpec:
        """Family, checkpoint and every setting that changes outputs (budgets, rollout, dtype)."""

    @abstractmethod
    def open(self, frames: Sequence[Any], view: View) -> Session:
        """Prepare one view of the key frames (PIL images): encode the visual input once."""

    @abstractmethod
    def attend(self, session: Session, prompt: str, *, max_new_tokens: int = 8) -> ViewResult:
        """Run one prompt on an opened view: attention rollout of the prefill, greedy answer."""

    @abstractmethod
    def answer(self, prompt: str, *, max_new_tokens: int = 8) -> str:
        """Greedy answer to a text-only prompt (the object-choice step)."""
