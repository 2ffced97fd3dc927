"""String columns: dictionary (few distinct values) with bit-packed codes, or plain
lengths + bytes, zstd-compressed; decode rebuilds an Arrow StringArray from buffers.
"""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.codecs import CodecError, CodecId
from storage.codecs.bitpack import for_pack
from storage.codecs.integers import (
    MODE_FOR,
    aligned_bytes,
    decode_for_family,
    zstd_compress,
    zstd_decompress,
)

PLAIN_HEADER = struct.Struct("<BBHIQQ")  # id, 0, 0, count, data bytes, payload bytes
DICT_HEADER = struct.Struct("<BBHIIIQQ")  # id, 0, 0, count, dict entries, 0, dict data, payload
MAX_COUNT = 0xFFFFFFFF
MAX_DATA = 2**31 - 1  # decode builds a (32-bit offset) StringArray
DICT_MAX_DISTINCT_FRACTION = 0.5


def _offsets_and_data(arr: pa.Array) -> tuple[np.ndarray, memoryview]:
    """Lengths (uint32) and the value bytes of a string / large_string array, slice-aware."""
    n = len(arr)
    bufs = arr.buffers()
    dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    if n == 0 or bufs[1] is None:
        return np.zeros(0, dtype=np.uint32), memoryview(b"")
    offsets = np.frombuffer(bufs[1], dtype=dtype, count=n + 1, offset=arr.offset * np.dtype(dtype).itemsize)
    start, end = int(offsets[0]), int(offsets[-1])
    data = memoryview(bufs[2])[start:end] if bufs[2] is not None else memoryview(b"")
    return np.diff(offsets).astype(np.uint32), data


def _string_array(lengths: np.ndarray, data: pa.Buffer, what: str) -> pa.StringArray:
    n = len(lengths)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:], dtype=np.int32)
    if n and int(offsets[-1]) != data.size:
        raise CodecError(f"{what}: lengths sum to {int(offsets[-1])}, data has {data.size} bytes")
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), data])


def _prepare(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise CodecError(f"strings: expected a string array, got {values.type}")
    if values.null_count:
        raise CodecError(f"strings: {values.null_count} nulls (validity is stored separately)")
    if len(values) > MAX_COUNT:
        raise CodecError(f"strings: {len(values)} values exceed the {MAX_COUNT}-value limit")
    return values


def _encode_plain(values: pa.Array) -> bytes:
    lengths, data = _offsets_and_data(values)
    if len(data) > MAX_DATA:
        raise CodecError(f"strings: {len(data)} bytes of text exceed the {MAX_DATA}-byte limit")
    payload = lengths.astype("<u4").tobytes() + bytes(data)
    return (PLAIN_HEADER.pack(CodecId.STR_PLAIN_ZSTD, 0, 0, len(values), len(data), len(payload))
            + zstd_compress(payload))


def _encode_dict(values: pa.Array, encoded: pa.DictionaryArray) -> bytes:
    dictionary = encoded.dictionary
    lengths, data = _offsets_and_data(dictionary)
    head = lengths.astype("<u4").tobytes() + bytes(data)
    head += bytes(-len(head) % 8)
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    bases, widths, words = for_pack(indices)
    payload = b"".join((head, bases.tobytes(), widths.tobytes() + bytes(-len(widths) % 8),
                        words.tobytes()))
    header = DICT_HEADER.pack(CodecId.STR_DICT_ZSTD, 0, 0, len(values), len(dictionary), 0,
                              len(data), len(payload))
    return header + zstd_compress(payload)


def encode_strings(values: pa.Array | pa.ChunkedArray) -> bytes:
    """Non-null string array -> STR_DICT_ZSTD or STR_PLAIN_ZSTD bytes (the smaller tried)."""
    values = _prepare(values)
    plain = _encode_plain(values)
    if len(values) < 2:
        return plain
    encoded = pc.dictionary_encode(values)
    if len(encoded.dictionary) > DICT_MAX_DISTINCT_FRACTION * len(values):
        return plain
    as_dict = _encode_dict(values, encoded)
    return as_dict if len(as_dict) < len(plain) else plain


def decode_strings(buf: bytes | memoryview) -> pa.StringArray:
    """bytes -> pa.StringArray, built from buffers (no per-value Python)."""
    if len(buf) < PLAIN_HEADER.size:
        raise CodecError(f"strings: buffer of {len(buf)} bytes is shorter than the header")
    codec = buf[0]
    if codec == CodecId.STR_PLAIN_ZSTD:
        _, _, _, n, data_len, payload_len = PLAIN_HEADER.unpack_from(buf, 0)
        raw = zstd_decompress(memoryview(buf)[PLAIN_HEADER.size:], payload_len, "strings")
        if payload_len != 4 * n + data_len:
            raise CodecError(f"strings: payload of {payload_len} bytes != 4*{n} + {data_len}")
        lengths = np.frombuffer(raw, dtype="<u4", count=n)
        return _string_array(lengths, pa.py_buffer(raw)[4 * n:], "strings")
    if codec == CodecId.STR_DICT_ZSTD:
        if len(buf) < DICT_HEADER.size:
            raise CodecError(f"strings: dictionary header truncated at {len(buf)} bytes")
        _, _, _, n, ndict, _, data_len, payload_len = DICT_HEADER.unpack_from(buf, 0)
        raw = zstd_decompress(memoryview(buf)[DICT_HEADER.size:], payload_len, "strings")
        head = 4 * ndict + data_len
        if head > payload_len:
            raise CodecError(f"strings: dictionary of {head} bytes exceeds payload {payload_len}")
        lengths = np.frombuffer(raw, dtype="<u4", count=ndict)
        dictionary = _string_array(lengths, pa.py_buffer(raw)[4 * ndict:head], "strings dictionary")
        indices = np.empty(n, dtype=np.uint64)
        if decode_for_family(aligned_bytes(raw), head + (-head % 8), n, MODE_FOR, np.uint64(0), 0,
                             indices) < 0:
            raise CodecError(f"strings: dictionary codes of {n} values truncated")
        codes = indices.view(np.int64)
        if n and (codes.min() < 0 or codes.max() >= ndict):
            raise CodecError(f"strings: dictionary code out of range 0..{ndict - 1}")
        return dictionary.take(pa.array(codes.astype(np.int32)))
    raise CodecError(f"strings: codec byte {codec} at offset 0 is not a string codec")
