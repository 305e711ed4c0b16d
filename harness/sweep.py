"""Sweep files: a grid of fusion variants and SAM2 thresholds over one MLLM pass.

A sweep is a TOML file with up to three tables and nothing else::

    [run]      # any run setting, by the same name as the CLI option: benchmark, root, split,
               # model, masks, frames, out, cache, final_score_threshold, ... (decaf run --help)
    [grid]     # variant = [names]; any fusion parameter = [values] (applied where a variant takes it)
    [sam2]     # point_threshold = [...], final_score_threshold = [...]

Every (variant, parameters) combination from ``[grid]`` crossed with every mask setting is its
own run record; they all read the same cached attention maps. The settings go through
:meth:`RunConfig.from_mapping` like the CLI's, so the same names, types and checks apply;
an unknown table or key is an error naming it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from .config import RunConfig, VariantSpec
from .errors import InputError

TABLES = ("run", "grid", "sam2")
SAM2_KEYS = ("point_threshold", "final_score_threshold")
#: a sweep writes here unless [run] says otherwise
DEFAULT_OUT = "results/sweep"


def load_sweep(path: str | Path) -> RunConfig:
    """Read and check a sweep file -> the :class:`RunConfig` of all its records."""
    path = Path(path)
    data = _read(path)
    unknown = [k for k in data if k not in TABLES]
    if unknown:
        raise InputError(f"unknown table or key {unknown[0]!r} (a sweep file has only [run], [grid] and [sam2])", path)
    run, grid, sam2 = (_table(data, name, path) for name in TABLES)
    settings = {"out": DEFAULT_OUT, **run}
    if grid:
        if "variant" in run:
            raise InputError("variant is given in both [run] and [grid]; keep one", path)
        settings["variant"] = _grid_variants(grid, path)
    for key, values in sam2.items():
        if key not in SAM2_KEYS:
            raise InputError(f"[sam2] has no key {key!r} (keys: {', '.join(SAM2_KEYS)})", path)
        if key in run:
            raise InputError(f"{key} is given in both [run] and [sam2]; keep one", path)
        settings[key] = values
    return RunConfig.from_mapping(settings, source=path)


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("sweep file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable sweep file ({exc.__class__.__name__})", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"malformed TOML: {exc}", path) from None


def _table(data: dict, name: str, path: Path) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise InputError(f"{name} must be a table ([{name}]), not a {type(value).__name__}", path)
    return value


def _grid_variants(grid: dict, path: Path) -> list[VariantSpec]:
    from . import fusion

    try:
        return [VariantSpec(name, tuple(sorted(params.items()))) for name, params in fusion.expand_grid(grid)]
    except InputError as exc:
        raise InputError(f"[grid]: {exc}", path) from None
    except TypeError:
        raise InputError("[grid]: values must be a value or a list of values", path) from None
