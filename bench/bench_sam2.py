"""Image-encoder passes and seconds per expression of attention-guided SAM2 prompting.

Three ways to run section 7 on the same frames and the same fused map, in one run:

* reference: the published pattern (:func:`decafbench.reference.sam2_prompting.segment_reference`):
  one ``add_new_points_or_box`` per point and SAM2's stock one-frame feature cache, so every
  key-frame propagation and the final propagation re-encode their frames;
* no-cache: the fast path with the per-expression feature cache disabled (batched points,
  but frames re-encoded per propagation as in the reference), isolating the cache's effect
  (in ``--quick`` runs, or with ``--no-cache-row``);
* cached: the fast path (:func:`decafbench.sam2_prompting.segment`): one pass per frame.

Frames are real 960x540 frames from /work/shared/data/bedroom (24 of them, 16 key frames;
``--quick``: 8 frames at 480x270, 4 key frames). The fused map is a synthetic blob on a
18 x 32 grid drifting over time. The default model is the random-weight hiera-tiny at 64 px
(``--sam2 SPEC`` takes any :func:`decafbench.sam2_model.load_sam2` spec, e.g. ``tiny@256``
or a real ``CONFIG:CHECKPOINT``; ``--device cuda``); with the tiny model the encoder is cheap,
so the seconds understate what the cache saves with hiera-large at 1024 px.

    python bench/bench_sam2.py [--quick] [--no-cache-row] [--sam2 tiny] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from decafbench.reference.sam2_prompting import segment_reference
from decafbench.sam2_model import load_sam2
from decafbench.sam2_prompting import Sam2Config, segment

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bedroom"  # ../shared beside the repo


def load_frames(count: int, scale: float) -> list[np.ndarray]:
    from PIL import Image

    paths = sorted(DATA.glob("*.jpg"))[:count]
    if len(paths) < count:
        sys.exit(f"{DATA}: need {count} jpg frames, found {len(paths)}")
    frames = []
    for path in paths:
        img = Image.open(path).convert("RGB")
        if scale != 1.0:
            img = img.resize((round(img.width * scale), round(img.height * scale)))
        frames.append(np.array(img))
    return frames


def fused_map(t: int, h: int = 18, w: int = 32) -> torch.Tensor:
    """A Gaussian blob (peak 1, sigma 1.3 cells) moving right: ~5 cells >= 0.8 per frame."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    maps = [torch.exp(-((yy - 9.2) ** 2 + (xx - 10.3 - 0.6 * k) ** 2) / (2 * 1.3 ** 2)) for k in range(t)]
    return torch.stack(maps)


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    where = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU {cpu}"
    return f"{where}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sam2", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="frame scale of the full run (1.0: 960x540)")
    parser.add_argument("--no-cache-row", action="store_true",
                        help="also time the fast path with the cache off in a full run (always on in --quick)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: CPU seconds stay comparable on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_frames, n_keys, scale = (4, 2, 0.5) if args.quick else (24, 16, args.scale)
    frames = load_frames(n_frames, scale)
    keys = np.linspace(0, n_frames - 1, n_keys).astype(int).tolist()
    fused = fused_map(len(keys))
    predictor = load_sam2(args.sam2, args.device)
    calls: list[int] = []
    predictor.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    runs = [
        ("reference (per-point API, stock 1-frame cache)", lambda: segment_reference(predictor, frames, keys, fused)),
        ("fast, feature cache off", lambda: segment(predictor, frames, keys, fused, Sam2Config(cache_features=False))),
        ("fast, cached (one pass per frame)", lambda: segment(predictor, frames, keys, fused)),
    ]
    if not (args.quick or args.no_cache_row):
        runs.pop(1)  # keeps a full run near 2 minutes of CPU on the shared test machine
    rows = []
    for name, run in runs:
        calls.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sam2: no CUDA extension, hole filling skipped
            t0, c0 = time.perf_counter(), time.process_time()
            result = run()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows.append((name, len(calls), seconds, cpu, result))
    ref_masks, last = rows[0][4].masks, rows[-1][4]
    h, w = frames[0].shape[:2]
    print(f"bench_sam2: {n_frames} frames {w}x{h}, {n_keys} key frames, model {args.sam2!r} on {args.device}")
    print(f"machine: {machine(args.device)}")
    print(f"points {last.stats['points']}, tracklets {last.stats['tracklets']}, kept {last.stats['tracklets_kept']}")
    print(f"{'pattern':<48} {'encoder passes':>14} {'wall s / expr':>14} {'CPU s / expr':>13} "
          f"{'speed-up (CPU)':>15} {'same masks':>11}")
    for name, passes, seconds, cpu, result in rows:
        same = bool((result.masks == ref_masks).all())
        print(f"{name:<48} {passes:>14d} {seconds:>14.2f} {cpu:>13.2f} {rows[0][3] / cpu:>14.2f}x {str(same):>11}")
    from summary import emit  # bench/summary.py: the line run_all.py's table shows

    emit("sam2", f"cached path {rows[0][3] / rows[-1][3]:.1f}x reference CPU, encoder passes "
                 f"{rows[0][1]} -> {rows[-1][1]}, same masks {bool((last.masks == ref_masks).all())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
