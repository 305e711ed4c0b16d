"""Official keypoint mode: top cells and point precision against slow loop definitions
written from evaluation/inference_keypoints.py and evaluation/eval_rvos_keypoints.py."""

from __future__ import annotations

import numpy as np
import pytest

from decafbench.errors import InputError
from decafbench.keypoints import OFFSET, PP_KS, TOP_K, Keypoints, point_hits, point_precision, top_points


def reference_top_points(fused: np.ndarray, frame_indices, k: int) -> list[tuple[int, float, float, float]]:
    """Every cell as (value, t, i, j), sorted by value (highest first, ties in row-major order)."""
    t_, h, w = fused.shape
    cells = []
    for t in range(t_):
        for i in range(h):
            for j in range(w):
                cells.append((float(fused[t, i, j]), t * h * w + i * w + j, t, i, j))
    cells.sort(key=lambda c: (-c[0], c[1]))
    f32 = np.float32  # the official tensors are float32: (index + 0.5) / size in single precision
    return [(frame_indices[t], float(f32(i + 0.5) / f32(h)), float(f32(j + 0.5) / f32(w)), v) for v, _, t, i, j in cells[:k]]


def reference_pp(points: list[tuple[int, float, float, float]], gt: np.ndarray, ks, offset: int) -> dict[str, float]:
    """eval_rvos_keypoints.py, one point at a time: sort by score, window slice, any()."""
    n, h, w = gt.shape
    pts = sorted(points, key=lambda p: -p[3])  # Python's sort is stable, like the fast path
    out = {}
    for k in ks:
        hits = 0
        for t, y, x, _ in pts[:k]:
            py = min(int(np.float32(y) * np.float32(h)), h - 1)  # float32 tensor * int, as official
            px = min(int(np.float32(x) * np.float32(w)), w - 1)
            min_py, max_py = max(py - offset, 0), min(py + offset, h - 1)
            min_px, max_px = max(px - offset, 0), min(px + offset, w - 1)
            if gt[int(t), min_py:max_py, min_px:max_px].any():
                hits += 1
        out[f"PP@{k}"] = hits / k
    return out


def as_tuples(p: Keypoints) -> list[tuple[int, float, float, float]]:
    return [(int(f), float(y), float(x), float(s)) for f, y, x, s in zip(p.frames, p.y, p.x, p.scores)]


def test_official_defaults():
    assert TOP_K == 100 and PP_KS == (1, 5, 10, 50, 100) and OFFSET == 14  # released scripts: --offset 14


@pytest.mark.parametrize("seed", range(6))
def test_top_points_and_precision_match_loop_reference(seed):
    rng = np.random.default_rng(seed)
    t, h, w = rng.integers(1, 6), rng.integers(2, 12), rng.integers(2, 12)
    fused = rng.random((t, h, w))
    if seed % 2:  # ties: quantized values
        fused = np.round(fused * 4) / 4
    n = int(t + rng.integers(0, 5))
    frame_indices = sorted(rng.choice(n, size=t, replace=False).tolist())
    k = int(rng.integers(1, t * h * w + 3))
    pts = top_points(fused, frame_indices, k=k)
    assert as_tuples(pts) == reference_top_points(fused, frame_indices, k)
    height, width = int(rng.integers(8, 60)), int(rng.integers(8, 60))
    gt = rng.random((n, height, width)) > rng.uniform(0.9, 0.999)
    for offset in (0, 1, 3, OFFSET, 100):
        ks = (1, 2, 5, k)
        assert point_precision(pts, gt, ks=ks, offset=offset) == reference_pp(as_tuples(pts), gt, ks, offset)


def test_hand_case_peak_on_object():
    fused = np.zeros((2, 4, 4))
    fused[1, 2, 3] = 1.0  # key frame 1 (video frame 7), cell centre (0.625, 0.875)
    fused[0, 0, 0] = 0.5
    pts = top_points(fused, [3, 7], k=2)
    assert pts.frames.tolist() == [7, 3] and pts.y.tolist() == [0.625, 0.125] and pts.x.tolist() == [0.875, 0.125]
    gt = np.zeros((10, 80, 80), dtype=np.uint8)
    gt[7, 40:60, 60:80] = 1  # around pixel (50, 70) in video frame 7
    assert point_precision(pts, gt, ks=(1, 2), offset=14) == {"PP@1": 1.0, "PP@2": 0.5}
    assert point_precision(pts, gt, ks=(1,), offset=0) == {"PP@1": 0.0}  # official slice: empty window


def test_official_window_excludes_last_row_and_column():
    """max_py = min(py + offset, H - 1) is an exclusive slice bound: foreground only on the last
    row is never seen, as in the official script."""
    pts = Keypoints(frames=np.array([0]), y=np.array([0.99], np.float32), x=np.array([0.5], np.float32), scores=np.array([1.0]))
    gt = np.zeros((1, 20, 20), dtype=bool)
    gt[0, 19, :] = True
    assert point_hits(pts, gt, offset=5).tolist() == [False]
    gt[0, 18, 10] = True
    assert point_hits(pts, gt, offset=5).tolist() == [True]


def test_float32_cell_centres_truncate_as_official():
    """(2 + 0.5) / 3 in float32 times 3 is 2.5 -> 2; cell centres times a multiple of the map size
    land on exact pixel rows in single precision, e.g. 1/7 cells on a 700-pixel mask."""
    pts = top_points(np.arange(7, dtype=float).reshape(1, 7, 1), [0], k=7)
    py = (pts.y.astype(np.float32) * np.float32(700)).astype(np.int64)
    assert pts.y.dtype == np.float32 and py.tolist() == [int(np.float32((6 - r) + 0.5) / np.float32(7) * np.float32(700)) for r in range(7)]


def test_bad_inputs():
    with pytest.raises(InputError, match="fused map must be"):
        top_points(np.zeros((4, 4)), [0])
    with pytest.raises(InputError, match="frame indices"):
        top_points(np.zeros((2, 4, 4)), [0])
    with pytest.raises(InputError, match="NaN"):
        top_points(np.full((1, 2, 2), np.nan), [0])
    pts = top_points(np.ones((1, 2, 2)), [5])
    with pytest.raises(InputError, match="out of range"):
        point_precision(pts, np.zeros((3, 8, 8)))
    with pytest.raises(InputError, match="offset"):
        point_precision(pts, np.zeros((6, 8, 8)), offset=-1)


def test_torch_input_and_rows():
    torch = pytest.importorskip("torch")
    fused = torch.tensor([[[0.1, 0.9], [0.3, 0.2]]])
    pts = top_points(fused, [4], k=2)
    assert pts.to_rows() == [{"rank": 0, "frame": 4, "y": 0.25, "x": 0.75, "score": pytest.approx(0.9)},
                             {"rank": 1, "frame": 4, "y": 0.75, "x": 0.25, "score": pytest.approx(0.3)}]
