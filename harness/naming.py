"""Record folder names: a shell-safe slug of a run's label, the full label kept in the manifest.

Why: ``decaf[sigma=2.0]__coarse`` is a character class to every shell (``ls
results/decaf[sigma=2.0]__coarse`` matches nothing, or a stranger file), so folder names use
a slug made of letters, digits and ``. _ + -`` only: ``decaf-sigma2.0__coarse``,
``decaf__sam2-pq0.7-trk0.8``. The slug is a pure function of the labels; when it had to drop
characters it cannot spell, or when two labels of one run would share a slug, the folder
gets a short hash of the full label, so two configurations never share a folder. Tables and
reports show the manifest's full label, never the folder name.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

_SAFE = re.compile(r"[^A-Za-z0-9._+-]")


def slug(label: str) -> tuple[str, bool]:
    """``name[k=v,k2=v2]`` -> ``name-kv-k2v2``; returns (slug, exact) where ``exact`` is False
    when characters outside the label grammar had to be replaced."""
    text = str(label).strip()
    m = re.fullmatch(r"([^\[\]]*)\[([^\[\]]*)\]", text)
    if m:
        name, params = m.groups()
        parts = [name] + [p.strip().replace("=", "", 1) for p in params.split(",") if p.strip()]
        text = "-".join(parts)
    safe = _SAFE.sub("_", text)
    exact = safe == text and bool(safe) and not safe.startswith(("-", "."))
    if not safe or safe.startswith(("-", ".")):
        safe = "x" + safe
    return safe, exact


def _digest(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()[:8]


def record_folder_names(labels: Sequence[tuple[str, str]]) -> list[str]:
    """Folder names for (variant label, mask label) pairs of one run: ``VARIANT__MASKS``
    slugs, with ``-<hash of the full labels>`` appended where a slug is inexact or shared."""
    names = []
    for variant, mask in labels:
        (v, v_exact), (k, k_exact) = slug(variant), slug(mask)
        names.append((f"{v}__{k}", v_exact and k_exact, f"{variant}\0{mask}"))
    counts: dict[str, int] = {}
    for name, _, _ in names:
        counts[name] = counts.get(name, 0) + 1
    return [name if exact and counts[name] == 1 else f"{name}-{_digest(full)}" for name, exact, full in names]
