"""Timestamp columns (int64 ns): the integer family's delta codecs (constant-delta, delta / DOD FOR,
delta byte planes + zstd), or a period split (grid index + jitter) when that is smaller.
"""

from __future__ import annotations

import numpy as np

from storage.codecs.integers import (
    MODE_DELTA,
    MODE_DOD,
    decode_int64_words,
    encode_int64_words,
    period_split_encode,
)

PERIOD_SPLIT_MIN_BYTES = 4096
"""Period split is only tried when the delta encoding is at least this large (cheap columns stay cheap)."""


def encode_timestamps(values: np.ndarray) -> bytes:
    """int64 ns timestamps (any order) -> bytes; first byte is the CodecId, count inside."""
    values = np.ascontiguousarray(np.asarray(values, dtype=np.int64))
    encoded = encode_int64_words(values, (MODE_DELTA, MODE_DOD))
    if len(encoded) >= PERIOD_SPLIT_MIN_BYTES:
        split = period_split_encode(values)
        if split is not None and len(split) < len(encoded):
            return split
    return encoded


def decode_timestamps(buf: bytes | memoryview) -> np.ndarray:
    """bytes -> int64 ns timestamps (fresh array)."""
    return decode_int64_words(buf, "timestamps")
