"""`decaf run --executor ray` and multi-model sweeps, end to end, on a real local Ray instance.

The Ray instance is the session's (tests/conftest.py: 2 CPUs, 200 MB object store); decaf
finds it initialized and uses it. The fault tests with a stand-in worker are in
tests/test_executors.py; here the real pipeline runs (tiny models).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from decafbench.benchmarks.synth import SynthConfig, write_synth
from decafbench.cli import build_app
from decafbench.runstore import read_record

runner = CliRunner()
EMBEDDED = ["--limit", "4", "--frames", "4", "--masks", "coarse", "--no-cache", "--max-new-tokens", "8"]


def invoke(*args, code=0):
    res = runner.invoke(build_app(), [str(a) for a in args])
    assert res.exit_code == code, res.output + repr(res.exception)
    return res


def numbers(run_dir: Path) -> pd.DataFrame:
    """A record's table without the timing columns (the only ones that may differ)."""
    t = read_record(run_dir).table
    return t[[c for c in t.columns if not c.startswith("time_")]]


def predictions(run_dir: Path) -> dict:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in (run_dir / "predictions").rglob("*.png")}


def parts(run_dir: Path) -> list:
    return sorted(p.name for p in (run_dir / "parts").glob("*.json"))


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    invoke("run", *EMBEDDED, "--out", out)
    return out / "decaf__coarse"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synth(SynthConfig(videos=3, frames=6, height=48, width=64, seed=5, expressions_per_video=2), root)
    return root


# -- bad settings: one line, exit 2, before Ray starts or any model loads -----------------------------
@pytest.mark.parametrize("args, message", [
    (["--executor", "dask"], "--executor: unknown executor 'dask'"),
    (["--executor", "ray", "--workers", "0"], "--workers: must be >= 1"),
    (["--workers", "2"], "--workers: the local executor runs one worker"),
    (["--gpus-per-worker", "1"], "--gpus-per-worker: needs --executor ray"),
])
def test_bad_executor_settings_exit_2_with_one_line(tmp_path, args, message):
    res = invoke("run", *EMBEDDED, "--out", tmp_path / "out", *args, code=2)
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not list((tmp_path / "out").rglob("*.json"))  # nothing ran


def test_unreachable_ray_address_exits_2_before_any_model_loads(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import sys; from decafbench.cli import main; "
            f"sys.argv = ['decaf', 'run', '--executor', 'ray', '--ray-address', '127.0.0.1:{port}', "
            f"'--out', {str(tmp_path / 'out')!r}, '--masks', 'coarse']; main(sys.argv[1:])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--ray-address 127.0.0.1:{port}: unreachable" in lines[0]


# -- Ray, for real ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_worker_ray_run_equals_the_serial_run_exactly(ray_session, serial, tmp_path):
    invoke("run", *EMBEDDED, "--out", tmp_path, "--executor", "ray", "--workers", "2")
    rec = tmp_path / "decaf__coarse"
    pd.testing.assert_frame_equal(numbers(rec), numbers(serial))
    assert predictions(rec) == predictions(serial)
    manifest = read_record(rec).manifest
    assert manifest["config"]["executor"] == "ray" and manifest["config"]["workers"] == 2
    assert manifest["n_expressions"] == 4 and manifest["adapter_config"] == read_record(serial).manifest["adapter_config"]


@pytest.mark.slow
def test_worker_sigkilled_mid_run_loses_and_duplicates_nothing(ray_session, synth, tmp_path):
    from decafbench.config import RunConfig
    from decafbench.driver import RunDriver
    from decafbench.executors import RayExecutor, run_jobs

    settings = {"benchmark": "mevis", "root": synth, "split": "valid_u", "frames": 4, "masks": "coarse",
                "cache": None, "max_new_tokens": 8}
    invoke("run", "-b", "mevis", "--root", synth, "--split", "valid_u", "--frames", 4, "--masks", "coarse",
           "--no-cache", "--max-new-tokens", 8, "--out", tmp_path / "serial")
    config = RunConfig.from_mapping({**settings, "out": tmp_path / "ray"})
    driver = RunDriver(config, ["test"])
    jobs = driver.prepare()
    killed = []
    with RayExecutor(workers=2) as ex:
        class KillOnFirst:  # a progress display that SIGKILLs the other worker when the first row lands
            def advance(self, worker, failed=0):
                if not killed:
                    other = next(s for s in ex.slots if s.index != worker)
                    if other.pid:
                        os.kill(other.pid, signal.SIGKILL)
                        killed.append(other.pid)

            def set_status(self, text):
                pass

        result = run_jobs(driver, jobs, ex, KillOnFirst())
    assert killed and result.failed == 0 and result.expressions == 6
    rec = tmp_path / "ray" / "decaf__coarse"
    assert len(parts(rec)) == 6 and len(read_record(rec).table) == 6
    pd.testing.assert_frame_equal(numbers(rec), numbers(tmp_path / "serial" / "decaf__coarse"))


@pytest.mark.slow
def test_killed_driver_rerun_resumes(ray_session, synth, tmp_path):
    args = ["-b", "mevis", "--root", str(synth), "--split", "valid_u", "--frames", "4", "--masks", "coarse",
            "--no-cache", "--max-new-tokens", "8", "--out", str(tmp_path / "out"), "--executor", "ray", "--workers", "2"]
    address = ray_session.get_runtime_context().gcs_address
    code = "import sys; from decafbench.cli import main; main(sys.argv[1:])"
    driver = subprocess.Popen([sys.executable, "-c", code, "run", *args, "--ray-address", address],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rec = tmp_path / "out" / "decaf__coarse"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and driver.poll() is None:
        if (rec / "parts").is_dir() and parts(rec):
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the driver finished before it could be killed"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = parts(rec)
    assert 1 <= len(before) < 6 and not (rec / "per_expression.csv").exists()
    stamps = {p: (rec / "parts" / p).stat().st_mtime_ns for p in before}
    invoke("run", *args)  # the same command (here in-process, on the session's Ray)
    assert len(parts(rec)) == 6 and len(read_record(rec).table) == 6
    assert all((rec / "parts" / p).stat().st_mtime_ns == s for p, s in stamps.items())  # not redone


@pytest.mark.slow
def test_two_model_sweep_on_ray_writes_one_leaderboard(ray_session, synth, tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f"""
[run]
model = ["qwen2-vl:tiny", "internvl:tiny"]
benchmark = ["mevis"]
root = {{ mevis = "{synth.as_posix()}" }}
split = "valid_u"
frames = 4
max_new_tokens = 8
masks = "coarse"
limit = 2
cache = "{(tmp_path / 'cache').as_posix()}"
out = "{(tmp_path / 'out').as_posix()}"
executor = "ray"
workers = 2
""")
    invoke("sweep", sweep)
    out = tmp_path / "out"
    for model in ("qwen2-vl-tiny", "internvl-tiny"):
        rec = read_record(out / model / "mevis" / "decaf__coarse")
        assert len(rec.table) == 2 and rec.manifest["adapter"] == model.removesuffix("-tiny")
    board = (out / "leaderboard.md").read_text()
    rows = [line for line in board.splitlines() if line.startswith("| ") and not line.startswith("| adapter")]
    assert sorted(r.split("|")[1].strip() for r in rows) == ["internvl", "qwen2-vl"]  # one table, both models
    assert "significantly" in board  # ... with its significance marks
    assert sorted(p.name for p in out.iterdir()) == ["internvl-tiny", "leaderboard.md", "qwen2-vl-tiny"]
