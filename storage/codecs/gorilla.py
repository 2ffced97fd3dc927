"""Gorilla XOR float64 encoding (Pelkonen et al., VLDB 2015): the baseline ALP is measured
against; decode is reached through decode_floats (the GORILLA codec byte).
"""

from __future__ import annotations

import struct

import numpy as np
from numba import njit

from storage.codecs import CodecError, CodecId

HEADER = struct.Struct("<BBHIII")  # codec id, 0, 0, count, words, 0
MAX_COUNT = 0xFFFFFFFF
_HEADER_BYTES = 16

_ZERO = np.uint64(0)
_ONE = np.uint64(1)


@njit(cache=True, nogil=True)
def leading_zeros(x: np.uint64) -> int:
    if x == _ZERO:
        return 64
    n = 0
    for shift in (32, 16, 8, 4, 2, 1):
        if x >> np.uint64(64 - shift) == _ZERO:
            n += shift
            x = x << np.uint64(shift)
    return n


@njit(cache=True, nogil=True)
def trailing_zeros(x: np.uint64) -> int:
    if x == _ZERO:
        return 64
    n = 0
    for shift in (32, 16, 8, 4, 2, 1):
        if x & ((_ONE << np.uint64(shift)) - _ONE) == _ZERO:
            n += shift
            x = x >> np.uint64(shift)
    return n


@njit(cache=True, nogil=True)
def _put(words: np.ndarray, pos: int, value: np.uint64, nbits: int) -> int:
    """Append the low nbits (1..64) of value, most significant bit first."""
    w = pos >> 6
    free = 64 - (pos & 63)
    if nbits <= free:
        words[w] |= value << np.uint64(free - nbits)
    else:
        over = nbits - free
        words[w] |= value >> np.uint64(over)
        words[w + 1] |= value << np.uint64(64 - over)
    return pos + nbits


@njit(cache=True, nogil=True)
def _get(words: np.ndarray, pos: int, nbits: int) -> np.uint64:
    w = pos >> 6
    s = pos & 63
    free = 64 - s
    v = (words[w] << np.uint64(s)) >> np.uint64(64 - nbits)
    if nbits > free:
        v |= words[w + 1] >> np.uint64(64 - (nbits - free))
    return v


@njit(cache=True, nogil=True)
def gorilla_encode_kernel(bits: np.ndarray) -> np.ndarray:
    n = bits.shape[0]
    words = np.zeros((n * 77 + 63) // 64 + 2, dtype=np.uint64)
    if n == 0:
        return words[:0]
    pos = _put(words, 0, bits[0], 64)
    prev = bits[0]
    prev_lz = 65  # no window yet
    prev_tz = 0
    for i in range(1, n):
        x = bits[i] ^ prev
        prev = bits[i]
        if x == _ZERO:
            pos = _put(words, pos, _ZERO, 1)
            continue
        lz = min(leading_zeros(x), 31)
        tz = trailing_zeros(x)
        if prev_lz <= 64 and lz >= prev_lz and tz >= prev_tz:
            pos = _put(words, pos, np.uint64(2), 2)  # '10': reuse the previous window
            pos = _put(words, pos, x >> np.uint64(prev_tz), 64 - prev_lz - prev_tz)
        else:
            length = 64 - lz - tz
            pos = _put(words, pos, np.uint64(3), 2)  # '11': new window
            pos = _put(words, pos, np.uint64(lz), 5)
            pos = _put(words, pos, np.uint64(length - 1), 6)
            pos = _put(words, pos, x >> np.uint64(tz), length)
            prev_lz = lz
            prev_tz = tz
    return words[:(pos + 63) // 64]


@njit(cache=True, nogil=True)
def gorilla_decode_kernel(words: np.ndarray, n: int, out: np.ndarray) -> int:
    """Decode n values into out (uint64); -1 if the bit stream runs past its words."""
    if n == 0:
        return 0
    limit = words.shape[0] * 64
    if limit < 64:
        return -1
    prev = _get(words, 0, 64)
    out[0] = prev
    pos = 64
    lz = 0
    tz = 0
    for i in range(1, n):
        if pos + 1 > limit:
            return -1
        if _get(words, pos, 1) == _ZERO:
            pos += 1
        else:
            if pos + 2 > limit:
                return -1
            if _get(words, pos + 1, 1) == _ONE:
                if pos + 13 > limit:
                    return -1
                lz = np.int64(_get(words, pos + 2, 5))
                length = np.int64(_get(words, pos + 7, 6)) + 1
                tz = 64 - lz - length
                if tz < 0:
                    return -1
                pos += 13
            else:
                pos += 2
            length = 64 - lz - tz
            if pos + length > limit:
                return -1
            prev ^= _get(words, pos, length) << np.uint64(tz)
            pos += length
        out[i] = prev
    return pos


def encode_floats_gorilla(values: np.ndarray) -> bytes:
    """float64 column -> GORILLA bytes (baseline codec; decode with decode_floats)."""
    values = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    if len(values) > MAX_COUNT:
        raise CodecError(f"float column of {len(values)} values exceeds the {MAX_COUNT}-value limit")
    words = gorilla_encode_kernel(values.view(np.uint64))
    return HEADER.pack(CodecId.GORILLA, 0, 0, len(values), len(words), 0) + words.tobytes()


def decode_gorilla(buf: bytes | memoryview) -> np.ndarray:
    codec, _, _, n, n_words, _ = HEADER.unpack_from(buf, 0)
    if codec != CodecId.GORILLA:
        raise CodecError(f"gorilla: codec byte {codec} at offset 0 is not GORILLA")
    if len(buf) < _HEADER_BYTES + 8 * n_words:
        raise CodecError(f"gorilla: {n_words} words truncated at {len(buf)} bytes")
    words = np.frombuffer(buf, dtype="<u8", count=n_words, offset=_HEADER_BYTES)
    padded = np.zeros(n_words + 1, dtype=np.uint64)  # _get may touch one word past the end
    padded[:n_words] = words
    out = np.empty(n, dtype=np.uint64)
    if gorilla_decode_kernel(padded, n, out) < 0:
        raise CodecError(f"gorilla: bit stream of {n} values runs past {n_words} words")
    return out.view(np.float64)
