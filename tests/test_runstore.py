import json

import pytest

from decafbench.errors import InputError
from decafbench.runstore import RunWriter, base_manifest, part_name, read_record


def test_writer_resume_and_finalize(tmp_path):
    w = RunWriter(tmp_path / "run", base_manifest("run", command=["decaf", "run"], name="r1", seed=0))
    w.add({"video": "v1", "exp_id": "0", "split": "", "J": 0.5, "F": 0.25, "JF": 0.375, "error": ""})
    w.add({"video": "v0", "exp_id": "1", "split": "", "J": None, "F": None, "JF": None, "error": "boom"})
    # a rerun sees the finished expression, and retries the failed one
    again = RunWriter(tmp_path / "run", w.manifest)
    assert set(again.done()) == {("v1", "0")}
    table = again.finalize(summary={"JF": 0.375})
    assert list(table["video"]) == ["v0", "v1"]
    rec = read_record(tmp_path / "run")
    assert rec.label == "r1"
    assert rec.manifest["n_failed"] == 1 and rec.manifest["n_expressions"] == 2
    assert rec.manifest["seed"] == 0 and "versions" in rec.manifest and "git_commit" in rec.manifest
    s = rec.scores("JF")
    assert list(s.index) == [("v1", "0")] and s.iloc[0] == 0.375
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_full_precision_round_trip(tmp_path):
    w = RunWriter(tmp_path / "r", base_manifest("run", command=[]))
    x = 0.1 + 0.2  # not representable in 15 digits
    w.add({"video": "a", "exp_id": "007", "J": x, "F": 1 / 3, "JF": (x + 1 / 3) / 2})
    w.finalize()
    rec = read_record(tmp_path / "r")
    assert rec.table["J"].iloc[0] == x and rec.table["exp_id"].iloc[0] == "007"


def test_part_names_are_safe_and_distinct():
    a, b = part_name("v/1", "0"), part_name("v_1", "0")
    assert "/" not in a and a != b


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_record(tmp_path / "nope")
    (tmp_path / "r").mkdir()
    with pytest.raises(InputError, match="manifest.json"):
        read_record(tmp_path / "r")
    (tmp_path / "r" / "manifest.json").write_text("{bad")
    with pytest.raises(InputError, match="malformed JSON"):
        read_record(tmp_path / "r")
    (tmp_path / "r" / "manifest.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(InputError, match="per_expression.csv"):
        read_record(tmp_path / "r")
    (tmp_path / "r" / "per_expression.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="column 'video'"):
        read_record(tmp_path / "r")


@pytest.mark.parametrize("text", ["a\rb", "a\nb", "a\r\nb", "a\x0bb\x0cc\x1cd\x85e\u2028f", 'q"u,o'])
def test_free_text_round_trips_one_row_per_expression(tmp_path, text):
    # a random model's 128-token answer can hold any control character; each must stay in its
    # own cell, never split a row (a bare \r in a \n-terminated CSV did, shifting F into 156.9)
    w = RunWriter(tmp_path / "r", base_manifest("run", command=[]))
    w.add({"video": "a", "exp_id": "0", "obj_name": text, "J": 0.5, "F": 0.25, "JF": 0.375, "error": ""})
    w.add({"video": "b", "exp_id": "1", "obj_name": "cat", "J": 1.0, "F": 1.0, "JF": 1.0, "error": ""})
    w.finalize()
    rec = read_record(tmp_path / "r")
    assert len(rec.table) == 2
    assert rec.table["obj_name"].iloc[0] == text
    assert list(rec.scores("F")) == [0.25, 1.0]
