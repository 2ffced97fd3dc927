"""float64 columns: ALP (decimal-origin doubles), ALP_DELTA (ALP integers entropy-coded as deltas),
ALP_RD (real doubles), constant and plain (Afroozeh, Kuffó, Boncz, SIGMOD 2024); GORILLA decode.
"""

from __future__ import annotations

import math
import struct

import numpy as np
from numba import njit

from storage.codecs import CodecError, CodecId
from storage.codecs.bitpack import (
    BLOCK,
    bit_width,
    low_mask,
    pack_fixed,
    packed_words,
    unpack_fixed,
)
from storage.codecs.gorilla import decode_gorilla
from storage.codecs.integers import (
    MODE_DELTA,
    aligned_bytes,
    decode_int64_words,
    encode_int64_words,
)

HEADER = struct.Struct("<BBHI")  # codec id, aux, reserved, count
ALP_HEADER = struct.Struct("<BBHIII")  # id, 0, 0, count, packed words, exceptions
DELTA_HEADER = struct.Struct("<BBBBIII")  # id, e, f, 0, count, exceptions, inner length
RD_HEADER = struct.Struct("<BBBBIII")  # id, right bits, code bits, dict size, count, exceptions, 0
MAX_COUNT = 0xFFFFFFFF
_FIXED_HEADER_BYTES = 16  # ALP_HEADER.size == RD_HEADER.size (numba cannot read a Struct)

MAX_EXPONENT = 18
ROWGROUP_VECTORS = 100
SAMPLE_VECTORS = 8
SAMPLE_VALUES = 32
TOP_COMBINATIONS = 5
MAX_WORSE_TRIES = 2
ALP_EXCEPTION_BITS = 64 + 16  # raw double + 16-bit position in the vector
RD_MAX_LEFT_BITS = 16
RD_DICT_SIZE = 8
RD_EXCEPTION_BITS = 32 + 16  # 32-bit position in the column + 16-bit left part

_EXP10 = np.array([10.0**e for e in range(MAX_EXPONENT + 1)], dtype=np.float64)
_FRAC10 = np.array([float(f"1e-{e}") for e in range(MAX_EXPONENT + 1)], dtype=np.float64)
_MAGIC = 6755399441055744.0  # 2^52 + 2^51: (x + M) - M rounds x to an integer (exact IEEE only)
_ROUND_LIMIT = 2251799813685248.0  # 2^51: the magic-number rounding is exact below this
_TRUNC_LIMIT = 4611686018427387904.0  # 2^62: larger values are always exceptions


# ---------------------------------------------------------------- ALP scalar kernels

@njit(cache=True, nogil=True)
def alp_encode_value(v: float, e: int, f: int) -> tuple[int, bool]:
    """(n, exact): n = round(v * 10^e * 10^-f); exact if n * 10^f * 10^-e gives v back bit-exactly."""
    tmp = v * _EXP10[e] * _FRAC10[f]
    if abs(tmp) < _ROUND_LIMIT:
        n = np.int64((tmp + _MAGIC) - _MAGIC)
    elif abs(tmp) < _TRUNC_LIMIT:
        n = np.int64(tmp)
    else:  # too large, inf or NaN
        return 0, False
    dec = np.float64(n) * _EXP10[f] * _FRAC10[e]
    exact = dec == v and not (v == 0.0 and math.copysign(1.0, v) < 0.0)
    return n, exact


@njit(cache=True, nogil=True)
def _combo_bits(values: np.ndarray, lo: int, count: int, stride: int, e: int, f: int) -> int:
    """Estimated ALP bits for `count` values values[lo::stride] under (e, f)."""
    exceptions = 0
    mn = np.int64(0)
    mx = np.int64(0)
    seen = False
    for j in range(count):
        n, exact = alp_encode_value(values[lo + j * stride], e, f)
        if not exact:
            exceptions += 1
        elif not seen:
            mn = n
            mx = n
            seen = True
        else:
            mn = min(mn, n)
            mx = max(mx, n)
    width = bit_width(np.uint64(mx) - np.uint64(mn)) if seen else 0
    return exceptions * ALP_EXCEPTION_BITS + count * width


@njit(cache=True, nogil=True)
def _sample_span(n: int, lo: int, hi: int) -> tuple[int, int]:
    """(count, stride) of up to SAMPLE_VALUES equidistant samples of [lo, hi)."""
    length = hi - lo
    stride = max(1, length // SAMPLE_VALUES)
    return min(SAMPLE_VALUES, (length + stride - 1) // stride), stride


@njit(cache=True, nogil=True)
def _best_combo_of_vector(values: np.ndarray, lo: int, hi: int) -> tuple[int, int, int]:
    """Exhaustive (e, f) search on a 32-value sample of one vector: (e, f, bits)."""
    count, stride = _sample_span(values.shape[0], lo, hi)
    best_bits = 1 << 62
    best_e = 0
    best_f = 0
    for e in range(MAX_EXPONENT + 1):
        for f in range(e + 1):
            bits = _combo_bits(values, lo, count, stride, e, f)
            # ties go to the larger exponent, then the larger factor
            if bits < best_bits or (bits == best_bits and (e > best_e or (e == best_e and f > best_f))):
                best_bits = bits
                best_e = e
                best_f = f
    return best_e, best_f, best_bits


@njit(cache=True, nogil=True)
def _rowgroup_combos(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """First-level sampling: the (up to 5) (e, f) that won most sampled vectors, as rows [e, f]."""
    nvec = (hi - lo + BLOCK - 1) // BLOCK
    picks = min(SAMPLE_VECTORS, nvec)
    vstride = max(1, nvec // picks)
    counts = np.zeros((MAX_EXPONENT + 1, MAX_EXPONENT + 1), dtype=np.int64)
    for s in range(picks):
        v = s * vstride
        vlo = lo + v * BLOCK
        e, f, _ = _best_combo_of_vector(values, vlo, min(hi, vlo + BLOCK))
        counts[e, f] += 1
    out = np.zeros((TOP_COMBINATIONS, 2), dtype=np.int64)
    k = 0
    while k < TOP_COMBINATIONS:
        best = 0
        be = -1
        bf = -1
        for e in range(MAX_EXPONENT, -1, -1):
            for f in range(e, -1, -1):
                if counts[e, f] > best:
                    best = counts[e, f]
                    be = e
                    bf = f
        if be < 0:
            break
        out[k, 0] = be
        out[k, 1] = bf
        counts[be, bf] = 0
        k += 1
    return out[:k]


@njit(cache=True, nogil=True)
def alp_estimate_bits(values: np.ndarray) -> float:
    """Estimated ALP bits/value from SAMPLE_VECTORS x SAMPLE_VALUES samples of the column."""
    n = values.shape[0]
    if n == 0:
        return 64.0
    nvec = (n + BLOCK - 1) // BLOCK
    picks = min(SAMPLE_VECTORS, nvec)
    vstride = max(1, nvec // picks)
    total_bits = 0
    total_values = 0
    for s in range(picks):
        vlo = s * vstride * BLOCK
        vhi = min(n, vlo + BLOCK)
        count, _ = _sample_span(n, vlo, vhi)
        _, _, bits = _best_combo_of_vector(values, vlo, vhi)
        total_bits += bits
        total_values += count
    return total_bits / total_values + 112.0 / BLOCK  # + per-vector header


@njit(cache=True, nogil=True)
def alp_encode_kernel(values: np.ndarray, bits: np.ndarray) -> tuple:
    """Encode a whole column with ALP: per-vector (e, f), exceptions and FOR bit-packing."""
    n = values.shape[0]
    nv = (n + BLOCK - 1) // BLOCK
    bases = np.zeros(nv, dtype=np.int64)
    exps = np.zeros(nv, dtype=np.uint8)
    facs = np.zeros(nv, dtype=np.uint8)
    widths = np.zeros(nv, dtype=np.uint8)
    exc_counts = np.zeros(nv, dtype=np.uint16)
    words = np.zeros(nv * BLOCK, dtype=np.uint64)
    exc_pos = np.empty(n, dtype=np.uint16)
    exc_val = np.empty(n, dtype=np.uint64)
    encoded = np.empty(BLOCK, dtype=np.int64)
    is_exc = np.empty(BLOCK, dtype=np.bool_)
    n_words = 0
    n_exc = 0
    for rg_lo in range(0, n, ROWGROUP_VECTORS * BLOCK):
        rg_hi = min(n, rg_lo + ROWGROUP_VECTORS * BLOCK)
        combos = _rowgroup_combos(values, rg_lo, rg_hi)
        for vlo in range(rg_lo, rg_hi, BLOCK):
            vhi = min(rg_hi, vlo + BLOCK)
            v = vlo // BLOCK
            e = combos[0, 0]
            f = combos[0, 1]
            if combos.shape[0] > 1:  # second level: early-exit search over the top combos
                count, stride = _sample_span(n, vlo, vhi)
                best_bits = 1 << 62
                worse = 0
                for c in range(combos.shape[0]):
                    b = _combo_bits(values, vlo, count, stride, combos[c, 0], combos[c, 1])
                    if b < best_bits:
                        best_bits = b
                        e = combos[c, 0]
                        f = combos[c, 1]
                        worse = 0
                    else:
                        worse += 1
                        if worse >= MAX_WORSE_TRIES:
                            break
            cnt = vhi - vlo
            filler = np.int64(0)
            have_filler = False
            mn = np.int64(0)
            mx = np.int64(0)
            vec_exc = 0
            for j in range(cnt):
                nval, exact = alp_encode_value(values[vlo + j], e, f)
                is_exc[j] = not exact
                encoded[j] = nval
                if exact:
                    if not have_filler:
                        filler = nval
                        mn = nval
                        mx = nval
                        have_filler = True
                    else:
                        mn = min(mn, nval)
                        mx = max(mx, nval)
                else:
                    exc_pos[n_exc + vec_exc] = j
                    exc_val[n_exc + vec_exc] = bits[vlo + j]
                    vec_exc += 1
            for j in range(cnt):
                if is_exc[j]:
                    encoded[j] = filler
            width = bit_width(np.uint64(mx) - np.uint64(mn))
            bases[v] = mn
            exps[v] = e
            facs[v] = f
            widths[v] = width
            exc_counts[v] = vec_exc
            pack_fixed(encoded, 0, cnt, np.uint64(mn), width, words, n_words)
            n_words += packed_words(cnt, width)
            n_exc += vec_exc
    return (bases, exps, facs, widths, exc_counts, words[:n_words], exc_pos[:n_exc],
            exc_val[:n_exc])


@njit(cache=True, nogil=True)
def alp_decode_kernel(buf: np.ndarray, n: int, n_words: int, n_exc: int, out: np.ndarray) -> int:
    """Decode an ALP buffer (8-aligned uint8) into out (float64); -1 if it is too short."""
    nv = (n + BLOCK - 1) // BLOCK
    off = _FIXED_HEADER_BYTES
    need = off + 8 * nv + 8 * n_words + 8 * n_exc + 2 * nv + 2 * n_exc + 3 * nv
    if need > buf.shape[0]:
        return -1
    bases = buf[off:off + 8 * nv].view(np.int64)
    off += 8 * nv
    words = buf[off:off + 8 * n_words].view(np.uint64)
    off += 8 * n_words
    exc_val = buf[off:off + 8 * n_exc].view(np.uint64)
    off += 8 * n_exc
    exc_counts = buf[off:off + 2 * nv].view(np.uint16)
    off += 2 * nv
    exc_pos = buf[off:off + 2 * n_exc].view(np.uint16)
    off += 2 * n_exc
    exps = buf[off:off + nv]
    facs = buf[off + nv:off + 2 * nv]
    widths = buf[off + 2 * nv:off + 3 * nv]
    out_bits = out.view(np.uint64)
    ints = np.empty(BLOCK, dtype=np.int64)
    woff = 0
    eoff = 0
    for v in range(nv):
        lo = v * BLOCK
        cnt = min(n, lo + BLOCK) - lo
        width = int(widths[v])
        if width > 64 or exps[v] > MAX_EXPONENT or facs[v] > exps[v]:
            return -1
        if woff + packed_words(cnt, width) > n_words or eoff + exc_counts[v] > n_exc:
            return -1
        unpack_fixed(words, woff, width, np.uint64(bases[v]), cnt, ints, 0)
        woff += packed_words(cnt, width)
        mul_f = _EXP10[facs[v]]
        mul_e = _FRAC10[exps[v]]
        for j in range(cnt):
            out[lo + j] = np.float64(ints[j]) * mul_f * mul_e
        for x in range(eoff, eoff + exc_counts[v]):
            p = int(exc_pos[x])
            if p >= cnt:
                return -1
            out_bits[lo + p] = exc_val[x]
        eoff += exc_counts[v]
    return need


# ---------------------------------------------------------------- ALP_DELTA kernels

@njit(cache=True, nogil=True)
def alp_delta_encode_kernel(values: np.ndarray, bits: np.ndarray, e: int, f: int) -> tuple:
    """ALP integers of a whole column under one (e, f); an exception's slot repeats the previous
    integer (the first exact one before any) so the deltas stay small. (ints, positions, bits)."""
    n = values.shape[0]
    ints = np.empty(n, dtype=np.int64)
    exc_pos = np.empty(n, dtype=np.uint32)
    exc_bits = np.empty(n, dtype=np.uint64)
    prev = np.int64(0)
    for i in range(n):
        nval, exact = alp_encode_value(values[i], e, f)
        if exact:
            prev = nval
            break
    x = 0
    for i in range(n):
        nval, exact = alp_encode_value(values[i], e, f)
        if exact:
            prev = nval
        else:
            exc_pos[x] = i
            exc_bits[x] = bits[i]
            x += 1
        ints[i] = prev
    return ints, exc_pos[:x], exc_bits[:x]


@njit(cache=True, nogil=True)
def fewest_exceptions_combo(values: np.ndarray, combos: np.ndarray) -> int:
    """Row of `combos` with the fewest exceptions on <= 4,096 evenly strided values (ties: the
    earlier, i.e. more frequent, row). One (e, f) must fit every series of an ALP_DELTA chunk."""
    n = values.shape[0]
    stride = max(1, n // 4096)
    best = 0
    best_exc = n + 1
    for c in range(combos.shape[0]):
        exc = 0
        for i in range(0, n, stride):
            _, exact = alp_encode_value(values[i], combos[c, 0], combos[c, 1])
            if not exact:
                exc += 1
        if exc < best_exc:
            best_exc = exc
            best = c
    return best


@njit(cache=True, nogil=True)
def alp_delta_decode_kernel(ints: np.ndarray, e: int, f: int, exc_pos: np.ndarray,
                            exc_bits: np.ndarray, out: np.ndarray) -> int:
    """out[i] = f64(ints[i]) * 10^f * 10^-e, then exceptions' raw bits; -1 on a bad position."""
    n = ints.shape[0]
    mul_f = _EXP10[f]
    mul_e = _FRAC10[e]
    for i in range(n):
        out[i] = np.float64(ints[i]) * mul_f * mul_e
    out_bits = out.view(np.uint64)
    for x in range(exc_pos.shape[0]):
        p = exc_pos[x]
        if p >= n:
            return -1
        out_bits[p] = exc_bits[x]
    return 0


# ---------------------------------------------------------------- ALP_RD kernels

@njit(cache=True, nogil=True)
def _rd_dictionary(lefts: np.ndarray, left_bits: int) -> tuple[np.ndarray, int]:
    """Top RD_DICT_SIZE left parts by frequency, and how many values they do not cover."""
    counts = np.zeros(1 << left_bits, dtype=np.int64)
    for i in range(lefts.shape[0]):
        counts[lefts[i]] += 1
    dictionary = np.zeros(RD_DICT_SIZE, dtype=np.uint16)
    size = 0
    covered = 0
    while size < RD_DICT_SIZE:
        best = -1
        best_count = 0
        for x in range(counts.shape[0]):
            if counts[x] > best_count:
                best_count = counts[x]
                best = x
        if best < 0:
            break
        dictionary[size] = best
        covered += best_count
        counts[best] = 0
        size += 1
    return dictionary[:size], lefts.shape[0] - covered


@njit(cache=True, nogil=True)
def rd_choose(bits: np.ndarray) -> tuple[int, float]:
    """On a sample of raw bits, the right-part width (48..63) minimising estimated bits/value."""
    m = bits.shape[0]
    best_right = 63
    best_est = 1e300
    if m == 0:
        return best_right, 64.0
    lefts = np.empty(m, dtype=np.int64)
    for left_bits in range(1, RD_MAX_LEFT_BITS + 1):
        right = 64 - left_bits
        for i in range(m):
            lefts[i] = np.int64(bits[i] >> np.uint64(right))
        dictionary, misses = _rd_dictionary(lefts, left_bits)
        code_bits = bit_width(np.uint64(dictionary.shape[0] - 1)) if dictionary.shape[0] > 1 else 0
        est = right + code_bits + misses * RD_EXCEPTION_BITS / m
        if est < best_est:
            best_est = est
            best_right = right
    return best_right, best_est


@njit(cache=True, nogil=True)
def rd_encode_kernel(bits: np.ndarray, right: int) -> tuple:
    n = bits.shape[0]
    left_bits = 64 - right
    lefts = np.empty(n, dtype=np.int64)
    rights = np.empty(n, dtype=np.uint64)
    rmask = low_mask(right)
    for i in range(n):
        lefts[i] = np.int64(bits[i] >> np.uint64(right))
        rights[i] = bits[i] & rmask
    dictionary, misses = _rd_dictionary(lefts, left_bits)
    code_bits = bit_width(np.uint64(dictionary.shape[0] - 1)) if dictionary.shape[0] > 1 else 0
    lookup = np.full(1 << left_bits, -1, dtype=np.int64)
    for k in range(dictionary.shape[0]):
        lookup[dictionary[k]] = k
    codes = np.empty(n, dtype=np.int64)
    exc_pos = np.empty(misses, dtype=np.uint32)
    exc_left = np.empty(misses, dtype=np.uint16)
    x = 0
    for i in range(n):
        c = lookup[lefts[i]]
        if c < 0:
            exc_pos[x] = i
            exc_left[x] = lefts[i]
            x += 1
            c = 0
        codes[i] = c
    right_words = np.zeros(packed_words(n, right), dtype=np.uint64)
    pack_fixed(rights, 0, n, np.uint64(0), right, right_words, 0)
    code_words = np.zeros(packed_words(n, code_bits), dtype=np.uint64)
    pack_fixed(codes, 0, n, np.uint64(0), code_bits, code_words, 0)
    return dictionary, code_bits, right_words, code_words, exc_pos, exc_left


@njit(cache=True, nogil=True)
def rd_decode_kernel(buf: np.ndarray, n: int, right: int, code_bits: int, dict_size: int,
                     n_exc: int, out_bits: np.ndarray) -> int:
    off = _FIXED_HEADER_BYTES
    rw = packed_words(n, right)
    cw = packed_words(n, code_bits)
    need = off + 16 + 8 * rw + 8 * cw + 4 * n_exc + 2 * n_exc
    if need > buf.shape[0] or right < 48 or right > 63 or code_bits > 3 or dict_size > 8:
        return -1
    dictionary = buf[off:off + 16].view(np.uint16)
    off += 16
    right_words = buf[off:off + 8 * rw].view(np.uint64)
    off += 8 * rw
    code_words = buf[off:off + 8 * cw].view(np.uint64)
    off += 8 * cw
    exc_pos = buf[off:off + 4 * n_exc].view(np.uint32)
    off += 4 * n_exc
    exc_left = buf[off:off + 2 * n_exc].view(np.uint16)
    unpack_fixed(right_words, 0, right, np.uint64(0), n, out_bits, 0)
    codes = np.empty(BLOCK, dtype=np.uint64)
    shift = np.uint64(right)
    for lo in range(0, n, BLOCK):
        cnt = min(n, lo + BLOCK) - lo
        unpack_fixed(code_words, (lo * code_bits) >> 6, code_bits, np.uint64(0), cnt, codes, 0)
        for j in range(cnt):
            c = codes[j]
            if c >= dict_size:
                return -1
            out_bits[lo + j] |= np.uint64(dictionary[c]) << shift
    rmask = low_mask(right)
    for x in range(n_exc):
        p = exc_pos[x]
        if p >= n:
            return -1
        out_bits[p] = (np.uint64(exc_left[x]) << shift) | (out_bits[p] & rmask)
    return need


# ---------------------------------------------------------------- public API

def _plain(values: np.ndarray) -> bytes:
    return HEADER.pack(CodecId.PLAIN_F64, 0, 0, len(values)) + values.astype("<f8").tobytes()


def _rd_sample(bits: np.ndarray) -> np.ndarray:
    """Up to SAMPLE_VECTORS x SAMPLE_VALUES raw-bit samples spread over the column."""
    n = bits.shape[0]
    want = SAMPLE_VECTORS * SAMPLE_VALUES
    if n <= want:
        return bits
    return bits[np.linspace(0, n - 1, want).astype(np.int64)]


def encode_alp(values: np.ndarray) -> bytes:
    bits = values.view(np.uint64)
    bases, exps, facs, widths, exc_counts, words, exc_pos, exc_val = alp_encode_kernel(values, bits)
    return b"".join((
        ALP_HEADER.pack(CodecId.ALP, 0, 0, len(values), len(words), len(exc_pos)),
        bases.tobytes(), words.tobytes(), exc_val.tobytes(), exc_counts.tobytes(),
        exc_pos.tobytes(), exps.tobytes(), facs.tobytes(), widths.tobytes(),
    ))


def encode_alp_rd(values: np.ndarray, right: int | None = None) -> bytes:
    bits = values.view(np.uint64)
    if right is None:
        right, _ = rd_choose(_rd_sample(bits))
    dictionary, code_bits, right_words, code_words, exc_pos, exc_left = rd_encode_kernel(bits, right)
    padded_dict = np.zeros(RD_DICT_SIZE, dtype=np.uint16)
    padded_dict[: len(dictionary)] = dictionary
    return b"".join((
        RD_HEADER.pack(CodecId.ALP_RD, right, code_bits, len(dictionary), len(values),
                       len(exc_pos), 0),
        padded_dict.tobytes(), right_words.tobytes(), code_words.tobytes(),
        exc_pos.tobytes(), exc_left.tobytes(),
    ))


def encode_alp_delta(values: np.ndarray, e: int | None = None, f: int | None = None) -> bytes:
    """ALP_DELTA: one (e, f) for the chunk (of ALP's sampled per-vector winners, the one with the
    fewest exceptions, when not given),
    the integers as an inner integer encoding (delta byte planes + zstd when that is smallest)."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    if e is None or f is None:
        combos = _rowgroup_combos(values, 0, len(values)) if len(values) else np.zeros((1, 2), np.int64)
        pick = fewest_exceptions_combo(values, combos) if len(combos) else 0
        e, f = (int(combos[pick, 0]), int(combos[pick, 1])) if len(combos) else (0, 0)
    if not 0 <= f <= e <= MAX_EXPONENT:
        raise CodecError(f"ALP_DELTA: exponent {e} / factor {f} out of range")
    ints, exc_pos, exc_bits = alp_delta_encode_kernel(values, values.view(np.uint64), e, f)
    inner = encode_int64_words(ints, (MODE_DELTA,))
    return b"".join((DELTA_HEADER.pack(CodecId.ALP_DELTA, e, f, 0, len(values), len(exc_pos), len(inner)),
                     exc_bits.tobytes(), exc_pos.tobytes(), inner))


def _decode_alp_delta(buf: bytes | memoryview) -> np.ndarray:
    if len(buf) < DELTA_HEADER.size:
        raise CodecError(f"floats: ALP_DELTA header truncated at {len(buf)} bytes")
    _, e, f, _, n, n_exc, inner_len = DELTA_HEADER.unpack_from(buf, 0)
    start = DELTA_HEADER.size + 12 * n_exc
    if start + inner_len > len(buf) or not 0 <= f <= e <= MAX_EXPONENT or n_exc > n:
        raise CodecError(f"floats: ALP_DELTA of {n} values ({n_exc} exceptions, e={e}, f={f}, inner "
                         f"{inner_len} bytes) truncated or corrupt ({len(buf)} bytes)")
    exc_bits = np.frombuffer(buf, dtype="<u8", count=n_exc, offset=DELTA_HEADER.size)
    exc_pos = np.frombuffer(buf, dtype="<u4", count=n_exc, offset=DELTA_HEADER.size + 8 * n_exc)
    ints = decode_int64_words(memoryview(buf)[start:start + inner_len], "floats: ALP_DELTA integers")
    if ints.shape[0] != n:
        raise CodecError(f"floats: ALP_DELTA inner encoding at offset {start} holds {ints.shape[0]} "
                         f"values, header says {n}")
    out = np.empty(n, dtype=np.float64)
    if alp_delta_decode_kernel(ints, e, f, exc_pos, exc_bits, out) < 0:
        raise CodecError(f"floats: ALP_DELTA exception position out of range ({n} values)")
    return out


def encode_floats(values: np.ndarray) -> bytes:
    """float64 column -> bytes: CONST_F64, the smaller of ALP / ALP_DELTA, ALP_RD or PLAIN_F64."""
    values = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    n = len(values)
    if n > MAX_COUNT:
        raise CodecError(f"float column of {n} values exceeds the {MAX_COUNT}-value limit")
    if n == 0:
        return _plain(values)
    bits = values.view(np.uint64)
    if (bits == bits[0]).all():
        return HEADER.pack(CodecId.CONST_F64, 0, 0, n) + bits[:1].astype("<u8").tobytes()
    alp_est = alp_estimate_bits(values)
    right, rd_est = rd_choose(_rd_sample(bits))
    if min(alp_est, rd_est) >= 64.0:
        return _plain(values)
    if alp_est <= rd_est:
        encoded = encode_alp(values)
        delta_coded = encode_alp_delta(values)
        if len(delta_coded) < len(encoded):
            encoded = delta_coded
    else:
        encoded = encode_alp_rd(values, right)
    plain_size = HEADER.size + 8 * n
    return encoded if len(encoded) < plain_size else _plain(values)


def decode_floats(buf: bytes | memoryview) -> np.ndarray:
    """bytes (ALP, ALP_DELTA, ALP_RD, GORILLA, CONST_F64 or PLAIN_F64) -> float64, bit-exact."""
    if len(buf) < HEADER.size:
        raise CodecError(f"floats: buffer of {len(buf)} bytes is shorter than the header")
    codec, _, _, n = HEADER.unpack_from(buf, 0)
    if codec == CodecId.PLAIN_F64:
        if len(buf) < HEADER.size + 8 * n:
            raise CodecError(f"floats: PLAIN_F64 of {n} values truncated at {len(buf)} bytes")
        return np.frombuffer(buf, dtype="<f8", count=n, offset=HEADER.size).astype(np.float64)
    if codec == CodecId.CONST_F64:
        word = np.frombuffer(buf, dtype="<u8", count=1, offset=HEADER.size)
        return np.full(n, word[0], dtype=np.uint64).view(np.float64)
    if codec == CodecId.GORILLA:
        return decode_gorilla(buf)
    if codec == CodecId.ALP_DELTA:
        return _decode_alp_delta(buf)
    out = np.empty(n, dtype=np.float64)
    arr = aligned_bytes(buf)
    if codec == CodecId.ALP:
        _, _, _, n, n_words, n_exc = ALP_HEADER.unpack_from(buf, 0)
        status = alp_decode_kernel(arr, n, n_words, n_exc, out)
    elif codec == CodecId.ALP_RD:
        _, right, code_bits, dict_size, n, n_exc, _ = RD_HEADER.unpack_from(buf, 0)
        out_bits = out.view(np.uint64)
        status = rd_decode_kernel(arr, n, right, code_bits, dict_size, n_exc, out_bits)
    else:
        raise CodecError(f"floats: codec byte {codec} at offset 0 is not a float codec")
    if status < 0:
        raise CodecError(f"floats: {CodecId(codec).name} buffer of {n} values truncated or "
                         f"corrupt ({len(buf)} bytes)")
    return out
