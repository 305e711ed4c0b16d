"""Executors: the local one, and the Ray one run for real on a local Ray instance.

The Ray tests here use a small stand-in worker (pickled by value into the actors) so they can
time and crash jobs at will; tests/test_run_ray.py runs the real pipeline on Ray.
"""

import hashlib
import io
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

import pytest

from decafbench.errors import InputError
from decafbench.executors import (JobResult, LocalExecutor, RayExecutor, check_ray_address, failure_rows,
                                  group_by_video, make_executor)
from decafbench.progress import RunProgress


@dataclass(frozen=True)
class Expr:
    video: str
    exp_id: str
    text: str = ""
    split: str = ""


@dataclass(frozen=True)
class FakeJob:
    expression: Expr
    records: tuple = ("a__coarse", "b__coarse")

    @property
    def key(self):
        return (self.expression.video, self.expression.exp_id)


class FakeWorker:
    """Deterministic rows; 'bad' input becomes an error row (as the real Worker does); 'crash'
    takes the whole process down, as a segfault or the OOM killer would."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.loaded = False

    def load(self):
        self.loaded = True
        return self

    def process(self, job):
        assert self.loaded
        e = job.expression
        if e.text == "crash":
            os._exit(1)
        time.sleep(self.delay)
        if e.text == "bad":
            return failure_rows(job, "InputError: corrupt frame")
        value = int(hashlib.sha256(f"{e.video}/{e.exp_id}".encode()).hexdigest()[:8], 16) / 2**32
        return [(name, {"video": e.video, "exp_id": e.exp_id, "split": e.split, "error": "", "JF": value,
                        "pid": os.getpid()}) for name in job.records]


def make_fake(delay=0.0):
    return FakeWorker(delay)


def jobs(n_videos=3, per_video=2, texts=None):
    out = []
    for v in range(n_videos):
        for k in range(per_video):
            text = (texts or {}).get((f"v{v}", str(k)), "")
            out.append(FakeJob(Expr(f"v{v}", str(k), text)))
    return out


def collect(executor, make_worker, js):
    results: list[JobResult] = []
    executor.run(make_worker, group_by_video(js), results.append)
    return results


def by_key(results):
    return {(r.job.key, name): {k: v for k, v in row.items() if k != "pid"} for r in results for name, row in r.rows}


# -- no Ray -------------------------------------------------------------------------------------------
def test_group_by_video_keeps_first_seen_order_and_job_order():
    js = [FakeJob(Expr(v, e)) for v, e in [("b", "0"), ("a", "0"), ("b", "1"), ("c", "0"), ("a", "1")]]
    assert [[j.key for j in g] for g in group_by_video(js)] == [
        [("b", "0"), ("b", "1")], [("a", "0"), ("a", "1")], [("c", "0")]]


def test_local_executor_runs_every_job_once_in_order_after_one_load():
    made = []

    def make():
        made.append(FakeWorker())
        return made[-1]

    js = jobs(texts={("v1", "0"): "bad"})
    results = collect(LocalExecutor(), make, js)
    assert len(made) == 1
    assert [r.job.key for r in results] == [j.key for j in js]
    bad = [r for r in results if r.job.key == ("v1", "0")][0]
    assert all(row["error"] == "InputError: corrupt frame" for _, row in bad.rows)


def test_local_executor_never_imports_ray():
    code = ("import sys; from decafbench.executors import LocalExecutor, make_executor; "
            "make_executor('local'); assert 'ray' not in sys.modules")
    import subprocess

    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="dask"), "unknown executor 'dask'"),
    (dict(name="ray", workers=0), "--workers: must be >= 1"),
    (dict(name="local", workers=2), "use --executor ray"),
    (dict(name="local", ray_address="10.0.0.1:6379"), "--ray-address: needs --executor ray"),
    (dict(name="ray", gpus_per_worker=-1), "--gpus-per-worker: must be >= 0"),
])
def test_bad_executor_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")) as info:
        make_executor(**kwargs)
    assert "\n" not in str(info.value)


def test_unreachable_ray_address_is_one_line_error_without_starting_ray():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match=f"--ray-address 127.0.0.1:{port}: unreachable"):
        check_ray_address(f"127.0.0.1:{port}", timeout=2)
    with pytest.raises(InputError, match="expected HOST:PORT"):
        check_ray_address("nonsense")


def test_plain_progress_says_done_failed_rates_and_eta():
    stream = io.StringIO()
    with RunProgress(plain=True, stream=stream, interval=3600) as p:
        p.start(4)
        p.advance(0)
        p.advance(1, failed=1)
        line = p.line()
    assert line.startswith("decaf run: 2/4 expressions (50%), 1 failed,")
    assert "[w0 " in line and "w1 " in line and "ETA 0:" in line
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("decaf run: 0/4") and lines[-1].startswith("decaf run: 2/4")


def test_plain_progress_prints_while_a_long_job_runs():
    stream = io.StringIO()
    with RunProgress(plain=True, stream=stream, interval=0.05) as p:
        p.start(1)
        time.sleep(0.3)  # nothing finishes, yet lines keep coming
    assert len(stream.getvalue().splitlines()) >= 4


# -- Ray, for real ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray(ray_session):
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return ray_session


@pytest.mark.slow
def test_ray_two_workers_equal_serial_and_pull_whole_videos(ray):
    js = jobs(n_videos=4, per_video=3, texts={("v2", "1"): "bad"})
    serial = collect(LocalExecutor(), make_fake, js)
    with RayExecutor(workers=2) as ex:
        results = collect(ex, lambda: make_fake(0.2), js)
    assert sorted(r.job.key for r in results) == sorted(j.key for j in js)  # each exactly once
    assert by_key(results) == by_key(serial)
    # both workers got work, and every video ran on one process (its frames read once)
    assert {r.worker for r in results} == {0, 1}
    pids = {}
    for r in results:
        pids.setdefault(r.job.expression.video, set()).update(row["pid"] for _, row in r.rows if "pid" in row)
    assert all(len(p) == 1 for p in pids.values())


@pytest.mark.slow
def test_ray_worker_killed_by_sigkill_mid_job_loses_and_duplicates_nothing(ray):
    js = jobs(n_videos=4, per_video=2)
    serial = collect(LocalExecutor(), make_fake, js)
    killed = []
    results: list[JobResult] = []
    with RayExecutor(workers=2) as ex:
        def on_result(r):
            results.append(r)
            if not killed:  # SIGKILL the other worker's process while it is inside a job
                other = next(s for s in ex.slots if s.index != r.worker)
                if other.pid:
                    os.kill(other.pid, signal.SIGKILL)
                    killed.append(other.pid)

        ex.run(lambda: make_fake(1.0), group_by_video(js), on_result)
    assert killed
    keys = [r.job.key for r in results]
    assert sorted(keys) == sorted(j.key for j in js) and len(keys) == len(set(keys))
    assert by_key(results) == by_key(serial)


@pytest.mark.slow
def test_ray_kill_of_an_actor_requeues_its_jobs_on_the_others(ray):
    js = jobs(n_videos=4, per_video=2)
    serial = collect(LocalExecutor(), make_fake, js)
    results: list[JobResult] = []
    with RayExecutor(workers=2) as ex:
        def on_result(r):
            results.append(r)
            if len(results) == 1:
                other = next(s for s in ex.slots if s.index != r.worker)
                ray.kill(other.actor)  # no restart: gone for good

        ex.run(lambda: make_fake(0.5), group_by_video(js), on_result)
    keys = [r.job.key for r in results]
    assert sorted(keys) == sorted(j.key for j in js) and len(keys) == len(set(keys))
    assert by_key(results) == by_key(serial)


@pytest.mark.slow
def test_ray_job_that_kills_every_worker_is_recorded_failed_not_retried_forever(ray):
    js = jobs(n_videos=2, per_video=2, texts={("v0", "1"): "crash"})
    results: list[JobResult] = []
    ex = RayExecutor(workers=2, max_restarts=1, max_task_retries=1, max_attempts=2)
    with ex:
        ex.run(make_fake, group_by_video(js), results.append)
    keys = [r.job.key for r in results]
    assert sorted(keys) == sorted(j.key for j in js)
    crash = [r for r in results if r.job.key == ("v0", "1")][0]
    assert all(row["error"].startswith("WorkerDied: 2 worker processes died") for _, row in crash.rows)
    assert all(not row["error"] for r in results if r is not crash for _, row in r.rows)
