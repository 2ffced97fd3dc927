"""InfluxDB line-protocol parser: public API (parse_lines, LineError, ParseResult) and the
assembly of the numba scan's flat arrays into one storage.batch.Batch per measurement."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ingest import lineproto_scan as scan
from storage.batch import Batch, FieldType, TagSet

PRECISIONS: dict[str, int] = {
    "n": 1,
    "ns": 1,
    "u": 1_000,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}

MAX_STRING_FIELD_BYTES = scan.MAX_STRING_BYTES
"""Longest accepted string field value (bytes after unescaping); longer lines are errors."""

_FIXED_REASONS = {
    scan.E_MISSING_MEASUREMENT: "missing measurement",
    scan.E_MISSING_FIELDS: "missing fields",
    scan.E_MISSING_TAG_KEY: "missing tag key",
    scan.E_MISSING_TAG_VALUE: "missing tag value",
    scan.E_INVALID_TAG_FORMAT: "invalid tag format",
    scan.E_DUPLICATE_TAGS: "duplicate tags",
    scan.E_MISSING_FIELD_KEY: "missing field key",
    scan.E_MISSING_FIELD_VALUE: "missing field value",
    scan.E_INVALID_NUMBER: "invalid number",
    scan.E_INVALID_FLOAT: "invalid float",
    scan.E_INVALID_BOOLEAN: "invalid boolean",
    scan.E_UNBALANCED_QUOTES: "unbalanced quotes",
    scan.E_INVALID_FIELD_FORMAT: "invalid field format",
    scan.E_BAD_TIMESTAMP: "bad timestamp",
    scan.E_TIME_OUT_OF_RANGE: (
        f"time outside range {scan.MIN_TIME_NS} - {scan.MAX_TIME_NS}"
    ),
    scan.E_INVALID_POINT: "point is invalid",
}
_ENGINE_ERRORS = (scan.E_TIME_TAG, scan.E_TIME_FIELD_ONLY, scan.E_STRING_TOO_LONG,
                  scan.E_TYPE_CONFLICT)

_SPLIT_COMMA = re.compile(rb"(?<!\\),")
_SPLIT_EQUALS = re.compile(rb"(?<!\\)=")
_MEASUREMENT_ESCAPES = re.compile(rb'\\([," =])')  # models.Point.Name(): pkg/escape codes
_TAG_ESCAPES = re.compile(rb"\\([, =])")
_FIELD_KEY_ESCAPES = re.compile(rb'\\([," =])')


@dataclass(frozen=True)
class LineError:
    """One rejected line. `dropped` marks lines that parse but that InfluxDB's storage engine
    rejects (`time` tag or only-`time` fields, string too long, field type conflict): those
    count in InfluxDB's `dropped=N` and their message has no "unable to parse" prefix."""

    line: int
    text: str
    reason: str
    dropped: bool = False

    def message(self) -> str:
        if self.dropped:
            return self.reason
        return f"unable to parse '{self.text}': {self.reason}"


@dataclass
class ParseResult:
    batches: dict[str, Batch]
    errors: list[LineError]
    points: int


class _InternTables:
    """Hash tables (slots, hash, start, end) the scan interns series keys and field keys in."""

    def __init__(self) -> None:
        self.keys = self._empty(256)
        self.fkeys = self._empty(256)

    @staticmethod
    def _empty(cap: int) -> tuple[np.ndarray, ...]:
        return (np.full(2 * cap, -1, np.int32), np.empty(cap, np.uint64),
                np.empty(cap, np.int64), np.empty(cap, np.int64))

    @staticmethod
    def _grown(table: tuple[np.ndarray, ...], used: int, need: int) -> tuple[np.ndarray, ...]:
        cap = table[1].shape[0]
        if need <= cap:
            return table
        while cap < need:
            cap *= 2
        hashes, starts, ends = (np.empty(cap, a.dtype) for a in table[1:])
        hashes[:used], starts[:used], ends[:used] = table[1][:used], table[2][:used], table[3][:used]
        return scan.rehash(hashes, used, 2 * cap), hashes, starts, ends

    def grow(self, used_keys: int, used_fkeys: int, need_fkeys: int) -> None:
        self.keys = self._grown(self.keys, used_keys, used_keys + 1)
        self.fkeys = self._grown(self.fkeys, used_fkeys, used_fkeys + need_fkeys)


def _unescape(raw: bytes, pattern: re.Pattern[bytes]) -> bytes:
    if b"\\" not in raw:
        return raw
    return pattern.sub(rb"\1", raw)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


@dataclass
class _Keys:
    """Per distinct raw series key / field key: what Python decoded (never per point)."""

    key_err: np.ndarray
    key_meas: np.ndarray
    key_canon: np.ndarray
    meas_names: list[str]
    canon_meas: list[int]
    canon_tags: list[TagSet]
    fk_canon: np.ndarray
    fk_names: list[str]
    fk_is_time: np.ndarray


def _decode_keys(body: bytes, ks: np.ndarray, ke: np.ndarray, fks: np.ndarray,
                 fke: np.ndarray) -> _Keys:
    nk = len(ks)
    key_err = np.zeros(nk, np.int8)
    key_meas = np.zeros(nk, np.int32)
    key_canon = np.zeros(nk, np.int32)
    meas_index: dict[str, int] = {}
    canon_index: dict[tuple[int, TagSet], int] = {}
    canon_meas: list[int] = []
    canon_tags: list[TagSet] = []
    for k in range(nk):
        parts = _SPLIT_COMMA.split(body[int(ks[k]):int(ke[k])])
        name = _text(_unescape(parts[0], _MEASUREMENT_ESCAPES))
        m = meas_index.setdefault(name, len(meas_index))
        key_meas[k] = m
        raw_keys: set[bytes] = set()
        pairs: list[tuple[str, str]] = []
        time_tag = False
        for part in parts[1:]:
            raw_key, raw_value = _SPLIT_EQUALS.split(part, maxsplit=1)
            raw_keys.add(raw_key)
            tag_key = _unescape(raw_key, _TAG_ESCAPES)
            time_tag = time_tag or tag_key == b"time"
            pairs.append((_text(tag_key), _text(_unescape(raw_value, _TAG_ESCAPES))))
        if len(raw_keys) != len(pairs):
            key_err[k] = scan.E_DUPLICATE_TAGS
            continue
        if time_tag:
            key_err[k] = scan.E_TIME_TAG
            continue
        tags: TagSet = tuple(sorted(pairs))
        c = canon_index.get((m, tags))
        if c is None:
            c = canon_index[(m, tags)] = len(canon_tags)
            canon_meas.append(m)
            canon_tags.append(tags)
        key_canon[k] = c
    nfk = len(fks)
    fk_canon = np.zeros(nfk, np.int32)
    fk_index: dict[bytes, int] = {}
    for f in range(nfk):
        name_b = _unescape(body[int(fks[f]):int(fke[f])], _FIELD_KEY_ESCAPES)
        fk_canon[f] = fk_index.setdefault(name_b, len(fk_index))
    fk_names = [_text(b) for b in fk_index]
    fk_is_time = np.array([b == b"time" for b in fk_index], dtype=np.bool_)
    return _Keys(key_err, key_meas, key_canon, list(meas_index), canon_meas, canon_tags,
                 fk_canon, fk_names, fk_is_time)


def _bitmap(valid: np.ndarray) -> tuple[pa.Buffer | None, int]:
    nulls = int(valid.shape[0] - np.count_nonzero(valid))
    if nulls == 0:
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), nulls


def _column(ftype: int, n: int, bits: np.ndarray, valid: np.ndarray,
            str_offsets: np.ndarray | None, str_data: np.ndarray | None) -> pa.Array:
    bitmap, nulls = _bitmap(valid)
    if ftype == scan.T_FLOAT:
        return pa.Array.from_buffers(pa.float64(), n, [bitmap, pa.py_buffer(bits)], nulls)
    if ftype == scan.T_INTEGER:
        return pa.Array.from_buffers(pa.int64(), n, [bitmap, pa.py_buffer(bits)], nulls)
    if ftype == scan.T_UNSIGNED:
        return pa.Array.from_buffers(pa.uint64(), n, [bitmap, pa.py_buffer(bits)], nulls)
    if ftype == scan.T_BOOLEAN:
        packed = np.packbits(bits != 0, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), n, [bitmap, pa.py_buffer(packed)], nulls)
    assert str_offsets is not None and str_data is not None
    arr = pa.Array.from_buffers(
        pa.string(), n, [bitmap, pa.py_buffer(str_offsets), pa.py_buffer(str_data)], nulls)
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:  # invalid UTF-8 in some value: decode those with replacement
        data = str_data.tobytes()
        values = [
            _text(data[str_offsets[r]:str_offsets[r + 1]]) if valid[r] else None
            for r in range(n)
        ]
        arr = pa.array(values, type=pa.string())
    return arr


def parse_lines(body: bytes, precision: str = "ns",
                default_time_ns: int | None = None) -> ParseResult:
    """Parse a line-protocol body the way InfluxDB 1.x does (models/points.go), plus the
    engine's per-point checks InfluxDB applies at write (`time` keys, string length, field
    type conflicts within the body). Bad lines become LineErrors; good lines survive."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {sorted(PRECISIONS)}")
    mult = PRECISIONS[precision]
    if default_time_ns is None:
        default_time_ns = time.time_ns()
    default_time = default_time_ns - default_time_ns % mult
    body = bytes(body)
    buf = np.frombuffer(body, dtype=np.uint8)
    newlines, equals = scan.count_newlines_and_equals(buf)
    max_lines = int(newlines) + 1
    max_fields = int(equals) + 1

    ln_no = np.empty(max_lines, np.int32)
    ln_start = np.empty(max_lines, np.int64)
    ln_end = np.empty(max_lines, np.int64)
    ln_status = np.empty(max_lines, np.int8)
    ln_aux = np.empty(max_lines, np.int64)
    ln_aux2 = np.empty(max_lines, np.int64)
    ln_key = np.empty(max_lines, np.int32)
    ln_time = np.empty(max_lines, np.int64)
    ln_fbeg = np.empty(max_lines, np.int64)
    ln_fend = np.empty(max_lines, np.int64)
    f_key = np.empty(max_fields, np.int32)
    f_type = np.empty(max_fields, np.int8)
    f_bits = np.empty(max_fields, np.int64)
    f_vstart = np.empty(max_fields, np.int64)
    f_vlen = np.empty(max_fields, np.int64)
    f_ulen = np.empty(max_fields, np.int64)
    f_flags = np.empty(max_fields, np.int8)

    tables = _InternTables()
    state = np.array([0, 1, 0, 0, 0, 0], np.int64)
    while True:
        need = scan.scan_body(
            buf, mult, default_time, ln_no, ln_start, ln_end, ln_status, ln_aux, ln_aux2,
            ln_key, ln_time, ln_fbeg, ln_fend, f_key, f_type, f_bits, f_bits.view(np.float64),
            f_vstart, f_vlen, f_ulen, f_flags, *tables.keys, *tables.fkeys, state)
        if need == 0:
            break
        tables.grow(int(state[4]), int(state[5]), need)
    nl, nf, nk, nfk = (int(v) for v in state[2:6])
    ks, ke = tables.keys[2][:nk], tables.keys[3][:nk]
    fks, fke = tables.fkeys[2][:nfk], tables.fkeys[3][:nfk]

    _slow_floats(body, nl, nf, ln_status, ln_fbeg, f_flags, f_bits, f_vstart, f_vlen)
    keys = _decode_keys(body, ks, ke, fks, fke)

    ln_row = np.zeros(nl, np.int64)
    ln_sid = np.zeros(nl, np.int32)
    f_col = np.full(max(nf, 1), -1, np.int32)
    (col_meas, col_fkey, col_type, n_cols, meas_count, meas_first, meas_nseries, canon_sid,
     points) = scan.assign_rows(
        ln_status, ln_aux, ln_aux2, ln_key, ln_fbeg, ln_fend, nl, f_key, f_type, f_ulen,
        keys.key_err, keys.key_meas, keys.key_canon, keys.fk_canon, keys.fk_is_time,
        len(keys.meas_names), len(keys.canon_tags), len(keys.fk_names), ln_row, ln_sid, f_col,
        MAX_STRING_FIELD_BYTES)

    batches = _assemble(body, buf, nl, ln_status, ln_key, ln_row, ln_sid, ln_time, ln_no,
                        ln_fbeg, ln_fend, f_col, f_type, f_bits, f_vstart, f_vlen, f_ulen, f_flags,
                        keys, col_meas, col_fkey, col_type, n_cols, meas_count, meas_first,
                        meas_nseries, canon_sid)
    errors = _errors(body, nl, ln_status, ln_aux, ln_aux2, ln_key, ln_no, ln_start, ln_end,
                     f_key, f_type, f_ulen, keys)
    return ParseResult(batches=batches, errors=errors, points=int(points))


def _slow_floats(body: bytes, nl: int, nf: int, ln_status: np.ndarray, ln_fbeg: np.ndarray,
                 f_flags: np.ndarray, f_bits: np.ndarray, f_vstart: np.ndarray,
                 f_vlen: np.ndarray) -> None:
    """Exact parse of the few floats the numba fast path leaves (many digits, big exponents)."""
    slow = np.nonzero(f_flags[:nf] & scan.FLAG_FLOAT_FALLBACK)[0]
    if slow.shape[0] == 0:
        return
    fvals = f_bits.view(np.float64)
    line_of = np.searchsorted(ln_fbeg[:nl], slow, side="right") - 1
    for fi, li in zip(slow.tolist(), line_of.tolist(), strict=True):
        start = int(f_vstart[fi])
        value = float(body[start:start + int(f_vlen[fi])])
        if value in (float("inf"), float("-inf")):
            ln_status[li] = scan.E_INVALID_FLOAT
        fvals[fi] = value


def _assemble(body: bytes, buf: np.ndarray, nl: int, ln_status: np.ndarray, ln_key: np.ndarray,
              ln_row: np.ndarray, ln_sid: np.ndarray, ln_time: np.ndarray, ln_no: np.ndarray,
              ln_fbeg: np.ndarray, ln_fend: np.ndarray, f_col: np.ndarray, f_type: np.ndarray,
              f_bits: np.ndarray, f_vstart: np.ndarray, f_vlen: np.ndarray, f_ulen: np.ndarray,
              f_flags: np.ndarray, keys: _Keys, col_meas: np.ndarray, col_fkey: np.ndarray,
              col_type: np.ndarray, n_cols: int, meas_count: np.ndarray,
              meas_first: np.ndarray, meas_nseries: np.ndarray,
              canon_sid: np.ndarray) -> dict[str, Batch]:
    n_meas = len(keys.meas_names)
    meas_offset = np.zeros(n_meas + 1, np.int64)
    np.cumsum(meas_count, out=meas_offset[1:])
    total_rows = int(meas_offset[-1])
    out_time = np.empty(total_rows, np.int64)
    out_sid = np.empty(total_rows, np.int32)
    out_line = np.empty(total_rows, np.int32)
    col_len = meas_count[col_meas] if n_cols else np.zeros(0, np.int64)
    col_off = np.zeros(n_cols + 1, np.int64)
    np.cumsum(col_len, out=col_off[1:])
    total_slots = int(col_off[-1])
    slot_bits = np.zeros(total_slots, np.int64)
    slot_valid = np.zeros(total_slots, np.uint8)
    slot_strlen = np.zeros(total_slots, np.int64)
    scan.scatter_rows(nl, ln_status, ln_key, ln_row, ln_sid, ln_time, ln_no, ln_fbeg, ln_fend,
                      keys.key_meas, meas_offset, out_time, out_sid, out_line, f_col, f_type,
                      f_bits, col_off, slot_bits, slot_valid, slot_strlen, f_ulen)
    str_start = np.zeros(total_slots + 1, np.int64)
    str_data = np.zeros(0, np.uint8)
    if n_cols and np.any(col_type == scan.T_STRING):
        np.cumsum(slot_strlen, out=str_start[1:])
        str_data = np.empty(int(str_start[-1]), np.uint8)
        scan.copy_strings(buf, nl, ln_status, ln_row, ln_fbeg, ln_fend, f_col, f_type, f_vstart,
                          f_vlen, f_flags, col_off, str_start, str_data)

    series: list[list[TagSet]] = [[()] * int(n) for n in meas_nseries.tolist()]
    for c, sid in enumerate(canon_sid.tolist()):
        if sid >= 0:
            series[keys.canon_meas[c]][sid] = keys.canon_tags[c]
    fields: list[dict[str, pa.Array]] = [{} for _ in range(n_meas)]
    for col in range(n_cols):
        m = int(col_meas[col])
        o, n = int(col_off[col]), int(col_len[col])
        offsets = data = None
        if col_type[col] == scan.T_STRING:
            base = int(str_start[o])
            offsets = (str_start[o:o + n + 1] - base).astype(np.int32)
            data = str_data[base:int(str_start[o + n])]
        bits = slot_bits[o:o + n]
        fields[m][keys.fk_names[int(col_fkey[col])]] = _column(
            int(col_type[col]), n, bits, slot_valid[o:o + n], offsets, data)

    batches: dict[str, Batch] = {}
    for m in sorted((m for m in range(n_meas) if meas_count[m] > 0),
                    key=lambda m: int(meas_first[m])):
        lo, hi = int(meas_offset[m]), int(meas_offset[m + 1])
        batches[keys.meas_names[m]] = Batch(
            measurement=keys.meas_names[m],
            series=series[m],
            series_id=out_sid[lo:hi],
            time=out_time[lo:hi],
            fields=fields[m],
            line=out_line[lo:hi],
        )
    return batches


def _errors(body: bytes, nl: int, ln_status: np.ndarray, ln_aux: np.ndarray,
            ln_aux2: np.ndarray, ln_key: np.ndarray, ln_no: np.ndarray, ln_start: np.ndarray,
            ln_end: np.ndarray, f_key: np.ndarray, f_type: np.ndarray, f_ulen: np.ndarray,
            keys: _Keys) -> list[LineError]:
    errors: list[LineError] = []
    for li in np.nonzero(ln_status[:nl])[0].tolist():
        code = int(ln_status[li])
        text = _text(body[int(ln_start[li]):int(ln_end[li])])
        reason = _FIXED_REASONS.get(code)
        aux, aux2 = int(ln_aux[li]), int(ln_aux2[li])
        if reason is None:
            if code in (scan.E_MAX_KEY_LENGTH, scan.E_MAX_KEY_LENGTH_FIELD):
                reason = f"max key length exceeded: {aux} > {scan.MAX_KEY_LENGTH}"
            elif code == scan.E_INT_RANGE:
                num = _text(body[aux:aux2])
                reason = (f"unable to parse integer {num}: strconv.ParseInt: "
                          f'parsing "{num}": value out of range')
            elif code == scan.E_UINT_RANGE:
                num = _text(body[aux:aux2])
                reason = (f"unable to parse unsigned {num}: strconv.ParseUint: "
                          f'parsing "{num}": value out of range')
            elif code == scan.E_INVALID_VALUE:
                reason = f"invalid value: field-key={_text(body[aux:aux2])}"
            elif code == scan.E_TS_SYNTAX:
                reason = f'strconv.ParseInt: parsing "{_text(body[aux:aux2])}": invalid syntax'
            elif code == scan.E_TS_RANGE:
                reason = (f'strconv.ParseInt: parsing "{_text(body[aux:aux2])}": '
                          "value out of range")
            else:
                measurement = keys.meas_names[int(keys.key_meas[int(ln_key[li])])]
                if code == scan.E_TIME_TAG:
                    reason = (f'invalid tag key: input tag "time" on measurement '
                              f'"{measurement}" is invalid')
                elif code == scan.E_TIME_FIELD_ONLY:
                    reason = (f'invalid field name: input field "time" on measurement '
                              f'"{measurement}" is invalid')
                else:
                    field = keys.fk_names[int(keys.fk_canon[int(f_key[aux])])]
                    if code == scan.E_STRING_TOO_LONG:
                        reason = (f'input field "{field}" on measurement "{measurement}" is '
                                  f"too long, {int(f_ulen[aux])} > {MAX_STRING_FIELD_BYTES}")
                    else:
                        new = FieldType(int(f_type[aux])).influx_name
                        old = FieldType(aux2).influx_name
                        reason = (f'field type conflict: input field "{field}" on measurement '
                                  f'"{measurement}" is type {new}, already exists as type {old}')
        errors.append(LineError(line=int(ln_no[li]), text=text, reason=reason,
                                dropped=code in _ENGINE_ERRORS))
    return errors
