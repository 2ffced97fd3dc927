"""Timestamp columns (int64 ns): constant, constant-delta, or delta / delta-of-delta after a
common power-of-10 divisor, FOR bit-packed per 1,024 values (plain and zstd when they pay).
"""

from __future__ import annotations

import numpy as np

from storage.codecs.integers import MODE_DELTA, MODE_DOD, decode_int64_words, encode_int64_words


def encode_timestamps(values: np.ndarray) -> bytes:
    """int64 ns timestamps (any order) -> bytes; first byte is the CodecId, count inside."""
    return encode_int64_words(np.asarray(values, dtype=np.int64), (MODE_DELTA, MODE_DOD))


def decode_timestamps(buf: bytes | memoryview) -> np.ndarray:
    """bytes -> int64 ns timestamps (fresh array)."""
    return decode_int64_words(buf, "timestamps")
