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
    """sha256 over the files' contents in order: each file is framed by its byte length, so
    moving bytes from one file to the next (frames are binary, NUL bytes included) changes it."""
    h = hashlib.sha256()
    for p in paths:
        h.update(os.path.getsize(p).to_bytes(8, "little"))
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def cache_key(fields: Mapping[str, Any]) -> str:
    """A stable hash of JSON-able fields (sorted keys)."""
    blob = json.dumps({"format": CACHE_FORMAT, **fields}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


_KEY_CHARS = frozenset("0123456789abcdef")


def tensors_digest(tensors: Mapping[str, Any]) -> str:
    """sha256 over the maps' names, dtypes, shapes and raw bytes (in ``MAP_NAMES`` order)."""
    h = hashlib.sha256()
    for name in MAP_NAMES:
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _warn(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr)


class AttentionCache:
    """get/put of :class:`MapsRecord` by key; ``None`` directory disables caching.

    Every entry stores a sha256 of its tensors' bytes (and of its texts) beside them; ``get``
    verifies it, and an entry that does not match (garbled bytes, truncated file, an entry
    from an older format without a digest) is reported with one warning line and treated as a
    miss, so it is recomputed and rewritten, never used. Writes go to a temporary file in
    the same folder and are renamed, so concurrent writers of one key never mix their bytes.
    """

    def __init__(self, directory: str | Path | None):
        self.dir = None if directory is None else Path(directory)
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        if self.dir is not None and self.dir.exists() and not self.dir.is_dir():
            raise InputError("attention cache folder is a file, not a folder", self.dir)

    def path(self, key: str) -> Path:
        assert self.dir is not None
        # keys reach here from run records too (show / report): hex digests only, never a path
        if not (isinstance(key, str) and 16 <= len(key) <= 128 and set(key) <= _KEY_CHARS):
            raise InputError(f"attention cache key {str(key)[:40]!r} is not a hex digest")
        return self.dir / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> MapsRecord | None:
        if self.dir is None:
            return None
        path = self.path(key)
        if not path.is_file():
            self.misses += 1
            return None
        from safetensors.torch import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {n: fh.get_tensor(n) for n in MAP_NAMES}
            info = json.loads(meta.get("decafbench", "{}"))
            stored = meta.get("digest")
            problem = None
            if not stored:
                problem = "has no digest (written by an older version)"
            elif stored != _entry_digest(tensors, meta.get("decafbench", "{}")):
                problem = "does not match its digest (garbled data)"
            elif not all(bool(t.isfinite().all()) for t in tensors.values()):
                problem = "holds NaN or inf"
        except Exception as exc:  # noqa: BLE001 - safetensors raises assorted types on garbled headers
            problem = f"is unreadable ({type(exc).__name__})"
        if problem is not None:
            self.corrupt += 1
            self.misses += 1
            _warn(f"{path}: attention cache entry {problem}; recomputing it")
            return None
        self.hits += 1
        return MapsRecord(**tensors, temporal_stride=int(info.get("temporal_stride", 1)),
                          texts=info.get("texts", {}), stats=info.get("stats", {}))

    def put(self, key: str, record: MapsRecord, fields: Mapping[str, Any] | None = None) -> None:
        if self.dir is None:
            return
        from safetensors.torch import save

        from .atomicio import atomic_write_bytes

        for name, t in record.maps().items():
            if not bool(t.isfinite().all()):
                raise InputError(f"attention map {name} contains NaN or inf; not caching it")
        info = {"temporal_stride": record.temporal_stride, "texts": record.texts, "stats": record.stats,
                "key_fields": dict(fields or {})}
        tensors = {n: t.detach().to("cpu").float().contiguous() for n, t in record.maps().items()}
        info_text = _dumps(info)
        data = save(tensors, metadata={"decafbench": info_text, "digest": _entry_digest(tensors, info_text)})
        atomic_write_bytes(self.path(key), data)  # concurrent writers of one key: the last rename wins whole


def _dumps(info: Mapping[str, Any]) -> str:
    from .atomicio import json_safe

    return json.dumps(json_safe(info), allow_nan=False, default=str)


def _entry_digest(tensors: Mapping[str, Any], info_text: str) -> str:
    return hashlib.sha256((tensors_digest(tensors) + "\0" + info_text).encode()).hexdigest()


# -- where a run record's cache lives ---------------------------------------------------------------
#: manifest field: the attention cache folder, relative to the record folder (POSIX separators)
MANIFEST_FIELD = "attention_cache"


def location_for_record(cache_dir: str | Path, record_dir: str | Path) -> str:
    """What a record's manifest stores for ``cache_dir``: the path relative to the record
    folder, so a results folder that holds both (``results/embedded/decaf__coarse`` and
    ``results/cache``) can be moved, copied or shared and still finds its maps."""
    rel = os.path.relpath(Path(cache_dir).resolve(), Path(record_dir).resolve())
    return Path(rel).as_posix()


def locate_for_record(manifest: Mapping[str, Any], record_dir: str | Path) -> Path | None:
    """The cache folder of the record at ``record_dir``, or None when it cannot be found.

    ``attention_cache`` (relative to the record folder) first; records written before it
    existed stored ``config.cache_dir`` relative to the working directory of the run, which
    is tried as given and then against the record folder and its two parents."""
    record_dir = Path(record_dir)
    value = manifest.get(MANIFEST_FIELD)
    if isinstance(value, str) and value:
        p = Path(value) if Path(value).is_absolute() else record_dir / value
        if p.is_dir():
            return p
    cfg = manifest.get("config") if isinstance(manifest.get("config"), Mapping) else {}
    legacy = cfg.get("cache_dir")
    if not isinstance(legacy, str) or not legacy:
        return None
    p = Path(legacy)
    for cand in [p] if p.is_absolute() else [p, record_dir / p, record_dir.parent / p, record_dir.parent.parent / p]:
        if cand.is_dir():
            return cand
    return None
