"""Imports point down: a lower layer never imports a higher one (parsed with ast, no import).

The layers, lowest first, are the architecture's one-way data flow: foundations (errors,
registries, file writing), pure computation (masks, metrics, fusion, rollout, SAM2), readers
and models (benchmarks, adapters), what a run is asked and stores (prompts, records, cache),
what reads records (statistics, tables, figures, reports), what runs (pipeline, sweeps,
executors), and the command line. A module may import its own layer or lower ones.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"harness": "decafbench", "adapters": "decafbench.adapters", "benchmarks": "decafbench.benchmarks"}

#: lowest first; the first matching pattern gives a module's layer
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("decafbench", "decafbench.errors", "decafbench.registry", "decafbench.safepath",
                    "decafbench.atomicio", "decafbench.locks", "decafbench.pool", "decafbench.progress",
                    "decafbench.naming",
                    "decafbench._*", "decafbench.adapters._*", "decafbench.reference", "decafbench.commands",
                    "decafbench.adapters", "decafbench.benchmarks")),
    ("compute", ("decafbench.keyframes", "decafbench.maskio", "decafbench.metrics", "decafbench.metric_registry",
                 "decafbench.coarse", "decafbench.fusion", "decafbench.keypoints",
                 "decafbench.rollout", "decafbench.stats", "decafbench.sam2_model", "decafbench.sam2_prompting",
                 "decafbench.report_html", "decafbench.reference.*", "decafbench.adapters.tiny",
                 "decafbench.adapters.base", "decafbench.adapters.attention")),
    ("readers and models", ("decafbench.benchmarks.*", "decafbench.adapters.*", "decafbench.diagnostics",
                            "decafbench.evaluate")),
    ("run inputs and records", ("decafbench.prompts", "decafbench.modelargs", "decafbench.config", "decafbench.settings",
                                "decafbench.runstore", "decafbench.cache")),
    ("record readers", ("decafbench.runstats", "decafbench.results", "decafbench.tables", "decafbench.show",
                        "decafbench.show_record", "decafbench.report", "decafbench.report_plots")),
    ("runs", ("decafbench.pipeline", "decafbench.driver", "decafbench.sweep", "decafbench.executors",
              "decafbench.executor*")),
    ("command line", ("decafbench.commands.*", "decafbench.cli")),
]

#: known upward imports being removed by another change; do not add to this list
PENDING: set[tuple[str, str]] = {
}


def layer(module: str) -> int:
    for rank, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layering.py")


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """decafbench modules imported anywhere in the file (function bodies included)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from decafbench import fusion` imports the submodule decafbench.fusion
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        found |= {n for n in names if n == "decafbench" or n.startswith("decafbench.")}
    return found


def test_every_module_has_a_layer():
    for module in modules():
        layer(module)


def test_no_module_imports_a_higher_layer():
    known = set(modules())
    upward = []
    for module, path in sorted(modules().items()):
        for target in sorted(imports(module, path, known)):
            if target in known and layer(target) > layer(module) and (module, target) not in PENDING:
                upward.append(f"{module} ({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    src = tmp_path / "maskio.py"
    src.write_text("def f():\n    from .runstore import atomic_write_bytes\n    from decafbench import pipeline\n")
    known = {"decafbench.runstore", "decafbench.pipeline", "decafbench.maskio"}
    assert imports("decafbench.maskio", src, known) == {"decafbench.runstore", "decafbench.pipeline"}
    assert layer("decafbench.maskio") < layer("decafbench.runstore") < layer("decafbench.pipeline")
