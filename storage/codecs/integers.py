"""The 64-bit integer codec family (int64, uint64 and timestamps share it): constant,
constant-delta, FOR / delta-FOR / DOD-FOR bit-packing, delta + byte planes + zstd, period split,
plain, zstd stage.
"""

from __future__ import annotations

import struct
import threading

import numpy as np
import zstandard
from numba import njit

from storage.codecs import CodecError, CodecId
from storage.codecs.bitpack import BLOCK, for_pack, for_packed_bytes, packed_words, unpack_fixed

HEADER = struct.Struct("<BBHI")  # codec id, aux (decimal scale), reserved, count
FIRST = struct.Struct("<q")
TWO = struct.Struct("<qq")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
MAX_COUNT = 0xFFFFFFFF
ZSTD_LEVEL = 3
ZSTD_MIN_SAVING = 0.10
"""The zstd stage is kept only when it saves at least this fraction of the packed size."""
DELTA_ZSTD_LEVEL = 9
"""zstd level of DELTA_ZSTD_I64 / byte planes: small-alphabet bytes, where higher levels pay."""
DELTA_ZSTD_MIN_MATCH = 6
"""Shorter zstd matches cost more than Huffman literals on near-random low planes (measured)."""
DELTA_ZSTD_WIDTHS = (1, 2, 4)
PLANES_MAX_WIDTH = 8
MEDIAN_SAMPLE = 65_536
"""Deltas sampled to pick DELTA_PLANES_ZSTD_I64's offset and PERIOD_SPLIT_I64's period."""
PERIOD_HEADER = struct.Struct("<qII")  # period, inner encoding length, 0

MODE_FOR = 0
MODE_DELTA = 1
MODE_DOD = 2
_MODE_OF = {CodecId.FOR_I64: MODE_FOR, CodecId.DELTA_FOR_I64: MODE_DELTA,
            CodecId.DOD_FOR_I64: MODE_DOD}
_ID_OF = {v: k for k, v in _MODE_OF.items()}

_POW10 = np.array([10**k for k in range(19)], dtype=np.int64)

_zstd_local = threading.local()


# ---------------------------------------------------------------- predicates (numba)

@njit(cache=True, nogil=True)
def is_const(values: np.ndarray) -> bool:
    """All values equal (true for empty and single-value arrays)."""
    for i in range(1, values.shape[0]):
        if values[i] != values[0]:
            return False
    return True


@njit(cache=True, nogil=True)
def is_delta_const(values: np.ndarray) -> bool:
    """values[i] - values[i-1] (two's complement wraparound) is the same for every i."""
    n = values.shape[0]
    if n < 3:
        return True
    d = np.uint64(values[1]) - np.uint64(values[0])
    for i in range(2, n):
        if np.uint64(values[i]) - np.uint64(values[i - 1]) != d:
            return False
    return True


@njit(cache=True, nogil=True)
def common_pow10_exponent(values: np.ndarray) -> int:
    """Largest k <= 18 such that every consecutive difference is a multiple of 10^k."""
    k = 18
    for i in range(1, values.shape[0]):
        d = np.int64(np.uint64(values[i]) - np.uint64(values[i - 1]))
        while k > 0 and d % _POW10[k] != 0:
            k -= 1
        if k == 0:
            return 0
    return k


# ---------------------------------------------------------------- transforms (numba)

@njit(cache=True, nogil=True)
def _transform(values: np.ndarray, mode: int, scale_exp: int) -> np.ndarray:
    """The sequence that is FOR-packed: values, scaled deltas, or scaled delta-of-deltas."""
    n = values.shape[0]
    if mode == MODE_FOR:
        return values.copy()
    p = _POW10[scale_exp]
    out = np.empty(max(n - 1, 0), dtype=np.int64)
    prev_q = np.uint64(0)
    for i in range(1, n):
        d = np.int64(np.uint64(values[i]) - np.uint64(values[i - 1]))
        q = np.uint64(d // p) if scale_exp > 0 else np.uint64(d)
        if mode == MODE_DELTA:
            out[i - 1] = np.int64(q)
        else:
            out[i - 1] = np.int64(q - prev_q)
            prev_q = q
    return out


@njit(cache=True, nogil=True)
def decode_for_family(buf: np.ndarray, off: int, n: int, mode: int, first: np.uint64,
                      scale_exp: int, out: np.ndarray) -> int:
    """Decode a FOR-family stream at buf[off:] (8-aligned) into out (uint64), in one call.

    Returns the offset just past the stream, or -1 if buf is too short for it.
    """
    if n == 0:
        return off
    m = n if mode == MODE_FOR else n - 1
    dst = 0 if mode == MODE_FOR else 1
    if mode != MODE_FOR:
        out[0] = first
    if m == 0:
        return off
    nb = (m + BLOCK - 1) // BLOCK
    if off + 8 * nb + ((nb + 7) // 8) * 8 > buf.shape[0]:
        return -1
    bases = buf[off:off + 8 * nb].view(np.int64)
    off += 8 * nb
    widths = buf[off:off + nb]
    off += ((nb + 7) // 8) * 8
    total = 0
    for b in range(nb):
        if widths[b] > 64:
            return -1
        total += packed_words(min(m, (b + 1) * BLOCK) - b * BLOCK, int(widths[b]))
    if off + 8 * total > buf.shape[0]:
        return -1
    words = buf[off:off + 8 * total].view(np.uint64)
    mult = np.uint64(_POW10[scale_exp])
    acc = first
    step = np.uint64(0)
    woff = 0
    for b in range(nb):
        lo = b * BLOCK
        cnt = min(m, lo + BLOCK) - lo
        width = int(widths[b])
        unpack_fixed(words, woff, width, np.uint64(bases[b]), cnt, out, dst + lo)
        woff += packed_words(cnt, width)
        if mode == MODE_DELTA:
            for i in range(dst + lo, dst + lo + cnt):
                acc += out[i] * mult
                out[i] = acc
        elif mode == MODE_DOD:
            for i in range(dst + lo, dst + lo + cnt):
                step += out[i]
                acc += step * mult
                out[i] = acc
    return off + 8 * total
    return off + 8 * total


# ---------------------------------------------------------------- zstd stage

def _compressor() -> zstandard.ZstdCompressor:
    comp = getattr(_zstd_local, "comp", None)
    if comp is None:
        comp = _zstd_local.comp = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_zstd_local, "dec", None)
    if dec is None:
        dec = _zstd_local.dec = zstandard.ZstdDecompressor()
    return dec


def zstd_compress(data: bytes) -> bytes:
    return _compressor().compress(data)


def zstd_decompress(data: bytes | memoryview, size: int, what: str) -> bytes:
    try:
        raw = _decompressor().decompress(data, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise CodecError(f"{what}: zstd frame does not decompress: {exc}") from exc
    if len(raw) != size:
        raise CodecError(f"{what}: zstd frame gave {len(raw)} bytes, header says {size}")
    return raw


def with_zstd_stage(encoded: bytes) -> bytes:
    """Wrap an encoding in ZSTD_STAGE when zstd saves >= 10%, else return it unchanged."""
    packed = zstd_compress(encoded)
    if len(packed) + HEADER.size <= (1.0 - ZSTD_MIN_SAVING) * len(encoded):
        return HEADER.pack(CodecId.ZSTD_STAGE, 0, 0, len(encoded)) + packed
    return encoded


def unwrap_zstd_stage(buf: bytes | memoryview) -> bytes | memoryview:
    """The inner encoding of a ZSTD_STAGE buffer (or buf itself if it is not one)."""
    if len(buf) and buf[0] == CodecId.ZSTD_STAGE:
        _, _, _, inner_len = HEADER.unpack_from(buf, 0)
        return zstd_decompress(memoryview(buf)[HEADER.size:], inner_len, "ZSTD_STAGE")
    return buf


def aligned_bytes(buf: bytes | memoryview) -> np.ndarray:
    """buf as a uint8 array whose start is 8-aligned (copied only when it is not)."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    if arr.ctypes.data & 7:
        arr = arr.copy()
    return arr


# ---------------------------------------------------------------- delta + zstd (numba)

@njit(cache=True, nogil=True)
def zigzag_deltas(values: np.ndarray, scale: np.int64) -> tuple[np.ndarray, np.uint64]:
    """Zigzag of (values[i] - values[i-1]) / scale (wrapping 64-bit) for i >= 1, and their max."""
    n = values.shape[0]
    out = np.empty(max(n - 1, 0), dtype=np.uint64)
    top = np.uint64(0)
    for i in range(1, n):
        d = np.int64(np.uint64(values[i]) - np.uint64(values[i - 1])) // scale
        z = np.uint64((d << 1) ^ (d >> 63))
        out[i - 1] = z
        if z > top:
            top = z
    return out, top


@njit(cache=True, nogil=True)
def undo_zigzag_deltas(zz: np.ndarray, first: np.uint64, scale: np.int64, out: np.ndarray) -> None:
    """out[0] = first; out[i] = out[i-1] + unzigzag(zz[i-1]) * scale (wrapping 64-bit)."""
    acc = first
    out[0] = acc
    step = np.uint64(scale)
    for i in range(zz.shape[0]):
        z = np.uint64(zz[i])
        d = (z >> np.uint64(1)) ^ (np.uint64(0) - (z & np.uint64(1)))
        acc = acc + d * step
        out[i + 1] = acc


def _delta_zstd_encode(values: np.ndarray, scale_exp: int) -> bytes | None:
    """DELTA_ZSTD_I64 of values (None when a scaled delta needs more than 4 bytes)."""
    zz, top = zigzag_deltas(values, _POW10[scale_exp])
    width = next((w for w in DELTA_ZSTD_WIDTHS if int(top) < 1 << (8 * w)), 0)
    if not width:
        return None
    packed = entropy_compressor().compress(zz.astype(f"<u{width}").tobytes())
    return HEADER.pack(CodecId.DELTA_ZSTD_I64, scale_exp, width, values.shape[0]) + \
        FIRST.pack(int(values[0])) + packed


def _delta_zstd_decode(buf: bytes | memoryview, aux: int, width: int, n: int, what: str) -> np.ndarray:
    if width not in DELTA_ZSTD_WIDTHS or aux > 18:
        raise CodecError(f"{what}: DELTA_ZSTD_I64 header at offset 0 has width {width}, scale {aux}")
    first = np.uint64(FIRST.unpack_from(buf, HEADER.size)[0] & 0xFFFFFFFFFFFFFFFF)
    raw = zstd_decompress(memoryview(buf)[HEADER.size + 8:], (n - 1) * width, "DELTA_ZSTD_I64")
    if len(raw) != (n - 1) * width:
        raise CodecError(f"{what}: DELTA_ZSTD_I64 holds {len(raw)} delta bytes, expected {(n - 1) * width}")
    out = np.empty(n, dtype=np.uint64)
    undo_zigzag_deltas(np.frombuffer(raw, dtype=f"<u{width}"), first, _POW10[aux], out)
    return out.view(np.int64)


def entropy_compressor() -> zstandard.ZstdCompressor:
    """Thread-local zstd compressor at DELTA_ZSTD_LEVEL (small-alphabet byte streams)."""
    comp = getattr(_zstd_local, "delta_comp", None)
    if comp is None:
        params = zstandard.ZstdCompressionParameters.from_level(DELTA_ZSTD_LEVEL,
                                                                min_match=DELTA_ZSTD_MIN_MATCH)
        comp = _zstd_local.delta_comp = zstandard.ZstdCompressor(compression_params=params)
    return comp


# ---------------------------------------------------------------- byte planes (numba)

@njit(cache=True, nogil=True)
def offset_zigzag_deltas(values: np.ndarray, scale: np.int64,
                         offset: np.int64) -> tuple[np.ndarray, np.uint64]:
    """Zigzag of (values[i] - values[i-1]) / scale - offset (wrapping 64-bit), i >= 1, and their max."""
    n = values.shape[0]
    out = np.empty(max(n - 1, 0), dtype=np.uint64)
    top = np.uint64(0)
    off = np.uint64(offset)
    for i in range(1, n):
        d = np.int64(np.uint64(values[i]) - np.uint64(values[i - 1])) // scale
        e = np.int64(np.uint64(d) - off)
        z = np.uint64((e << 1) ^ (e >> 63))
        out[i - 1] = z
        if z > top:
            top = z
    return out, top


@njit(cache=True, nogil=True)
def to_byte_planes(words: np.ndarray, width: int) -> np.ndarray:
    """Byte b of every word, for b < width, plane after plane (width * len(words) bytes)."""
    m = words.shape[0]
    out = np.empty(width * m, dtype=np.uint8)
    for b in range(width):
        plane = out[b * m:(b + 1) * m]
        shift = np.uint64(8 * b)
        for i in range(m):
            plane[i] = np.uint8((words[i] >> shift) & np.uint64(0xFF))
    return out


@njit(cache=True, nogil=True)
def from_byte_planes(planes: np.ndarray, m: int, width: int, out: np.ndarray, out_off: int) -> None:
    """Inverse of to_byte_planes: out[out_off + i] = word i (uint64). Plane-wise loops over
    slices so that LLVM vectorises them."""
    dst = out[out_off:out_off + m]
    low = planes[:m]
    for i in range(m):
        dst[i] = np.uint64(low[i])
    for b in range(1, width):
        plane = planes[b * m:(b + 1) * m]
        shift = np.uint64(8 * b)
        for i in range(m):
            dst[i] |= np.uint64(plane[i]) << shift


@njit(cache=True, nogil=True)
def undo_offset_zigzag_deltas(out: np.ndarray, first: np.uint64, scale: np.int64,
                              offset: np.int64) -> None:
    """In place: out[1:] holds zigzag codes; afterwards out[i] = out[i-1] + (d + offset) * scale."""
    acc = first
    out[0] = acc
    step = np.uint64(scale)
    off = np.uint64(offset)
    for i in range(1, out.shape[0]):
        z = out[i]
        d = (z >> np.uint64(1)) ^ (np.uint64(0) - (z & np.uint64(1)))
        acc = acc + (d + off) * step
        out[i] = acc


@njit(cache=True, nogil=True)
def period_split(values: np.ndarray, period: np.int64) -> tuple[np.ndarray, np.ndarray, np.uint64]:
    """q = floor(v / period), r = v - q * period (mod 2^64, so 0 <= r < period); and max r."""
    n = values.shape[0]
    q = np.empty(n, dtype=np.int64)
    r = np.empty(n, dtype=np.uint64)
    top = np.uint64(0)
    p = np.uint64(period)
    for i in range(n):
        qi = values[i] // period
        q[i] = qi
        ri = np.uint64(values[i]) - np.uint64(qi) * p
        r[i] = ri
        if ri > top:
            top = ri
    return q, r, top


@njit(cache=True, nogil=True)
def period_join(q: np.ndarray, r: np.ndarray, period: np.int64) -> None:
    """In place: r[i] = q[i] * period + r[i] (mod 2^64)."""
    p = np.uint64(period)
    for i in range(r.shape[0]):
        r[i] = np.uint64(q[i]) * p + r[i]


def byte_width(top: int) -> int:
    """Bytes needed for an unsigned value (at least 1)."""
    return max(1, (int(top).bit_length() + 7) // 8)


def sampled_median_delta(values: np.ndarray, scale_exp: int) -> int:
    """Median of up to MEDIAN_SAMPLE evenly spread scaled deltas (wrapping 64-bit), exact int."""
    n = values.shape[0]
    idx = np.unique(np.linspace(1, n - 1, min(n - 1, MEDIAN_SAMPLE)).astype(np.int64))
    words = values.view(np.uint64)
    deltas = (words[idx] - words[idx - 1]).view(np.int64) // _POW10[scale_exp]
    return int(np.partition(deltas, len(deltas) // 2)[len(deltas) // 2])


def grid_period(values: np.ndarray) -> int:
    """The median delta rounded to the coarsest power of ten within 0.1% of it (10 s ± jitter ->
    10 s, 15.0003 s -> 15 s), i.e. the sampling grid a scheduler aims at; 0 if the median < 2."""
    median = sampled_median_delta(values, 0)
    if median < 2:
        return 0
    for k in range(len(str(median)), -1, -1):
        step = 10**k
        rounded = (median + step // 2) // step * step
        if rounded >= 2 and abs(rounded - median) * 1000 <= median:
            return rounded
    return median


def encode_planes_zstd(words: np.ndarray, width: int) -> bytes:
    """zstd (level DELTA_ZSTD_LEVEL) frame of the `width` low byte planes of uint64 words.

    Each plane ends a zstd block, so every plane gets its own literal Huffman table: a block
    mixing a random low plane with a 4-bit high plane would code both at ~8 bits per byte.
    Still one ordinary frame (any zstd decoder reads it)."""
    planes = to_byte_planes(words, width)
    m = words.shape[0]
    if width == 1 or m == 0:
        return entropy_compressor().compress(planes.tobytes())
    stream = entropy_compressor().compressobj(size=width * m)
    out = []
    for b in range(width):
        out.append(stream.compress(planes[b * m:(b + 1) * m].tobytes()))
        out.append(stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK if b < width - 1 else zstandard.COMPRESSOBJ_FLUSH_FINISH))
    return b"".join(out)


def decode_planes_zstd(buf: bytes | memoryview, m: int, width: int, out: np.ndarray, out_off: int,
                       what: str) -> None:
    raw = zstd_decompress(buf, m * width, what)
    from_byte_planes(np.frombuffer(raw, dtype=np.uint8), m, width, out, out_off)


def delta_planes_encode(values: np.ndarray, scale_exp: int) -> bytes:
    """DELTA_PLANES_ZSTD_I64 (DELTA_ZSTD_I64 when one plane with offset 0 does), n >= 1.

    The offset is the median scaled delta: a regular step (timestamps, counters) becomes ~0.
    Rare huge deltas (series boundaries) only touch the high planes, which are almost all zero.
    """
    offset = sampled_median_delta(values, scale_exp) if values.shape[0] > 1 else 0
    zz, top = offset_zigzag_deltas(values, _POW10[scale_exp], np.int64(offset))
    width = byte_width(int(top))
    packed = encode_planes_zstd(zz, width)
    n = values.shape[0]
    if width == 1 and offset == 0:  # byte-identical payload to the older single-width codec
        return HEADER.pack(CodecId.DELTA_ZSTD_I64, scale_exp, 1, n) + FIRST.pack(int(values[0])) + packed
    return HEADER.pack(CodecId.DELTA_PLANES_ZSTD_I64, scale_exp, width, n) + \
        TWO.pack(int(values[0]), offset) + packed


def _delta_planes_decode(buf: bytes | memoryview, aux: int, width: int, n: int, what: str) -> np.ndarray:
    if not 1 <= width <= PLANES_MAX_WIDTH or aux > 18 or n == 0:
        raise CodecError(f"{what}: DELTA_PLANES_ZSTD_I64 header at offset 0 has width {width}, "
                         f"scale {aux}, count {n}")
    if len(buf) < HEADER.size + TWO.size:
        raise CodecError(f"{what}: DELTA_PLANES_ZSTD_I64 truncated at {len(buf)} bytes")
    first, offset = TWO.unpack_from(buf, HEADER.size)
    out = np.empty(n, dtype=np.uint64)
    decode_planes_zstd(memoryview(buf)[HEADER.size + TWO.size:], n - 1, width, out, 1,
                       f"{what}: DELTA_PLANES_ZSTD_I64")
    undo_offset_zigzag_deltas(out, np.uint64(first & 0xFFFFFFFFFFFFFFFF), _POW10[aux], np.int64(offset))
    return out.view(np.int64)


def period_split_encode(values: np.ndarray) -> bytes | None:
    """PERIOD_SPLIT_I64 with period = grid_period (None when that is < 2 or n < 3).

    For values on a regular grid plus jitter (timestamps of scheduled samples), r is the jitter
    itself (uniform in [0, J): log2 J bits) where a delta holds the difference of two jitters.
    """
    values = np.ascontiguousarray(values).view(np.int64)
    n = values.shape[0]
    if n < 3:
        return None
    period = grid_period(values)
    if period < 2:
        return None
    q, r, top = period_split(values, np.int64(period))
    inner = encode_int64_words(q, (MODE_DELTA, MODE_DOD))
    width = byte_width(int(top))
    return b"".join((HEADER.pack(CodecId.PERIOD_SPLIT_I64, 0, width, n),
                     PERIOD_HEADER.pack(period, len(inner), 0), inner, encode_planes_zstd(r, width)))


def _period_split_decode(buf: bytes | memoryview, width: int, n: int, what: str) -> np.ndarray:
    if len(buf) < HEADER.size + PERIOD_HEADER.size or not 1 <= width <= PLANES_MAX_WIDTH:
        raise CodecError(f"{what}: PERIOD_SPLIT_I64 header truncated or width {width} invalid")
    period, inner_len, _ = PERIOD_HEADER.unpack_from(buf, HEADER.size)
    start = HEADER.size + PERIOD_HEADER.size
    if period < 2 or start + inner_len > len(buf):
        raise CodecError(f"{what}: PERIOD_SPLIT_I64 period {period} / inner length {inner_len} "
                         f"invalid for a {len(buf)}-byte buffer")
    inner = memoryview(buf)[start:start + inner_len]
    if len(inner) and inner[0] == CodecId.PERIOD_SPLIT_I64:
        raise CodecError(f"{what}: PERIOD_SPLIT_I64 nested in itself at offset {start}")
    q = decode_int64_words(inner, what)
    if q.shape[0] != n:
        raise CodecError(f"{what}: PERIOD_SPLIT_I64 quotients hold {q.shape[0]} values, header says {n}")
    out = np.empty(n, dtype=np.uint64)
    decode_planes_zstd(memoryview(buf)[start + inner_len:], n, width, out, 0,
                       f"{what}: PERIOD_SPLIT_I64")
    period_join(q, out, np.int64(period))
    return out.view(np.int64)


# ---------------------------------------------------------------- encode / decode

def encode_int64_words(values: np.ndarray, modes: tuple[int, ...], zstd_stage: bool = True) -> bytes:
    """Encode int64 words (any 64-bit pattern) choosing the smallest codec among `modes`."""
    values = np.ascontiguousarray(values).view(np.int64)
    n = values.shape[0]
    if n > MAX_COUNT:
        raise CodecError(f"integer column of {n} values exceeds the {MAX_COUNT}-value limit")
    if n == 0:
        return HEADER.pack(CodecId.PLAIN_I64, 0, 0, 0)
    if is_const(values):
        return HEADER.pack(CodecId.CONST_I64, 0, 0, n) + FIRST.pack(int(values[0]))
    if is_delta_const(values):
        delta = (int(values[1]) - int(values[0]) + (1 << 63)) % (1 << 64) - (1 << 63)
        return HEADER.pack(CodecId.DELTA_CONST_I64, 0, 0, n) + TWO.pack(int(values[0]), delta)
    plain_size = HEADER.size + 8 * n
    scale_exp = common_pow10_exponent(values) if any(m != MODE_FOR for m in modes) else 0
    best_mode, best_size = -1, plain_size
    for mode in modes:
        seq = _transform(values, mode, scale_exp)
        size = HEADER.size + (0 if mode == MODE_FOR else 8) + for_packed_bytes(seq)
        if size < best_size:
            best_mode, best_size = mode, size
    if best_mode < 0:
        encoded = HEADER.pack(CodecId.PLAIN_I64, 0, 0, n) + values.astype("<i8").tobytes()
    else:
        seq = _transform(values, best_mode, scale_exp)
        bases, widths, words = for_pack(seq)
        aux = 0 if best_mode == MODE_FOR else scale_exp
        parts = [HEADER.pack(_ID_OF[best_mode], aux, 0, n)]
        if best_mode != MODE_FOR:
            parts.append(FIRST.pack(int(values[0])))
        parts.append(bases.tobytes())
        parts.append(widths.tobytes() + bytes(-len(widths) % 8))
        parts.append(words.tobytes())
        encoded = b"".join(parts)
    if zstd_stage:
        encoded = with_zstd_stage(encoded)
        if MODE_DELTA in modes and n > 1:
            entropy_coded = delta_planes_encode(values, scale_exp)
            if len(entropy_coded) < len(encoded):
                encoded = entropy_coded
    return encoded


def decode_int64_words(buf: bytes | memoryview, what: str = "integers") -> np.ndarray:
    """Decode any integer-family encoding into a fresh int64 array."""
    buf = unwrap_zstd_stage(buf)
    if len(buf) < HEADER.size:
        raise CodecError(f"{what}: buffer of {len(buf)} bytes is shorter than the header")
    codec, aux, width, n = HEADER.unpack_from(buf, 0)
    if codec == CodecId.CONST_I64:
        return np.full(n, FIRST.unpack_from(buf, HEADER.size)[0], dtype=np.int64)
    if codec == CodecId.DELTA_CONST_I64:
        first, delta = TWO.unpack_from(buf, HEADER.size)
        if n and delta and _INT64_MIN <= first + (n - 1) * delta <= _INT64_MAX:
            out = np.arange(first, first + n * delta, delta, dtype=np.int64)  # one pass, no wrap-around
            if out.shape[0] == n:
                return out
        out = np.empty(n, dtype=np.uint64)  # values wrap around 64 bits: modular arithmetic
        np.multiply(np.arange(n, dtype=np.uint64), np.uint64(delta & 0xFFFFFFFFFFFFFFFF), out=out)
        out += np.uint64(first & 0xFFFFFFFFFFFFFFFF)
        return out.view(np.int64)
    if codec == CodecId.DELTA_ZSTD_I64:
        return _delta_zstd_decode(buf, aux, width, n, what)
    if codec == CodecId.DELTA_PLANES_ZSTD_I64:
        return _delta_planes_decode(buf, aux, width, n, what)
    if codec == CodecId.PERIOD_SPLIT_I64:
        return _period_split_decode(buf, width, n, what)
    if codec == CodecId.PLAIN_I64:
        if len(buf) < HEADER.size + 8 * n:
            raise CodecError(f"{what}: PLAIN_I64 of {n} values truncated at {len(buf)} bytes")
        return np.frombuffer(buf, dtype="<i8", count=n, offset=HEADER.size).astype(np.int64)
    mode = _MODE_OF.get(codec)
    if mode is None:
        raise CodecError(f"{what}: codec byte {codec} at offset 0 is not an integer codec")
    arr = aligned_bytes(buf)
    first = np.uint64(0)
    off = HEADER.size
    if mode != MODE_FOR:
        first = np.uint64(FIRST.unpack_from(buf, off)[0] & 0xFFFFFFFFFFFFFFFF)
        off += 8
    if aux > 18:
        raise CodecError(f"{what}: decimal scale 10^{aux} at offset 1 is out of range")
    out = np.empty(n, dtype=np.uint64)
    if decode_for_family(arr, off, n, mode, first, aux, out) < 0:
        raise CodecError(f"{what}: {CodecId(codec).name} stream of {n} values truncated "
                         f"or corrupt ({len(buf)} bytes)")
    return out.view(np.int64)
