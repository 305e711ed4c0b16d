"""End-to-end `decaf evaluate` against a toolkit-style evaluation script, same benchmark, one run.

The toolkit-style script is what each benchmark ships (MeViS/ReVOS eval scripts built on the
DAVIS toolkit): one process, for every expression read each prediction PNG, decode each
object's RLE, then db_eval_iou and f_measure (OpenCV disk dilation) per frame. decafbench reads
the same files and scores with decafbench.metrics, one video per worker process.

    python bench/bench_evaluate.py [--quick]
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def toolkit_style(bench, pred_dir: Path) -> dict[tuple[str, str], float]:
    """A faithful stand-in for the official scripts: serial, full-frame, OpenCV dilation."""
    import json

    from PIL import Image
    from pycocotools import mask as mask_utils

    from decafbench.reference.metrics import toolkit_f_measure, toolkit_jaccard

    split_dir = bench.root / bench.split if (bench.root / bench.split).is_dir() else bench.root
    meta = json.loads((split_dir / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split_dir / "mask_dict.json").read_text())
    out = {}
    for video, vmeta in meta.items():
        frames = vmeta["frames"]
        for exp_id, exp in vmeta["expressions"].items():
            js, fs = [], []
            for t, frame in enumerate(frames):
                gt = None
                for anno in exp["anno_id"]:
                    rle = mask_dict[str(anno)][t]
                    if rle is not None:
                        m = mask_utils.decode(rle).astype(bool)
                        gt = m if gt is None else gt | m
                pred = np.array(Image.open(pred_dir / video / exp_id / f"{frame}.png")) > 0
                gt = np.zeros_like(pred) if gt is None else gt
                js.append(toolkit_jaccard(gt, pred))
                fs.append(toolkit_f_measure(pred, gt))
            out[(video, exp_id)] = (float(np.mean(js)) + float(np.mean(fs))) / 2
    return out


def main(quick: bool) -> None:
    from decafbench.benchmarks.registry import get_benchmark
    from decafbench.benchmarks.synth import SynthConfig, write_synth
    from decafbench.evaluate import EvalOptions, evaluate
    from decafbench.maskio import write_mask_png

    videos, frames = (4, 10) if quick else (8, 30)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synth(SynthConfig(videos=videos, frames=frames, height=480, width=854, seed=1), tmp / "data")
        bench = get_benchmark("mevis", root=tmp / "data", split="valid_u")
        rng = np.random.default_rng(0)
        n_frames = 0
        for e in bench.expressions():
            gt = bench.ground_truth(e)
            for name, m in zip(gt.frames, gt.masks):
                pred = np.roll(m, int(rng.integers(-6, 7)), axis=int(rng.integers(0, 2)))
                write_mask_png(tmp / "pred" / e.video / e.exp_id / f"{name}.png", pred)
                n_frames += 1
        t0 = time.perf_counter()
        ref = toolkit_style(bench, tmp / "pred")
        t_ref = time.perf_counter() - t0
        results = {}
        for workers in (1, os.cpu_count() or 1):
            bench = get_benchmark("mevis", root=tmp / "data", split="valid_u")  # cold caches
            t0 = time.perf_counter()
            rows = evaluate(bench, tmp / "pred", EvalOptions(workers=workers))
            results[workers] = (time.perf_counter() - t0, rows)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
        print(f"benchmark: synthetic MeViS layout, {len(ref)} expressions, {n_frames} scored frames at 854x480")
        print(f"{'implementation':38s} {'seconds':>8s} {'ms/frame':>9s} {'speed-up':>9s}")
        print(f"{'toolkit-style script (serial)':38s} {t_ref:8.2f} {1e3 * t_ref / n_frames:9.2f} {1.0:9.1f}")
        for workers, (t, rows) in results.items():
            label = f"decafbench evaluate ({workers} worker{'s' if workers > 1 else ''})"
            print(f"{label:38s} {t:8.2f} {1e3 * t / n_frames:9.2f} {t_ref / t:9.1f}")
        rows = results[max(results)][1]
        diff = max(abs(r["JF"] - ref[(r["video"], r["exp_id"])]) for r in rows)
        print(f"max |J&F difference| per expression: {diff:.3g}")


if __name__ == "__main__":
    main("--quick" in sys.argv)
