"""Coarse masks: Otsu must match OpenCV's THRESH_OTSU (the DecAF reference's call) exactly."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from decafbench.coarse import coarse_masks, otsu_from_histogram, otsu_threshold
from decafbench.errors import InputError
from decafbench.reference.fusion import otsu_threshold as otsu_brute

cv2 = pytest.importorskip("cv2")


def samples(seed: int, n: int = 400):
    """Random uint8 images of many shapes and histograms, edge cases first."""
    rng = np.random.default_rng(seed)
    yield np.array([[0, 255]], dtype=np.uint8)
    yield np.array([[7]], dtype=np.uint8)
    yield np.zeros((5, 5), np.uint8)
    yield np.full((4, 9), 255, np.uint8)
    yield np.array([[0, 0, 0, 1]], dtype=np.uint8)
    yield np.array([[10, 10, 200, 200]], dtype=np.uint8)  # symmetric: a tie-breaking case
    yield np.tile(np.arange(256, dtype=np.uint8), (3, 1))
    for k in range(n):
        shape = (int(rng.integers(1, 60)), int(rng.integers(1, 80)))
        kind = k % 5
        if kind == 0:
            v = rng.integers(0, 256, shape)
        elif kind == 1:
            v = rng.integers(0, int(rng.integers(2, 6)), shape) * int(rng.integers(1, 50))
        elif kind == 2:
            v = rng.normal(rng.uniform(0, 255), rng.uniform(1, 60), shape)
        elif kind == 3:
            v = rng.choice([0, 255, int(rng.integers(0, 256))], shape)
        else:
            v = np.where(rng.random(shape) < 0.3, rng.normal(190, 15, shape), rng.normal(60, 10, shape))
        yield np.clip(v, 0, 255).astype(np.uint8)


def test_otsu_matches_cv2():
    for img in samples(0):
        thresh, _ = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        assert otsu_threshold(img) == int(thresh), img


def exact_between_class_variance(img: np.ndarray, t: int) -> Fraction:
    v = img.ravel().astype(np.int64)
    lo, hi = v[v <= t], v[v > t]
    if lo.size == 0 or hi.size == 0:
        return Fraction(0)
    diff = Fraction(int(lo.sum()), lo.size) - Fraction(int(hi.sum()), hi.size)
    return Fraction(lo.size * hi.size, v.size**2) * diff * diff


def test_otsu_maximizes_between_class_variance():
    # from the definition, in exact arithmetic: the chosen split is a maximizer (exact ties may
    # go either way in floating point, as they do in OpenCV), and the brute force agrees
    for img in samples(1, n=60):
        best = max(exact_between_class_variance(img, t) for t in range(256))
        assert exact_between_class_variance(img, otsu_threshold(img)) == best
        assert exact_between_class_variance(img, otsu_brute(img)) == best


def test_otsu_input_checks():
    with pytest.raises(InputError, match="uint8"):
        otsu_threshold(np.zeros((3, 3), np.float32))
    with pytest.raises(InputError):
        otsu_threshold(np.zeros((0,), np.uint8))
    with pytest.raises(InputError, match="256"):
        otsu_from_histogram([1, 2, 3])
    assert otsu_from_histogram(np.zeros(256)) == 0


def cv2_pipeline(fused: torch.Tensor, size) -> np.ndarray:
    """The DecAF reference's get_mask_preds_directly_from_attn, verbatim in spirit."""
    up = F.interpolate(fused[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    u8 = (up * 255).numpy().astype(np.uint8)
    return np.stack([cv2.threshold(f, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1] > 0 for f in u8])


@pytest.mark.parametrize("seed, grid, size", [(0, (20, 20), (48, 64)), (1, (9, 13), (37, 50)), (2, (8, 8), (8, 8))])
def test_coarse_masks_match_reference_pipeline(seed, grid, size):
    g = torch.Generator().manual_seed(seed)
    fused = torch.rand(6, *grid, generator=g) ** 3
    fused = (fused - fused.min()) / (fused.max() - fused.min())
    got = coarse_masks(fused, size)
    assert got.dtype == bool and got.shape == (6, *size)
    assert np.array_equal(got, cv2_pipeline(fused, size))
    assert np.array_equal(coarse_masks(fused.numpy(), size), got)  # numpy input too


def test_constant_maps_give_empty_masks():
    maps = torch.stack([torch.zeros(5, 5), torch.ones(5, 5), torch.full((5, 5), 0.4), torch.rand(5, 5)])
    got = coarse_masks(maps, (10, 10))
    assert not got[:3].any()
    assert got[3].any()
    # cv2 would fill the constant 1.0 frame: the deliberate departure
    assert cv2_pipeline(maps[1:2], (10, 10)).all()


def test_values_outside_unit_range_are_clipped():
    x = torch.rand(2, 6, 6)
    assert np.array_equal(coarse_masks(x * 3 - 1, (12, 12)), coarse_masks((x * 3 - 1).clamp(0, 1), (12, 12)))


def test_coarse_input_checks():
    with pytest.raises(InputError, match="size"):
        coarse_masks(torch.rand(2, 4, 4), (0, 5))
    with pytest.raises(InputError, match="size"):
        coarse_masks(torch.rand(2, 4, 4), (5,))
    with pytest.raises(InputError, match=r"\(T, h, w\)"):
        coarse_masks(torch.rand(4, 4), (5, 5))
