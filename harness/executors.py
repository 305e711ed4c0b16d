"""Executors: who runs a run's jobs. ``local`` (in-process, the default) or ``ray``.

The driver (:mod:`decafbench.driver`) plans the record folders, finds the pending jobs and
writes every result; an executor only moves jobs to workers and rows back:

    executor.run(make_worker, groups, on_result)

``make_worker()`` builds a :class:`~decafbench.pipeline.Worker` (picklable: a Ray actor
calls it in its own process, then ``load()`` loads the MLLM, SAM2 and the attention cache
once); ``groups`` are the pending jobs grouped by video (:func:`group_by_video`), so a worker
reads a video's frames once; ``on_result(JobResult)`` is called in the driver for each
finished job, in completion order. The driver alone writes part files (keyed by video and
expression, so a retried job overwrites its part), ``per_expression.csv`` and the manifest.

The Ray executor (``decaf run --executor ray``) keeps one actor per worker. Work is pulled,
never split by rank: an idle actor takes the next video group; ``ray.wait`` returns rows as
they finish. Faults are Ray's: an actor whose process dies is restarted (``max_restarts``),
which reloads its models, and its unfinished calls are retried (``max_task_retries``); an
actor that is gone for good has its unfinished jobs put back in the queue for the others,
and a job that has taken down ``max_attempts`` processes is recorded as failed instead of
being retried forever. Bad input never reaches Ray's retries: the worker turns it into an
error row. This module imports Ray only when the Ray executor starts.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .config import EXECUTORS  # noqa: F401 - re-exported
from .errors import InputError

#: the local Ray instance decaf starts: small, so it fits beside everything else on a workstation
LOCAL_OBJECT_STORE_BYTES = 200 * 1024 * 1024


@dataclass
class JobResult:
    """One finished job, as the driver receives it."""

    job: Any  # decafbench.pipeline.Job
    rows: list  # [(record name, row dict), ...]
    worker: int  # which worker slot produced it (0..workers-1)
    seconds: float  # wall time inside the worker
    attempts: int = 1  # > 1 when a worker died while processing it and it ran again elsewhere


def group_by_video(jobs: Iterable[Any]) -> list[list[Any]]:
    """Jobs grouped by ``job.expression.video`` in first-seen order (each group keeps its order)."""
    groups: dict[str, list] = {}
    for job in jobs:
        groups.setdefault(job.expression.video, []).append(job)
    return list(groups.values())


def failure_rows(job, message: str) -> list:
    """Error rows of a job for each of its records (what a worker returns for bad input)."""
    e = job.expression
    row = {"video": e.video, "exp_id": e.exp_id, "split": e.split, "error": " ".join(message.split())}
    return [(name, dict(row)) for name in job.records]


class LocalExecutor:
    """Everything in this process, one job after another. Never imports Ray."""

    name = "local"

    def __init__(self, workers: int = 1):
        if workers != 1:
            raise InputError(f"--workers: the local executor runs one worker, not {workers} (use --executor ray)")
        self.workers = 1
        self.worker_spec: Any = None  # the loaded adapter's spec, for the manifests
        self._preloaded: Any = None

    def preload(self, make_worker: Callable[[], Any]) -> None:
        """Load the next run's worker now (e.g. before a progress display, so a load error
        is the only line printed); the next :meth:`run` uses it instead of making one."""
        self._preloaded = make_worker()
        self._preloaded.load()

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def run(self, make_worker: Callable[[], Any], groups: Sequence[Sequence[Any]],
            on_result: Callable[[JobResult], None], on_event: Callable[[str], None] | None = None) -> None:
        if not any(groups):
            return
        worker, self._preloaded = self._preloaded, None
        if worker is None:
            if on_event:
                on_event("loading models")
            worker = make_worker()
            worker.load()
        self.worker_spec = _spec(worker)
        if on_event:
            on_event("running")
        for group in groups:
            for job in group:
                t0 = time.perf_counter()
                rows = worker.process(job)
                on_result(JobResult(job, rows, 0, time.perf_counter() - t0))


# -- Ray -----------------------------------------------------------------------------------------
class RayWorkerActor:
    """The body of one Ray actor: a loaded Worker. Wrapped by ``ray.remote`` at start."""

    def __init__(self, make_worker: Callable[[], Any]):
        self.error: str | None = None
        try:
            self.worker = make_worker()
            self.worker.load()
        except InputError as exc:  # bad input found while loading: the driver says it in one line
            self.error = str(exc)

    def ready(self) -> tuple[int, str, Any]:
        if self.error is not None:
            raise InputError(self.error)
        return os.getpid(), socket.gethostname(), _spec(self.worker)

    def process(self, job) -> tuple[list, float, int]:
        t0 = time.perf_counter()
        rows = self.worker.process(job)
        return rows, time.perf_counter() - t0, os.getpid()


@dataclass
class _Slot:
    """One worker slot: its current actor and the calls it has not answered yet."""

    index: int
    actor: Any = None
    ready_ref: Any = None
    ready: bool = False
    pid: int | None = None
    outstanding: dict = field(default_factory=dict)  # ObjectRef -> job
    replacements: int = 0


class RayExecutor:
    """One Ray actor per worker; jobs pulled dynamically by video group; Ray's fault tolerance.

    Without ``address`` a local Ray instance is started (``workers * cpus_per_worker`` CPUs,
    a 200 MB object store, no dashboard) and shut down on exit; with it, decaf joins that
    cluster (``ray start --head`` on one node, ``ray start --address=HEAD:6379`` on the others)
    and leaves it running. When Ray is already initialized in this process (a sweep's next
    model, a test fixture) it is used as it is and left running.
    """

    name = "ray"

    def __init__(self, workers: int = 2, address: str | None = None, gpus_per_worker: float = 0.0,
                 cpus_per_worker: float = 1.0, max_restarts: int = 3, max_task_retries: int = 3,
                 max_attempts: int = 3, object_store_memory: int = LOCAL_OBJECT_STORE_BYTES):
        if workers < 1:
            raise InputError(f"--workers: must be >= 1, got {workers}")
        if gpus_per_worker < 0:
            raise InputError(f"--gpus-per-worker: must be >= 0, got {gpus_per_worker}")
        self.workers = workers
        self.address = address or None
        self.gpus_per_worker = float(gpus_per_worker)
        self.cpus_per_worker = float(cpus_per_worker)
        self.max_restarts = max_restarts
        self.max_task_retries = max_task_retries
        self.max_attempts = max_attempts
        self.object_store_memory = object_store_memory
        self._owned = False
        self.slots: list[_Slot] = []  # the last run's slots (tests kill their actors)
        self.worker_spec: Any = None  # the loaded adapter's spec, for the manifests

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> "RayExecutor":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Join or start Ray and check the cluster can hold one worker; bad input exits 2 here."""
        import logging

        try:
            import ray
        except ImportError:
            raise InputError("--executor ray needs the ray package (pip install 'decafbench[ray]')") from None
        if not ray.is_initialized():
            if self.address:
                check_ray_address(self.address)
            kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING,
                                          log_to_driver=True)
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs.update(num_cpus=max(1, int(round(self.workers * self.cpus_per_worker))),
                              object_store_memory=self.object_store_memory)
            try:
                ray.init(**kwargs)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                where = f"--ray-address {self.address}" if self.address else "a local Ray instance"
                raise InputError(f"{where}: cannot start or join Ray ({' '.join(str(exc).split())[:200]})") from None
            self._owned = True
        self._check_resources(ray.cluster_resources())

    def close(self) -> None:
        if self._owned:
            import ray

            ray.shutdown()
            self._owned = False

    def _check_resources(self, total: dict) -> None:
        cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        if self.gpus_per_worker > gpus:
            raise InputError(f"--gpus-per-worker {self.gpus_per_worker:g}: the Ray cluster has {gpus:g} GPUs")
        if self.cpus_per_worker > cpus:
            raise InputError(f"the Ray cluster has {cpus:g} CPUs; a worker needs {self.cpus_per_worker:g}")

    # -- the run --------------------------------------------------------------------------------
    def run(self, make_worker: Callable[[], Any], groups: Sequence[Sequence[Any]],
            on_result: Callable[[JobResult], None], on_event: Callable[[str], None] | None = None) -> None:
        import ray

        self._queue: deque = deque(list(g) for g in groups if g)
        if not self._queue:
            return
        self._attempts: dict[Any, int] = {}
        self._make_worker, self._on_result = make_worker, on_result
        self._load_errors: list[str] = []
        n_slots = min(self.workers, len(self._queue))  # no actor (and model load) without work for it
        self.slots = [_Slot(i) for i in range(n_slots)]
        try:
            for slot in self.slots:
                self._new_actor(slot)
            if on_event:
                on_event(f"loading models in {n_slots} Ray workers")
            self._loop(on_event)
        finally:  # the actors hold CPUs and GPUs: a sweep's next model needs them
            for slot in self.slots:
                if slot.actor is not None:
                    ray.kill(slot.actor)
                    slot.actor = None

    def _new_actor(self, slot: _Slot) -> None:
        import ray

        cls = ray.remote(RayWorkerActor).options(
            num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
            max_restarts=self.max_restarts, max_task_retries=self.max_task_retries)
        slot.actor = cls.remote(self._make_worker)
        slot.ready_ref = slot.actor.ready.remote()
        slot.ready = False
        slot.outstanding = {}

    def _give_work(self, slot: _Slot) -> None:
        """An idle, ready actor pulls the next video: all its jobs, so its frames are read once."""
        if slot.ready and not slot.outstanding and self._queue:
            for job in self._queue.popleft():
                slot.outstanding[slot.actor.process.remote(job)] = job

    def _lost(self, slot: _Slot, jobs: list, why: str) -> None:
        """The slot's actor is gone for good: its jobs go back in the queue. Only the first (the
        call it was running; an actor runs calls in order) counts as an attempt, and a job that
        has taken down ``max_attempts`` processes is recorded as failed, not retried again."""
        requeue = list(jobs)
        if jobs:
            first = jobs[0]
            self._attempts[first.key] = self._attempts.get(first.key, 1) + 1
            if self._attempts[first.key] > self.max_attempts:
                requeue = requeue[1:]
                message = f"WorkerDied: {self.max_attempts} worker processes died running this expression ({why})"
                self._on_result(JobResult(first, failure_rows(first, message), slot.index, 0.0, self.max_attempts))
        if requeue:
            self._queue.appendleft(requeue)
        slot.outstanding = {}
        if slot.replacements < self.max_restarts and (self._queue or any(s.outstanding for s in self.slots)):
            slot.replacements += 1
            self._new_actor(slot)
        else:
            slot.actor, slot.ready_ref, slot.ready = None, None, False

    def _loop(self, on_event) -> None:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        while self._queue or any(s.outstanding for s in self.slots):
            waiting = {s.ready_ref: s for s in self.slots if s.ready_ref is not None and not s.ready}
            running = {ref: s for s in self.slots for ref in s.outstanding}
            refs = list(waiting) + list(running)
            if not refs:
                detail = f": {self._load_errors[-1]}" if self._load_errors else ""
                raise RuntimeError(f"every Ray worker failed{detail}")
            done, _ = ray.wait(refs, num_returns=1, timeout=None)
            ref = done[0]
            if ref in waiting:
                slot = waiting[ref]
                try:
                    slot.pid, _, spec = ray.get(ref)
                    self.worker_spec = self.worker_spec or spec
                    slot.ready = True
                    if on_event:
                        on_event(f"worker {slot.index} ready (pid {slot.pid})")
                except RayActorError as exc:  # its models did not load
                    self._load_errors.append(_first_line(exc))
                    self._lost(slot, [], _first_line(exc))
                except RayTaskError as exc:  # bad input met while loading: every worker would meet it
                    if isinstance(exc.cause, InputError):
                        raise InputError(str(exc.cause)) from None
                    raise
            else:
                slot = running[ref]
                in_order = list(slot.outstanding.values())  # submission order: the first is running
                job = slot.outstanding.pop(ref)
                try:
                    rows, seconds, pid = ray.get(ref)
                    slot.pid = pid
                    self._on_result(JobResult(job, rows, slot.index, seconds, self._attempts.get(job.key, 1)))
                except RayActorError as exc:
                    # gone for good (restarts spent, or killed with no_restart): this job and
                    # the slot's other unanswered calls go back to the queue
                    self._lost(slot, in_order, _first_line(exc))
                except RayTaskError as exc:  # a bug, not bad input (the worker turns that into rows)
                    self._on_result(JobResult(job, failure_rows(job, _first_line(exc.cause or exc)), slot.index, 0.0))
            for s in self.slots:  # any idle, ready actor pulls the next video
                self._give_work(s)


def _spec(worker) -> Any:
    spec = getattr(worker, "spec", None)
    try:
        return spec() if callable(spec) else None
    except Exception:  # noqa: BLE001 - a stand-in worker without an adapter
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """``HOST:PORT`` or ``ray://HOST:PORT`` must accept a TCP connection (one-line error, exit 2)."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(f"--ray-address: expected HOST:PORT, ray://HOST:PORT or auto, not {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise InputError(f"--ray-address {address}: unreachable ({exc.strerror or exc.__class__.__name__}); "
                         "start the head with 'ray start --head' and pass the address it prints") from None


def make_executor(name: str = "local", workers: int | None = None, ray_address: str | None = None,
                  gpus_per_worker: float = 0.0):
    """The executor a run's settings ask for (checked; Ray itself starts on ``__enter__``)."""
    if name == "local":
        if ray_address:
            raise InputError("--ray-address: needs --executor ray")
        if gpus_per_worker:
            raise InputError("--gpus-per-worker: needs --executor ray")
        return LocalExecutor(1 if workers is None else workers)
    if name == "ray":
        return RayExecutor(workers=2 if workers is None else workers, address=ray_address,
                           gpus_per_worker=gpus_per_worker)
    raise InputError(f"--executor: unknown executor {name!r} (known: {', '.join(EXECUTORS)})")


# -- the driver's side ------------------------------------------------------------------------------
def worker_config(config):
    """The config a worker process gets: paths made absolute, since a Ray worker's current
    folder is not the driver's (the folders must be on storage every node sees)."""
    changes = {"out": config.out.resolve()}
    if config.cache_dir is not None:
        changes["cache_dir"] = config.cache_dir.resolve()
    if config.root is not None:
        changes["root"] = config.root.resolve()
    from dataclasses import replace

    return replace(config, **changes)


def run_jobs(driver, jobs: Sequence[Any], executor, progress=None):
    """Feed a prepared driver's pending jobs through ``executor``; the driver writes every
    part and finalizes the records. Returns the driver's :class:`RunResult`."""
    import functools

    from .pipeline import Worker

    def on_result(result: JobResult) -> None:
        driver.collect(result.rows)
        if progress is not None:
            failed = bool(result.rows) and bool(result.rows[0][1].get("error"))
            progress.advance(result.worker, failed=int(failed))

    config = worker_config(driver.config) if executor.name == "ray" else driver.config
    executor.run(functools.partial(Worker, config), group_by_video(jobs), on_result,
                 on_event=None if progress is None else progress.set_status)
    if executor.worker_spec is not None:
        driver.adapter_spec = executor.worker_spec
    return driver.finalize()
