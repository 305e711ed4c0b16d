"""Ref-DAVIS17 (valid split, 30 videos; ground truth public).

Layout after ReferFormer's conversion (``tools/data/convert_davis_to_ytvos.py``)::

    meta_expressions/valid/meta_expressions.json  {"videos": {VIDEO: {"expressions":
                                                   {EXP_ID: {"exp": TEXT, "obj_id": "1"}},
                                                   "frames": [...]}}}
    valid/JPEGImages/VIDEO/FRAME.jpg
    valid/Annotations/VIDEO/FRAME.png             palette PNG, pixel index = object id (0 = bg)

Each video has four expressions per object (two annotators x first-frame / full-video
descriptions). VISA (``tools/eval_davis17.py``) repackages the masks as
``valid/mask_dict.pkl``: pycocotools RLE lists keyed by an annotation id that its loader
assigns sequentially over sorted video names and, within a video, sorted expression ids
(string order), one per expression. This reader uses, in order: ``Annotations/VIDEO``
PNGs, ``valid/mask_dict.json`` (``decaf benchmarks convert`` writes it from the pickle), and
``valid/mask_dict.pkl`` only with ``trust_pickle=True`` (a pickle runs code when loaded).
An ``obj_id`` list names several objects: the target is their union.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Mapping

from decafbench.errors import InputError
from decafbench.maskio import read_label_png

from .base import Expression, GroundTruth
from .formats import MetaBenchmark, as_id_tuple, list_pngs, load_mask_dict, rle_ground_truth


class RefDavis17(MetaBenchmark):
    name: ClassVar[str] = "ref-davis17"
    description: ClassVar[str] = "Ref-DAVIS17 valid: referring expressions on DAVIS 2017 (palette PNG or RLE masks)"
    splits: ClassVar[tuple[str, ...]] = ("valid",)
    metrics: ClassVar[tuple[str, ...]] = ("J", "F", "JF")
    ground_truth_splits: ClassVar[tuple[str, ...]] = ("valid",)

    def meta_path(self) -> Path:
        return self.root / "meta_expressions" / self.split / "meta_expressions.json"

    def frames_root(self) -> Path:
        return self.root / self.split / "JPEGImages"

    @cached_property
    def _visa_anno_ids(self) -> dict[tuple[str, str], str]:
        """VISA's sequential annotation ids (sorted videos, then sorted expression ids)."""
        ids: dict[tuple[str, str], str] = {}
        count = 0
        for video in sorted(self.meta):
            for exp_id in sorted(self.meta[video]["expressions"]):
                ids[(video, str(exp_id))] = str(count)
                count += 1
        return ids

    def make_expressions(self, video: str, vdata: Mapping[str, Any], path: Path) -> list[Expression]:
        out = []
        for exp_id, entry in vdata["expressions"].items():
            where = f"videos.{video}.expressions.{exp_id}"
            text = self.expression_text(vdata, exp_id, path, video)
            if "obj_id" not in entry:
                raise InputError(f"missing field {where}.obj_id", path)
            anno = as_id_tuple(entry.get("anno_id"), path, f"{where}.anno_id") or (self._visa_anno_ids[(video, str(exp_id))],)
            out.append(Expression(video=video, exp_id=str(exp_id), text=text,
                                  obj_ids=as_id_tuple(entry["obj_id"], path, f"{where}.obj_id"), anno_ids=anno))
        return out

    @property
    def annotations_dir(self) -> Path:
        return self.root / self.split / "Annotations"

    @cached_property
    def _mask_dict(self) -> tuple[dict, Path]:
        split_dir = self.root / self.split
        return load_mask_dict(split_dir / "mask_dict.json", split_dir / "mask_dict.pkl", trust_pickle=self.trust_pickle)

    def ground_truth(self, expression: Expression) -> GroundTruth:
        import numpy as np

        anno_dir = self.annotations_dir / expression.video
        if not anno_dir.is_dir():
            split_dir = self.root / self.split
            if not any((split_dir / n).is_file() for n in ("mask_dict.json", "mask_dict.pkl")):
                raise InputError("missing ground truth: no annotation folder, and no mask_dict.json or "
                                 "mask_dict.pkl in " + str(split_dir), anno_dir)
            mask_dict, path = self._mask_dict
            return rle_ground_truth(self, expression, mask_dict, path)
        frames = list_pngs(anno_dir)
        if not frames:
            raise InputError("annotation folder has no PNG", anno_dir)
        try:
            ids = np.array([int(o) for o in expression.obj_ids], dtype=np.int64)
        except ValueError:
            raise InputError(f"field videos.{expression.video}.expressions.{expression.exp_id}.obj_id "
                             f"should be integer palette ids, got {list(expression.obj_ids)}", self.meta_path()) from None
        labels = [read_label_png(anno_dir / f"{f}.png") for f in frames]
        shapes = {lab.shape for lab in labels}
        if len(shapes) != 1:
            raise InputError(f"annotation PNGs differ in size: {sorted(shapes)}", anno_dir)
        masks = np.isin(np.stack(labels), ids)
        return GroundTruth(frames=frames, masks=masks, meta={"source": "Annotations", "obj_ids": list(expression.obj_ids)})
