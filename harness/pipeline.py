"""DecAF end to end, the work side: a :class:`Worker` turns (video, expression) jobs into rows.

Data flows one way: benchmark -> jobs -> adapter maps (cached) -> fusion -> masks -> scores.
A :class:`Worker` is built from a :class:`~decafbench.config.RunConfig` without effects,
``load()`` loads the adapter, SAM2 and the attention cache once, and ``process(job)`` returns
one row per pending run record of that expression (a failure is an error row, never an
exception). For each job the MLLM runs once (or not at all on a cache hit); every fusion
variant and mask kind then reads the same maps. Planning, resuming and writing records is
the driver's part (:mod:`decafbench.driver`); an executor (local, or a Ray actor wrapping
``Worker``) only moves jobs and rows between the two.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import MASK_KINDS, MaskSpec, RunConfig, VariantSpec  # noqa: F401 - re-exported
from .errors import InputError
from .keyframes import key_frame_indices  # noqa: F401 - re-exported (one definition, shared with show/evaluate)


@dataclass(frozen=True)
class RecordSpec:
    """One run record of a run: a (variant, mask kind) pair and its folder name (a shell-safe
    slug of the labels, :func:`decafbench.naming.record_folder_names`; the manifest keeps the
    full labels)."""

    name: str
    variant: VariantSpec
    mask: MaskSpec
    params: dict


def plan_records(config: RunConfig) -> list[RecordSpec]:
    """The run's records in order (a pure function of the config, so every worker agrees)."""
    from . import fusion

    from .naming import record_folder_names

    pairs = [(v, fusion.validate(v.name, dict(v.params)), m) for v in config.variants for m in config.masks]
    names = record_folder_names([(v.label, m.label) for v, _, m in pairs])  # shell-safe slugs
    return [RecordSpec(name, v, m, params) for name, (v, params, m) in zip(names, pairs)]


@dataclass(frozen=True)
class Job:
    """One (video, expression) to process for the named records (those not finished yet)."""

    expression: Any  # decafbench.benchmarks.base.Expression
    records: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.expression.video, self.expression.exp_id)


def job_seed(seed: int, video: str, exp_id: str) -> int:
    """A job's own seed: results never depend on which process ran it, or in which order."""
    digest = hashlib.sha256(f"{seed}\0{video}\0{exp_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class Worker:
    """Owns the loaded models of a run. ``Worker(config)`` has no effects; ``load()`` loads
    the benchmark reader, adapter, SAM2 and attention cache once; ``process(job)`` returns
    ``[(record name, row), ...]``. Picklable before ``load()`` (a Ray actor builds one)."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.records = {r.name: r for r in plan_records(config)}
        self.adapter: Any = None
        self.sam2: Any = None
        self.cache: Any = None
        self.benchmark: Any = None
        self.prompts: Any = None
        self._frames: tuple[str, list] | None = None  # the last video's frames (jobs come grouped)

    def load(self) -> "Worker":
        import torch

        from decafbench.adapters.base import AdapterOptions
        from decafbench.adapters.registry import create_adapter
        from decafbench.benchmarks.registry import get_benchmark

        from .cache import AttentionCache
        from .prompts import get_prompts
        from .rollout import RolloutRangeError

        c = self.config
        self.benchmark = get_benchmark(c.benchmark, root=c.root, split=c.split)
        self.prompts = get_prompts(c.prompt_version)
        options = AdapterOptions(dtype=c.effective_dtype, device=c.device, rollout=c.rollout, reuse=c.reuse,
                                 prefix_reuse=c.effective_prefix_reuse, model_args=dict(c.model_args))
        with torch.random.fork_rng(devices=[]):  # random (tiny) weights from the run's seed, globals untouched
            torch.manual_seed(c.seed)
            try:
                self.adapter = create_adapter(c.model, options)
            except RolloutRangeError as exc:
                raise c.fail("rollout_start", str(exc)) from None
            if any(m.kind == "sam2" for m in c.masks):
                from .sam2_model import load_sam2

                self.sam2 = load_sam2(c.sam2, device=c.device)
        self.cache = AttentionCache(c.cache_dir)
        return self

    def spec(self):
        """The loaded adapter's :class:`~decafbench.adapters.base.AdapterSpec` (for manifests)."""
        return self.adapter.spec()

    def process(self, job: Job) -> list[tuple[str, dict]]:
        """Rows of one job for each of its records; a failure becomes an error row for each."""
        import torch

        if self.adapter is None:
            raise RuntimeError("Worker.process() before load()")
        e = job.expression
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(job_seed(self.config.seed, e.video, e.exp_id))
                return self._process(job)
        except Exception as exc:  # noqa: BLE001 - recorded per expression, the run goes on
            message = " ".join(f"{type(exc).__name__}: {exc}".split())
            row = {"video": e.video, "exp_id": e.exp_id, "split": e.split, "error": message,
                   **self._empty_mask_scores(e)}
            return [(name, dict(row)) for name in job.records]

    def _empty_mask_scores(self, expression) -> dict:
        """A failed expression's scores as an empty mask over all its frames (what a benchmark
        server gives a missing prediction), so ``--failures zero`` counts it exactly; nothing
        when there is no ground truth or it cannot be read (statistics then use the metric
        registry's empty-mask value)."""
        from .evaluate import score_expression
        from .metric_registry import names

        if self.benchmark is None or not self.benchmark.has_ground_truth:
            return {}
        try:
            gt = self.benchmark.ground_truth(expression)
            row = score_expression(self.benchmark, expression, np.zeros_like(gt.masks, dtype=bool), gt)
        except Exception:  # noqa: BLE001 - the expression already failed; its error says why
            return {}
        return {k: v for k, v in row.items() if k in names()}

    def process_group(self, jobs: Sequence[Job]) -> list[tuple[str, dict]]:
        """Several jobs (typically one video's expressions: its frames load once)."""
        return [item for job in jobs for item in self.process(job)]

    # -- one expression -----------------------------------------------------------------------
    def _maps(self, expression, video) -> tuple[Any, list[int], list]:
        from decafbench.adapters.common import prefix_reuse_default

        from .cache import cache_key, file_digest
        from .prompts import normalize_expression, prompt_key

        c = self.config
        key_idx = key_frame_indices(len(video.frames), c.num_frames)
        key_paths = [video.frame_path(video.frames[i]) for i in key_idx]
        for p in key_paths:
            if not p.is_file():
                raise InputError("missing frame", p)
        text = normalize_expression(expression.text)
        spec = self.adapter.spec()
        fields = {"adapter": spec.family, "checkpoint": spec.checkpoint, "adapter_config": spec.config,
                  "prompts": self.prompts.to_dict(), "prompt_revision": prompt_key(c.prompt_version),
                  "frames": file_digest(key_paths), "key_frames": key_idx, "expression": text,
                  "max_new_tokens": c.max_new_tokens,
                  # every model argument may change the model (a tiny model's seed, a token budget
                  # an adapter's spec does not list): part of the key, so maps are never shared
                  "model_args": json.loads(json.dumps(dict(c.model_args), sort_keys=True, default=str))}
        if c.effective_prefix_reuse and getattr(type(self.adapter), "supports_prefix_reuse", False) \
                and not prefix_reuse_default(c.effective_dtype):
            # shared-prefix reuse keeps outputs in float32/64 (same key there) but not in half
            # precision, where it is opt-in: maps made with it are kept apart
            fields["prefix_reuse"] = f"inexact in {c.effective_dtype}"
        key = cache_key(fields)
        maps = self.cache.get(key)
        if maps is None:
            maps = extract_maps(self.adapter, load_frames(key_paths), text, self.prompts, c.max_new_tokens)
            self.cache.put(key, maps, fields)
            maps.stats["cache_hit"] = 0
        else:
            maps.stats = {**maps.stats, "cache_hit": 1, "seconds": 0.0}
        maps.stats["cache_key"] = key
        return maps, key_idx, key_paths

    def _all_frames(self, video) -> list:
        if self._frames is None or self._frames[0] != video.name:
            self._frames = (video.name, load_frames(video.frame_paths))
        return self._frames[1]

    def _process(self, job: Job) -> list[tuple[str, dict]]:
        from . import fusion
        from .coarse import coarse_masks
        from .diagnostics import diagnose
        from .evaluate import score_expression
        from .safepath import safe_join

        expression = job.expression
        video = self.benchmark.video(expression.video)
        maps, key_idx, key_paths = self._maps(expression, video)
        key_names = [video.frames[i] for i in key_idx]
        gt = self.benchmark.ground_truth(expression) if self.benchmark.has_ground_truth else None
        base = {"video": expression.video, "exp_id": expression.exp_id, "split": expression.split, "error": "",
                "obj_name": maps.texts.get("obj_name", ""), "cache_key": maps.stats["cache_key"],
                "key_frames": " ".join(key_names), "cache_hit": maps.stats.get("cache_hit", 0),
                "time_mllm": maps.stats.get("seconds", 0.0), "vision_passes": maps.stats.get("vision_passes", 0),
                "prefill_tokens": maps.stats.get("prefill_tokens", 0)}
        stages_by_variant: dict[str, Any] = {}
        diag_by_variant: dict[str, dict] = {}
        rows = []
        for rec in (self.records[name] for name in job.records):
            t0 = time.perf_counter()
            label = rec.variant.label
            if label not in stages_by_variant:
                stages_by_variant[label] = fusion.stages(
                    rec.variant.name, maps.obj_video, maps.bg_video, maps.obj_frame, maps.bg_frame,
                    temporal_stride=maps.temporal_stride, **rec.params)
            stages = stages_by_variant[label]
            t1 = time.perf_counter()
            if rec.mask.kind == "keypoints":
                rows.append((rec.name, self._keypoints(rec, base, expression, video, key_idx, stages, gt, t0, t1)))
                continue
            if rec.mask.kind == "coarse":
                masks, frames = coarse_masks(stages["fused"], _frame_size(key_paths[0])), key_names
                extra: dict[str, Any] = {}
            else:
                result = self._segment(self._all_frames(video), key_idx, stages["fused"], rec.mask)
                masks, frames = result.masks, list(video.frames)
                extra = {f"sam2_{k}": v for k, v in result.stats.items() if isinstance(v, (int, float))}
            t2 = time.perf_counter()
            folder = safe_join(self.config.out / rec.name, "predictions", expression.video, expression.exp_id,
                               what="prediction folder")
            _write_predictions(folder, frames, masks)
            row = {**base, **extra}
            if gt is not None:
                gt_key = subset_ground_truth(gt, key_names)
                target = gt_key if rec.mask.kind == "coarse" else gt
                row.update(score_expression(self.benchmark, expression, _align(masks, frames, target.frames), target))
                if label not in diag_by_variant:  # diagnostics depend on the maps only
                    diag_by_variant[label] = diagnose(stages, gt_key.masks) if gt_key.masks.shape[0] else {}
                row.update(diag_by_variant[label])
            row.update(time_fusion=t1 - t0, time_masks=t2 - t1, time_score=time.perf_counter() - t2)
            rows.append((rec.name, row))
        return rows

    def _keypoints(self, rec, base: dict, expression, video, key_idx, stages, gt, t0: float, t1: float) -> dict:
        """The official keypoint mode: top fused-map cells as points (``keypoints.csv`` in the
        prediction folder) and, with ground truth, point precision PP@k (fractions). A point on
        a frame without annotation is scored as a miss and counted in ``keypoints_unannotated``."""
        from .keypoints import point_precision, top_points
        from .safepath import safe_join

        points = top_points(stages["fused"], key_idx)
        t2 = time.perf_counter()
        folder = safe_join(self.config.out / rec.name, "predictions", expression.video, expression.exp_id,
                           what="prediction folder")
        _write_keypoints(folder, points, video.frames)
        row = dict(base)
        if gt is not None:
            index = {name: i for i, name in enumerate(gt.frames)}
            rows_of = np.array([index.get(video.frames[f], -1) for f in points.frames], dtype=np.int64)
            missing = rows_of < 0
            empty = np.zeros((1, *gt.masks.shape[1:]), dtype=bool)  # unannotated frames: never a hit
            masks = np.concatenate([np.asarray(gt.masks, dtype=bool), empty])
            scored = type(points)(frames=np.where(missing, len(gt.frames), rows_of), y=points.y, x=points.x,
                                  scores=points.scores)
            row.update(point_precision(scored, masks), n_frames=int(gt.masks.shape[0]),
                       keypoints_unannotated=int(missing.sum()))
        row.update(time_fusion=t1 - t0, time_masks=t2 - t1, time_score=time.perf_counter() - t2)
        return row

    def _segment(self, frames, key_idx, fused, mask: MaskSpec):
        from .sam2_prompting import Sam2Config, segment

        arrays = [np.asarray(f) for f in frames]
        cfg = Sam2Config(point_threshold=mask.point_threshold, final_score_threshold=mask.final_score_threshold)
        with warnings.catch_warnings():
            # sam2 built without its CUDA extension skips hole filling and warns on every call;
            # the README says so once
            warnings.filterwarnings("ignore", message="cannot import name '_C' from 'sam2'", category=UserWarning)
            return segment(self.sam2, arrays, key_idx, fused, config=cfg)


def load_frames(paths: Sequence[Path]) -> list:
    """RGB PIL images; a missing or corrupt file is a one-line error naming it."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for p in paths:
        try:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        except FileNotFoundError:
            raise InputError("missing frame", p) from None
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"corrupt image ({exc.__class__.__name__})", p) from None
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise InputError(f"frames of one video differ in size: {sorted(sizes)}", paths[0].parent)
    return images


def extract_maps(adapter, key_frames: list, expression: str, prompts, max_new_tokens: int = 128):
    """The four prompts in two views (method section 2, official order) -> :class:`MapsRecord`."""
    from .cache import MapsRecord
    from .prompts import run_dialogue

    t0 = time.perf_counter()
    video = adapter.open(key_frames, "video")
    frame = adapter.open(key_frames, "frame")
    d = run_dialogue(adapter, video, frame, expression, prompts, max_new_tokens)
    r = d.results
    counters: dict[str, float] = {}
    for session in (video, frame):
        for k, v in session.counters.items():
            counters[k] = counters.get(k, 0) + v
    counters["seconds"] = time.perf_counter() - t0
    texts = {"object_video": r["object_video"].texts, "object_frame": r["object_frame"].texts, "obj_name": d.object_word,
             "background_video": r["background_video"].texts, "background_frame": r["background_frame"].texts}
    return MapsRecord(r["object_video"].attention, r["background_video"].attention, r["object_frame"].attention,
                      r["background_frame"].attention, temporal_stride=r["object_video"].temporal_stride, texts=texts,
                      stats=counters)


def subset_ground_truth(gt, frames: Sequence[str]):
    """The ground truth restricted to ``frames`` (coarse masks exist for key frames only)."""
    from decafbench.benchmarks.base import GroundTruth

    index = {f: i for i, f in enumerate(gt.frames)}
    keep = [index[f] for f in frames if f in index]
    fg = None if gt.foreground is None else gt.foreground[keep]
    return GroundTruth(tuple(gt.frames[i] for i in keep), gt.masks[keep], fg, gt.meta)


def _frame_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


def _align(masks: np.ndarray, frames: Sequence[str], target_frames: Sequence[str]) -> np.ndarray:
    index = {f: i for i, f in enumerate(frames)}
    missing = [f for f in target_frames if f not in index]
    if missing:
        raise InputError(f"no predicted mask for annotated frame {missing[0]!r}")
    return masks[[index[f] for f in target_frames]]


def _write_keypoints(folder: Path, points, frame_names: Sequence[str]) -> None:
    """``keypoints.csv``: rank, video frame (name and index), relative y/x, fused-map score."""
    import csv
    import io

    from .atomicio import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["rank", "frame", "frame_index", "y", "x", "score"])
    for r in points.to_rows():
        writer.writerow([r["rank"], frame_names[r["frame"]], r["frame"], repr(r["y"]), repr(r["x"]), repr(r["score"])])
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "keypoints.csv", buf.getvalue())


def _write_predictions(folder: Path, frames: Sequence[str], masks: np.ndarray) -> None:
    from .maskio import write_mask_png

    for name, mask in zip(frames, masks):
        write_mask_png(folder / f"{name}.png", mask)
