"""Mask decode paths at real size (854x480): what `decaf evaluate` spends its time on.

Evaluation is decode-bound (the metrics core is 10-17x the DAVIS toolkit), so this compares
the ways a mask can reach a boolean array, per frame, same masks, same run:

* PNG (0/255 8-bit grayscale, as ``decaf run`` writes them): Pillow ``Image.open`` + ``load``
  + ``np.asarray``; ``decafbench.maskio.read_mask_png`` with Pillow only, with OpenCV (its
  path for 8-bit grayscale when OpenCV is installed), and decoding into a preallocated batch
  (what ``decaf evaluate`` does); OpenCV ``cv2.imread(path, IMREAD_UNCHANGED)``;
  ``cv2.imdecode`` of bytes already read;
* COCO RLE (MeViS / ReVOS ground truth): ``pycocotools.mask.decode`` one frame at a time,
  a whole track in one call (it returns ``(H, W, N)`` Fortran order), and
  ``decafbench.maskio.decode_rle``.

It also times the metrics on the same batch in C order, with column-major ground truth (as
``decaf evaluate`` holds RLE ground truth) against row-major predictions, both column-major,
and as one Fortran-ordered array: none may run at a fraction of the C-order speed.

    python bench/bench_decode.py [--quick]
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_metrics import blob, interleaved  # noqa: E402
from summary import emit  # noqa: E402


def _colmajor(a: np.ndarray) -> np.ndarray:
    """(N, H, W) with every frame column-major, as pycocotools decodes a track."""
    return np.moveaxis(np.asfortranarray(np.moveaxis(a, 0, -1)), -1, 0)


def main(quick: bool) -> None:
    import cv2
    from PIL import Image
    from pycocotools import mask as cocomask

    from decafbench.maskio import decode_rle, encode_rle, read_mask_png, write_mask_png
    from decafbench.metrics import score_expression

    n = 8 if quick else 64
    rounds = 2 if quick else 4
    h, w = 480, 854
    rng = np.random.default_rng(0)
    masks = np.stack([blob(h, w, rng, rng.uniform(0.05, 0.2))[0] for _ in range(n)])
    preds = np.stack([np.roll(m, int(rng.integers(-6, 7)), axis=1) for m in masks])
    rles = [encode_rle(m) for m in masks]
    coco_rles = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"{i:05d}.png" for i in range(n)]
        for p, m in zip(paths, masks):
            write_mask_png(p, m)
        blobs = [p.read_bytes() for p in paths]

        def pil():
            return [np.asarray(Image.open(p)) != 0 for p in paths]

        def cv_imread():
            return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) != 0 for p in paths]

        def cv_imdecode():
            return [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED) != 0 for b in blobs]

        import decafbench.maskio as maskio

        def maskio_pillow():
            saved = maskio._cv2
            maskio._cv2 = lambda: None  # as without OpenCV installed
            try:
                return [read_mask_png(p) for p in paths]
            finally:
                maskio._cv2 = saved

        batch = np.empty((n, h, w), dtype=bool)
        fns = {
            "PNG  Pillow open+asarray": pil,
            "PNG  maskio.read_mask_png, Pillow (no OpenCV)": maskio_pillow,
            "PNG  maskio.read_mask_png (checks; OpenCV)": lambda: [read_mask_png(p) for p in paths],
            "PNG  same, decoded into a preallocated batch": lambda: [read_mask_png(p, out=batch[i])
                                                                    for i, p in enumerate(paths)],
            "PNG  cv2.imread IMREAD_UNCHANGED": cv_imread,
            "PNG  cv2.imdecode (bytes in memory)": cv_imdecode,
            "RLE  pycocotools.decode per frame": lambda: [cocomask.decode(r) for r in coco_rles],
            "RLE  pycocotools.decode whole track": lambda: cocomask.decode(coco_rles),
            "RLE  maskio.decode_rle per frame": lambda: [decode_rle(r, (h, w)) for r in rles],
        }
        for a, b in ((pil(), cv_imread()), (pil(), [read_mask_png(p) for p in paths]), (pil(), maskio_pillow())):
            assert all(np.array_equal(x, y) for x, y in zip(a, b)), "decoders disagree"
        best = interleaved(fns, rounds)

    track = cocomask.decode(coco_rles)  # (H, W, N), Fortran order
    fortran = np.moveaxis(track, -1, 0).astype(bool)  # (N, H, W): every frame column-major
    c_order = np.ascontiguousarray(fortran)
    assert np.array_equal(fortran, masks)
    preds_col, fortran_all = _colmajor(preds), np.asfortranarray(c_order)
    t_metrics = interleaved({
        "C": lambda: score_expression(c_order, preds),
        "F": lambda: score_expression(fortran, preds),  # column-major gt, row-major pred (evaluate)
        "both column-major": lambda: score_expression(fortran, preds_col),
        "Fortran (N,H,W) array": lambda: score_expression(fortran_all, preds),
    }, 2 * rounds)

    print(f"machine: {platform.machine()} {os.cpu_count()} cores (shared; load average {load:.1f} "
          f"at start), python {platform.python_version()}")
    print(f"{n} masks of {w}x{h} (blobs covering 5-20%), ms per frame, best of {rounds} interleaved rounds")
    print(f"{'decode path':48s} {'ms/frame':>9s}")
    for k, t in best.items():
        print(f"{k:48s} {1e3 * t / n:9.3f}")
    print(f"{'metrics J+F, C-ordered batch':48s} {1e3 * t_metrics['C'] / n:9.3f}")
    print(f"{'metrics J+F, column-major gt, C pred':48s} {1e3 * t_metrics['F'] / n:9.3f}")
    print(f"{'metrics J+F, both column-major':48s} {1e3 * t_metrics['both column-major'] / n:9.3f}")
    print(f"{'metrics J+F, Fortran-ordered (N, H, W) array':48s} "
          f"{1e3 * t_metrics['Fortran (N,H,W) array'] / n:9.3f}")
    ratio = best["PNG  maskio.read_mask_png, Pillow (no OpenCV)"] / best["PNG  same, decoded into a preallocated batch"]
    emit("decode", f"read_mask_png into a batch {ratio:.2f}x the Pillow path; metrics time column-major "
                   f"{t_metrics['F'] / t_metrics['C']:.2f}x, Fortran {t_metrics['Fortran (N,H,W) array'] / t_metrics['C']:.2f}x"
                   " C-ordered")


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
