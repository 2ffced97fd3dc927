"""Read-only TableSource over every node's committed segments in the cloud: one logical database
per edge database, the node id as tag `node`, segments pruned by time, duplicates merged per node."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from query.influxql_exec import QueryError
from storage.batch import TIME_COLUMN, FieldType, TagSet
from storage.catalog import RetentionPolicy
from storage.compaction import merge_tables
from storage.engine import DatabaseNotFound, RetentionPolicyNotFound
from storage.namespaces import DEFAULT_RP, data_key, is_policy_key, keys_of_database, split_data_key
from storage.segment_format import (
    DROP_SCOPE_MEASUREMENT,
    SegmentCorrupt,
    SegmentFooter,
    read_footer,
    read_segment,
)
from sync.receiver import CommittedSegment, committed_segments

log = logging.getLogger(__name__)

NODE_TAG = "node"


@dataclass(frozen=True)
class CloudSegment:
    """A committed segment the query layer may read, with its decoded footer."""

    committed: CommittedSegment
    footer: SegmentFooter
    order: tuple[int, int]  # (first commit ns of its epoch, precedence): newer data wins

    @property
    def node(self) -> str:
        return self.committed.node


def _tag_sets(footer: SegmentFooter, node: str) -> set[TagSet]:
    out: set[TagSet] = set()
    for s in range(footer.series_count):
        tags = {k: footer.tag_values[i][int(footer.series_tags[i][s]) - 1]
                for i, k in enumerate(footer.tag_keys) if int(footer.series_tags[i][s]) != 0}
        tags[NODE_TAG] = node
        out.add(tuple(sorted(tags.items())))
    return out


@dataclass(frozen=True)
class DropMark:
    """A committed DROP tombstone: hides the (node, database[, measurement]) segments of its
    epoch with seq < below, and all of them in the node's earlier epochs."""

    node: str
    epoch: str
    epoch_start: int
    database: str
    measurement: str | None  # None: DROP DATABASE
    below: int
    seq: int = -1  # the tombstone's own seq (same node and epoch)


def _dropped(s: CloudSegment, drops: list[DropMark], epoch_start: dict[tuple[str, str], int]) -> bool:
    return bool(_drops_hiding(s, drops, epoch_start))


def _drops_hiding(s: CloudSegment, drops: list[DropMark],
                  epoch_start: dict[tuple[str, str], int]) -> list[DropMark]:
    c = s.committed
    out: list[DropMark] = []
    for d in drops:
        if d.node != c.node or d.database != c.database:
            continue
        if d.measurement is not None and d.measurement != c.measurement:
            continue
        if d.epoch == c.epoch:
            if c.seq < d.below:
                out.append(d)
        elif epoch_start[(c.node, c.epoch)] < d.epoch_start:
            out.append(d)
    return out


def _epoch_starts(committed: list[CommittedSegment]) -> dict[tuple[str, str], int]:
    """First commit time of each (node, epoch): orders a node's epochs."""
    epoch_start: dict[tuple[str, str], int] = {}
    for c in committed:
        key = (c.node, c.epoch)
        epoch_start[key] = min(epoch_start.get(key, c.committed_at_ns), c.committed_at_ns)
    return epoch_start


def _overlapping(segments: list[CloudSegment]) -> bool:
    """Could two of these segments hold the same (series, time)? (time ranges intersect)"""
    spans = sorted((s.committed.min_time_ns, s.committed.max_time_ns) for s in segments)
    return any(lo <= prev_hi for (_, prev_hi), (lo, _) in zip(spans, spans[1:], strict=False))


class CloudTableSource:
    """The cloud's query view. Reads the catalog (read-only SQLite) on each call, so segments
    committed by the receiver (in this or another process) show up at once; footers are cached
    (committed files are immutable). Segments hidden by a committed compaction output of the
    same (node, epoch) (its `replaces`) are not read."""

    def __init__(self, cloud_dir: Path) -> None:
        self.cloud_dir = Path(cloud_dir)
        self._footers: dict[Path, SegmentFooter] = {}
        self._lock = threading.Lock()
        self.corrupt_segments = 0

    # ------------------------------------------------------------ catalog view
    def _committed(self) -> list[CommittedSegment]:
        if not (self.cloud_dir / "catalog.sqlite").exists():
            return []
        try:
            return committed_segments(self.cloud_dir)
        except sqlite3.OperationalError as exc:
            raise QueryError(f"cloud catalog {self.cloud_dir / 'catalog.sqlite'} unreadable: {exc}") from exc

    def _footer(self, seg: CommittedSegment) -> SegmentFooter | None:
        with self._lock:
            cached = self._footers.get(seg.path)
        if cached is not None:
            return cached
        try:
            footer = read_footer(seg.path)
        except (SegmentCorrupt, OSError) as exc:
            self.corrupt_segments += 1
            log.error("cloud segment node=%s epoch=%s seq=%d unreadable, skipped: %s",
                      seg.node, seg.epoch, seg.seq, exc)
            return None
        with self._lock:
            self._footers[seg.path] = footer
        return footer

    def committed(self) -> list[CommittedSegment]:
        """One snapshot of the catalog (for `view` / `hidden_by` over a fixed set of segments)."""
        return self._committed()

    def segments(self, db: str | None = None, measurement: str | None = None) -> list[CloudSegment]:
        """Visible committed segments (of one database / measurement when given): not replaced
        by a committed rewrite of the same (node, epoch), not dropped by a DROP tombstone."""
        return self.view(self._committed(), db, measurement)

    def view(self, committed: list[CommittedSegment], db: str | None = None,
             measurement: str | None = None) -> list[CloudSegment]:
        """`segments()` over a given catalog snapshot."""
        epoch_start = _epoch_starts(committed)
        chosen = [c for c in committed
                  if (db is None or c.database == db) and (measurement is None or c.measurement == measurement)]
        drops = self._drops(committed, db, epoch_start)
        out: list[CloudSegment] = []
        replaced: set[tuple[str, str, int]] = set()
        for c in chosen:
            footer = self._footer(c)
            if footer is None:
                continue
            replaced.update((c.node, c.epoch, s) for s in footer.replaces)
            out.append(CloudSegment(c, footer, (epoch_start[(c.node, c.epoch)], footer.precedence)))
        return [s for s in out if (s.node, s.committed.epoch, s.committed.seq) not in replaced
                and not _dropped(s, drops, epoch_start)]

    def described(self, committed: list[CommittedSegment]) -> dict[tuple[str, str, int], CloudSegment]:
        """Every readable segment of the snapshot (visible or not) with its footer, keyed
        (node, epoch, seq)."""
        epoch_start = _epoch_starts(committed)
        out: dict[tuple[str, str, int], CloudSegment] = {}
        for c in committed:
            footer = self._footer(c)
            if footer is not None:
                out[(c.node, c.epoch, c.seq)] = CloudSegment(
                    c, footer, (epoch_start[(c.node, c.epoch)], footer.precedence))
        return out

    def hidden_by(self, committed: list[CommittedSegment]) -> dict[tuple[str, str, int], list[CloudSegment]]:
        """For each segment of the snapshot that the view hides, keyed (node, epoch, seq): the
        committed segments hiding it (rewrites listing it in `replaces`, covering DROP tombstones)."""
        epoch_start = _epoch_starts(committed)
        drops = self._drops(committed, None, epoch_start)
        by_key = self.described(committed)
        out: dict[tuple[str, str, int], list[CloudSegment]] = {}
        for (node, epoch, _seq), s in by_key.items():
            for r in s.footer.replaces:
                out.setdefault((node, epoch, r), []).append(s)
        for key, s in by_key.items():
            for d in _drops_hiding(s, drops, epoch_start):
                tomb = by_key.get((d.node, d.epoch, d.seq))
                if tomb is not None:
                    out.setdefault(key, []).append(tomb)
        return out

    def _drops(self, committed: list[CommittedSegment], db: str | None,
               epoch_start: dict[tuple[str, str], int]) -> list[DropMark]:
        """The DROP tombstones (zero-row segments whose footer has `drop`) of db (or all)."""
        marks: list[DropMark] = []
        for c in committed:
            if c.rows != 0 or (db is not None and c.database != db):
                continue
            footer = self._footer(c)
            if footer is None or not footer.drop:
                continue
            marks.append(DropMark(c.node, c.epoch, epoch_start[(c.node, c.epoch)], c.database,
                                  c.measurement if footer.drop == DROP_SCOPE_MEASUREMENT else None,
                                  footer.drop_below, c.seq))
        return marks

    # ------------------------------------------------------------ TableSource
    def databases(self) -> list[str]:
        """Databases with visible rows (every segment dropped or deleted: not listed)."""
        return sorted({split_data_key(key)[0] for key in self._keys_with_rows()})

    def _keys_with_rows(self) -> set[str]:
        """The namespaces (storage/namespaces.py) holding visible rows."""
        return {s.committed.database for s in self.segments() if s.committed.rows}

    def has_database(self, name: str) -> bool:
        return not is_policy_key(name) and bool(keys_of_database(name, self._keys_with_rows()))

    def data_keys(self, db: str) -> list[str]:
        return [data_key(db, p.name) for p in self.retention_policies(db)]

    def data_key(self, db: str, rp: str | None = None) -> str:
        """The namespace of db's rows under policy rp; the cloud knows no edge's default policy,
        so it is autogen (name another with `rp=` or FROM rp.measurement)."""
        policies = {p.name for p in self.retention_policies(db)}
        if not policies:
            raise DatabaseNotFound(db)
        if (rp or DEFAULT_RP) not in policies:
            raise RetentionPolicyNotFound(rp or DEFAULT_RP)
        return data_key(db, rp or DEFAULT_RP)

    def measurements(self, db: str) -> list[str]:
        return sorted({s.committed.measurement for s in self.segments(db) if s.committed.rows})

    def field_types(self, db: str, measurement: str) -> dict[str, FieldType]:
        return self._field_types(self.segments(db, measurement))

    @staticmethod
    def _field_types(segments: Iterable[CloudSegment]) -> dict[str, FieldType]:
        types: dict[str, FieldType] = {}
        for s in sorted(segments, key=lambda s: s.order):  # the oldest type wins, as the edge
            for name, ftype in s.footer.fields.items():
                types.setdefault(name, ftype)
        return dict(sorted(types.items()))

    def tag_keys(self, db: str, measurement: str) -> list[str]:
        keys = {k for s in self.segments(db, measurement) for k in s.footer.tag_keys}
        return sorted(keys | {NODE_TAG})

    def series(self, db: str, measurement: str) -> list[TagSet]:
        out: set[TagSet] = set()
        for s in self.segments(db, measurement):
            out |= _tag_sets(s.footer, s.node)
        return sorted(out)

    def retention_policies(self, db: str) -> list[RetentionPolicy]:
        """autogen (the default) and every policy the edges shipped rows of; [] for an unknown db."""
        keys = keys_of_database(db, self._keys_with_rows())
        if not keys:
            return []
        names = sorted({split_data_key(k)[1] for k in keys} - {DEFAULT_RP})
        return [RetentionPolicy(DEFAULT_RP, default=True), *(RetentionPolicy(n) for n in names)]

    def read(self, db: str, measurement: str, *, start_ns: int | None = None,
             end_ns: int | None = None, columns: list[str] | None = None,
             tag_filter: dict[str, set[str]] | None = None) -> pa.Table:
        """Rows of every node, time in [start_ns, end_ns), tag `node` added; reader shape
        (time, tags sorted, fields sorted). Duplicate (series, time) rows of one node resolve
        like the edge: per field the newest non-null value wins."""
        segments = self.segments(db, measurement)
        types = self._field_types(segments)
        all_tags = sorted({k for s in segments for k in s.footer.tag_keys} - {NODE_TAG})
        wanted_tags = [k for k in sorted([*all_tags, NODE_TAG]) if columns is None or k in columns]
        wanted_fields = [f for f in types if columns is None or f in columns]
        schema = pa.schema([pa.field(TIME_COLUMN, pa.timestamp("ns"), nullable=False)]
                           + [pa.field(k, pa.string()) for k in wanted_tags]
                           + [pa.field(f, types[f].arrow_type) for f in wanted_fields])
        filters = dict(tag_filter or {})
        nodes_allowed = filters.pop(NODE_TAG, None)
        by_node: dict[str, list[CloudSegment]] = {}
        for s in segments:
            c = s.committed
            if start_ns is not None and c.max_time_ns < start_ns:
                continue
            if end_ns is not None and c.min_time_ns >= end_ns:
                continue
            if nodes_allowed is not None and s.node not in nodes_allowed:
                continue
            by_node.setdefault(s.node, []).append(s)
        read_columns = [*all_tags, *wanted_fields]  # every tag: series identity for merging
        inner = pa.schema([pa.field(TIME_COLUMN, pa.timestamp("ns"), nullable=False)]
                          + [pa.field(k, pa.string()) for k in all_tags]
                          + [pa.field(f, types[f].arrow_type) for f in wanted_fields])
        pieces: list[pa.Table] = []
        for node, members in sorted(by_node.items()):
            members.sort(key=lambda s: s.order)
            tables: list[pa.Table] = []
            for s in members:
                try:
                    table = read_segment(s.committed.path, columns=read_columns, start_ns=start_ns,
                                         end_ns=end_ns, tag_filter=filters or None)
                except (SegmentCorrupt, OSError) as exc:
                    self.corrupt_segments += 1
                    log.error("cloud segment %s unreadable, skipped: %s", s.committed.path, exc)
                    continue
                if table.num_rows:
                    tables.append(conform(table, inner))
            if not tables:
                continue
            if len(tables) > 1 and _overlapping(members):
                rows = merge_tables(tables, measurement, all_tags)
            else:
                rows = pa.concat_tables(tables)
            rows = rows.append_column(NODE_TAG, pa.array([node] * rows.num_rows, type=pa.string())) \
                if NODE_TAG not in rows.column_names else \
                rows.set_column(rows.column_names.index(NODE_TAG), NODE_TAG,
                                pa.array([node] * rows.num_rows, type=pa.string()))
            pieces.append(conform(rows, schema))
        if not pieces:
            return schema.empty_table()
        return pa.concat_tables(pieces).combine_chunks()

    # ------------------------------------------------------------ the cloud view is read-only
    def create_database(self, name: str) -> None:
        raise QueryError("the cloud view is read-only: databases come from the edge nodes")

    def drop_database(self, name: str) -> None:
        raise QueryError("the cloud view is read-only: cannot drop a database")

    def drop_measurement(self, db: str, measurement: str) -> None:
        raise QueryError("the cloud view is read-only: cannot drop a measurement")


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns: missing ones null, others cast (values that do
    not convert become null rather than failing the whole query; logged)."""
    arrays: list[pa.Array | pa.ChunkedArray] = []
    for f in schema:
        if f.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(f.name)
        if col.type != f.type:
            try:
                col = pc.cast(col, f.type, safe=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                log.warning("column %s: %s does not convert to %s, read as null: %s",
                            f.name, col.type, f.type, exc)
                col = pa.nulls(table.num_rows, f.type)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)
