"""One typed run configuration, shared by ``decaf run``, sweep files and the run manifest.

:meth:`RunConfig.from_mapping` builds it from user-facing settings with the same names
everywhere: the CLI option ``--final-score-threshold`` is the sweep file's
``final_score_threshold``, ``--frames`` is ``frames``, and so on (:data:`SETTINGS` lists
them all). Values of the wrong type are refused there; :meth:`RunConfig.validate` checks
ranges, names and the machine (GPU) before any model loads, and both raise
:class:`~decafbench.errors.InputError` with one line naming the setting (and the sweep
file, when the settings came from one).

To add a setting: add a field here, its entry in :data:`SETTINGS` and its check in
``validate``; then a CLI option of the same name in ``commands/run.py``.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import InputError
from .rollout import HEAD_WEIGHTINGS, RolloutConfig

#: ``keypoints`` makes no masks: the official keypoint mode (top fused-map cells as points,
#: scored by point precision PP@k, :mod:`decafbench.keypoints`)
MASK_KINDS = ("coarse", "sam2", "keypoints")
_MASK_CHOICES = {"coarse": ("coarse",), "sam2": ("sam2",), "keypoints": ("keypoints",), "both": ("coarse", "sam2")}


@dataclass(frozen=True)
class VariantSpec:
    """A fusion variant with its parameter overrides."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        return self.name + "[" + ",".join(f"{k}={v}" for k, v in self.params) + "]"


@dataclass(frozen=True)
class MaskSpec:
    """How masks are made: ``coarse`` (Otsu on key frames) or ``sam2`` with its thresholds;
    ``keypoints``: no masks, the official keypoint mode's points and point precision."""

    kind: str
    point_threshold: float = 0.8
    final_score_threshold: float = 0.8

    @property
    def label(self) -> str:
        if self.kind != "sam2" or (self.point_threshold, self.final_score_threshold) == (0.8, 0.8):
            return self.kind
        return f"sam2[pq={self.point_threshold},trk={self.final_score_threshold}]"


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one ``decaf run`` (or sweep). Build it with :meth:`from_mapping`."""

    benchmark: str = "embedded"
    root: Path | None = None
    split: str | None = None
    model: str = "qwen2-vl:tiny"
    model_args: dict = field(default_factory=dict)
    dtype: str = "auto"
    device: str = "cpu"
    num_frames: int = 16
    prompt_version: str = "v0"
    max_new_tokens: int = 128
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    variants: tuple[VariantSpec, ...] = (VariantSpec("decaf"),)
    masks: tuple[MaskSpec, ...] = (MaskSpec("coarse"), MaskSpec("sam2"))
    sam2: str = "tiny"
    out: Path = Path("results/embedded")
    cache_dir: Path | None = Path("results/cache")
    seed: int = 0
    limit: int | None = None
    reuse: bool = True
    #: None: on where it is exact enough (float32/64), off in half precision (issue 9 item 8)
    prefix_reuse: bool | None = None
    allow_failures: bool = False
    #: who runs the jobs: "local" (this process) or "ray" (one actor per worker); never
    #: part of a record's identity, since results do not depend on it
    executor: str = "local"
    workers: int | None = None  # None: 1 locally, 2 on Ray
    ray_address: str | None = None  # None: start a local Ray instance
    gpus_per_worker: float = 0.0
    #: where the settings came from (None: the command line; else the sweep file), for messages
    source: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], source: str | Path | None = None) -> "RunConfig":
        """Settings by their user-facing names (:data:`SETTINGS`) -> a config; missing ones default."""
        from .settings import build

        return build(cls, mapping, None if source is None else str(source))

    def fail(self, key: str, message: str) -> InputError:
        """A one-line error naming the setting as the user spelled it (``--frames`` on the
        command line, ``frames`` after the sweep file's name)."""
        from .settings import where

        return InputError(f"{where(key, self.source)}: {message}", self.source)

    # -- checks before any model loads -----------------------------------------------------------
    def validate(self) -> "RunConfig":
        """Check every setting (names, ranges, the GPU) before any work; returns self."""
        for check in _CHECKS:
            check(self)
        return self

    def probe_folders(self) -> None:
        """Create ``out`` (and the cache folder) now and check they take files: a typo in a
        path fails here, not after hours of work. The only check with effects."""
        _probe_folder(self, "out", self.out)
        if self.cache_dir is not None:
            _probe_folder(self, "cache", self.cache_dir)

    # -- resolved settings -------------------------------------------------------------------------
    @property
    def effective_dtype(self) -> str:
        """``auto`` resolved: bfloat16 on CUDA (the official precision), float32 elsewhere."""
        from decafbench.adapters.common import resolve_dtype

        return resolve_dtype(self.dtype, self.device)

    @property
    def effective_prefix_reuse(self) -> bool:
        """Shared-prefix reuse as asked, or by default only where it keeps outputs (float32/64):
        in bfloat16/float16 it changes rounding enough to flip a greedy token."""
        from decafbench.adapters.common import prefix_reuse_default

        if self.prefix_reuse is None:
            return self.reuse and prefix_reuse_default(self.effective_dtype)
        return self.reuse and self.prefix_reuse

    # -- records --------------------------------------------------------------------------------
    def to_manifest(self) -> dict:
        """JSON-safe settings for the manifest's ``config``."""
        return {
            "benchmark": self.benchmark, "root": _str(self.root), "split": self.split, "model": self.model,
            "model_args": json.loads(json.dumps(self.model_args, default=str)), "dtype": self.dtype,
            "device": self.device, "num_frames": self.num_frames, "prompt_version": self.prompt_version,
            "max_new_tokens": self.max_new_tokens, "rollout": self.rollout.to_dict(),
            "variants": [v.label for v in self.variants], "masks": [m.label for m in self.masks],
            "sam2": self.sam2, "out": str(self.out), "cache_dir": _str(self.cache_dir), "seed": self.seed,
            "limit": self.limit, "reuse": self.reuse, "prefix_reuse": self.prefix_reuse,
            "allow_failures": self.allow_failures, "executor": self.executor, "workers": self.n_workers,
            "ray_address": self.ray_address, "gpus_per_worker": self.gpus_per_worker,
            "effective": {"dtype": self.effective_dtype, "prefix_reuse": self.effective_prefix_reuse},
        }

    @property
    def n_workers(self) -> int:
        return self.workers if self.workers is not None else (2 if self.executor == "ray" else 1)

    def identity(self) -> dict:
        """What makes two runs the same run (for resuming a record folder).

        Settings that change neither outputs nor which record is which (limit, out, cache,
        reuse, the other records' variants and mask kinds) are left out.
        """
        return {k: v for k, v in self.to_manifest().items() if k not in _NOT_IDENTITY}

    def with_changes(self, **changes: Any) -> "RunConfig":
        """A copy with some fields replaced (e.g. paths made absolute for remote workers)."""
        return replace(self, **changes)


_NOT_IDENTITY = ("variants", "masks", "out", "cache_dir", "limit", "reuse", "prefix_reuse", "allow_failures",
                 "executor", "workers", "ray_address", "gpus_per_worker")


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


# -- validation ------------------------------------------------------------------------------------
def _check_counts(c: RunConfig) -> None:
    if c.num_frames < 1:
        raise c.fail("frames", f"must be >= 1, got {c.num_frames}")
    if c.max_new_tokens < 1:
        raise c.fail("max_new_tokens", f"must be >= 1, got {c.max_new_tokens}")
    if c.limit is not None and c.limit < 1:
        raise c.fail("limit", f"must be >= 1 (leave it out for every expression), got {c.limit}")
    if c.seed < 0:
        raise c.fail("seed", f"must be >= 0, got {c.seed}")


def _check_rollout(c: RunConfig) -> None:
    r = c.rollout
    if r.head_weighting not in HEAD_WEIGHTINGS:
        raise c.fail("head_weighting", f"must be one of {', '.join(HEAD_WEIGHTINGS)}, not {r.head_weighting!r}")
    if not 0.0 <= r.residual <= 1.0:
        raise c.fail("residual", f"must be in [0, 1], got {r.residual}")
    if r.start is not None and r.end is not None and (r.start >= 0) == (r.end >= 0) and r.start >= r.end:
        raise c.fail("rollout_start", f"{r.start} is not below rollout_end {r.end}")


def _check_names(c: RunConfig) -> None:
    from decafbench.adapters.common import DTYPES
    from decafbench.benchmarks.registry import BENCHMARKS

    from .prompts import PROMPTS

    if c.dtype != "auto" and c.dtype not in DTYPES:
        raise c.fail("dtype", f"must be auto or one of {', '.join(DTYPES)}, not {c.dtype!r}")
    for key, registry, value in (("benchmark", BENCHMARKS, c.benchmark), ("prompts", PROMPTS, c.prompt_version)):
        if value not in registry:
            try:
                registry.describe(value)  # the registry's own "unknown ...; did you mean" message
            except InputError as exc:
                raise c.fail(key, str(exc)) from None
    _check_model(c)


def _check_model(c: RunConfig) -> None:
    from decafbench.adapters.registry import get_adapter_class, parse_adapter_name
    from decafbench.errors import RegistryError

    try:
        family = parse_adapter_name(c.model)[0]
        cls = get_adapter_class(family)
    except RegistryError as exc:
        raise c.fail("model", str(exc)) from None
    bad = [k for k in c.model_args if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise c.fail("model_args", f"{bad[0]!r} is not an argument name")
    if getattr(cls, "MODEL_ARGS", None) is not None:  # families that declare typed model args: check now
        from .modelargs import check_model_args

        try:
            check_model_args(cls, c.model_args, family)
        except InputError as exc:
            raise c.fail("model_args", str(exc)) from None


def _check_device(c: RunConfig) -> None:
    m = re.fullmatch(r"(cpu|mps|cuda)(?::(\d+))?", c.device)
    if m is None or (m.group(1) == "cpu" and m.group(2)):
        raise c.fail("device", f"must be cpu, cuda, cuda:N or mps, not {c.device!r}")
    if m.group(1) != "cuda":
        return
    if c.executor == "ray":
        if m.group(2):
            raise c.fail("device", f"{c.device!r}: Ray gives each worker its own GPUs; use cuda")
        return  # the GPUs are the cluster's, not this machine's: checked when Ray starts
    import torch

    if not torch.cuda.is_available():
        raise c.fail("device", f"{c.device!r} asked for, but no CUDA GPU is available here")
    index = int(m.group(2) or 0)
    if index >= torch.cuda.device_count():
        raise c.fail("device", f"{c.device!r} asked for, but there are {torch.cuda.device_count()} GPUs")


#: who may run a run's jobs (decafbench.executors implements them)
EXECUTORS = ("local", "ray")


def _check_executor(c: RunConfig) -> None:
    from importlib.util import find_spec

    if c.executor not in EXECUTORS:
        raise c.fail("executor", f"unknown executor {c.executor!r} (known: {', '.join(EXECUTORS)})")
    if c.workers is not None and c.workers < 1:
        raise c.fail("workers", f"must be >= 1, got {c.workers}")
    if c.gpus_per_worker < 0:
        raise c.fail("gpus_per_worker", f"must be >= 0, got {c.gpus_per_worker}")
    if c.executor == "local":
        from .settings import where

        ray = f"{where('executor', c.source)} ray" if c.source is None else "executor = \"ray\""
        if c.workers not in (None, 1):
            raise c.fail("workers", f"the local executor runs one worker, not {c.workers} (use {ray})")
        for key in ("ray_address", "gpus_per_worker"):
            if getattr(c, key):
                raise c.fail(key, f"needs {ray}")
        return
    if "ray" not in sys.modules and find_spec("ray") is None:
        raise c.fail("executor", "ray needs the ray package: pip install 'decafbench[ray]'")
    if c.gpus_per_worker > 0 and not c.device.startswith("cuda"):
        raise c.fail("gpus_per_worker", f"{c.gpus_per_worker:g} GPUs per worker with device {c.device!r}; use device cuda")


def _check_fusion(c: RunConfig) -> None:
    from . import fusion

    if not c.variants:
        raise c.fail("variant", "no fusion variant given")
    for v in c.variants:
        try:
            fusion.validate(v.name, dict(v.params))
        except InputError as exc:
            raise c.fail("variant", str(exc)) from None
    if not c.masks:
        raise c.fail("masks", "no mask kind given")
    for m in c.masks:
        if m.kind not in MASK_KINDS:
            raise c.fail("masks", f"unknown mask kind {m.kind!r} (known: {', '.join(MASK_KINDS)})")
        for key in ("point_threshold", "final_score_threshold"):
            if not 0.0 <= getattr(m, key) <= 1.0:
                raise c.fail(key, f"must be in [0, 1], got {getattr(m, key)}")


def _check_paths(c: RunConfig) -> None:
    if c.root is not None and not c.root.is_dir():
        raise c.fail("root", f"{c.root} is not a folder")
    for key, path in (("out", c.out), ("cache", c.cache_dir)):
        if path is None:
            continue
        blocker = next((p for p in (path, *path.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise c.fail(key, f"{blocker} is a file, not a folder")


def _check_sam2(c: RunConfig) -> None:
    if not any(m.kind == "sam2" for m in c.masks) or c.sam2 == "tiny" or c.sam2.startswith("tiny@"):
        return
    config, sep, checkpoint = c.sam2.partition(":")
    if not sep or not config or not checkpoint:
        raise c.fail("sam2", f"expected CONFIG:CHECKPOINT or 'tiny', not {c.sam2!r}")
    if not Path(checkpoint).is_file():
        raise c.fail("sam2", f"checkpoint {checkpoint} is not a file")


_CHECKS: tuple[Callable[[RunConfig], None], ...] = (
    _check_counts, _check_executor, _check_rollout, _check_fusion, _check_paths, _check_sam2, _check_device,
    _check_names)


def _probe_folder(c: RunConfig, key: str, path: Path) -> None:
    import os
    import tempfile

    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise c.fail(key, f"{path} is a file, not a folder") from None
    except OSError as exc:
        raise c.fail(key, f"{path} is not writable ({exc.strerror or exc.__class__.__name__})") from None
