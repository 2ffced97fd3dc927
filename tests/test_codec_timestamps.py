"""Round trips and codec choice of the timestamp column codec."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from storage.codecs import CodecId, codec_of, decode_timestamps, encode_timestamps
from storage.codecs.integers import unwrap_zstd_stage

T0 = 1_700_000_000_000_000_000
SECOND = 1_000_000_000


def check(values: np.ndarray) -> bytes:
    buf = encode_timestamps(values)
    back = decode_timestamps(buf)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, values)
    return buf


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.int64, st.integers(0, 300)))
def test_round_trip_any_values(values: np.ndarray) -> None:
    check(values)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 3000), st.sampled_from([0, 1, 1000, 10**6, 10**9]),
       st.integers(1, 60))
def test_round_trip_periodic_with_jitter(seed: int, n: int, jitter: int, period_s: int) -> None:
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(n, dtype=np.int64) * period_s * SECOND
    if jitter > 1:
        t = t + rng.integers(0, jitter, n)
    gaps = rng.random(n) < 0.01
    check(t + np.cumsum(gaps) * period_s * SECOND)


@pytest.mark.parametrize("n", [0, 1, 2, 1023, 1024, 1025])
def test_block_boundaries(n: int) -> None:
    rng = np.random.default_rng(n)
    check(T0 + np.arange(n, dtype=np.int64) * 10 * SECOND + rng.integers(0, 999_999, n))


def test_constant_and_exact_interval() -> None:
    assert codec_of(check(np.full(100, T0, dtype=np.int64))) == CodecId.CONST_I64
    exact = T0 + np.arange(8640, dtype=np.int64) * 10 * SECOND
    buf = check(exact)
    assert codec_of(buf) == CodecId.DELTA_CONST_I64
    assert len(buf) <= 24


def test_millisecond_aligned_timestamps_are_divided_first() -> None:
    rng = np.random.default_rng(1)
    t = T0 + np.arange(8640, dtype=np.int64) * 10 * SECOND + rng.integers(0, 1000, 8640) * 10**6
    buf = unwrap_zstd_stage(check(t))
    assert codec_of(buf) in (CodecId.DELTA_FOR_I64, CodecId.DOD_FOR_I64)
    assert buf[1] == 6  # common divisor 10^6 detected
    assert len(buf) * 8 / len(t) < 12.5  # ~11 bits for a 1000 ms jitter range


def test_regular_with_gaps_and_accelerating_deltas() -> None:
    t = T0 + np.cumsum(np.where(np.arange(5000) % 97 == 0, 20, 10)).astype(np.int64) * SECOND
    buf = check(t)
    assert len(buf) * 8 / len(t) < 2.5
    accelerating = T0 + (np.arange(3000, dtype=np.int64) ** 2) * 1000
    assert codec_of(unwrap_zstd_stage(check(accelerating))) == CodecId.DOD_FOR_I64


def test_unsorted_and_extreme_timestamps() -> None:
    lo, hi = np.iinfo(np.int64).min + 2, np.iinfo(np.int64).max - 1
    check(np.array([hi, lo, 0, hi, lo] * 300, dtype=np.int64))
    rng = np.random.default_rng(3)
    check(rng.permutation(T0 + np.arange(2000, dtype=np.int64) * SECOND))
