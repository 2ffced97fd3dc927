"""Numba kernels of the line-protocol parser: one scan of the body into flat per-line and
per-field arrays (InfluxDB 1.x models/points.go rules), engine checks, and column scatter."""

from __future__ import annotations

import numpy as np
from numba import njit

# ---- error codes (stored per line; 0 = parsed OK) -------------------------------------------
OK = 0
E_MISSING_MEASUREMENT = 1
E_MISSING_FIELDS = 2
E_MISSING_TAG_KEY = 3
E_MISSING_TAG_VALUE = 4
E_INVALID_TAG_FORMAT = 5
E_DUPLICATE_TAGS = 6
E_MAX_KEY_LENGTH = 7  # aux = size
E_MISSING_FIELD_KEY = 8
E_MISSING_FIELD_VALUE = 9
E_INVALID_NUMBER = 10
E_INVALID_FLOAT = 11
E_INT_RANGE = 12  # aux, aux2 = span of the digits
E_UINT_RANGE = 13  # aux, aux2 = span of the digits
E_INVALID_BOOLEAN = 14
E_UNBALANCED_QUOTES = 15
E_INVALID_FIELD_FORMAT = 16
E_MAX_KEY_LENGTH_FIELD = 17  # aux = size
E_BAD_TIMESTAMP = 18
E_TS_SYNTAX = 19  # aux, aux2 = span of the timestamp text
E_TS_RANGE = 20  # aux, aux2 = span (strconv out of range)
E_TIME_OUT_OF_RANGE = 21
E_INVALID_POINT = 22
E_TIME_TAG = 23
E_TIME_FIELD_ONLY = 24
E_STRING_TOO_LONG = 25  # aux = field index
E_TYPE_CONFLICT = 26  # aux = field index, aux2 = existing type
E_INVALID_VALUE = 27  # aux, aux2 = span of the field key as walkFields sees it

# Rank = the step of InfluxDB's parsePoint/engine that reports the error; an error found later
# by a slower path (duplicate tags, float overflow) replaces an error of a higher rank.
RANK = np.zeros(32, dtype=np.int8)
for _code in (1, 2, 3, 4, 5):
    RANK[_code] = 1
RANK[E_DUPLICATE_TAGS] = 2
RANK[E_MAX_KEY_LENGTH] = 3
for _code in (8, 9, 10, 11, 12, 13, 14, 15, 16):
    RANK[_code] = 4
RANK[E_MAX_KEY_LENGTH_FIELD] = 5
RANK[E_INVALID_VALUE] = 5
for _code in (18, 19, 20, 21, 22):
    RANK[_code] = 6
for _code in (23, 24, 25, 26):
    RANK[_code] = 7

# field type codes == storage.batch.FieldType
T_FLOAT = 1
T_INTEGER = 2
T_UNSIGNED = 3
T_STRING = 4
T_BOOLEAN = 5

FLAG_FLOAT_FALLBACK = 1  # float needs an exact slow-path parse (Python float())
FLAG_STRING_ESCAPED = 2  # string value contains backslashes

MAX_KEY_LENGTH = 65535
MAX_STRING_BYTES = 64 * 1024
MIN_TIME_NS = -9223372036854775806
MAX_TIME_NS = 9223372036854775806

_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)
_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True, nogil=True)
def _span_hash(buf: np.ndarray, s: int, e: int) -> np.uint64:
    """64-bit hash of buf[s:e]: four interleaved FNV-1a lanes (short dependency chains)."""
    prime = np.uint64(1099511628211)
    h0 = np.uint64(14695981039346656037)
    h1 = np.uint64(1469598103934665603)
    h2 = np.uint64(9650029242287828579)
    h3 = np.uint64(4294967311)
    q = s
    while q + 4 <= e:
        h0 = (h0 ^ np.uint64(buf[q])) * prime
        h1 = (h1 ^ np.uint64(buf[q + 1])) * prime
        h2 = (h2 ^ np.uint64(buf[q + 2])) * prime
        h3 = (h3 ^ np.uint64(buf[q + 3])) * prime
        q += 4
    while q < e:
        h0 = (h0 ^ np.uint64(buf[q])) * prime
        q += 1
    h = h0 ^ (h1 * np.uint64(31)) ^ (h2 * np.uint64(1031)) ^ (h3 * np.uint64(65599))
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    return h ^ np.uint64(e - s)


@njit(cache=True, nogil=True)
def _span_equal(buf: np.ndarray, s1: int, e1: int, s2: int, e2: int) -> bool:
    if e1 - s1 != e2 - s2:
        return False
    for k in range(e1 - s1):
        if buf[s1 + k] != buf[s2 + k]:
            return False
    return True


@njit(cache=True, nogil=True)
def _lookup(buf, s, e, h, slots, ent_hash, ent_start, ent_end):
    """(entry id or -1, slot) of the byte span buf[s:e] with hash h (exact byte comparison)."""
    mask = slots.shape[0] - 1
    pos = np.int64(h & np.uint64(mask))
    while True:
        idx = slots[pos]
        if idx < 0:
            return -1, pos
        if ent_hash[idx] == h and _span_equal(buf, ent_start[idx], ent_end[idx], s, e):
            return idx, pos
        pos = (pos + 1) & mask


@njit(cache=True, nogil=True)
def _intern(buf, s, e, slots, ent_hash, ent_start, ent_end, n_ent):
    """(id, entry count) of the span buf[s:e], appending it as entry n_ent when it is new."""
    h = _span_hash(buf, s, e)
    idx, pos = _lookup(buf, s, e, h, slots, ent_hash, ent_start, ent_end)
    if idx >= 0:
        return idx, n_ent
    ent_hash[n_ent] = h
    ent_start[n_ent] = s
    ent_end[n_ent] = e
    slots[pos] = n_ent
    return n_ent, n_ent + 1


@njit(cache=True, nogil=True)
def rehash(ent_hash, n_ent, cap):
    """A slot table of size cap (power of two) for the first n_ent entries."""
    slots = np.full(cap, -1, np.int32)
    mask = cap - 1
    for j in range(n_ent):
        p = np.int64(ent_hash[j] & np.uint64(mask))
        while slots[p] >= 0:
            p = (p + 1) & mask
        slots[p] = j
    return slots


@njit(cache=True, nogil=True)
def count_newlines_and_equals(buf):
    """Upper bounds for the per-line and per-field arrays, without holding the GIL."""
    newlines = 0
    equals = 0
    for i in range(buf.shape[0]):
        c = buf[i]
        newlines += c == 10
        equals += c == 61
    return newlines, equals


@njit(cache=True, nogil=True)
def _is_digit(c) -> bool:
    return c >= 48 and c <= 57


@njit(cache=True, nogil=True)
def _parse_float(buf, s, e):
    """Exact float for the common case; returns (value, status) with status 0 = done,
    1 = needs an exact slow-path parse, 2 = invalid float (syntax or overflow)."""
    j = s
    neg = False
    if j < e and buf[j] == 45:  # '-'
        neg = True
        j += 1
    mant = np.uint64(0)
    sig = 0
    dexp = 0
    any_digit = False
    trunc = False
    while j < e and _is_digit(buf[j]):
        any_digit = True
        d = buf[j] - 48
        if sig < 19:
            if mant != 0 or d != 0:
                mant = mant * np.uint64(10) + np.uint64(d)
                sig += 1
        else:
            trunc = True
            dexp += 1
        j += 1
    if j < e and buf[j] == 46:  # '.'
        j += 1
        while j < e and _is_digit(buf[j]):
            any_digit = True
            d = buf[j] - 48
            if sig < 19:
                if mant != 0 or d != 0:
                    mant = mant * np.uint64(10) + np.uint64(d)
                    sig += 1
                dexp -= 1
            else:
                trunc = True
            j += 1
    if not any_digit:
        return 0.0, 2
    exp = 0
    if j < e and (buf[j] == 101 or buf[j] == 69):  # e E
        j += 1
        eneg = False
        if j < e and (buf[j] == 43 or buf[j] == 45):
            eneg = buf[j] == 45
            j += 1
        if j >= e or not _is_digit(buf[j]):
            return 0.0, 2
        while j < e and _is_digit(buf[j]):
            if exp < 100000:
                exp = exp * 10 + (buf[j] - 48)
            j += 1
        if eneg:
            exp = -exp
    if j != e:
        return 0.0, 2
    if mant == 0:
        return (-0.0 if neg else 0.0), 0
    e10 = dexp + exp
    if not trunc and mant <= np.uint64(9007199254740992) and e10 >= -22 and e10 <= 22:
        v = float(mant)
        if e10 >= 0:
            v = v * _POW10[e10]
        else:
            v = v / _POW10[-e10]
        return (-v if neg else v), 0
    lead = sig - 1 + e10  # value is in [10**lead, 10**(lead+1))
    if lead >= 309:
        return 0.0, 2
    return 0.0, 1


@njit(cache=True, nogil=True)
def _parse_uint(buf, s, e):
    """Digits buf[s:e] as uint64; (value, overflowed)."""
    acc = np.uint64(0)
    if e - s <= 19:  # at most 19 digits cannot overflow uint64
        for k in range(s, e):
            acc = acc * np.uint64(10) + np.uint64(buf[k] - 48)
        return acc, False
    for k in range(s, e):
        d = np.uint64(buf[k] - 48)
        if acc > (_U64_MAX - d) // np.uint64(10):
            return np.uint64(0), True
        acc = acc * np.uint64(10) + d
    return acc, False


@njit(cache=True, nogil=True)
def _parse_int(buf, s, e):
    """-?digits as int64; (value, overflowed)."""
    neg = buf[s] == 45
    u, over = _parse_uint(buf, s + 1 if neg else s, e)
    if over:
        return 0, True
    if neg:
        if u > np.uint64(9223372036854775808):
            return 0, True
        if u == np.uint64(9223372036854775808):
            return -9223372036854775807 - 1, False
        return -np.int64(u), False
    if u > np.uint64(9223372036854775807):
        return 0, True
    return np.int64(u), False


@njit(cache=True, nogil=True)
def _is_ws(c) -> bool:
    return c == 32 or c == 9 or c == 0


@njit(cache=True, nogil=True)
def scan_body(buf, mult, default_time, ln_no, ln_start, ln_end, ln_status, ln_aux, ln_aux2,
              ln_key, ln_time, ln_fbeg, ln_fend, f_key, f_type, f_bits, f_fval, f_vstart,
              f_vlen, f_ulen, f_flags, k_slots, k_hash, k_start, k_end, fk_slots, fk_hash,
              fk_start, fk_end, state):
    """Scan the body from state = [pos, phys_line, n_lines, n_fields, n_keys, n_fkeys].
    Per line (block as InfluxDB's scanLine splits them; comments and blank lines skipped):
    status, error aux, series-key id, time, field range. Per field: field-key id, type, value
    (int bits / float), value span, unescaped string length, flags. Distinct raw series keys
    and field keys are interned in the given hash tables (exact byte comparison).
    Returns 0 when the body is done, else the number of table entries the next line may need
    (the caller grows the tables and calls again; state is updated in place)."""
    n = buf.shape[0]
    pos = state[0]
    phys = state[1]
    nl = state[2]
    nf = state[3]
    nk = state[4]
    nfk = state[5]
    k_cap = min(k_hash.shape[0], k_slots.shape[0] // 2)
    fk_cap = min(fk_hash.shape[0], fk_slots.shape[0] // 2)
    while pos < n:
        # --- scanLine: quote- and escape-aware split on '\n'
        start = pos
        i = pos
        quoted = False
        fields = False
        equals = 0
        commas = 0
        nl_inside = 0
        while i < n:
            c = buf[i]
            if c == 92:  # backslash skips the next byte
                if i + 1 < n and buf[i + 1] == 10:
                    nl_inside += 1
                i += 2
                continue
            if c == 32:
                fields = True
            if fields:
                if not quoted and c == 61:
                    i += 1
                    equals += 1
                    continue
                elif not quoted and c == 44:
                    i += 1
                    commas += 1
                    continue
                elif c == 34 and equals > commas:
                    i += 1
                    quoted = not quoted
                    continue
            if c == 10:
                if not quoted:
                    break
                nl_inside += 1
            i += 1
        end = i if i < n else n
        line_no = phys
        phys += nl_inside + 1
        pos = i + 1
        s = start
        while s < end and _is_ws(buf[s]):
            s += 1
        if s >= end or buf[s] == 35:  # blank or '#' comment
            continue
        e = end
        if buf[e - 1] == 10:
            e -= 1
        need = (e - s) // 2 + 1
        if nk + 1 > k_cap or nfk + need > fk_cap:
            state[0] = start
            state[1] = line_no
            state[2] = nl
            state[3] = nf
            state[4] = nk
            state[5] = nfk
            return need
        li = nl
        nl += 1
        ln_no[li] = line_no
        ln_start[li] = s
        ln_end[li] = e
        ln_aux[li] = 0
        ln_aux2[li] = 0
        ln_key[li] = -1
        ln_time[li] = default_time
        ln_fbeg[li] = nf
        ln_fend[li] = nf
        status = OK
        # --- scanMeasurement
        i = s
        tags = False
        if buf[i] == 44:
            ln_status[li] = E_MISSING_MEASUREMENT
            continue
        while True:
            i += 1
            if i >= e:
                status = E_MISSING_FIELDS
                break
            if buf[i - 1] == 92:
                continue
            if buf[i] == 44:
                tags = True
                i += 1
                break
            if buf[i] == 32:
                break
        if status != OK:
            ln_status[li] = status
            continue
        # --- scanTags
        while tags:
            if i >= e or buf[i] == 32 or buf[i] == 44 or buf[i] == 61:
                status = E_MISSING_TAG_KEY
                break
            while True:
                i += 1
                if i >= e or ((buf[i] == 32 or buf[i] == 44) and buf[i - 1] != 92):
                    status = E_MISSING_TAG_VALUE
                    break
                if buf[i] == 61 and buf[i - 1] != 92:
                    i += 1
                    break
            if status != OK:
                break
            if i >= e or buf[i] == 44 or buf[i] == 32:
                status = E_MISSING_TAG_VALUE
                break
            while True:
                i += 1
                if i >= e:
                    status = E_MISSING_FIELDS
                    break
                if buf[i] == 61 and buf[i - 1] != 92:
                    status = E_INVALID_TAG_FORMAT
                    break
                if buf[i] == 44 and buf[i - 1] != 92:
                    i += 1
                    break
                if buf[i] == 32 and buf[i - 1] != 92:
                    tags = False
                    break
            if status != OK:
                break
        if status != OK:
            ln_status[li] = status
            continue
        key_end = i
        kid, nk = _intern(buf, s, key_end, k_slots, k_hash, k_start, k_end, nk)
        ln_key[li] = kid
        key_len = key_end - s
        if key_len > MAX_KEY_LENGTH:
            ln_status[li] = E_MAX_KEY_LENGTH
            ln_aux[li] = key_len
            continue
        # --- scanFields (validation exactly as scanFields; records one entry per '=')
        i = key_end
        while i < e and _is_ws(buf[i]):
            i += 1
        quoted = False
        equals = 0
        commas = 0
        fkey_start = i
        fields_start = i
        str_start = 0
        esc_seen = False
        while i < e:
            c = buf[i]
            if c == 92 and i + 1 < e:
                esc_seen = True
                i += 2
                continue
            if c == 34 and equals > commas:
                quoted = not quoted
                i += 1
                if quoted:
                    str_start = i
                else:
                    # closing quote: record the string value
                    fi = nf - 1
                    f_vstart[fi] = str_start
                    f_vlen[fi] = i - 1 - str_start
                    ulen = 0
                    esc = False
                    k = str_start
                    while k < i - 1:
                        if buf[k] == 92:
                            esc = True
                            if k + 1 < i - 1 and (buf[k + 1] == 92 or buf[k + 1] == 34):
                                k += 2
                                ulen += 1
                                continue
                        k += 1
                        ulen += 1
                    f_ulen[fi] = ulen
                    f_flags[fi] = FLAG_STRING_ESCAPED if esc else 0
                    if i < e and buf[i] != 44 and buf[i] != 32:
                        status = E_INVALID_FIELD_FORMAT  # bytes after a closing quote
                        break
                continue
            if c == 61 and not quoted:
                equals += 1
                if buf[i - 1] == 32 and buf[i - 2] != 92:
                    status = E_MISSING_FIELD_KEY
                    break
                if buf[i - 1] == 44 and buf[i - 2] != 92:
                    status = E_MISSING_FIELD_KEY
                    break
                if i + 1 >= e:
                    status = E_MISSING_FIELD_VALUE
                    break
                nc = buf[i + 1]
                if nc == 44 or nc == 32:
                    status = E_MISSING_FIELD_VALUE
                    break
                fi = nf
                nf += 1
                fid, nfk = _intern(buf, fkey_start, i, fk_slots, fk_hash, fk_start, fk_end, nfk)
                f_key[fi] = fid
                f_flags[fi] = 0
                f_ulen[fi] = 0
                f_vstart[fi] = i + 1
                if _is_digit(nc) or nc == 46 or nc == 45 or nc == 78 or nc == 110:
                    # --- scanNumber
                    st = i + 1
                    j = st
                    is_int = False
                    is_uns = False
                    if buf[j] == 45:
                        j += 1
                        if j == e:
                            status = E_INVALID_NUMBER
                            break
                    decimal = False
                    scientific = False
                    while j < e:
                        c2 = buf[j]
                        if c2 == 44 or c2 == 32:
                            break
                        if c2 == 105 and j > st and not (is_int or is_uns):
                            is_int = True
                            j += 1
                            continue
                        if c2 == 117 and j > st and not (is_int or is_uns):
                            is_uns = True
                            j += 1
                            continue
                        if c2 == 46:
                            if decimal:
                                status = E_INVALID_NUMBER
                                break
                            decimal = True
                        if j > st and (c2 == 101 or c2 == 69):
                            scientific = True
                            j += 1
                            continue
                        if (c2 == 43 or c2 == 45) and (buf[j - 1] == 101 or buf[j - 1] == 69):
                            j += 1
                            continue
                        if not (_is_digit(c2) or c2 == 46):
                            status = E_INVALID_NUMBER
                            break
                        j += 1
                    if status != OK:
                        break
                    if (is_int or is_uns) and (decimal or scientific):
                        status = E_INVALID_NUMBER
                        break
                    digits = j - st
                    if is_int:
                        digits -= 1
                    if decimal:
                        digits -= 1
                    if buf[st] == 45:
                        digits -= 1
                    if digits == 0:
                        status = E_INVALID_NUMBER
                        break
                    f_vlen[fi] = j - st
                    if is_int:
                        if buf[j - 1] != 105:
                            status = E_INVALID_NUMBER
                            break
                        v, over = _parse_int(buf, st, j - 1)
                        if over:
                            status = E_INT_RANGE
                            ln_aux[li] = st
                            ln_aux2[li] = j - 1
                            break
                        f_type[fi] = T_INTEGER
                        f_bits[fi] = v
                    elif is_uns:
                        if buf[j - 1] != 117 or buf[st] == 45:
                            status = E_INVALID_NUMBER
                            break
                        u, over = _parse_uint(buf, st, j - 1)
                        if over:
                            status = E_UINT_RANGE
                            ln_aux[li] = st
                            ln_aux2[li] = j - 1
                            break
                        f_type[fi] = T_UNSIGNED
                        f_bits[fi] = np.int64(u)
                    else:
                        fv, fst = _parse_float(buf, st, j)
                        if fst == 2:
                            status = E_INVALID_FLOAT
                            break
                        f_type[fi] = T_FLOAT
                        f_fval[fi] = fv
                        if fst == 1:
                            f_flags[fi] = FLAG_FLOAT_FALLBACK
                    i = j
                    continue
                if nc != 34:
                    # --- scanBoolean
                    st = i + 1
                    if not (nc == 116 or nc == 102 or nc == 84 or nc == 70):
                        status = E_INVALID_BOOLEAN
                        break
                    j = st + 1
                    while j < e and buf[j] != 44 and buf[j] != 32:
                        j += 1
                    ln_b = j - st
                    ok = False
                    if ln_b == 1:
                        ok = True
                    elif nc == 116:
                        ok = (ln_b == 4 and buf[st + 1] == 114 and buf[st + 2] == 117
                              and buf[st + 3] == 101)
                    elif nc == 102:
                        ok = (ln_b == 5 and buf[st + 1] == 97 and buf[st + 2] == 108
                              and buf[st + 3] == 115 and buf[st + 4] == 101)
                    elif nc == 84:
                        ok = ln_b == 4 and (
                            (buf[st + 1] == 82 and buf[st + 2] == 85 and buf[st + 3] == 69)
                            or (buf[st + 1] == 114 and buf[st + 2] == 117 and buf[st + 3] == 101))
                    else:
                        ok = ln_b == 5 and (
                            (buf[st + 1] == 65 and buf[st + 2] == 76 and buf[st + 3] == 83
                             and buf[st + 4] == 69)
                            or (buf[st + 1] == 97 and buf[st + 2] == 108 and buf[st + 3] == 115
                                and buf[st + 4] == 101))
                    if not ok:
                        status = E_INVALID_BOOLEAN
                        break
                    f_type[fi] = T_BOOLEAN
                    f_bits[fi] = 1 if (nc == 116 or nc == 84) else 0
                    f_vlen[fi] = ln_b
                    i = j
                    continue
                f_type[fi] = T_STRING  # the opening quote is handled on the next byte
            if c == 44 and not quoted:
                commas += 1
                fkey_start = i + 1
            if c == 32 and not quoted:
                break
            i += 1
        if status == OK and quoted:
            status = E_UNBALANCED_QUOTES
        if status == OK and (equals == 0 or commas != equals - 1):
            status = E_INVALID_FIELD_FORMAT
        if status != OK:
            ln_status[li] = status
            nf = ln_fbeg[li]
            continue
        ln_fend[li] = nf
        if esc_seen:
            # walkFields: keys end at an '=' not preceded by a backslash; a key running to the
            # end of the fields is "invalid value" (a field key ending in an escaped backslash)
            fields_end = i
            p = fields_start
            while p < fields_end:
                q = p
                while q < fields_end and not (buf[q] == 61 and (q == p or buf[q - 1] != 92)):
                    q += 1
                if q > fields_end - 2:
                    status = E_INVALID_VALUE
                    ln_aux[li] = p
                    ln_aux2[li] = q
                    break
                size = key_len + 4 + (q - p)
                if size > MAX_KEY_LENGTH:
                    status = E_MAX_KEY_LENGTH_FIELD
                    ln_aux[li] = size
                    break
                p = q + 1
                in_quotes = False
                while p < fields_end:
                    c = buf[p]
                    if c == 92 and p + 1 < fields_end and (buf[p + 1] == 34 or buf[p + 1] == 92):
                        p += 2
                        continue
                    if c == 34:
                        in_quotes = not in_quotes
                    elif c == 44 and not in_quotes:
                        break
                    p += 1
                if p < fields_end:
                    p += 1
        else:
            for fi in range(ln_fbeg[li], nf):
                fid = f_key[fi]
                size = key_len + 4 + (fk_end[fid] - fk_start[fid])
                if size > MAX_KEY_LENGTH:
                    status = E_MAX_KEY_LENGTH_FIELD
                    ln_aux[li] = size
                    break
        if status != OK:
            ln_status[li] = status
            ln_fend[li] = ln_fbeg[li]
            nf = ln_fbeg[li]
            continue
        # --- scanTime
        while i < e and _is_ws(buf[i]):
            i += 1
        ts = i
        while i < e:
            c = buf[i]
            if c == 10 or c == 32:
                break
            if i == ts and c == 45:
                i += 1
                continue
            if not _is_digit(c):
                status = E_BAD_TIMESTAMP
                break
            i += 1
        if status == OK and i > ts:
            if i - ts == 1 and buf[ts] == 45:
                status = E_TS_SYNTAX
            else:
                t, over = _parse_int(buf, ts, i)
                if over:
                    status = E_TS_RANGE
                else:
                    lim = 9223372036854775807 // mult
                    if t > lim or t < -lim:
                        status = E_TIME_OUT_OF_RANGE
                    else:
                        t = t * mult
                        if t < MIN_TIME_NS or t > MAX_TIME_NS:
                            status = E_TIME_OUT_OF_RANGE
                        else:
                            ln_time[li] = t
            if status == E_TS_SYNTAX or status == E_TS_RANGE:
                ln_aux[li] = ts
                ln_aux2[li] = i
            if status == OK:
                while i < e:
                    if buf[i] != 32:
                        status = E_INVALID_POINT
                        break
                    i += 1
        ln_status[li] = status
        if status != OK:
            ln_fend[li] = ln_fbeg[li]
            nf = ln_fbeg[li]
    state[0] = n
    state[1] = phys
    state[2] = nl
    state[3] = nf
    state[4] = nk
    state[5] = nfk
    return 0


@njit(cache=True, nogil=True)
def _ht_get(keys, vals, key):
    mask = keys.shape[0] - 1
    pos = (key * -7046029254386353131) & mask
    while True:
        if vals[pos] < 0:
            return -1, pos
        if keys[pos] == key:
            return vals[pos], pos
        pos = (pos + 1) & mask


@njit(cache=True, nogil=True)
def assign_rows(ln_status, ln_aux, ln_aux2, ln_key, ln_fbeg, ln_fend, n_lines, f_key, f_type,
                f_ulen, key_err, key_meas, key_canon, fk_canon, fk_is_time, n_meas, n_canon,
                n_fk, ln_row, ln_sid, f_col, max_string):
    """Engine checks in body order (duplicate/`time` tags, only-`time` fields, string length,
    field type conflicts against earlier lines of the measurement) and row/series/column
    assignment. Returns (col_meas, col_fkey, col_type, n_cols, meas_count, meas_first_line,
    meas_nseries, canon_sid, points)."""
    meas_count = np.zeros(n_meas, np.int64)
    meas_first = np.full(n_meas, -1, np.int64)
    meas_nseries = np.zeros(n_meas, np.int32)
    canon_sid = np.full(n_canon, -1, np.int32)
    cap = 64
    col_meas = np.empty(cap, np.int32)
    col_fkey = np.empty(cap, np.int32)
    col_type = np.empty(cap, np.int8)
    col_last_line = np.empty(cap, np.int64)
    col_last_field = np.empty(cap, np.int64)
    n_cols = 0
    ht_keys = np.empty(256, np.int64)
    ht_vals = np.full(256, -1, np.int32)
    fk_last_meas = np.full(n_fk, -1, np.int32)
    fk_last_col = np.full(n_fk, -1, np.int32)
    fk_mark = np.full(n_fk, -1, np.int64)
    fk_mark_type = np.zeros(n_fk, np.int8)
    points = 0
    for li in range(n_lines):
        st = ln_status[li]
        k = ln_key[li]
        if k >= 0 and key_err[k] == E_DUPLICATE_TAGS and (st == OK or RANK[st] > 2):
            ln_status[li] = E_DUPLICATE_TAGS
            continue
        if st != OK:
            continue
        if key_err[k] == E_TIME_TAG:
            ln_status[li] = E_TIME_TAG
            continue
        m = key_meas[k]
        fb = ln_fbeg[li]
        fe = ln_fend[li]
        valid = False
        for fi in range(fb, fe):
            if not fk_is_time[fk_canon[f_key[fi]]]:
                valid = True
                break
        if not valid:
            ln_status[li] = E_TIME_FIELD_ONLY
            continue
        # pass 1: checks
        for fi in range(fb, fe):
            ft = f_type[fi]
            if ft == T_STRING and f_ulen[fi] > max_string:
                st = E_STRING_TOO_LONG
                ln_aux[li] = fi
                break
            fk = fk_canon[f_key[fi]]
            if fk_is_time[fk]:
                f_col[fi] = -1
                continue
            if fk_last_meas[fk] == m:
                col = fk_last_col[fk]
            else:
                col, _ = _ht_get(ht_keys, ht_vals, np.int64(m) * n_fk + fk)
                if col >= 0:
                    fk_last_meas[fk] = m
                    fk_last_col[fk] = col
            f_col[fi] = col
            if col >= 0 and col_type[col] != ft:
                st = E_TYPE_CONFLICT
                ln_aux[li] = fi
                ln_aux2[li] = col_type[col]
                break
            if fk_mark[fk] == li and fk_mark_type[fk] != ft:
                st = E_TYPE_CONFLICT
                ln_aux[li] = fi
                ln_aux2[li] = fk_mark_type[fk]
                break
            fk_mark[fk] = li
            fk_mark_type[fk] = ft
        if st != OK:
            ln_status[li] = st
            continue
        # pass 2: accept
        row = meas_count[m]
        meas_count[m] = row + 1
        if meas_first[m] < 0:
            meas_first[m] = li
        c = key_canon[k]
        if canon_sid[c] < 0:
            canon_sid[c] = meas_nseries[m]
            meas_nseries[m] += 1
        ln_row[li] = row
        ln_sid[li] = canon_sid[c]
        points += 1
        for fi in range(fb, fe):
            fk = fk_canon[f_key[fi]]
            if fk_is_time[fk]:
                continue
            col = f_col[fi]
            if col < 0:
                col, _ = _ht_get(ht_keys, ht_vals, np.int64(m) * n_fk + fk)
            if col < 0:
                if n_cols == col_meas.shape[0]:
                    ncap = n_cols * 2
                    a1 = np.empty(ncap, np.int32)
                    a1[:n_cols] = col_meas[:n_cols]
                    col_meas = a1
                    a2 = np.empty(ncap, np.int32)
                    a2[:n_cols] = col_fkey[:n_cols]
                    col_fkey = a2
                    a3 = np.empty(ncap, np.int8)
                    a3[:n_cols] = col_type[:n_cols]
                    col_type = a3
                    a4 = np.empty(ncap, np.int64)
                    a4[:n_cols] = col_last_line[:n_cols]
                    col_last_line = a4
                    a5 = np.empty(ncap, np.int64)
                    a5[:n_cols] = col_last_field[:n_cols]
                    col_last_field = a5
                col = n_cols
                n_cols += 1
                col_meas[col] = m
                col_fkey[col] = fk
                col_type[col] = f_type[fi]
                col_last_line[col] = -1
                if n_cols * 2 > ht_keys.shape[0]:
                    old_k = ht_keys
                    old_v = ht_vals
                    ht_keys = np.empty(old_k.shape[0] * 2, np.int64)
                    ht_vals = np.full(old_k.shape[0] * 2, -1, np.int32)
                    for p in range(old_k.shape[0]):
                        if old_v[p] >= 0:
                            _, slot = _ht_get(ht_keys, ht_vals, old_k[p])
                            ht_keys[slot] = old_k[p]
                            ht_vals[slot] = old_v[p]
                _, slot = _ht_get(ht_keys, ht_vals, np.int64(m) * n_fk + fk)
                ht_keys[slot] = np.int64(m) * n_fk + fk
                ht_vals[slot] = col
                fk_last_meas[fk] = m
                fk_last_col[fk] = col
            if col_last_line[col] == li:
                f_col[col_last_field[col]] = -1  # duplicate field key: the later value wins
            col_last_line[col] = li
            col_last_field[col] = fi
            f_col[fi] = col
    return (col_meas[:n_cols].copy(), col_fkey[:n_cols].copy(), col_type[:n_cols].copy(),
            n_cols, meas_count, meas_first, meas_nseries, canon_sid, points)


@njit(cache=True, nogil=True)
def scatter_rows(n_lines, ln_status, ln_key, ln_row, ln_sid, ln_time, ln_no, ln_fbeg, ln_fend,
                 key_meas, meas_offset, out_time, out_sid, out_line, f_col, f_type, f_bits,
                 col_off, slot_bits, slot_valid, slot_strlen, f_ulen):
    """Scatter accepted rows and field values into per-measurement / per-column flat arrays."""
    for li in range(n_lines):
        if ln_status[li] != OK:
            continue
        m = key_meas[ln_key[li]]
        row = ln_row[li]
        dst = meas_offset[m] + row
        out_time[dst] = ln_time[li]
        out_sid[dst] = ln_sid[li]
        out_line[dst] = ln_no[li]
        for fi in range(ln_fbeg[li], ln_fend[li]):
            col = f_col[fi]
            if col < 0:
                continue
            slot = col_off[col] + row
            slot_valid[slot] = 1
            if f_type[fi] == T_STRING:
                slot_strlen[slot] = f_ulen[fi]
            else:
                slot_bits[slot] = f_bits[fi]


@njit(cache=True, nogil=True)
def copy_strings(buf, n_lines, ln_status, ln_row, ln_fbeg, ln_fend, f_col, f_type, f_vstart,
                 f_vlen, f_flags, col_off, str_start, out):
    """Copy (unescaping \\" and \\\\) every accepted string value to its slot's offset."""
    for li in range(n_lines):
        if ln_status[li] != OK:
            continue
        row = ln_row[li]
        for fi in range(ln_fbeg[li], ln_fend[li]):
            col = f_col[fi]
            if col < 0 or f_type[fi] != T_STRING:
                continue
            dst = str_start[col_off[col] + row]
            s = f_vstart[fi]
            e = s + f_vlen[fi]
            if f_flags[fi] & FLAG_STRING_ESCAPED:
                k = s
                while k < e:
                    c = buf[k]
                    if c == 92 and k + 1 < e and (buf[k + 1] == 92 or buf[k + 1] == 34):
                        out[dst] = buf[k + 1]
                        k += 2
                    else:
                        out[dst] = c
                        k += 1
                    dst += 1
            else:
                for k in range(s, e):
                    out[dst] = buf[k]
                    dst += 1
