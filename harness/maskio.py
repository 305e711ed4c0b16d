"""Mask and annotation I/O: PNG masks, palette label PNGs, COCO RLE, JSON with one-line errors.

Every dataset reader and the prediction writer go through these few functions so that a
missing file, a corrupt PNG, a malformed JSON document or a missing field always surfaces
as one :class:`~decafbench.errors.InputError` line naming the file (and the field), never
as a traceback from PIL, json or pycocotools.

Conventions (those of the official evaluation scripts of MeViS, ReVOS and ReasonVOS, which
read masks with ``cv2.imread(..., IMREAD_GRAYSCALE)`` and treat any nonzero value as
foreground): a mask PNG is foreground wherever a pixel is nonzero, whatever its mode; masks
are written as 8-bit grayscale 0/255 (or 1-bit) PNGs. COCO RLE ``counts`` are stored in JSON
as ``str`` (pycocotools returns ``bytes``).
"""

from __future__ import annotations

import functools
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from .errors import InputError

if TYPE_CHECKING:  # numpy is imported lazily so that `decaf --help` stays light
    import numpy as np

__all__ = [
    "read_mask_png",
    "read_label_png",
    "write_mask_png",
    "decode_rle",
    "row_major",
    "encode_rle",
    "read_json",
    "require",
    "check_png",
]

_LABEL_MODES = {"P", "L", "1", "I", "I;16", "I;16B", "I;16L"}


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _open_image(path: str | Path, what: str, *, png: bool = False):
    """Open and fully decode an image, turning every failure into one InputError line.

    ``png=True`` also refuses anything that is not really a PNG (a JPEG renamed ``.png``
    would otherwise be scored, its compression noise counting as foreground).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing {what}", path)
    try:
        if png:
            with open(path, "rb") as fh:
                head = fh.read(len(PNG_SIGNATURE))
            if head != PNG_SIGNATURE:
                kind = _sniff(head)
                if kind:
                    raise InputError(f"not a PNG file (it is a {kind}): {what}s must be lossless PNG; "
                                     "convert it, do not rename it", path)
                raise InputError(f"corrupt or not a PNG file (no PNG signature): expected a {what}", path)
        img = Image.open(path)
        if png and img.format != "PNG":
            raise InputError(f"not a PNG file (PIL reads it as {img.format})", path)
        img.load()  # decode now so that a truncated file fails here, not later
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"corrupt or unreadable {what} ({type(exc).__name__}: {exc})", path) from None
    return img


def _sniff(head: bytes) -> str:
    """A name for common image formats by their first bytes (for the error message)."""
    for sig, name in ((b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"RIFF", "WebP/RIFF"),
                      (b"II*\0", "TIFF"), (b"MM\0*", "TIFF")):
        if head.startswith(sig):
            return name
    return ""


@functools.lru_cache(maxsize=1)
def _cv2():
    """OpenCV (a dependency; None if an install lacks it): the fast decode and transpose paths."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def row_major(mask: "np.ndarray", out: "np.ndarray | None" = None) -> "np.ndarray":
    """A boolean ``(H, W)`` mask in row-major (C) order: ``mask`` itself when it is already.

    pycocotools decodes column-major frames; the metrics and every consumer read row-major
    ones at full speed. The transposing copy is OpenCV's SIMD ``cv2.transpose`` when
    installed (0.15 ms for 854x480 here) else numpy's (0.33 ms), so a loader thread pays it
    once per frame instead of the scorer paying a strided layout per pass
    (bench/bench_decode.py). ``out``, a row-major ``(H, W)`` bool array, receives the result.
    """
    import numpy as np

    if mask.flags.c_contiguous and out is None:
        return mask
    if out is None:
        out = np.empty(mask.shape, dtype=bool)
    cv2 = _cv2()
    if cv2 is not None and mask.T.flags.c_contiguous and mask.dtype == bool and out.flags.c_contiguous:
        cv2.transpose(mask.T.view(np.uint8), dst=out.view(np.uint8))
    else:
        out[...] = mask
    return out


def _gray8_png(data: bytes) -> bool:
    """A PNG whose IHDR (always the first chunk) says 8-bit grayscale, as masks are written."""
    return (len(data) > 33 and data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
            and data[24] == 8 and data[25] == 0)


def _nonzero(arr: "np.ndarray", out: "np.ndarray | None") -> "np.ndarray":
    import numpy as np

    if out is not None and arr.shape[:2] == out.shape and out.dtype == bool:
        if arr.ndim == 3:
            np.logical_or.reduce(arr, axis=2, out=out)
        else:
            np.not_equal(arr, 0, out=out)
        return out
    if arr.ndim == 3:
        return arr.any(axis=2)
    return arr != 0


def read_mask_png(path: str | Path, out: "np.ndarray | None" = None) -> "np.ndarray":
    """Boolean ``(H, W)`` mask: True wherever a pixel is nonzero (any PNG mode).

    Palette PNGs count a nonzero *index* as foreground (the DAVIS convention: index 0 is
    background); colour PNGs count any nonzero colour channel; an alpha channel is ignored.
    With ``out`` (a boolean ``(H, W)`` array, e.g. one frame of a preallocated batch) the
    mask is written there and ``out`` returned, saving a copy per frame; a PNG of another
    size is returned as a new array (the caller's size check names it).
    """
    import numpy as np

    cv2 = _cv2()
    if cv2 is not None:
        # 8-bit grayscale PNGs (what decaf writes) decode with OpenCV when it is installed:
        # libpng straight into a numpy array, 1.3-1.6x Pillow's decode plus its copy out
        # (bench/bench_decode.py). Anything else, and any file OpenCV cannot decode
        # (truncated, corrupt), goes the Pillow way below, which names the problem.
        try:
            data = Path(path).read_bytes()
        except OSError:
            data = b""
        if _gray8_png(data):
            arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if arr is not None and arr.ndim == 2 and arr.dtype == np.uint8:
                return _nonzero(arr, out)
    img = _open_image(path, "mask PNG", png=True)
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert(img.mode[:-1] if img.mode != "PA" else "P")
    return _nonzero(np.asarray(img), out)


def check_png(path: str | Path, shape: tuple[int, int] | None = None, what: str = "mask PNG") -> tuple[int, int]:
    """Refuse a file that is not a decodable PNG (signature, full decode) or, with ``shape``
    ``(H, W)``, not of that size. Returns its ``(H, W)``."""
    img = _open_image(path, what, png=True)
    h, w = img.height, img.width
    if shape is not None and (h, w) != tuple(shape):
        raise InputError(f"{what} is {w}x{h} but the frame is {shape[1]}x{shape[0]} (WxH)", path)
    return h, w


def read_label_png(path: str | Path) -> "np.ndarray":
    """Label map ``(H, W)``: palette indices (object ids) of a DAVIS-style annotation PNG.

    Palette and 8-bit grayscale PNGs give ``uint8``; 16/32-bit grayscale give ``int32``.
    A colour PNG has no object ids, so it is an error rather than a guess.
    """
    import numpy as np

    img = _open_image(path, "label PNG", png=True)
    if img.mode == "PA":
        img = img.convert("P")
    if img.mode not in _LABEL_MODES:
        raise InputError(f"label PNG has mode {img.mode}; expected a palette (P) or grayscale PNG with object ids", path)
    arr = np.asarray(img)
    if img.mode == "1":
        return arr.astype(np.uint8)
    if arr.dtype == np.uint8:
        return arr
    return arr.astype(np.int32)


def write_mask_png(path: str | Path, mask: "np.ndarray", mode: Literal["L", "1"] = "L") -> None:
    """Write a boolean ``(H, W)`` mask atomically (temporary name in the folder + rename).

    ``mode="L"`` writes 0/255 8-bit grayscale (what the official scripts and the
    Ref-YouTube-VOS server read); ``mode="1"`` writes a smaller 1-bit PNG.
    """
    import numpy as np
    from PIL import Image

    from .atomicio import atomic_write_bytes

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"write_mask_png needs a 2-D mask, got shape {m.shape}")
    m = m.astype(bool)
    if mode == "L":
        img = Image.fromarray(m.astype(np.uint8) * 255, mode="L")
    elif mode == "1":
        img = Image.fromarray(m.astype(np.uint8) * 255, mode="L").convert("1")
    else:
        raise ValueError(f"mode must be 'L' or '1', not {mode!r}")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    atomic_write_bytes(path, buf.getvalue())


def encode_rle(mask: "np.ndarray") -> dict:
    """COCO RLE of a boolean ``(H, W)`` mask: ``{"size": [H, W], "counts": str}``."""
    import numpy as np
    from pycocotools import mask as cocomask

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"encode_rle needs a 2-D mask, got shape {m.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        rle = cocomask.encode(np.asfortranarray(m.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def decode_rle(rle: Mapping[str, Any] | None, shape: tuple[int, int] | None = None, *,
               where: str = "RLE", column_major: bool = False) -> "np.ndarray":
    """Boolean ``(H, W)`` mask of a COCO RLE (compressed ``str``/``bytes`` or uncompressed list counts).

    Row-major (C order); ``column_major=True`` returns pycocotools' own column-major view
    without the transposing copy (for callers that combine several masks first).

    ``None`` (MeViS/ReVOS write ``null`` where an object is absent) needs ``shape`` and gives
    an empty mask. A malformed RLE raises InputError naming ``where`` (file and field).
    """
    import numpy as np
    from pycocotools import mask as cocomask

    if rle is None:
        if shape is None:
            raise InputError(f"{where}: a null RLE needs a known frame size")
        return np.zeros(shape, dtype=bool)
    try:
        size = rle["size"]
        counts = rle["counts"]
        h, w = int(size[0]), int(size[1])
    except (KeyError, TypeError, IndexError, ValueError):
        raise InputError(f"{where}: not a COCO RLE (needs 'size' [H, W] and 'counts')") from None
    try:
        if isinstance(counts, list):
            obj = cocomask.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        else:
            obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        with warnings.catch_warnings():  # pycocotools' numpy-2 `copy=False` deprecation noise
            warnings.simplefilter("ignore", DeprecationWarning)
            m = cocomask.decode(obj)
    except Exception as exc:  # pycocotools raises assorted types on bad counts
        raise InputError(f"{where}: malformed RLE counts ({type(exc).__name__}: {exc})") from None
    if m.ndim == 3:  # a list of RLEs decodes to (H, W, N): their union
        m = m.any(axis=2)
    if shape is not None and tuple(m.shape) != tuple(shape):
        raise InputError(f"{where}: RLE size {list(m.shape)} differs from the frame size {list(shape)}")
    # pycocotools writes 0/1 bytes, so a boolean view is exact and saves a copy per frame
    m = m.view(bool) if m.dtype == np.uint8 else m.astype(bool)
    return m if column_major else row_major(m)


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing file or malformed JSON is one InputError line naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing {what}", path)
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read())
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON in {what}: {exc.msg} at line {exc.lineno} column {exc.colno}", path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"malformed JSON in {what}: not UTF-8 ({exc.reason})", path) from None
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror or exc}", path) from None


def require(obj: Any, key: str, path: str | Path, where: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """``obj[key]``, or an InputError naming the file and the field ``where.key``.

    ``kind`` optionally checks the value's type (``dict``, ``list``...), since a wrong type
    is as unusable as a missing field.
    """
    field_name = f"{where}.{key}" if where else key
    if not isinstance(obj, Mapping):
        raise InputError(f"field {where or '<top>'} should be an object", path)
    if key not in obj:
        raise InputError(f"missing field {field_name}", path)
    value = obj[key]
    if kind is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InputError(f"field {field_name} should be {names}, got {type(value).__name__}", path)
    return value
