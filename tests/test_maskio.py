"""maskio: PNG masks, label PNGs, COCO RLE (against a slow reference codec), JSON errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decafbench.errors import InputError
from decafbench.maskio import (decode_rle, encode_rle, read_json, read_label_png, read_mask_png, require,
                               write_mask_png)


# -- slow reference COCO RLE, straight from pycocotools' maskApi.c definition ----------------------
def ref_runs(mask: np.ndarray) -> list[int]:
    """Alternating run lengths (starting with zeros) of the column-major pixel sequence."""
    flat = [int(v) for v in np.asarray(mask, dtype=bool).flatten(order="F")]
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    return runs


def ref_runs_to_string(cnts: list[int]) -> str:
    out = []
    for i, x in enumerate(cnts):
        if i > 2:
            x -= cnts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def ref_string_to_runs(s: str) -> list[int]:
    cnts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(cnts) > 2:
            x += cnts[-2]
        cnts.append(x)
    return cnts


def ref_decode(h: int, w: int, cnts: list[int]) -> np.ndarray:
    flat, v = [], 0
    for n in cnts:
        flat.extend([v] * n)
        v = 1 - v
    return np.array(flat, dtype=bool).reshape((h, w), order="F")


MASKS = {
    "empty": np.zeros((7, 5), bool),
    "full": np.ones((4, 9), bool),
    "row": np.array([[0, 1, 1, 0, 1, 0, 0, 1]], bool),
    "col": np.array([[1], [1], [0], [1]], bool),
}


@pytest.mark.parametrize("case", list(MASKS) + [f"random{i}" for i in range(8)])
def test_rle_matches_reference(case):
    if case in MASKS:
        m = MASKS[case]
    else:
        rng = np.random.default_rng(int(case[6:]))
        h, w = rng.integers(1, 40, size=2)
        m = rng.random((h, w)) < rng.uniform(0.05, 0.95)
        if int(case[6:]) % 2:  # blobs give long runs (multi-char encodings)
            m = np.zeros((h, w), bool)
            m[h // 4: h // 2 + 1, w // 3:] = True
    rle = encode_rle(m)
    assert rle["size"] == list(m.shape) and isinstance(rle["counts"], str)
    assert rle["counts"] == ref_runs_to_string(ref_runs(m))
    assert ref_string_to_runs(rle["counts"]) == ref_runs(m)
    assert np.array_equal(decode_rle(rle), m)
    assert np.array_equal(ref_decode(*m.shape, ref_string_to_runs(rle["counts"])), m)
    # uncompressed (list) counts and bytes counts decode the same
    assert np.array_equal(decode_rle({"size": list(m.shape), "counts": ref_runs(m)}), m)
    assert np.array_equal(decode_rle({"size": list(m.shape), "counts": rle["counts"].encode()}), m)
    json.dumps(rle)  # JSON-ready


@pytest.mark.parametrize("opencv", [True, False], ids=["opencv", "numpy"])
def test_decoded_rle_is_row_major_and_row_major_copies_exactly(opencv, monkeypatch):
    """decode_rle hands the metrics row-major frames (pycocotools decodes column-major); the
    column-major view is there on request; row_major transposes exactly with OpenCV or numpy."""
    import decafbench.maskio as maskio
    from decafbench.benchmarks.formats import union_rle_tracks

    if not opencv:
        monkeypatch.setattr(maskio, "_cv2", lambda: None)
    rng = np.random.default_rng(3)
    masks = [rng.random((37, 61)) < p for p in (0.0, 0.1, 0.5, 1.0)]
    for m in masks:
        rle = encode_rle(m)
        got = decode_rle(rle)
        assert got.flags.c_contiguous and got.dtype == bool and np.array_equal(got, m)
        col = decode_rle(rle, column_major=True)
        assert col.T.flags.c_contiguous and np.array_equal(col, m)
        out = np.ones((37, 61), dtype=bool)
        assert maskio.row_major(col, out=out) is out and np.array_equal(out, m)
    assert maskio.row_major(masks[1]) is masks[1]  # already row-major: no copy
    # a union of two objects' tracks, null RLEs (absent object) as empty frames
    a, b = [encode_rle(m) for m in masks[1:3]]
    union = union_rle_tracks([[a, None, None], [b, a, None]], 3, (37, 61), Path("mask_dict.json"), ["1", "2"])
    assert union.flags.c_contiguous and union.shape == (3, 37, 61)
    assert np.array_equal(union, np.stack([masks[1] | masks[2], masks[1], np.zeros((37, 61), bool)]))


def test_rle_null_and_errors():
    assert not decode_rle(None, (3, 4)).any() and decode_rle(None, (3, 4)).shape == (3, 4)
    with pytest.raises(InputError, match="null RLE"):
        decode_rle(None)
    with pytest.raises(InputError, match="mask_dict.json: field '7'"):
        decode_rle({"counts": "abc"}, where="mask_dict.json: field '7'")
    with pytest.raises(InputError, match="malformed RLE"):
        decode_rle({"size": [4, 4], "counts": 17})
    with pytest.raises(InputError, match="differs from the frame size"):
        decode_rle(encode_rle(np.ones((2, 3), bool)), (3, 2))


def _save(img: Image.Image, path):
    img.save(path, format="PNG")
    return path


def test_read_mask_png_every_mode(tmp_path):
    rng = np.random.default_rng(0)
    m = rng.random((6, 7)) < 0.5
    u8 = m.astype(np.uint8)
    pal = Image.fromarray(u8 * 3, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 2] = u8 * 9  # only the blue channel is set: still foreground
    rgba = np.dstack([rgb, np.full((6, 7), 255, np.uint8)])
    cases = {
        "l255": Image.fromarray(u8 * 255, "L"),
        "l1": Image.fromarray(u8, "L"),
        "bit": Image.fromarray(u8 * 255, "L").convert("1"),
        "pal": pal,
        "rgb": Image.fromarray(rgb, "RGB"),
        "rgba": Image.fromarray(rgba, "RGBA"),
        "i16": Image.fromarray(u8.astype(np.uint16) * 1000),
    }
    for name, img in cases.items():
        got = read_mask_png(_save(img, tmp_path / f"{name}.png"))
        assert got.dtype == bool and np.array_equal(got, m), name


def test_read_label_png_keeps_palette_ids(tmp_path):
    lab = np.random.default_rng(1).integers(0, 5, size=(9, 8)).astype(np.uint8)
    img = Image.fromarray(lab, mode="P")
    img.putpalette(list(range(256)) * 3)  # colours unrelated to ids: ids must come from indices
    got = read_label_png(_save(img, tmp_path / "a.png"))
    assert np.array_equal(got, lab)
    assert np.array_equal(read_label_png(_save(Image.fromarray(lab, "L"), tmp_path / "l.png")), lab)
    with pytest.raises(InputError, match="mode RGB"):
        read_label_png(_save(Image.fromarray(np.zeros((3, 3, 3), np.uint8)), tmp_path / "rgb.png"))


@pytest.mark.parametrize("mode", ["L", "1"])
def test_write_mask_png_round_trip_atomic(tmp_path, mode):
    m = np.random.default_rng(2).random((11, 13)) < 0.3
    p = tmp_path / "sub" / "00000.png"
    write_mask_png(p, m, mode=mode)
    assert np.array_equal(read_mask_png(p), m)
    with Image.open(p) as img:
        assert img.mode == mode
        if mode == "L":
            assert set(np.unique(np.asarray(img))) <= {0, 255}
    assert sorted(x.name for x in p.parent.iterdir()) == ["00000.png"]  # no temp file left
    with pytest.raises(ValueError):
        write_mask_png(tmp_path / "x.png", np.zeros((2, 2, 2)))


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_png_errors_name_the_file(tmp_path):
    with pytest.raises(InputError) as e:
        read_mask_png(tmp_path / "nope.png")
    _one_line(e, "nope.png", "missing")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png\n at all")
    with pytest.raises(InputError) as e:
        read_mask_png(bad)
    _one_line(e, "bad.png", "corrupt")
    good = tmp_path / "good.png"
    write_mask_png(good, np.ones((50, 50), bool))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:60])
    with pytest.raises(InputError) as e:
        read_label_png(trunc)
    _one_line(e, "trunc.png", "corrupt")


def test_json_errors_name_file_and_field(tmp_path):
    with pytest.raises(InputError) as e:
        read_json(tmp_path / "meta.json", "meta expressions file")
    _one_line(e, "meta.json", "missing meta expressions file")
    p = tmp_path / "m.json"
    p.write_text('{"videos": {"a": \n [1, 2,}')
    with pytest.raises(InputError) as e:
        read_json(p)
    _one_line(e, "m.json", "malformed JSON", "line 2")
    p.write_text('{"videos": {"v1": {"frames": []}}}')
    data = read_json(p)
    with pytest.raises(InputError) as e:
        require(data["videos"]["v1"], "expressions", p, "videos.v1")
    _one_line(e, "m.json", "videos.v1.expressions")
    with pytest.raises(InputError) as e:
        require(data, "videos", p, "", list)
    _one_line(e, "videos should be list")


def test_opencv_and_pillow_paths_read_the_same_masks(tmp_path, monkeypatch):
    """read_mask_png decodes 8-bit grayscale PNGs with OpenCV when installed and everything
    else with Pillow: both give the same mask for every mode, decoding into a preallocated
    frame gives it too, and a broken file fails with Pillow's one-line error either way."""
    pytest.importorskip("cv2")
    from PIL import Image

    import decafbench.maskio as maskio

    rng = np.random.default_rng(5)
    m = rng.random((23, 31)) < 0.4
    files = {}
    u8 = m.astype(np.uint8)
    for mode, img in (("L", Image.fromarray(u8 * 255)), ("L", Image.fromarray(u8 * 7)),
                      ("1", Image.fromarray(u8 * 255).convert("1")),
                      ("P", Image.frombytes("P", (31, 23), (u8 * 3).tobytes())),
                      ("I;16", Image.fromarray(m.astype(np.uint16) * 300))):
        assert img.mode == mode
        p = tmp_path / f"{mode.replace(';', '')}_{len(files)}.png"
        img.save(p)
        files[p] = mode
    rgba = np.zeros((23, 31, 4), np.uint8)
    rgba[..., 1] = m * 200
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    files[tmp_path / "rgba.png"] = "RGBA"
    truncated = tmp_path / "trunc.png"
    for path in files:
        fast = maskio.read_mask_png(path)
        into = np.zeros((23, 31), dtype=bool)
        assert maskio.read_mask_png(path, out=into) is into
        with monkeypatch.context() as mp:
            mp.setattr(maskio, "_cv2", lambda: None)
            slow = maskio.read_mask_png(path)
        np.testing.assert_array_equal(fast, m)
        np.testing.assert_array_equal(slow, m)
        np.testing.assert_array_equal(into, m)
    data = (tmp_path / "L_0.png").read_bytes()

    def outcome():
        try:
            return maskio.read_mask_png(truncated).tolist()
        except InputError as exc:
            return str(exc)

    for cut in (len(data) // 2, len(data) - 20):  # IDAT cut short; IEND lost (Pillow reads it)
        truncated.write_bytes(data[:cut])
        fast = outcome()
        with monkeypatch.context() as mp:
            mp.setattr(maskio, "_cv2", lambda: None)
            assert outcome() == fast
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt"):
        maskio.read_mask_png(truncated)
    # a PNG of another size than the batch frame comes back as its own array
    other = maskio.read_mask_png(tmp_path / "L_0.png", out=np.zeros((5, 5), dtype=bool))
    assert other.shape == (23, 31)
