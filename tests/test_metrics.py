"""decafbench.metrics against slow references written from the definitions and against the
DAVIS toolkit's algorithm (cv2 + skimage), per frame, to 1e-9."""

from __future__ import annotations

import numpy as np
import pytest

from decafbench import metrics as M
from decafbench.errors import InputError
from decafbench.reference import metrics as R

TOL = 1e-9


def blob(h: int, w: int, rng: np.random.Generator, frac: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(float)
    cy, cx = rng.uniform(-0.1, 1.1) * h, rng.uniform(-0.1, 1.1) * w
    ang = np.arctan2(yy - cy, xx - cx)
    rad = np.sqrt(frac * h * w / np.pi) * (1 + 0.3 * np.sin(3 * ang + rng.uniform(0, 6)))
    return (yy - cy) ** 2 + (xx - cx) ** 2 < rad**2


def check(gt: np.ndarray, pred: np.ndarray, bound_th: float = 0.008, toolkit: bool = True) -> None:
    """Fast == definition reference (and == toolkit algorithm) per frame."""
    f = M.boundary_f(gt, pred, bound_th)
    j = M.jaccard(gt, pred)
    jj, ff = M.jaccard_and_f(gt, pred, bound_th)
    np.testing.assert_allclose(f, R.boundary_f_ref(gt, pred, bound_th), rtol=0, atol=TOL)
    np.testing.assert_allclose(j, R.jaccard_ref(gt, pred), rtol=0, atol=TOL)
    np.testing.assert_allclose(ff, f, rtol=0, atol=0)
    np.testing.assert_allclose(jj, j, rtol=0, atol=0)
    if toolkit:
        pytest.importorskip("cv2")
        pytest.importorskip("skimage")
        np.testing.assert_allclose(f, R.toolkit_boundary_f(gt, pred, bound_th), rtol=0, atol=TOL)
        np.testing.assert_allclose(j, R.toolkit_jaccard(gt, pred), rtol=0, atol=TOL)


BOUND_THS = [0.008, 0.05, 0.3, 0, 1, 2, 2.5, 3]


@pytest.mark.parametrize("seed", range(6))
def test_random_masks_all_tolerances(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 70, size=2))
    density = rng.choice([0.01, 0.1, 0.5, 0.9])
    gt = rng.random((3, h, w)) < density
    pred = rng.random((3, h, w)) < density
    for bt in BOUND_THS:
        check(gt, pred, bt)


@pytest.mark.parametrize("seed", range(6))
def test_random_blobs(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    h, w = (int(v) for v in rng.integers(20, 130, size=2))
    gt = np.stack([blob(h, w, rng, rng.uniform(0.02, 0.8)) for _ in range(4)])
    pred = np.stack([blob(h, w, rng, rng.uniform(0.02, 0.8)) for _ in range(4)])
    pred[1] = np.roll(gt[1], 2, axis=1)  # a near miss
    for bt in (0.008, 0.05, 4):
        check(gt, pred, bt)


@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (17, 1), (2, 2), (3, 5), (5, 3), (1, 130),
                                   (130, 1), (64, 64), (65, 63)])
def test_odd_sizes(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    gt = rng.random((4, *shape)) < 0.4
    pred = rng.random((4, *shape)) < 0.4
    gt[0] = True
    pred[1] = False
    for bt in (0.008, 0.3, 2, 2.5):
        check(gt, pred, bt)


@pytest.mark.parametrize("radius", [1, 2, 3, 5, 8])
def test_row_padding_is_tight(radius: int) -> None:
    """Widths where a packed row has exactly the spare columns the disk needs: one less and
    a boundary pixel at the start of row 5 would be read as lying near the end of row 4."""
    rng = np.random.default_rng(radius)
    for w in (64 + 1 - radius, 128 + 1 - radius, 64 - radius):
        gt = rng.random((3, 12, w)) < 0.05
        pred = rng.random((3, 12, w)) < 0.05
        gt[0] = pred[0] = False
        gt[0, 5, 0] = pred[0, 4, w - 1] = True  # far apart: F = 0
        check(gt, pred, radius, toolkit=False)
        assert M.boundary_f(gt[0], pred[0], radius) == 0.0


def test_thin_structures_and_single_pixels() -> None:
    h, w = 40, 70
    frames = np.zeros((8, h, w), dtype=bool)
    frames[0, 10, 5:60] = True  # horizontal line
    frames[1, 3:38, 33] = True  # vertical line
    frames[2][np.arange(35), np.arange(35) + 2] = True  # diagonal
    frames[3, 20, 40] = True  # single pixel
    frames[4, h - 1, w - 1] = True  # single pixel in the bottom-right corner
    frames[5, 0, 0] = True
    frames[6, h - 1, :] = True  # the last row
    frames[7, :, w - 1] = True  # the last column
    shifted = np.roll(frames, 1, axis=2) | np.roll(frames, 1, axis=1)
    for bt in (0.008, 1, 3):
        check(frames, shifted, bt)
        check(frames, frames[::-1], bt)


def test_empty_and_full_masks() -> None:
    h, w = 30, 45
    empty = np.zeros((h, w), bool)
    full = np.ones((h, w), bool)
    some = np.zeros((h, w), bool)
    some[5:12, 7:30] = True
    cases = [(empty, empty), (empty, some), (some, empty), (full, full), (full, some),
             (some, full), (full, empty), (empty, full)]
    gt = np.stack([a for a, _ in cases])
    pred = np.stack([b for _, b in cases])
    check(gt, pred)
    f = M.boundary_f(gt, pred)
    j = M.jaccard(gt, pred)
    assert j[0] == 1.0 and f[0] == 1.0  # both empty
    assert j[1] == 0.0 and f[1] == 0.0 and f[2] == 0.0  # one empty: P or R is 0
    assert j[3] == 1.0 and f[3] == 1.0
    # a full mask has no boundary pixel (replicated border): full vs empty is "both empty"
    assert f[6] == 1.0 and j[6] == 0.0


@pytest.mark.parametrize("side", ["top", "bottom", "left", "right", "corner", "all"])
def test_masks_touching_borders(side: str) -> None:
    """Cropping must not invent or lose boundary pixels at the image border (the toolkit's
    last row / column rules); the object at the border vs one pixel inside."""
    rng = np.random.default_rng(7)
    h, w = 50, 77
    gt = np.zeros((4, h, w), bool)
    sl = {"top": (slice(0, 20), slice(20, 50)), "bottom": (slice(h - 20, h), slice(20, 50)),
          "left": (slice(15, 35), slice(0, 30)), "right": (slice(15, 35), slice(w - 30, w)),
          "corner": (slice(h - 20, h), slice(w - 30, w)), "all": (slice(0, h), slice(0, w))}[side]
    gt[(slice(None), *sl)] = True
    gt[1] &= rng.random((h, w)) < 0.8
    gt[2] = np.roll(gt[0], -1, axis=(0, 1)) if side != "all" else gt[2]
    pred = gt.copy()
    pred[0] = np.roll(gt[0], 1, axis=1)
    pred[3] = ~gt[3]
    for bt in (0.008, 0.1, 2.5):
        check(gt, pred, bt)


def test_large_frame_481x853() -> None:
    rng = np.random.default_rng(3)
    gt = np.stack([blob(481, 853, rng, 0.1), blob(481, 853, rng, 0.5)])
    pred = np.stack([np.roll(gt[0], (3, -2), axis=(0, 1)), blob(481, 853, rng, 0.4)])
    check(gt, pred)


def test_wide_tolerance_crosses_words() -> None:
    """Runs longer than 64 pixels (bound_th in pixels) shift across several words."""
    rng = np.random.default_rng(11)
    gt = np.stack([blob(90, 200, rng, 0.2) for _ in range(2)])
    pred = np.stack([blob(90, 200, rng, 0.2) for _ in range(2)])
    for bt in (40, 70.5):
        check(gt, pred, bt, toolkit=False)


def test_batching_is_per_frame() -> None:
    """Frames of very different extents share one batch; each frame scores as if alone."""
    rng = np.random.default_rng(5)
    gt = np.stack([blob(60, 90, rng, f) for f in (0.01, 0.9, 0.05, 0.3, 0.0)])
    pred = np.stack([blob(60, 90, rng, f) for f in (0.02, 0.8, 0.0, 0.3, 0.1)])
    together = M.boundary_f(gt, pred)
    alone = [M.boundary_f(g, p) for g, p in zip(gt, pred)]
    np.testing.assert_array_equal(together, alone)


def test_chunking_and_non_contiguous_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """One frame per batch gives the same numbers as big batches; strided views work."""
    rng = np.random.default_rng(8)
    gt = np.stack([blob(50, 70, rng, rng.uniform(0.05, 0.6)) for _ in range(9)])
    pred = np.stack([blob(50, 70, rng, rng.uniform(0.05, 0.6)) for _ in range(9)])
    j, f = M.jaccard_and_f(gt, pred)
    monkeypatch.setattr(M, "_CHUNK_WORDS", 1)
    j1, f1 = M.jaccard_and_f(gt, pred)
    np.testing.assert_array_equal(j, j1)
    np.testing.assert_array_equal(f, f1)
    flipped_g, flipped_p = gt[::2, ::-1, ::-1], pred[::2, ::-1, ::-1]
    check(flipped_g, flipped_p, toolkit=False)


def test_hand_computed_values() -> None:
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True
    pred = np.zeros((4, 4), bool)
    pred[1:3, 1:4] = True
    assert M.jaccard(gt, pred) == pytest.approx(1 / 9)
    # one pixel at (5, 5) vs one at (5, 8): boundary 2x2 squares 3 px apart, tolerance 2 px
    g = np.zeros((20, 20), bool)
    g[5, 5] = True
    p = np.zeros((20, 20), bool)
    p[5, 8] = True
    assert M.boundary_f(g, p, bound_th=2) == pytest.approx(0.5)
    assert M.boundary_f(g, p, bound_th=3) == pytest.approx(1.0)
    assert M.boundary_f(g, p, bound_th=1) == pytest.approx(0.0)
    # corner pixel: 3 boundary pixels (the corner itself never is one)
    c = np.zeros((4, 4), bool)
    c[3, 3] = True
    assert R.seg2bmap_ref(c).sum() == 3
    assert np.array_equal(R.seg2bmap_ref(c), R.toolkit_seg2bmap(c))
    assert M.boundary_f(c, c) == 1.0
    assert M.tolerance_pixels((480, 854)) == 8.0  # ceil(0.008 * 979.65)
    assert M.tolerance_pixels((1080, 1920), 3) == 3.0


def test_return_types() -> None:
    rng = np.random.default_rng(0)
    g = rng.random((3, 10, 12)) < 0.5
    p = rng.random((3, 10, 12)) < 0.5
    assert isinstance(M.jaccard(g[0], p[0]), float)
    assert isinstance(M.boundary_f(g[0], p[0]), float)
    assert isinstance(M.accuracy(g[0], p[0]), float)
    for fn in (M.jaccard, M.boundary_f, M.accuracy):
        out = fn(g, p)
        assert out.dtype == np.float64 and out.shape == (3,)
    assert M.jaccard(g[:0], p[:0]).shape == (0,)


def test_integer_zero_one_input_and_validation() -> None:
    rng = np.random.default_rng(1)
    g = rng.random((2, 9, 11)) < 0.5
    p = rng.random((2, 9, 11)) < 0.5
    np.testing.assert_array_equal(M.boundary_f(g.astype(np.uint8), p.astype(np.float32)),
                                  M.boundary_f(g, p))
    with pytest.raises(InputError, match="pred"):
        M.jaccard(g, p[:, :8])
    with pytest.raises(InputError, match="pred"):
        M.boundary_f(g, p[0])
    with pytest.raises(InputError, match="gt"):
        M.jaccard(g.reshape(-1), p.reshape(-1))
    with pytest.raises(InputError, match="0/1"):
        M.jaccard(g * 255, p)
    with pytest.raises(InputError, match="bound_th"):
        M.boundary_f(g, p, bound_th=-1)
    with pytest.raises(InputError, match="metrics"):
        M.score_expression(g, p, metrics=("J", "Q"))
    with pytest.raises(InputError, match="foreground"):
        M.score_expression(g, p, metrics=("R",))
    with pytest.raises(InputError, match="foreground"):
        M.robustness(g, p, g[:, :3])


def test_accuracy_and_robustness() -> None:
    rng = np.random.default_rng(2)
    g = rng.random((5, 13, 17)) < 0.3
    p = rng.random((5, 13, 17)) < 0.3
    fg = g | (rng.random((5, 13, 17)) < 0.2)
    fg[4] = False
    np.testing.assert_allclose(M.accuracy(g, p), R.accuracy_ref(g, p), rtol=0, atol=TOL)
    np.testing.assert_allclose(M.robustness(g, p, fg), R.robustness_ref(g, p, fg), rtol=0, atol=TOL)
    # hand values: 2 false-positive pixels, 10 foreground pixels -> 0.8; misses do not count
    gt = np.zeros((4, 5), bool)
    gt[0, :] = True
    pr = np.zeros((4, 5), bool)
    pr[3, :2] = True
    fore = np.zeros((4, 5), bool)
    fore[:2, :] = True
    assert M.robustness(gt, pr, fore) == pytest.approx(0.8)
    assert M.accuracy(gt, pr) == pytest.approx(13 / 20)
    assert M.robustness(gt, ~gt, fore) == 0.0  # clipped at 0


def test_score_expression_means() -> None:
    rng = np.random.default_rng(4)
    g = np.stack([blob(40, 60, rng, 0.2) for _ in range(5)])
    p = np.stack([blob(40, 60, rng, 0.2) for _ in range(5)])
    fg = g | p
    out = M.score_expression(g, p, fg, metrics=("J", "F", "JF", "A", "R"))
    assert list(out) == ["J", "F", "JF", "A", "R"]
    j, f = R.jaccard_ref(g, p).mean(), R.boundary_f_ref(g, p).mean()
    assert out["J"] == pytest.approx(j, abs=TOL) and out["F"] == pytest.approx(f, abs=TOL)
    assert out["JF"] == pytest.approx((j + f) / 2, abs=TOL)
    assert out["A"] == pytest.approx(R.accuracy_ref(g, p).mean(), abs=TOL)
    assert out["R"] == pytest.approx(R.robustness_ref(g, p, fg).mean(), abs=TOL)
    assert all(isinstance(v, float) for v in out.values())
    assert M.score_expression(g[0], p[0], metrics=("JF",)) == pytest.approx(
        {"JF": (R.jaccard_ref(g[0], p[0]) + R.boundary_f_ref(g[0], p[0])) / 2})


def test_batch_windows_of_mixed_extent_at_borders() -> None:
    """One batch shares the tallest frame's height and the widest frame's width: frames whose
    shared window is pushed against the bottom / right border must replicate the border
    row / column only there, and J must count only the frame's own pixels."""
    rng = np.random.default_rng(21)
    h, w = 70, 150
    gt = np.zeros((5, h, w), bool)
    gt[0, 2:68, 3:40] = True  # tall and narrow
    gt[1, 60:70, 100:150] = True  # short and wide, bottom-right corner
    gt[2, 30:34, 146:150] = True  # small, at the right border
    gt[3, 66:70, 5:9] = True  # small, at the bottom border
    gt[4] = rng.random((h, w)) < 0.02
    pred = gt.copy()
    pred[:4] = np.roll(gt[:4], (1, -1), axis=(1, 2))
    pred[4] = rng.random((h, w)) < 0.02
    for bt in (0.008, 2, 3):
        check(gt, pred, bt)


def _column_major_frames(a: np.ndarray) -> np.ndarray:
    """(T, H, W) with every frame column-major, as pycocotools' decode of a track gives it."""
    return np.moveaxis(np.asfortranarray(np.moveaxis(a, 0, -1)), -1, 0)


@pytest.mark.parametrize("opencv", [True, False], ids=["opencv", "numpy"])
@pytest.mark.parametrize("bound_th", [0.008, 2.5])
def test_fortran_and_c_order_give_identical_scores(bound_th: float, opencv: bool, monkeypatch) -> None:
    """Masks decoded column-major (pycocotools) or Fortran-ordered score exactly as C-ordered
    ones, in every combination of gt / pred / foreground layouts (the column-major path
    scores transposed views; mixed layouts are transposed), with OpenCV's transpose or
    numpy's."""
    import decafbench.maskio as maskio

    if not opencv:
        monkeypatch.setattr(maskio, "_cv2", lambda: None)
    rng = np.random.default_rng(21)
    # non-square, objects touching the right / bottom borders (the replicated row / column)
    gt = np.stack([blob(37, 61, rng, rng.uniform(0.05, 0.6)) for _ in range(7)])
    pred = np.stack([blob(37, 61, rng, rng.uniform(0.05, 0.6)) for _ in range(7)])
    gt[2, :, -3:] = True
    pred[3, -2:, :] = True
    gt[4] = False
    pred[4] = False
    fg = gt | np.roll(gt, 5, axis=2)
    metrics = ("J", "F", "JF", "A", "R")
    layouts = {"C": np.ascontiguousarray, "F": np.asfortranarray, "col": _column_major_frames}
    want = M.score_expression(gt, pred, fg, metrics=metrics, bound_th=bound_th)
    want_j, want_f = M.jaccard_and_f(gt, pred, bound_th)
    for lg, to_g in layouts.items():
        for lp, to_p in layouts.items():
            g, p = to_g(gt), to_p(pred)
            assert np.array_equal(g, gt) and np.array_equal(p, pred)
            got = M.score_expression(g, p, to_g(fg), metrics=metrics, bound_th=bound_th)
            assert got == want, (lg, lp)
            j, f = M.jaccard_and_f(g, p, bound_th)
            np.testing.assert_array_equal(j, want_j)
            np.testing.assert_array_equal(f, want_f)
            np.testing.assert_array_equal(M.jaccard(g, p), want_j)
            np.testing.assert_array_equal(M.boundary_f(g, p, bound_th), want_f)
    # one (H, W) frame in Fortran order
    assert M.jaccard_and_f(np.asfortranarray(gt[0]), np.asfortranarray(pred[0]), bound_th) == \
        (float(want_j[0]), float(want_f[0]))
    assert M.jaccard_and_f(np.asfortranarray(gt[0]), pred[0], bound_th) == (float(want_j[0]), float(want_f[0]))
