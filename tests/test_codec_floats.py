"""Bit-exact round trips and scheme choice of the float64 codecs (ALP, ALP_RD, const, plain)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from storage.codecs import CodecError, CodecId, codec_of, decode_floats, encode_floats
from storage.codecs.floats_alp import alp_encode_value, encode_alp, encode_alp_delta, encode_alp_rd

SPECIALS = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2250738585072014e-308,
     np.finfo(np.float64).max, -np.finfo(np.float64).max, 1e300, 9.2e18, -9.3e18, 0.1, 1.5]
)
NAN_PAYLOADS = np.array(
    [0x7FF8000000000000, 0x7FF0000000000001, 0xFFF8000000000000, 0x7FFFFFFFFFFFFFFF,
     0xFFF0000000000123, 0x7FF4000000000000], dtype=np.uint64,
).view(np.float64)


def check(values: np.ndarray, encoder=encode_floats) -> bytes:
    buf = encoder(values)
    back = decode_floats(buf)
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back.view(np.uint64), values.view(np.uint64))
    return buf


def decimals(seed: int, n: int, places: int, scale: float = 50.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, scale, n), places)


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.uint64, st.integers(0, 300)))
def test_any_bit_pattern_round_trips(bits: np.ndarray) -> None:
    values = bits.view(np.float64)
    check(values)
    check(values, encode_alp)
    check(values, encode_alp_rd)
    check(values, encode_alp_delta)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 300),
                  elements=st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)))
def test_float_values_round_trip(values: np.ndarray) -> None:
    check(values)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 3000), st.integers(0, 6), st.integers(0, 40))
def test_decimal_data_with_exceptions(seed: int, n: int, places: int, n_specials: int) -> None:
    values = decimals(seed, n, places)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, n_specials)
    values[idx] = rng.choice(np.concatenate([SPECIALS, NAN_PAYLOADS]), n_specials)
    check(values)
    check(values, encode_alp)
    check(values, encode_alp_rd)
    check(values, encode_alp_delta)


@pytest.mark.parametrize("n", [0, 1, 2, 1023, 1024, 1025, 2049])
def test_block_boundaries(n: int) -> None:
    values = decimals(n, n, 2)
    check(values)
    check(values, encode_alp)
    check(np.random.default_rng(n).random(n), encode_alp_rd)


def test_specials_and_nan_payloads_bit_exact() -> None:
    for values in (SPECIALS, NAN_PAYLOADS, np.tile(NAN_PAYLOADS, 300)):
        for encoder in (encode_floats, encode_alp, encode_alp_rd, encode_alp_delta):
            check(values.copy(), encoder)
    mixed = decimals(1, 3000, 2)
    mixed[::7] = -0.0
    mixed[::11] = NAN_PAYLOADS[1]
    check(mixed, encode_alp)
    check(mixed, encode_alp_delta)


def test_more_than_one_row_group() -> None:
    values = decimals(9, 100 * 1024 + 3000, 1)
    values[50_000:] *= 1000.0  # a second row group with different magnitudes
    buf = check(values)
    assert codec_of(buf) == CodecId.ALP


def test_scheme_choice() -> None:
    assert codec_of(check(np.full(3000, 21.5))) == CodecId.CONST_F64
    assert codec_of(check(np.zeros(0))) == CodecId.PLAIN_F64
    two_dec = decimals(2, 8640, 2)
    buf = check(two_dec)
    assert codec_of(buf) in (CodecId.ALP, CodecId.ALP_DELTA)
    assert len(buf) * 8 / len(two_dec) < 16  # |v| <~ 200 at 0.01 steps: ~15 bits
    noise = np.random.default_rng(3).random(8640)
    assert codec_of(check(noise)) in (CodecId.ALP_RD, CodecId.PLAIN_F64)
    walk = np.cumsum(np.random.default_rng(4).normal(0, 1, 8640))
    buf = check(walk)
    assert codec_of(buf) in (CodecId.ALP_RD, CodecId.PLAIN_F64)
    assert len(buf) <= 8 + 8 * len(walk)


def test_alp_rounding_is_exact_ieee() -> None:
    n, exact = alp_encode_value(0.1 + 0.2, 17, 0)  # 0.30000000000000004: needs 17 digits
    assert exact and n == 30000000000000004
    n, exact = alp_encode_value(2.5, 1, 0)
    assert exact and n == 25
    n, exact = alp_encode_value(-1234.56, 2, 0)
    assert exact and n == -123456
    _, exact = alp_encode_value(-0.0, 0, 0)
    assert not exact
    _, exact = alp_encode_value(float("nan"), 2, 0)
    assert not exact


def test_corrupt_buffers_raise() -> None:
    buf = encode_alp(decimals(5, 3000, 2))
    with pytest.raises(CodecError, match="truncated"):
        decode_floats(buf[:100])
    rd = encode_alp_rd(np.random.default_rng(5).random(3000))
    with pytest.raises(CodecError, match="truncated"):
        decode_floats(rd[:200])
    with pytest.raises(CodecError, match="not a float codec"):
        decode_floats(bytes([CodecId.BOOL_RLE]) + bytes(31))


def sensor_walk(seed: int, series: int, points: int, sd: float, places: int) -> np.ndarray:
    """Per-series random walks written with `places` decimals, concatenated (segment order)."""
    rng = np.random.default_rng(seed)
    walks = rng.uniform(0, 100, (series, 1)) + np.cumsum(rng.normal(0, sd, (series, points)), axis=1)
    return np.round(walks, places).reshape(-1)


@pytest.mark.parametrize("sd, places", [(0.05, 1), (0.1, 2)])
def test_alp_delta_wins_on_sensor_walks(sd: float, places: int) -> None:
    values = sensor_walk(int(sd * 100), 20, 5000, sd, places)
    buf = check(values)
    assert codec_of(buf) == CodecId.ALP_DELTA
    assert len(buf) < 0.7 * len(encode_alp(values))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 3000), st.integers(0, 20), st.integers(0, 4))
def test_alp_delta_exceptions_keep_deltas_small(seed: int, n: int, n_specials: int, places: int) -> None:
    values = sensor_walk(seed, 1, n, 0.1, places)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, n_specials)
    values[idx] = rng.choice(np.concatenate([SPECIALS, NAN_PAYLOADS]), n_specials)
    check(values, encode_alp_delta)


def test_alp_delta_extremes_and_all_exceptions() -> None:
    for values in (np.zeros(0), np.array([-0.0]), np.array([1.5]), NAN_PAYLOADS.copy(),
                   np.array([np.finfo(np.float64).max, -np.finfo(np.float64).max, 5e-324, 0.1] * 50)):
        check(values, encode_alp_delta)
    buf = encode_alp_delta(np.array([1.25, 2.5]), e=2, f=0)
    assert buf[1] == 2 and buf[2] == 0
    np.testing.assert_array_equal(decode_floats(buf), [1.25, 2.5])
    with pytest.raises(CodecError, match="out of range"):
        encode_alp_delta(np.array([1.0]), e=2, f=3)


def test_alp_delta_corrupt_buffers_raise() -> None:
    values = sensor_walk(3, 2, 3000, 0.1, 2)
    values[17] = np.nan
    buf = encode_alp_delta(values)
    assert codec_of(buf) == CodecId.ALP_DELTA
    with pytest.raises(CodecError, match="truncated"):
        decode_floats(buf[:40])
    bad = bytearray(buf)
    bad[16 + 8:16 + 12] = (10**6).to_bytes(4, "little")  # exception position beyond n
    with pytest.raises(CodecError, match="position"):
        decode_floats(bytes(bad))
