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
import zstandard
from numba import njit

from storage.batch import TIME_COLUMN, FieldType, TagSet, series_key
from storage.chunk_cache import ChunkCache
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
SEGMENT_FORMAT_VERSION = 3  # written by default; versions 1 and 2 are still read
FOOTER_ZSTD_SINCE = 3  # from this version on the MessagePack footer is stored zstd-compressed
FOOTER_ZSTD_LEVEL = 9
ROW_GROUP_ROWS = 16_384  # target rows per row group (cut at series boundaries, see docs)
HEADER = struct.Struct("<8sHHI")  # magic, format version, flags (0), reserved (0)
TRAILER = struct.Struct("<QII32s8s")  # footer length, footer crc32c, reserved, body blake2b-256, magic
CHUNK_ALIGN = 8
TAG_KEYS_METADATA = b"edgets:tag_keys"
ROLE_METADATA = b"edgets:role"

ROLE_TIME = "time"
ROLE_SERIES = "series_id"
ROLE_VALUES = "values"
ROLE_VALIDITY = "validity"

ORIGIN_FLUSH = "flush"  # footer `origin`: why the segment was sealed (see docs/segment-format.md)
ORIGIN_COMPACTION = "compaction"
ORIGIN_DELETE = "delete"
ORIGIN_DROP = "drop"
DROP_SCOPE_MEASUREMENT = "measurement"  # footer `drop`: what a DROP tombstone hides
DROP_SCOPE_DATABASE = "database"


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
    origin: str = ""  # "flush" | "compaction" | "delete" | "drop"; "" = not recorded (older files)
    drop: str = ""  # DROP tombstone scope: "measurement" | "database"; "" otherwise
    drop_below: int = 0  # DROP tombstone: hides the scope's segments with seq < drop_below

    @property
    def is_tombstone(self) -> bool:
        """A zero-row segment: it only hides rows (`replaces`, or a DROP's `drop` scope)."""
        return self.rows == 0


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
    group: int = 0  # row group index (version 2; always 0 in version 1)

    def to_wire(self, version: int) -> dict[str, Any]:
        wire = {"column": self.column, "role": self.role, "codec": self.codec, "offset": self.offset,
                "length": self.length, "crc": self.crc, "count": self.count,
                "null_count": self.null_count, "min": self.min, "max": self.max}
        if version >= 2:
            wire["group"] = self.group
        return wire


@dataclass
class RowGroup:
    """Rows [row_start, row_end) of a segment with their stats and chunks by (column, role)."""

    index: int
    row_start: int
    row_end: int
    min_time_ns: int
    max_time_ns: int
    min_series: int
    max_series: int
    null_count: int  # nulls over all field columns of the group
    chunks: dict[tuple[str, str], ChunkMeta] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.row_end - self.row_start

    def to_wire(self) -> dict[str, Any]:
        return {"row_start": self.row_start, "row_end": self.row_end, "min_time_ns": self.min_time_ns,
                "max_time_ns": self.max_time_ns, "min_series": self.min_series,
                "max_series": self.max_series, "null_count": self.null_count}


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
    row_groups: list[RowGroup] = field(default_factory=list)
    origin: str = ""
    drop: str = ""
    drop_below: int = 0
    _series_keys: list[str] | None = field(default=None, repr=False)
    _tag_columns: dict[str, pa.Array] = field(default_factory=dict, repr=False)
    _value_ids: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)
    _group_stats: np.ndarray | None = field(default=None, repr=False)
    _selections: dict[Any, SeriesSelection] = field(default_factory=dict, repr=False)

    @property
    def series_count(self) -> int:
        return int(self.series_rows.shape[0]) - 1

    def chunk(self, column: str, role: str) -> ChunkMeta:
        """The first chunk (lowest row group) of (column, role)."""
        for c in self.chunks:
            if c.column == column and c.role == role:
                return c
        raise KeyError(f"no {role} chunk for column {column!r}")

    def series_tags_of(self, s: int) -> TagSet:
        return tuple((key, self.tag_values[k][int(self.series_tags[k][s]) - 1])
                     for k, key in enumerate(self.tag_keys) if self.series_tags[k][s] != 0)

    def series_keys(self) -> list[str]:
        """Canonical series key of every series id (cached: footers are immutable)."""
        if self._series_keys is None:
            self._series_keys = [series_key(self.measurement, self.series_tags_of(s))
                                 for s in range(self.series_count)]
        return self._series_keys

    def tag_column(self, key: str) -> pa.Array:
        """utf8 value of tag `key` per series id (null where absent; cached)."""
        col = self._tag_columns.get(key)
        if col is None:
            k = self.tag_keys.index(key)
            dictionary = pa.array([None, *self.tag_values[k]], type=pa.string())
            col = dictionary.take(pa.array(self.series_tags[k].astype(np.int32)))
            self._tag_columns[key] = col
        return col

    def group_stats(self) -> np.ndarray:
        """int64 [4, groups]: min time, max time, min series, max series of every row group (cached)."""
        if self._group_stats is None:
            self._group_stats = np.array(
                [[g.min_time_ns for g in self.row_groups], [g.max_time_ns for g in self.row_groups],
                 [g.min_series for g in self.row_groups], [g.max_series for g in self.row_groups]],
                dtype=np.int64).reshape(4, len(self.row_groups))
        return self._group_stats

    def value_ids(self, k: int) -> dict[str, int]:
        """Tag value -> id (index into tag_values[k] + 1) of tag key number k (cached)."""
        key = self.tag_keys[k]
        ids = self._value_ids.get(key)
        if ids is None:
            ids = self._value_ids[key] = {v: i + 1 for i, v in enumerate(self.tag_values[k])}
        return ids

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


def plan_row_groups(series_rows: np.ndarray, target: int = ROW_GROUP_ROWS) -> list[tuple[int, int]]:
    """Row ranges of the row groups: whole series runs packed greedily up to `target` rows; a
    run longer than `target` is cut into the fewest groups of its own of at most `target` rows,
    all of (nearly) equal length (20,000 rows at target 16,384: two of 10,000)."""
    bounds: list[tuple[int, int]] = []
    start = end = 0
    for s in range(len(series_rows) - 1):
        a, b = int(series_rows[s]), int(series_rows[s + 1])
        if b - a > target:
            if end > start:
                bounds.append((start, end))
            parts = -(-(b - a) // target)
            cuts = [a + (b - a) * k // parts for k in range(parts + 1)]
            bounds.extend(zip(cuts[:-1], cuts[1:], strict=True))
            start = end = b
            continue
        if end + (b - a) - start > target and end > start:
            bounds.append((start, end))
            start = end
        end = b
    if end > start:
        bounds.append((start, end))
    return bounds


def encode_segment(*, database: str, measurement: str, seq: int, table: pa.Table,
                   tag_keys: Sequence[str] | None = None, replaces: Sequence[int] = (),
                   precedence: int | None = None, created_ns: int | None = None,
                   version: int = SEGMENT_FORMAT_VERSION, row_group_rows: int = ROW_GROUP_ROWS,
                   origin: str = ORIGIN_FLUSH, drop: str = "", drop_below: int = 0,
                   tombstone_range: tuple[int, int] | None = None) -> bytes:
    """The complete bytes of a segment file for `table` (reader shape); see write_segment.
    `version` 1 (one row group, series_id chunk) and 2 (plain footer) are kept for
    compatibility tests.
    An empty `table` is written only as a tombstone (version 2, `tombstone_range` given, and
    `replaces` or a `drop` scope with `drop_below` > 0 set): zero rows, series, fields, chunks."""
    if version not in (1, 2, 3):
        raise ValueError(f"cannot write segment format version {version}")
    if row_group_rows < 1:
        raise ValueError(f"row_group_rows must be positive, got {row_group_rows}")
    if drop not in ("", DROP_SCOPE_MEASUREMENT, DROP_SCOPE_DATABASE):
        raise ValueError(f"unknown drop scope {drop!r} for {database}.{measurement}")
    if bool(drop) != (drop_below > 0):
        raise ValueError(f"drop scope {drop!r} and drop_below {drop_below} of {database}.{measurement} "
                         f"go together")
    if table.num_rows == 0 or drop:
        if tombstone_range is None or not (replaces or drop) or version < 2 or table.num_rows:
            raise ValueError(f"refusing to encode an empty segment for {database}.{measurement} "
                             f"(only a version-2 tombstone with a time range and replaces/drop)")
        return _encode_tombstone(database, measurement, seq, replaces, precedence, created_ns,
                                 origin, drop, drop_below, tombstone_range)
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
    n = table.num_rows
    if version == 1:
        bounds = [(0, n)]
    else:
        bounds = plan_row_groups(series_rows.astype(np.int64), row_group_rows)

    out = bytearray(HEADER.pack(SEGMENT_MAGIC, version, 0, 0))
    chunks: list[ChunkMeta] = []
    groups: list[RowGroup] = []

    def add(column: str, role: str, data: bytes, count: int, nulls: int, lo: Any, hi: Any) -> None:
        out.extend(bytes(-len(out) % CHUNK_ALIGN))
        chunks.append(ChunkMeta(column, role, int(codec_of(data)), len(out), len(data),
                                crc32c.crc32c(data), count, nulls, _stat(lo), _stat(hi), len(groups)))
        out.extend(data)

    sorted_cols = {name: table.column(name).combine_chunks().take(order_idx) for name in sorted(fields)}
    for a, b in bounds:
        g_time = sorted_time[a:b]
        g_sid = sorted_sid[a:b]
        add(TIME_COLUMN, ROLE_TIME, encode_timestamps(g_time), b - a, 0, g_time.min(), g_time.max())
        if version == 1:
            add("series_id", ROLE_SERIES, encode_ints(g_sid), n, 0, 0, len(so.series) - 1)
        group_nulls = 0
        for name, full in sorted_cols.items():
            col = full.slice(a, b - a)
            nulls = col.null_count
            group_nulls += nulls
            data, lo, hi = _encode_field(fields[name], col)
            add(name, ROLE_VALUES, data, b - a - nulls, nulls, lo, hi)
            if version == 1 or nulls:
                valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
                add(name, ROLE_VALIDITY, encode_validity(valid), b - a, nulls, None, None)
        groups.append(RowGroup(len(groups), a, b, int(g_time.min()), int(g_time.max()),
                               int(g_sid[0]), int(g_sid[-1]), group_nulls))

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
        "version": version,
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
        "chunks": [c.to_wire(version) for c in chunks],
        "origin": origin,
    }
    if version >= 2:
        footer["row_groups"] = [g.to_wire() for g in groups]
    return _finish(out, footer)


def _finish(out: bytearray, footer: dict[str, Any]) -> bytes:
    """Append the footer (zstd-compressed from FOOTER_ZSTD_SINCE on) and trailer to header + chunks."""
    footer_bytes = msgpack.packb(footer, use_bin_type=True)
    if footer["version"] >= FOOTER_ZSTD_SINCE:
        footer_bytes = zstandard.ZstdCompressor(level=FOOTER_ZSTD_LEVEL).compress(footer_bytes)
    out.extend(bytes(-len(out) % CHUNK_ALIGN))
    out.extend(footer_bytes)
    body_hash = hashlib.blake2b(out, digest_size=32).digest()
    out.extend(TRAILER.pack(len(footer_bytes), crc32c.crc32c(footer_bytes), 0, body_hash, TRAILER_MAGIC))
    return bytes(out)


def _encode_tombstone(database: str, measurement: str, seq: int, replaces: Sequence[int],
                      precedence: int | None, created_ns: int | None, origin: str, drop: str,
                      drop_below: int, time_range: tuple[int, int]) -> bytes:
    """A zero-row version-2 segment: no series, fields, chunks or row groups; its time range
    is that of the rows it hides (so time pruning and retention treat it like them)."""
    lo, hi = int(time_range[0]), int(time_range[1])
    if lo > hi:
        raise ValueError(f"tombstone time range [{lo}, {hi}] of {database}.{measurement} is reversed")
    footer: dict[str, Any] = {
        "version": 2, "database": database, "measurement": measurement, "seq": int(seq),
        "created_ns": int(time.time_ns() if created_ns is None else created_ns), "rows": 0,
        "min_time_ns": lo, "max_time_ns": hi, "replaces": sorted(int(s) for s in replaces),
        "precedence": int(seq if precedence is None else precedence),
        "schema": build_schema([], {}).serialize().to_pybytes(), "tag_keys": [], "tag_values": [],
        "series_tags": [], "series_rows": np.zeros(1, dtype="<u8").tobytes(), "fields": [],
        "chunks": [], "row_groups": [], "origin": origin,
    }
    if drop:
        footer["drop"] = drop
        footer["drop_below"] = int(drop_below)
    return _finish(bytearray(HEADER.pack(SEGMENT_MAGIC, 2, 0, 0)), footer)


def write_segment(path: Path, *, database: str, measurement: str, seq: int, table: pa.Table,
                  tag_keys: Sequence[str] | None = None, replaces: Sequence[int] = (),
                  precedence: int | None = None, version: int = SEGMENT_FORMAT_VERSION,
                  row_group_rows: int = ROW_GROUP_ROWS, origin: str = ORIGIN_FLUSH, drop: str = "",
                  drop_below: int = 0, tombstone_range: tuple[int, int] | None = None) -> SegmentInfo:
    """Sort `table` by (series key, time), encode and write it durably (tmp, fsync, rename, dir fsync).

    Tag columns: `tag_keys`, else schema metadata `edgets:tag_keys`, else every string column.
    Duplicate (series, time) rows are kept as given (the caller resolves them).
    """
    data = encode_segment(database=database, measurement=measurement, seq=seq, table=table,
                          tag_keys=tag_keys, replaces=replaces, precedence=precedence,
                          version=version, row_group_rows=row_group_rows, origin=origin, drop=drop,
                          drop_below=drop_below, tombstone_range=tombstone_range)
    write_atomic(path, data)
    footer_len = _footer_len(path, data)
    footer = _parse_footer(path, data[-TRAILER.size - footer_len:-TRAILER.size], len(data) - TRAILER.size - footer_len,
                           HEADER.unpack_from(data, 0)[1])
    return _info_of(path, footer, len(data), hashlib.blake2b(data, digest_size=32).hexdigest())


# ---------------------------------------------------------------- reading the footer

def _footer_len(path: Path, data: bytes) -> int:
    return TRAILER.unpack_from(data, len(data) - TRAILER.size)[0]


def _parse_footer(path: Path, raw: bytes, offset: int, header_version: int) -> SegmentFooter:
    try:
        if header_version >= FOOTER_ZSTD_SINCE:
            raw = zstandard.ZstdDecompressor().decompress(raw)
        d = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        version = int(d["version"])
        if version != header_version:
            raise SegmentCorrupt(path, offset, f"footer says format version {version}, header {header_version}")
        keys = list(d["tag_keys"])
        series_rows = np.frombuffer(d["series_rows"], dtype="<u8").astype(np.uint64)
        series_tags = [np.frombuffer(b, dtype="<u4").astype(np.uint32) for b in d["series_tags"]]
        chunks = [ChunkMeta(**c) for c in d["chunks"]]
        return SegmentFooter(
            version=version, database=d["database"], measurement=d["measurement"], seq=int(d["seq"]),
            created_ns=int(d["created_ns"]), rows=int(d["rows"]), min_time_ns=int(d["min_time_ns"]),
            max_time_ns=int(d["max_time_ns"]), replaces=[int(s) for s in d["replaces"]],
            precedence=int(d["precedence"]),
            schema=pa.ipc.read_schema(pa.py_buffer(d["schema"])), tag_keys=keys,
            tag_values=[list(v) for v in d["tag_values"]], series_tags=series_tags,
            series_rows=series_rows, fields={name: FieldType(t) for name, t in d["fields"]},
            chunks=chunks, row_groups=_row_groups(d, version, series_rows, chunks),
            origin=str(d.get("origin", "")), drop=str(d.get("drop", "")),
            drop_below=int(d.get("drop_below", 0)),
        )
    except SegmentCorrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed footer is corruption
        raise SegmentCorrupt(path, offset, f"footer does not decode: {exc!r}") from exc


def _row_groups(d: dict[str, Any], version: int, series_rows: np.ndarray,
                chunks: list[ChunkMeta]) -> list[RowGroup]:
    rows = int(d["rows"])
    if version == 1:
        groups = [RowGroup(0, 0, rows, int(d["min_time_ns"]), int(d["max_time_ns"]), 0,
                           len(series_rows) - 2, 0)]
    else:
        groups = [RowGroup(i, int(g["row_start"]), int(g["row_end"]), int(g["min_time_ns"]),
                           int(g["max_time_ns"]), int(g["min_series"]), int(g["max_series"]),
                           int(g["null_count"])) for i, g in enumerate(d["row_groups"])]
    expect = 0
    for g in groups:
        if g.row_start != expect or g.row_end <= g.row_start:
            raise ValueError(f"row group {g.index} covers rows [{g.row_start}, {g.row_end}), expected "
                             f"a non-empty range starting at {expect}")
        expect = g.row_end
    if expect != rows or int(series_rows[-1]) != rows:
        raise ValueError(f"row groups / series runs cover {expect} / {int(series_rows[-1])} rows, footer says {rows}")
    for c in chunks:
        if not 0 <= c.group < len(groups):
            raise ValueError(f"{c.role} chunk of {c.column!r} names row group {c.group} of {len(groups)}")
        groups[c.group].chunks[(c.column, c.role)] = c
    return groups


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
    return _parse_footer(path, raw, footer_off, version), trailer


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
        precedence=f.precedence, origin=f.origin, drop=f.drop, drop_below=f.drop_below,
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

def _read_chunk(fd: int, path: Path, c: ChunkMeta) -> bytes:
    data = os.pread(fd, c.length, c.offset)
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


class ChunkReader:
    """Checked, decoded chunks of one segment file; through `cache` when given (decoded arrays
    are then shared: numpy ones are made read-only). The file is opened at the first chunk the
    cache does not hold; use as a context manager, which closes it."""

    __slots__ = ("cache", "fd", "fill", "path")

    def __init__(self, path: Path, cache: ChunkCache | None) -> None:
        self.path, self.cache, self.fd = path, cache, -1
        self.fill = True  # keep newly decoded chunks (off for scans too large for the cache)

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def open(self) -> int:
        """The file descriptor (opened on first use; FileNotFoundError when the file is gone)."""
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        return self.fd

    def decoded(self, c: ChunkMeta, ftype: FieldType | None) -> Any:
        cache = self.cache
        if cache is None:
            return _decode(self.path, c, _read_chunk(self.open(), self.path, c), ftype)
        key = (self.path, c.offset, c.crc)
        found = cache.get(key)
        if found is None:
            found = _decode(self.path, c, _read_chunk(self.open(), self.path, c), ftype)
            if self.fill:
                if isinstance(found, np.ndarray):
                    found.flags.writeable = False
                cache.put(key, found, found.nbytes)
        return found

    def scan_resistant(self, rows: int, columns: int) -> None:
        """A read decoding more than a quarter of the cache (~8 bytes per value) only looks
        chunks up: a large scan must not evict what dashboards re-read (LRU thrash)."""
        if self.cache is not None and rows * columns * 8 > self.cache.max_bytes // 4:
            self.fill = False


def series_matching(footer: SegmentFooter, tag_filter: dict[str, set[str]] | None) -> np.ndarray:
    """bool per series id: does the series satisfy every `key in values` condition?

    An empty string in a value set also matches series without that tag (InfluxQL `tag = ''`).
    """
    ok = np.ones(footer.series_count, dtype=np.bool_)
    for key, values in (tag_filter or {}).items():
        allowed = [0] if "" in values else []
        if key in footer.tag_keys:
            k = footer.tag_keys.index(key)
            ids = footer.value_ids(k)
            allowed += [ids[v] for v in values if v in ids]
            lookup = np.zeros(len(footer.tag_values[k]) + 1, dtype=np.bool_)  # value id -> allowed?
            lookup[allowed] = True
            ok &= lookup[footer.series_tags[k]]
        elif not allowed:
            ok[:] = False
    return ok


@dataclass(slots=True)
class SeriesSelection:
    """The series of one segment a tag filter selects: bool per series id, whether that is
    any / all of them, and prefix[s] = how many ids below s match (row-group tests)."""

    ok: np.ndarray
    any: bool
    all: bool
    prefix: np.ndarray


_SELECTIONS_PER_FOOTER = 256


def series_selection(footer: SegmentFooter, tag_filter: dict[str, set[str]] | None) -> SeriesSelection:
    """series_matching with its summaries, cached per footer and filter (footers are immutable;
    a footer keeps its last _SELECTIONS_PER_FOOTER filters)."""
    key = tuple(sorted((k, tuple(sorted(v))) for k, v in tag_filter.items())) if tag_filter else ()
    found = footer._selections.get(key)
    if found is None:
        ok = series_matching(footer, tag_filter)
        found = SeriesSelection(ok, bool(ok.any()), bool(ok.all()),
                                np.concatenate(([0], np.cumsum(ok, dtype=np.int64))))
        if len(footer._selections) >= _SELECTIONS_PER_FOOTER:
            footer._selections.clear()
        footer._selections[key] = found
    return found


def output_schema(footer: SegmentFooter, columns: list[str] | None) -> pa.Schema:
    """Reader-shape schema of a projection (columns missing from this segment are left out)."""
    schema = footer.schema
    if columns is None:
        return schema
    wanted = [TIME_COLUMN] + [c for c in dict.fromkeys(columns) if c != TIME_COLUMN and c in schema.names]
    return pa.schema([schema.field(c) for c in wanted], metadata=schema.metadata)


@njit(cache=True, nogil=True)
def repeats_key(time: np.ndarray, series_id: np.ndarray) -> bool:
    """Does any row share (series, time) with the row before it?"""
    for i in range(1, time.shape[0]):
        if time[i] == time[i - 1] and series_id[i] == series_id[i - 1]:
            return True
    return False


@dataclass
class SegmentRows:
    """Selected rows of one segment, still in (series, time) order: times, segment-local series
    ids and the requested field columns; tag columns are built on demand from the footer."""

    footer: SegmentFooter
    time: np.ndarray  # int64 ns
    series_id: np.ndarray  # int64, index into the footer's series dictionary, non-decreasing
    fields: dict[str, pa.Array]

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def unique(self) -> bool:
        """No two rows share (series, time) (the writer keeps duplicates it is given)."""
        return not repeats_key(self.time, self.series_id)

    def runs(self) -> tuple[list[str], np.ndarray]:
        """Series key of each run of equal series id, and the run offsets (runs + 1)."""
        if len(self) == 0:
            return [], np.zeros(1, dtype=np.int64)
        sid = self.series_id
        starts = np.flatnonzero(np.concatenate(([True], sid[1:] != sid[:-1])))
        keys = self.footer.series_keys()
        offsets = np.append(starts, len(sid)).astype(np.int64)
        return [keys[int(s)] for s in sid[starts].tolist()], offsets

    def to_table(self, schema: pa.Schema) -> pa.Table:
        """The rows in reader shape for `schema` (an output_schema of this segment's footer)."""
        arrays: list[pa.Array] = []
        sid_arr: pa.Array | None = None
        for f in schema:
            if f.name == TIME_COLUMN:
                arrays.append(pa.array(self.time, type=pa.timestamp("ns")))
            elif f.name in self.footer.fields:
                arrays.append(self.fields[f.name])
            else:
                if sid_arr is None:
                    sid_arr = pa.array(self.series_id.astype(np.int32, copy=False), type=pa.int32())
                arrays.append(self.footer.tag_column(f.name).take(sid_arr))
        return pa.Table.from_arrays(arrays, schema=schema)


def read_segment(path: Path, *, columns: list[str] | None = None, start_ns: int | None = None,
                 end_ns: int | None = None, tag_filter: dict[str, set[str]] | None = None,
                 footer: SegmentFooter | None = None, cache: ChunkCache | None = None) -> pa.Table:
    """Rows with start_ns <= time < end_ns whose series matches tag_filter, projected to
    `columns` (+ time). Decodes only the row groups and chunks it needs and verifies their CRCs.
    `footer`: the file's already checked footer (SegmentStore caches them); `cache`: decoded
    chunks to reuse and fill."""
    path = Path(path)
    with ChunkReader(path, cache) as reader:
        if footer is None:
            footer = _open_footer(reader)
        schema = output_schema(footer, columns)
        fields = [f.name for f in schema if f.name in footer.fields]
        rows = _read_rows(reader, footer, fields, start_ns, end_ns, tag_filter, None)
    return schema.empty_table() if rows is None else rows.to_table(schema)


def _open_footer(reader: ChunkReader) -> SegmentFooter:
    with open(reader.open(), "rb", buffering=0, closefd=False) as fh:
        return _read_footer(fh, reader.path, os.fstat(fh.fileno()).st_size)[0]


def read_segment_rows(path: Path, *, fields: list[str] | None = None, start_ns: int | None = None,
                      end_ns: int | None = None, tag_filter: dict[str, set[str]] | None = None,
                      footer: SegmentFooter | None = None, tail: int | None = None,
                      field_filter: Sequence[FieldCondition] = (),
                      cache: ChunkCache | None = None) -> SegmentRows | None:
    """As read_segment, but the rows stay columnar with series ids (None: no row selected).
    `fields`: field columns to decode (None: all; names the segment lacks are ignored).
    `tail`: keep only the last `tail` rows of each series among those with at least one
    requested field non-null (a row without any requested field counts when `fields` is []).
    `field_filter`: (field, op, number) conditions, all to hold (null: fails); the condition
    fields are decoded first per row group and the other columns only at matching rows. Rows
    sharing (series, time) with another row of the segment are kept whatever their values (the
    caller filters after merging them). Not combinable with `tail`."""
    if tail is not None and field_filter:
        raise ValueError(f"{path}: read_segment_rows takes tail or field_filter, not both")
    path = path if isinstance(path, Path) else Path(path)
    with ChunkReader(path, cache) as reader:
        if footer is None:
            footer = _open_footer(reader)
        names = sorted(footer.fields) if fields is None else [f for f in dict.fromkeys(fields) if f in footer.fields]
        return _read_rows(reader, footer, names, start_ns, end_ns, tag_filter, tail, field_filter)


def _group_series(footer: SegmentFooter, g: RowGroup) -> np.ndarray:
    """int64 series id of every row of the group, from the footer's series runs."""
    bounds = footer.series_rows[g.min_series:g.max_series + 2].astype(np.int64)
    bounds = np.clip(bounds, g.row_start, g.row_end)
    counts = np.diff(bounds)
    return np.repeat(np.arange(g.min_series, g.max_series + 1, dtype=np.int64), counts)


def _read_rows(reader: ChunkReader, footer: SegmentFooter, fields: list[str], start_ns: int | None,
               end_ns: int | None, tag_filter: dict[str, set[str]] | None, tail: int | None,
               field_filter: Sequence[FieldCondition] = ()) -> SegmentRows | None:
    lo = footer.min_time_ns if start_ns is None else max(start_ns, footer.min_time_ns)
    hi = footer.max_time_ns + 1 if end_ns is None else min(end_ns, footer.max_time_ns + 1)
    if lo >= hi:
        return None
    selection = series_selection(footer, tag_filter)
    if not selection.any:
        return None
    series_ok, all_series = selection.ok, selection.all
    need: np.ndarray | None = None
    if tail is not None:
        need = np.where(series_ok, int(tail), 0).astype(np.int64)
    groups = [footer.row_groups[i] for i in groups_touched(footer.group_stats(), selection.prefix, lo, hi).tolist()]
    reader.scan_resistant(sum(g.rows for g in groups), 1 + len(fields))
    if need is not None:
        groups.reverse()  # newest rows of each series first
    picked: list[tuple[RowGroup, np.ndarray, np.ndarray | slice, np.ndarray, dict[str, pa.Array]]] = []
    for g in groups:
        if need is not None and not need[g.min_series:g.max_series + 1].any():
            continue
        tc = g.chunks[(TIME_COLUMN, ROLE_TIME)]
        times = reader.decoded(tc, None)
        decoded: dict[str, pa.Array] = {}
        if need is None:  # rows by series runs and binary search on time: no per-row masks
            sel, sid_sel = _selected_rows(footer, g, series_ok, all_series, times, lo, hi)
            if field_filter and sid_sel is not None:
                sel, sid_sel = _filter_selected(reader, footer, g, field_filter, decoded, times, sel, sid_sel)
            if sid_sel is not None:
                picked.append((g, times[sel], sel, sid_sel, decoded))
            continue
        sid = _group_series(footer, g)
        mask: np.ndarray | None = None
        if not all_series:
            mask = series_ok[sid]
        if lo > g.min_time_ns or hi <= g.max_time_ns:
            in_range = (times >= lo) & (times < hi)
            mask = in_range if mask is None else mask & in_range
        mask = _tail_mask(reader, g, fields, sid, need, mask)
        if mask is None:
            sel: np.ndarray | slice = slice(None)
        else:
            idx = np.flatnonzero(mask)
            if len(idx) == 0:
                continue
            sel = slice(int(idx[0]), int(idx[-1]) + 1) if idx[-1] - idx[0] + 1 == len(idx) else idx
        picked.append((g, times[sel], sel, sid[sel], decoded))
    if need is not None:
        picked.reverse()
    if not picked:
        return None
    out_fields: dict[str, pa.Array] = {}
    for name in fields:
        pieces = [_pick(decoded[name], sel) if name in decoded else _read_field(reader, footer, g, name, sel)
                  for g, _t, sel, _s, decoded in picked]
        out_fields[name] = pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces)
    times = picked[0][1] if len(picked) == 1 else np.concatenate([p[1] for p in picked])
    sids = picked[0][3] if len(picked) == 1 else np.concatenate([p[3] for p in picked])
    return SegmentRows(footer, times, sids, out_fields)


@njit(cache=True, nogil=True)
def groups_touched(stats: np.ndarray, prefix: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Indexes of the row groups (stats: SegmentFooter.group_stats()) holding rows with
    lo <= time < hi of a selected series (prefix: SeriesSelection.prefix)."""
    out = np.empty(stats.shape[1], dtype=np.int64)
    k = 0
    for i in range(stats.shape[1]):
        if stats[1, i] >= lo and stats[0, i] < hi and prefix[stats[3, i] + 1] > prefix[stats[2, i]]:
            out[k] = i
            k += 1
    return out[:k]


def rows_to_decode(footer: SegmentFooter, start_ns: int, end_ns: int,
                   tag_filter: dict[str, set[str]] | None) -> int:
    """Rows of the row groups a read of [start_ns, end_ns) with tag_filter decodes (a cost
    estimate from the footer alone)."""
    if start_ns > footer.max_time_ns or end_ns <= footer.min_time_ns:
        return 0
    touched = groups_touched(footer.group_stats(), series_selection(footer, tag_filter).prefix, start_ns, end_ns)
    return sum(footer.row_groups[i].rows for i in touched.tolist())


def _selected_rows(footer: SegmentFooter, g: RowGroup, series_ok: np.ndarray, all_series: bool,
                   times: np.ndarray, lo: int, hi: int) -> tuple[slice | np.ndarray, np.ndarray | None]:
    """Rows of group g (group-relative) of matching series with lo <= time < hi, from the series
    runs and a binary search inside each run; a slice when contiguous. (sel, series id per row),
    the latter None when no row is selected."""
    clip = lo > g.min_time_ns or hi <= g.max_time_ns
    starts, ends, ids = selected_runs(footer.series_rows, g.min_series, g.max_series + 1, g.row_start,
                                      g.row_end, series_ok, all_series, times, lo, hi, clip)
    if len(starts) == 0:
        return slice(0, 0), None
    lengths = ends - starts
    sid = np.repeat(ids, lengths)
    if len(starts) == 1 or bool(np.all(ends[:-1] == starts[1:])):
        return slice(int(starts[0]), int(ends[-1])), sid
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(len(sid), dtype=np.int64), sid


@njit(cache=True, nogil=True)
def selected_runs(series_rows: np.ndarray, s0: int, s1: int, row_start: int, row_end: int,
                  series_ok: np.ndarray, all_series: bool, times: np.ndarray, lo: int, hi: int,
                  clip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-empty runs [start, end) (group-relative rows) of series s0 <= s < s1 in the row
    group [row_start, row_end) that are selected (series_ok[s] or all_series), clipped to
    lo <= time < hi by binary search when `clip`, and their series ids."""
    starts = np.empty(s1 - s0, dtype=np.int64)
    ends = np.empty(s1 - s0, dtype=np.int64)
    ids = np.empty(s1 - s0, dtype=np.int64)
    k = 0
    for s in range(s0, s1):
        if not all_series and not series_ok[s]:
            continue
        a = min(max(np.int64(series_rows[s]), row_start), row_end) - row_start
        b = min(max(np.int64(series_rows[s + 1]), row_start), row_end) - row_start
        if clip:
            run = times[a:b]
            a, b = a + np.searchsorted(run, lo), a + np.searchsorted(run, hi)
        if b > a:
            starts[k], ends[k], ids[k] = a, b, s
            k += 1
    return starts[:k], ends[:k], ids[:k]


def _filter_selected(reader: ChunkReader, footer: SegmentFooter, g: RowGroup,
                     conditions: Sequence[FieldCondition], decoded: dict[str, pa.Array], times: np.ndarray,
                     sel: slice | np.ndarray, sid: np.ndarray) -> tuple[slice | np.ndarray, np.ndarray | None]:
    """The selected rows whose field conditions hold; rows sharing (series, time) are all kept
    (the caller merges them before filtering again)."""
    hit = _condition_mask(reader, footer, g, conditions, decoded)[sel]
    t = times[sel]
    pairs = np.flatnonzero((t[1:] == t[:-1]) & (sid[1:] == sid[:-1]))
    hit[pairs] = True
    hit[pairs + 1] = True
    keep = np.flatnonzero(hit)
    if len(keep) == 0:
        return slice(0, 0), None
    rows = keep + sel.start if isinstance(sel, slice) else sel[keep]
    if rows[-1] - rows[0] + 1 == len(rows):
        return slice(int(rows[0]), int(rows[-1]) + 1), sid[keep]
    return rows, sid[keep]


FieldCondition = tuple[str, str, float | int]
"""(field, op, number): op one of > >= < <= = !=; compared as pyarrow.compute does."""
_COMPARE = {">": pc.greater, ">=": pc.greater_equal, "<": pc.less, "<=": pc.less_equal,
            "=": pc.equal, "!=": pc.not_equal}


def condition_mask(column: pa.Array | pa.ChunkedArray | None, op: str, value: float | int) -> np.ndarray:
    """bool per row of `column op value` (null or missing column: False)."""
    compare = _COMPARE.get(op)
    if compare is None:
        raise ValueError(f"unsupported field condition operator {op!r}")
    if column is None:
        return np.zeros(0, dtype=np.bool_)
    hit = compare(column, pa.scalar(value)).fill_null(False)
    return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=np.bool_)


def _condition_mask(reader: ChunkReader, footer: SegmentFooter, g: RowGroup,
                    conditions: Sequence[FieldCondition], decoded: dict[str, pa.Array]) -> np.ndarray:
    """bool per row of group g: every condition holds; decoded condition columns go to `decoded`."""
    hit = np.ones(g.rows, dtype=np.bool_)
    for name, op, value in conditions:
        if name not in footer.fields:
            condition_mask(None, op, value)  # still rejects an unknown operator
            hit[:] = False
            continue
        col = decoded.get(name)
        if col is None:
            col = decoded[name] = _read_field(reader, footer, g, name, slice(None))
        hit &= condition_mask(col, op, value)
    return hit


def _tail_mask(reader: ChunkReader, g: RowGroup, fields: list[str], sid: np.ndarray,
               need: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Rows of the group among the last need[s] qualifying rows of their series s; updates need."""
    ok = need[sid] > 0 if mask is None else mask & (need[sid] > 0)
    if fields and all((name, ROLE_VALIDITY) in g.chunks for name in fields):
        present = np.zeros(g.rows, dtype=np.bool_)
        for name in fields:
            vc = g.chunks[(name, ROLE_VALIDITY)]
            present |= reader.decoded(vc, None)
        ok &= present
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return ok
    s = sid[idx]
    # position of each selected row counted from the end of its series (0 = newest)
    last_of_series = np.searchsorted(s, s, side="right") - 1
    from_end = last_of_series - np.arange(len(idx))
    keep = from_end < need[s]
    kept = idx[keep]
    uniq, counts = np.unique(sid[kept], return_counts=True)
    need[uniq] -= counts
    out = np.zeros(g.rows, dtype=np.bool_)
    out[kept] = True
    return out


def _read_field(reader: ChunkReader, footer: SegmentFooter, g: RowGroup, name: str,
                sel: np.ndarray | slice) -> pa.Array:
    """The field column of row group g at the selected rows (nulls where absent)."""
    ftype = footer.fields[name]
    dc = g.chunks.get((name, ROLE_VALUES))
    if dc is None:
        raise SegmentCorrupt(reader.path, 0, f"row group {g.index} has no values chunk for {name!r}")
    values = reader.decoded(dc, ftype)
    vc = g.chunks.get((name, ROLE_VALIDITY))
    if vc is None:
        if dc.null_count != 0 or dc.count != g.rows:
            raise SegmentCorrupt(reader.path, dc.offset, f"values of {name!r} in row group {g.index}: {dc.count} "
                                                  f"values for {g.rows} rows and no validity chunk")
        return _pick(values, sel)
    valid = reader.decoded(vc, None)
    if len(valid) != g.rows or int((~valid).sum()) != vc.null_count:
        raise SegmentCorrupt(reader.path, vc.offset, f"validity of {name!r} disagrees with its null count")
    if vc.null_count == 0:
        return _pick(values, sel)
    position = np.cumsum(valid, dtype=np.int64) - 1
    position, valid = position[sel], valid[sel]
    return values.take(pa.array(position, mask=~valid, type=pa.int64()))


def _pick(values: pa.Array, sel: np.ndarray | slice) -> pa.Array:
    """values at the selected rows: zero-copy for a contiguous range, a take otherwise."""
    if isinstance(sel, slice):
        if sel.start is None:
            return values
        return values.slice(sel.start, sel.stop - sel.start)
    return values.take(pa.array(sel, type=pa.int64()))
