"""Bit-level internals of decafbench.metrics: packing, boundary maps, disk dilation, counts.

Why a separate module: ``metrics`` keeps the public API and input validation readable while
this one holds the exact, allocation-conscious bit tricks (see ``metrics``' docstring for the
toolkit rules they reproduce). Everything here takes validated 3-D boolean masks.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["disk_rows", "spare_columns", "live_rows", "chunk_jf"]

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


def _shift_cols(x: np.ndarray, d: int) -> np.ndarray:
    """``out[..., c] = x[..., c + d]`` on bits packed little-endian into uint64 words along
    the last axis (one long bit string per leading index; zeros shift in)."""
    if d == 0:
        return x
    nw = x.shape[-1]
    q, s = divmod(abs(d), 64)
    if q >= nw:
        return np.zeros_like(x)
    out = np.empty_like(x)
    if d > 0:
        np.right_shift(x[..., q:], _U64(s), out=out[..., : nw - q])
        out[..., nw - q :] = 0
        if s and nw - q > 1:
            out[..., : nw - q - 1] |= x[..., q + 1 :] << _U64(64 - s)
    else:
        np.left_shift(x[..., : nw - q], _U64(s), out=out[..., q:])
        out[..., :q] = 0
        if s and nw - q > 1:
            out[..., q + 1 :] |= x[..., : nw - q - 1] >> _U64(64 - s)
    return out


def _dilate(b: np.ndarray, rows: tuple[tuple[int, int, int], ...], nw: int) -> np.ndarray:
    """cv2-style dilation ``out[y, x] = OR_(dy, dx) b[y + dy, x + dx]`` over the disk runs.

    ``b`` is one flat bit string of image rows, ``nw`` words each; every frame in it must
    be followed by ``max |dy|`` rows that are zero in the window's columns (the batch
    layout), so vertical moves never carry one frame into another. Runs come from
    left-looking windows (built by doubling) shifted by the run's last offset; bits that
    cross a row end only reach columns nobody reads (see ``spare_columns``). All operations are
    on contiguous 1-D slices, which numpy runs several times faster than 2-D slices.
    """
    size = b.size
    wins = {0: b}  # wins[n][x] = OR_{k=0..n} b[x - k]
    for n in sorted({last - first for _, first, last in rows}):
        m = max(k for k in wins if k <= n)
        while m < n:
            nxt = min(n, 2 * m + 1)
            grown = _shift_cols(wins[m], m - nxt)
            grown |= wins[m]
            wins[nxt], m = grown, nxt
    runs: dict[tuple[int, int], np.ndarray] = {}
    out = None
    for dy, first, last in sorted(rows, key=lambda r: abs(r[0])):
        key = (last, last - first)
        if key not in runs:
            runs[key] = _shift_cols(wins[key[1]], last)
        src, k = runs[key], abs(dy) * nw
        if out is None:  # dy == 0 comes first
            out = src.copy() if dy == 0 else np.zeros_like(b)
            if dy == 0:
                continue
        if k >= size:
            continue
        if dy >= 0:
            np.bitwise_or(out[: size - k], src[k:], out=out[: size - k])
        else:
            np.bitwise_or(out[k:], src[: size - k], out=out[k:])
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
    """Set bits per row of a 2-D word array."""
    return np.bitwise_count(x).sum(axis=-1, dtype=np.int64)


def _row_range(m: np.ndarray) -> tuple[int, int] | None:
    """First and last row of a 2-D mask holding a True pixel (None if empty), reading
    little: argmax stops at the first True, the last row is sought from the bottom in
    doubling blocks."""
    flat = m.reshape(-1)
    i = int(flat.argmax())
    if not flat[i]:
        return None
    first, hi, step = i // m.shape[1], m.shape[0], 16
    while True:
        lo = max(first, hi - step)
        block = m[lo:hi]
        cells = block.reshape(-1)
        if cells[cells.argmax()]:  # argmax on booleans is a fast scan
            return first, lo + int(np.flatnonzero(block.any(axis=1))[-1])
        hi, step = lo, 2 * step


def _low_mask(nbits: np.ndarray) -> np.ndarray:
    """Words with their lowest ``nbits`` (0..64) bits set."""
    nb = np.clip(nbits, 0, 64).astype(np.uint64)
    return np.left_shift(_U64(1), nb) - _U64(1)  # 1 << 64 is 0 in numpy: all ones


def _gather(flat, base, rel_rows, x0, nw, big_w) -> np.ndarray:
    """Realign rows of row-major bit strings: for frame i (whose bits start at bit
    ``base[i]`` of ``flat``), rows ``rel_rows[i]`` from column ``x0[i]``, ``nw`` words each;
    shape (frames, rows, nw). Bits past a row's end are the next row's (callers mask)."""
    start = base[:, None] + rel_rows * big_w + x0[:, None]
    idx = (start >> 6)[..., None] + np.arange(nw + 1)
    words = np.take(flat, idx)
    shift = (start & 63).astype(np.uint64)[..., None]
    return (words[..., :-1] >> shift) | (words[..., 1:] << (_U64(64) - shift))


def _bit_range(words: np.ndarray) -> tuple[int, int]:
    """Lowest and highest set bit index of a 1-D word array (which has a set bit)."""
    nz = np.flatnonzero(words)
    lo, hi = int(words[nz[0]]), int(words[nz[-1]])
    return 64 * int(nz[0]) + (lo & -lo).bit_length() - 1, 64 * int(nz[-1]) + hi.bit_length() - 1


def _boundary_bits(x: np.ndarray, nw: int, mask: np.ndarray) -> np.ndarray:
    """``_seg2bmap`` on a flat bit string of rows (``nw`` words each): pixel (i, j) is a
    boundary pixel when the 2x2 block at (i, j) is not constant; ``mask`` keeps the
    window's real rows and columns (the last row of the string is dropped)."""
    right = _shift_cols(x, 1)
    h_or = x | right
    h_and = np.bitwise_and(x, right, out=right)
    b = np.zeros_like(x)
    np.bitwise_or(h_or[:-nw], h_or[nw:], out=b[:-nw])
    np.bitwise_and(h_and[:-nw], h_and[nw:], out=h_or[:-nw])
    np.bitwise_xor(b[:-nw], h_or[:-nw], out=b[:-nw])
    b.reshape(-1, mask.size)[...] &= mask
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


def _pack_rows(g: np.ndarray, p: np.ndarray, sel: np.ndarray, y0: np.ndarray, hc: int,
               tail: int) -> tuple[np.ndarray, int, int]:
    """Bit-pack rows y0 .. y0 + hc of each frame (full width; the last row is the next
    image row, absent at the bottom border where the toolkit replicates row H - 1): gt
    frames then pred frames, ``seg`` words each, in one flat array with ``tail`` spare
    words. Rows repeat their bit alignment every ``period`` rows; segments hold whole
    periods so ``_column_range`` can fold them."""
    n, (big_h, big_w) = len(sel), g.shape[1:]
    period = 64 // math.gcd(big_w, 64)
    seg = -(-(hc + 1) // period) * period * big_w // 64
    flat = np.zeros(2 * n * seg + tail, dtype=np.uint64)
    buf = flat[: 2 * n * seg].view(np.uint8).reshape(2 * n, seg * 8)
    for i, t in enumerate(sel):
        ye = min(int(y0[i]) + hc + 1, big_h)
        for k, m in enumerate((g, p)):
            packed = np.packbits(m[t, y0[i] : ye].reshape(-1), bitorder="little")
            buf[k * n + i, : packed.size] = packed
    return flat, seg, period


def _column_range(union_bits: np.ndarray, period: int, big_w: int,
                  tail: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last occupied column per frame: OR the rows a period apart (whole words
    apart), then realign just one period of rows."""
    n = union_bits.shape[0]
    block = period * big_w // 64
    folded = np.zeros(n * block + tail, dtype=np.uint64)
    np.bitwise_or.reduce(union_bits.reshape(n, -1, block), axis=1,
                         out=folded[: n * block].reshape(n, block))
    rel = np.broadcast_to(np.arange(period), (n, period))
    full = _gather(folded, np.arange(n, dtype=np.int64) * (block * 64), rel,
                   np.zeros(n, np.int64), -(-big_w // 64), big_w)
    colsum = np.bitwise_or.reduce(full & _low_mask(big_w - 64 * np.arange(full.shape[-1])), axis=1)
    ranges = np.array([_bit_range(c) for c in colsum], dtype=np.int64)
    return ranges[:, 0], ranges[:, 1]


def chunk_jf(g: np.ndarray, p: np.ndarray, sel: np.ndarray, r_lo: np.ndarray, r_hi: np.ndarray,
              rows: tuple[tuple[int, int, int], ...], spare: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersection, union, F) of the frames ``sel`` (one batch): bit-pack each frame's
    window rows, find the column window, realign rows to it, score."""
    n, (big_h, big_w) = len(sel), g.shape[1:]
    hc = int((r_hi - r_lo).max()) + 1
    y0 = np.minimum(r_lo, big_h - hc)
    tail = -(-(big_w + spare) // 64) + 2  # words a gather may read past the last row
    flat, seg, period = _pack_rows(g, p, sel, y0, hc, tail)
    words = flat[: 2 * n * seg].reshape(2 * n, seg)
    union_bits = words[:n] | words[n:]
    inter, union = _popcount(words[:n] & words[n:]), _popcount(union_bits)
    c_lo, c_hi = _column_range(union_bits, period, big_w, tail)
    c_lo = np.maximum(c_lo - 1, 0)
    wc = int((c_hi - c_lo).max()) + 1
    x0 = np.minimum(c_lo, big_w - wc)
    nw = -(-(wc + spare) // 64)
    # Each frame: rows 0..hc (window + the next or replicated row), then `pad` more rows;
    # boundary rows hc.. are zeroed, max |dy| zero rows that keep vertical moves in the flat
    # layout inside the frame (see _dilate; tests check one less is not enough).
    pad = max([0] + [abs(dy) - 1 for dy, _, _ in rows])
    nrows = hc + 1 + pad
    rel = np.minimum(np.minimum(y0[:, None] + np.arange(nrows), big_h - 1) - y0[:, None], hc)
    x = _gather(flat, np.arange(2 * n, dtype=np.int64) * (seg * 64), np.tile(rel, (2, 1)),
                np.tile(x0, 2), nw, big_w)
    # Bits past column wc are the next row's: harmless, as boundary pixels (columns < wc)
    # read columns <= wc only. Where the window reaches the right border, column wc is the
    # toolkit's replicated last column: copy column wc - 1 into it.
    touch = np.flatnonzero(np.tile(x0 + wc == big_w, 2))
    if touch.size:
        src_w, src_b = divmod(wc - 1, 64)
        dst_w, dst_b = divmod(wc, 64)
        bit = (x[touch, :, src_w] >> _U64(src_b)) & _U64(1)
        x[touch, :, dst_w] = (x[touch, :, dst_w] & ~_U64(1 << dst_b)) | (bit << _U64(dst_b))
    keep = np.zeros((nrows, nw), dtype=np.uint64)
    keep[:hc] = _low_mask(wc - 64 * np.arange(nw))
    b = _boundary_bits(x.reshape(-1), nw, keep.reshape(-1)).reshape(2 * n, -1)
    d = _dilate(b.reshape(-1), rows, nw).reshape(2 * n, -1)
    n_b = _popcount(b)
    match = np.empty_like(b)
    np.bitwise_and(b[n:], d[:n], out=match[:n])  # pred boundary near the gt boundary
    np.bitwise_and(b[:n], d[n:], out=match[n:])  # gt boundary near the pred boundary
    n_match = _popcount(match)
    return inter, union, _f_from_counts(n_b[n:], n_b[:n], n_match[:n], n_match[n:])


def live_rows(g: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames whose union is not empty, with the first row that can hold a boundary pixel
    (one above the union's top row) and the union's last row."""
    found = []
    for t in range(g.shape[0]):
        ranges = [r for r in (_row_range(g[t]), _row_range(p[t])) if r is not None]
        if ranges:
            found.append((t, max(min(r[0] for r in ranges) - 1, 0), max(r[1] for r in ranges)))
    cols = np.array(found, dtype=np.int64).reshape(-1, 3)
    return cols[:, 0], cols[:, 1], cols[:, 2]

