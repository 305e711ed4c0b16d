"""The benchmarks by name: an explicit table of lazy ``"module:attr"`` targets.

Listing names or descriptions imports nothing; :func:`get_benchmark` imports one reader.
"""

from __future__ import annotations

from pathlib import Path

from decafbench.registry import Registry

from .base import Benchmark

BENCHMARKS: Registry[type[Benchmark]] = Registry("benchmark", base=Benchmark)
BENCHMARKS.update([
    ("ref-davis17", "decafbench.benchmarks.davis:RefDavis17",
     "Ref-DAVIS17 valid: 30 DAVIS videos, referring expressions, palette PNG (or RLE) masks"),
    ("mevis", "decafbench.benchmarks.mevis:Mevis",
     "MeViS motion expressions: valid_u (masks public) and valid (server)"),
    ("revos", "decafbench.benchmarks.revos:Revos",
     "ReVOS valid: referring and reasoning expressions; J F JF A R"),
    ("reasonvos", "decafbench.benchmarks.reasonvos:ReasonVOS",
     "ReasonVOS: reasoning expressions on BURST/VIPSeg/MOSE/MeViS videos"),
    ("ref-youtube-vos", "decafbench.benchmarks.ytvos:RefYoutubeVOS",
     "Ref-YouTube-VOS valid: no public ground truth; `decaf export` writes the server zip"),
    ("embedded", "decafbench.benchmarks.mevis:Embedded",
     "tiny synthetic moving-shapes benchmark shipped in the repo (MeViS valid_u layout)"),
])


def get_benchmark(name: str, root: str | Path | None = None, split: str | None = None,
                  trust_pickle: bool = False) -> Benchmark:
    """A reader for benchmark ``name`` on the dataset at ``root`` (``None``: its default root,
    which only ``embedded`` has). Unknown names, splits and roots raise InputError."""
    cls = BENCHMARKS.get(name)
    return cls(root, split, trust_pickle=trust_pickle)
