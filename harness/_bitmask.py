"""Bit-level internals of decafbench.metrics: packing, boundary maps, disk dilation, counts.

Why a separate module: ``metrics`` keeps the public API and input validation readable while
this one holds the exact, allocation-conscious bit tricks (see ``metrics``' docstring for the
toolkit rules they reproduce). Everything here takes validated 3-D boolean masks.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["Scratch", "disk_rows", "spare_columns", "union_rows", "union_boxes", "chunk_jf"]

_U64 = np.uint64


@functools.lru_cache(maxsize=32)
def disk_rows(radius: float) -> tuple[tuple[int, int, int], ...]:
    """(dy, dx_first, dx_last) runs of skimage's ``disk(radius)`` anchored as cv2 does
    (cached: every frame of a dataset uses the same one or two radii)."""
    line = np.arange(-radius, radius + 1)
    xs, ys = np.meshgrid(line, line)
    kernel = (xs**2 + ys**2) <= radius**2
    ay, ax = kernel.shape[0] // 2, kernel.shape[1] // 2
    rows = []
    for j in range(kernel.shape[0]):
        idx = np.flatnonzero(kernel[j])
        if idx.size:  # each row of a disk is one contiguous run
            rows.append((j - ay, int(idx[0]) - ax, int(idx[-1]) - ax))
    return tuple(rows)


class Scratch:
    """Reusable flat uint64 work buffers for one scoring call.

    Why: a fresh numpy array of a few hundred kB is a fresh mmap whose pages fault on first
    touch; measured on the 2-core dev box, one shift with a fresh output and temporary took
    4x as long as with reused buffers, and a batch needs ~30 of them. Buffers handed back
    with ``give`` are reused by later ``take`` calls (contents are not cleared).
    """

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []

    def take(self, size: int) -> np.ndarray:
        for i, buf in enumerate(self._free):
            if buf.size >= size:
                return self._free.pop(i)[:size]
        return np.empty(size, dtype=np.uint64)[:size]

    def give(self, *arrs: np.ndarray) -> None:
        for arr in arrs:
            self._free.append(arr.base if arr.base is not None else arr)


def _shift_into(x: np.ndarray, d: int, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """``out[c] = x[c + d]`` on one flat bit string packed little-endian into uint64 words
    (zeros shift in); ``tmp`` is scratch of ``x``'s size. Shift counts are 0-d arrays and
    empty slices are skipped: on one 480p frame's words, a numpy scalar operand or an
    empty assignment costs as much as a pass."""
    n = x.size
    q, s = divmod(abs(d), 64)
    if q >= n:
        out[:] = 0
        return out
    lo, hi = np.array(s, dtype=np.uint64), np.array(64 - s, dtype=np.uint64)
    if d > 0:
        np.right_shift(x[q:], lo, out=out[: n - q])
        if q:
            out[n - q :] = 0
        if s and n - q > 1:
            np.left_shift(x[q + 1 :], hi, out=tmp[: n - q - 1])
            out[: n - q - 1] |= tmp[: n - q - 1]
    else:
        np.left_shift(x[: n - q], lo, out=out[q:])
        if q:
            out[:q] = 0
        if s and n - q > 1:
            np.right_shift(x[: n - q - 1], hi, out=tmp[: n - q - 1])
            out[q + 1 :] |= tmp[: n - q - 1]
    return out


def _dilate(b: np.ndarray, rows: tuple[tuple[int, int, int], ...], nw: int,
            scratch: Scratch) -> np.ndarray:
    """cv2-style dilation ``out[y, x] = OR_(dy, dx) b[y + dy, x + dx]`` over the disk runs.

    ``b`` is one flat bit string of image rows, ``nw`` words each; every frame in it must
    be followed by ``max |dy|`` rows that are zero in the window's columns (the batch
    layout), so vertical moves never carry one frame into another. Runs come from
    left-looking windows (built by doubling) shifted by the run's last offset; bits that
    cross a row end only reach columns nobody reads (see ``spare_columns``). All operations are
    on contiguous 1-D slices, which numpy runs several times faster than 2-D slices. The
    result is a ``scratch`` buffer (the caller gives it back); the others go back here.
    """
    size = b.size
    tmp = scratch.take(size)
    taken = [tmp]
    wins = {0: b}  # wins[n][x] = OR_{k=0..n} b[x - k]
    for n in sorted({last - first for _, first, last in rows}):
        m = max(k for k in wins if k <= n)
        while m < n:
            nxt = min(n, 2 * m + 1)
            grown = _shift_into(wins[m], m - nxt, scratch.take(size), tmp)
            grown |= wins[m]
            taken.append(grown)
            wins[nxt], m = grown, nxt
    runs: dict[tuple[int, int], np.ndarray] = {}
    for dy, first, last in rows:
        key = (last, last - first)
        if key not in runs:
            runs[key] = wins[key[1]] if last == 0 else _shift_into(
                wins[key[1]], last, scratch.take(size), tmp)
            if last:
                taken.append(runs[key])
    out = scratch.take(size)
    out[:] = 0
    for dy, first, last in rows:
        src, k = runs[(last, last - first)], abs(dy) * nw
        if k >= size:
            continue
        if dy >= 0:
            np.bitwise_or(out[: size - k], src[k:], out=out[: size - k])
        else:
            np.bitwise_or(out[k:], src[: size - k], out=out[k:])
    scratch.give(*taken)
    return out


def spare_columns(rows: tuple[tuple[int, int, int], ...]) -> int:
    """Columns a packed row needs after the window's ``wc`` boundary columns.

    Shifted windows do carry bits across a row end, but a run reads its window at most
    ``max(|first|, |last|)`` columns away, so bits that crossed are never read if the row
    has that many columns to spare (and at least 1: the column after the window holds the
    next, or the replicated, image column). Tests check that one less is not enough.
    """
    return max([1] + [max(abs(first), abs(last)) for _, first, last in rows])


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per row of a 2-D word array (summed as uint32: measured ~25% faster than
    an int64 sum of the uint8 counts; a row would need 2**26 words to overflow)."""
    return np.bitwise_count(x).sum(axis=-1, dtype=np.uint32).astype(np.int64)


def _row_range(m: np.ndarray) -> tuple[int, int] | None:
    """First and last row of a 2-D mask holding a True pixel (None if empty), reading
    little: argmax stops at the first True, the last row is sought from the bottom in
    doubling blocks (``m`` comes from a logical ufunc, so its bytes are 0 or 1 and
    ``bytes.rfind`` finds the last True)."""
    flat = m.reshape(-1)
    i = int(flat.argmax())
    if not flat[i]:
        return None
    first, hi, step = i // m.shape[1], m.shape[0], 16
    while True:
        lo = max(first, hi - step)
        block = m[lo:hi]
        cells = block.reshape(-1)
        if cells[cells.argmax()]:  # argmax on booleans is a fast scan; so is rfind
            return first, lo + cells.tobytes().rfind(b"\x01") // m.shape[1]
        hi, step = lo, 2 * step


def _low_mask(nbits: np.ndarray) -> np.ndarray:
    """Words with their lowest ``nbits`` (0..64) bits set."""
    nb = np.clip(nbits, 0, 64).astype(np.uint64)
    return np.left_shift(_U64(1), nb) - _U64(1)  # 1 << 64 is 0 in numpy: all ones


def _boundary_bits(x: np.ndarray, nw: int, mask: np.ndarray, scratch: Scratch) -> np.ndarray:
    """``_seg2bmap`` on a flat bit string of rows (``nw`` words each): pixel (i, j) is a
    boundary pixel when the 2x2 block at (i, j) is not constant; ``mask`` keeps the
    window's real rows and columns (the last row of the string is dropped). The result is
    a ``scratch`` buffer."""
    size = x.size
    right, h_or, b = scratch.take(size), scratch.take(size), scratch.take(size)
    _shift_into(x, 1, right, h_or)
    np.bitwise_or(x, right, out=h_or)
    h_and = np.bitwise_and(x, right, out=right)
    b[size - nw :] = 0
    np.bitwise_or(h_or[:-nw], h_or[nw:], out=b[:-nw])
    np.bitwise_and(h_and[:-nw], h_and[nw:], out=h_or[:-nw])
    np.bitwise_xor(b[:-nw], h_or[:-nw], out=b[:-nw])
    b.reshape(-1, mask.size)[...] &= mask
    scratch.give(right, h_or)
    return b


def _f_from_counts(n_fg, n_gt, fg_match, gt_match) -> np.ndarray:
    """F per frame from boundary and match counts, with the toolkit's conventions for empty
    boundaries, in the toolkit's float64 operation order (a plain loop: a handful of frames)."""
    out = np.empty(len(n_fg), dtype=np.float64)
    for i, (nf, ng, fm, gm) in enumerate(zip(*(np.asarray(v).tolist() for v in
                                               (n_fg, n_gt, fg_match, gt_match)))):
        if nf == 0 and ng == 0:
            prec, rec = 1.0, 1.0
        elif nf == 0:
            prec, rec = 1.0, 0.0
        elif ng == 0:
            prec, rec = 0.0, 1.0
        else:
            prec, rec = fm / nf, gm / ng
        out[i] = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
    return out


def chunk_jf(g: np.ndarray, p: np.ndarray, sel: np.ndarray, y0: np.ndarray, x0: np.ndarray,
             hc: int, wc: int, rows: tuple[tuple[int, int, int], ...], spare: int,
             with_j: bool = True, scratch: Scratch | None = None
             ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """(intersection, union, F) of the frames ``sel`` (one batch; the counts only
    ``with_j``, else None), each read in its
    ``hc`` x ``wc`` window at (``y0``, ``x0``) that holds every pixel that can be a boundary
    pixel (see ``union_boxes``): the boolean window is bit-packed straight into row-aligned
    uint64 words (little-endian bits: bit k of a row is window column k)."""
    n, (big_h, big_w) = len(sel), g.shape[1:]
    nw = -(-(wc + spare) // 64)
    # Each frame: rows 0..hc-1 (window), row hc (the next image row: zero, or replicated at
    # the bottom border), then `pad` zero rows that keep vertical moves in the flat layout
    # inside the frame (see _dilate; tests check one less is not enough).
    pad = max([0] + [abs(dy) - 1 for dy, _, _ in rows])
    nrows = hc + 1 + pad
    scratch = Scratch() if scratch is None else scratch
    flat = scratch.take(2 * n * nrows * nw)
    flat[:] = 0
    words = flat.reshape(2 * n, nrows, nw)
    buf = words.view(np.uint8)
    nb = -(-wc // 8)
    for i, t in enumerate(sel):
        ys, xs = slice(int(y0[i]), int(y0[i]) + hc), slice(int(x0[i]), int(x0[i]) + wc)
        buf[i, :hc, :nb] = np.packbits(g[t, ys, xs], axis=-1, bitorder="little")
        buf[n + i, :hc, :nb] = np.packbits(p[t, ys, xs], axis=-1, bitorder="little")
    inter = union = None
    if with_j:
        win = words[:, :hc].reshape(2 * n, -1)
        both = scratch.take(win[:n].size).reshape(n, -1)
        inter = _popcount(np.bitwise_and(win[:n], win[n:], out=both))
        union = _popcount(np.bitwise_or(win[:n], win[n:], out=both))
        scratch.give(both)
    # The toolkit replicates the last image row and column: where the window reaches the
    # bottom / right border, copy row hc - 1 into row hc / column wc - 1 into column wc.
    bottom = np.flatnonzero(np.tile(y0 + hc == big_h, 2))
    if bottom.size:
        words[bottom, hc] = words[bottom, hc - 1]
    touch = np.flatnonzero(np.tile(x0 + wc == big_w, 2))
    if touch.size:
        src_w, src_b = divmod(wc - 1, 64)
        dst_w, dst_b = divmod(wc, 64)
        x = words[touch, : hc + 1]
        bit = (x[..., src_w] >> _U64(src_b)) & _U64(1)
        x[..., dst_w] = (x[..., dst_w] & ~_U64(1 << dst_b)) | (bit << _U64(dst_b))
        words[touch, : hc + 1] = x
    keep = np.zeros((nrows, nw), dtype=np.uint64)
    keep[:hc] = _low_mask(wc - 64 * np.arange(nw))
    b = _boundary_bits(flat, nw, keep.reshape(-1), scratch)
    d = _dilate(b, rows, nw, scratch).reshape(2 * n, -1)
    scratch.give(flat)
    b = b.reshape(2 * n, -1)
    n_b = _popcount(b)
    match = d  # each word of d is read once, just before it is overwritten
    np.bitwise_and(b[n:], d[:n], out=match[:n])  # pred boundary near the gt boundary
    np.bitwise_and(b[:n], d[n:], out=match[n:])  # gt boundary near the pred boundary
    n_match = _popcount(match)
    scratch.give(b, d)
    return inter, union, _f_from_counts(n_b[n:], n_b[:n], n_match[:n], n_match[n:])


def union_rows(g: np.ndarray, p: np.ndarray, t: int, u: np.ndarray
               ) -> tuple[np.ndarray, int, int] | None:
    """Frame ``t``'s union mask, written into ``u`` (one (H, W) scratch buffer reused for
    every frame), with its first and last occupied row (None if empty)."""
    np.logical_or(g[t], p[t], out=u)
    found = _row_range(u)
    return None if found is None else (u, found[0], found[1])


def union_boxes(g: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ...]:
    """Frames whose union is not empty, with the box that can hold a boundary pixel: the
    union's bounding box grown one pixel up and left (``_seg2bmap`` marks the pixel above
    and left of an edge). Returns (frames, first row, last row, first col, last col).
    Reads little beyond the union's rows (measured: as fast at 480p as packing whole rows
    first, and much faster for small objects)."""
    assert g.flags.c_contiguous and p.flags.c_contiguous, "metrics._row_major gives row-major frames"
    found, u = [], np.empty(g.shape[1:], dtype=bool)
    for t in range(g.shape[0]):
        hit = union_rows(g, p, t, u)
        if hit is not None:
            _, r0, r1 = hit
            cols = np.flatnonzero(np.logical_or.reduce(u[r0 : r1 + 1], axis=0))
            found.append((t, max(r0 - 1, 0), r1, max(int(cols[0]) - 1, 0), int(cols[-1])))
    out = np.array(found, dtype=np.int64).reshape(-1, 5)
    return tuple(out[:, k] for k in range(5))
