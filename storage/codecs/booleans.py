"""Boolean columns: a little-endian bitmap, its zstd frame, or run lengths (FOR bit-packed),
whichever is smallest.
"""

from __future__ import annotations

import struct

import numpy as np

from storage.codecs import CodecError, CodecId
from storage.codecs.bitpack import for_pack, for_packed_bytes
from storage.codecs.integers import (
    MODE_FOR,
    aligned_bytes,
    decode_for_family,
    entropy_compressor,
    zstd_decompress,
)

HEADER = struct.Struct("<BBHI")  # codec id, first value (RLE) / 0, reserved, count
RLE_HEADER = struct.Struct("<BBHIII")  # codec id, first value, 0, count, runs, 0
MAX_COUNT = 0xFFFFFFFF


def run_lengths(values: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal values (int64), computed without a Python loop."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    edges = np.concatenate(([0], change, [n]))
    return np.diff(edges).astype(np.int64)


def encode_bitmap_body(values: np.ndarray) -> bytes:
    return np.packbits(values, bitorder="little").tobytes()


def decode_bitmap_body(buf: bytes | memoryview, offset: int, n: int, what: str) -> np.ndarray:
    nbytes = (n + 7) // 8
    if len(buf) < offset + nbytes:
        raise CodecError(f"{what}: bitmap of {n} bits truncated at {len(buf)} bytes")
    packed = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=offset)
    return np.unpackbits(packed, count=n, bitorder="little").view(np.bool_)


def encode_rle(values: np.ndarray) -> bytes:
    runs = run_lengths(values)
    first = int(values[0]) if len(values) else 0
    bases, widths, words = for_pack(runs)
    return b"".join((RLE_HEADER.pack(CodecId.BOOL_RLE, first, 0, len(values), len(runs), 0),
                     bases.tobytes(), widths.tobytes() + bytes(-len(widths) % 8), words.tobytes()))


def rle_size(values: np.ndarray) -> int:
    return RLE_HEADER.size + for_packed_bytes(run_lengths(values))


def decode_rle(buf: bytes | memoryview, what: str) -> np.ndarray:
    _, first, _, n, nruns, _ = RLE_HEADER.unpack_from(buf, 0)
    runs = np.empty(nruns, dtype=np.uint64)
    if decode_for_family(aligned_bytes(buf), RLE_HEADER.size, nruns, MODE_FOR, np.uint64(0), 0,
                         runs) < 0:
        raise CodecError(f"{what}: BOOL_RLE run lengths truncated ({len(buf)} bytes)")
    if int(runs.sum()) != n:
        raise CodecError(f"{what}: BOOL_RLE runs cover {int(runs.sum())} values, header says {n}")
    run_values = (np.arange(nruns) & 1).astype(np.bool_) ^ bool(first)
    return np.repeat(run_values, runs.astype(np.int64))


def encode_bools(values: np.ndarray) -> bytes:
    """bool column -> BOOL_BITMAP, BOOL_BITMAP_ZSTD or BOOL_RLE bytes, whichever is smallest."""
    values = np.ascontiguousarray(np.asarray(values, dtype=np.bool_))
    n = len(values)
    if n > MAX_COUNT:
        raise CodecError(f"bool column of {n} values exceeds the {MAX_COUNT}-value limit")
    bitmap = encode_bitmap_body(values)
    best = HEADER.pack(CodecId.BOOL_BITMAP, 0, 0, n) + bitmap
    if n and rle_size(values) < len(best):
        best = encode_rle(values)
    if n:  # skewed bits: zstd's Huffman codes the bitmap bytes at ~their entropy
        packed = HEADER.pack(CodecId.BOOL_BITMAP_ZSTD, 0, 0, n) + entropy_compressor().compress(bitmap)
        if len(packed) < len(best):
            best = packed
    return best


def decode_bools(buf: bytes | memoryview) -> np.ndarray:
    """BOOL_BITMAP / BOOL_BITMAP_ZSTD / BOOL_RLE bytes -> bool array."""
    if len(buf) < HEADER.size:
        raise CodecError(f"bools: buffer of {len(buf)} bytes is shorter than the header")
    codec, _, _, n = HEADER.unpack_from(buf, 0)
    if codec == CodecId.BOOL_BITMAP:
        return decode_bitmap_body(buf, HEADER.size, n, "bools")
    if codec == CodecId.BOOL_RLE:
        return decode_rle(buf, "bools")
    if codec == CodecId.BOOL_BITMAP_ZSTD:
        bitmap = zstd_decompress(memoryview(buf)[HEADER.size:], (n + 7) // 8, "bools: BOOL_BITMAP_ZSTD")
        return decode_bitmap_body(bitmap, 0, n, "bools")
    raise CodecError(f"bools: codec byte {codec} at offset 0 is not a boolean codec")
