"""Loading SAM2 and running it on in-memory frames with a per-expression feature cache.

The official ``sam2`` package does the modelling; this module only adds what DecAF's
prompting needs and the package lacks:

* frames come from memory (the harness already holds decoded frames), not a JPEG folder;
* image-encoder features are cached per *video* frame for a whole expression, so one frame is
  encoded once and reused by every point prompt, every key-frame tracklet propagation and the
  final full-video propagation (SAM2 itself only remembers the most recent frame, so the
  published pattern re-encodes each frame for every propagation);
* the predicted IoU of the mask SAM2 chose is exposed (SAM2 computes and drops it);
* many single-point prompts on one frame run as one batched decoder call.

Everything goes through SAM2's own build functions, inference-state layout and
``add_new_mask`` / ``propagate_in_video``; :class:`DecafSam2Predictor` overrides two hooks
(``_get_image_feature`` and ``_track_step``) and calls the parent for the real work; every
private sam2 name it uses is listed and checked in :mod:`decafbench._compat_sam2`.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from ._compat_sam2 import predictor_base, run_single_frame, video_res_masks
from .errors import InputError

TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
TINY_IMAGE_SIZE = 64
TINY_SEED = 0
_SESSION_KEY = "decaf_session"  # keys we add to SAM2's inference-state dict
_FRAME_IDS_KEY = "decaf_frame_ids"
_IMG_MEAN = (0.485, 0.456, 0.406)  # SAM2's defaults (sam2.utils.misc.load_video_frames)
_IMG_STD = (0.229, 0.224, 0.225)


@dataclass
class Sam2Counters:
    """Work done for one expression; the cache's purpose is to keep ``encoder_passes`` = #frames."""

    encoder_passes: int = 0
    point_prompts: int = 0
    decoder_batches: int = 0
    mask_prompts: int = 0
    propagated_frames: int = 0


@dataclass
class Sam2Session:
    """Typed per-expression state: frames, key frames, cached encoder features, counters.

    ``features`` maps a *video* frame index to SAM2's backbone output for that frame, so a key
    frame encoded for the key-frame state is reused by the full-video state. With
    ``cache_features=False`` the session reproduces SAM2's stock behaviour (only the most
    recent frame is kept), which is what the reference pattern and the benchmark compare to.
    """

    frames: Sequence[np.ndarray]
    key_indices: list[int]
    height: int
    width: int
    cache_features: bool = True
    feature_device: torch.device | None = None  # None: keep features on the model's device
    features: dict[int, dict[str, list[torch.Tensor]]] = field(default_factory=dict)
    pos_enc: list[torch.Tensor] | None = None  # identical for every frame: stored once
    counters: Sam2Counters = field(default_factory=Sam2Counters)

    @property
    def num_frames(self) -> int:
        return len(self.frames)


class _LazyFrames:
    """SAM2's ``state["images"]``: frames resized and normalised on first access only.

    Only read on a feature-cache miss, so a cached frame is never preprocessed again.
    Preprocessing matches ``sam2.utils.misc._load_img_as_tensor`` (PIL default resize to a
    square, /255, ImageNet mean/std).
    """

    def __init__(self, frames: Sequence[np.ndarray], frame_ids: Sequence[int], image_size: int):
        self.frames, self.frame_ids, self.image_size = frames, list(frame_ids), image_size
        self.mean = torch.tensor(_IMG_MEAN, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(_IMG_STD, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.frame_ids)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image

        frame = self.frames[self.frame_ids[index]]
        resized = np.array(Image.fromarray(frame).resize((self.image_size, self.image_size))) / 255.0
        image = torch.from_numpy(resized).permute(2, 0, 1).to(torch.float32)
        return (image - self.mean) / self.std


class quiet_progress(contextlib.AbstractContextManager):  # noqa: N801 (used like a function)
    """Swallow SAM2's per-call tqdm bars ("propagate in video"), pass any other stderr on."""

    def __enter__(self) -> "quiet_progress":
        self._buf = io.StringIO()
        self._redirect = contextlib.redirect_stderr(self._buf)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._redirect.__exit__(*exc)
        text = self._buf.getvalue().replace("\r", "\n")
        kept = [line for line in text.split("\n") if line.strip() and "propagate in video" not in line]
        if kept:
            print("\n".join(kept), file=sys.stderr)


class DecafSam2Predictor(predictor_base()):  # sam2's SAM2VideoPredictor, its private hooks checked
    """SAM2's video predictor plus in-memory frames, a shared feature cache and predicted IoU."""

    last_pred_iou: torch.Tensor | None = None  # (B,) IoU of the chosen mask, latest decoder call

    # ---- hooks into SAM2 ------------------------------------------------------------------
    def _track_step(self, *args: Any, **kwargs: Any) -> Any:
        """Record SAM2's predicted IoU of the mask it keeps (argmax of the multimask IoUs)."""
        current_out, sam_outputs, high_res_features, pix_feat = super()._track_step(*args, **kwargs)
        ious = sam_outputs[2]  # (B, M): M = 3 with multimask output, else 1 (already the chosen one)
        chosen = ious.max(dim=-1).values if ious.shape[-1] > 1 else ious[:, 0]
        self.last_pred_iou = chosen.float()
        current_out["pred_iou"] = self.last_pred_iou
        return current_out, sam_outputs, high_res_features, pix_feat

    def _get_image_feature(self, inference_state: dict, frame_idx: int, batch_size: int) -> Any:
        """Serve features from the session cache (keyed by video frame), encode on a miss."""
        session: Sam2Session | None = inference_state.get(_SESSION_KEY)
        if session is None:
            return super()._get_image_feature(inference_state, frame_idx, batch_size)
        video_frame = inference_state[_FRAME_IDS_KEY][frame_idx]
        entry = session.features.get(video_frame)
        if entry is None and frame_idx in inference_state["cached_features"]:
            entry = inference_state["cached_features"][frame_idx][1]  # SAM2's own 1-frame cache
        if entry is not None:
            if session.feature_device is not None:
                entry = {k: [t.to(self.device) for t in v] for k, v in entry.items()}
            inference_state["cached_features"] = {frame_idx: (_placeholder_image(self.device), entry)}
            return super()._get_image_feature(inference_state, frame_idx, batch_size)
        inference_state["cached_features"] = {}
        features = super()._get_image_feature(inference_state, frame_idx, batch_size)  # encodes
        session.counters.encoder_passes += 1
        _, backbone_out = inference_state["cached_features"][frame_idx]
        if session.pos_enc is None:
            session.pos_enc = list(backbone_out["vision_pos_enc"])
        slim = {"backbone_fpn": list(backbone_out["backbone_fpn"]), "vision_pos_enc": session.pos_enc}
        inference_state["cached_features"] = {frame_idx: (_placeholder_image(self.device), slim)}
        if session.cache_features:
            if session.feature_device is not None:
                slim = {"backbone_fpn": [t.to(session.feature_device) for t in slim["backbone_fpn"]],
                        "vision_pos_enc": [t.to(session.feature_device) for t in slim["vision_pos_enc"]]}
            session.features[video_frame] = slim
        return features

    # ---- sessions and states ----------------------------------------------------------------
    def open_session(
        self,
        frames: Sequence[np.ndarray],
        key_indices: Sequence[int] = (),
        cache_features: bool = True,
        feature_device: str | torch.device | None = None,
    ) -> Sam2Session:
        """Validate the frames (uint8, (H, W, 3), one size) and start an expression's session."""
        if len(frames) == 0:
            raise InputError("frames: no frames given")
        shape = None
        for i, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise InputError(f"frames[{i}]: expected a uint8 array of shape (H, W, 3), got "
                                 f"{getattr(frame, 'dtype', type(frame))} {getattr(frame, 'shape', '')}")
            if shape is not None and frame.shape != shape:
                raise InputError(f"frames[{i}]: shape {frame.shape} differs from frames[0] {shape}")
            shape = frame.shape
        for k in key_indices:
            if not 0 <= int(k) < len(frames):
                raise InputError(f"key_indices: {k} is outside 0..{len(frames) - 1}")
        dev = None if feature_device is None else torch.device(feature_device)
        return Sam2Session(frames=frames, key_indices=[int(k) for k in key_indices], height=shape[0],
                           width=shape[1], cache_features=cache_features, feature_device=dev)

    def video_state(self, session: Sam2Session, frame_ids: Sequence[int]) -> dict:
        """A SAM2 inference state over ``frame_ids`` (video frame indices) sharing the cache.

        Same keys as ``SAM2VideoPredictor.init_state`` (a test checks this against the
        installed sam2), with lazily preprocessed in-memory images.
        """
        dev = self.device
        return {
            "images": _LazyFrames(session.frames, frame_ids, self.image_size),
            "num_frames": len(frame_ids),
            "offload_video_to_cpu": False,
            "offload_state_to_cpu": False,
            "video_height": session.height,
            "video_width": session.width,
            "device": dev,
            "storage_device": dev,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
            _SESSION_KEY: session,
            _FRAME_IDS_KEY: list(frame_ids),
        }

    # ---- prompting -------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_points(
        self, state: dict, frame_idx: int, points: torch.Tensor, threshold: float = 0.0, batch_size: int = 64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each point (relative (x, y) in [0, 1]) as its own object on an initial frame.

        Equivalent to one ``add_new_points_or_box`` per point on a fresh object (no memory,
        multimask output, SAM2 keeps the highest-IoU mask) but batched in chunks of
        ``batch_size``. Returns bool masks at video resolution ``(n, H, W)`` (logit >
        ``threshold``) and the chosen masks' predicted IoUs ``(n,)``.
        """
        session: Sam2Session = state[_SESSION_KEY]
        masks, ious = [], []
        for start in range(0, points.shape[0], batch_size):
            chunk = points[start:start + batch_size].to(self.device, torch.float32)
            n = chunk.shape[0]
            point_inputs = {
                "point_coords": chunk[:, None, :] * self.image_size,
                "point_labels": torch.ones(n, 1, dtype=torch.int32, device=self.device),
            }
            _, low_res = run_single_frame(self, state, frame_idx, n, point_inputs)
            iou = self.last_pred_iou
            video_res = video_res_masks(self, state, low_res)
            masks.append(video_res[:, 0] > threshold)
            ious.append(iou)
            session.counters.decoder_batches += 1
        session.counters.point_prompts += int(points.shape[0])
        return torch.cat(masks), torch.cat(ious)

    @torch.inference_mode()
    def propagate_masks(
        self,
        state: dict,
        frame_idx: int,
        masks: torch.Tensor,
        threshold: float = 0.0,
        reduce: Literal["none", "any"] = "none",
    ) -> torch.Tensor:
        """Add ``masks`` (k, H, W) bool as k mask-prompted objects on ``frame_idx``; track both ways.

        Resets the state first. Returns bool masks ``(k, T, H, W)`` (``reduce="none"``) or their
        union ``(T, H, W)`` (``reduce="any"``), where T is the state's frame count and a pixel
        is on when SAM2's logit exceeds ``threshold``.
        """
        session: Sam2Session = state[_SESSION_KEY]
        self.reset_state(state)
        for obj_id, mask in enumerate(masks):
            self.add_new_mask(state, frame_idx, obj_id, mask.to(self.device))
        session.counters.mask_prompts += int(masks.shape[0])
        num, height, width = state["num_frames"], state["video_height"], state["video_width"]
        shape = (num, height, width) if reduce == "any" else (masks.shape[0], num, height, width)
        out = torch.zeros(shape, dtype=torch.bool, device=self.device)
        for reverse in (False, True):
            for t, _, logits in self._propagate(state, frame_idx, reverse):
                on = logits[:, 0] > threshold  # (k, H, W)
                if reduce == "any":
                    out[t] |= on.any(dim=0)
                else:
                    out[:, t] = on
                if not (reverse and t == frame_idx):  # the prompted frame is yielded both ways
                    session.counters.propagated_frames += 1
        return out

    def _propagate(self, state: dict, frame_idx: int, reverse: bool) -> Iterator[tuple[int, list, torch.Tensor]]:
        with quiet_progress():
            yield from self.propagate_in_video(state, start_frame_idx=frame_idx, reverse=reverse)


def _placeholder_image(device: torch.device) -> torch.Tensor:
    """Stands in for the resized frame in SAM2's cache entry: nothing downstream reads it."""
    return torch.empty((1, 0, 0, 0), device=device)


def load_sam2(spec: str, device: str | torch.device = "cpu") -> DecafSam2Predictor:
    """Build a :class:`DecafSam2Predictor` through sam2's own hydra build function.

    ``spec`` is ``"CONFIG:CHECKPOINT"`` (a config name inside the sam2 package such as
    ``configs/sam2.1/sam2.1_hiera_l.yaml`` and a local ``.pt`` path) or ``"tiny"`` /
    ``"tiny@SIZE"``: the hiera-tiny architecture at a reduced input size (default 64, a
    multiple of 32) with seeded random weights, so tests run in seconds on a CPU. Example::

        predictor = load_sam2("configs/sam2.1/sam2.1_hiera_l.yaml:/ckpt/sam2.1_hiera_large.pt", "cuda")
    """
    from sam2.build_sam import build_sam2_video_predictor

    overrides = [f"++model._target_={DecafSam2Predictor.__module__}.{DecafSam2Predictor.__qualname__}"]
    if spec == "tiny" or spec.startswith("tiny@"):
        size = _tiny_size(spec)
        overrides += [
            f"++model.image_size={size}",
            f"++model.memory_attention.layer.self_attention.feat_sizes=[{size // 16},{size // 16}]",
            f"++model.memory_attention.layer.cross_attention.feat_sizes=[{size // 16},{size // 16}]",
        ]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            return build_sam2_video_predictor(TINY_CONFIG, None, device=str(device), hydra_overrides_extra=overrides)
    config, sep, checkpoint = spec.partition(":")
    if not sep or not config or not checkpoint:
        raise InputError(f"sam2 spec {spec!r}: expected 'CONFIG:CHECKPOINT' or 'tiny'")
    _check_config(config)
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise InputError("SAM2 checkpoint not found", path=ckpt)
    try:
        return build_sam2_video_predictor(config, str(ckpt), device=str(device), hydra_overrides_extra=overrides)
    except (RuntimeError, KeyError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        why = str(exc) or "its state dict does not match the config"
        raise InputError(f"cannot load it with config {config}: {type(exc).__name__}: {why}", path=ckpt) from exc


def _tiny_size(spec: str) -> int:
    text = spec.partition("@")[2] or str(TINY_IMAGE_SIZE)
    if not text.isdigit() or int(text) < 64 or int(text) % 32:
        raise InputError(f"sam2 spec {spec!r}: the tiny model's size must be a multiple of 32, at least 64")
    return int(text)


def _check_config(config: str) -> None:
    """A config name must exist inside the installed sam2 package (hydra's search path)."""
    import sam2

    root = Path(sam2.__file__).parent
    if not (root / config).is_file():
        known = sorted(str(p.relative_to(root)) for p in (root / "configs").rglob("*.yaml"))
        raise InputError(f"SAM2 config not found in the sam2 package (known: {', '.join(known)})", path=config)
