"""Round trips and codec choice of the int64 / uint64 column codecs."""

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
    decode_ints,
    decode_uints,
    encode_ints,
    encode_uints,
)
from storage.codecs.bitpack import zigzag_decode, zigzag_encode
from storage.codecs.integers import (
    MODE_DOD,
    MODE_FOR,
    _delta_zstd_encode,
    delta_planes_encode,
    encode_int64_words,
    unwrap_zstd_stage,
)

I64_MIN = np.iinfo(np.int64).min
I64_MAX = np.iinfo(np.int64).max
U64_MAX = np.iinfo(np.uint64).max
DELTA_CODECS = (CodecId.DELTA_FOR_I64, CodecId.DELTA_ZSTD_I64, CodecId.DELTA_PLANES_ZSTD_I64)


def inner_codec(buf: bytes) -> CodecId:
    """The codec under an optional ZSTD_STAGE wrapper."""
    return codec_of(unwrap_zstd_stage(buf))


def structured_ints(seed: int, n: int, kind: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == 0:  # random walk
        return np.cumsum(rng.integers(-3, 4, n)).astype(np.int64)
    if kind == 1:  # full-range noise
        return rng.integers(I64_MIN, I64_MAX, n, dtype=np.int64, endpoint=True)
    if kind == 2:  # extremes mixed with small values
        return rng.choice(np.array([I64_MIN, I64_MAX, 0, -1, 1], dtype=np.int64), n)
    if kind == 3:  # multiples of a power of ten
        return np.cumsum(rng.integers(-5, 6, n)).astype(np.int64) * 1000 + 7
    return rng.integers(0, 4, n).astype(np.int64)  # low-range noise (FOR without delta)


def check_ints(values: np.ndarray) -> bytes:
    buf = encode_ints(values)
    back = decode_ints(buf)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, values)
    return buf


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.int64, st.integers(0, 300)))
def test_ints_round_trip_any_values(values: np.ndarray) -> None:
    check_ints(values)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 3000), st.integers(0, 4))
def test_ints_round_trip_structured(seed: int, n: int, kind: int) -> None:
    check_ints(structured_ints(seed, n, kind))


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.uint64, st.integers(0, 300)))
def test_uints_round_trip_any_values(values: np.ndarray) -> None:
    back = decode_uints(encode_uints(values))
    assert back.dtype == np.uint64
    np.testing.assert_array_equal(back, values)


@pytest.mark.parametrize("n", [0, 1, 2, 1023, 1024, 1025, 2049])
def test_block_boundaries(n: int) -> None:
    rng = np.random.default_rng(n)
    check_ints(np.cumsum(rng.integers(-100, 100, n)).astype(np.int64))
    u = rng.integers(0, U64_MAX, n, dtype=np.uint64, endpoint=True)
    np.testing.assert_array_equal(decode_uints(encode_uints(u)), u)


def test_extremes_round_trip() -> None:
    for values in (
        np.array([I64_MIN, I64_MAX] * 700, dtype=np.int64),
        np.array([I64_MAX, I64_MIN, I64_MIN, 0], dtype=np.int64),
        np.array([I64_MIN], dtype=np.int64),
        np.arange(1025, dtype=np.int64) + (I64_MAX - 1024),
    ):
        check_ints(values)
    u = np.array([U64_MAX, 0, 2**63, 2**63 - 1, U64_MAX - 1] * 300, dtype=np.uint64)
    np.testing.assert_array_equal(decode_uints(encode_uints(u)), u)
    wrap = np.array([U64_MAX - 2, U64_MAX - 1, U64_MAX, 0, 1, 2], dtype=np.uint64)
    assert codec_of(encode_uints(wrap)) == CodecId.DELTA_CONST_I64
    np.testing.assert_array_equal(decode_uints(encode_uints(wrap)), wrap)


def test_predicates_pick_expected_codec() -> None:
    assert codec_of(check_ints(np.full(5000, -42, dtype=np.int64))) == CodecId.CONST_I64
    assert codec_of(check_ints(np.array([7], dtype=np.int64))) == CodecId.CONST_I64
    assert codec_of(check_ints(np.zeros(0, dtype=np.int64))) == CodecId.PLAIN_I64
    linear = np.arange(10_000, dtype=np.int64) * 13 - 5
    assert codec_of(check_ints(linear)) == CodecId.DELTA_CONST_I64
    assert inner_codec(check_ints(structured_ints(1, 5000, 0))) in DELTA_CODECS
    assert inner_codec(check_ints(structured_ints(1, 5000, 4))) == CodecId.FOR_I64
    quadratic = (np.arange(5000, dtype=np.int64) ** 2) * 3
    assert inner_codec(check_ints(quadratic)) == CodecId.DOD_FOR_I64
    noise = structured_ints(2, 5000, 1)
    buf = check_ints(noise)
    assert codec_of(buf) == CodecId.PLAIN_I64
    assert len(buf) == 8 + 8 * len(noise)


def test_delta_const_decodes_descending_and_wrapping_runs() -> None:
    """DELTA_CONST_I64 decodes in one arange when no value leaves int64, else with 64-bit wrap-around."""
    for values in (
        np.arange(8640, dtype=np.int64) * 10_000_000_000 + 1_451_606_400_000_000_000,
        np.arange(1000, dtype=np.int64) * -7 + 3,
        np.array([I64_MAX - 1, I64_MAX, I64_MIN, I64_MIN + 1], dtype=np.int64),  # wraps at +1
        np.array([I64_MIN + 1, I64_MIN, I64_MAX], dtype=np.int64),  # wraps at -1
        np.arange(5, dtype=np.int64) * (1 << 62) + I64_MIN,  # the last step wraps to I64_MIN
        np.array([I64_MAX - 2, I64_MAX - 1, I64_MAX], dtype=np.int64),  # ends exactly at the top
    ):
        buf = check_ints(values)
        assert codec_of(buf) == CodecId.DELTA_CONST_I64, values[:4]


def test_power_of_ten_scale_is_used() -> None:
    values = structured_ints(3, 4000, 3)
    buf = unwrap_zstd_stage(check_ints(values))
    assert codec_of(buf) in DELTA_CODECS
    assert buf[1] == 3  # deltas are multiples of 10^3
    unscaled = unwrap_zstd_stage(encode_ints(values + np.arange(4000) % 2))
    assert len(buf) < len(unscaled)


def test_tsbs_random_walk_bits_per_value() -> None:
    rng = np.random.default_rng(7)
    steps = np.rint(rng.normal(0.0, 1.0, 8640)).astype(np.int64)
    walk = np.empty(8640, dtype=np.int64)
    cur = 50
    for i, s in enumerate(steps):
        cur = min(100, max(0, cur + int(s)))
        walk[i] = cur
    buf = check_ints(walk)
    bits = len(buf) * 8 / len(walk)
    assert bits < 3.5, bits
    assert len(encode_ints(walk)) < len(walk)  # far below a byte per value


def test_zstd_stage_kept_only_when_it_pays() -> None:
    periodic = np.tile(np.array([0, 900, 3, 70000, 5, 12], dtype=np.int64) << 34, 2000)
    buf = encode_int64_words(periodic, (MODE_FOR, MODE_DOD))  # no delta: byte planes not tried
    np.testing.assert_array_equal(decode_ints(buf), periodic)
    assert codec_of(buf) == CodecId.ZSTD_STAGE
    assert len(buf) <= 0.9 * len(unwrap_zstd_stage(buf))


def test_zigzag_round_trip() -> None:
    values = np.array([0, -1, 1, -2, 2, I64_MIN, I64_MAX], dtype=np.int64)
    codes = zigzag_encode(values)
    np.testing.assert_array_equal(codes[:5], np.array([0, 1, 2, 3, 4], dtype=np.uint64))
    np.testing.assert_array_equal(zigzag_decode(codes), values)


def test_decode_from_unaligned_memoryview() -> None:
    values = structured_ints(5, 3000, 0)
    buf = encode_ints(values)
    shifted = memoryview(b"x" + buf)[1:]
    np.testing.assert_array_equal(decode_ints(shifted), values)


def test_truncated_and_unknown_buffers_raise() -> None:
    buf = encode_ints(structured_ints(4, 3000, 4))
    inner = unwrap_zstd_stage(buf)
    with pytest.raises(CodecError, match="truncated"):
        decode_ints(inner[: len(inner) // 2])
    with pytest.raises(CodecError, match="not an integer codec"):
        decode_ints(bytes([CodecId.ALP]) + bytes(15))
    with pytest.raises(CodecError):
        codec_of(b"")


def tsbs_column(hosts: int = 20, points: int = 2000, seed: int = 11) -> np.ndarray:
    """Several TSBS-like clamped random walks concatenated, as a segment stores one field."""
    rng = np.random.default_rng(seed)
    walks = np.clip(np.cumsum(np.rint(rng.normal(0, 1, (hosts, points))), axis=1) + 50, 0, 100)
    return walks.astype(np.int64).reshape(-1)


def test_delta_zstd_wins_on_small_entropy_deltas() -> None:
    column = tsbs_column()
    buf = check_ints(column)
    assert codec_of(buf) == CodecId.DELTA_ZSTD_I64
    assert buf[2] == 1  # zigzag deltas fit one byte
    assert len(buf) * 8 / len(column) < 3.0


@pytest.mark.parametrize("sigma, width", [(1.0, 1), (60.0, 2), (15_000.0, 4)])
def test_delta_zstd_widths_and_scale(sigma: float, width: int) -> None:
    rng = np.random.default_rng(int(sigma))
    deltas = np.rint(rng.normal(0, sigma, 20_000)).astype(np.int64) * 1000 + 7000
    values = np.cumsum(deltas) - 3
    buf = _delta_zstd_encode(values, 3)
    assert buf is not None and codec_of(buf) == CodecId.DELTA_ZSTD_I64
    assert buf[1] == 3 and buf[2] == width  # deltas scaled by 10^3, zigzagged into `width` bytes
    np.testing.assert_array_equal(decode_ints(buf), values)
    assert len(check_ints(values)) <= len(buf)  # the encoder never picks something larger


def test_delta_zstd_refuses_deltas_wider_than_four_bytes() -> None:
    assert _delta_zstd_encode(np.array([0, 1 << 40, 0], dtype=np.int64), 0) is None


def test_delta_zstd_corrupt_frame_raises() -> None:
    buf = bytearray(check_ints(tsbs_column()))
    assert codec_of(bytes(buf)) == CodecId.DELTA_ZSTD_I64
    buf[20:28] = b"\xff" * 8
    with pytest.raises(CodecError):
        decode_ints(bytes(buf))


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.int64, st.integers(1, 300)), st.integers(0, 3))
def test_delta_planes_round_trip_any_values(values: np.ndarray, scale_exp: int) -> None:
    values = values * np.int64(10**scale_exp)  # wrapping: deltas stay multiples mod 2^64 only
    buf = delta_planes_encode(values, 0)
    assert codec_of(buf) in (CodecId.DELTA_ZSTD_I64, CodecId.DELTA_PLANES_ZSTD_I64)
    np.testing.assert_array_equal(decode_ints(buf), values)


def test_delta_planes_extremes_and_single() -> None:
    for values in (np.array([I64_MIN, I64_MAX, 0, -1, I64_MIN], dtype=np.int64),
                   np.array([I64_MAX], dtype=np.int64), np.array([3, 3], dtype=np.int64),
                   np.arange(2000, dtype=np.int64) * (I64_MAX // 1000)):
        buf = delta_planes_encode(values, 0)
        np.testing.assert_array_equal(decode_ints(buf), values)
        np.testing.assert_array_equal(decode_ints(memoryview(b"x" + buf)[1:]), values)


def series_runs(rng: np.random.Generator, series: int, points: int, step: int, noise: int) -> np.ndarray:
    """Per-series runs (regular step + noise) concatenated: a big jump at every series boundary."""
    runs = [rng.integers(-10**12, 10**12) + np.cumsum(step + rng.integers(0, noise + 1, points))
            for _ in range(series)]
    return np.concatenate(runs).astype(np.int64)


def test_delta_planes_boundaries_only_touch_high_planes() -> None:
    rng = np.random.default_rng(5)
    counter = series_runs(rng, 50, 4000, 0, 4)  # energy-like counter: deltas 0..4, big resets
    buf = check_ints(counter)
    assert codec_of(buf) == CodecId.DELTA_PLANES_ZSTD_I64
    assert buf[2] >= 5  # boundary jumps need >= 5 byte planes ...
    assert len(buf) * 8 / len(counter) < 2.8  # ... yet cost almost nothing (entropy 2.32 bits)
    old = _delta_zstd_encode(counter, 0)
    assert old is None  # the single-width codec cannot hold these jumps at all


def test_delta_planes_offset_is_the_median_step() -> None:
    rng = np.random.default_rng(6)
    values = series_runs(rng, 4, 5000, 1000, 3)
    buf = delta_planes_encode(values, 0)
    assert codec_of(buf) == CodecId.DELTA_PLANES_ZSTD_I64
    first, offset = np.frombuffer(buf, dtype="<i8", count=2, offset=8)
    deltas = np.diff(values)
    assert int(first) == int(values[0])
    assert int(offset) == int(np.sort(deltas)[len(deltas) // 2])
    np.testing.assert_array_equal(decode_ints(buf), values)


def test_tsbs_keeps_the_single_byte_codec() -> None:
    buf = delta_planes_encode(tsbs_column(), 0)
    assert codec_of(buf) == CodecId.DELTA_ZSTD_I64 and buf[2] == 1  # offset 0, one plane


def test_delta_planes_corrupt_and_truncated_raise() -> None:
    rng = np.random.default_rng(8)
    buf = bytearray(delta_planes_encode(series_runs(rng, 3, 3000, 7, 50), 0))
    assert buf[0] == CodecId.DELTA_PLANES_ZSTD_I64
    with pytest.raises(CodecError):
        decode_ints(bytes(buf[:20]))
    with pytest.raises(CodecError):
        decode_ints(bytes(buf[: len(buf) - 10]))
    bad_width = bytearray(buf)
    bad_width[2] = 9
    with pytest.raises(CodecError, match="width 9"):
        decode_ints(bytes(bad_width))
