"""DecAF end to end, the bookkeeping side: plan records, resume, collect rows, finalize.

:class:`RunDriver` never loads a model. ``prepare()`` validates the config, reads the
benchmark, creates and probes the output folders and checks each record folder's identity
(all before any model loads) and returns the pending :class:`~decafbench.pipeline.Job` s;
``collect(rows)`` writes each finished row atomically as one part of its record;
``finalize()`` writes every record's table and manifest. Between the two an executor feeds
jobs to :class:`~decafbench.pipeline.Worker` s: :func:`run_local` in this process (the
default), or one Ray actor per GPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .config import RunConfig
from .errors import InputError
from .pipeline import Job, RecordSpec, Worker, plan_records

IDENTITY = "identity.json"


@dataclass
class RunResult:
    """What a finished run reports: its records and counts."""

    paths: list[Path]
    expressions: int
    failed: int
    cache_hits: int = 0
    cache_misses: int = 0
    scored: bool = False  # the benchmark has ground truth: the records hold scores
    errors: list[str] = field(default_factory=list)


@dataclass
class _Record:
    spec: RecordSpec
    writer: Any  # RunWriter
    identity: dict
    identity_written: bool = False


class RunDriver:
    """Plans and records one run of a :class:`RunConfig` (see the module docstring)."""

    def __init__(self, config: RunConfig, command: Sequence[str] | None = None):
        self.config = config
        self.command = None if command is None else list(command)
        self.benchmark: Any = None
        self.expressions: list = []
        self.records: list[_Record] = []
        self.adapter_spec: Any = None
        self.errors: list[str] = []
        self._hits = self._misses = 0

    def prepare(self) -> list[Job]:
        """Every check that needs no model, then the jobs still to do (resume)."""
        from decafbench.benchmarks.registry import get_benchmark

        from .runstore import RunWriter

        c = self.config.validate()
        self.benchmark = get_benchmark(c.benchmark, root=c.root, split=c.split)
        expressions = self.benchmark.expressions()
        self.expressions = expressions if c.limit is None else expressions[: c.limit]
        c.probe_folders()
        described = self.benchmark.describe()
        base = {**c.identity(), "root": str(Path(described["root"]).resolve()), "split": described["split"]}
        for spec in plan_records(c):
            identity = _normalise({**base, "variant": spec.variant.label, "variant_params": spec.params,
                                   "mask": asdict(spec.mask)})
            if spec.mask.kind != "sam2":
                identity.pop("sam2")  # coarse masks do not depend on the SAM2 checkpoint
            writer = RunWriter(c.out / spec.name, {"kind": "run"})  # locks the folder; refuses another kind
            self.records.append(_Record(spec, writer, identity, _check_identity(writer.dir, identity)))
        return self.pending()

    def pending(self) -> list[Job]:
        done = [set(r.writer.done()) for r in self.records]
        jobs = []
        for e in self.expressions:
            names = tuple(r.spec.name for r, d in zip(self.records, done) if e.key not in d)
            if names:
                jobs.append(Job(e, names))
        return jobs

    def collect(self, rows: Iterable[tuple[str, dict]]) -> None:
        """Write one job's rows (each atomically, as its record's part)."""
        by_name = {r.spec.name: r for r in self.records}
        rows = list(rows)
        for name, row in rows:
            record = by_name[name]
            if not record.identity_written:
                from .runstore import atomic_write_json

                atomic_write_json(record.writer.dir / IDENTITY, record.identity)
                record.identity_written = True
            record.writer.add(row)
        first = rows[0][1] if rows else {}
        if first.get("error"):
            self.errors.append(f"{first['video']}/{first['exp_id']}: {first['error']}")
        elif "cache_hit" in first:
            self._hits += int(first["cache_hit"])
            self._misses += 1 - int(first["cache_hit"])

    def finalize(self) -> RunResult:
        """Every record's table and manifest, over the expressions of this run's scope."""
        from .evaluate import summarize

        scope = {e.key for e in self.expressions}
        from .results import write_results_lenient

        failed: set = set()
        paths = []
        metrics = self.benchmark.metrics
        score = (lambda rows: summarize(rows, metrics)) if self.benchmark.has_ground_truth else None
        for record in self.records:
            rows = record.writer.rows(scope)
            failed |= {(r["video"], r["exp_id"]) for r in rows if r.get("error")}
            record.writer.manifest = self._manifest(record)
            record.writer.finalize(keys=scope, summarize=score, after=write_results_lenient)
            paths.append(record.writer.dir)
        return RunResult(paths, len(self.expressions), len(failed), self._hits, self._misses,
                         bool(self.benchmark.has_ground_truth), list(self.errors))

    def _manifest(self, record: _Record) -> dict:
        from decafbench.adapters.registry import parse_adapter_name

        from .runstore import base_manifest

        c, spec = self.config, record.spec
        family, checkpoint = parse_adapter_name(c.model)
        adapter_config = self.adapter_spec.config if self.adapter_spec is not None else _previous(record, "adapter_config")
        return base_manifest(
            "run", command=self.command, name=f"{family}:{checkpoint} {spec.variant.label} {spec.mask.label}",
            **self.benchmark.describe(), adapter=family, checkpoint=checkpoint, adapter_config=adapter_config,
            variant=spec.variant.name, variant_label=spec.variant.label, variant_params=spec.params,
            mask_kind=spec.mask.kind, mask_params=asdict(spec.mask), prompt_version=c.prompt_version, seed=c.seed,
            metrics=list(self.benchmark.metrics), config=c.to_manifest(),
            scored_frames="key" if spec.mask.kind == "coarse" else "all", mask_label=spec.mask.label,
            cache={"hits": self._hits, "misses": self._misses},
            fidelity=fidelity_notes(c) if spec.mask.kind == "sam2" else fidelity_notes(c, sam2=False),
            **self._cache_location(record))

    def _cache_location(self, record: _Record) -> dict:
        """The attention cache relative to the record folder, so records and cache move together."""
        from .cache import MANIFEST_FIELD, location_for_record

        if self.config.cache_dir is None:
            return {}
        return {MANIFEST_FIELD: location_for_record(self.config.cache_dir, record.writer.dir)}


def fidelity_notes(c: Any, sam2: bool = True) -> dict:
    """Where this run stands against the paper's setup (README "Fidelity"): precision, prefix
    reuse and, for SAM2 records, the model and whether sam2's CUDA extension (hole filling) is built."""
    notes: dict[str, Any] = {"dtype": c.effective_dtype, "paper_dtype": "bfloat16", "prefix_reuse": c.effective_prefix_reuse,
                             "max_new_tokens": c.max_new_tokens, "paper_max_new_tokens": 128}
    if sam2:
        import importlib.util

        try:
            ext = importlib.util.find_spec("sam2._C") is not None
        except (ImportError, ValueError):
            ext = False
        notes.update(sam2=c.sam2, paper_sam2="SAM 2.0 hiera-large (sam2_hiera_large.pt, sam2_hiera_l.yaml)",
                     sam2_cuda_extension=ext,
                     sam2_hole_filling="on" if ext else "skipped (sam2 built without its CUDA extension)")
    return notes


def run_local(driver: RunDriver, jobs: Sequence[Job], worker: Worker | None = None, *,
              on_progress: Callable[[int], None] | None = None) -> RunResult:
    """The default executor: one :class:`Worker` in this process, jobs in benchmark order
    (one video's expressions together). Models load only when there is work left (pass a
    loaded ``worker`` to load them elsewhere, e.g. under a status line)."""
    if jobs:
        worker = worker or Worker(driver.config).load()
        driver.adapter_spec = worker.spec()
        for job in jobs:
            driver.collect(worker.process(job))
            if on_progress:
                on_progress(1)
    return driver.finalize()


def run(config: RunConfig, command: Sequence[str] | None = None) -> RunResult:
    """Check, plan, run locally and finalize: ``decaf run`` without the terminal."""
    driver = RunDriver(config, command)
    return run_local(driver, driver.prepare())


def _normalise(obj: dict) -> dict:
    return json.loads(json.dumps(obj, default=str))  # tuples -> lists, paths -> strings


def _check_identity(run_dir: Path, identity: dict) -> bool:
    """Resume only the same run: a record folder with finished parts remembers what made them.

    Returns whether ``identity.json`` already holds this identity. A folder without parts
    holds no run yet (e.g. a run whose model failed to load), so any settings may start there.
    """
    path = run_dir / IDENTITY
    if not path.is_file():
        return False
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise InputError("malformed JSON; delete the folder to start over", path) from None
    if not isinstance(old, dict):
        raise InputError("not a JSON object; delete the folder to start over", path)
    changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
    if not changed:
        return True
    if not any((run_dir / "parts").glob("*.json")):
        return False
    raise InputError(f"holds a run with a different {changed[0]!r}; use another --out or delete it "
                     "(a rerun of the same command resumes)", run_dir)


def _previous(record: _Record, key: str) -> Any:
    """A field of the record's previous manifest (a resumed run with nothing left to do)."""
    try:
        return json.loads((record.writer.dir / "manifest.json").read_text()).get(key)
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
