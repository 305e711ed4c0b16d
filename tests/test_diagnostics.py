"""Attention diagnostics against obvious per-pixel loops and hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from decafbench import fusion
from decafbench.diagnostics import attention_mass, diagnose, otsu_iou, pointing_hit
from decafbench.errors import InputError
from decafbench.reference import fusion as ref_fusion
from decafbench.reference.fusion import otsu_threshold as ref_otsu
from decafbench.reference.fusion import resize_bilinear


def ref_hit(maps: np.ndarray, gt: np.ndarray) -> float:
    t_, h, w = maps.shape
    height, width = gt.shape[1:]
    hits = []
    for t in range(t_):
        if not gt[t].any():
            continue
        best, bi, bj = -np.inf, 0, 0
        for i in range(h):
            for j in range(w):
                if maps[t, i, j] > best:
                    best, bi, bj = maps[t, i, j], i, j
        y = min(int((bi + 0.5) * height / h), height - 1)
        x = min(int((bj + 0.5) * width / w), width - 1)
        hits.append(bool(gt[t, y, x]))
    return float(np.mean(hits)) if hits else math.nan


def ref_mass(maps: np.ndarray, gt: np.ndarray) -> float:
    shares = []
    for t in range(maps.shape[0]):
        if not gt[t].any():
            continue
        up = resize_bilinear(np.maximum(maps[t].astype(np.float64), 0), *gt.shape[1:])
        total = up.sum()
        shares.append(up[gt[t]].sum() / total if total > 0 else 0.0)
    return float(np.mean(shares)) if shares else math.nan


def ref_iou(maps: np.ndarray, gt: np.ndarray) -> float:
    """Written from the definitions, sharing no code with decafbench.coarse / diagnostics:
    min-max over the video, bilinear (align_corners=False) to the frame size, x255 truncated to
    uint8, brute-force Otsu (foreground = value > threshold; a constant frame stays empty, the
    documented departure from OpenCV), then the per-frame IoU (both empty: 1)."""
    x = ref_fusion.minmax(maps.astype(np.float64), "video").astype(np.float32)
    height, width = gt.shape[1:]
    ious = []
    for t in range(x.shape[0]):
        up = resize_bilinear(x[t].astype(np.float64), height, width).astype(np.float32)
        u8 = (np.clip(up, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
        pred = np.zeros((height, width), dtype=bool)
        if len(np.unique(u8)) > 1:
            pred = u8 > ref_otsu(u8)
        inter, union = 0, 0
        for i in range(height):
            for j in range(width):
                inter += bool(pred[i, j] and gt[t, i, j])
                union += bool(pred[i, j] or gt[t, i, j])
        ious.append(1.0 if union == 0 else inter / union)
    return float(np.mean(ious))


def random_case(seed: int, t: int = 5, grid=(6, 7), size=(23, 30)):
    rng = np.random.default_rng(seed)
    maps = rng.random((t, *grid)).astype(np.float32) * 1e-3
    gt = np.zeros((t, *size), dtype=bool)
    for k in range(t):
        y0, x0 = rng.integers(0, size[0] - 5), rng.integers(0, size[1] - 5)
        gt[k, y0:y0 + int(rng.integers(3, 12)), x0:x0 + int(rng.integers(3, 15))] = True
    gt[0] = False  # one frame without a target
    return maps, gt


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_loops(seed):
    maps, gt = random_case(seed)
    assert pointing_hit(maps, gt) == ref_hit(maps, gt)
    assert attention_mass(maps, gt) == pytest.approx(ref_mass(maps, gt), abs=1e-9)
    assert otsu_iou(maps, gt) == pytest.approx(ref_iou(maps, gt), abs=1e-12)


def test_hand_made_perfect_and_wrong_maps():
    gt = np.zeros((2, 8, 8), dtype=bool)
    gt[:, :4, :4] = True  # top-left quadrant
    good = torch.zeros(2, 2, 2)
    good[:, 0, 0] = 1.0
    bad = torch.zeros(2, 2, 2)
    bad[:, 1, 1] = 1.0
    d = diagnose({"good": good, "bad": bad, "skipped": None}, gt)
    assert set(d) == {f"diag_{s}_{m}" for s in ("good", "bad") for m in ("iou", "hit", "mass")}
    assert d["diag_good_hit"] == 1.0 and d["diag_bad_hit"] == 0.0
    assert d["diag_good_mass"] > 0.5 > d["diag_bad_mass"]
    assert d["diag_good_iou"] > d["diag_bad_iou"]
    # same grid as the frame: Otsu mask of a binary map is the map itself
    assert otsu_iou(torch.tensor(gt, dtype=torch.float32), gt) == 1.0
    assert attention_mass(torch.tensor(gt, dtype=torch.float32), gt) == 1.0


def test_empty_targets_and_zero_maps():
    gt = np.zeros((3, 4, 4), dtype=bool)
    maps = torch.rand(3, 2, 2)
    assert math.isnan(pointing_hit(maps, gt)) and math.isnan(attention_mass(maps, gt))
    gt[1, 0, 0] = True
    assert attention_mass(torch.zeros(3, 2, 2), gt) == 0.0
    assert otsu_iou(torch.zeros(3, 2, 2), np.zeros((3, 4, 4), dtype=bool)) == 1.0  # empty vs empty


def test_diagnose_on_fusion_stages():
    rng = np.random.default_rng(0)
    m = [torch.tensor(rng.random(s), dtype=torch.float32) for s in ((8, 5, 5), (8, 5, 5), (16, 10, 10), (16, 10, 10))]
    gt = np.zeros((16, 40, 40), dtype=bool)
    gt[:, 10:25, 5:20] = True
    d = diagnose(fusion.stages(*m), torch.tensor(gt))
    assert len(d) == 3 * len(fusion.STAGE_NAMES)
    for key, value in d.items():
        assert key.startswith("diag_") and 0.0 <= value <= 1.0, key


def test_shape_errors():
    with pytest.raises(InputError, match="frames"):
        diagnose({"fused": torch.rand(4, 3, 3)}, np.zeros((5, 6, 6), dtype=bool))
    with pytest.raises(InputError, match="fused"):
        diagnose({"fused": torch.rand(3, 3)}, np.zeros((5, 6, 6), dtype=bool))
    with pytest.raises(InputError, match="ground truth"):
        diagnose({"fused": torch.rand(4, 3, 3)}, np.zeros((6, 6), dtype=bool))
