"""Export decafbench's tiny LLaVA-OneVision and InternVL tokenizers for the official stack
(project venv side of tools/golden/official_lvi.py), and their vocabulary digests.

    .venv/bin/python tools/golden/export_lvi.py --out /tmp/decaf-golden-work/lvi-tokenizers
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path


def tokenizer_digest(tok) -> str:
    """sha256 of a tokenizer's vocabulary (tests check they build the same one)."""
    vocab = sorted(tok.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()


def export(family: str, folder: Path) -> dict:
    """Save the family's tiny tokenizer + chat template as transformers 4.52 loads them."""
    if family == "llava_onevision":
        from decafbench.adapters.llava_onevision import CHAT_TEMPLATE, build_tiny_tokenizer

        named: dict = {}
    else:
        from decafbench.adapters.internvl import CHAT_TEMPLATE, NAMED_TOKENS, build_tiny_tokenizer

        named = dict(NAMED_TOKENS)
    tok = build_tiny_tokenizer()
    folder.mkdir(parents=True, exist_ok=True)
    tok.backend_tokenizer.save(str(folder / "tokenizer.json"))
    config = {"pad_token": tok.pad_token, "eos_token": tok.eos_token, "tokenizer_class": "PreTrainedTokenizerFast",
              "padding_side": tok.padding_side, **({"extra_special_tokens": named} if named else {})}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False))
    (folder / "special_tokens_map.json").write_text(json.dumps({"pad_token": tok.pad_token, "eos_token": tok.eos_token}))
    (folder / "chat_template.txt").write_text(CHAT_TEMPLATE, encoding="utf-8")
    return {"tokenizer_digest": tokenizer_digest(tok)}


FAMILIES = ("llava_onevision", "internvl")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    meta = {family: export(family, args.out / family) for family in FAMILIES}
    (args.out / "meta.json").write_text(json.dumps(meta))
    print(json.dumps(meta))
    return meta


if __name__ == "__main__":
    main()
