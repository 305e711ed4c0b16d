"""Issue 10's security and shared-record fixes, each shown by what it prevents."""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from decafbench.benchmarks.registry import get_benchmark
from decafbench.benchmarks.synth import SynthConfig, write_synth
from decafbench.cli import build_app
from decafbench.errors import InputError
from decafbench.locks import RecordLock
from decafbench.maskio import write_mask_png
from decafbench.runstore import RunWriter, atomic_write_json, atomic_write_text, read_record
from decafbench.safepath import check_id, safe_join

APP = build_app()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("untrusted")
    write_synth(SynthConfig(videos=3, frames=4, height=32, width=40, seed=1), base / "data")
    bench = get_benchmark("mevis", root=base / "data", split="valid_u")
    for e in bench.expressions():
        gt = bench.ground_truth(e)
        for name, mask in zip(gt.frames, gt.masks):
            write_mask_png(base / "pred" / e.video / e.exp_id / f"{name}.png", np.roll(mask, 1, axis=1))
    return base


def _evaluate(world, out, *extra):
    return CliRunner().invoke(APP, ["evaluate", "-b", "mevis", "--root", str(world / "data"), "--pred",
                                    str(world / "pred"), "--out", str(out), "-j", "1", *extra])


# -- ids and paths -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "../x", "a\\b", "a\0b", "/abs", "C:x", "a\nb", "x" * 256])
def test_check_id_refuses_anything_but_a_plain_name(bad):
    with pytest.raises(InputError, match="field where"):
        check_id(bad, "where", "meta.json")


@pytest.mark.parametrize("good", ["0", "synth000", "a b", "ü-ñ_1.2", "..a", "a..b", "-x"])
def test_check_id_accepts_plain_names(good):
    assert check_id(good, "where") == good


def test_safe_join_stays_inside_even_through_symlinks(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    assert safe_join(root, "a", "b.png") == root / "a" / "b.png"
    for parts in (("..", "x"), ("a", "../../x"), ("/etc/passwd",), ("a\0",)):
        with pytest.raises(InputError):
            safe_join(root, *parts)
    (root / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(InputError, match="outside the folder"):
        safe_join(root, "link", "x.png")


def test_a_traversal_id_never_writes_outside(world, tmp_path):
    """A prediction writer given a hostile id refuses before touching the disk."""
    writer = RunWriter(tmp_path / "rec", {"kind": "run"})
    for video, exp in (("../../x", "0"), ("v", "../.."), ("v", "a/b")):
        with pytest.raises(InputError):
            writer.prediction_dir(video, exp)
    assert writer.prediction_dir("v", "0") == tmp_path / "rec" / "predictions" / "v" / "0"
    writer.close()


# -- pickles ---------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_davis(tmp_path: Path) -> tuple[Path, Path]:
    from PIL import Image

    root, marker = tmp_path / "davis", tmp_path / "PWNED"
    meta = {"videos": {"v": {"expressions": {"0": {"exp": "a thing", "obj_id": "1"}}, "frames": ["00000"]}}}
    (root / "meta_expressions" / "valid").mkdir(parents=True)
    (root / "meta_expressions" / "valid" / "meta_expressions.json").write_text(json.dumps(meta))
    (root / "valid" / "JPEGImages" / "v").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(root / "valid" / "JPEGImages" / "v" / "00000.jpg")
    (root / "valid" / "mask_dict.pkl").write_bytes(pickle.dumps(_Evil(str(marker))))
    rec = tmp_path / "shared_record"
    rec.mkdir()
    (rec / "manifest.json").write_text(json.dumps({
        "kind": "run", "benchmark": "ref-davis17", "split": "valid", "root": str(root), "name": "sent to you",
        "variant": "decaf", "config": {"trust_pickle": True, "cache_dir": None}, "trust_pickle": True}))
    (rec / "per_expression.csv").write_text("video,exp_id,split,J,F,JF,error\nv,0,,0.5,0.5,0.5,\n")
    return rec, marker


def test_report_and_show_never_take_trust_from_a_record(tmp_path):
    rec, marker = _evil_davis(tmp_path)
    res = CliRunner().invoke(APP, ["report", str(rec), "--out", str(tmp_path / "r.html"), "--figures", "all",
                                   "--resamples", "50"])
    assert res.exit_code == 0, res.output
    assert not marker.exists(), "decaf report unpickled a file because a record said so"
    res = CliRunner().invoke(APP, ["show", str(rec), "--video", "v", "--exp", "0", "--out", str(tmp_path / "f.png")])
    assert res.exit_code == 2 and "--trust-pickle" in res.stderr
    assert not marker.exists(), "decaf show unpickled a file because a record said so"
    # the person running the command can still decide to trust it
    res = CliRunner().invoke(APP, ["show", str(rec), "--video", "v", "--exp", "0", "--out", str(tmp_path / "f.png"),
                                   "--trust-pickle"])
    assert marker.exists()


# -- export ------------------------------------------------------------------------------------------
def test_export_members_are_plain_and_every_png_checked(world, tmp_path):
    out = tmp_path / "sub.zip"
    res = CliRunner().invoke(APP, ["export", "-b", "mevis", "--root", str(world / "data"), "--pred",
                                   str(world / "pred"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert names and all(n.startswith("Annotations/") and ".." not in n.split("/") and not n.startswith("/")
                             for n in names)
        assert all(zf.read(n).startswith(b"\x89PNG\r\n\x1a\n") for n in names)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()


# -- files and JSON ---------------------------------------------------------------------------------
def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_json(tmp_path / "b.json", {})
        write_mask_png(tmp_path / "c.png", np.zeros((4, 4), bool))
    finally:
        os.umask(old)
    for name in ("a.txt", "b.json", "c.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name


def _strict(text: str):
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


def test_json_has_null_never_nan(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float64("nan"),
                                            "d": np.array([np.nan, 2.0])})
    assert _strict((tmp_path / "m.json").read_text()) == {"a": None, "b": [None, 1.5], "c": None, "d": [None, 2.0]}


def test_evaluate_manifest_is_strict_json_when_a_metric_is_nan(world, tmp_path):
    """A benchmark whose summary has NaN (no valid rows in a group) writes null."""
    writer = RunWriter(tmp_path / "rec", {"kind": "evaluate"})
    writer.add({"video": "v", "exp_id": "0", "J": float("nan"), "F": 0.5, "JF": float("nan")})
    writer.finalize(summary={"all": {"J": float("nan"), "n": 1}})
    writer.close()
    manifest = _strict((tmp_path / "rec" / "manifest.json").read_text())
    assert manifest["summary"]["all"]["J"] is None
    for part in (tmp_path / "rec" / "parts").glob("*.json"):
        _strict(part.read_text())


# -- evaluate records -----------------------------------------------------------------------------------
def test_evaluate_limit_over_a_full_record_rewrites_it_consistently(world, tmp_path):
    out = tmp_path / "rec"
    assert _evaluate(world, out).exit_code == 0
    full = read_record(out)
    assert len(full.table) == 6 and full.manifest["summary"]["all"]["n"] == 6
    assert _evaluate(world, out, "--limit", "2").exit_code == 0
    rec = read_record(out)
    assert len(rec.table) == 2 and rec.manifest["summary"]["all"]["n"] == 2 and rec.manifest["n_expressions"] == 2
    assert rec.manifest["summary"]["all"]["JF"] == pytest.approx(rec.table["JF"].mean(), abs=1e-12)


def test_evaluate_resumes_an_interrupted_record_and_redoes_a_malformed_part(world, tmp_path):
    out = tmp_path / "rec"
    assert _evaluate(world, out).exit_code == 0
    reference = read_record(out).table
    # make it an interrupted evaluation: no manifest or table, one part garbled, one part marked
    (out / "manifest.json").unlink()
    (out / "per_expression.csv").unlink()
    parts = sorted((out / "parts").glob("*.json"))
    parts[0].write_text("{ not json")
    parts[1].write_text("[]")
    kept = json.loads(parts[2].read_text())
    kept["marker"] = "kept from the first run"
    parts[2].write_text(json.dumps(kept))
    res = _evaluate(world, out)
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 2 and all("recomputing" in w for w in warnings)
    rec = read_record(out)
    assert len(rec.table) == len(reference)
    np.testing.assert_allclose(rec.table["JF"].to_numpy(), reference["JF"].to_numpy(), atol=1e-12)
    assert (rec.table["marker"] == "kept from the first run").sum() == 1  # resumed, not recomputed


def test_evaluate_refuses_a_record_of_another_kind(world, tmp_path):
    out = tmp_path / "rec"
    out.mkdir()
    manifest = {"kind": "run", "benchmark": "mevis"}
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "per_expression.csv").write_text("video,exp_id\n")
    res = _evaluate(world, out)
    assert res.exit_code == 2 and "kind 'run'" in res.stderr
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert not (out / "parts").exists()


# -- locks ---------------------------------------------------------------------------------------------
def test_second_writer_of_a_record_exits_2_naming_the_holder(world, tmp_path):
    out = tmp_path / "rec"
    code = textwrap.dedent("""
        import sys, time
        from decafbench.runstore import RunWriter
        w = RunWriter(sys.argv[1], {"kind": "evaluate"})
        print("ready", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        res = _evaluate(world, out)
        assert res.exit_code == 2
        assert f"in use by pid {holder.pid}" in res.stderr and res.stderr.count("\n") == 1
    finally:
        holder.kill()
        holder.wait()
    # the holder died by SIGKILL: its lock file is left behind, stale, and is taken over
    assert (out / ".lock").exists()
    res = _evaluate(world, out)
    assert res.exit_code == 0, res.output
    assert not (out / ".lock").exists()


def test_stale_lock_file_with_a_dead_pid_is_taken_over(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere"}))
    with RecordLock(tmp_path) as lock:
        assert lock.holder()["pid"] == os.getpid()


# -- pool workers die with their parent ----------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_parent_leaves_no_pool_workers(tmp_path):
    code = textwrap.dedent("""
        import os, time
        from decafbench.pool import parent_bound_pool

        def busy(_):
            time.sleep(120)

        pool = parent_bound_pool(2)
        futures = [pool.submit(busy, i) for i in range(2)]
        time.sleep(1.0)
        print(" ".join(str(p) for p in pool._processes), flush=True)
        time.sleep(120)
    """)
    script = tmp_path / "parent.py"
    script.write_text(code)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(p) for p in workers)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"orphan workers {left} survived kill -9 of their parent"
