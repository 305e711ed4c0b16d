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
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from decafbench.rollout import RolloutConfig

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


def _default_rollout() -> "RolloutConfig":
    from decafbench.rollout import RolloutConfig

    return RolloutConfig()


@dataclass(frozen=True)
class AdapterOptions:
    """Everything the harness tells an adapter when it builds one: the whole contract.

    ``dtype`` (``float32``, ``bfloat16``, ``float16``), ``device`` (``cpu``, ``cuda:0``...),
    ``rollout`` (layers and head weighting; check it against the model's layer count as soon
    as the model config is known), ``reuse`` / ``prefix_reuse`` (work-saving switches that
    must not change outputs; the harness passes True only to a class that declares the
    capability, see :class:`Adapter`) and
    ``model_args``: the user's ``--model-args`` (adapter-specific keyword arguments such as
    token budgets; refuse unknown ones with an :class:`~decafbench.errors.InputError`).
    New fields get defaults, so an adapter written today keeps working.
    """

    dtype: str = "float32"
    device: str = "cpu"
    rollout: "RolloutConfig" = field(default_factory=_default_rollout)
    reuse: bool = True
    prefix_reuse: bool = True
    model_args: Mapping[str, Any] = field(default_factory=dict)


class Adapter(ABC):
    """Base class of MLLM adapters.

    Construction: the harness calls ``cls.from_checkpoint(checkpoint, options)`` with the
    checkpoint string after ``FAMILY:`` (``tiny``, a local folder or a hub id) and one
    :class:`AdapterOptions`; nothing else is ever passed. Capabilities are class attributes:
    an adapter that can encode a view once and reuse it across prompts sets
    ``supports_reuse = True`` (and ``supports_prefix_reuse`` for a shared prompt prefix);
    otherwise the harness passes ``reuse=False`` / ``prefix_reuse=False`` whatever the user
    asked, so such a switch never reaches an adapter that does not implement it.
    """

    #: registry name of the family (``qwen2-vl``, ``llava-onevision``, ``internvl``)
    family: ClassVar[str] = ""
    #: capabilities (see the class docstring)
    supports_reuse: ClassVar[bool] = False
    supports_prefix_reuse: ClassVar[bool] = False

    @classmethod
    def from_checkpoint(cls, checkpoint: str, options: AdapterOptions) -> "Adapter":
        """Load (or build, for ``tiny``) the model and return a ready adapter."""
        raise NotImplementedError(f"{cls.__name__} does not implement from_checkpoint(checkpoint, options)")

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

    # -- introspection (``decaf inspect``) ---------------------------------------------------
    def layout(self, session: Session, prompt: str) -> "ViewLayout":
        """What the model is given for ``prompt`` on an opened view (see :class:`ViewLayout`).

        Every family should implement it (``decaf inspect`` prints it, and it is how a new
        adapter is checked against its official preprocessing); the default says it is missing.
        """
        raise NotImplementedError(f"{type(self).__name__} does not report its input layout (Adapter.layout)")


#: AdapterOptions fields a direct caller may pass as loose keywords to a built-in from_checkpoint
OPTION_FIELDS = ("dtype", "device", "rollout", "reuse", "prefix_reuse")


def resolve_options(options: AdapterOptions | None, kwargs: Mapping[str, Any]) -> AdapterOptions:
    """``options`` (default: all defaults) with loose keywords folded in: option fields replace
    the options' values, anything else joins ``model_args``. For direct callers and tests."""
    from dataclasses import replace

    base = options or AdapterOptions()
    fields = {k: v for k, v in kwargs.items() if k in OPTION_FIELDS}
    extra = {k: v for k, v in kwargs.items() if k not in OPTION_FIELDS}
    return replace(base, **fields, model_args={**base.model_args, **extra})


def load_with_options(loader: Any, family: str, checkpoint: str, options: AdapterOptions) -> Any:
    """``loader(checkpoint, dtype=..., device=..., rollout=..., reuse=..., prefix_reuse=...,
    **model_args)``, refusing a model argument ``loader`` does not take with one line."""
    import inspect

    from decafbench.errors import InputError

    fixed = {k: getattr(options, k) for k in OPTION_FIELDS}
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    known = [n for n, p in inspect.signature(loader).parameters.items()
             if p.kind in kinds and n not in fixed and n != "checkpoint"]
    bad = [k for k in options.model_args if k not in known]
    if bad:
        raise InputError(f"model_args: {family} takes no argument {bad[0]!r} (known: {', '.join(known) or 'none'})")
    return loader(checkpoint, **fixed, **dict(options.model_args))


@dataclass(frozen=True)
class ViewLayout:
    """The model input of one prompt on one view, as ``decaf inspect`` reports it.

    ``frame_size``: ``(H, W)`` pixels of each key frame as given to the model (after the
    family's resize rule; for tiled inputs, the size of one tile grid's canvas).
    ``grid``: ``(t, h, w)`` of the attention map the view yields. ``visual_tokens``: visual
    tokens in one sequence (frame view: per frame). ``temporal_positions``: the temporal rotary
    index of each temporal grid step, relative to the first visual token (Qwen's 3D RoPE), or
    None for families without one. ``system_prompt``: the system message the adapter sends, or
    None when it leaves the chat template's own default. ``extra``: family-specific facts
    (e.g. ``second_per_grid_ts``, tile counts).
    """

    view: View
    frame_size: tuple[int, int]
    grid: tuple[int, int, int]
    visual_tokens: int
    temporal_positions: list[int] | None = None
    system_prompt: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "frame_size": list(self.frame_size),
            "grid": list(self.grid),
            "visual_tokens": int(self.visual_tokens),
            "temporal_positions": None if self.temporal_positions is None else [int(x) for x in self.temporal_positions],
            "system_prompt": self.system_prompt,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }
