"""Slow, obvious reference of attention-guided SAM2 prompting (method section 7).

Pure parts are numpy float64 loops straight from the definitions: every grid cell visited
for candidate points, pixel-counting IoU per mask pair, greedy NMS one pair at a time, the
adaptive average pool written out from its bin formula. :func:`segment_reference` drives
SAM2 the way the published code does: one ``add_new_points_or_box`` per point, SAM2's own
one-frame feature cache (so frames are re-encoded for every propagation), official
``add_new_mask`` / ``propagate_in_video``. The fast :mod:`decafbench.sam2_prompting` must agree.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..sam2_model import quiet_progress
from ..sam2_prompting import Sam2Config, Sam2Result, TrackletInfo


def candidate_points(fused: np.ndarray, threshold: float) -> list[list[tuple[int, int, float, float, float]]]:
    """Per key frame, ``(i, j, x, y, score)`` for each cell with F >= threshold, row-major."""
    fused = np.asarray(fused, dtype=np.float64)
    t_n, h, w = fused.shape
    out = []
    for t in range(t_n):
        frame = []
        for i in range(h):
            for j in range(w):
                if fused[t, i, j] >= threshold:
                    frame.append((i, j, (j + 0.5) / w, (i + 0.5) / h, float(fused[t, i, j])))
        out.append(frame)
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """|a and b| / |a or b| by counting pixels; 0 when both are empty."""
    union = int(np.logical_or(a, b).sum())
    return 0.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def greedy_nms(masks: np.ndarray, scores: Sequence[float], iou_threshold: float,
               prev_masks: np.ndarray | None = None, prev_scores: Sequence[float] | None = None,
               ) -> tuple[list[int], list[int]]:
    """The published NMS, literally: returns (kept indices, replaced earlier tracklets)."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: (-scores[i], i))  # stable: ties keep the earlier
    suppressed = [False] * n
    keep: list[int] = []
    replaced: list[int] = []
    for a in range(n):
        if suppressed[a]:
            continue
        i = order[a]
        keep.append(i)
        for b in range(a + 1, n):
            if not suppressed[b] and mask_iou(masks[i], masks[order[b]]) > iou_threshold:
                suppressed[b] = True
        for k in range(0 if prev_masks is None else len(prev_masks)):
            if mask_iou(masks[i], prev_masks[k]) > iou_threshold:
                if scores[i] > prev_scores[k]:
                    replaced.append(k)
                else:
                    keep.pop()
                    break
    return keep, sorted(set(replaced))


def adaptive_avg_pool(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Average over bins [floor(i*H/h), ceil((i+1)*H/h)) x [floor(j*W/w), ceil((j+1)*W/w))."""
    in_h, in_w = x.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        r0, r1 = (i * in_h) // out_h, -((-(i + 1) * in_h) // out_h)
        for j in range(out_w):
            c0, c1 = (j * in_w) // out_w, -((-(j + 1) * in_w) // out_w)
            out[i, j] = x[r0:r1, c0:c1].astype(np.float64).mean()
    return out


def attention_consistency(fused: np.ndarray, tracklets: Sequence[np.ndarray], threshold: str | float = "mean",
                          outside_penalty: bool = True) -> np.ndarray:
    """AC = sum over frames and cells of pooled tracklet * grid score, / sum of F inside."""
    fused = np.asarray(fused, dtype=np.float64)
    t_n, h, w = fused.shape
    grid = np.zeros_like(fused)
    denom = 0.0
    for t in range(t_n):
        thr = fused[t].mean() if threshold == "mean" else float(threshold)
        inside = fused[t] > thr
        max_inside = fused[t][inside].max() if inside.any() else 0.0
        for i in range(h):
            for j in range(w):
                if inside[i, j]:
                    grid[t, i, j] = fused[t, i, j]
                    denom += fused[t, i, j]
                else:
                    grid[t, i, j] = -max_inside if outside_penalty else 0.0
    scores = []
    for track in tracklets:
        total = sum(float((adaptive_avg_pool(track[t], h, w) * grid[t]).sum()) for t in range(t_n))
        scores.append(total / denom if denom > 0 else 0.0)
    scores_arr = np.array(scores, dtype=np.float64)
    best = max([s for s in scores if s > 0], default=None)
    if best is not None:
        scores_arr = np.array([s / best if s > 0 else s for s in scores])
    return scores_arr


def select_tracklets(final: Sequence[float], threshold: float) -> list[int]:
    final = [float(s) for s in final]
    keep = [i for i, s in enumerate(final) if s > threshold]
    return keep if keep or not final else [final.index(max(final))]


def segment_reference(predictor, frames: Sequence[np.ndarray], key_indices: Sequence[int],
                      fused: torch.Tensor, config: Sam2Config = Sam2Config()) -> Sam2Result:
    """Section 7 the published way (official per-point API, stock one-frame feature cache)."""
    key_indices = [int(k) for k in key_indices]
    f = np.asarray(fused.detach().cpu().double())
    session = predictor.open_session(frames, key_indices, cache_features=False)
    n_frames, height, width = session.num_frames, session.height, session.width
    thr = config.mask_logit_threshold
    cands = candidate_points(f, config.point_threshold)
    stats = {"points": sum(len(c) for c in cands), "no_candidates": False}
    if stats["points"] == 0:
        stats["no_candidates"] = True
        empty = np.zeros((n_frames, height, width), dtype=bool)
        return Sam2Result(empty, empty[key_indices], [], stats)
    key_state = predictor.video_state(session, key_indices)
    tracks: list[dict] = []
    for t, cand in enumerate(cands):
        if not cand:
            continue
        predictor.reset_state(key_state)
        ious = []
        for p, (_, _, x, y, _) in enumerate(cand):
            _, _, video_masks = predictor.add_new_points_or_box(
                key_state, t, 100 + p, points=[[x, y]], labels=[1], normalize_coords=False)
            ious.append(float(predictor.last_pred_iou[0]))
        masks = (video_masks[:, 0] > thr).cpu().numpy()
        scores = [iou + c[4] for iou, c in zip(ious, cand)]
        prev = np.stack([tr["masks"][t] for tr in tracks]) if tracks else None
        keep, replaced = greedy_nms(masks, scores, config.nms_iou, prev, [tr["score"] for tr in tracks])
        if not keep:
            continue
        tracks = [tr for k, tr in enumerate(tracks) if k not in replaced]
        predictor.reset_state(key_state)
        for obj, idx in enumerate(keep):
            predictor.add_new_mask(key_state, t, obj, torch.from_numpy(masks[idx]))
        out = np.zeros((len(keep), len(key_indices), height, width), dtype=bool)
        for reverse in (False, True):
            with quiet_progress():
                steps = list(predictor.propagate_in_video(key_state, start_frame_idx=t, reverse=reverse))
            for frame_idx, _, logits in steps:
                out[:, frame_idx] = (logits[:, 0] > thr).cpu().numpy()
        for obj, idx in enumerate(keep):
            tracks.append({"masks": out[obj], "iou": ious[idx], "attn": cand[idx][4], "score": scores[idx], "t": t})
    ac = attention_consistency(f, [tr["masks"] for tr in tracks], config.ac_threshold, config.ac_outside_penalty)
    final = [(tr["score"] + a) / 3.0 if config.use_ac else tr["score"] / 2.0 for tr, a in zip(tracks, ac)]
    kept = select_tracklets(final, config.final_score_threshold)
    infos = [TrackletInfo(tr["t"], key_indices[tr["t"]], tr["iou"], tr["attn"], tr["score"], float(a), float(s),
                          i in kept) for i, (tr, a, s) in enumerate(zip(tracks, ac, final))]
    full_state = predictor.video_state(session, range(n_frames))
    result = np.zeros((n_frames, height, width), dtype=bool)
    for t in sorted({tracks[i]["t"] for i in kept}):
        predictor.reset_state(full_state)
        for obj, i in enumerate(i for i in kept if tracks[i]["t"] == t):
            predictor.add_new_mask(full_state, key_indices[t], obj, torch.from_numpy(tracks[i]["masks"][t]))
        for reverse in (False, True):
            with quiet_progress():
                steps = list(predictor.propagate_in_video(full_state, start_frame_idx=key_indices[t], reverse=reverse))
            for frame_idx, _, logits in steps:
                result[frame_idx] |= (logits[:, 0] > thr).any(dim=0).cpu().numpy()
    stats.update(tracklets=len(tracks), tracklets_kept=len(kept),
                 encoder_passes=session.counters.encoder_passes)
    return Sam2Result(result, result[key_indices], infos, stats)


