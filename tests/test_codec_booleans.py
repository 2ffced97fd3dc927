"""Round trips and codec choice of the boolean and validity-mask codecs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from storage.codecs import (
    CodecError,
    CodecId,
    codec_of,
    decode_bools,
    decode_validity,
    encode_bools,
    encode_validity,
)


def runs(seed: int, n: int, mean_run: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lengths = rng.geometric(1.0 / mean_run, n + 1)
    values = np.repeat((np.arange(len(lengths)) % 2).astype(bool), lengths)
    return values[:n]


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.bool_, st.integers(0, 3000)))
def test_bools_and_validity_round_trip(values: np.ndarray) -> None:
    np.testing.assert_array_equal(decode_bools(encode_bools(values)), values)
    np.testing.assert_array_equal(decode_validity(encode_validity(values)), values)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 5000), st.sampled_from([1, 3, 50, 2000]))
def test_runs_round_trip(seed: int, n: int, mean_run: int) -> None:
    values = runs(seed, n, mean_run)
    assert decode_bools(encode_bools(values)).dtype == np.bool_
    np.testing.assert_array_equal(decode_bools(encode_bools(values)), values)
    np.testing.assert_array_equal(decode_validity(encode_validity(values)), values)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1023, 1024, 1025])
def test_sizes_at_edges(n: int) -> None:
    values = np.random.default_rng(n).random(n) < 0.5
    np.testing.assert_array_equal(decode_bools(encode_bools(values)), values)
    np.testing.assert_array_equal(decode_validity(encode_validity(values)), values)


def test_choice_bitmap_or_rle() -> None:
    noisy = np.random.default_rng(1).random(8000) < 0.5
    assert codec_of(encode_bools(noisy)) == CodecId.BOOL_BITMAP
    long_runs = runs(2, 8000, 500)
    buf = encode_bools(long_runs)
    assert codec_of(buf) == CodecId.BOOL_RLE
    assert len(buf) < 8000 // 8
    ones = encode_bools(np.ones(8000, dtype=bool))
    assert codec_of(ones) in (CodecId.BOOL_RLE, CodecId.BOOL_BITMAP_ZSTD) and len(ones) < 40


@pytest.mark.parametrize("p_true", [0.01, 0.05, 0.2])
def test_skewed_bits_take_bitmap_zstd(p_true: float) -> None:
    values = np.random.default_rng(int(p_true * 100)).random(100_000) < p_true
    buf = encode_bools(values)
    assert codec_of(buf) == CodecId.BOOL_BITMAP_ZSTD
    entropy = -(p_true * np.log2(p_true) + (1 - p_true) * np.log2(1 - p_true))
    assert len(buf) * 8 / len(values) < 1.4 * entropy + 0.02
    np.testing.assert_array_equal(decode_bools(buf), values)
    np.testing.assert_array_equal(decode_bools(memoryview(b"x" + buf)[1:]), values)
    with pytest.raises(CodecError):
        decode_bools(buf[: len(buf) // 2])


def test_validity_markers_are_tiny() -> None:
    for n in (0, 1, 100, 8640, 1_000_000):
        all_valid = encode_validity(np.ones(n, dtype=bool))
        assert codec_of(all_valid) == CodecId.VALID_ALL
        assert len(all_valid) <= 4
        assert decode_validity(all_valid).all() and len(decode_validity(all_valid)) == n
    none_valid = encode_validity(np.zeros(8640, dtype=bool))
    assert codec_of(none_valid) == CodecId.VALID_NONE
    assert not decode_validity(none_valid).any()


def test_validity_bitmap_zstd_when_it_pays() -> None:
    periodic = np.tile(np.array([True, True, False, True, False, False, True]), 3000)
    buf = encode_validity(periodic)
    assert codec_of(buf) == CodecId.VALID_BITMAP_ZSTD
    assert len(buf) < 0.9 * (len(periodic) / 8)
    np.testing.assert_array_equal(decode_validity(buf), periodic)
    noisy = np.random.default_rng(3).random(8000) < 0.5
    assert codec_of(encode_validity(noisy)) == CodecId.VALID_BITMAP


def test_corrupt_buffers_raise() -> None:
    with pytest.raises(CodecError, match="truncated"):
        decode_bools(encode_bools(np.random.default_rng(4).random(800) < 0.5)[:50])
    with pytest.raises(CodecError, match="not a validity codec"):
        decode_validity(bytes([CodecId.ALP, 3]))
    with pytest.raises(CodecError, match="not a boolean codec"):
        decode_bools(bytes([CodecId.ALP]) + bytes(15))
