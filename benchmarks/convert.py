"""Format conversions: a trusted ``mask_dict.pkl`` to JSON, and predictions to a server zip.

Kept apart from the readers because both write files, and the readers never do.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from decafbench.errors import InputError
from decafbench.safepath import check_id

from .base import Benchmark
from .formats import load_pickle_mask_dict

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def find_pickle(root: Path) -> Path:
    """``root/mask_dict.pkl`` or ``root/valid/mask_dict.pkl`` (VISA's Ref-DAVIS17 layout)."""
    for cand in (root / "mask_dict.pkl", root / "valid" / "mask_dict.pkl"):
        if cand.is_file():
            return cand
    raise InputError("no mask_dict.pkl here or in valid/", root)


def convert_mask_dict(root: str | Path, *, trust_pickle: bool = False, overwrite: bool = False) -> Path:
    """Write ``mask_dict.json`` beside ``mask_dict.pkl`` (RLE counts as str); returns its path."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("dataset root does not exist or is not a folder", root)
    pkl = find_pickle(root)
    if not trust_pickle:
        raise InputError("is a pickle, and loading a pickle runs code: pass --trust-pickle to convert it "
                         "if you trust its source", pkl)
    out = pkl.with_name("mask_dict.json")
    if out.exists() and not overwrite:
        raise InputError("already exists (pass --overwrite to replace it)", out)
    data = load_pickle_mask_dict(pkl)
    for key, track in data.items():
        if not isinstance(track, list) or not all(r is None or isinstance(r, dict) for r in track):
            raise InputError(f"field {key!r} should be a list of RLE dicts or None", pkl)
    from decafbench.atomicio import atomic_write_text

    try:
        text = json.dumps(data, separators=(",", ":"))
    except TypeError as exc:
        raise InputError(f"holds values JSON cannot store ({exc})", pkl) from None
    atomic_write_text(out, text + "\n")
    return out


def prediction_dir(pred: str | Path) -> Path:
    """``pred`` itself, or ``pred/predictions`` when ``pred`` is a run record folder."""
    pred = Path(pred)
    if (pred / "predictions").is_dir():
        return pred / "predictions"
    if not pred.is_dir():
        raise InputError("predictions folder does not exist", pred)
    return pred


def member_name(*parts: str) -> str:
    """A zip member name from ids: each part one plain name, so nothing can unpack outside
    the folder it is unpacked into (no ``..``, no absolute path, no separator in an id)."""
    for part in parts:
        check_id(part, "zip member part")
    name = "/".join(parts)
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:  # pragma: no cover - check_id already refuses these
        raise InputError(f"zip member name {name!r} would leave the folder")
    return name


def export_submission(bench: Benchmark, pred: str | Path, out: str | Path) -> int:
    """Zip ``Annotations/VIDEO/EXP_ID/FRAME.png`` for every frame of every expression.

    The layout is the one the Ref-YouTube-VOS and MeViS servers take (as produced by
    ReferFormer's and VISA's ``zip`` scripts). Nothing is written unless every mask is
    present, is a decodable PNG (real PNG signature, not a renamed JPEG) of its frame's size,
    and every member name is a plain relative path; the zip is written to a temporary name
    and renamed.
    """
    from decafbench.maskio import check_png
    from decafbench.safepath import safe_join

    from .formats import frame_size

    pred_dir = prediction_dir(pred)
    out = Path(out)
    if out.is_dir():
        raise InputError("--out is a folder; give the zip file to write", out)
    for parent in out.parents:  # checked before the work, not after it
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"--out: its parent {parent} is a file, not a folder", out)
            break
    jobs: list[tuple[Path, str]] = []
    missing: list[Path] = []
    sizes: dict[str, tuple[int, int]] = {}
    for exp in bench.expressions():
        video = bench.video(exp.video)
        for frame in video.frames:
            p = safe_join(pred_dir, exp.video, exp.exp_id, f"{frame}.png", what="prediction")
            if p.is_file():
                jobs.append((p, member_name("Annotations", exp.video, exp.exp_id, f"{frame}.png")))
            else:
                missing.append(p)
    if missing:
        raise InputError(f"predictions incomplete: {len(missing)} of {len(missing) + len(jobs)} masks missing, "
                         f"first {missing[0].relative_to(pred_dir)}", pred_dir)
    # every mask is checked before anything is written
    for path, arcname in jobs:
        video_name = arcname.split("/")[1]
        if video_name not in sizes:
            sizes[video_name] = frame_size(bench.video(video_name))
        check_png(path, sizes[video_name], what="prediction PNG")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path, arcname in jobs:
                data = path.read_bytes()
                if not data.startswith(PNG_SIGNATURE):  # changed since it was checked
                    raise InputError("not a PNG file", path)
                zf.writestr(arcname, data)
        from decafbench.atomicio import apply_umask

        apply_umask(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(jobs)
