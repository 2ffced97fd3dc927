"""Validity (non-null) masks of nullable columns: all-valid / none-valid markers (a few bytes),
else a bitmap (zstd'd when that saves >= 10%) or boolean run lengths, whichever is smallest.
"""

from __future__ import annotations

import numpy as np

from storage.codecs import CodecError, CodecId
from storage.codecs.booleans import (
    decode_bitmap_body,
    decode_rle,
    encode_bitmap_body,
    encode_rle,
    rle_size,
)
from storage.codecs.integers import ZSTD_MIN_SAVING, zstd_compress, zstd_decompress

MAX_COUNT = 0xFFFFFFFF


def _uvarint(x: int) -> bytes:
    out = bytearray()
    while x >= 0x80:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)
    return bytes(out)


def _read_uvarint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    x = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 35:
            raise CodecError(f"validity: bad count varint at offset {pos}")
        b = buf[pos]
        x |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            return x, pos
        shift += 7


def encode_validity(valid: np.ndarray) -> bytes:
    """bool mask (True = value present) -> bytes; 2-4 bytes when all or none are valid."""
    valid = np.ascontiguousarray(np.asarray(valid, dtype=np.bool_))
    n = len(valid)
    if n > MAX_COUNT:
        raise CodecError(f"validity mask of {n} values exceeds the {MAX_COUNT}-value limit")
    head = _uvarint(n)
    if valid.all():
        return bytes([CodecId.VALID_ALL]) + head
    if not valid.any():
        return bytes([CodecId.VALID_NONE]) + head
    bitmap = encode_bitmap_body(valid)
    best = bytes([CodecId.VALID_BITMAP]) + head + bitmap
    packed = zstd_compress(bitmap)
    if len(packed) <= (1.0 - ZSTD_MIN_SAVING) * len(bitmap):
        best = bytes([CodecId.VALID_BITMAP_ZSTD]) + head + packed
    if rle_size(valid) < len(best):
        best = encode_rle(valid)
    return best


def decode_validity(buf: bytes | memoryview) -> np.ndarray:
    """bytes -> bool mask (True = value present)."""
    if len(buf) == 0:
        raise CodecError("validity: empty buffer")
    codec = buf[0]
    if codec == CodecId.BOOL_RLE:
        return decode_rle(buf, "validity")
    n, pos = _read_uvarint(buf, 1)
    if codec == CodecId.VALID_ALL:
        return np.ones(n, dtype=np.bool_)
    if codec == CodecId.VALID_NONE:
        return np.zeros(n, dtype=np.bool_)
    if codec == CodecId.VALID_BITMAP:
        return decode_bitmap_body(buf, pos, n, "validity")
    if codec == CodecId.VALID_BITMAP_ZSTD:
        raw = zstd_decompress(memoryview(buf)[pos:], (n + 7) // 8, "validity")
        return decode_bitmap_body(raw, 0, n, "validity")
    raise CodecError(f"validity: codec byte {codec} at offset 0 is not a validity codec")
