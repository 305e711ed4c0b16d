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

Many models and benchmarks in one sweep: ``[run] model`` and ``benchmark`` may be lists
(:func:`load_sweep_configs`); every (model, benchmark) pair is its own config writing under
``OUT/<model folder>/<benchmark>/``, and ``decaf sweep`` ranks all their records in one
leaderboard. ``executor = "ray"`` and ``workers`` run the pairs one after another on one Ray
instance, each pair on its own actors (each loads that pair's model once).
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


def load_sweep(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read and check a sweep file -> the :class:`RunConfig` of all its records (``overrides``
    replace ``[run]`` settings: one (model, benchmark) pair of :func:`load_sweep_configs`)."""
    path = Path(path)
    data = _read(path)
    unknown = [k for k in data if k not in TABLES]
    if unknown:
        raise InputError(f"unknown table or key {unknown[0]!r} (a sweep file has only [run], [grid] and [sam2])", path)
    run, grid, sam2 = (_table(data, name, path) for name in TABLES)
    settings = {"out": DEFAULT_OUT, **run, **(overrides or {})}
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


def model_folder(model: str) -> str:
    """A model name as one folder name: ``qwen2-vl:Qwen/Qwen2.5-VL-7B-Instruct`` ->
    ``qwen2-vl-Qwen-Qwen2.5-VL-7B-Instruct`` (letters, digits, ``.``, ``_`` and ``-`` only)."""
    import re

    return re.sub(r"[^A-Za-z0-9._]+", "-", model).strip("-.") or "model"


def load_sweep_configs(path: str | Path) -> tuple[list[RunConfig], Path]:
    """A sweep file -> one :class:`RunConfig` per (model, benchmark) pair, and the sweep's out.

    ``[run] model`` and ``benchmark`` may be lists; then each pair writes its records under
    ``OUT/<model folder>/<benchmark>/`` and ``root`` may be a table of folders by benchmark.
    Without lists this is :func:`load_sweep`'s single config, writing under ``OUT``.
    """
    path = Path(path)
    run = _table(_read(path), "run", path)
    models, benchmarks, root = run.get("model"), run.get("benchmark"), run.get("root")
    if not isinstance(models, list) and not isinstance(benchmarks, list):
        if isinstance(root, dict):
            raise InputError("root is a table (folders by benchmark) but benchmark is not a list", path)
        config = load_sweep(path)
        return [config], config.out
    models = models if isinstance(models, list) else [models or "qwen2-vl:tiny"]
    benchmarks = benchmarks if isinstance(benchmarks, list) else [benchmarks or "embedded"]
    for key, values in (("model", models), ("benchmark", benchmarks)):
        if not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise InputError(f"{key}: expected a name or a non-empty list of names, got {values!r}", path)
        if len(set(values)) != len(values):
            raise InputError(f"{key}: {sorted(v for v in values if values.count(v) > 1)[0]!r} is listed twice", path)
    folders: dict[str, str] = {}
    for m in models:
        other = folders.setdefault(model_folder(m), m)
        if other != m:
            raise InputError(f"model: {other!r} and {m!r} would share the folder {model_folder(m)!r}", path)
    if root is not None and not isinstance(root, dict) and len(benchmarks) > 1:
        raise InputError("root: one folder for several benchmarks; give a table, root = { BENCHMARK = \"folder\", ... }",
                         path)
    if isinstance(root, dict):
        unknown = sorted(set(root) - set(benchmarks))
        if unknown:
            raise InputError(f"root: {unknown[0]!r} is not one of the benchmarks ({', '.join(benchmarks)})", path)
    out = Path(run.get("out", DEFAULT_OUT))
    configs = []
    for m in models:
        for b in benchmarks:
            where = root.get(b) if isinstance(root, dict) else root
            overrides = {"model": m, "benchmark": b, "root": where, "out": str(out / model_folder(m) / b)}
            configs.append(load_sweep(path, overrides))
    return configs, out
