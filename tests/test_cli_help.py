"""The command line's help and polish: every command's help renders its text literally
(rich markup escaped), flags show no type, -h works, --version, adapters show is formatted,
and bench/run_all.py --help prints help instead of starting the benchmarks."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_show import cli

REPO = Path(__file__).resolve().parents[1]


def _commands():
    """Every command path (e.g. ``["benchmarks", "synth"]``) with its click command."""
    from decafbench.cli import build_command

    out = []

    def walk(cmd, path):
        out.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(build_command(), [])
    return out


def test_every_help_renders_its_text_literally(capsys):
    from decafbench.cli import build_app
    import typer

    raw = {tuple(p): c for p, c in _walk_raw(typer.main.get_command(build_app()), [])}
    paths = [p for p, _ in _commands()]
    assert ["sweep"] in paths and ["benchmarks", "synth"] in paths and ["adapters", "show"] in paths
    for path in paths:
        for flag in ("-h", "--help"):
            code, out, err = cli([*path, flag], capsys)
            assert code == 0 and "Usage" in out, (path, flag, err)
        assert "<bool>" not in out, path
        doc = inspect.cleandoc(raw[tuple(path)].help or "")
        for tag in set(re.findall(r"\[[a-z_][a-z0-9_]*\]", doc)):  # what rich would have eaten as markup
            assert tag in out, (path, tag)
        if path and not getattr(raw[tuple(path)], "commands", None):
            assert "Example" in out, path  # every command shows how to call it
    code, out, _ = cli(["sweep", "-h"], capsys)
    for table in ("[run]", "[grid]", "[sam2]"):
        assert table in out


def _walk_raw(cmd, path):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _walk_raw(sub, [*path, name])


def test_version(capsys):
    from importlib.metadata import version

    code, out, _ = cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"decaf (decafbench) {version('decafbench')}"


def test_adapters_show_is_formatted(capsys):
    code, out, _ = cli(["adapters", "show", "qwen2-vl"], capsys)
    assert code == 0
    assert "``" not in out and ":meth:" not in out  # reST reduced to text
    assert "Qwen2-VL" in out and "options" in out and "decaf run --model qwen2-vl:tiny" in out
    body = [line for line in out.splitlines() if line.strip()]
    assert all(len(line) <= 100 for line in body)


def test_bench_run_all_help_does_not_run_benchmarks():
    res = subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--help"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "usage:" in res.stdout and "--quick" in res.stdout
    assert "===" not in res.stdout  # no benchmark started
    res = subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "nope"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "unknown benchmark 'nope'" in res.stderr
