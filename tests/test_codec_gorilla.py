"""Bit-exact round trips of the Gorilla XOR baseline codec."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from storage.codecs import CodecError, CodecId, codec_of, decode_floats, encode_floats_gorilla
from storage.codecs.gorilla import leading_zeros, trailing_zeros


def check(values: np.ndarray) -> bytes:
    buf = encode_floats_gorilla(values)
    assert codec_of(buf) == CodecId.GORILLA
    np.testing.assert_array_equal(decode_floats(buf).view(np.uint64), values.view(np.uint64))
    return buf


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.uint64, st.integers(0, 300)))
def test_any_bit_pattern_round_trips(bits: np.ndarray) -> None:
    check(bits.view(np.float64))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 2500))
def test_slowly_changing_series_round_trip(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.round(20 + np.cumsum(rng.normal(0, 0.1, n)), 2)
    values[rng.random(n) < 0.3] = np.nan  # runs of identical values and specials
    check(values)


@pytest.mark.parametrize("n", [0, 1, 2, 1023, 1024, 1025])
def test_edges(n: int) -> None:
    rng = np.random.default_rng(n)
    check(rng.normal(0, 1, n))
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324], dtype=np.float64)
    check(np.resize(specials, n))
    check(np.resize(np.array([0x7FF0000000000001, 0xFFF8000000000002], dtype=np.uint64), n)
          .view(np.float64))


def test_constant_series_costs_one_bit_per_value() -> None:
    buf = check(np.full(8000, 3.25))
    assert len(buf) < 16 + 8 + 8000 // 8 + 8


def test_bit_scans() -> None:
    for x in (1, 2, 3, 0x8000000000000000, 0x00F0000000000000, 0xFFFFFFFFFFFFFFFF):
        expected_lz = 64 - x.bit_length()
        expected_tz = (x & -x).bit_length() - 1
        assert leading_zeros(np.uint64(x)) == expected_lz
        assert trailing_zeros(np.uint64(x)) == expected_tz
    assert leading_zeros(np.uint64(0)) == 64 and trailing_zeros(np.uint64(0)) == 64


def test_truncated_stream_raises() -> None:
    buf = encode_floats_gorilla(np.random.default_rng(1).normal(0, 1, 500))
    with pytest.raises(CodecError):
        decode_floats(buf[:-200])
