"""Attention-guided SAM2 prompting: pure parts vs slow references, SAM2 part end-to-end.

The SAM2 part uses the random-weight hiera-tiny model at 64 px on 8 synthetic 64x96 frames,
so masks are meaningless but deterministic; what is checked is the plumbing: shapes, dtypes,
determinism, one encoder pass per frame, agreement with the published per-point pattern.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from decafbench.errors import InputError
from decafbench.reference import sam2_prompting as ref
from decafbench.sam2_prompting import (
    Sam2Config,
    attention_consistency,
    candidate_points,
    final_scores,
    greedy_nms,
    mask_iou_matrix,
    segment,
    select_tracklets,
)


# ---- pure parts ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_candidate_points_match_reference(seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(3, 5, 7, generator=g)
    f[0, 1, 2] = 0.8  # exactly at the threshold counts
    f[2] = 0.1  # a frame with no candidates
    fast = candidate_points(f, 0.8)
    slow = ref.candidate_points(f.numpy(), 0.8)
    for c, s in zip(fast, slow):
        assert [tuple(x) for x in c.cells.tolist()] == [(i, j) for i, j, *_ in s]
        expected = np.array([(x, y) for _, _, x, y, _ in s]).reshape(-1, 2)
        np.testing.assert_allclose(c.points.numpy(), expected, rtol=1e-6)
        np.testing.assert_allclose(c.scores.numpy(), [sc for *_, sc in s], rtol=1e-6)
    assert fast[2].points.shape == (0, 2)
    assert (1, 2) in [tuple(x) for x in fast[0].cells.tolist()]


def _random_masks(rng, n, h=12, w=14):
    """Rectangles of random size/place plus noise: realistic overlaps, some empty masks."""
    masks = np.zeros((n, h, w), dtype=bool)
    for k in range(n):
        if rng.random() < 0.1:
            continue
        y0, x0 = rng.integers(0, h - 3), rng.integers(0, w - 3)
        masks[k, y0:y0 + rng.integers(2, h - y0), x0:x0 + rng.integers(2, w - x0)] = True
        masks[k] ^= rng.random((h, w)) < 0.03
    return masks


def test_mask_iou_matrix_matches_reference():
    rng = np.random.default_rng(0)
    a, b = _random_masks(rng, 6), _random_masks(rng, 4)
    a[0] = False
    b[0] = False  # empty vs empty -> 0
    fast = mask_iou_matrix(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    slow = np.array([[ref.mask_iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(fast, slow, atol=1e-6)
    assert fast[0, 0] == 0.0


@pytest.mark.parametrize("seed", range(25))
def test_greedy_nms_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 9)), int(rng.integers(0, 4))
    masks, prev = _random_masks(rng, n), _random_masks(rng, m)
    if m and n:
        prev[0] = masks[0]  # force at least one cross-frame overlap
    scores = np.round(rng.random(n) * 2, 1)  # coarse values make ties likely
    prev_scores = np.round(rng.random(m) * 2, 1)
    thr = float(rng.choice([0.3, 0.5, 0.7]))
    fast = greedy_nms(torch.from_numpy(masks), torch.from_numpy(scores), thr,
                      torch.from_numpy(prev) if m else None, torch.from_numpy(prev_scores) if m else None)
    keep, replaced = ref.greedy_nms(masks, list(scores), thr, prev if m else None, list(prev_scores))
    assert fast.keep == keep and fast.replaced == replaced


def test_greedy_nms_hand_made_cases():
    box = np.zeros((4, 10, 10), dtype=bool)
    box[:, 2:8, 2:8] = True
    box[1, 2, 2] = False  # near-duplicate of box 0
    box[2] = False
    box[2, 0:2, 0:2] = True  # disjoint
    masks = torch.from_numpy(box)
    # within the frame: the better duplicate survives, disjoint masks both survive; ties keep the first
    assert greedy_nms(masks, torch.tensor([1.0, 1.5, 0.2, 1.5]), 0.7).keep == [1, 2]
    assert greedy_nms(masks[:2], torch.tensor([1.0, 1.0]), 0.7).keep == [0]
    # against an earlier tracklet: replace only with a strictly higher score, else drop
    prev = masks[:1]
    res = greedy_nms(masks[1:3], torch.tensor([1.2, 0.5]), 0.7, prev, torch.tensor([1.0]))
    assert res.keep == [0, 1] and res.replaced == [0]
    res = greedy_nms(masks[1:3], torch.tensor([1.0, 0.5]), 0.7, prev, torch.tensor([1.0]))
    assert res.keep == [1] and res.replaced == []
    assert greedy_nms(masks[:0], torch.zeros(0), 0.7).keep == []


def _blob_map(t=4, h=6, w=8):
    f = torch.full((t, h, w), 0.05)
    f[:, 1:3, 1:3] = 1.0
    return f


@pytest.mark.parametrize("threshold,penalty", [("mean", True), ("mean", False), (0.5, True)])
def test_attention_consistency_matches_reference(threshold, penalty):
    g = torch.Generator().manual_seed(3)
    f = torch.rand(3, 4, 5, generator=g)
    f[1] = 0.25  # constant frame: nothing inside, no penalty from it
    tracks = [torch.rand(3, 13, 17, generator=g) > p for p in (0.2, 0.5, 0.9)]  # 13x17 -> 4x5 uneven bins
    tracks.append(torch.zeros(3, 13, 17, dtype=torch.bool))
    fast = attention_consistency(f, tracks, threshold, penalty).numpy()
    slow = ref.attention_consistency(f.numpy(), [t.numpy() for t in tracks], threshold, penalty)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)


def test_attention_consistency_prefers_the_attended_object():
    f = _blob_map()
    on = torch.zeros(4, 60, 80, dtype=torch.bool)
    on[:, 10:30, 10:30] = True  # exactly the blob (cells 1:3 of a 10-pixel grid)
    half = torch.zeros_like(on)
    half[:, 10:30, 20:40] = True  # half on the blob, half off
    off = torch.zeros_like(on)
    off[:, 40:60, 50:70] = True
    ac = attention_consistency(f, [on, half, off]).tolist()
    assert ac[0] == pytest.approx(1.0)  # the best positive score is normalised to 1
    assert ac[0] > ac[1] > ac[2]
    assert ac[2] < 0  # off the blob only collects the outside penalty
    assert attention_consistency(torch.zeros(4, 6, 8), [on]).tolist() == [0.0]  # nothing inside


def test_final_scores_and_selection():
    obj, ac = torch.tensor([1.9, 1.2, 1.8]), torch.tensor([1.0, -0.5, 0.7])
    final = final_scores(obj, ac)
    np.testing.assert_allclose(final.numpy(), [2.9 / 3, 0.7 / 3, 2.5 / 3], rtol=1e-6)
    assert select_tracklets(final, 0.8) == [0, 2] == ref.select_tracklets(final.tolist(), 0.8)
    assert select_tracklets(final, 0.99) == [0]  # none above: keep the best
    assert select_tracklets(torch.tensor([0.3, 0.3]), 0.8) == [0] == ref.select_tracklets([0.3, 0.3], 0.8)
    np.testing.assert_allclose(final_scores(obj, ac, use_ac=False).numpy(), (obj / 2).numpy())


def test_config_validation():
    assert Sam2Config().point_threshold == 0.8 and Sam2Config().final_score_threshold == 0.8
    with pytest.raises(InputError, match="nms_iou"):
        Sam2Config(nms_iou=1.5)
    with pytest.raises(InputError, match="ac_threshold"):
        Sam2Config(ac_threshold="median")
    with pytest.raises(InputError, match="point_threshold"):
        Sam2Config(point_threshold=float("nan"))


# ---- SAM2 part -----------------------------------------------------------------------------
def _frames(n=8, h=64, w=96):
    """A gradient background, a red disc moving right, a static green box."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0], img[..., 1], img[..., 2] = xx * 255 // w, yy * 255 // h, 60
        img[(xx - 20 - 5 * t) ** 2 + (yy - 30) ** 2 < 120] = (250, 40, 40)
        img[5:20, 60:90] = (30, 200, 30)
        frames.append(img)
    return frames


KEYS = [0, 2, 5, 7]
#: below every final score: (IoU + attention + AC) / 3 with IoU, attention in [0, 1], AC >= -1
ALL_KEPT = -10.0


def _fused():
    g = torch.Generator().manual_seed(1)
    return torch.rand(len(KEYS), 6, 8, generator=g)


@pytest.fixture(scope="module")
def predictor():
    from decafbench.sam2_model import load_sam2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared; one thread is fastest there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sam2's "no CUDA extension, skipping hole filling"
        yield load_sam2("tiny")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(predictor):
    """Two fast runs (encoder calls counted by a hook on SAM2's image encoder) and the reference."""
    # random weights give similar masks for every point: a loose NMS keeps tracklets from several
    # key frames, and a final threshold below any possible score keeps every one of them, so the
    # multi-object paths run whatever the scores are (the selection rule has its own test below)
    cfg = Sam2Config(point_threshold=0.9, nms_iou=0.9, final_score_threshold=ALL_KEPT)
    calls = []
    handle = predictor.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first = segment(predictor, _frames(), KEYS, _fused(), cfg)
            encoder_calls = len(calls)
            second = segment(predictor, _frames(), KEYS, _fused(), cfg)
            reference = ref.segment_reference(predictor, _frames(), KEYS, _fused(), cfg)
    finally:
        handle.remove()
    return first, second, reference, encoder_calls


@pytest.mark.slow
def test_segment_shapes_and_dtypes(runs):
    result = runs[0]
    assert result.masks.shape == (8, 64, 96) and result.masks.dtype == bool
    assert result.key_masks.shape == (4, 64, 96) and result.key_masks.dtype == bool
    np.testing.assert_array_equal(result.key_masks, result.masks[KEYS])
    assert result.tracklets and all(t.kept for t in result.tracklets)
    for t in result.tracklets:
        assert t.source_frame == KEYS[t.source_key]
        assert t.object_score == pytest.approx(t.iou + t.attention)
        assert t.final == pytest.approx((t.object_score + t.ac) / 3, rel=1e-5)
    assert result.stats["points"] == sum(result.stats["points_per_key_frame"]) > 0
    assert result.stats["tracklets"] == len(result.tracklets) > 1  # exercises multi-object paths
    assert result.stats["tracklets_kept"] == sum(t.kept for t in result.tracklets)


@pytest.mark.slow
def test_selection_follows_the_final_threshold_rule(predictor, runs):
    """For any threshold: the tracklets are the same, those with final > threshold are kept (the
    best one alone when none is), and the masks are a subset of the all-kept union."""
    every = runs[0]
    finals = sorted({t.final for t in every.tracklets})
    assert len(finals) > 1
    middle = (finals[len(finals) // 2 - 1] + finals[len(finals) // 2]) / 2
    for threshold in (middle, finals[-1] + 1.0):
        cfg = Sam2Config(point_threshold=0.9, nms_iou=0.9, final_score_threshold=threshold)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = segment(predictor, _frames(), KEYS, _fused(), cfg)
        assert [(t.source_key, t.final) for t in result.tracklets] == [(t.source_key, t.final) for t in every.tracklets]
        expected = [t.final > threshold for t in result.tracklets]
        if not any(expected):
            best = max(range(len(result.tracklets)), key=lambda i: result.tracklets[i].final)
            expected = [i == best for i in range(len(result.tracklets))]
        assert [t.kept for t in result.tracklets] == expected
        assert 0 < sum(expected) < len(expected)
        assert not (result.masks & ~every.masks).any()  # a union of fewer tracklets


@pytest.mark.slow
def test_segment_encodes_each_frame_once(runs):
    first, _, reference, encoder_calls = runs
    assert encoder_calls == 8 == first.stats["encoder_passes"]  # 8 frames, one pass each
    assert reference.stats["encoder_passes"] > 8  # the stock one-frame cache re-encodes


@pytest.mark.slow
def test_segment_is_deterministic(runs):
    first, second, _, _ = runs
    np.testing.assert_array_equal(first.masks, second.masks)
    assert first.tracklets == second.tracklets


@pytest.mark.slow
def test_segment_matches_published_pattern(runs):
    """Batched points + shared cache == one add_new_points_or_box per point + stock cache."""
    fast, _, slow, _ = runs
    np.testing.assert_array_equal(fast.masks, slow.masks)
    assert len(fast.tracklets) == len(slow.tracklets)
    for a, b in zip(fast.tracklets, slow.tracklets):
        assert (a.source_key, a.kept) == (b.source_key, b.kept)
        np.testing.assert_allclose([a.iou, a.attention, a.ac, a.final], [b.iou, b.attention, b.ac, b.final],
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_segment_replacing_tracklets_matches_published_pattern(predictor):
    """NMS IoU 0: every overlap counts, so later key frames replace or drop earlier tracklets."""
    cfg = Sam2Config(point_threshold=0.9, nms_iou=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = segment(predictor, _frames(), KEYS, _fused(), cfg)
        slow = ref.segment_reference(predictor, _frames(), KEYS, _fused(), cfg)
    assert fast.stats["tracklets_replaced"] > 0
    np.testing.assert_array_equal(fast.masks, slow.masks)
    assert [(t.source_key, t.kept) for t in fast.tracklets] == [(t.source_key, t.kept) for t in slow.tracklets]


def test_segment_without_candidates_returns_empty_masks(predictor):
    result = segment(predictor, _frames(), KEYS, torch.zeros(4, 6, 8))
    assert result.masks.shape == (8, 64, 96) and not result.masks.any()
    assert result.stats["no_candidates"] and result.stats["encoder_passes"] == 0 and result.tracklets == []


def test_segment_input_errors(predictor):
    frames = _frames(n=3)
    with pytest.raises(InputError, match="fused"):
        segment(predictor, frames, [0, 2], torch.zeros(3, 4, 4))
    with pytest.raises(InputError, match="key_indices"):
        segment(predictor, frames, [2, 0], torch.zeros(2, 4, 4))
    with pytest.raises(InputError, match="key_indices"):
        segment(predictor, frames, [0, 5], torch.zeros(2, 4, 4))
    with pytest.raises(InputError, match=r"frames\[1\]"):
        segment(predictor, [frames[0], frames[1].astype(np.float32)], [0, 1], torch.zeros(2, 4, 4))


def test_state_matches_official_init_state(predictor, tmp_path):
    """Our in-memory state has SAM2's keys, and frames are preprocessed exactly as SAM2 does."""
    from PIL import Image

    for i, frame in enumerate(_frames(n=2)):
        Image.fromarray(frame).save(tmp_path / f"{i:05d}.jpg")
    decoded = [np.array(Image.open(tmp_path / f"{i:05d}.jpg").convert("RGB")) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = predictor.init_state(str(tmp_path))
    ours = predictor.video_state(predictor.open_session(decoded), [0, 1])
    assert set(official) == {k for k in ours if not k.startswith("decaf_")}
    assert (ours["video_height"], ours["video_width"]) == (official["video_height"], official["video_width"])
    for i in range(2):
        torch.testing.assert_close(ours["images"][i], official["images"][i], rtol=0, atol=1e-6)
    with torch.inference_mode():  # served from our cache == computed by stock SAM2
        stock = predictor._get_image_feature(official, 1, 2)
        predictor._get_image_feature(ours, 1, 1)  # encodes and caches frame 1
        cached = predictor._get_image_feature(ours, 1, 2)
    for a, b in zip(stock[2] + stock[3], cached[2] + cached[3]):  # vision feats, position encodings
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_load_sam2_errors(tmp_path):
    from decafbench.sam2_model import load_sam2

    with pytest.raises(InputError, match="CONFIG:CHECKPOINT"):
        load_sam2("large")
    with pytest.raises(InputError, match="nope.yaml"):
        load_sam2(f"configs/sam2.1/nope.yaml:{tmp_path / 'x.pt'}")
    with pytest.raises(InputError, match="missing.pt"):
        load_sam2(f"configs/sam2.1/sam2.1_hiera_t.yaml:{tmp_path / 'missing.pt'}")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="corrupt.pt"):
        load_sam2(f"configs/sam2.1/sam2.1_hiera_t.yaml:{bad}")
    with pytest.raises(InputError, match="multiple of 32"):
        load_sam2("tiny@100")
