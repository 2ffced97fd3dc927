"""Round trips and codec choice of the string column codec (Arrow in, Arrow out)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.codecs import CodecError, CodecId, codec_of, decode_strings, encode_strings


def check(values: pa.Array) -> bytes:
    buf = encode_strings(values)
    back = decode_strings(buf)
    assert back.type == pa.string()
    assert back.equals(values.cast(pa.string()))
    return buf


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=300))
def test_round_trip_any_text(texts: list[str]) -> None:
    check(pa.array(texts, type=pa.string()))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["", "on", "off", "ünïcode ✓", "a,b=c d"]), max_size=2000),
       st.integers(0, 50))
def test_round_trip_low_cardinality_and_slices(texts: list[str], cut: int) -> None:
    arr = pa.array(texts, type=pa.string())
    check(arr)
    check(arr.slice(min(cut, len(arr))))


def test_choice_dictionary_or_plain() -> None:
    hosts = pa.array([f"host_{i % 10}" for i in range(8640)])
    buf = check(hosts)
    assert codec_of(buf) == CodecId.STR_DICT_ZSTD
    assert len(buf) < 8640 // 4
    unique = pa.array([f"event-{i}-{i * 7919 % 1000}" for i in range(5000)])
    assert codec_of(check(unique)) == CodecId.STR_PLAIN_ZSTD
    assert codec_of(check(pa.array([], type=pa.string()))) == CodecId.STR_PLAIN_ZSTD
    assert codec_of(check(pa.array(["x"]))) == CodecId.STR_PLAIN_ZSTD


def test_large_string_and_chunked_inputs() -> None:
    texts = ["α", "", "βγ"] * 700
    check(pa.array(texts, type=pa.large_string()))
    chunked = pa.chunked_array([pa.array(texts[:1000]), pa.array(texts[1000:])])
    back = decode_strings(encode_strings(chunked))
    assert back.to_pylist() == texts


def test_decode_builds_from_buffers() -> None:
    arr = pa.array([f"v{i % 3}" for i in range(3000)])
    back = decode_strings(encode_strings(arr))
    assert isinstance(back, pa.StringArray)
    offsets = np.frombuffer(back.buffers()[1], dtype=np.int32, count=len(back) + 1)
    assert offsets[-1] == sum(len(s) for s in arr.to_pylist())


def test_bad_inputs_raise() -> None:
    with pytest.raises(CodecError, match="nulls"):
        encode_strings(pa.array(["a", None]))
    with pytest.raises(CodecError, match="expected a string array"):
        encode_strings(pa.array([1, 2]))
    buf = encode_strings(pa.array([f"row {i}" for i in range(2000)]))
    with pytest.raises(CodecError):
        decode_strings(buf[:-10])
