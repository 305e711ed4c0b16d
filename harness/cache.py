"""On-disk cache of the MLLM's outputs (generated texts and rollout maps).

One entry per (adapter spec, prompt version, key frames, expression): the four raw maps
(object / background x video / frame view) and the generated texts. A sweep of 100 fusion
variants therefore runs the MLLM once per expression. The key hashes everything that
determines the outputs: the adapter's family, checkpoint and settings (token budgets,
rollout layers and head weighting, dtype), the prompt set's version and wording, the key
frames' contents and indices, and the expression text.

Format: ``DIR/ab/abcdef....safetensors`` with the maps as tensors and the texts as JSON in the
safetensors metadata: nothing in the cache can execute code when loaded (no pickle).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import InputError

CACHE_FORMAT = 1
MAP_NAMES = ("obj_video", "bg_video", "obj_frame", "bg_frame")


@dataclass
class MapsRecord:
    """Everything the MLLM produced for one expression."""

    obj_video: Any  # torch.Tensor (Tv, hv, wv)
    bg_video: Any
    obj_frame: Any  # torch.Tensor (T, h, w)
    bg_frame: Any
    temporal_stride: int
    texts: dict = field(default_factory=dict)  # object answers, obj_name, background answers
    stats: dict = field(default_factory=dict)  # vision passes, prefilled tokens, seconds

    def maps(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in MAP_NAMES}


def file_digest(paths: Iterable[str | Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def cache_key(fields: Mapping[str, Any]) -> str:
    """A stable hash of JSON-able fields (sorted keys)."""
    blob = json.dumps({"format": CACHE_FORMAT, **fields}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class AttentionCache:
    """get/put of :class:`MapsRecord` by key; ``None`` directory disables caching."""

    def __init__(self, directory: str | Path | None):
        self.dir = None if directory is None else Path(directory)
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        assert self.dir is not None
        return self.dir / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> MapsRecord | None:
        if self.dir is None:
            return None
        path = self.path(key)
        if not path.is_file():
            self.misses += 1
            return None
        from safetensors import SafetensorError
        from safetensors.torch import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {n: fh.get_tensor(n) for n in MAP_NAMES}
            info = json.loads(meta.get("decafbench", "{}"))
        except (SafetensorError, OSError, json.JSONDecodeError, KeyError) as exc:
            raise InputError(f"corrupt attention cache entry ({exc}); delete it to recompute", path) from None
        self.hits += 1
        return MapsRecord(**tensors, temporal_stride=int(info.get("temporal_stride", 1)),
                          texts=info.get("texts", {}), stats=info.get("stats", {}))

    def put(self, key: str, record: MapsRecord, fields: Mapping[str, Any] | None = None) -> None:
        if self.dir is None:
            return
        from safetensors.torch import save

        for name, t in record.maps().items():
            if not bool(t.isfinite().all()):
                raise InputError(f"attention map {name} contains NaN or inf; not caching it")
        info = {"temporal_stride": record.temporal_stride, "texts": record.texts, "stats": record.stats,
                "key_fields": dict(fields or {})}
        data = save({n: t.detach().to("cpu").float().contiguous() for n, t in record.maps().items()},
                    metadata={"decafbench": json.dumps(info, default=str)})
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
