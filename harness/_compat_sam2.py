"""The private parts of the ``sam2`` package that decafbench relies on, in one place.

SAM2 has no public hook for in-memory frames, a shared feature cache or the predicted IoU,
so :class:`decafbench.sam2_model.DecafSam2Predictor` overrides two private methods and calls
two more. Each is listed here with the parameters we were tested against; :func:`check`
compares them with the installed sam2 when ``decafbench.sam2_model`` is imported, so a new
upstream release that renames or re-signs one fails at once with a message naming the symbol
and the versions, not deep inside a run with a TypeError. ``pyproject.toml`` pins sam2 to
the tested range; raise the pin only after this check (and tests/test_compat.py) pass.
"""

from __future__ import annotations

import inspect
from typing import Any

from .errors import DecafError

#: sam2 releases this module was checked against (pyproject.toml pins the same range)
TESTED = ">=1.1.0,<1.2"

#: private method of SAM2VideoPredictor -> the parameters (after self) we rely on, in order
PRIVATE_METHODS: dict[str, tuple[str, ...]] = {
    # overridden: records the chosen mask's predicted IoU; returns (current_out, sam_outputs, high_res, pix_feat)
    "_track_step": ("frame_idx", "is_init_cond_frame", "current_vision_feats", "current_vision_pos_embeds",
                    "feat_sizes", "point_inputs", "mask_inputs", "output_dict", "num_frames", "track_in_reverse",
                    "prev_sam_mask_logits"),
    # overridden: serves cached encoder features; reads/writes inference_state["cached_features"]
    "_get_image_feature": ("inference_state", "frame_idx", "batch_size"),
    # called: one batched decoder pass for many single-point prompts
    "_run_single_frame_inference": ("inference_state", "output_dict", "frame_idx", "batch_size", "is_init_cond_frame",
                                    "point_inputs", "mask_inputs", "reverse", "run_mem_encoder"),
    # called: low-resolution masks to the video's resolution
    "_get_orig_video_res_output": ("inference_state", "any_res_masks"),
}


class Sam2CompatError(DecafError):
    """The installed sam2 no longer has a private symbol decafbench relies on."""


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sam2")
    except PackageNotFoundError:  # pragma: no cover - imported from a source tree
        return "unknown"


def check(cls: Any = None) -> None:
    """Raise :class:`Sam2CompatError` naming the first private symbol that is missing or re-signed."""
    if cls is None:
        from sam2.sam2_video_predictor import SAM2VideoPredictor as cls
    for name, expected in PRIVATE_METHODS.items():
        method = getattr(cls, name, None)
        where = f"sam2 {installed_version()} (tested: {TESTED})"
        if not callable(method):
            raise Sam2CompatError(f"{where}: SAM2VideoPredictor.{name} is gone; decafbench.sam2_model relies on it "
                                  f"(see decafbench/_compat_sam2.py)")
        params = [p for p in inspect.signature(method).parameters if p != "self"]
        if tuple(params[:len(expected)]) != expected:
            raise Sam2CompatError(f"{where}: SAM2VideoPredictor.{name} takes ({', '.join(params)}), decafbench "
                                  f"expects ({', '.join(expected)}) (see decafbench/_compat_sam2.py)")


def predictor_base() -> type:
    """SAM2's video predictor class, after :func:`check` (the base of DecafSam2Predictor)."""
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    check(SAM2VideoPredictor)
    return SAM2VideoPredictor


def run_single_frame(predictor: Any, state: dict, frame_idx: int, batch_size: int, point_inputs: dict) -> tuple[Any, Any]:
    """``_run_single_frame_inference`` on a fresh object (no memory): (output, low-res masks)."""
    return predictor._run_single_frame_inference(
        inference_state=state, output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
        frame_idx=frame_idx, batch_size=batch_size, is_init_cond_frame=True, point_inputs=point_inputs,
        mask_inputs=None, reverse=False, run_mem_encoder=False,
    )


def video_res_masks(predictor: Any, state: dict, low_res: Any) -> Any:
    """``_get_orig_video_res_output``: masks at the video's resolution."""
    return predictor._get_orig_video_res_output(state, low_res)[1]
