"""One immutable columnar segment file: writer, footer/info reader and the pruning column reader.

Layout (versioned) in docs/segment-format.md; rows sorted by series key then time.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import crc32c
import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.batch import TIME_COLUMN, FieldType, TagSet, series_key
from storage.codecs import (
    CodecError,
    codec_of,
    decode_bools,
    decode_floats,
    decode_ints,
    decode_strings,
    decode_timestamps,
    decode_uints,
    decode_validity,
    encode_bools,
    encode_floats,
    encode_ints,
    encode_strings,
    encode_timestamps,
    encode_uints,
    encode_validity,
)
from storage.fsio import write_atomic

SEGMENT_MAGIC = b"EDGTSSEG"
TRAILER_MAGIC = b"EDGTSEND"
SEGMENT_FORMAT_VERSION = 1
HEADER = struct.Struct("<8sHHI")  # magic, format version, flags (0), reserved (0)
TRAILER = struct.Struct("<QII32s8s")  # footer length, footer crc32c, reserved, body blake2b-256, magic
CHUNK_ALIGN = 8
TAG_KEYS_METADATA = b"edgets:tag_keys"
ROLE_METADATA = b"edgets:role"

ROLE_TIME = "time"
ROLE_SERIES = "series_id"
ROLE_VALUES = "values"
ROLE_VALIDITY = "validity"


class SegmentCorrupt(Exception):
    """A segment file failed a magic, version, length, checksum or decode check."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


@dataclass(frozen=True)
class SegmentInfo:
    """Footer summary of one sealed segment (also what the sync daemon ships)."""

    seq: int
    path: Path
    size: int
    content_hash: str  # hex blake2b-256 of the whole file
    min_time_ns: int
    max_time_ns: int
    rows: int
    database: str
    measurement: str
    field_types: dict[str, FieldType]
    tag_keys: list[str]
    series_count: int
    replaces: tuple[int, ...] = ()
    created_ns: int = 0
    field_values: int = 0  # number of non-null field values
    precedence: int = 0  # duplicate (series, time) rows: higher precedence wins (= seq unless merged)


@dataclass
class ChunkMeta:
    column: str
    role: str
    codec: int
    offset: int
    length: int
    crc: int
    count: int
    null_count: int
    min: Any = None
    max: Any = None

    def to_wire(self) -> dict[str, Any]:
        return {"column": self.column, "role": self.role, "codec": self.codec, "offset": self.offset,
                "length": self.length, "crc": self.crc, "count": self.count,
                "null_count": self.null_count, "min": self.min, "max": self.max}


@dataclass
class SegmentFooter:
    """The decoded footer of a segment (see docs/segment-format.md for every key)."""

    version: int
    database: str
    measurement: str
    seq: int
    created_ns: int
    rows: int
    min_time_ns: int
    max_time_ns: int
    replaces: list[int]
    precedence: int
    schema: pa.Schema
    tag_keys: list[str]
    tag_values: list[list[str]]
    series_tags: list[np.ndarray]  # per tag key: uint32 per series, 0 = absent, i+1 = tag_values[k][i]
    series_rows: np.ndarray  # uint64, series_count + 1 row offsets
    fields: dict[str, FieldType]
    chunks: list[ChunkMeta] = field(default_factory=list)

    @property
    def series_count(self) -> int:
        return int(self.series_rows.shape[0]) - 1

    def chunk(self, column: str, role: str) -> ChunkMeta:
        for c in self.chunks:
            if c.column == column and c.role == role:
                return c
        raise KeyError(f"no {role} chunk for column {column!r}")

    def field_values(self) -> int:
        return sum(c.count for c in self.chunks if c.role == ROLE_VALUES)


# ---------------------------------------------------------------- input normalisation

def time_array(table: pa.Table) -> np.ndarray:
    col = table.column(TIME_COLUMN).combine_chunks()
    if pa.types.is_timestamp(col.type):
        if col.type.unit != "ns" or col.type.tz is not None:
            col = col.cast(pa.timestamp("ns"))
        col = col.cast(pa.int64())
    elif not pa.types.is_int64(col.type):
        raise TypeError(f"time column must be timestamp[ns] or int64, got {col.type}")
    if col.null_count:
        raise ValueError(f"time column has {col.null_count} nulls")
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)


def tag_keys_of(table: pa.Table, tag_keys: Sequence[str] | None = None) -> list[str]:
    """The tag columns of a reader-shape table: explicit, from schema metadata, else all strings."""
    if tag_keys is not None:
        return sorted(tag_keys)
    meta = table.schema.metadata or {}
    if TAG_KEYS_METADATA in meta:
        return sorted(json.loads(meta[TAG_KEYS_METADATA]))
    return sorted(f.name for f in table.schema if f.name != TIME_COLUMN
                  and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                       or pa.types.is_dictionary(f.type)))


@dataclass
class SeriesOrder:
    """Series identity of every row: tag sets sorted by series key, and each row's series id."""

    series: list[TagSet]
    series_id: np.ndarray  # int64 per input row
    order: np.ndarray  # row permutation sorting by (series id, time), stable


def series_order(table: pa.Table, measurement: str, tag_keys: list[str], times: np.ndarray) -> SeriesOrder:
    """Compute series ids (sorted by canonical series key) and the (series, time) sort order."""
    n = table.num_rows
    dicts: list[list[str | None]] = []
    codes: list[np.ndarray] = []
    for key in tag_keys:
        col = table.column(key).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        encoded = pc.dictionary_encode(col)
        idx = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64) + 1
        codes.append(idx)
        dicts.append([None, *encoded.dictionary.to_pylist()])
    if not codes:
        combos = np.zeros((1, 0), dtype=np.int64)
        inverse = np.zeros(n, dtype=np.int64)
    else:
        radix = [len(d) for d in dicts]
        if float(np.prod(np.array(radix, dtype=np.float64))) < 2.0**62:
            combined = np.zeros(n, dtype=np.int64)
            for c, r in zip(codes, radix, strict=True):
                combined = combined * r + c
            uniq, inverse = np.unique(combined, return_inverse=True)
            combos = np.empty((len(uniq), len(codes)), dtype=np.int64)
            rest = uniq.copy()
            for k in range(len(codes) - 1, -1, -1):
                combos[:, k] = rest % radix[k]
                rest //= radix[k]
        else:
            combos, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    series: list[TagSet] = []
    for row in combos.tolist():
        tags = tuple((key, dicts[k][code]) for k, (key, code) in enumerate(zip(tag_keys, row, strict=True))
                     if code != 0)
        series.append(tags)  # type: ignore[arg-type]
    keys = [series_key(measurement, tags) for tags in series]
    rank_order = sorted(range(len(series)), key=keys.__getitem__)
    rank = np.empty(len(series), dtype=np.int64)
    rank[np.array(rank_order, dtype=np.int64)] = np.arange(len(series), dtype=np.int64)
    sid = rank[inverse] if n else np.zeros(0, dtype=np.int64)
    order = np.lexsort((times, sid)) if n else np.zeros(0, dtype=np.int64)
    return SeriesOrder([series[i] for i in rank_order], sid, order)


# ---------------------------------------------------------------- writing

def _stat(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def _value_stats(ftype: FieldType, values: np.ndarray | pa.Array) -> tuple[Any, Any]:
    if len(values) == 0:
        return None, None
    if ftype == FieldType.STRING:
        mm = pc.min_max(values).as_py()
        lo, hi = mm["min"], mm["max"]
        return (lo if len(lo) <= 64 else None), (hi if len(hi) <= 64 else None)
    if ftype == FieldType.FLOAT:
        finite = values[~np.isnan(values)]
        if len(finite) == 0:
            return None, None
        return float(finite.min()), float(finite.max())
    if ftype == FieldType.BOOLEAN:
        return bool(values.min()), bool(values.max())
    return _stat(values.min()), _stat(values.max())


def _encode_field(ftype: FieldType, col: pa.Array) -> tuple[bytes, Any, Any]:
    present = col.drop_null() if col.null_count else col
    if ftype == FieldType.STRING:
        if not pa.types.is_string(present.type):
            present = present.cast(pa.string())
        lo, hi = _value_stats(ftype, present)
        return encode_strings(present), lo, hi
    arr = present.to_numpy(zero_copy_only=False)
    lo, hi = _value_stats(ftype, arr)
    if ftype == FieldType.FLOAT:
        return encode_floats(arr), lo, hi
    if ftype == FieldType.INTEGER:
        return encode_ints(arr), lo, hi
    if ftype == FieldType.UNSIGNED:
        return encode_uints(arr), lo, hi
    return encode_bools(np.asarray(arr, dtype=np.bool_)), lo, hi


def build_schema(tag_keys: list[str], fields: dict[str, FieldType]) -> pa.Schema:
    """The reader-shape Arrow schema: time, tags (sorted), fields (sorted), roles in metadata."""
    cols = [pa.field(TIME_COLUMN, pa.timestamp("ns"), nullable=False, metadata={ROLE_METADATA: b"time"})]
    cols += [pa.field(k, pa.string(), metadata={ROLE_METADATA: b"tag"}) for k in tag_keys]
    cols += [pa.field(name, fields[name].arrow_type, metadata={ROLE_METADATA: b"field"})
             for name in sorted(fields)]
    return pa.schema(cols, metadata={TAG_KEYS_METADATA: json.dumps(tag_keys).encode()})


def encode_segment(*, database: str, measurement: str, seq: int, table: pa.Table,
                   tag_keys: Sequence[str] | None = None, replaces: Sequence[int] = (),
                   precedence: int | None = None, created_ns: int | None = None) -> bytes:
    """The complete bytes of a segment file for `table` (reader shape); see write_segment."""
    if table.num_rows == 0:
        raise ValueError(f"refusing to encode an empty segment for {database}.{measurement}")
    keys = tag_keys_of(table, tag_keys)
    times = time_array(table)
    fields: dict[str, FieldType] = {}
    for f in table.schema:
        if f.name != TIME_COLUMN and f.name not in keys:
            ftype = FieldType.from_arrow(f.type)
            fields[f.name] = ftype
    so = series_order(table, measurement, keys, times)
    order_idx = pa.array(so.order, type=pa.int64())
    sorted_time = times[so.order]
    sorted_sid = so.series_id[so.order]
    counts = np.bincount(sorted_sid, minlength=len(so.series)).astype(np.uint64)
    series_rows = np.zeros(len(so.series) + 1, dtype=np.uint64)
    np.cumsum(counts, out=series_rows[1:])

    out = bytearray(HEADER.pack(SEGMENT_MAGIC, SEGMENT_FORMAT_VERSION, 0, 0))
    chunks: list[ChunkMeta] = []
    n = table.num_rows

    def add(column: str, role: str, data: bytes, count: int, nulls: int, lo: Any, hi: Any) -> None:
        out.extend(bytes(-len(out) % CHUNK_ALIGN))
        chunks.append(ChunkMeta(column, role, int(codec_of(data)), len(out), len(data),
                                crc32c.crc32c(data), count, nulls, _stat(lo), _stat(hi)))
        out.extend(data)

    add(TIME_COLUMN, ROLE_TIME, encode_timestamps(sorted_time), n, 0, sorted_time.min(), sorted_time.max())
    add("series_id", ROLE_SERIES, encode_ints(sorted_sid), n, 0, 0, len(so.series) - 1)
    for name in sorted(fields):
        col = table.column(name).combine_chunks().take(order_idx)
        valid = np.ones(n, dtype=np.bool_) if col.null_count == 0 else \
            np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
        data, lo, hi = _encode_field(fields[name], col)
        add(name, ROLE_VALUES, data, n - col.null_count, col.null_count, lo, hi)
        add(name, ROLE_VALIDITY, encode_validity(valid), n, col.null_count, None, None)

    tag_values: list[list[str]] = []
    series_tags: list[bytes] = []
    for key in keys:
        per_series = [dict(tags).get(key) for tags in so.series]
        distinct = sorted({v for v in per_series if v is not None})
        index = {v: i + 1 for i, v in enumerate(distinct)}
        ids = np.array([index[v] if v is not None else 0 for v in per_series], dtype="<u4")
        tag_values.append(distinct)
        series_tags.append(ids.tobytes())
    footer = {
        "version": SEGMENT_FORMAT_VERSION,
        "database": database,
        "measurement": measurement,
        "seq": int(seq),
        "created_ns": int(time.time_ns() if created_ns is None else created_ns),
        "rows": n,
        "min_time_ns": int(sorted_time.min()),
        "max_time_ns": int(sorted_time.max()),
        "replaces": sorted(int(s) for s in replaces),
        "precedence": int(seq if precedence is None else precedence),
        "schema": build_schema(keys, fields).serialize().to_pybytes(),
        "tag_keys": keys,
        "tag_values": tag_values,
        "series_tags": series_tags,
        "series_rows": series_rows.astype("<u8").tobytes(),
        "fields": [[name, int(fields[name])] for name in sorted(fields)],
        "chunks": [c.to_wire() for c in chunks],
    }
    footer_bytes = msgpack.packb(footer, use_bin_type=True)
    out.extend(bytes(-len(out) % CHUNK_ALIGN))
    out.extend(footer_bytes)
    body_hash = hashlib.blake2b(out, digest_size=32).digest()
    out.extend(TRAILER.pack(len(footer_bytes), crc32c.crc32c(footer_bytes), 0, body_hash, TRAILER_MAGIC))
    return bytes(out)


def write_segment(path: Path, *, database: str, measurement: str, seq: int, table: pa.Table,
                  tag_keys: Sequence[str] | None = None, replaces: Sequence[int] = (),
                  precedence: int | None = None) -> SegmentInfo:
    """Sort `table` by (series key, time), encode and write it durably (tmp, fsync, rename, dir fsync).

    Tag columns: `tag_keys`, else schema metadata `edgets:tag_keys`, else every string column.
    Duplicate (series, time) rows are kept as given (the caller resolves them).
    """
    data = encode_segment(database=database, measurement=measurement, seq=seq, table=table,
                          tag_keys=tag_keys, replaces=replaces, precedence=precedence)
    write_atomic(path, data)
    footer = _parse_footer(path, data[-TRAILER.size - _footer_len(path, data):-TRAILER.size])
    return _info_of(path, footer, len(data), hashlib.blake2b(data, digest_size=32).hexdigest())


# ---------------------------------------------------------------- reading the footer

def _footer_len(path: Path, data: bytes) -> int:
    return TRAILER.unpack_from(data, len(data) - TRAILER.size)[0]


def _parse_footer(path: Path, raw: bytes, offset: int = 0) -> SegmentFooter:
    try:
        d = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        version = int(d["version"])
        if version < 1 or version > SEGMENT_FORMAT_VERSION:
            raise SegmentCorrupt(path, offset, f"unsupported segment format version {version}")
        keys = list(d["tag_keys"])
        series_rows = np.frombuffer(d["series_rows"], dtype="<u8").astype(np.uint64)
        series_tags = [np.frombuffer(b, dtype="<u4").astype(np.uint32) for b in d["series_tags"]]
        return SegmentFooter(
            version=version, database=d["database"], measurement=d["measurement"], seq=int(d["seq"]),
            created_ns=int(d["created_ns"]), rows=int(d["rows"]), min_time_ns=int(d["min_time_ns"]),
            max_time_ns=int(d["max_time_ns"]), replaces=[int(s) for s in d["replaces"]],
            precedence=int(d["precedence"]),
            schema=pa.ipc.read_schema(pa.py_buffer(d["schema"])), tag_keys=keys,
            tag_values=[list(v) for v in d["tag_values"]], series_tags=series_tags,
            series_rows=series_rows, fields={name: FieldType(t) for name, t in d["fields"]},
            chunks=[ChunkMeta(**c) for c in d["chunks"]],
        )
    except SegmentCorrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed footer is corruption
        raise SegmentCorrupt(path, offset, f"footer does not decode: {exc!r}") from exc


def _read_footer(fh: BinaryIO, path: Path, size: int) -> tuple[SegmentFooter, bytes]:
    """Read and check header, trailer and footer; returns the footer and the raw trailer."""
    if size < HEADER.size + TRAILER.size:
        raise SegmentCorrupt(path, 0, f"file is {size} bytes, shorter than header + trailer")
    head = os.pread(fh.fileno(), HEADER.size, 0)
    magic, version, _flags, _ = HEADER.unpack(head)
    if magic != SEGMENT_MAGIC:
        raise SegmentCorrupt(path, 0, f"bad magic {magic!r}, expected {SEGMENT_MAGIC!r}")
    if version < 1 or version > SEGMENT_FORMAT_VERSION:
        raise SegmentCorrupt(path, 8, f"unsupported segment format version {version}")
    trailer_off = size - TRAILER.size
    trailer = os.pread(fh.fileno(), TRAILER.size, trailer_off)
    footer_len, footer_crc, _, _body_hash, tmagic = TRAILER.unpack(trailer)
    if tmagic != TRAILER_MAGIC:
        raise SegmentCorrupt(path, trailer_off + 48, f"bad trailer magic {tmagic!r} (truncated file?)")
    footer_off = trailer_off - footer_len
    if footer_off < HEADER.size:
        raise SegmentCorrupt(path, trailer_off, f"footer length {footer_len} exceeds the file")
    raw = os.pread(fh.fileno(), footer_len, footer_off)
    got = crc32c.crc32c(raw)
    if got != footer_crc:
        raise SegmentCorrupt(path, footer_off, f"footer checksum mismatch: stored {footer_crc:#010x}, "
                                               f"computed {got:#010x}")
    return _parse_footer(path, raw, footer_off), trailer


def read_footer(path: Path) -> SegmentFooter:
    """The checked footer of a segment (no chunk is read)."""
    path = Path(path)
    with open(path, "rb") as fh:
        return _read_footer(fh, path, os.fstat(fh.fileno()).st_size)[0]


def _info_of(path: Path, f: SegmentFooter, size: int, content_hash: str) -> SegmentInfo:
    return SegmentInfo(
        seq=f.seq, path=path, size=size, content_hash=content_hash, min_time_ns=f.min_time_ns,
        max_time_ns=f.max_time_ns, rows=f.rows, database=f.database, measurement=f.measurement,
        field_types=dict(f.fields), tag_keys=list(f.tag_keys), series_count=f.series_count,
        replaces=tuple(f.replaces), created_ns=f.created_ns, field_values=f.field_values(),
        precedence=f.precedence,
    )


def read_segment_info(path: Path, *, block: int = 1 << 20) -> SegmentInfo:
    """Footer summary after checking the footer CRC and the body hash in the trailer.

    One streaming pass over the file computes both the stored body hash (verified) and the
    whole-file content hash the sync daemon ships.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        footer, trailer = _read_footer(fh, path, size)
        digest = hashlib.blake2b(digest_size=32)
        body_len = size - TRAILER.size
        pos = 0
        while pos < body_len:
            piece = os.pread(fh.fileno(), min(block, body_len - pos), pos)
            if not piece:
                raise SegmentCorrupt(path, pos, "file shrank while being read")
            digest.update(piece)
            pos += len(piece)
        stored = TRAILER.unpack(trailer)[3]
        if digest.digest() != stored:
            bad = _first_bad_chunk(fh, path, footer)
            raise SegmentCorrupt(path, bad, "body hash mismatch (content changed after sealing)")
        digest.update(trailer)
    return _info_of(path, footer, size, digest.hexdigest())


def _first_bad_chunk(fh: BinaryIO, path: Path, footer: SegmentFooter) -> int:
    for c in footer.chunks:
        if crc32c.crc32c(os.pread(fh.fileno(), c.length, c.offset)) != c.crc:
            return c.offset
    return 0


# ---------------------------------------------------------------- reading columns

def _read_chunk(fh: BinaryIO, path: Path, c: ChunkMeta) -> bytes:
    data = os.pread(fh.fileno(), c.length, c.offset)
    if len(data) != c.length:
        raise SegmentCorrupt(path, c.offset, f"{c.role} chunk of {c.column!r} truncated "
                                             f"({len(data)} of {c.length} bytes)")
    got = crc32c.crc32c(data)
    if got != c.crc:
        raise SegmentCorrupt(path, c.offset, f"{c.role} chunk of {c.column!r} checksum mismatch: "
                                             f"stored {c.crc:#010x}, computed {got:#010x}")
    return data


def _decode(path: Path, c: ChunkMeta, data: bytes, ftype: FieldType | None) -> Any:
    try:
        if c.role == ROLE_TIME:
            out = decode_timestamps(data)
        elif c.role == ROLE_SERIES:
            out = decode_ints(data)
        elif c.role == ROLE_VALIDITY:
            out = decode_validity(data)
        elif ftype == FieldType.FLOAT:
            out = pa.array(decode_floats(data), type=pa.float64())
        elif ftype == FieldType.INTEGER:
            out = pa.array(decode_ints(data), type=pa.int64())
        elif ftype == FieldType.UNSIGNED:
            out = pa.array(decode_uints(data), type=pa.uint64())
        elif ftype == FieldType.BOOLEAN:
            out = pa.array(decode_bools(data), type=pa.bool_())
        else:
            out = decode_strings(data)
    except (CodecError, ValueError, struct.error) as exc:
        raise SegmentCorrupt(path, c.offset, f"{c.role} chunk of {c.column!r} does not decode: {exc}") from exc
    if len(out) != c.count:
        raise SegmentCorrupt(path, c.offset, f"{c.role} chunk of {c.column!r} decoded {len(out)} "
                                             f"values, footer says {c.count}")
    return out


def series_matching(footer: SegmentFooter, tag_filter: dict[str, set[str]] | None) -> np.ndarray:
    """bool per series id: does the series satisfy every `key in values` condition?

    An empty string in a value set also matches series without that tag (InfluxQL `tag = ''`).
    """
    ok = np.ones(footer.series_count, dtype=np.bool_)
    for key, values in (tag_filter or {}).items():
        allowed = [0] if "" in values else []
        if key in footer.tag_keys:
            k = footer.tag_keys.index(key)
            index = {v: i + 1 for i, v in enumerate(footer.tag_values[k])}
            allowed += [index[v] for v in values if v in index]
            ok &= np.isin(footer.series_tags[k], np.array(allowed, dtype=np.uint32))
        elif not allowed:
            ok[:] = False
    return ok


def output_schema(footer: SegmentFooter, columns: list[str] | None) -> pa.Schema:
    """Reader-shape schema of a projection (columns missing from this segment are left out)."""
    schema = footer.schema
    if columns is None:
        return schema
    wanted = [TIME_COLUMN] + [c for c in dict.fromkeys(columns) if c != TIME_COLUMN and c in schema.names]
    return pa.schema([schema.field(c) for c in wanted], metadata=schema.metadata)


def read_segment(path: Path, *, columns: list[str] | None = None, start_ns: int | None = None,
                 end_ns: int | None = None, tag_filter: dict[str, set[str]] | None = None) -> pa.Table:
    """Rows with start_ns <= time < end_ns whose series matches tag_filter, projected to
    `columns` (+ time). Decodes only the chunks it needs and verifies their CRCs."""
    path = Path(path)
    with open(path, "rb") as fh:
        footer, _ = _read_footer(fh, path, os.fstat(fh.fileno()).st_size)
        schema = output_schema(footer, columns)
        lo = footer.min_time_ns if start_ns is None else max(start_ns, footer.min_time_ns)
        hi = footer.max_time_ns + 1 if end_ns is None else min(end_ns, footer.max_time_ns + 1)
        if lo >= hi:
            return schema.empty_table()
        series_ok = series_matching(footer, tag_filter)
        if not series_ok.any():
            return schema.empty_table()
        tc = footer.chunk(TIME_COLUMN, ROLE_TIME)
        times = _decode(path, tc, _read_chunk(fh, path, tc), None)
        sc = footer.chunk("series_id", ROLE_SERIES)
        sid = _decode(path, sc, _read_chunk(fh, path, sc), None)
        if len(sid) and (sid.min() < 0 or sid.max() >= footer.series_count):
            raise SegmentCorrupt(path, sc.offset, "series id out of the series dictionary's range")
        mask: np.ndarray | None = None
        if not series_ok.all():
            mask = series_ok[sid]
        if lo > footer.min_time_ns or hi <= footer.max_time_ns:
            in_range = (times >= lo) & (times < hi)
            mask = in_range if mask is None else mask & in_range
        rows = None if mask is None else np.flatnonzero(mask)
        sel_times = times if rows is None else times[rows]
        sel_sid = sid if rows is None else sid[rows]
        sid_arr = pa.array(sel_sid.astype(np.int32, copy=False), type=pa.int32())
        arrays: list[pa.Array] = []
        for f in schema:
            if f.name == TIME_COLUMN:
                arrays.append(pa.array(sel_times, type=pa.timestamp("ns")))
            elif f.name in footer.fields:
                arrays.append(_read_field(fh, path, footer, f.name, rows))
            else:
                k = footer.tag_keys.index(f.name)
                dictionary = pa.array([None, *footer.tag_values[k]], type=pa.string())
                per_series = dictionary.take(pa.array(footer.series_tags[k].astype(np.int32)))
                arrays.append(per_series.take(sid_arr))
        return pa.Table.from_arrays(arrays, schema=schema)


def _read_field(fh: BinaryIO, path: Path, footer: SegmentFooter, name: str,
                rows: np.ndarray | None) -> pa.Array:
    ftype = footer.fields[name]
    vc = footer.chunk(name, ROLE_VALIDITY)
    valid = _decode(path, vc, _read_chunk(fh, path, vc), None)
    if int((~valid).sum()) != vc.null_count:
        raise SegmentCorrupt(path, vc.offset, f"validity of {name!r} disagrees with its null count")
    dc = footer.chunk(name, ROLE_VALUES)
    values = _decode(path, dc, _read_chunk(fh, path, dc), ftype)
    if vc.null_count == 0:
        if rows is None:
            return values
        return values.take(pa.array(rows, type=pa.int64()))
    position = np.cumsum(valid, dtype=np.int64) - 1
    if rows is not None:
        position, valid = position[rows], valid[rows]
    return values.take(pa.array(position, mask=~valid, type=pa.int64()))
