"""Every `decaf ...` example in README.md and in the commands' --help runs as written.

A new user follows the README top to bottom and pastes examples from --help; both must work
from a fresh copy of the repository, in the order shown. The slow test copies the tracked
files into a temporary folder and runs each example there with bash (globs and quotes as a
shell sees them), ``decaf`` being this environment's command. Examples that need data no
machine here has (a dataset under ``data/``, records of real checkpoints) are listed in
:data:`NEEDS_DATASET` with the path they need; the test checks that path is really absent,
so an example cannot be parked there for any other reason, and that every entry still
matches an example.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: example prefix -> the path (relative to the repository) it needs and no machine here has
NEEDS_DATASET = {
    "decaf evaluate --benchmark mevis --root data/mevis": "data/mevis",
    "decaf evaluate --benchmark revos --root data/revos": "data/revos",
    "decaf export --benchmark ref-youtube-vos --root data/ytvos": "data/ytvos",
    "decaf export --benchmark ref-youtube-vos --root data/ref-youtube-vos": "data/ref-youtube-vos",
    "decaf benchmarks convert --root data/ref-davis ": "data/ref-davis",
    "decaf benchmarks convert --root data/ref-davis17": "data/ref-davis17",
    "decaf run --benchmark ref-davis17 --root data/ref-davis": "data/ref-davis",
    "decaf compare runs/": "runs",
    "decaf leaderboard runs/": "runs",
    "decaf regress --baseline runs/": "runs",
    "decaf power --baseline runs/": "runs",
    "decaf results runs/": "runs",
    "decaf run -b revos --root data/revos": "data/revos",
    "decaf inspect -m qwen2-vl:/models/": "/models/Qwen2.5-VL-7B-Instruct",
}
#: example prefix -> the service it needs (checked: the example names where that service is)
NEEDS_CLUSTER = {
}


def _commands(text: str) -> list[str]:
    """``decaf ...`` command lines of a text, backslash continuations joined, in order."""
    out, current = [], ""
    for raw in text.splitlines():
        line = re.sub(r"^(Examples?|Then|e\.g\.):\s*", "", raw.strip())
        if current:
            current += " " + line.rstrip("\\").strip()
            if not line.endswith("\\"):
                out.append(current)
                current = ""
            continue
        if line.startswith("decaf "):
            if line.endswith("\\"):
                current = line.rstrip("\\").strip()
            else:
                out.append(line)
    return out


def readme_examples(readme: Path = REPO / "README.md") -> list[str]:
    """Commands in the README's bash code blocks, in reading order."""
    blocks = re.findall(r"```(?:bash|sh|console)\n(.*?)```", readme.read_text(), flags=re.S)
    return [c for block in blocks for c in _commands(block)]


def help_examples() -> list[str]:
    """Commands in every command's --help text (the raw text, before rich renders it)."""
    import typer

    from decafbench.cli import build_app

    out: list[str] = []

    def walk(cmd) -> None:
        out.extend(_commands(cmd.help or ""))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(build_app()))
    return out


def all_examples() -> list[str]:
    """README examples then --help examples, each distinct command (comments aside) once, in
    first-seen order."""
    seen, out = set(), []
    for e in readme_examples() + help_examples():
        key = tuple(shlex.split(e, comments=True))
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def needs_dataset(example: str) -> str | None:
    hits = [need for prefix, need in NEEDS_DATASET.items() if example.startswith(prefix)]
    return hits[0] if hits else None


def needs_cluster(example: str) -> str | None:
    hits = [need for prefix, need in NEEDS_CLUSTER.items() if example.startswith(prefix)]
    return hits[0] if hits else None


def _fresh_copy(dest: Path) -> Path:
    """The tracked files of this checkout (what a fresh clone has), copied to ``dest``."""
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True,
                               timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        files = []
    if not files or files == [""]:
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(".venv", ".git", "results", "data", "__pycache__"))
        return dest
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


# -- fast checks of the extraction and of the allowlist -----------------------------------------------
def test_examples_are_found_and_the_allowlist_is_current():
    examples = all_examples()
    readme = readme_examples()
    argvs = [shlex.split(e, comments=True) for e in readme]
    assert ["decaf", "run"] in argvs and ["decaf", "benchmarks", "list"] in argvs
    assert any(e.startswith("decaf run --benchmark ref-davis17") and "--sam2" in e for e in readme)
    for command in ("decaf report ", "decaf sweep ", "decaf show ", "decaf compare ", "decaf evaluate "):
        assert any(e.startswith(command) for e in examples), command
    for prefix in [*NEEDS_DATASET, *NEEDS_CLUSTER]:  # no stale entry: each still matches an example
        assert any(e.startswith(prefix) for e in examples), prefix
    for e in examples:
        assert shlex.split(e, comments=True)[0] == "decaf"  # valid shell, one command each


def test_sweep_file_in_readme_is_the_shipped_example():
    """The README shows the sweep file its example runs (examples/sweep.toml), verbatim."""
    text = (REPO / "README.md").read_text()
    shipped = (REPO / "examples" / "sweep.toml").read_text()
    assert "```toml\n" + shipped + "```" in text
    assert any(e.startswith("decaf sweep examples/sweep.toml") for e in readme_examples())
    import typer

    from decafbench.cli import build_app

    sweep_help = typer.main.get_command(build_app()).commands["sweep"].help
    help_lines = {line.strip() for line in sweep_help.splitlines()}
    assert all(line.strip() in help_lines for line in shipped.splitlines() if line.strip())  # --help shows it too


# -- the real thing ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_readme_and_help_examples_run_in_order(tmp_path):
    fresh = _fresh_copy(tmp_path / "repo")
    shared = REPO.parent / "shared"
    if shared.is_dir():  # examples name the shared frames as ../shared/data/..., like the tests
        (tmp_path / "shared").symlink_to(shared)
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "TERM": "dumb",
           "COLUMNS": "100"}
    if not (bindir / "decaf").exists():
        pytest.skip(f"no decaf command beside {sys.executable}")
    ran, skipped = [], []
    for example in all_examples():
        service = needs_cluster(example)
        if service is not None:
            assert service in example, f"{example!r} is allowlisted as needing a cluster but names none"
            skipped.append(example)
            continue
        need = needs_dataset(example)
        if need is not None:
            assert not (fresh / need).exists(), f"{example!r} is allowlisted for {need}, which exists"
            skipped.append(example)
            continue
        res = subprocess.run(["bash", "-c", example], cwd=fresh, env=env, capture_output=True, text=True,
                             timeout=900)
        assert res.returncode == 0, f"{example}\nexit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
        ran.append(example)
    assert len(ran) >= 15 and skipped, (ran, skipped)
