"""Sweep files: a grid of fusion variants and SAM2 thresholds over one MLLM pass.

A sweep is a TOML file with three tables::

    [run]      # any RunPlan field: benchmark, root, split, model, masks, frames, out, cache, ...
    [grid]     # variant = [names]; any fusion parameter = [values] (applied where a variant takes it)
    [sam2]     # point_threshold = [...], final_score_threshold = [...]

Every (variant, parameters) combination from ``[grid]`` crossed with every mask setting is its
own run record; they all read the same cached attention maps.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

from .errors import InputError
from .pipeline import MaskSpec, RunPlan, VariantSpec
from .rollout import RolloutConfig

_RUN_KEYS = {"benchmark", "root", "split", "model", "dtype", "device", "frames", "prompts", "out", "cache",
             "sam2", "seed", "limit", "masks", "rollout_start", "rollout_end", "head_weighting", "residual"}


def load_sweep(path: str | Path) -> RunPlan:
    from . import fusion

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("sweep file not found", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"malformed TOML: {exc}", path) from None
    run = data.get("run", {})
    unknown = set(run) - _RUN_KEYS
    if unknown:
        raise InputError(f"unknown field run.{sorted(unknown)[0]} (known: {', '.join(sorted(_RUN_KEYS))})", path)
    grid = dict(data.get("grid", {"variant": ["decaf"]}))
    try:
        variants = [VariantSpec(name, tuple(sorted(params.items()))) for name, params in fusion.expand_grid(grid)]
    except InputError as exc:
        raise InputError(f"[grid]: {exc}", path) from None
    sam2 = data.get("sam2", {})
    bad = set(sam2) - {"point_threshold", "final_score_threshold"}
    if bad:
        raise InputError(f"unknown field sam2.{sorted(bad)[0]}", path)
    kinds = {"coarse": ["coarse"], "sam2": ["sam2"], "both": ["coarse", "sam2"]}.get(run.get("masks", "both"))
    if kinds is None:
        raise InputError(f"run.masks must be coarse, sam2 or both, not {run.get('masks')!r}", path)
    masks = []
    for kind in kinds:
        if kind == "coarse":
            masks.append(MaskSpec("coarse"))
            continue
        for pq, trk in itertools.product(_as_list(sam2.get("point_threshold", 0.8)),
                                         _as_list(sam2.get("final_score_threshold", 0.8))):
            masks.append(MaskSpec("sam2", float(pq), float(trk)))
    return RunPlan(
        benchmark=run.get("benchmark", "embedded"), root=_path(run.get("root")), split=run.get("split"),
        model=run.get("model", "qwen2-vl:tiny"), dtype=run.get("dtype", "float32"), device=run.get("device", "cpu"),
        num_frames=int(run.get("frames", 16)), prompt_version=run.get("prompts", "v0"),
        rollout=RolloutConfig(run.get("rollout_start"), run.get("rollout_end"), run.get("head_weighting", "vmax"),
                              float(run.get("residual", 0.5))),
        variants=variants, masks=masks, sam2=run.get("sam2", "tiny"), out=Path(run.get("out", "results/sweep")),
        cache_dir=_path(run.get("cache", "results/cache")), seed=int(run.get("seed", 0)), limit=run.get("limit"))


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _path(value) -> Path | None:
    return None if value in (None, "") else Path(value)
