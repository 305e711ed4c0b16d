"""What the referring-VOS datasets share: a ``meta_expressions.json`` and COCO-RLE mask dicts.

All five official layouts derive from Ref-YouTube-VOS's ``meta_expressions.json``::

    {"videos": {VIDEO: {"expressions": {EXP_ID: {"exp": TEXT, ...}}, "frames": [FRAME, ...]}}}

with frames as ``JPEGImages/VIDEO/FRAME.jpg``. They differ in where ground truth lives:
palette PNGs (Ref-DAVIS17), per-expression binary PNG folders (ReasonVOS), or a
``mask_dict.json`` ``{anno_id: [RLE or null per frame]}`` indexed by the video's frame list
(MeViS, ReVOS, and Ref-DAVIS17 as repackaged by VISA, there as ``mask_dict.pkl``).
:class:`MetaBenchmark` holds the common reading and validation; subclasses say where the
files are and how an expression entry maps to :class:`Expression`.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from decafbench.errors import InputError
from decafbench.maskio import decode_rle, read_json, require
from decafbench.safepath import check_id

from .base import Benchmark, Expression, VideoInfo

if TYPE_CHECKING:
    import numpy as np

PICKLE_ADVICE = ("is a pickle, and loading a pickle runs code: pass --trust-pickle (trust_pickle=True) "
                 "if you trust its source, or convert it once with "
                 "`decaf benchmarks convert --root DIR --trust-pickle` to mask_dict.json")


def natural_key(text: str) -> tuple:
    """Sort key that orders "2" before "10" (expression ids and frame names are numeric strings)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text) if p)


def as_id_tuple(value: Any, path: Path, where: str) -> tuple[str, ...]:
    """An id or a list of ids (ints or strings in the official files) as a tuple of strings."""
    if value is None:
        return ()
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return (str(value),)
    if isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        return tuple(str(v) for v in value)
    raise InputError(f"field {where} should be an id or a list of ids, got {type(value).__name__}", path)


# -- mask dicts ---------------------------------------------------------------------------------
def _normalise_rle_list(value: Any) -> Any:
    """bytes counts (as pickled by pycocotools) to str, so a pickle converts to plain JSON."""
    if isinstance(value, list):
        return [_normalise_rle_list(v) for v in value]
    if isinstance(value, dict):
        return {k: (v.decode("ascii") if isinstance(v, bytes) else _normalise_rle_list(v)) for k, v in value.items()}
    if hasattr(value, "tolist"):  # numpy arrays / scalars in a pickle
        return value.tolist()
    return value


def load_pickle_mask_dict(path: Path) -> dict[str, list]:
    """Read a (trusted) ``mask_dict.pkl``: keys to str, RLE counts to str."""
    import pickle

    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh)  # noqa: S301 - only reached with trust_pickle=True
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise InputError(f"cannot read pickle mask dict ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(obj, Mapping):
        raise InputError(f"mask dict should map annotation ids to RLE lists, got {type(obj).__name__}", path)
    return {str(k): _normalise_rle_list(v) for k, v in obj.items()}


def load_mask_dict(json_path: Path, pkl_path: Path | None = None, *, trust_pickle: bool = False) -> tuple[dict, Path]:
    """``mask_dict.json`` if present, else a ``mask_dict.pkl`` only when trusted. Returns (dict, path)."""
    if json_path.is_file() or pkl_path is None or not pkl_path.is_file():
        data = read_json(json_path, "mask dict")
        if not isinstance(data, dict):
            raise InputError(f"mask dict should be a JSON object {{anno_id: [RLE or null, ...]}}, got {type(data).__name__}", json_path)
        return data, json_path
    if not trust_pickle:
        raise InputError(PICKLE_ADVICE, pkl_path)
    return load_pickle_mask_dict(pkl_path), pkl_path


def rle_track(mask_dict: Mapping[str, Any], anno_id: str, n_frames: int, path: Path) -> list:
    """One annotation's per-frame RLE list, checked against the video's frame count."""
    if anno_id not in mask_dict:
        raise InputError(f"missing field {anno_id!r} (annotation id)", path)
    track = mask_dict[anno_id]
    if not isinstance(track, list):
        raise InputError(f"field {anno_id!r} should be a list of RLEs (one per frame)", path)
    if len(track) != n_frames:
        raise InputError(f"field {anno_id!r} has {len(track)} RLEs for a video of {n_frames} frames", path)
    return track


def first_rle_size(tracks: Iterable[Sequence[Any]]) -> tuple[int, int] | None:
    for track in tracks:
        for rle in track:
            if isinstance(rle, Mapping) and "size" in rle:
                try:
                    return int(rle["size"][0]), int(rle["size"][1])
                except (TypeError, ValueError, IndexError):
                    return None
    return None


def union_rle_tracks(tracks: Sequence[Sequence[Any]], n_frames: int, shape: tuple[int, int], path: Path,
                     names: Sequence[str]) -> "np.ndarray":
    """Boolean ``(T, H, W)`` union of several objects' RLE tracks; a null RLE is an empty mask.

    Frames are row-major. pycocotools decodes column-major, so the union is taken in that
    layout and each touched frame is transposed once (``maskio.row_major``), here in the
    loader: scoring a column-major or mixed batch ran at 0.6x the speed of a row-major one
    (bench/bench_decode.py)."""
    import numpy as np

    from decafbench.maskio import row_major

    out_t = np.zeros((n_frames, shape[1], shape[0]), dtype=bool)  # (T, W, H): frame t transposed
    touched = np.zeros(n_frames, dtype=bool)
    for track, name in zip(tracks, names):
        for t, rle in enumerate(track):
            if rle:
                out_t[t] |= decode_rle(rle, shape, where=f"{path}: field {name!r}[{t}]", column_major=True).T
                touched[t] = True
    out = np.zeros((n_frames, *shape), dtype=bool)
    for t in np.flatnonzero(touched):
        row_major(out_t[t].T, out=out[t])
    return out


def frame_size(video: VideoInfo) -> tuple[int, int]:
    """(H, W) of a video's first frame, from the JPEG header only."""
    from PIL import Image, UnidentifiedImageError

    if not video.frames:
        raise InputError(f"video {video.name!r} has no frames", video.frame_dir)
    p = video.frame_path(video.frames[0])
    try:
        with Image.open(p) as img:
            w, h = img.size
    except FileNotFoundError:
        raise InputError("missing frame", p) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"corrupt or unreadable frame ({exc})", p) from None
    return h, w


def list_frames(frame_dir: Path, ext: str = ".jpg") -> tuple[str, ...]:
    """Frame names (no extension) of a frame folder, in natural order."""
    if not frame_dir.is_dir():
        raise InputError("missing frames folder", frame_dir)
    return tuple(sorted((p.stem for p in frame_dir.iterdir() if p.suffix.lower() == ext), key=natural_key))


def list_pngs(folder: Path) -> tuple[str, ...]:
    if not folder.is_dir():
        raise InputError("missing annotation folder", folder)
    return tuple(sorted((p.stem for p in folder.iterdir() if p.suffix.lower() == ".png"), key=natural_key))


# -- the common reader ----------------------------------------------------------------------------
class MetaBenchmark(Benchmark):
    """A benchmark described by a ``meta_expressions.json`` and a JPEG frame folder per video.

    Reads lazily and caches (``cached_property``, not pickled). Subclasses implement
    :meth:`meta_path`, :meth:`frames_root`, :meth:`make_expressions` and ground truth.
    """

    @abstractmethod
    def meta_path(self) -> Path:
        """The split's ``meta_expressions*.json``."""

    @abstractmethod
    def frames_root(self) -> Path:
        """The folder holding ``VIDEO/FRAME.jpg``."""

    @abstractmethod
    def make_expressions(self, video: str, vdata: Mapping[str, Any], path: Path) -> list[Expression]:
        """The jobs of one video entry of the meta file."""

    def _no_ground_truth(self) -> InputError:
        return InputError(f"benchmark {self.name!r} split {self.split!r} has no public ground truth "
                          f"(submit predictions with `decaf export`)")

    # -- meta ---------------------------------------------------------------------------------------
    @cached_property
    def meta(self) -> dict[str, dict]:
        """``{VIDEO: entry}`` of the meta file, validated at the top level."""
        path = self.meta_path()
        data = read_json(path, "meta expressions file")
        videos = require(data, "videos", path, "", dict)
        for name, vdata in videos.items():
            # ids are data that later become folder and file names: refuse anything but plain names
            check_id(name, "videos (a video id)", path)
            exps = require(vdata, "expressions", path, f"videos.{name}", dict)
            for exp_id in exps:
                check_id(exp_id, f"videos.{name}.expressions (an expression id)", path)
            if "frames" in vdata:
                if not (isinstance(vdata["frames"], list) and all(isinstance(f, str) for f in vdata["frames"])):
                    raise InputError(f"field videos.{name}.frames should be a list of frame names", path)
                for i, f in enumerate(vdata["frames"]):
                    check_id(f, f"videos.{name}.frames[{i}]", path)
        return videos

    @cached_property
    def _videos(self) -> dict[str, VideoInfo]:
        root = self.frames_root()
        out: dict[str, VideoInfo] = {}
        for name in sorted(self.meta):
            frame_dir = root / name
            on_disk = list_frames(frame_dir)
            listed = self.meta[name].get("frames")
            if listed is None:
                frames = on_disk
            else:
                missing = sorted(set(listed) - set(on_disk), key=natural_key)
                if missing:
                    raise InputError(f"{len(missing)} frame(s) listed in {self.meta_path().name} are missing, "
                                     f"first {missing[0]}.jpg", frame_dir)
                frames = tuple(listed)
            out[name] = VideoInfo(name=name, frames=frames, frame_dir=frame_dir)
        return out

    def videos(self) -> list[VideoInfo]:
        return list(self._videos.values())

    def video(self, name: str) -> VideoInfo:
        try:
            return self._videos[name]
        except KeyError:
            return super().video(name)

    @cached_property
    def _expressions(self) -> list[Expression]:
        path = self.meta_path()
        exps: list[Expression] = []
        for name in sorted(self.meta):
            exps.extend(self.make_expressions(name, self.meta[name], path))
        exps.sort(key=lambda e: (e.video, natural_key(e.exp_id)))
        return exps

    def expressions(self) -> list[Expression]:
        return list(self._expressions)

    def expression_text(self, vdata: Mapping[str, Any], exp_id: str, path: Path, video: str,
                        fields: tuple[str, ...] = ("exp",)) -> str:
        """The expression's text from the first of ``fields`` present (ReasonVOS says "exp_text")."""
        entry = vdata["expressions"][exp_id]
        for f in fields:
            if isinstance(entry, Mapping) and f in entry:
                return str(require(entry, f, path, f"videos.{video}.expressions.{exp_id}", str))
        return str(require(entry, fields[0], path, f"videos.{video}.expressions.{exp_id}", str))


def rle_ground_truth(bench: MetaBenchmark, expression: Expression, mask_dict: Mapping[str, Any], path: Path,
                     shape: tuple[int, int] | None = None):
    """Ground truth of an RLE-dict benchmark: the union of the expression's annotations over
    every frame of the video (frame ``i`` of each track is frame ``i`` of the meta frame list,
    as in the official MeViS/ReVOS evaluation scripts); a null RLE is an empty mask."""
    from .base import GroundTruth

    if not expression.anno_ids:
        raise InputError(f"expression {expression.exp_id!r} of video {expression.video!r} has no anno_id",
                         bench.meta_path())
    video = bench.video(expression.video)
    n = len(video.frames)
    tracks = [rle_track(mask_dict, a, n, path) for a in expression.anno_ids]
    size = first_rle_size(tracks) or shape or frame_size(video)
    if shape is None:  # an RLE of another size than the frames is a dataset error, not the prediction's
        sizes = bench.__dict__.setdefault("_frame_sizes", {})
        if expression.video not in sizes:
            sizes[expression.video] = frame_size(video)
        if tuple(size) != tuple(sizes[expression.video]):
            raise InputError(f"RLE size {list(size)} of annotation {expression.anno_ids[0]!r} differs from the "
                             f"frame size {list(sizes[expression.video])} of video {expression.video!r}", path)
    # Expressions of one video mostly name the same few objects (MeViS averages ~10 per video):
    # decode each object's track once per video and OR the decoded tracks.
    cache = bench.__dict__.setdefault("_decoded_tracks", {})
    if cache.get("\0video") != (expression.video, size):
        cache.clear()
        cache["\0video"] = (expression.video, size)
    masks = None
    for anno, track in zip(expression.anno_ids, tracks):
        if anno not in cache:
            cache[anno] = union_rle_tracks([track], n, size, path, [anno])
        # order="K": keep the tracks' column-major layout (a C copy would transpose every frame)
        masks = cache[anno].copy(order="K") if masks is None else masks | cache[anno]
    return GroundTruth(frames=video.frames, masks=masks,
                       meta={"source": path.name, "anno_ids": list(expression.anno_ids)})
