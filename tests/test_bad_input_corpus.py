"""The bad-input corpus (issue 10): every case a careless user or an attacker tried, and more.

Each case builds a small world in a temporary folder (a MeViS-layout dataset, correct
predictions, a finished record, an unrelated folder and the working directory), breaks one
thing, runs one ``decaf`` command through typer's test runner and asserts:

* the exit code (2 for bad input);
* one line on stderr, ``error: ...``, naming the file or field given in the case, and no
  traceback anywhere in the output;
* that nothing was written outside the command's output folder: a snapshot of the whole
  temporary tree (paths, sizes, modes, mtimes) is the same before and after, except under the
  output folder; and a failed ``evaluate`` or ``export`` leaves no output behind.

No model is loaded: the cases run ``evaluate``, ``export``, ``show``, ``report`` and
``benchmarks``, and ``run`` with inputs refused before any model loads. README "Bad input" reports the count.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from decafbench.benchmarks.registry import get_benchmark
from decafbench.benchmarks.synth import SynthConfig, write_synth
from decafbench.cli import build_app
from decafbench.maskio import write_mask_png

APP = build_app()
H, W = 32, 40


# -- the world -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("world")
    data = base / "data"
    write_synth(SynthConfig(videos=2, frames=3, height=H, width=W, seed=0), data)
    bench = get_benchmark("mevis", root=data, split="valid_u")
    for e in bench.expressions():
        gt = bench.ground_truth(e)
        for name, mask in zip(gt.frames, gt.masks):
            write_mask_png(base / "pred" / e.video / e.exp_id / f"{name}.png", mask)
    (base / "elsewhere").mkdir()
    (base / "elsewhere" / "keep.txt").write_text("do not touch")
    (base / "work").mkdir()
    res = CliRunner().invoke(APP, ["evaluate", "-b", "mevis", "--root", str(data), "--pred", str(base / "pred"),
                                   "--out", str(base / "record"), "-j", "1"])
    assert res.exit_code == 0, res.output
    return base


@dataclass
class World:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def split(self) -> Path:
        return self.root / "data" / "valid_u"

    @property
    def meta_path(self) -> Path:
        return self.split / "meta_expressions.json"

    @property
    def pred(self) -> Path:
        return self.root / "pred"

    @property
    def record(self) -> Path:
        return self.root / "record"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def meta(self) -> dict:
        return json.loads(self.meta_path.read_text())

    def set_meta(self, meta: dict) -> None:
        self.meta_path.write_text(json.dumps(meta))

    def rename_video(self, old: str, new: str) -> None:
        m = self.meta()
        m["videos"][new] = m["videos"].pop(old)
        self.set_meta(m)

    def rename_expression(self, video: str, old: str, new: str) -> None:
        m = self.meta()
        exps = m["videos"][video]["expressions"]
        exps[new] = exps.pop(old)
        self.set_meta(m)

    def pred_png(self, video="synth000", exp="0", frame="00001") -> Path:
        return self.pred / video / exp / f"{frame}.png"


def snapshot(root: Path, skip: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if d == skip or skip in d.parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = d / name
            if p == skip:
                continue
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


# -- the cases ---------------------------------------------------------------------------------------
def _evaluate(w: World, *extra: str) -> list[str]:
    return ["evaluate", "-b", "mevis", "--root", str(w.data), "--pred", str(w.pred), "--out", str(w.out),
            "-j", "1", *extra]


def _export(w: World, *extra: str) -> list[str]:
    return ["export", "-b", "mevis", "--root", str(w.data), "--pred", str(w.pred), "--out", str(w.out / "sub.zip"),
            *extra]


@dataclass
class Case:
    id: str
    setup: Callable[[World], None]
    args: Callable[[World], list[str]]
    needles: Callable[[World], list[str]]  # substrings of the error line (file and field)
    code: int = 2
    out_must_not_exist: bool = True
    env: dict = field(default_factory=dict)


def noop(w: World) -> None:
    pass


def _jpeg_as_png(path: Path) -> None:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[5:20, 5:20] = 255
    Image.fromarray(rgb).save(path, format="JPEG")


def _davis_world(w: World, pickled: bool = False) -> Path:
    """A Ref-DAVIS17 layout (palette PNG annotations) under w.root/davis."""
    root = w.root / "davis"
    meta = {"videos": {"v": {"expressions": {"0": {"exp": "a thing", "obj_id": "1"}}, "frames": ["00000"]}}}
    (root / "meta_expressions" / "valid").mkdir(parents=True)
    (root / "meta_expressions" / "valid" / "meta_expressions.json").write_text(json.dumps(meta))
    (root / "valid" / "JPEGImages" / "v").mkdir(parents=True)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "valid" / "JPEGImages" / "v" / "00000.jpg")
    if pickled:
        (root / "valid" / "mask_dict.pkl").write_bytes(pickle.dumps(_Evil(str(w.root / "PWNED"))))
    else:
        (root / "valid" / "Annotations" / "v").mkdir(parents=True)
        lab = Image.fromarray(np.ones((H, W), np.uint8), "L").convert("P")
        lab.save(root / "valid" / "Annotations" / "v" / "00000.png")
    write_mask_png(w.pred / "v" / "0" / "00000.png", np.ones((H, W), bool))
    return root


class _Evil:
    """Unpickling this creates a file: the proof that a pickle was loaded."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _davis_eval(w: World, *extra: str) -> list[str]:
    return ["evaluate", "-b", "ref-davis17", "--root", str(w.root / "davis"), "--pred", str(w.pred),
            "--out", str(w.out), "-j", "1", *extra]


def _evil_record(w: World) -> None:
    """A record that says trust_pickle=true, over a dataset whose masks are a malicious pickle."""
    _davis_world(w, pickled=True)
    w.out.mkdir()
    rec = w.root / "evil_record"
    rec.mkdir()
    (rec / "manifest.json").write_text(json.dumps({
        "kind": "run", "benchmark": "ref-davis17", "split": "valid", "root": str(w.root / "davis"),
        "name": "evil", "trust_pickle": True, "config": {"trust_pickle": True}, "metrics": ["J", "F", "JF"]}))
    (rec / "per_expression.csv").write_text("video,exp_id,split,J,F,JF,error\nv,0,,0.5,0.5,0.5,\n")


def _record_of_kind(w: World, kind: str) -> None:
    rec = w.out / "decaf__coarse"
    rec.mkdir(parents=True)
    (rec / "manifest.json").write_text(json.dumps({"kind": kind, "benchmark": "mevis"}))


def _run(w: World, *extra: str) -> list[str]:
    return ["run", "-b", "mevis", "--root", str(w.data), "--masks", "coarse", "--out", str(w.out), "--no-cache",
            *extra]


def _lock_holder(w: World, folder: Path | None = None) -> None:
    """A live process holding the output folder's lock."""
    folder = folder or w.out
    folder.mkdir(parents=True)
    code = ("import sys,time; from decafbench.locks import RecordLock; lock = RecordLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    w.holder = proc  # type: ignore[attr-defined]


def _symlink_escape(w: World) -> None:
    target = w.root / "elsewhere" / "synth000"
    shutil.copytree(w.pred / "synth000", target)
    shutil.rmtree(w.pred / "synth000")
    (w.pred / "synth000").symlink_to(target, target_is_directory=True)


def _run_record_in_out(w: World, finished: bool) -> None:
    w.out.mkdir()
    if finished:
        (w.out / "manifest.json").write_text(json.dumps({"kind": "run", "benchmark": "mevis"}))
    else:
        (w.out / "identity.json").write_text(json.dumps({"benchmark": "mevis", "model": "qwen2-vl:tiny"}))


def _meta_edit(fn: Callable[[dict], None]) -> Callable[[World], None]:
    def setup(w: World) -> None:
        m = w.meta()
        fn(m)
        w.set_meta(m)
    return setup


def _set(path_fn, text) -> Callable[[World], None]:
    return lambda w: path_fn(w).write_text(text)


META = lambda w: [str(w.meta_path)]  # noqa: E731

CASES: list[Case] = [
    # -- ids from dataset files are data (path traversal) -----------------------------------------
    Case("video-id-dotdot", lambda w: w.rename_video("synth000", "../../elsewhere/x"), _evaluate,
         lambda w: [str(w.meta_path), "videos (a video id)", "path separator"]),
    Case("video-id-dotdot-only", lambda w: w.rename_video("synth000", ".."), _evaluate,
         lambda w: [str(w.meta_path), "video id", "'..'"]),
    Case("video-id-absolute", lambda w: w.rename_video("synth000", str(w.root.parent / "evil")), _evaluate,
         lambda w: [str(w.meta_path), "video id"]),
    Case("video-id-backslash", lambda w: w.rename_video("synth000", "..\\..\\x"), _evaluate,
         lambda w: [str(w.meta_path), "path separator"]),
    Case("video-id-nul", lambda w: w.rename_video("synth000", "a\u0000b"), _evaluate,
         lambda w: [str(w.meta_path), "NUL"]),
    Case("video-id-empty", lambda w: w.rename_video("synth000", ""), _evaluate,
         lambda w: [str(w.meta_path), "is empty"]),
    Case("exp-id-dotdot", lambda w: w.rename_expression("synth000", "0", "../../../x"), _evaluate,
         lambda w: [str(w.meta_path), "videos.synth000.expressions (an expression id)"]),
    Case("exp-id-newline", lambda w: w.rename_expression("synth000", "0", "a\nb"), _evaluate,
         lambda w: [str(w.meta_path), "control character"]),
    Case("exp-id-dot", lambda w: w.rename_expression("synth000", "0", "."), _evaluate,
         lambda w: [str(w.meta_path), "expression id"]),
    Case("frame-name-dotdot", _meta_edit(lambda m: m["videos"]["synth000"].__setitem__("frames", ["../../x"])),
         _evaluate, lambda w: [str(w.meta_path), "videos.synth000.frames[0]"]),
    Case("export-video-id-dotdot", lambda w: w.rename_video("synth000", "../../elsewhere/y"), _export,
         lambda w: [str(w.meta_path), "video id"]),
    Case("export-exp-id-dotdot", lambda w: w.rename_expression("synth001", "1", "../../z"), _export,
         lambda w: [str(w.meta_path), "expression id"]),
    Case("pred-symlink-leaves-folder", _symlink_escape, _evaluate, lambda w: ["outside the folder", "synth000"]),
    Case("export-symlink-leaves-folder", _symlink_escape, _export, lambda w: ["outside the folder"]),
    Case("show-video-arg-dotdot", noop,
         lambda w: ["show", str(w.record), "--video", "../../elsewhere", "--exp", "0", "--out", str(w.out / "f.png")],
         lambda w: ["../../elsewhere"]),
    Case("show-exp-arg-dotdot", noop,
         lambda w: ["show", str(w.record), "--video", "synth000", "--exp", "../0", "--out", str(w.out / "f.png")],
         lambda w: ["'../0'"]),
    # -- pickles: trust only from the command line ---------------------------------------------------------
    Case("evaluate-pickle-without-trust", lambda w: _davis_world(w, pickled=True), _davis_eval,
         lambda w: ["mask_dict.pkl", "--trust-pickle"]),
    Case("show-pickle-trusted-by-record", _evil_record,
         lambda w: ["show", str(w.root / "evil_record"), "--video", "v", "--exp", "0", "--out", str(w.out / "f.png")],
         lambda w: ["mask_dict.pkl", "--trust-pickle"], out_must_not_exist=False),
    # -- not a PNG / corrupt / wrong size ---------------------------------------------------------------
    Case("pred-jpeg-renamed-png", lambda w: _jpeg_as_png(w.pred_png()), _evaluate,
         lambda w: [str(w.pred_png()), "not a PNG file (it is a JPEG)"]),
    Case("pred-truncated-png", lambda w: w.pred_png().write_bytes(w.pred_png().read_bytes()[:40]), _evaluate,
         lambda w: [str(w.pred_png()), "corrupt"]),
    Case("pred-garbage", lambda w: w.pred_png().write_bytes(b"hello"), _evaluate,
         lambda w: [str(w.pred_png()), "not a PNG"]),
    Case("pred-empty-file", lambda w: w.pred_png().write_bytes(b""), _evaluate,
         lambda w: [str(w.pred_png()), "not a PNG"]),
    Case("pred-wrong-size", lambda w: write_mask_png(w.pred_png(), np.ones((H + 1, W), bool)), _evaluate,
         lambda w: [str(w.pred_png()), "ground truth is"]),
    Case("pred-missing", lambda w: w.pred_png().unlink(), _evaluate,
         lambda w: [str(w.pred_png()), "missing prediction"]),
    Case("gt-label-jpeg-renamed-png",
         lambda w: (_davis_world(w), _jpeg_as_png(w.root / "davis/valid/Annotations/v/00000.png")), _davis_eval,
         lambda w: ["Annotations/v/00000.png", "it is a JPEG"]),
    Case("export-jpeg-renamed-png", lambda w: _jpeg_as_png(w.pred_png()), _export,
         lambda w: [str(w.pred_png()), "it is a JPEG"]),
    Case("export-wrong-size", lambda w: write_mask_png(w.pred_png(), np.ones((H, W + 3), bool)), _export,
         lambda w: [str(w.pred_png()), "the frame is 40x32"]),
    Case("export-truncated-png", lambda w: w.pred_png().write_bytes(w.pred_png().read_bytes()[:50]), _export,
         lambda w: [str(w.pred_png()), "corrupt"]),
    Case("export-missing-mask", lambda w: w.pred_png().unlink(), _export,
         lambda w: [str(w.pred), "masks missing"]),
    Case("export-out-is-folder", lambda w: (w.out / "sub.zip").mkdir(parents=True), _export,
         lambda w: ["sub.zip", "is a folder"], out_must_not_exist=False),
    Case("export-out-under-file", lambda w: w.out.write_text("x"), _export,
         lambda w: [str(w.out / "sub.zip"), "is a file"], out_must_not_exist=False),
    # -- malformed dataset files ------------------------------------------------------------------------
    Case("meta-malformed-json", _set(lambda w: w.meta_path, "{\"videos\": "), _evaluate,
         lambda w: [str(w.meta_path), "malformed JSON"]),
    Case("meta-no-videos", _set(lambda w: w.meta_path, "{}"), _evaluate, lambda w: [str(w.meta_path), "videos"]),
    Case("meta-expressions-not-object", _meta_edit(lambda m: m["videos"]["synth000"].__setitem__("expressions", [])),
         _evaluate, lambda w: [str(w.meta_path), "videos.synth000.expressions"]),
    Case("meta-anno-id-wrong-type",
         _meta_edit(lambda m: m["videos"]["synth000"]["expressions"]["0"].__setitem__("anno_id", {"a": 1})),
         _evaluate, lambda w: [str(w.meta_path), "videos.synth000.expressions.0.anno_id"]),
    Case("meta-frames-missing-on-disk", _meta_edit(lambda m: m["videos"]["synth000"]["frames"].append("00009")),
         _evaluate, lambda w: ["JPEGImages/synth000", "00009.jpg"]),
    Case("meta-not-utf8", lambda w: w.meta_path.write_bytes(b"\xff\xfe{"), _evaluate,
         lambda w: [str(w.meta_path), "not UTF-8"]),
    Case("mask-dict-malformed", _set(lambda w: w.split / "mask_dict.json", "[1, 2"), _evaluate,
         lambda w: ["mask_dict.json", "malformed JSON"]),
    Case("mask-dict-bad-rle", lambda w: (w.split / "mask_dict.json").write_text(json.dumps(
        {k: [{"size": [H, W], "counts": "!!!"}] * 3 for k in map(str, range(8))})), _evaluate,
         lambda w: ["mask_dict.json", "malformed RLE"]),
    Case("mask-dict-rle-wrong-size", lambda w: (w.split / "mask_dict.json").write_text(json.dumps(
        {k: [{"size": [H, W + 1], "counts": [H * (W + 1)]}] * 3 for k in map(str, range(8))})), _evaluate,
         lambda w: ["mask_dict.json", "differs from"]),
    Case("frames-folder-missing", lambda w: shutil.rmtree(w.split / "JPEGImages" / "synth001"), _evaluate,
         lambda w: ["JPEGImages/synth001", "missing frames folder"]),
    Case("root-missing", noop, lambda w: _evaluate(w)[:4] + [str(w.root / "nope")] + _evaluate(w)[5:],
         lambda w: ["nope", "dataset root"]),
    Case("unknown-benchmark", noop, lambda w: ["evaluate", "-b", "mevsi", "--root", str(w.data), "--pred",
                                                str(w.pred), "--out", str(w.out)], lambda w: ["mevsi", "mevis"]),
    Case("unknown-split", noop, lambda w: _evaluate(w, "--split", "test"), lambda w: ["split", "'test'"]),
    # -- options and output folders ----------------------------------------------------------------------
    Case("evaluate-workers-negative", noop, lambda w: _evaluate(w)[:-2] + ["--workers", "-3"],
         lambda w: ["--workers", "-3"]),
    Case("evaluate-limit-negative", noop, lambda w: _evaluate(w, "--limit", "-7"), lambda w: ["--limit", "-7"]),
    Case("evaluate-limit-zero", noop, lambda w: _evaluate(w, "--limit", "0"), lambda w: ["--limit", "0"]),
    Case("evaluate-missing-policy", noop, lambda w: _evaluate(w, "--missing", "skip"), lambda w: ["--missing", "skip"]),
    Case("evaluate-pred-missing", lambda w: shutil.rmtree(w.pred), _evaluate,
         lambda w: [str(w.pred), "prediction folder does not exist"]),
    Case("evaluate-out-is-file", lambda w: w.out.write_text("x"), _evaluate,
         lambda w: [str(w.out), "is a file"], out_must_not_exist=False),
    Case("evaluate-out-under-file", lambda w: w.out.write_text("x"),
         lambda w: _evaluate(w)[:-4] + ["--out", str(w.out / "sub"), "-j", "1"],
         lambda w: [str(w.out / "sub"), "is a file"], out_must_not_exist=False),
    Case("evaluate-into-run-record", lambda w: _run_record_in_out(w, True), _evaluate,
         lambda w: [str(w.out), "kind 'run'"], out_must_not_exist=False),
    Case("evaluate-into-unfinished-run", lambda w: _run_record_in_out(w, False), _evaluate,
         lambda w: [str(w.out), "kind 'run'"], out_must_not_exist=False),
    Case("evaluate-folder-locked", lambda w: _lock_holder(w), _evaluate,
         lambda w: [str(w.out), "in use by pid", "on host"], out_must_not_exist=False),
    # -- records read by show / report --------------------------------------------------------------------
    Case("report-no-manifest", lambda w: (w.record / "manifest.json").unlink(),
         lambda w: ["report", str(w.record), "--out", str(w.out / "r.html"), "--figures", "0"],
         lambda w: ["manifest.json", "missing manifest"]),
    Case("report-malformed-manifest", lambda w: (w.record / "manifest.json").write_text("{nope"),
         lambda w: ["report", str(w.record), "--out", str(w.out / "r.html"), "--figures", "0"],
         lambda w: ["manifest.json", "malformed JSON"]),
    Case("report-missing-table", lambda w: (w.record / "per_expression.csv").unlink(),
         lambda w: ["report", str(w.record), "--out", str(w.out / "r.html"), "--figures", "0"],
         lambda w: ["per_expression.csv", "missing"]),
    Case("report-out-not-html", noop, lambda w: ["report", str(w.record), "--out", str(w.out / "r.txt")],
         lambda w: ["--out", "html"]),
    Case("show-cache-key-path", lambda w: (w.record / "per_expression.csv").write_text(
        "video,exp_id,split,J,F,JF,error,cache_key,key_frames\nsynth000,0,,1,1,1,,../../../etc/passwd,00000\n"),
         lambda w: ["show", str(w.record), "--video", "synth000", "--exp", "0", "--cache-dir", str(w.root / "work"),
                    "--out", str(w.out / "f.png")],
         lambda w: ["cache key", "not a hex digest"]),
    Case("report-out-is-folder", lambda w: (w.out / "r.html").mkdir(parents=True),
         lambda w: ["report", str(w.record), "--out", str(w.out / "r.html"), "--figures", "0", "--resamples", "20"],
         lambda w: ["r.html", "is a folder"], out_must_not_exist=False),
    Case("show-out-is-folder", lambda w: (w.out / "f.png").mkdir(parents=True),
         lambda w: ["show", str(w.record), "--video", "synth000", "--exp", "0", "--out", str(w.out / "f.png")],
         lambda w: ["f.png", "is a folder"], out_must_not_exist=False),
    Case("show-out-under-file", lambda w: w.out.write_text("x"),
         lambda w: ["show", str(w.record), "--video", "synth000", "--exp", "0", "--out", str(w.out / "f.png")],
         lambda w: ["f.png", "parent of it is a file"], out_must_not_exist=False),
    # -- decaf run: everything below fails before any model loads --------------------------------------
    Case("run-video-id-dotdot", lambda w: w.rename_video("synth000", "../../../elsewhere/r"), _run,
         lambda w: [str(w.meta_path), "video id"]),
    Case("run-exp-id-slash", lambda w: w.rename_expression("synth001", "0", "a/b"), _run,
         lambda w: [str(w.meta_path), "expression id", "path separator"]),
    Case("run-into-evaluate-record", lambda w: _record_of_kind(w, "evaluate"), _run,
         lambda w: [str(w.out / "decaf__coarse"), "kind 'evaluate'"], out_must_not_exist=False),
    Case("run-folder-locked", lambda w: _lock_holder(w, w.out / "decaf__coarse"), _run,
         lambda w: [str(w.out / "decaf__coarse"), "in use by pid"], out_must_not_exist=False),
    # -- benchmarks commands ------------------------------------------------------------------------
    Case("convert-pickle-without-trust", lambda w: _davis_world(w, pickled=True),
         lambda w: ["benchmarks", "convert", "--root", str(w.root / "davis")],
         lambda w: ["mask_dict.pkl", "--trust-pickle"]),
    Case("convert-root-missing", noop, lambda w: ["benchmarks", "convert", "--root", str(w.root / "nope")],
         lambda w: ["nope", "does not exist"]),
    Case("synth-size-malformed", noop, lambda w: ["benchmarks", "synth", "--out", str(w.out), "--size", "big"],
         lambda w: ["--size", "'big'"]),
    Case("synth-size-too-small", noop, lambda w: ["benchmarks", "synth", "--out", str(w.out), "--size", "8x8"],
         lambda w: ["--size", "too small"]),
    Case("show-width-too-small", noop,
         lambda w: ["show", str(w.record), "--video", "synth000", "--exp", "0", "--width", "3"],
         lambda w: ["--width"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, template: Path, tmp_path: Path, monkeypatch) -> None:
    w = World(tmp_path / "w")
    shutil.copytree(template, w.root, symlinks=True)
    # the record was written by evaluate in the template folder: its paths still point there, fine
    case.setup(w)
    monkeypatch.chdir(w.root / "work")
    before = snapshot(w.root, w.out)
    out_existed = w.out.exists()
    try:
        res = CliRunner().invoke(APP, case.args(w), catch_exceptions=True)
    finally:
        holder = getattr(w, "holder", None)
        if holder is not None:
            holder.kill()
            holder.wait()
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == case.code, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, lines
    for needle in case.needles(w):
        assert needle in errors[0], (needle, errors[0])
    after = snapshot(w.root, w.out)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))
    assert not (w.root / "PWNED").exists(), "a pickle was loaded"
    assert not (tmp_path / "elsewhere").exists() and not (w.root.parent / "evil").exists()
    if case.out_must_not_exist and not out_existed:
        assert not w.out.exists() or not any(w.out.rglob("*")), sorted(map(str, w.out.rglob("*")))


def test_corpus_size() -> None:
    assert len(CASES) >= 40  # issue 10: at least 40 cases
