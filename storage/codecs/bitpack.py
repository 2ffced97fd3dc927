"""Bit-level kernels shared by the column codecs: zigzag, bit widths, and frame-of-reference
bit-packing per 1,024-value block (numba, fastmath off; all arithmetic in uint64 two's complement).
"""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK = 1024
"""Values per frame-of-reference block (and per ALP vector)."""

_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True, nogil=True)
def zigzag_encode(values: np.ndarray) -> np.ndarray:
    """int64 -> uint64 with small magnitudes mapped to small codes (0,-1,1,-2 -> 0,1,2,3)."""
    out = np.empty(values.shape[0], dtype=np.uint64)
    for i in range(values.shape[0]):
        v = values[i]
        out[i] = np.uint64(v << 1) ^ np.uint64(v >> 63)
    return out


@njit(cache=True, nogil=True)
def zigzag_decode(codes: np.ndarray) -> np.ndarray:
    """Inverse of zigzag_encode."""
    out = np.empty(codes.shape[0], dtype=np.int64)
    for i in range(codes.shape[0]):
        c = codes[i]
        out[i] = np.int64((c >> _ONE) ^ (_ZERO - (c & _ONE)))
    return out


@njit(cache=True, nogil=True)
def bit_width(x: np.uint64) -> int:
    """Number of bits needed to hold the unsigned value x (0 for 0, 64 for >= 2^63)."""
    w = 0
    while x != _ZERO:
        x = x >> _ONE
        w += 1
    return w


@njit(cache=True, nogil=True)
def low_mask(width: int) -> np.uint64:
    if width >= 64:
        return _ALL
    return (_ONE << np.uint64(width)) - _ONE


@njit(cache=True, nogil=True)
def packed_words(count: int, width: int) -> int:
    """uint64 words holding `count` values of `width` bits."""
    return (count * width + 63) // 64


@njit(cache=True, nogil=True)
def pack_fixed(values: np.ndarray, start: int, count: int, base: np.uint64, width: int,
               words: np.ndarray, word_off: int) -> None:
    """Write (values[start+i] - base) & mask, `width` bits each, LSB-first into zeroed words."""
    if width == 0:
        return
    mask = low_mask(width)
    for i in range(count):
        v = (np.uint64(values[start + i]) - base) & mask
        bitpos = i * width
        w = word_off + (bitpos >> 6)
        s = bitpos & 63
        words[w] |= v << np.uint64(s)
        if s + width > 64:
            words[w + 1] |= v >> np.uint64(64 - s)


@njit(cache=True, nogil=True)
def unpack_fixed(words: np.ndarray, word_off: int, width: int, base: np.uint64, count: int,
                 out: np.ndarray, out_off: int) -> None:
    """out[out_off+i] = base + value i (uint64 wraparound); out is an int64 or uint64 array."""
    if width == 0:
        for i in range(count):
            out[out_off + i] = base
        return
    mask = low_mask(width)
    bitpos = 0
    for i in range(count):
        w = word_off + (bitpos >> 6)
        s = bitpos & 63
        v = words[w] >> np.uint64(s)
        if s + width > 64:
            v |= words[w + 1] << np.uint64(64 - s)
        out[out_off + i] = base + (v & mask)
        bitpos += width


@njit(cache=True, nogil=True)
def for_layout(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-block FOR base (signed min) and bit width of (max - min); total packed words."""
    n = seq.shape[0]
    nb = (n + BLOCK - 1) // BLOCK
    bases = np.empty(nb, dtype=np.int64)
    widths = np.empty(nb, dtype=np.uint8)
    total = 0
    for b in range(nb):
        lo = b * BLOCK
        hi = min(n, lo + BLOCK)
        mn = seq[lo]
        mx = seq[lo]
        for i in range(lo + 1, hi):
            v = seq[i]
            if v < mn:
                mn = v
            if v > mx:
                mx = v
        width = bit_width(np.uint64(mx) - np.uint64(mn))
        bases[b] = mn
        widths[b] = width
        total += packed_words(hi - lo, width)
    return bases, widths, total


@njit(cache=True, nogil=True)
def for_packed_bytes(seq: np.ndarray) -> int:
    """Size in bytes of for_pack(seq) laid out as in docs/codecs.md (bases, widths, words)."""
    n = seq.shape[0]
    if n == 0:
        return 0
    bases, widths, total = for_layout(seq)
    nb = bases.shape[0]
    return nb * 8 + ((nb + 7) // 8) * 8 + total * 8


@njit(cache=True, nogil=True)
def for_pack(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame-of-reference bit-pack an int64 sequence per 1,024-value block."""
    n = seq.shape[0]
    bases, widths, total = for_layout(seq)
    words = np.zeros(total, dtype=np.uint64)
    off = 0
    for b in range(bases.shape[0]):
        lo = b * BLOCK
        cnt = min(n, lo + BLOCK) - lo
        pack_fixed(seq, lo, cnt, np.uint64(bases[b]), int(widths[b]), words, off)
        off += packed_words(cnt, int(widths[b]))
    return bases, widths, words


@njit(cache=True, nogil=True)
def for_unpack(bases: np.ndarray, widths: np.ndarray, words: np.ndarray, n: int,
               out: np.ndarray, out_off: int) -> None:
    """Inverse of for_pack: write n values into out[out_off:]."""
    off = 0
    for b in range(bases.shape[0]):
        lo = b * BLOCK
        cnt = min(n, lo + BLOCK) - lo
        width = int(widths[b])
        unpack_fixed(words, off, width, np.uint64(bases[b]), cnt, out, out_off + lo)
        off += packed_words(cnt, width)
