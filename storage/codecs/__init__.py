"""Column codecs for segment chunks: the public encode/decode API and the on-disk CodecId byte.

Every encoding starts with its CodecId and is self-describing (value count inside); layouts in
docs/codecs.md (format version CODECS_FORMAT_VERSION).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

CODECS_FORMAT_VERSION = 2


class CodecId(IntEnum):
    """First byte of every encoding. Stored on disk: never renumber, only append."""

    # 64-bit integers (int64, uint64 viewed as int64, timestamps)
    PLAIN_I64 = 0
    CONST_I64 = 1
    DELTA_CONST_I64 = 2
    DOD_FOR_I64 = 3
    DELTA_FOR_I64 = 4
    FOR_I64 = 5
    ZSTD_STAGE = 6  # zstd frame of another integer encoding (kept when it saves >= 10%)
    DELTA_ZSTD_I64 = 7  # zigzag deltas narrowed to 1/2/4 bytes, then zstd (entropy-coded deltas)
    DELTA_PLANES_ZSTD_I64 = 8  # zigzag (delta - offset) split into byte planes, then zstd
    PERIOD_SPLIT_I64 = 9  # v = q * period + r: q as an inner integer encoding, r as zstd byte planes
    # float64
    PLAIN_F64 = 16
    CONST_F64 = 17
    ALP = 18
    ALP_RD = 19
    GORILLA = 20
    ALP_DELTA = 21  # ALP integers (one e, f per chunk) as an inner integer encoding, + exceptions
    # booleans
    BOOL_BITMAP = 32
    BOOL_RLE = 33
    BOOL_BITMAP_ZSTD = 34  # zstd frame of the BOOL_BITMAP bitmap
    # strings
    STR_DICT_ZSTD = 48
    STR_PLAIN_ZSTD = 49
    # validity (null) bitmaps; BOOL_RLE is also accepted there
    VALID_ALL = 64
    VALID_NONE = 65
    VALID_BITMAP = 66
    VALID_BITMAP_ZSTD = 67


class CodecError(ValueError):
    """A buffer that does not decode (wrong codec byte, truncated, corrupt)."""


def codec_of(buf: bytes | memoryview) -> CodecId:
    """The CodecId of an encoding (its first byte)."""
    if len(buf) == 0:
        raise CodecError("empty buffer has no codec byte")
    try:
        return CodecId(buf[0])
    except ValueError as exc:
        raise CodecError(f"unknown codec byte {buf[0]} at offset 0") from exc


# The codec modules import CodecId/CodecError from this package, so they come after them.
from storage.codecs.booleans import decode_bools, encode_bools  # noqa: E402
from storage.codecs.floats_alp import decode_floats, encode_floats  # noqa: E402
from storage.codecs.gorilla import encode_floats_gorilla  # noqa: E402
from storage.codecs.integers import (  # noqa: E402
    MODE_DELTA,
    MODE_DOD,
    MODE_FOR,
    decode_int64_words,
    encode_int64_words,
)
from storage.codecs.strings import decode_strings, encode_strings  # noqa: E402
from storage.codecs.timestamps import decode_timestamps, encode_timestamps  # noqa: E402
from storage.codecs.validity import decode_validity, encode_validity  # noqa: E402


def encode_ints(values: np.ndarray) -> bytes:
    """int64 column -> bytes (CONST / DELTA_CONST / FOR / DELTA_FOR / DOD_FOR / PLAIN, +zstd)."""
    return encode_int64_words(np.asarray(values, dtype=np.int64), (MODE_FOR, MODE_DELTA, MODE_DOD))


def decode_ints(buf: bytes | memoryview) -> np.ndarray:
    return decode_int64_words(buf, "integers")


def encode_uints(values: np.ndarray) -> bytes:
    """uint64 column -> bytes; the same codecs on the two's-complement view (any uint64 exact)."""
    words = np.ascontiguousarray(np.asarray(values, dtype=np.uint64)).view(np.int64)
    return encode_int64_words(words, (MODE_FOR, MODE_DELTA, MODE_DOD))


def decode_uints(buf: bytes | memoryview) -> np.ndarray:
    return decode_int64_words(buf, "unsigned").view(np.uint64)


__all__ = [
    "CODECS_FORMAT_VERSION",
    "CodecError",
    "CodecId",
    "codec_of",
    "decode_bools",
    "decode_floats",
    "decode_ints",
    "decode_strings",
    "decode_timestamps",
    "decode_uints",
    "decode_validity",
    "encode_bools",
    "encode_floats",
    "encode_floats_gorilla",
    "encode_ints",
    "encode_strings",
    "encode_timestamps",
    "encode_uints",
    "encode_validity",
]
