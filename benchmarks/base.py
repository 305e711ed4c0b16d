"""The typed interface every benchmark reader implements.

A benchmark turns a dataset root in its official layout into videos (ordered frames),
expressions (the jobs) and, where public, ground truth per expression. Readers never look
at predictions; scoring code never looks at anything but a reader's ground truth.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """One video: its name and its frames in order (names without extension)."""

    name: str
    frames: tuple[str, ...]
    frame_dir: Path
    frame_ext: str = ".jpg"

    def __post_init__(self) -> None:
        # a last guard for every reader (third-party ones too): ids never become path parts
        from decafbench.safepath import check_id

        check_id(self.name, "video id")
        for f in self.frames:
            check_id(f, f"video {self.name!r}: frame name")

    def frame_path(self, frame: str) -> Path:
        return self.frame_dir / f"{frame}{self.frame_ext}"

    @property
    def frame_paths(self) -> list[Path]:
        return [self.frame_path(f) for f in self.frames]


@dataclass(frozen=True)
class Expression:
    """One (video, expression) job.

    ``obj_ids`` are palette ids in annotation PNGs (Ref-DAVIS17 style); ``anno_ids`` are keys
    of an RLE mask dictionary (MeViS / ReVOS style). An expression may name several objects:
    its target is their union. ``split`` is the expression's group where a benchmark reports
    groups (ReVOS: "referring" / "reasoning"), else "".
    """

    video: str
    exp_id: str
    text: str
    obj_ids: tuple[str, ...] = ()
    anno_ids: tuple[str, ...] = ()
    split: str = ""

    def __post_init__(self) -> None:
        from decafbench.safepath import check_id

        check_id(self.video, "video id")
        check_id(self.exp_id, f"video {self.video!r}: expression id")

    @property
    def key(self) -> tuple[str, str]:
        return (self.video, self.exp_id)


@dataclass
class GroundTruth:
    """Target masks of one expression over its annotated frames.

    ``masks`` is boolean ``(T, H, W)``, frame ``i`` named ``frames[i]``. ``foreground`` (same
    shape) is the union of every annotated object of the video, where a benchmark defines it
    (ReVOS's robustness R uses it); otherwise None.
    """

    frames: tuple[str, ...]
    masks: np.ndarray
    foreground: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


class Benchmark(ABC):
    """A dataset in its official layout under ``root``.

    Subclasses set ``name``, ``description``, ``splits`` (first is the default),
    ``ground_truth_splits`` (the splits that ship ground truth: a class-level capability,
    so ``decaf benchmarks list`` and scoring read the same declaration) and ``metrics``;
    they read lazily and cache what they read, so one instance can be shipped to
    worker processes cheaply (only ``root``, ``split`` and flags are pickled).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]] = ("valid",)
    #: the splits whose ground truth is public (empty: scored by an evaluation server only)
    ground_truth_splits: ClassVar[tuple[str, ...]] = ()
    metrics: ClassVar[tuple[str, ...]] = ("J", "F", "JF")
    #: Where the data lives when the user gives no ``--root`` (only the embedded benchmark).
    default_root: ClassVar[Path | None] = None

    def __init__(self, root: str | Path | None = None, split: str | None = None, *, trust_pickle: bool = False):
        from decafbench.errors import InputError

        if root is None:
            if self.default_root is None:
                raise InputError(f"benchmark {self.name!r} needs --root DIR (the dataset's root folder)")
            root = self.default_root
        self.root = Path(root)
        self.split = split or self.splits[0]
        if self.split not in self.splits:
            raise InputError(f"benchmark {self.name!r} has no split {self.split!r} (splits: {', '.join(self.splits)})")
        self.trust_pickle = trust_pickle
        if not self.root.is_dir():
            raise InputError("dataset root does not exist or is not a folder", self.root)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        unknown = [s for s in cls.ground_truth_splits if s not in cls.splits]
        if unknown:
            raise TypeError(f"{cls.__name__}.ground_truth_splits names {unknown[0]!r}, which is not one of its "
                            f"splits ({', '.join(cls.splits)})")
        if "has_ground_truth" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides has_ground_truth; declare ground_truth_splits instead "
                            f"(`decaf benchmarks list` reads it without opening a dataset)")

    def __getstate__(self) -> dict:
        return {"root": self.root, "split": self.split, "trust_pickle": self.trust_pickle}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"], state["split"], trust_pickle=state["trust_pickle"])

    # -- what every reader provides ------------------------------------------------------
    @abstractmethod
    def videos(self) -> list[VideoInfo]:
        """All videos of the split, sorted by name."""

    @abstractmethod
    def expressions(self) -> list[Expression]:
        """All (video, expression) jobs of the split, sorted by (video, exp_id)."""

    @property
    def has_ground_truth(self) -> bool:
        """Whether this split ships ground truth (Ref-YouTube-VOS valid and MeViS valid do not)."""
        return self.split in self.ground_truth_splits

    @abstractmethod
    def ground_truth(self, expression: Expression) -> GroundTruth:
        """Target masks of one expression; raises InputError if the split has none."""

    # -- conveniences ----------------------------------------------------------------------
    def video(self, name: str) -> VideoInfo:
        from decafbench.errors import InputError

        for v in self.videos():
            if v.name == name:
                return v
        raise InputError(f"benchmark {self.name!r} split {self.split!r} has no video {name!r}")

    def describe(self) -> dict:
        return {"benchmark": self.name, "split": self.split, "root": str(self.root)}
