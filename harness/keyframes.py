"""Which frames of a video are key frames (method section 1: 16 frames, ``linspace`` cast to int).

Why its own module: the pipeline samples key frames, and ``decaf show`` / ``decaf report``
recompute them for records that do not list them; both sides import this small pure function
instead of the viewer importing the pipeline (data flows one way: viewers depend on records,
never on the code that runs models).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


def key_frame_indices(num_video_frames: int, num_frames: int) -> list[int]:
    """``linspace(0, n-1, num_frames)`` cast to int; every frame when the video is shorter."""
    if num_video_frames <= 0:
        raise InputError("video has no frames")
    if num_video_frames <= num_frames:
        return list(range(num_video_frames))
    return [int(i) for i in np.linspace(0, num_video_frames - 1, num_frames)]
