"""DecAF end to end: benchmark -> jobs -> adapter maps (cached) -> fusion -> masks -> scores.

Data flows one way. For each (video, expression) job the MLLM runs once (or not at all on a
cache hit); every fusion variant and mask kind of the plan then reads those maps, and each
(variant, mask kind) pair is its own run record, scored by the same code as ``decaf
evaluate``. A failure is recorded on the expression's row and the run goes on; finished
expressions are written atomically, so rerunning the same plan resumes.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import InputError
from .rollout import RolloutConfig

MASK_KINDS = ("coarse", "sam2")


@dataclass(frozen=True)
class VariantSpec:
    """A fusion variant with its parameter overrides."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        return self.name + "[" + ",".join(f"{k}={v}" for k, v in self.params) + "]"


@dataclass(frozen=True)
class MaskSpec:
    """How masks are made: ``coarse`` (Otsu on key frames) or ``sam2`` with its thresholds."""

    kind: str
    point_threshold: float = 0.8
    final_score_threshold: float = 0.8

    @property
    def label(self) -> str:
        if self.kind != "sam2" or (self.point_threshold, self.final_score_threshold) == (0.8, 0.8):
            return self.kind
        return f"sam2[pq={self.point_threshold},trk={self.final_score_threshold}]"


@dataclass
class RunPlan:
    """Everything a run needs; the CLI and sweep files build one of these."""

    benchmark: str = "embedded"
    root: Path | None = None
    split: str | None = None
    model: str = "qwen2-vl:tiny"
    dtype: str = "float32"
    device: str = "cpu"
    num_frames: int = 16
    prompt_version: str = "v0"
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    variants: list[VariantSpec] = field(default_factory=lambda: [VariantSpec("decaf")])
    masks: list[MaskSpec] = field(default_factory=lambda: [MaskSpec("coarse"), MaskSpec("sam2")])
    sam2: str = "tiny"
    out: Path = Path("results/embedded")
    cache_dir: Path | None = Path("results/cache")
    seed: int = 0
    max_new_tokens: int = 8
    limit: int | None = None
    reuse: bool = True
    prefix_reuse: bool = True
    trust_pickle: bool = False

    def describe(self) -> dict:
        d = asdict(self)
        d["variants"] = [v.label for v in self.variants]
        d["masks"] = [m.label for m in self.masks]
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def key_frame_indices(num_video_frames: int, num_frames: int) -> list[int]:
    """``linspace(0, n-1, num_frames)`` cast to int; every frame when the video is shorter."""
    if num_video_frames <= 0:
        raise InputError("video has no frames")
    if num_video_frames <= num_frames:
        return list(range(num_video_frames))
    return [int(i) for i in np.linspace(0, num_video_frames - 1, num_frames)]


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


def extract_maps(adapter, key_frames: list, expression: str, prompts, max_new_tokens: int = 8):
    """The four prompts in two views (method section 2) -> :class:`MapsRecord`."""
    from .cache import MapsRecord
    from .prompts import clean_answer

    t0 = time.perf_counter()
    video = adapter.open(key_frames, "video")
    frame = adapter.open(key_frames, "frame")
    obj_prompt = prompts.object_prompt(expression)
    obj_v = adapter.attend(video, obj_prompt, max_new_tokens=max_new_tokens)
    obj_f = adapter.attend(frame, obj_prompt, max_new_tokens=max_new_tokens)
    candidates = [clean_answer(t) for t in obj_v.texts + obj_f.texts]
    obj_name = clean_answer(adapter.answer(prompts.choice_prompt(expression, candidates), max_new_tokens=max_new_tokens))
    obj_name = obj_name or next((c for c in candidates if c), "object")
    bg_prompt = prompts.background_prompt(obj_name)
    bg_v = adapter.attend(video, bg_prompt, max_new_tokens=max_new_tokens)
    bg_f = adapter.attend(frame, bg_prompt, max_new_tokens=max_new_tokens)
    counters: dict[str, float] = {}
    for session in (video, frame):
        for k, v in session.counters.items():
            counters[k] = counters.get(k, 0) + v
    counters["seconds"] = time.perf_counter() - t0
    texts = {"object_video": obj_v.texts, "object_frame": obj_f.texts, "obj_name": obj_name,
             "background_video": bg_v.texts, "background_frame": bg_f.texts}
    return MapsRecord(obj_v.attention, bg_v.attention, obj_f.attention, bg_f.attention,
                      temporal_stride=obj_v.temporal_stride, texts=texts, stats=counters)


def subset_ground_truth(gt, frames: Sequence[str]):
    """The ground truth restricted to ``frames`` (coarse masks exist for key frames only)."""
    from decafbench.benchmarks.base import GroundTruth

    index = {f: i for i, f in enumerate(gt.frames)}
    keep = [index[f] for f in frames if f in index]
    fg = None if gt.foreground is None else gt.foreground[keep]
    return GroundTruth(tuple(gt.frames[i] for i in keep), gt.masks[keep], fg, gt.meta)


@dataclass
class _Output:
    """One (variant, mask kind) run record being written."""

    variant: VariantSpec
    mask: MaskSpec
    writer: Any  # RunWriter
    params: dict


class Runner:
    """Runs a :class:`RunPlan`. Construct (validates everything, loads models), then ``run()``."""

    def __init__(self, plan: RunPlan, command: Sequence[str] | None = None):
        import torch

        from decafbench.adapters.registry import create_adapter
        from decafbench.benchmarks.registry import get_benchmark

        from . import fusion
        from .cache import AttentionCache
        from .prompts import get_prompts
        from .runstore import RunWriter, base_manifest

        self.plan = plan
        torch.manual_seed(plan.seed)
        np.random.seed(plan.seed)
        self.benchmark = get_benchmark(plan.benchmark, root=plan.root, split=plan.split, trust_pickle=plan.trust_pickle)
        self.prompts = get_prompts(plan.prompt_version)
        if not plan.variants:
            raise InputError("no fusion variant given")
        if not plan.masks:
            raise InputError("no mask kind given")
        outputs_params = [fusion.validate(v.name, dict(v.params)) for v in plan.variants]
        for m in plan.masks:
            if m.kind not in MASK_KINDS:
                raise InputError(f"unknown mask kind {m.kind!r} (known: {', '.join(MASK_KINDS)})")
        self.adapter = create_adapter(plan.model, dtype=plan.dtype, device=plan.device, rollout=plan.rollout,
                                      reuse=plan.reuse, prefix_reuse=plan.prefix_reuse)
        self.cache = AttentionCache(plan.cache_dir)
        self.sam2 = None
        if any(m.kind == "sam2" for m in plan.masks):
            from .sam2_model import load_sam2

            self.sam2 = load_sam2(plan.sam2, device=plan.device)
        spec = self.adapter.spec()
        self.outputs: list[_Output] = []
        for v, params in zip(plan.variants, outputs_params):
            for m in plan.masks:
                name = f"{v.label}__{m.label}"
                manifest = base_manifest(
                    "run", command=list(command) if command is not None else None,
                    name=f"{spec.family}:{spec.checkpoint} {v.label} {m.label}",
                    **self.benchmark.describe(), adapter=spec.family, checkpoint=spec.checkpoint,
                    adapter_config=spec.config, variant=v.name, variant_label=v.label, variant_params=params,
                    mask_kind=m.kind, mask_params=asdict(m), prompt_version=plan.prompt_version,
                    seed=plan.seed, metrics=list(self.benchmark.metrics), config=plan.describe(),
                    scored_frames="key" if m.kind == "coarse" else "all")
                writer = RunWriter(plan.out / name, manifest)
                _check_identity(writer.dir, {**manifest["config"], "adapter_config": spec.config,
                                             "variant_params": params, "mask": asdict(m)})
                self.outputs.append(_Output(v, m, writer, params))

    # -- one expression -----------------------------------------------------------------------
    def _maps(self, expression, video) -> tuple[Any, list[int], list]:
        from .cache import cache_key, file_digest
        from .prompts import normalize_expression, prompt_key

        key_idx = key_frame_indices(len(video.frames), self.plan.num_frames)
        key_paths = [video.frame_path(video.frames[i]) for i in key_idx]
        for p in key_paths:
            if not p.is_file():
                raise InputError("missing frame", p)
        text = normalize_expression(expression.text)
        spec = self.adapter.spec()
        fields = {"adapter": spec.family, "checkpoint": spec.checkpoint, "adapter_config": spec.config,
                  "prompts": self.prompts.to_dict(), "prompt_revision": prompt_key(self.plan.prompt_version), "frames": file_digest(key_paths),
                  "key_frames": key_idx, "expression": text, "max_new_tokens": self.plan.max_new_tokens}
        key = cache_key(fields)
        maps = self.cache.get(key)
        if maps is None:
            key_frames = load_frames(key_paths)
            maps = extract_maps(self.adapter, key_frames, text, self.prompts, self.plan.max_new_tokens)
            self.cache.put(key, maps, fields)
            maps.stats["cache_hit"] = 0
        else:
            maps.stats = {**maps.stats, "cache_hit": 1, "seconds": 0.0}
        maps.stats["cache_key"] = key
        return maps, key_idx, key_paths

    def run_expression(self, expression, pending: list[_Output]) -> None:
        from . import fusion
        from .coarse import coarse_masks
        from .diagnostics import diagnose
        from .evaluate import score_expression

        video = self.benchmark.video(expression.video)
        maps, key_idx, key_paths = self._maps(expression, video)
        key_names = [video.frames[i] for i in key_idx]
        gt = self.benchmark.ground_truth(expression) if self.benchmark.has_ground_truth else None
        all_frames = None
        base = {"video": expression.video, "exp_id": expression.exp_id, "split": expression.split, "error": "",
                "obj_name": maps.texts.get("obj_name", ""), "cache_key": maps.stats["cache_key"],
                "key_frames": " ".join(key_names), "cache_hit": maps.stats.get("cache_hit", 0),
                "time_mllm": maps.stats.get("seconds", 0.0), "vision_passes": maps.stats.get("vision_passes", 0),
                "prefill_tokens": maps.stats.get("prefill_tokens", 0)}
        fused_by_variant: dict[str, Any] = {}
        diag_by_variant: dict[str, dict] = {}
        for out in pending:
            t0 = time.perf_counter()
            if out.variant.label not in fused_by_variant:
                stages = fusion.stages(out.variant.name, maps.obj_video, maps.bg_video, maps.obj_frame,
                                       maps.bg_frame, temporal_stride=maps.temporal_stride, **out.params)
                fused_by_variant[out.variant.label] = stages
            stages = fused_by_variant[out.variant.label]
            fused = stages["fused"]
            t1 = time.perf_counter()
            if out.mask.kind == "coarse":
                masks, frames = coarse_masks(fused, _frame_size(key_paths[0])), key_names
                extra: dict[str, Any] = {}
            else:
                if all_frames is None:
                    all_frames = load_frames(video.frame_paths)
                result = self._segment(all_frames, key_idx, fused, out.mask)
                masks, frames = result.masks, list(video.frames)
                extra = {f"sam2_{k}": v for k, v in result.stats.items() if isinstance(v, (int, float))}
            t2 = time.perf_counter()
            _write_predictions(out.writer.dir / "predictions" / expression.video / expression.exp_id, frames, masks)
            row = {**base, **extra}
            if gt is not None:
                gt_key = subset_ground_truth(gt, key_names)
                target = gt_key if out.mask.kind == "coarse" else gt
                pred = _align(masks, frames, target.frames)
                row.update(score_expression(self.benchmark, expression, pred, target))
                if out.variant.label not in diag_by_variant:  # diagnostics depend on the maps only
                    diag_by_variant[out.variant.label] = diagnose(stages, gt_key.masks) if gt_key.masks.shape[0] else {}
                row.update(diag_by_variant[out.variant.label])
            row.update(time_fusion=t1 - t0, time_masks=t2 - t1, time_score=time.perf_counter() - t2)
            out.writer.add(row)

    def _segment(self, frames, key_idx, fused, mask: MaskSpec):
        from .sam2_prompting import Sam2Config, segment

        arrays = [np.asarray(f) for f in frames]
        cfg = Sam2Config(point_threshold=mask.point_threshold, final_score_threshold=mask.final_score_threshold)
        with warnings.catch_warnings():
            # sam2 built without its CUDA extension skips hole filling and warns on every call;
            # the README says so once
            warnings.filterwarnings("ignore", message="cannot import name '_C' from 'sam2'", category=UserWarning)
            return segment(self.sam2, arrays, key_idx, fused, config=cfg)

    # -- the whole plan ------------------------------------------------------------------------------
    def run(self, on_progress: Callable[[int], None] | None = None, on_error: Callable[[str], None] | None = None) -> list[Path]:
        from .evaluate import summarize

        expressions = self.benchmark.expressions()
        if self.plan.limit is not None:
            expressions = expressions[: self.plan.limit]
        done = [out.writer.done() for out in self.outputs]
        for expression in expressions:
            pending = [o for o, d in zip(self.outputs, done) if expression.key not in d]
            if pending:
                try:
                    self.run_expression(expression, pending)
                except Exception as exc:  # noqa: BLE001 - recorded per expression, the run goes on
                    message = " ".join(f"{type(exc).__name__}: {exc}".split())
                    for out in pending:
                        out.writer.add({"video": expression.video, "exp_id": expression.exp_id,
                                        "split": expression.split, "error": message})
                    if on_error:
                        on_error(f"{expression.video}/{expression.exp_id}: {message}")
            if on_progress:
                on_progress(1)
        paths = []
        for out in self.outputs:
            rows = [r for r in out.writer.rows() if (r["video"], r["exp_id"]) in {e.key for e in expressions}]
            out.writer.manifest["cache"] = {"hits": self.cache.hits, "misses": self.cache.misses}
            out.writer.finalize(summary=summarize(rows, self.benchmark.metrics) if self.benchmark.has_ground_truth else None)
            paths.append(out.writer.dir)
        return paths


#: plan fields that may change between a run and its resumption
_RESUMABLE = ("limit", "out", "cache_dir")


def _check_identity(run_dir: Path, identity: dict) -> None:
    """Resume only the same run: a record folder remembers what produced its parts."""
    import json

    from .runstore import atomic_write_json

    identity = {k: v for k, v in identity.items() if k not in _RESUMABLE}
    identity = json.loads(json.dumps(identity, default=str))  # normalise tuples and paths
    path = run_dir / "identity.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise InputError("malformed JSON; delete the folder to start over", path) from None
        changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        if changed:
            raise InputError(f"holds a run with a different {changed[0]!r}; use another --out or delete it "
                             "(a rerun of the same command resumes)", run_dir)
    else:
        atomic_write_json(path, identity)


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


def _write_predictions(folder: Path, frames: Sequence[str], masks: np.ndarray) -> None:
    from .maskio import write_mask_png

    for name, mask in zip(frames, masks):
        write_mask_png(folder / f"{name}.png", mask)
