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

``decode_rle`` returns row-major frames (``decaf evaluate`` decodes ground truth on a loader
thread, so the transpose overlaps scoring); ``column_major=True`` is pycocotools' own view.
It also times the metrics on the same batch in C order, with column-major ground truth
against row-major predictions, both column-major, and as one Fortran-ordered array, with
OpenCV's transpose and with numpy only: none may run at half the C-order speed.

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
            "RLE  maskio.decode_rle per frame (row-major)": lambda: [decode_rle(r, (h, w)) for r in rles],
            "RLE  same, column_major=True (no transpose)": lambda: [decode_rle(r, (h, w), column_major=True)
                                                                   for r in rles],
        }
        for a, b in ((pil(), cv_imread()), (pil(), [read_mask_png(p) for p in paths]), (pil(), maskio_pillow())):
            assert all(np.array_equal(x, y) for x, y in zip(a, b)), "decoders disagree"
        best = interleaved(fns, rounds)

    track = cocomask.decode(coco_rles)  # (H, W, N), Fortran order
    fortran = np.moveaxis(track, -1, 0).astype(bool)  # (N, H, W): every frame column-major
    c_order = np.ascontiguousarray(fortran)
    assert np.array_equal(fortran, masks)
    preds_col, fortran_all = _colmajor(preds), np.asfortranarray(c_order)
    import decafbench.maskio as maskio

    def numpy_only(fn):
        def run():
            saved = maskio._cv2
            maskio._cv2 = lambda: None  # as without OpenCV installed
            try:
                return fn()
            finally:
                maskio._cv2 = saved
        return run

    t_metrics = interleaved({
        "C": lambda: score_expression(c_order, preds),
        "F": lambda: score_expression(fortran, preds),  # column-major gt, row-major pred
        "both column-major": lambda: score_expression(fortran, preds_col),
        "Fortran (N,H,W) array": lambda: score_expression(fortran_all, preds),
        "F numpy": numpy_only(lambda: score_expression(fortran, preds)),
        "Fortran numpy": numpy_only(lambda: score_expression(fortran_all, preds)),
    }, 2 * rounds)

    print(f"machine: {platform.machine()} {os.cpu_count()} cores (shared; load average {load:.1f} "
          f"at start), python {platform.python_version()}")
    print(f"{n} masks of {w}x{h} (blobs covering 5-20%), ms per frame, best of {rounds} interleaved rounds")
    print(f"{'decode path':48s} {'ms/frame':>9s}")
    for k, t in best.items():
        print(f"{k:48s} {1e3 * t / n:9.3f}")
    rows = [("C-ordered batch", "C"), ("column-major gt, C pred", "F"),
            ("both column-major", "both column-major"), ("Fortran-ordered (N, H, W) array", "Fortran (N,H,W) array"),
            ("column-major gt, C pred, numpy only", "F numpy"),
            ("Fortran-ordered array, numpy only", "Fortran numpy")]
    for label, key in rows:
        print(f"{'metrics J+F, ' + label:48s} {1e3 * t_metrics[key] / n:9.3f}   "
              f"{t_metrics[key] / t_metrics['C']:5.2f}x the C-ordered time")
    ratio = best["PNG  maskio.read_mask_png, Pillow (no OpenCV)"] / best["PNG  same, decoded into a preallocated batch"]
    r = {k: t_metrics[k] / t_metrics["C"] for k in t_metrics}
    emit("decode", f"read_mask_png into a batch {ratio:.2f}x the Pillow path; metrics time column-major gt "
                   f"{r['F']:.2f}x, Fortran {r['Fortran (N,H,W) array']:.2f}x C-ordered "
                   f"(numpy only {r['F numpy']:.2f}x, {r['Fortran numpy']:.2f}x)")

if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
