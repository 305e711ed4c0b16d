"""Helpers shared by tests/test_show.py and tests/test_report.py (a plain module, not a test file).

Why here: test_report.py used to import them from test_show.py, which made one test module
depend on another's import side effects (and collected-test names); a helper module keeps
both independent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


# -- a small run record pair (coarse + sam2 siblings) over the embedded benchmark ------------------
def build_records(root: Path, *, limit: int | None = None, seed: int = 0, variant: str = "decaf",
                  kinds: tuple[str, ...] = ("coarse", "sam2"), names: dict | None = None,
                  shift: float = 0.0, params: dict | None = None, mask_params: dict | None = None,
                  cache_dir: str = "cache") -> dict[str, Path]:
    """Run records as `decaf run` writes them, from synthetic maps peaked on the ground truth.

    ``params``: fusion parameters of the variant (its label becomes ``variant[k=v]``, as
    :class:`~decafbench.pipeline.VariantSpec` writes it); ``mask_params``: SAM2 thresholds
    of the sam2 record; ``cache_dir``: the manifest's cache folder, relative to ``root``."""
    import torch

    from decafbench import fusion
    from decafbench.benchmarks.registry import get_benchmark
    from decafbench.cache import AttentionCache, MapsRecord, cache_key
    from decafbench.coarse import coarse_masks
    from decafbench.maskio import write_mask_png
    from decafbench.naming import record_folder_names
    from decafbench.pipeline import key_frame_indices, subset_ground_truth
    from decafbench.runstore import RunWriter, base_manifest

    rng = np.random.default_rng(seed)
    bench = get_benchmark("embedded")
    cache = AttentionCache(root / "cache")
    writers = {}
    label = variant + ("[" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + "]" if params else "")
    for kind in kinds:
        mp = {"kind": kind, "point_threshold": 0.8, "final_score_threshold": 0.8,
              **(mask_params if kind == "sam2" and mask_params else {})}
        mlabel = kind if kind == "coarse" or not mask_params else \
            f"sam2[pq={mp['point_threshold']},trk={mp['final_score_threshold']}]"
        name = (names or {}).get(kind) or record_folder_names([(label, mlabel)])[0]  # as decaf run names them
        manifest = base_manifest("run", command=["test"], name=f"qwen2-vl:tiny {label} {mlabel}", **bench.describe(),
                                 adapter="qwen2-vl", checkpoint="tiny", variant=variant, variant_label=label,
                                 variant_params=dict(params or {}), mask_kind=kind, mask_params=mp,
                                 config={"cache_dir": cache_dir, "num_frames": 16},
                                 attention_cache=f"../{cache_dir}")
        writers[kind] = RunWriter(root / name, manifest)
    for expr in bench.expressions()[:limit]:
        video = bench.video(expr.video)
        idx = key_frame_indices(len(video.frames), 16)
        names_k = [video.frames[i] for i in idx]
        gt = bench.ground_truth(expr)
        gt_key = subset_ground_truth(gt, names_k)
        small = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(gt_key.masks.astype(np.float32)), (6, 8))
        obj_f = small + 0.1 * torch.rand(small.shape, generator=torch.Generator().manual_seed(seed))
        obj_v = torch.nn.functional.adaptive_avg_pool2d(obj_f[::2], (3, 4))
        maps = MapsRecord(obj_v * 0.01, torch.rand(obj_v.shape) * 0.005, obj_f * 0.01, torch.rand(obj_f.shape) * 0.005,
                          temporal_stride=2, texts={"obj_name": "shape", "background_video": ["grey floor"],
                                                    "background_frame": ["floor"] * 16})
        key = cache_key({"video": expr.video, "exp": expr.exp_id, "seed": seed})
        cache.put(key, maps)
        stages = fusion.stages(variant, maps.obj_video, maps.bg_video, maps.obj_frame, maps.bg_frame, temporal_stride=2,
                               **(params or {}))
        # diagnostics are another module's job (tests/test_diagnostics.py): plausible values suffice here
        diag = {f"diag_{s}_{m}": float(rng.uniform(0.1 * i, 0.1 * i + 0.3)) for i, s in enumerate(stages)
                for m in ("iou", "hit", "mass")}
        for kind, writer in writers.items():
            if kind == "coarse":
                masks, frames = coarse_masks(stages["fused"], gt.masks.shape[1:]), names_k
            else:
                masks, frames = np.roll(gt.masks, 3, axis=2), list(gt.frames)
            for f, m in zip(frames, masks):
                write_mask_png(writer.dir / "predictions" / expr.video / expr.exp_id / f"{f}.png", m)
            j = float(np.clip(rng.uniform(0.2, 0.9) + shift, 0, 1))
            f_ = float(np.clip(rng.uniform(0.2, 0.9) + shift, 0, 1))
            writer.add({"video": expr.video, "exp_id": expr.exp_id, "split": "", "J": j, "F": f_, "JF": (j + f_) / 2,
                        "error": "", "obj_name": "shape", "cache_key": key, "key_frames": " ".join(names_k), **diag})
    return {kind: (w.finalize() is not None) and w.dir for kind, w in writers.items()}


def cli(argv, capsys) -> tuple[int, str, str]:
    from decafbench.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err

