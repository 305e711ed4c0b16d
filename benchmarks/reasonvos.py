"""ReasonVOS (VideoLISA's reasoning VOS benchmark; BURST, VIPSeg, MOSE and MeViS videos).

Official layout (showlab/VideoLISA ``BENCHMARK.md``, ``benchmark_check.py``,
``evaluation/reason_vos/eval_reason_vos.py``)::

    meta_expressions.json   {"videos": {VIDEO: {"source": "MeViS"|"MOSE"|"BURST"|"VIPSeg",
                             "frames": [...], "is_sent": bool, "expressions":
                             {EXP_ID: {"exp_text": TEXT, "obj_id": ID}}}}}
    JPEGImages/VIDEO/FRAME.jpg
    Annotations/{source}_{VIDEO}_{obj_id}/FRAME.png   binary (0/255) masks, annotated frames only

The official scripts disagree on the case of ``source`` in the mask folder name
(``benchmark_check.py`` lowercases it, ``eval_reason_vos.py`` does not); both are tried.
Ground truth covers the PNGs present in the folder (the annotated frames). The official
evaluation writes predictions under ``VIDEO/obj_id``; the harness keys jobs by EXP_ID like
every other benchmark. ``exp`` is accepted where ``exp_text`` is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from decafbench.errors import InputError
from decafbench.maskio import read_mask_png
from decafbench.safepath import check_id, safe_join

from .base import Expression, GroundTruth
from .formats import MetaBenchmark, as_id_tuple, list_pngs


class ReasonVOS(MetaBenchmark):
    name: ClassVar[str] = "reasonvos"
    description: ClassVar[str] = "ReasonVOS: reasoning expressions on BURST/VIPSeg/MOSE/MeViS videos"
    splits: ClassVar[tuple[str, ...]] = ("test",)
    metrics: ClassVar[tuple[str, ...]] = ("J", "F", "JF")
    ground_truth_splits: ClassVar[tuple[str, ...]] = ("test",)

    def meta_path(self) -> Path:
        return self.root / "meta_expressions.json"

    def frames_root(self) -> Path:
        return self.root / "JPEGImages"

    def make_expressions(self, video: str, vdata: Mapping[str, Any], path: Path) -> list[Expression]:
        out = []
        for exp_id, entry in vdata["expressions"].items():
            where = f"videos.{video}.expressions.{exp_id}"
            text = self.expression_text(vdata, exp_id, path, video, fields=("exp_text", "exp"))
            if "obj_id" not in entry:
                raise InputError(f"missing field {where}.obj_id", path)
            out.append(Expression(video=video, exp_id=str(exp_id), text=text,
                                  obj_ids=as_id_tuple(entry["obj_id"], path, f"{where}.obj_id")))
        return out

    def mask_dir(self, video: str, obj_id: str) -> Path:
        source = self.meta[video].get("source")
        if not isinstance(source, str):
            raise InputError(f"missing field videos.{video}.source", self.meta_path())
        check_id(source, f"videos.{video}.source", self.meta_path())
        check_id(obj_id, f"videos.{video}.expressions.*.obj_id", self.meta_path())
        base = self.root / "Annotations"
        candidates = [safe_join(base, f"{s}_{video}_{obj_id}", what="annotation folder")
                      for s in dict.fromkeys((source.lower(), source))]
        for c in candidates:
            if c.is_dir():
                return c
        raise InputError("missing annotation folder", candidates[0])

    def ground_truth(self, expression: Expression) -> GroundTruth:
        import numpy as np

        dirs = [self.mask_dir(expression.video, o) for o in expression.obj_ids]
        if not dirs:
            raise InputError(f"expression {expression.exp_id!r} of video {expression.video!r} has no obj_id",
                             self.meta_path())
        frames = list_pngs(dirs[0])
        if not frames:
            raise InputError("annotation folder has no PNG", dirs[0])
        masks = None
        for d in dirs:
            m = np.stack([read_mask_png(d / f"{f}.png") for f in frames])
            if masks is not None and m.shape != masks.shape:
                raise InputError(f"masks of {d.name} differ in size from {dirs[0].name}", d)
            masks = m if masks is None else masks | m
        return GroundTruth(frames=frames, masks=masks, meta={"source": "Annotations", "obj_ids": list(expression.obj_ids)})
