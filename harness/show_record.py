"""One expression of a run record, gathered for :mod:`decafbench.show` to draw.

Why a module apart from the drawing code: drawing works on arrays given directly (any frames,
synthetic maps), while this side knows the run-record layout, the benchmark registry, the
attention cache and the fusion variants. It finds the expression's key frames, recomputes
the fusion stages from the cached maps with the record's variant, collects masks from this
record's ``predictions/`` and its coarse / SAM2 sibling record, and writes the caption.
Missing pieces become notes and "n/a" panels rather than errors, so a report over a
partial run still draws what it can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InputError
from .show import MASK_ORDER, STAGE_ORDER, parse_rows, show_maps, to_numpy_maps


@dataclass
class ExpressionView:
    """Everything one figure shows, already restricted to the chosen key frames."""

    video: str
    exp_id: str
    expression: str
    frame_names: list[str]
    frames: list[np.ndarray]
    stages: dict[str, np.ndarray]
    masks: dict[str, list[np.ndarray | None]]
    caption: list[str]
    title: str = ""
    rows: list[int] = field(default_factory=list)  # indices into the key frames
    notes: list[str] = field(default_factory=list)

    @property
    def maps_missing(self) -> bool:
        """True when the attention maps could not be read (every stage drawn "n/a")."""
        return not self.stages

    def figure(self, columns: Sequence[str] | None = None, **kwargs: Any) -> Any:
        """The :func:`~decafbench.show.show_maps` figure; every stage of :data:`STAGE_ORDER` and
        every mask kind is a column, drawn "n/a" where this expression lacks it."""
        labels = [f"key {r}\n{n}" for r, n in zip(self.rows, self.frame_names)]
        stages: dict[str, Any] = {k: self.stages.get(k) for k in STAGE_ORDER}
        stages.update({k: v for k, v in self.stages.items() if k not in stages})
        masks: dict[str, Any] = dict(self.masks)
        for kind in ("coarse", "sam2", "ground truth"):
            masks.setdefault(kind, None)
        if columns is None:
            columns = ["frame", *stages, *[k for k in MASK_ORDER if k in masks], *[k for k in masks if k not in MASK_ORDER]]
        return show_maps(self.frames, stages, masks=masks, row_labels=labels, columns=columns,
                         caption=self.caption + self.notes, title=self.title, **kwargs)


@dataclass
class _Sources:
    """Where one expression's pieces live (see :func:`load_expression_view`)."""

    title: str
    expression: str
    key_frames: list[str]
    frame_paths: dict[str, Path]
    stages: dict[str, np.ndarray]
    row: dict
    texts: dict
    mask_dirs: dict[str, Path]  # mask column -> folder holding FRAME.png of this expression
    gt: Any = None  # GroundTruth or None
    notes: list[str] = field(default_factory=list)

    def load_frames(self, names: Sequence[str]) -> list[np.ndarray]:
        from PIL import Image, UnidentifiedImageError

        out = []
        for n in names:
            path = self.frame_paths[n]
            try:
                with Image.open(path) as im:
                    out.append(np.asarray(im.convert("RGB")))
            except FileNotFoundError:
                raise InputError("missing frame", path) from None
            except (UnidentifiedImageError, OSError) as exc:
                raise InputError(f"corrupt image ({exc.__class__.__name__})", path) from None
        return out

    def load_masks(self, names: Sequence[str], rows: Sequence[int], images: Sequence[np.ndarray]) -> dict:
        from .maskio import read_mask_png
        from .safepath import safe_join

        masks: dict[str, list[np.ndarray | None]] = {}
        for kind, folder in self.mask_dirs.items():
            paths = [safe_join(folder, f"{n}.png", what="prediction") for n in names]
            masks[kind] = [read_mask_png(p) if p.is_file() else None for p in paths]
        if "coarse" not in masks and "fused" in self.stages:
            from .coarse import coarse_masks

            fused = self.stages["fused"][list(rows)]
            masks["coarse"] = [coarse_masks(fused[i:i + 1], images[i].shape[:2])[0] for i in range(len(rows))]
            self.notes.append("coarse masks recomputed from the fused map (Otsu); no coarse record found.")
        if self.gt is not None:
            index = {f: i for i, f in enumerate(self.gt.frames)}
            masks["ground truth"] = [self.gt.masks[index[n]] if n in index else None for n in names]
        return masks

    def caption(self) -> list[str]:
        r = self.row
        bg = self.texts.get("background_video") or self.texts.get("background_frame") or []
        bg = (bg[0] if bg else "") if isinstance(bg, (list, tuple)) else bg
        obj = self.texts.get("obj_name") or r.get("obj_name") or ""
        scores = "  ".join(f"{label} {fmt_score(r[col], 1, 100.0)}" for col, label in
                           (("J", "J"), ("F", "F"), ("JF", "J&F"), ("A", "A"), ("R", "R")) if col in r)
        scores += " (points)" if scores else ""
        lines = [f'"{self.expression}"', f"object word: {obj or 'n/a'}  |  background phrase: {str(bg).strip() or 'n/a'}",
                 scores or "no scores (no ground truth)"]
        if str(r.get("error") or "").strip():
            lines.append(f"error: {r['error']}")
        diag = []
        for stage in STAGE_ORDER:
            vals = [r.get(f"diag_{stage}_{m}") for m in ("iou", "hit", "mass")]
            if any(v is not None for v in vals):
                diag.append(f"{stage.replace('_', ' ')} " + "/".join(fmt_score(v, 2) for v in vals))
        if diag:
            lines.append("diagnostics iou/hit/mass: " + "; ".join(diag))
        return ["".join(c if c.isprintable() else "\ufffd" for c in line) for line in lines]  # model output may be junk


def _resolve_dir(value: Any, run_dir: Path) -> Path | None:
    """A folder named in a manifest: as given, else relative to the record or its parents."""
    if not value:
        return None
    p = Path(str(value))
    for cand in [p] if p.is_absolute() else [p, run_dir / p, run_dir.parent / p, run_dir.parent.parent / p]:
        if cand.is_dir():
            return cand
    return None


def _mask_dirs(run_dir: Path, manifest: dict, video: str, exp_id: str) -> dict[str, Path]:
    """This record's predictions and those of sibling records (same variant, other mask kind)."""
    import json

    from .safepath import check_id, safe_join

    check_id(video, "video id")  # ids come from a record or the command line: plain names only
    check_id(exp_id, "expression id")

    def folder(path: Path, m: dict) -> Path | None:
        base = path / "predictions" if (path / "predictions").is_dir() else _resolve_dir(m.get("predictions"), path)
        return None if base is None else safe_join(base, video, exp_id, what="prediction folder")

    kind = manifest.get("mask_kind")
    own_kind = kind if kind in ("coarse", "sam2") else "prediction"
    out: dict[str, Path] = {}
    own = folder(run_dir, manifest)
    if own is not None:
        out[own_kind] = own
    if run_dir.parent == run_dir or "variant_label" not in manifest:
        return out
    siblings = sorted((p for p in run_dir.parent.iterdir() if p.is_dir() and p.resolve() != run_dir.resolve()),
                      key=lambda p: (not p.name.endswith(("__coarse", "__sam2")), p.name))
    for p in siblings:
        try:
            m = json.loads((p / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        k = m.get("mask_kind") if isinstance(m, dict) else None
        same = m.get("variant_label") == manifest.get("variant_label") and m.get("benchmark") == manifest.get("benchmark")
        if same and k in ("coarse", "sam2") and k not in out and folder(p, m) is not None:
            out[k] = folder(p, m)
    return out


def _stages(manifest: dict, row: dict, cache_dir: Path | None, n_key: int, notes: list[str]) -> tuple[dict, dict]:
    """Fusion stages from the attention cache entry of ``row['cache_key']`` (empty if absent)."""
    key = str(row.get("cache_key") or "").strip()
    if not key:
        notes.append("no attention maps: the record has no cache_key column (not a decaf run record).")
        return {}, {}
    if cache_dir is None:
        notes.append("no attention maps: the record's cache folder was not found (pass --cache DIR).")
        return {}, {}
    from . import fusion
    from .cache import AttentionCache

    maps = AttentionCache(cache_dir).get(key)
    if maps is None:
        notes.append(f"no attention maps: cache entry {key[:12]} is not in {cache_dir}.")
        return {}, {}
    params = manifest.get("variant_params") if isinstance(manifest.get("variant_params"), dict) else {}
    stages = fusion.stages(str(manifest.get("variant") or "decaf"), maps.obj_video, maps.bg_video, maps.obj_frame,
                           maps.bg_frame, temporal_stride=maps.temporal_stride, **params)
    out = {k: to_numpy_maps(k, v) for k, v in stages.items() if v is not None}
    for k, v in out.items():
        if v.shape[0] != n_key:
            raise InputError(f"cache entry {key[:12]}: stage {k} has {v.shape[0]} frames, the record {n_key} key frames")
    return out, dict(maps.texts or {})


def expression_sources(run_dir: Path, video: str, exp_id: str, *, cache_dir: str | Path | None = None,
                       root: str | Path | None = None, record: Any = None, benchmark: Any = None,
                       trust_pickle: bool = False) -> _Sources:
    """Locate frames, maps, masks and texts of one expression of the record at ``run_dir``."""
    from .runstore import TABLE, read_record

    rec = record if record is not None else read_record(run_dir)
    m = rec.manifest
    t = rec.table
    hit = t[(t["video"].astype(str) == video) & (t["exp_id"].astype(str) == exp_id)]
    if hit.empty:
        raise InputError(f"no expression video={video!r} exp_id={exp_id!r} in the table", run_dir / TABLE)
    row = {k: v for k, v in hit.iloc[0].to_dict().items() if not (isinstance(v, str) and v == "")}
    if benchmark is None:
        from decafbench.benchmarks.registry import get_benchmark

        if not m.get("benchmark"):
            raise InputError("manifest has no 'benchmark' field", run_dir / "manifest.json")
        # trust comes only from the caller (the command line), never from the record's manifest
        benchmark = get_benchmark(str(m["benchmark"]), root=root or m.get("root"), split=m.get("split"),
                                  trust_pickle=trust_pickle)
    info = benchmark.video(video)
    expr = next((e for e in benchmark.expressions() if e.video == video and str(e.exp_id) == exp_id), None)
    if expr is None:
        raise InputError(f"benchmark {benchmark.name!r} has no expression {exp_id!r} of video {video!r}")
    key_frames = str(row.get("key_frames") or "").split()
    if not key_frames:
        from .keyframes import key_frame_indices

        cfg = m.get("config") if isinstance(m.get("config"), dict) else {}
        key_frames = [info.frames[i] for i in key_frame_indices(len(info.frames), int(cfg.get("num_frames", 16)))]
    unknown = [f for f in key_frames if f not in info.frames]
    if unknown:
        raise InputError(f"key frame {unknown[0]!r} is not a frame of video {video!r}", run_dir / TABLE)
    notes: list[str] = []
    if cache_dir is not None:
        cdir: Path | None = Path(cache_dir)
        if not cdir.is_dir():
            raise InputError("cache folder does not exist", cdir)
    else:
        from .cache import locate_for_record

        cdir = locate_for_record(m, run_dir)
    stages, texts = _stages(m, row, cdir, len(key_frames), notes)
    gt = benchmark.ground_truth(expr) if benchmark.has_ground_truth else None
    label = str(m.get("name") or run_dir.name)
    return _Sources(f"{label}: {video} / {exp_id}", expr.text, key_frames,
                    {f: info.frame_path(f) for f in key_frames}, stages, row, texts,
                    _mask_dirs(run_dir, m, video, exp_id), gt, notes)


def load_expression_view(run_dir: str | Path, video: str, exp_id: str, *, frames: str | Sequence[int] | None = None,
                         cache_dir: str | Path | None = None, root: str | Path | None = None,
                         record: Any = None, benchmark: Any = None, max_rows: int = 4,
                         trust_pickle: bool = False) -> ExpressionView:
    """Frames, stage maps and masks of one expression of a run record, for the chosen key frames.

    ``frames``: indices into the key frames ("0,5,10" or a list; default ``max_rows`` spread
    evenly). Maps come from the attention cache (``cache_dir``, else where the manifest says:
    :func:`decafbench.cache.locate_for_record`) through the record's fusion variant; masks from this record's
    ``predictions/`` (or an evaluate record's prediction folder), from sibling records of
    the same variant in the same parent folder (the coarse / SAM2 pair ``decaf run`` writes),
    and the benchmark's ground truth. Missing pieces become notes and "n/a" panels; a
    missing record, expression or video is an InputError.
    """
    src = expression_sources(Path(run_dir), str(video), str(exp_id), cache_dir=cache_dir, root=root,
                             record=record, benchmark=benchmark, trust_pickle=trust_pickle)
    text = frames if frames is None or isinstance(frames, str) else ",".join(str(int(i)) for i in frames)
    rows = parse_rows(text, len(src.key_frames), max_rows)
    names = [src.key_frames[r] for r in rows]
    images = src.load_frames(names)
    stages = {k: v[rows] for k, v in src.stages.items()}
    masks = src.load_masks(names, rows, images)
    return ExpressionView(str(video), str(exp_id), src.expression, names, images, stages, masks,
                          caption=src.caption(), title=src.title, rows=rows, notes=src.notes)


def fmt_score(value: Any, digits: int = 3, scale: float = 1.0) -> str:
    """``scale * value`` for captions (``0.612``), or ``n/a`` when missing or not finite."""
    try:
        v = float(value) * scale
    except (TypeError, ValueError):
        return "n/a"
    return f"{v:.{digits}f}" if math.isfinite(v) else "n/a"
