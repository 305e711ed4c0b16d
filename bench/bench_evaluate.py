"""End-to-end `decaf evaluate` against a toolkit-style evaluation script, same files, one run.

The toolkit-style script is what each benchmark ships (the MeViS / ReVOS scripts built on the
DAVIS 2017 toolkit): for every expression and frame, read the prediction PNG with PIL, decode
each object's RLE with pycocotools, then ``db_eval_iou`` and ``f_measure`` (full-frame
``_seg2bmap``, OpenCV disk dilation) per frame. decafbench reads the same files with
``decaf evaluate``'s code path (ids checked, every PNG checked, each ground-truth RLE decoded
once per video, the next expression's PNGs decoded on a thread while the current one is
scored) and scores with decafbench.metrics.

Equal parallelism: both sides are timed in one process (serial) and with one process per core
(the toolkit-style script over the videos split across a process pool; ``--workers N``).

The benchmark is a synthetic MeViS-layout set at the real 854x480 size (``decaf benchmarks
synth``), written once into the git-ignored ``bench/out/`` and reused.

    python bench/bench_evaluate.py [--quick]
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary import emit  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def toolkit_style(split_dir: Path, pred_dir: Path, videos: list[str] | None = None
                  ) -> dict[tuple[str, str], float]:
    """A faithful stand-in for the official scripts: per frame, full-frame, OpenCV dilation."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    from decafbench.reference.metrics import toolkit_f_measure, toolkit_jaccard

    meta = json.loads((split_dir / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split_dir / "mask_dict.json").read_text())
    out = {}
    for video, vmeta in meta.items():
        if videos is not None and video not in videos:
            continue
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


def toolkit_style_parallel(split_dir: Path, pred_dir: Path, workers: int) -> dict:
    """The same script with the videos dealt round-robin to ``workers`` processes."""
    videos = sorted(json.loads((split_dir / "meta_expressions.json").read_text())["videos"])
    parts = [videos[i::workers] for i in range(workers)]
    out: dict = {}
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(toolkit_style, [split_dir] * workers, [pred_dir] * workers, parts):
            out.update(part)
    return out


def prepare(videos: int, frames: int, exprs: int) -> tuple[Path, Path, int]:
    """The synthetic benchmark and shifted-ground-truth predictions (reused when present)."""
    from decafbench.benchmarks.registry import get_benchmark
    from decafbench.benchmarks.synth import SynthConfig, write_synth
    from decafbench.maskio import write_mask_png

    cfg = SynthConfig(videos=videos, frames=frames, height=480, width=854, seed=1,
                      expressions_per_video=exprs)
    root = OUT / f"evaluate-{videos}x{frames}x{exprs}"
    done = root / "prepared.json"
    if not done.is_file():
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        write_synth(cfg, root / "data")
        bench = get_benchmark("mevis", root=root / "data", split="valid_u")
        rng = np.random.default_rng(0)
        n = 0
        for e in bench.expressions():
            gt = bench.ground_truth(e)
            for name, m in zip(gt.frames, gt.masks):
                pred = np.roll(m, int(rng.integers(-6, 7)), axis=int(rng.integers(0, 2)))
                write_mask_png(root / "pred" / e.video / e.exp_id / f"{name}.png", pred)
                n += 1
        done.write_text(json.dumps({"frames": n}))
    return root / "data", root / "pred", json.loads(done.read_text())["frames"]


def main(quick: bool) -> None:
    from decafbench.benchmarks.registry import get_benchmark
    from decafbench.evaluate import EvalOptions, evaluate

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    data, pred, n_frames = prepare(*((3, 8, 2) if quick else (12, 60, 3)))
    split_dir = data / "valid_u"
    cores = os.cpu_count() or 1
    times: dict[str, float] = {}
    rows_by: dict[str, list] = {}
    # warm-up: imports (cv2, skimage) and the page cache, so neither side pays them
    toolkit_style(split_dir, pred, videos=[sorted(json.loads((split_dir / "meta_expressions.json")
                                                          .read_text())["videos"])[0]])
    t0 = time.perf_counter()
    ref = toolkit_style(split_dir, pred)
    times["toolkit-style script, 1 process"] = time.perf_counter() - t0
    for workers in ((1,) if cores == 1 else (1, cores)):
        bench = get_benchmark("mevis", root=data, split="valid_u")  # cold benchmark caches
        t0 = time.perf_counter()
        rows = evaluate(bench, pred, EvalOptions(workers=workers))
        label = f"decaf evaluate --workers {workers}"
        times[label] = time.perf_counter() - t0
        rows_by[label] = rows
        if workers > 1:
            t0 = time.perf_counter()
            ref_n = toolkit_style_parallel(split_dir, pred, workers)
            times[f"toolkit-style script, {workers} processes"] = time.perf_counter() - t0
            assert ref_n == ref
    print(f"machine: {platform.machine()} {cores} cores (shared; load average {load:.1f} at start), "
          f"python {platform.python_version()}")
    print(f"benchmark: synthetic MeViS layout, {len(ref)} expressions, {n_frames} scored frames at 854x480")
    print(f"{'implementation':42s} {'seconds':>8s} {'ms/frame':>9s} {'vs toolkit, same processes':>27s}")
    for label, t in times.items():
        procs = 1 if label.endswith(("1 process", "--workers 1")) else cores
        base = times["toolkit-style script, 1 process" if procs == 1 else f"toolkit-style script, {cores} processes"]
        print(f"{label:42s} {t:8.2f} {1e3 * t / n_frames:9.2f} {base / t:26.1f}x")
    diff = max(abs(r["JF"] - ref[(r["video"], r["exp_id"])]) for rs in rows_by.values() for r in rs)
    print(f"max |J&F difference| per expression against the toolkit-style script: {diff:.3g}")
    one = times["toolkit-style script, 1 process"] / times["decaf evaluate --workers 1"]
    head = f"evaluate {one:.1f}x toolkit-style (1 process)"
    if cores > 1:
        many = times[f"toolkit-style script, {cores} processes"] / times[f"decaf evaluate --workers {cores}"]
        head += f", {many:.1f}x ({cores} processes)"
    emit("evaluate", f"{head}; {n_frames} frames 854x480; max |dJ&F| {diff:.1g}")


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
