"""Golden-input fixtures: what the official DecAF pipeline feeds each model, for the tests.

Not run in CI (it installs the official stack). Run it from the repository root with the
project's venv when the official pipeline, a preprocessing rule or the tiny tokenizers change:

    .venv/bin/python tools/golden/make_fixtures.py --official /path/to/DecAF \
        [--venv /tmp/decaf-golden-venv] [--out tests/fixtures/golden]

Steps: (1) create a separate venv with the official pins (transformers 4.52.1,
qwen-vl-utils 0.0.11, einops 0.6.1 from PyPI; torch: ``--torch-from-project`` makes the
project's torch visible instead of downloading one); (2) save decafbench's tiny tokenizers
(the tests build the same ones, so input ids compare exactly); (3) run each family's
``official_<family>.py`` inside that venv, which calls the official preprocessing and writes
``tests/fixtures/golden/<family>.json``; (4) parse the official prompt strings
(``prompts.json``). A family section is one ``official_<family>.py`` script plus one entry in
:data:`SECTIONS`; add LLaVA-OneVision / InternVL the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PINS = ["transformers==4.52.1", "qwen-vl-utils==0.0.11", "einops==0.6.1", "av", "opencv-python-headless",
        "scipy", "pycocotools", "tqdm"]


def export_qwen_tokenizer(folder: Path) -> dict:
    """decafbench's tiny Qwen tokenizer + chat template, as the official stack will load them."""
    from decafbench.adapters.qwen2_vl_tiny import CHAT_TEMPLATE, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    folder.mkdir(parents=True, exist_ok=True)
    tok.backend_tokenizer.save(str(folder / "tokenizer.json"))
    specials = {"pad_token": tok.pad_token, "eos_token": tok.eos_token}
    (folder / "tokenizer_config.json").write_text(json.dumps({**specials, "tokenizer_class": "Qwen2TokenizerFast"}))
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "chat_template.txt").write_text(CHAT_TEMPLATE, encoding="utf-8")
    return {"tokenizer_digest": tokenizer_digest(tok)}


def tokenizer_digest(tok) -> str:
    """sha256 of a tokenizer's vocabulary (tests check they build the same one)."""
    vocab = sorted(tok.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()


def export_lvi_tokenizers(folder: Path) -> dict:
    """decafbench's tiny LLaVA-OneVision and InternVL tokenizers (one subfolder each), and per
    family its vocabulary digest (official_lvi.py merges the family's entry into its fixture)."""
    from export_lvi import FAMILIES, export

    return {family: export(family, folder / family) for family in FAMILIES}


#: family sections: (official script, tokenizer exporter, fixture files it writes)
SECTIONS = {
    "qwen": ("official_qwen.py", export_qwen_tokenizer),
    "lvi": ("official_lvi.py", export_lvi_tokenizers),  # llava_onevision.json, internvl.json
}


def ensure_venv(venv: Path, torch_from_project: bool) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        if torch_from_project:  # the project's site-packages after the venv's own: torch without a download
            site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       capture_output=True, text=True, check=True).stdout.strip())
            (site / "zz_project_torch.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS, *([] if torch_from_project else ["torch"])],
                       check=True)
    return python


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="checkout of github.com/HYUNJS/DecAF")
    ap.add_argument("--commit", default=None, help="its commit, when --official is not a git work tree")
    ap.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "decaf-golden-venv")
    ap.add_argument("--torch-from-project", action="store_true", help="reuse this venv's torch instead of installing one")
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/golden"))
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "decaf-golden-work")
    ap.add_argument("--only", nargs="*", default=None, help=f"sections to run (default: all of {', '.join(SECTIONS)})")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from official_prompts import commit_of
    from official_prompts import main as prompts_main

    commit = args.commit or commit_of(args.official)
    prompts_main(["--official", str(args.official), "--out", str(args.out), *(["--commit", commit] if commit else [])])
    python = ensure_venv(args.venv, args.torch_from_project)
    for name, (script, export) in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        tok_dir = args.work / f"{name}-tokenizer"
        meta = {"official_commit": commit, **export(tok_dir)}
        env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        subprocess.run([str(python), str(HERE / script), "--official", str(args.official), "--tokenizer", str(tok_dir),
                        "--work", str(args.work / name), "--out", str(args.out), "--meta", json.dumps(meta)],
                       check=True, env=env)
        print(f"{name}: fixtures written to {args.out}")


if __name__ == "__main__":
    main()
