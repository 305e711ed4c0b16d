"""Benchmark readers on tiny fixtures of every official layout, written here in tmp_path."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decafbench.benchmarks.registry import BENCHMARKS, get_benchmark
from decafbench.errors import InputError, RegistryError
from decafbench.maskio import encode_rle, write_mask_png

H, W = 6, 8


# -- fixture writers ---------------------------------------------------------------------------------
def write_frames(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(folder / f"{n}.jpg")


def rand_masks(seed: int, t: int) -> np.ndarray:
    return np.random.default_rng(seed).random((t, H, W)) < 0.4


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


FRAMES = ["00000", "00001", "00002"]


def make_mevis(root: Path, split: str = "valid_u") -> dict[str, np.ndarray]:
    """Two videos; anno 0, 1 in v1 (anno 1 absent in frame 1: null RLE), anno 2 in v2."""
    tracks = {"0": rand_masks(0, 3), "1": rand_masks(1, 3), "2": rand_masks(2, 3)}
    tracks["1"][1] = False
    mask_dict = {k: [encode_rle(m) if m.any() else None for m in v] for k, v in tracks.items()}
    meta = {"videos": {
        "v2": {"expressions": {"0": {"exp": "the cat", "obj_id": [0], "anno_id": [2]}}, "frames": FRAMES},
        "v1": {"expressions": {
            "10": {"exp": "both dogs", "obj_id": [0, 1], "anno_id": [0, 1]},
            "2": {"exp": "the left dog", "obj_id": [1], "anno_id": [1]}}, "frames": FRAMES}}}
    d = root / split
    write_json(d / "meta_expressions.json", meta)
    if split == "valid_u":
        write_json(d / "mask_dict.json", mask_dict)
    for v in ("v1", "v2"):
        write_frames(d / "JPEGImages" / v, FRAMES)
    return tracks


def make_davis(root: Path, *, pngs: bool = True) -> np.ndarray:
    labels = np.random.default_rng(3).integers(0, 3, size=(3, H, W)).astype(np.uint8)
    meta = {"videos": {"bike": {"expressions": {
        "0": {"exp": "a man", "obj_id": "1"}, "1": {"exp": "a bike", "obj_id": "2"},
        "2": {"exp": "man and bike", "obj_id": ["1", "2"]}}, "frames": FRAMES}}}
    write_json(root / "meta_expressions" / "valid" / "meta_expressions.json", meta)
    write_frames(root / "valid" / "JPEGImages" / "bike", FRAMES)
    if pngs:
        d = root / "valid" / "Annotations" / "bike"
        d.mkdir(parents=True)
        for f, lab in zip(FRAMES, labels):
            img = Image.fromarray(lab, mode="P")
            img.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
            img.save(d / f"{f}.png")
    else:  # VISA's pickle: one RLE track per expression, ids over sorted expression ids
        targets = {"0": (1,), "1": (2,), "2": (1, 2)}
        pkl = {}
        for i, e in enumerate(sorted(targets)):
            track = []
            for lab in labels:
                rle = encode_rle(np.isin(lab, targets[e]))
                track.append({"size": rle["size"], "counts": rle["counts"].encode()})
            pkl[str(i)] = track
        (root / "valid" / "mask_dict.pkl").write_bytes(pickle.dumps(pkl))
    return labels


# -- MeViS ---------------------------------------------------------------------------------------------
def test_mevis_expressions_union_and_null_rle(tmp_path):
    tracks = make_mevis(tmp_path)
    b = get_benchmark("mevis", root=tmp_path)
    assert b.split == "valid_u" and b.has_ground_truth
    assert [v.name for v in b.videos()] == ["v1", "v2"]
    assert b.video("v1").frame_paths[0] == tmp_path / "valid_u" / "JPEGImages" / "v1" / "00000.jpg"
    exps = b.expressions()
    assert [(e.video, e.exp_id) for e in exps] == [("v1", "2"), ("v1", "10"), ("v2", "0")]  # natural order
    both = exps[1]
    assert both.text == "both dogs" and both.anno_ids == ("0", "1") and both.obj_ids == ("0", "1")
    gt = b.ground_truth(both)
    assert gt.frames == tuple(FRAMES) and gt.masks.dtype == bool and gt.foreground is None
    assert np.array_equal(gt.masks, tracks["0"] | tracks["1"])
    left = b.ground_truth(exps[0])
    assert not left.masks[1].any() and np.array_equal(left.masks, tracks["1"])  # null RLE -> empty
    # root may also be the split folder itself; instances pickle cheaply and re-read lazily
    b2 = get_benchmark("mevis", root=tmp_path / "valid_u")
    assert np.array_equal(b2.ground_truth(both).masks, gt.masks)
    b3 = pickle.loads(pickle.dumps(b))
    assert b3.expressions() == exps and "_expressions" not in pickle.loads(pickle.dumps(b)).__dict__


def test_mevis_valid_has_no_ground_truth(tmp_path):
    make_mevis(tmp_path, split="valid")
    b = get_benchmark("mevis", root=tmp_path, split="valid")
    assert not b.has_ground_truth and len(b.expressions()) == 3
    with pytest.raises(InputError, match="no public ground truth"):
        b.ground_truth(b.expressions()[0])
    with pytest.raises(InputError, match="no split 'test'"):
        get_benchmark("mevis", root=tmp_path, split="test")


# -- Ref-DAVIS17 ---------------------------------------------------------------------------------------
def test_davis_palette_ids_and_union(tmp_path):
    labels = make_davis(tmp_path)
    b = get_benchmark("ref-davis17", root=tmp_path)
    e0, e1, e2 = b.expressions()
    assert (e0.text, e0.obj_ids, e2.obj_ids) == ("a man", ("1",), ("1", "2"))
    assert np.array_equal(b.ground_truth(e0).masks, labels == 1)
    assert np.array_equal(b.ground_truth(e1).masks, labels == 2)
    assert np.array_equal(b.ground_truth(e2).masks, labels > 0)
    assert b.ground_truth(e0).frames == tuple(FRAMES)


def test_davis_pickle_refused_without_trust_then_converted(tmp_path):
    from decafbench.benchmarks.convert import convert_mask_dict

    labels = make_davis(tmp_path, pngs=False)
    b = get_benchmark("ref-davis17", root=tmp_path)
    e = b.expressions()
    with pytest.raises(InputError) as exc:
        b.ground_truth(e[0])
    msg = str(exc.value)
    assert "\n" not in msg and "mask_dict.pkl" in msg and "--trust-pickle" in msg and "convert" in msg
    trusted = get_benchmark("ref-davis17", root=tmp_path, trust_pickle=True)
    assert np.array_equal(trusted.ground_truth(e[2]).masks, labels > 0)
    with pytest.raises(InputError, match="--trust-pickle"):
        convert_mask_dict(tmp_path)
    out = convert_mask_dict(tmp_path, trust_pickle=True)
    assert out == tmp_path / "valid" / "mask_dict.json"
    json.loads(out.read_text())  # plain JSON (bytes counts became str)
    with pytest.raises(InputError, match="already exists"):
        convert_mask_dict(tmp_path, trust_pickle=True)
    fresh = get_benchmark("ref-davis17", root=tmp_path)  # the JSON now wins, no trust needed
    for exp, want in zip(e, (labels == 1, labels == 2, labels > 0)):
        assert np.array_equal(fresh.ground_truth(exp).masks, want)


# -- ReVOS ---------------------------------------------------------------------------------------------
def test_revos_types_and_foreground(tmp_path):
    tracks = {"5": rand_masks(5, 3), "6": rand_masks(6, 3)}
    tracks["6"][0] = False
    mask_dict = {k: [encode_rle(m) if m.any() else None for m in v] for k, v in tracks.items()}
    fg = tracks["5"] | tracks["6"]
    write_json(tmp_path / "mask_dict.json", mask_dict)
    write_json(tmp_path / "mask_dict_foreground.json",
               {"vid": {"masks_rle": [encode_rle(m) for m in fg], "foreground_ratio": [0.5] * 3}})
    exps = {"0": {"exp": "the dog", "obj_id": [1], "anno_id": [5], "type_id": 0},
            "1": {"exp": "what could bite?", "obj_id": [1, 2], "anno_id": [5, 6], "type_id": 1},
            "2": {"exp": "the unicorn", "obj_id": [2], "anno_id": [6], "type_id": 2}}
    write_json(tmp_path / "meta_expressions_valid_.json",
               {"videos": {"vid": {"expressions": exps, "frames": FRAMES, "height": H, "width": W}}})
    write_frames(tmp_path / "JPEGImages" / "vid", FRAMES)
    b = get_benchmark("revos", root=tmp_path)
    assert b.metrics == ("J", "F", "JF", "A", "R")
    e = b.expressions()
    assert [x.split for x in e] == ["referring", "reasoning", "other"]
    gt = b.ground_truth(e[1])
    assert np.array_equal(gt.masks, fg) and np.array_equal(gt.foreground, fg)
    assert not b.ground_truth(e[2]).masks[0].any()


# -- ReasonVOS -----------------------------------------------------------------------------------------
def test_reasonvos_annotation_folders(tmp_path):
    m = rand_masks(7, 2)
    meta = {"videos": {"abc": {"source": "MOSE", "frames": FRAMES, "is_sent": True,
                               "expressions": {"0": {"exp_text": "who is fastest?", "obj_id": 3}}}}}
    write_json(tmp_path / "meta_expressions.json", meta)
    write_frames(tmp_path / "JPEGImages" / "abc", FRAMES)
    for f, mm in zip(FRAMES[:2], m):  # annotated frames only
        write_mask_png(tmp_path / "Annotations" / "mose_abc_3" / f"{f}.png", mm)
    b = get_benchmark("reasonvos", root=tmp_path)
    (e,) = b.expressions()
    assert (e.text, e.obj_ids) == ("who is fastest?", ("3",))
    gt = b.ground_truth(e)
    assert gt.frames == tuple(FRAMES[:2]) and np.array_equal(gt.masks, m)
    # the other casing of the source (as eval_reason_vos.py spells it) is found too
    (tmp_path / "Annotations" / "mose_abc_3").rename(tmp_path / "Annotations" / "MOSE_abc_3")
    assert np.array_equal(get_benchmark("reasonvos", root=tmp_path).ground_truth(e).masks, m)


# -- Ref-YouTube-VOS and export ------------------------------------------------------------------------
def make_ytvos(root: Path) -> None:
    meta = {"videos": {"yt1": {"expressions": {"0": {"exp": "a duck"}, "1": {"exp": "a boat"}}, "frames": FRAMES[:2]}}}
    write_json(root / "meta_expressions" / "valid" / "meta_expressions.json", meta)
    write_frames(root / "valid" / "JPEGImages" / "yt1", FRAMES[:2])


def test_ytvos_export_zip(tmp_path, capsys):
    from decafbench.cli import main

    make_ytvos(tmp_path / "ds")
    b = get_benchmark("ref-youtube-vos", root=tmp_path / "ds")
    assert not b.has_ground_truth and len(b.expressions()) == 2
    with pytest.raises(InputError, match="no public ground truth"):
        b.ground_truth(b.expressions()[0])
    pred = tmp_path / "run" / "predictions"
    for exp in ("0", "1"):
        for f in FRAMES[:2]:
            if (exp, f) != ("1", "00001"):
                write_mask_png(pred / "yt1" / exp / f"{f}.png", np.ones((H, W), bool))
    args = ["export", "--benchmark", "ref-youtube-vos", "--root", str(tmp_path / "ds"),
            "--pred", str(tmp_path / "run"), "--out", str(tmp_path / "sub.zip")]
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and "1 of 4 masks missing" in err and "00001.png" in err
    assert not (tmp_path / "sub.zip").exists()
    write_mask_png(pred / "yt1" / "1" / "00001.png", np.zeros((H, W), bool))
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)
    with zipfile.ZipFile(tmp_path / "sub.zip") as zf:
        assert sorted(zf.namelist()) == [f"Annotations/yt1/{e}/{f}.png" for e in "01" for f in FRAMES[:2]]


# -- registry, bad input -------------------------------------------------------------------------------
def test_registry_names_and_unknown():
    assert BENCHMARKS.names() == sorted(["ref-davis17", "mevis", "revos", "reasonvos", "ref-youtube-vos", "embedded"])
    with pytest.raises(RegistryError, match="did you mean 'mevis'"):
        get_benchmark("mevs", root=".")
    with pytest.raises(InputError, match="needs --root"):
        get_benchmark("mevis")
    assert get_benchmark("embedded").has_ground_truth


def _one_line_error(fn, *needles: str) -> str:
    with pytest.raises(InputError) as exc:
        fn()
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def test_bad_inputs_are_one_line_naming_file_and_field(tmp_path):
    make_mevis(tmp_path)
    d = tmp_path / "valid_u"
    # missing frames folder
    for p in (d / "JPEGImages" / "v2").iterdir():
        p.unlink()
    (d / "JPEGImages" / "v2").rmdir()
    _one_line_error(lambda: get_benchmark("mevis", root=tmp_path).videos(), "JPEGImages/v2", "missing frames folder")
    write_frames(d / "JPEGImages" / "v2", FRAMES[:2])  # a listed frame missing
    _one_line_error(lambda: get_benchmark("mevis", root=tmp_path).videos(), "v2", "00002.jpg")
    write_frames(d / "JPEGImages" / "v2", FRAMES)
    # missing field (anno_id) and a wrongly typed field
    meta = json.loads((d / "meta_expressions.json").read_text())
    del meta["videos"]["v1"]["expressions"]["2"]["anno_id"]
    write_json(d / "meta_expressions.json", meta)
    _one_line_error(lambda: get_benchmark("mevis", root=tmp_path).expressions(),
                    "meta_expressions.json", "videos.v1.expressions.2.anno_id")
    write_json(d / "meta_expressions.json", {"videos": {"v1": {"frames": FRAMES}}})
    _one_line_error(lambda: get_benchmark("mevis", root=tmp_path).expressions(), "videos.v1.expressions")
    write_json(d / "meta_expressions.json", {"video": {}})
    _one_line_error(lambda: get_benchmark("mevis", root=tmp_path).videos(), "meta_expressions.json", "missing field videos")
    # malformed JSON, in the meta and in the mask dict
    (d / "meta_expressions.json").write_text("{\"videos\": {")
    _one_line_error(lambda: get_benchmark("mevis", root=tmp_path).expressions(), "meta_expressions.json", "malformed JSON")
    make_mevis(tmp_path)
    (d / "mask_dict.json").write_text("[1, 2")
    b = get_benchmark("mevis", root=tmp_path)
    _one_line_error(lambda: b.ground_truth(b.expressions()[0]), "mask_dict.json", "malformed JSON")
    write_json(d / "mask_dict.json", {"0": []})
    b = get_benchmark("mevis", root=tmp_path)
    _one_line_error(lambda: b.ground_truth(b.expressions()[0]), "mask_dict.json", "'1'")
    _one_line_error(lambda: b.ground_truth(b.expressions()[1]), "mask_dict.json", "field '0' has 0 RLEs")
    # a missing dataset root
    _one_line_error(lambda: get_benchmark("revos", root=tmp_path / "nope"), "nope", "does not exist")


def test_bad_davis_pngs_and_revos_fields(tmp_path):
    make_davis(tmp_path / "davis")
    ann = tmp_path / "davis" / "valid" / "Annotations" / "bike" / "00001.png"
    ann.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    b = get_benchmark("ref-davis17", root=tmp_path / "davis")
    _one_line_error(lambda: b.ground_truth(b.expressions()[0]), "00001.png", "corrupt")
    ann.unlink()
    for p in ann.parent.iterdir():
        p.unlink()
    ann.parent.rmdir()
    _one_line_error(lambda: b.ground_truth(b.expressions()[0]), "missing ground truth")
    write_json(tmp_path / "revos" / "meta_expressions_valid_.json",
               {"videos": {"v": {"expressions": {"0": {"exp": "x", "anno_id": [1]}}, "frames": FRAMES}}})
    write_frames(tmp_path / "revos" / "JPEGImages" / "v", FRAMES)
    _one_line_error(lambda: get_benchmark("revos", root=tmp_path / "revos").expressions(),
                    "meta_expressions_valid_.json", "videos.v.expressions.0.type_id")


def test_cli_list_and_published(capsys):
    from decafbench.benchmarks.published import published_jf, published_results
    from decafbench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["benchmarks", "list"])
    out = capsys.readouterr().out
    assert exc.value.code in (0, None)
    for name in BENCHMARKS.names():
        assert name in out
    assert published_jf("Qwen2.5-VL-7B", "ref-davis17") == 75.2
    assert published_jf("Qwen2.5-VL-7B", "reasonvos", "attn") == 20.6
    assert published_jf("Qwen2.5-VL-7B", "ref-davis17", setting="rollout start layer 7 of 28") == 69.2
    assert all(r.benchmark in BENCHMARKS for r in published_results())
    with pytest.raises(SystemExit):
        main(["benchmarks", "published", "--benchmark", "revos"])
    out = capsys.readouterr().out
    assert "not harness output" in out and "54.2" in out
