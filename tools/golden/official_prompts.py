"""Read the official prompt templates from a checkout of HYUNJS/DecAF (no code is run: the
string constants are parsed with ``ast``) and write tests/fixtures/golden/prompts.json.

    python tools/golden/official_prompts.py --official /path/to/DecAF --out tests/fixtures/golden
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_json  # noqa: E402

SOURCE = "evaluation/inf_utils.py"


def official_constants(official: Path) -> dict:
    """``PROMPT_TMPL_*`` string constants of the official inf_utils.py, with their line numbers."""
    tree = ast.parse((official / SOURCE).read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.startswith("PROMPT_TMPL_") or name.startswith("SYS_"):
                found[name] = {"value": ast.literal_eval(node.value), "line": node.lineno}
    return found


def commit_of(official: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(official), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--official", type=Path, required=True, help="checkout of github.com/HYUNJS/DecAF")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--commit", default=None, help="commit of the checkout (when it is not a git work tree)")
    args = ap.parse_args(argv)
    write_json(args.out / "prompts.json", {"source": SOURCE, "commit": args.commit or commit_of(args.official),
                                           "constants": official_constants(args.official)})


if __name__ == "__main__":
    main()
