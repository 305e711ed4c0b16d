"""ReVOS (VISA's reasoning video object segmentation benchmark), valid split.

Official layout (cilinyan/ReVOS-api README; VISA ``tools/eval_revos.py``)::

    JPEGImages/VIDEO/FRAME.jpg          (train and valid videos together)
    mask_dict.json                      {str(anno_id): [RLE or null per frame]}
    mask_dict_foreground.json           {VIDEO: {"masks_rle": [RLE per frame], "foreground_ratio": [...]}}
    meta_expressions_valid_.json        {"videos": {VIDEO: {"expressions": {EXP_ID: {"exp": TEXT,
                                         "obj_id": [...], "anno_id": [...], "type_id": 0|1|2}},
                                         "frames": [...], "height": H, "width": W}}}

The expression type is ``type_id``: 0 referring, 1 reasoning, 2 a third kind the official
script counts apart (its "overall" is the mean of the referring and reasoning groups only);
we mark it ``"other"``. Targets are the union of an expression's ``anno_id`` masks over all
frames; the foreground dict (union of every annotated object of the video, written by VISA's
``tools/generate_foreground_mask.py``) feeds the robustness score R. Some repackagings put
the frame folders directly under the root; both are accepted.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Mapping

from decafbench.errors import InputError
from decafbench.maskio import decode_rle, read_json

from .base import Expression, GroundTruth
from .formats import MetaBenchmark, as_id_tuple, load_mask_dict, rle_ground_truth

TYPE_NAMES = {0: "referring", 1: "reasoning", 2: "other"}


class Revos(MetaBenchmark):
    name: ClassVar[str] = "revos"
    description: ClassVar[str] = "ReVOS valid: referring + reasoning expressions, with accuracy A and robustness R"
    splits: ClassVar[tuple[str, ...]] = ("valid",)
    metrics: ClassVar[tuple[str, ...]] = ("J", "F", "JF", "A", "R")
    ground_truth_splits: ClassVar[tuple[str, ...]] = ("valid",)

    def meta_path(self) -> Path:
        return self.root / f"meta_expressions_{self.split}_.json"

    def frames_root(self) -> Path:
        nested = self.root / "JPEGImages"
        return nested if nested.is_dir() else self.root

    def make_expressions(self, video: str, vdata: Mapping[str, Any], path: Path) -> list[Expression]:
        out = []
        for exp_id, entry in vdata["expressions"].items():
            where = f"videos.{video}.expressions.{exp_id}"
            text = self.expression_text(vdata, exp_id, path, video)
            if "type_id" not in entry:
                raise InputError(f"missing field {where}.type_id", path)
            if entry["type_id"] not in TYPE_NAMES:
                raise InputError(f"field {where}.type_id should be 0, 1 or 2, got {entry['type_id']!r}", path)
            if "anno_id" not in entry:
                raise InputError(f"missing field {where}.anno_id", path)
            out.append(Expression(video=video, exp_id=str(exp_id), text=text,
                                  obj_ids=as_id_tuple(entry.get("obj_id"), path, f"{where}.obj_id"),
                                  anno_ids=as_id_tuple(entry["anno_id"], path, f"{where}.anno_id"),
                                  split=TYPE_NAMES[entry["type_id"]]))
        return out

    @cached_property
    def _mask_dict(self) -> tuple[dict, Path]:
        return load_mask_dict(self.root / "mask_dict.json")

    @cached_property
    def _foreground(self) -> tuple[dict, Path]:
        path = self.root / "mask_dict_foreground.json"
        data = read_json(path, "foreground mask dict")
        if not isinstance(data, dict):
            raise InputError("foreground mask dict should be a JSON object {VIDEO: {\"masks_rle\": [...]}}", path)
        return data, path

    def _frame_shape(self, video: str) -> tuple[int, int] | None:
        v = self.meta[video]
        if isinstance(v.get("height"), int) and isinstance(v.get("width"), int):
            return v["height"], v["width"]
        return None

    def ground_truth(self, expression: Expression) -> GroundTruth:
        import numpy as np

        mask_dict, path = self._mask_dict
        gt = rle_ground_truth(self, expression, mask_dict, path, shape=self._frame_shape(expression.video))
        fg_dict, fg_path = self._foreground
        where = f"{expression.video}.masks_rle"
        entry = fg_dict.get(expression.video)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("masks_rle"), list):
            raise InputError(f"missing field {where}", fg_path)
        rles = entry["masks_rle"]
        if len(rles) != len(gt.frames):
            raise InputError(f"field {where} has {len(rles)} RLEs for a video of {len(gt.frames)} frames", fg_path)
        shape = gt.masks.shape[1:]
        gt.foreground = np.stack([decode_rle(r, shape, where=f"{fg_path}: field {where}[{t}]")
                                  for t, r in enumerate(rles)]) if rles else np.zeros_like(gt.masks)
        return gt
