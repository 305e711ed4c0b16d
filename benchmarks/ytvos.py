"""Ref-YouTube-VOS (valid split; ground truth is held by the challenge server).

Official layout (ReferFormer ``docs/Ref-Youtube-VOS.md``, ``inference_ytvos.py``)::

    meta_expressions/valid/meta_expressions.json  {"videos": {VIDEO: {"expressions":
                                                   {EXP_ID: {"exp": TEXT}}, "frames": [...]}}}
    valid/JPEGImages/VIDEO/FRAME.jpg

The valid meta carries no object ids. Predictions are submitted as a zip of
``Annotations/VIDEO/EXP_ID/FRAME.png`` for every frame listed in the meta file
(``decaf export``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from .base import Expression, GroundTruth
from .formats import MetaBenchmark, as_id_tuple


class RefYoutubeVOS(MetaBenchmark):
    name: ClassVar[str] = "ref-youtube-vos"
    description: ClassVar[str] = "Ref-YouTube-VOS valid (no public ground truth: export a zip for the server)"
    splits: ClassVar[tuple[str, ...]] = ("valid",)
    metrics: ClassVar[tuple[str, ...]] = ("J", "F", "JF")
    ground_truth_splits: ClassVar[tuple[str, ...]] = ()

    def meta_path(self) -> Path:
        return self.root / "meta_expressions" / self.split / "meta_expressions.json"

    def frames_root(self) -> Path:
        return self.root / self.split / "JPEGImages"

    def make_expressions(self, video: str, vdata: Mapping[str, Any], path: Path) -> list[Expression]:
        return [Expression(video=video, exp_id=str(exp_id), text=self.expression_text(vdata, exp_id, path, video),
                           obj_ids=as_id_tuple(entry.get("obj_id") if isinstance(entry, Mapping) else None, path,
                                               f"videos.{video}.expressions.{exp_id}.obj_id"))
                for exp_id, entry in vdata["expressions"].items()]

    def ground_truth(self, expression: Expression) -> GroundTruth:
        raise self._no_ground_truth()
