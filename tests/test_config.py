"""RunConfig: one set of setting names for the CLI and sweep files, checked before any model loads."""

import pickle
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from decafbench.cli import build_app
from decafbench.config import RunConfig
from decafbench.driver import RunDriver
from decafbench.errors import InputError
from decafbench.pipeline import Worker
from decafbench.sweep import load_sweep

runner = CliRunner()


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if anything tries to load a model."""

    def load(self):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Worker, "load", load)


def _invoke(*args):
    return runner.invoke(build_app(), list(args))


BAD_RUNS = [
    (["--frames", "0"], "--frames"),
    (["--residual", "5"], "--residual"),
    (["--head-weighting", "vmx"], "--head-weighting"),
    (["--limit", "-7"], "--limit"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
    (["--seed", "-1"], "--seed"),
    (["--masks", "fine"], "--masks"),
    (["--point-threshold", "1.5"], "--point-threshold"),
    (["--final-score-threshold", "-0.1"], "--final-score-threshold"),
    (["--final-threshold", "2"], "--final-score-threshold"),  # the deprecated alias, same setting
    (["--variant", "decaff"], "--variant"),
    (["--variant", "decaf:sigmaa=1"], "--variant"),
    (["--model", "qwen3:tiny"], "--model"),
    (["--prompts", "v9"], "--prompts"),
    (["--dtype", "float8"], "--dtype"),
    (["--device", "gpu"], "--device"),
    (["--benchmark", "davis"], "--benchmark"),
    (["--sam2", "cfg.yaml:/no/such.pt"], "--sam2"),
    (["--rollout-start", "3", "--rollout-end", "1"], "--rollout-start"),
]


@pytest.mark.parametrize("args,field", BAD_RUNS, ids=[" ".join(a) for a, _ in BAD_RUNS])
def test_bad_setting_exits_2_with_one_line_before_any_model(args, field, tmp_path, no_model_load):
    out = tmp_path / "out"
    res = _invoke("run", *args, "--out", str(out), "--cache", str(tmp_path / "cache"))
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), res.output
    assert not out.exists()  # checked before anything was written


def test_cuda_without_a_gpu_is_refused_before_any_model(tmp_path, no_model_load):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    res = _invoke("run", "--device", "cuda", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and res.output.strip() == "error: --device: 'cuda' asked for, but no CUDA GPU is available here"


def test_out_or_cache_that_is_a_file_is_refused(tmp_path, no_model_load):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for args, field in ((["--out", str(a_file)], "--out"), (["--out", str(a_file / "sub")], "--out"),
                        (["--cache", str(a_file), "--out", str(tmp_path / "o")], "--cache")):
        res = _invoke("run", *args)
        assert res.exit_code == 2, res.output
        assert res.output.strip().splitlines() == [f"error: {field}: {a_file} is a file, not a folder"]


def test_unwritable_out_is_refused_before_the_work(tmp_path, no_model_load, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # root ignores folder modes: simulate the refusal
    res = _invoke("run", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"))
    assert res.exit_code == 2
    assert res.output.strip() == f"error: --out: {tmp_path / 'o'} is not writable (Permission denied)"


def test_cli_and_sweep_file_share_setting_names(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text('[run]\nframes = 4\nfinal_score_threshold = 0.7\nhead_weighting = "mean"\nmasks = "sam2"\n'
                     'out = "o"\ncache = false\nmodel_args = { image_tokens = 16 }\n')
    from_file = load_sweep(sweep)
    from_cli = RunConfig.from_mapping({"frames": 4, "final_score_threshold": 0.7, "head_weighting": "mean",
                                       "masks": "sam2", "out": "o", "cache": None, "model_args": "image_tokens=16"})
    assert from_file == from_cli
    assert from_cli.masks[0].final_score_threshold == 0.7 and from_cli.cache_dir is None
    assert from_cli.model_args == {"image_tokens": 16}


SWEEP_ERRORS = [
    ('[grids]\nvariant = ["decaf"]\n', "unknown table or key 'grids'"),
    ('[run]\nfames = 4\n', "unknown setting 'fames'; did you mean 'frames'?"),
    ('[run]\nframes = "four"\n', "frames: expected an integer, got 'four'"),
    ('[run]\nresidual = true\n', "residual: expected a number, got True"),
    ('[run]\nhead_weighting = "vmx"\n', "head_weighting: must be one of vmax, mean, max, not 'vmx'"),
    ('[run]\nframes = 0\n', "frames: must be >= 1, got 0"),
    ('[grid]\nvariant = ["decaf"]\nsigma = ["wide"]\n', "[grid]: fusion parameter sigma='wide': expected float"),
    ('[grid]\nvariant = ["decaf"]\nhead_weighting = ["vmx"]\n', "[grid]: sweep key 'head_weighting' is not a fusion parameter"),
    ('[sam2]\npoint_treshold = [0.7]\n', "[sam2] has no key 'point_treshold'"),
    ('[sam2]\npoint_threshold = ["high"]\n', "point_threshold: expected a number or a list of numbers"),
    ('run = 3\n', "run must be a table"),
    ('[run\n', "malformed TOML"),
]


@pytest.mark.parametrize("text,message", SWEEP_ERRORS, ids=[m for _, m in SWEEP_ERRORS])
def test_bad_sweep_file_names_file_and_key(text, message, tmp_path, no_model_load):
    sweep = tmp_path / "s.toml"
    sweep.write_text(text)
    res = _invoke("sweep", str(sweep))
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {sweep}: ") and message in lines[0], res.output


def test_worker_construction_is_pure_and_picklable(tmp_path):
    import torch

    torch.manual_seed(123)
    random.seed(7)
    state, py_state = torch.get_rng_state(), random.getstate()
    worker = Worker(RunConfig(out=tmp_path / "out", cache_dir=tmp_path / "cache"))
    assert torch.equal(torch.get_rng_state(), state) and random.getstate() == py_state
    assert not any(tmp_path.iterdir())  # no files
    assert worker.adapter is None and worker.sam2 is None
    clone = pickle.loads(pickle.dumps(worker))
    assert clone.config == worker.config and list(clone.records) == ["decaf__coarse", "decaf__sam2"]


def _prepared(tmp_path, **settings):
    driver = RunDriver(RunConfig.from_mapping({"out": str(tmp_path / "out"), "cache": None, "masks": "coarse",
                                               "limit": 2, **settings}))
    return driver, driver.prepare()


def _finish(driver, jobs):
    """Stand-in worker: an error-free row per pending record (no model needed to test bookkeeping)."""
    for job in jobs:
        e = job.expression
        driver.collect([(name, {"video": e.video, "exp_id": e.exp_id, "split": e.split, "error": ""})
                        for name in job.records])


def test_resume_identity_is_per_record(tmp_path):
    driver, jobs = _prepared(tmp_path)
    assert [j.records for j in jobs] == [("decaf__coarse",), ("decaf__coarse",)]
    _finish(driver, jobs)
    # adding a variant and a mask kind to the same --out: only the new records have work
    driver, jobs = _prepared(tmp_path, variant=["decaf", "object-only"], masks="both")
    assert [j.records for j in jobs] == [("decaf__sam2", "object-only__coarse", "object-only__sam2")] * 2
    # the default split and root spelled out are the same run
    root = Path(driver.benchmark.describe()["root"])
    driver, jobs = _prepared(tmp_path, split="valid_u", root=str(root))
    assert jobs == []
    # a setting that changes outputs is refused, naming it
    with pytest.raises(InputError, match="different 'num_frames'"):
        _prepared(tmp_path, frames=3)


def test_a_folder_without_finished_parts_takes_any_settings(tmp_path):
    driver, jobs = _prepared(tmp_path, frames=3)
    driver.collect([])  # e.g. the model failed to load: nothing finished
    (tmp_path / "out" / "decaf__coarse" / "identity.json").write_text('{"num_frames": 3}')
    driver, jobs = _prepared(tmp_path)  # no parts: not refused
    assert len(jobs) == 2


def test_manifest_config_is_json_safe_and_complete():
    import json

    config = RunConfig.from_mapping({"root": "data/x", "variant": ["decaf:sigma=2"], "model_args": {"a": (1, 2)}})
    manifest = json.loads(json.dumps(config.to_manifest()))
    assert manifest["root"] == "data/x" and manifest["variants"] == ["decaf[sigma=2.0]"]
    assert manifest["model_args"] == {"a": [1, 2]} and manifest["rollout"]["residual"] == 0.5
    assert set(manifest) >= {"benchmark", "model", "dtype", "device", "num_frames", "prompt_version", "seed",
                             "max_new_tokens", "masks", "sam2", "out", "cache_dir", "limit", "reuse", "prefix_reuse"}


def test_sweep_sam2_grid_crosses_thresholds_into_records(tmp_path):
    from decafbench.pipeline import plan_records

    sweep = tmp_path / "s.toml"
    sweep.write_text('[run]\nmasks = "both"\n[grid]\nvariant = ["decaf", "object-only"]\n'
                     '[sam2]\npoint_threshold = [0.7, 0.9]\nfinal_score_threshold = 0.8\n')
    config = load_sweep(sweep)
    assert config.out == Path("results/sweep")
    records = plan_records(config)
    # full labels stay on the record; folder names are their shell-safe slugs
    labels = [(r.variant.label, r.mask.label) for r in records]
    assert labels == [(v, m) for v in ("decaf", "object-only")
                      for m in ("coarse", "sam2[pq=0.7,trk=0.8]", "sam2[pq=0.9,trk=0.8]")]
    assert [r.name for r in records] == [f"{v}__{m}" for v in ("decaf", "object-only")
                                         for m in ("coarse", "sam2-pq0.7-trk0.8", "sam2-pq0.9-trk0.8")]
    both = tmp_path / "both.toml"
    both.write_text('[run]\npoint_threshold = 0.7\n[sam2]\npoint_threshold = [0.9]\n')
    with pytest.raises(InputError, match="point_threshold is given in both"):
        load_sweep(both)
