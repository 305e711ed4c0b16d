"""Attention-guided SAM2 prompting (method section 7): fused attention -> dense video masks.

Split in two: pure functions of tensors (candidate points, mask IoU, greedy NMS, attention
consistency, final selection), each tested against a slow obvious version in
:mod:`decafbench.reference.sam2_prompting`, and :func:`segment`, which drives SAM2 through
:class:`decafbench.sam2_model.DecafSam2Predictor` (one encoder pass per frame per expression).

Where the method page is silent we follow the authors' published code: NMS ties keep the
earlier candidate (row-major cell order), and a candidate that loses to a tracklet from an
earlier key frame is dropped after it has already suppressed its own overlaps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

if TYPE_CHECKING:
    from .sam2_model import DecafSam2Predictor


@dataclass(frozen=True)
class Sam2Config:
    """Every number of section 7; the published defaults (tau_pq = tau_trk = 0.8).

    ``ac_threshold``: ``"mean"`` thresholds each key frame's F at its mean (published) or a
    fixed float. ``ac_outside_penalty``: outside cells score minus the frame's max inside
    value (published) instead of 0. ``use_ac=False`` is the "without AC" ablation; the final
    score is then the mean of the two remaining parts, ``object score / 2`` (our reading).
    ``point_batch_size`` only bounds memory; ``cache_features=False`` re-encodes like stock SAM2.
    """

    point_threshold: float = 0.8
    final_score_threshold: float = 0.8
    nms_iou: float = 0.7
    mask_logit_threshold: float = 0.0
    ac_threshold: Literal["mean"] | float = "mean"
    ac_outside_penalty: bool = True
    use_ac: bool = True
    point_batch_size: int = 64
    cache_features: bool = True
    feature_device: str | None = None

    def __post_init__(self) -> None:
        for name in ("point_threshold", "final_score_threshold", "nms_iou", "mask_logit_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"Sam2Config.{name}: expected a finite number, got {value!r}")
        if not 0.0 <= self.nms_iou <= 1.0:
            raise InputError(f"Sam2Config.nms_iou: expected a value in [0, 1], got {self.nms_iou}")
        if self.ac_threshold != "mean" and not isinstance(self.ac_threshold, (int, float)):
            raise InputError(f"Sam2Config.ac_threshold: expected 'mean' or a number, got {self.ac_threshold!r}")
        if self.point_batch_size < 1:
            raise InputError(f"Sam2Config.point_batch_size: expected >= 1, got {self.point_batch_size}")

    def to_dict(self) -> dict:
        return asdict(self)


# ---- pure parts ----------------------------------------------------------------------------
@dataclass
class Candidates:
    """Candidate points of one key frame: ``cells`` (k, 2) as (i, j), ``points`` (k, 2) as
    relative (x, y) cell centres, ``scores`` (k,) the fused attention at the cell."""

    cells: torch.Tensor
    points: torch.Tensor
    scores: torch.Tensor


def candidate_points(fused: torch.Tensor, threshold: float) -> list[Candidates]:
    """Step 1: every cell with ``F >= threshold`` becomes a positive point, row-major order."""
    _, h, w = fused.shape
    out = []
    for frame in fused:
        cells = torch.nonzero(frame >= threshold)  # row-major (i, j)
        i, j = cells[:, 0].to(torch.float32), cells[:, 1].to(torch.float32)
        points = torch.stack([(j + 0.5) / w, (i + 0.5) / h], dim=1)
        out.append(Candidates(cells=cells, points=points, scores=frame[cells[:, 0], cells[:, 1]].float()))
    return out


def mask_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every mask in ``a`` (n, H, W) with every mask in ``b`` (m, H, W); empty union -> 0.

    Intersections are one float32 matmul of the flattened 0/1 masks (exact below 2**24 pixels).
    """
    fa, fb = a.flatten(1).float(), b.flatten(1).float()
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


@dataclass
class NmsResult:
    """``keep``: kept candidate indices, best score first; ``replaced``: indices of earlier
    tracklets the kept ones replace (sorted)."""

    keep: list[int]
    replaced: list[int] = field(default_factory=list)


def greedy_nms(
    masks: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    prev_masks: torch.Tensor | None = None,
    prev_scores: torch.Tensor | None = None,
) -> NmsResult:
    """Step 2's NMS: greedy by score (stable), suppress IoU > threshold within the frame;
    a survivor overlapping an earlier tracklet (its mask on this frame) replaces it only with a
    strictly higher score, else the survivor is dropped."""
    n = masks.shape[0]
    if n == 0:
        return NmsResult(keep=[])
    order = torch.argsort(scores.detach().cpu().double(), descending=True, stable=True).numpy()
    sc = scores.detach().cpu().double().numpy()
    iou = mask_iou_matrix(masks, masks).cpu().numpy()[np.ix_(order, order)]
    has_prev = prev_masks is not None and prev_masks.shape[0] > 0
    cross = mask_iou_matrix(masks, prev_masks).cpu().numpy() if has_prev else np.zeros((n, 0))
    psc = prev_scores.detach().cpu().double().numpy() if has_prev else np.zeros(0)
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    replaced: set[int] = set()
    for pos, idx in enumerate(order):
        if suppressed[pos]:
            continue
        suppressed[pos + 1:] |= iou[pos, pos + 1:] > iou_threshold
        keep.append(int(idx))
        for k in np.nonzero(cross[idx] > iou_threshold)[0]:
            if sc[idx] > psc[k]:
                replaced.add(int(k))
            else:
                keep.pop()
                break
    return NmsResult(keep=keep, replaced=sorted(replaced))


def attention_consistency(
    fused: torch.Tensor,
    tracklets: Sequence[torch.Tensor],
    threshold: Literal["mean"] | float = "mean",
    outside_penalty: bool = True,
) -> torch.Tensor:
    """Step 3: AC score of each tracklet (T, H, W) against the fused map F (T, h, w).

    Inside = F > threshold (per-frame mean by default); grid score = F inside, minus the
    frame's max inside-value outside; AC = sum(avgpool(tracklet) * grid) / sum(F inside);
    positive scores are divided by the largest positive one. No inside cell at all -> 0.
    """
    if len(tracklets) == 0:
        return torch.zeros(0)
    device = tracklets[0].device
    f = fused.to(device=device, dtype=torch.float32)
    _, h, w = f.shape
    thr = f.mean(dim=(1, 2), keepdim=True) if threshold == "mean" else torch.tensor(float(threshold), device=device)
    inside = f > thr
    inside_f = torch.where(inside, f, torch.zeros_like(f))
    denom = inside_f.sum()
    outside = -inside_f.amax(dim=(1, 2), keepdim=True) if outside_penalty else torch.zeros_like(f[:, :1, :1])
    grid = torch.where(inside, f, outside.expand_as(f))
    scores = []
    for track in tracklets:
        pooled = F.adaptive_avg_pool2d(track.to(torch.float32), (h, w))  # (T, h, w)
        scores.append((pooled * grid).sum())
    ac = torch.stack(scores).double()
    ac = ac / denom.double() if denom > 0 else torch.zeros_like(ac)
    positive = ac > 0
    if positive.any():
        ac[positive] = ac[positive] / ac[positive].max()
    return ac.float().cpu()


def final_scores(object_scores: torch.Tensor, ac: torch.Tensor, use_ac: bool = True) -> torch.Tensor:
    """Step 4: (predicted IoU + point attention + AC) / 3, or (IoU + attention) / 2 without AC."""
    return (object_scores + ac) / 3.0 if use_ac else object_scores / 2.0


def select_tracklets(final: torch.Tensor, threshold: float) -> list[int]:
    """Indices with final score > threshold; if none, the best one (first on ties)."""
    keep = torch.nonzero(final > threshold).flatten().tolist()
    return keep if keep else [int(torch.argmax(final))] if final.numel() else []


# ---- SAM2 part -----------------------------------------------------------------------------
@dataclass
class TrackletInfo:
    """Score parts and source of one key-frame tracklet (masks are not kept in results)."""

    source_key: int  # position t among the key frames
    source_frame: int  # video frame index of the key frame
    iou: float  # SAM2's predicted IoU of the chosen mask
    attention: float  # F at the candidate point
    object_score: float  # iou + attention
    ac: float
    final: float
    kept: bool


@dataclass
class Sam2Result:
    """``masks`` (N, H, W) bool for every frame; ``key_masks`` (T, H, W) = masks at key frames."""

    masks: np.ndarray
    key_masks: np.ndarray
    tracklets: list[TrackletInfo]
    stats: dict


@dataclass
class _Track:
    masks: torch.Tensor  # (T, H, W) bool over the key frames
    iou: float
    attention: float
    source_key: int

    @property
    def object_score(self) -> float:
        return self.iou + self.attention


def check_inputs(frames: Sequence[np.ndarray], key_indices: Sequence[int], fused: torch.Tensor) -> torch.Tensor:
    """One-line InputErrors for the field at fault; returns F as float32 on the CPU."""
    if isinstance(fused, np.ndarray):
        fused = torch.from_numpy(fused)
    if not isinstance(fused, torch.Tensor) or fused.ndim != 3:
        raise InputError(f"fused: expected a (T, h, w) tensor, got {getattr(fused, 'shape', type(fused))}")
    if fused.shape[0] != len(key_indices):
        raise InputError(f"fused: {fused.shape[0]} maps for {len(key_indices)} key_indices")
    if len(key_indices) == 0:
        raise InputError("key_indices: empty")
    if any(b <= a for a, b in zip(key_indices, key_indices[1:])):
        raise InputError(f"key_indices: not strictly increasing: {list(key_indices)}")
    f = fused.detach().to("cpu", torch.float32)
    if not torch.isfinite(f).all():
        raise InputError("fused: contains NaN or inf")
    return f


def segment(
    prompter: "DecafSam2Predictor",
    frames: Sequence[np.ndarray],
    key_indices: Sequence[int],
    fused: torch.Tensor,
    config: Sam2Config = Sam2Config(),
) -> Sam2Result:
    """Section 7, steps 1-5: fused attention F (T, h, w) on key frames -> masks for all frames."""
    key_indices = [int(k) for k in key_indices]
    f = check_inputs(frames, key_indices, fused)
    session = prompter.open_session(frames, key_indices, config.cache_features, config.feature_device)
    n_frames, height, width = session.num_frames, session.height, session.width
    cands = candidate_points(f, config.point_threshold)
    stats: dict = {"points": sum(int(c.scores.numel()) for c in cands),
                   "points_per_key_frame": [int(c.scores.numel()) for c in cands],
                   "no_candidates": False, "tracklets": 0, "tracklets_replaced": 0,
                   "tracklets_kept": 0, "fallback_best": False}
    empty = np.zeros((n_frames, height, width), dtype=bool)
    if stats["points"] == 0:
        stats["no_candidates"] = True
        return Sam2Result(empty, empty[key_indices], [], _with_counters(stats, session))

    # Steps 1-2: point prompts per key frame, NMS, key-frame tracklets.
    key_state = prompter.video_state(session, key_indices)
    tracks: list[_Track] = []
    thr = config.mask_logit_threshold
    for t, cand in enumerate(cands):
        if cand.scores.numel() == 0:
            continue
        masks, ious = prompter.predict_points(key_state, t, cand.points, thr, config.point_batch_size)
        obj = ious.detach().cpu().float() + cand.scores
        prev_masks = torch.stack([tr.masks[t] for tr in tracks]) if tracks else None
        prev_scores = torch.tensor([tr.object_score for tr in tracks]) if tracks else None
        nms = greedy_nms(masks, obj, config.nms_iou, prev_masks, prev_scores)
        if not nms.keep:
            continue
        stats["tracklets_replaced"] += len(nms.replaced)
        tracks = [tr for i, tr in enumerate(tracks) if i not in set(nms.replaced)]
        propagated = prompter.propagate_masks(key_state, t, masks[nms.keep], thr)
        for row, idx in enumerate(nms.keep):
            tracks.append(_Track(propagated[row], float(ious[idx]), float(cand.scores[idx]), t))

    # Steps 3-4: attention consistency, final scores, selection.
    ac = attention_consistency(f, [tr.masks for tr in tracks], config.ac_threshold, config.ac_outside_penalty)
    final = final_scores(torch.tensor([tr.object_score for tr in tracks]), ac, config.use_ac)
    kept = select_tracklets(final, config.final_score_threshold)
    stats.update(tracklets=len(tracks), tracklets_kept=len(kept),
                 fallback_best=bool(tracks) and not bool((final > config.final_score_threshold).any()))
    infos = [TrackletInfo(tr.source_key, key_indices[tr.source_key], tr.iou, tr.attention, tr.object_score,
                          float(ac[i]), float(final[i]), i in kept) for i, tr in enumerate(tracks)]

    # Step 5: kept masks of each source frame as mask prompts on the full video, OR everything.
    full_state = prompter.video_state(session, range(n_frames))
    union = torch.zeros((n_frames, height, width), dtype=torch.bool, device=prompter.device)
    for t in sorted({tracks[i].source_key for i in kept}):
        prompts = torch.stack([tracks[i].masks[t] for i in kept if tracks[i].source_key == t])
        union |= prompter.propagate_masks(full_state, key_indices[t], prompts, thr, reduce="any")
    masks_np = union.cpu().numpy()
    return Sam2Result(masks_np, masks_np[key_indices], infos, _with_counters(stats, session))


def _with_counters(stats: dict, session: object) -> dict:
    stats.update(asdict(session.counters))  # type: ignore[attr-defined]
    return stats
