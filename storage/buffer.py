"""In-memory columnar write buffer per (database, measurement) with memory accounting, frozen
snapshots for flushing, the sorted, de-duplicated read view over its chunks and an unsorted numeric one."""

from __future__ import annotations

import threading
import time as _clock
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from storage.batch import TIME_COLUMN, Batch, FieldType, TagSet, series_key

MERGE_CAP_ROWS = 1 << 20  # chunks up to this many rows are merged with their neighbours
_SERIES_OVERHEAD_BYTES = 96
_NO_TIME = np.iinfo(np.int64).min
_END_OF_TIME = np.iinfo(np.int64).max
_ALL_ROWS_VALID = np.empty(0, dtype=np.bool_)


@njit(cache=True, nogil=True)
def note_rows(series_id: np.ndarray, time: np.ndarray, newest: np.ndarray) -> bool:
    """Raise newest[sid] to each row's time, in arrival order; True when some row is not newer
    than every earlier row of its series (a repeated (series, time), or an out-of-order row)."""
    repeated = False
    for i in range(time.shape[0]):
        s = series_id[i]
        if time[i] <= newest[s]:
            repeated = True
        else:
            newest[s] = time[i]
    return repeated


@njit(cache=True, nogil=True)
def select_rows(time: np.ndarray, series_id: np.ndarray, start: int, end: int, allowed: np.ndarray) -> np.ndarray:
    """Positions of the rows with start <= time < end whose series is allowed (allowed empty:
    every series)."""
    out = np.empty(time.shape[0], dtype=np.int64)
    n = 0
    check = allowed.shape[0] > 0
    for i in range(time.shape[0]):
        t = time[i]
        if t >= start and t < end and (not check or allowed[series_id[i]]):
            out[n] = i
            n += 1
    return out[:n]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Immutable rows of one measurement in arrival order; series ids are measurement-global."""

    series_id: np.ndarray  # int32
    time: np.ndarray  # int64 ns
    fields: dict[str, pa.Array]
    seq_min: int
    seq_max: int
    wal_file_min: int
    nbytes: int

    @property
    def rows(self) -> int:
        return int(self.time.shape[0])


def _chunk_bytes(series_id: np.ndarray, time: np.ndarray, fields: dict[str, pa.Array]) -> int:
    return int(series_id.nbytes + time.nbytes + sum(a.get_total_buffer_size() for a in fields.values()))


_TIMESTAMP_NS = pa.timestamp("ns")


def _timestamps(ns: np.ndarray) -> pa.Array:
    """int64 nanoseconds as an Arrow timestamp[ns] array, without a conversion pass."""
    ns = np.ascontiguousarray(ns, dtype=np.int64)
    return pa.Array.from_buffers(_TIMESTAMP_NS, ns.shape[0], [None, pa.py_buffer(ns)])


def _take(arr: pa.Array, idx: np.ndarray) -> pa.Array:
    """arr at positions idx: numpy indexing for null-free numbers (cheaper than Arrow's take on
    the few rows a dashboard reads), Arrow's take otherwise."""
    kind = arr.type
    if arr.null_count == 0 and (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
        return pa.array(arr.to_numpy(zero_copy_only=False)[idx], type=kind)
    return arr.take(idx)


def _fit(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """arr as `target` (only differs after a dropped-and-recreated field); null if uncastable."""
    if arr.type == target:
        return arr
    try:
        return arr.cast(target, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(arr), target)


def concat_chunks(chunks: list[Chunk]) -> Chunk:
    """One chunk holding the rows of `chunks` in order (missing fields filled with nulls)."""
    types: dict[str, pa.DataType] = {}
    for c in chunks:
        for name, arr in c.fields.items():
            types[name] = arr.type  # newest wins
    fields = {}
    for name, atype in types.items():
        pieces = [_fit(c.fields[name], atype) if name in c.fields else pa.nulls(c.rows, atype) for c in chunks]
        fields[name] = pa.concat_arrays(pieces)
    sid = np.concatenate([c.series_id for c in chunks])
    time = np.concatenate([c.time for c in chunks])
    return Chunk(
        series_id=sid,
        time=time,
        fields=fields,
        seq_min=min(c.seq_min for c in chunks),
        seq_max=max(c.seq_max for c in chunks),
        wal_file_min=min(c.wal_file_min for c in chunks),
        nbytes=_chunk_bytes(sid, time, fields),
    )


_MATCH_CACHE_ENTRIES = 256  # tag filter masks kept per measurement's series index


class SeriesIndex:
    """Append-only dictionary of a measurement's tag sets -> measurement-global ids, with cached
    per-series views (rank in series-key order, tag value columns). Readers use a prefix."""

    def __init__(self, measurement: str) -> None:
        self.measurement = measurement
        self.tagsets: list[TagSet] = []
        self.ids: dict[TagSet, int] = {}
        self._rank: tuple[int, np.ndarray] | None = None
        self._tag_columns: dict[str, tuple[int, pa.Array]] = {}
        self._matches: dict[tuple[int, frozenset[tuple[str, frozenset[str]]]], np.ndarray] = {}

    def map_ids(self, series: list[TagSet]) -> tuple[np.ndarray, int]:
        """Global ids for a batch's series list (per series, not per row) and bytes added."""
        out = np.empty(len(series), dtype=np.int32)
        added = 0
        for i, tags in enumerate(series):
            sid = self.ids.get(tags)
            if sid is None:
                sid = self.ids[tags] = len(self.tagsets)
                self.tagsets.append(tags)
                added += _SERIES_OVERHEAD_BYTES + sum(len(k) + len(v) for k, v in tags)
            out[i] = sid
        return out, added

    def rank(self, n: int) -> np.ndarray:
        """rank[sid] = position of series sid in series-key order, over the first n series."""
        cached = self._rank
        if cached is not None and cached[0] == n:
            return cached[1]
        keys = [series_key(self.measurement, t) for t in self.tagsets[:n]]
        order = sorted(range(n), key=keys.__getitem__)
        rank = np.empty(n, dtype=np.int64)
        rank[np.asarray(order, dtype=np.int64)] = np.arange(n, dtype=np.int64)
        self._rank = (n, rank)
        return rank

    def tag_column(self, key: str, n: int) -> pa.Array:
        """String array: value of tag `key` per series id (null where the series lacks it)."""
        cached = self._tag_columns.get(key)
        if cached is not None and cached[0] == n:
            return cached[1]
        col = pa.array([dict(t).get(key) for t in self.tagsets[:n]], type=pa.string())
        self._tag_columns[key] = (n, col)
        return col

    def matching(self, tag_filter: dict[str, set[str]], n: int) -> np.ndarray:
        """Boolean mask over series ids: every filtered tag has a value in its set (cached per
        filter and series count: dashboards repeat the same filters; the mask is read-only)."""
        cache_key = (n, frozenset((k, frozenset(v)) for k, v in tag_filter.items()))
        cached = self._matches.get(cache_key)
        if cached is not None:
            return cached
        if len(self._matches) >= _MATCH_CACHE_ENTRIES:
            self._matches.clear()
        keep = self._matches[cache_key] = self._match(tag_filter, n)
        keep.flags.writeable = False
        return keep

    def _match(self, tag_filter: dict[str, set[str]], n: int) -> np.ndarray:
        keep = np.ones(n, dtype=bool)
        for key, values in tag_filter.items():
            col = self.tag_column(key, n)
            hit = pc.is_in(col, value_set=pa.array(sorted(values), type=pa.string()))
            if "" in values:  # as the segment reader: `tag = ''` also matches series without it
                hit = pc.or_(hit, col.is_null())
            keep &= hit.to_numpy(zero_copy_only=False)
        return keep


@dataclass(frozen=True, eq=False)
class FrozenMeasurement:
    """An immutable snapshot of one measurement's buffered rows (for the segment flusher) and
    the WAL range it covers: records seq <= seq_max, in files >= wal_file_min."""

    db: str
    measurement: str
    chunks: tuple[Chunk, ...]
    series: SeriesIndex
    n_series: int
    seq_max: int
    wal_file_min: int
    nbytes: int
    active_since: float = 0.0  # monotonic time the oldest of these rows arrived

    def field_names(self) -> list[str]:
        """Fields that have a column in at least one frozen chunk."""
        return sorted({name for c in self.chunks for name in c.fields})

    def tag_keys(self) -> list[str]:
        """Tag keys used by the frozen series."""
        return sorted({k for tags in self.series.tagsets[: self.n_series] for k, _ in tags})

    def to_table(self, field_types: dict[str, FieldType], tag_keys: list[str]) -> pa.Table:
        """The rows in reader shape: sorted by (series key, time), duplicates merged."""
        return assemble(list(self.chunks), self.series, self.n_series, field_types, tag_keys)


class MeasurementBuffer:
    def __init__(self, measurement: str) -> None:
        self.series = SeriesIndex(measurement)
        self.active: list[Chunk] = []
        self.frozen: list[FrozenMeasurement] = []
        self.active_since = 0.0  # monotonic time the oldest active row arrived (0: no active rows)
        self.newest = np.full(0, _NO_TIME, dtype=np.int64)  # per series id: the newest time appended
        self.in_order = True
        """Every row appended since the buffer was last empty was newer than the earlier rows of its
        series: no (series, time) is held twice, so reads that need no order skip the sort."""

    def note(self, sid: np.ndarray, time: np.ndarray) -> None:
        n = len(self.series.tagsets)
        if self.newest.shape[0] < n:
            grown = np.full(max(n, 2 * self.newest.shape[0]), _NO_TIME, dtype=np.int64)
            grown[: self.newest.shape[0]] = self.newest
            self.newest = grown
        if note_rows(sid, time, self.newest):
            self.in_order = False

    def forget_order_if_empty(self) -> None:
        """An empty buffer starts a new in-order history."""
        if not self.active and not self.frozen:
            self.newest = np.full(0, _NO_TIME, dtype=np.int64)
            self.in_order = True

    def active_bytes(self) -> int:
        return sum(c.nbytes for c in self.active)


class WriteBuffer:
    """All buffered rows, per (db, measurement). Appends come from the WAL writer thread;
    reads, freeze and release from any thread (one lock guards the structure; chunks are
    immutable, so reads assemble outside the lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._m: dict[tuple[str, str], MeasurementBuffer] = {}
        self.bytes = 0
        self.rows = 0

    def append(self, db: str, batch: Batch, seq: int, wal_file_no: int, *, merge: bool = True) -> int:
        """Add a logged batch. merge=False (WAL replay) keeps one chunk per record so that
        discard_through() is exact; call compact() afterwards. Returns the measurement's
        active (unfrozen) bytes, for the flush policy."""
        n = len(batch)
        if n == 0:
            return 0
        with self._lock:
            mb = self._m.get((db, batch.measurement))
            if mb is None:
                mb = self._m[(db, batch.measurement)] = MeasurementBuffer(batch.measurement)
            local = np.asarray(batch.series_id, dtype=np.int64)
            used = np.unique(local)  # register only series that have rows here
            ids, series_bytes = mb.series.map_ids([batch.series[i] for i in used.tolist()])
            remap = np.full(len(batch.series), -1, dtype=np.int32)
            remap[used] = ids
            sid = remap[local]
            time = np.array(batch.time, dtype=np.int64, copy=True)
            fields = dict(batch.fields)
            chunk = Chunk(sid, time, fields, seq, seq, wal_file_no, _chunk_bytes(sid, time, fields))
            mb.note(sid, time)
            if not mb.active:
                mb.active_since = _clock.monotonic()
            mb.active.append(chunk)
            self.bytes += chunk.nbytes + series_bytes
            self.rows += n
            if merge:
                self._merge_tail(mb.active)
            return mb.active_bytes()

    def discard_through(self, db: str, measurement: str, seq: int) -> None:
        """Forget active chunks made only of records <= seq (replay of a `flushed` marker)."""
        with self._lock:
            mb = self._m.get((db, measurement))
            if mb is None:
                return
            gone = [c for c in mb.active if c.seq_max <= seq]
            mb.active = [c for c in mb.active if c.seq_max > seq]
            if not mb.active:
                mb.active_since = 0.0
            mb.forget_order_if_empty()
            self.bytes -= sum(c.nbytes for c in gone)
            self.rows -= sum(c.rows for c in gone)

    def compact(self) -> None:
        """Merge each measurement's active chunks into one (after replay)."""
        with self._lock:
            for mb in self._m.values():
                if len(mb.active) > 1:
                    merged = concat_chunks(mb.active)
                    self.bytes += merged.nbytes - sum(c.nbytes for c in mb.active)
                    mb.active = [merged]

    def _merge_tail(self, active: list[Chunk]) -> None:
        """Keep chunk counts logarithmic: merge the last two while the newer is at least half
        the older and the older is small (total copying O(n log n))."""
        while len(active) >= 2 and active[-2].rows < MERGE_CAP_ROWS and 2 * active[-1].rows >= active[-2].rows:
            a, b = active[-2], active[-1]
            merged = concat_chunks([a, b])
            active[-2:] = [merged]
            self.bytes += merged.nbytes - a.nbytes - b.nbytes

    def snapshot(self, db: str, measurement: str) -> tuple[list[Chunk], SeriesIndex, int] | None:
        return self.snapshot_in_order(db, measurement)[0]

    def snapshot_in_order(self, db: str, measurement: str
                          ) -> tuple[tuple[list[Chunk], SeriesIndex, int] | None, bool]:
        """snapshot(), and whether no (series, time) is in it twice (MeasurementBuffer.in_order),
        taken together under the lock."""
        with self._lock:
            mb = self._m.get((db, measurement))
            if mb is None:
                return None, True
            chunks = [c for fz in mb.frozen for c in fz.chunks] + list(mb.active)
            return (chunks, mb.series, len(mb.series.tagsets)), mb.in_order

    def ordered_snapshot(self, db: str, measurement: str) -> tuple[list[Chunk], SeriesIndex, int] | None:
        """snapshot() when no (series, time) is buffered twice, else None."""
        snap, in_order = self.snapshot_in_order(db, measurement)
        return snap if in_order else None

    def series(self, db: str, measurement: str) -> list[TagSet]:
        """Tag sets with at least one buffered row (DELETE may have removed all of a series'
        rows; the id stays in the index but InfluxDB no longer lists the series), in key order."""
        snap = self.snapshot(db, measurement)
        if snap is None:
            return []
        chunks, index, n = snap
        has_rows = np.zeros(n, dtype=np.bool_)
        for c in chunks:
            has_rows[c.series_id] = True
        rank = index.rank(n)
        order = np.argsort(rank, kind="stable")
        return [index.tagsets[i] for i in order.tolist() if has_rows[i]]

    def measurements(self, db: str) -> list[str]:
        with self._lock:
            return sorted(m for d, m in self._m if d == db)

    def measurements_with_rows(self, db: str) -> list[str]:
        """Measurements of db with at least one buffered row (DELETE may have removed all)."""
        with self._lock:
            return sorted(m for (d, m), mb in self._m.items() if d == db and (mb.active or mb.frozen))

    def databases(self) -> list[str]:
        """Keys (storage/namespaces.py) with buffered measurements."""
        with self._lock:
            return sorted({d for d, _m in self._m})

    def drop_database(self, db: str) -> None:
        with self._lock:
            for key in [k for k in self._m if k[0] == db]:
                self._forget(key)

    def drop_measurement(self, db: str, measurement: str) -> None:
        with self._lock:
            if (db, measurement) in self._m:
                self._forget((db, measurement))

    def _forget(self, key: tuple[str, str]) -> None:
        mb = self._m.pop(key)
        for c in mb.active:
            self.bytes -= c.nbytes
            self.rows -= c.rows
        for fz in mb.frozen:
            self.bytes -= fz.nbytes
            self.rows -= sum(c.rows for c in fz.chunks)
        self.bytes -= sum(_SERIES_OVERHEAD_BYTES + sum(len(k) + len(v) for k, v in t) for t in mb.series.tagsets)

    def freeze(self, db: str, measurement: str) -> FrozenMeasurement | None:
        """Hand out the measurement's current rows as an immutable snapshot; later appends go
        to fresh chunks. Frozen rows stay readable until release()."""
        with self._lock:
            mb = self._m.get((db, measurement))
            if mb is None or not mb.active:
                return None
            chunks = tuple(mb.active)
            mb.active = []
            since, mb.active_since = mb.active_since, 0.0
            fz = FrozenMeasurement(
                db=db,
                measurement=measurement,
                chunks=chunks,
                series=mb.series,
                n_series=len(mb.series.tagsets),
                seq_max=max(c.seq_max for c in chunks),
                wal_file_min=min(c.wal_file_min for c in chunks),
                nbytes=sum(c.nbytes for c in chunks),
                active_since=since,
            )
            mb.frozen.append(fz)
            return fz

    def unfreeze(self, frozen: FrozenMeasurement) -> None:
        """Undo freeze() after a failed flush: the frozen rows become active again, ahead of
        (older than) anything appended since, so arrival order is kept."""
        with self._lock:
            mb = self._m.get((frozen.db, frozen.measurement))
            if mb is None or not any(f is frozen for f in mb.frozen):
                return
            mb.frozen = [f for f in mb.frozen if f is not frozen]
            mb.active = list(frozen.chunks) + mb.active
            mb.active_since = min(frozen.active_since, mb.active_since or frozen.active_since)

    def flush_candidates(self) -> list[tuple[str, str, int, float]]:
        """(db, measurement, active bytes, monotonic arrival time of the oldest active row) for
        every measurement with unfrozen rows."""
        with self._lock:
            return [(db, m, mb.active_bytes(), mb.active_since) for (db, m), mb in self._m.items() if mb.active]

    def delete_rows(
        self,
        db: str,
        measurement: str | None,
        start_ns: int | None,
        end_ns: int | None,
        tag_filter: dict[str, set[str]] | None,
    ) -> int:
        """Remove active rows with start <= time < end whose series matches tag_filter (DELETE).
        Chunks keep their WAL range, so replay markers stay exact. Returns rows removed."""
        removed = 0
        with self._lock:
            for (d, m), mb in self._m.items():
                if d != db or (measurement is not None and m != measurement):
                    continue
                allowed = mb.series.matching(tag_filter, len(mb.series.tagsets)) if tag_filter else None
                kept: list[Chunk] = []
                for c in mb.active:
                    hit = np.ones(c.rows, dtype=bool)
                    if start_ns is not None:
                        hit &= c.time >= start_ns
                    if end_ns is not None:
                        hit &= c.time < end_ns
                    if allowed is not None:
                        hit &= allowed[c.series_id]
                    n_hit = int(hit.sum())
                    if n_hit == 0:
                        kept.append(c)
                        continue
                    removed += n_hit
                    self.rows -= n_hit
                    self.bytes -= c.nbytes
                    if n_hit == c.rows:
                        continue
                    rows = np.flatnonzero(~hit)
                    idx = pa.array(rows, type=pa.int64())
                    sid, tm = c.series_id[rows], c.time[rows]
                    fields = {k: v.take(idx) for k, v in c.fields.items()}
                    nc = Chunk(sid, tm, fields, c.seq_min, c.seq_max, c.wal_file_min, _chunk_bytes(sid, tm, fields))
                    self.bytes += nc.nbytes
                    kept.append(nc)
                mb.active = kept
                if not kept:
                    mb.active_since = 0.0
                mb.forget_order_if_empty()
        return removed

    def release(self, frozen: FrozenMeasurement) -> None:
        """Forget a frozen snapshot (its rows are durable elsewhere now)."""
        with self._lock:
            mb = self._m.get((frozen.db, frozen.measurement))
            if mb is None or not any(f is frozen for f in mb.frozen):
                return
            mb.frozen = [f for f in mb.frozen if f is not frozen]
            mb.forget_order_if_empty()
            self.bytes -= frozen.nbytes
            self.rows -= sum(c.rows for c in frozen.chunks)

    def oldest_wal_file(self) -> int | None:
        """Lowest WAL file number any buffered row came from (None: buffer empty)."""
        with self._lock:
            lows = [c.wal_file_min for mb in self._m.values() for c in mb.active]
            lows += [fz.wal_file_min for mb in self._m.values() for fz in mb.frozen]
        return min(lows) if lows else None

    def chunk_count(self) -> int:
        with self._lock:
            return sum(len(mb.active) + sum(len(f.chunks) for f in mb.frozen) for mb in self._m.values())


def _selections(chunks: list[Chunk], series: SeriesIndex, n_series: int, start_ns: int | None,
                end_ns: int | None, tag_filter: dict[str, set[str]] | None,
                ) -> list[tuple[Chunk, np.ndarray | None]]:
    """The chunks holding rows with start <= time < end of the series matching tag_filter, each
    with those rows' positions (None: all of its rows)."""
    if not tag_filter and start_ns is None and end_ns is None:
        return [(c, None) for c in chunks if c.rows]
    allowed = series.matching(tag_filter, n_series) if tag_filter else _ALL_ROWS_VALID
    start = _NO_TIME if start_ns is None else start_ns
    end = _END_OF_TIME if end_ns is None else end_ns
    out: list[tuple[Chunk, np.ndarray | None]] = []
    for c in chunks:
        idx = select_rows(c.time, c.series_id, start, end, allowed)
        if idx.shape[0]:
            out.append((c, None if idx.shape[0] == c.rows else idx))
    return out


def select_numeric(
    chunks: list[Chunk],
    series: SeriesIndex,
    n_series: int,
    field_types: dict[str, FieldType],
    fields: list[str],
    *,
    start_ns: int | None,
    end_ns: int | None,
    tag_filter: dict[str, set[str]] | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The rows start <= time < end of the series matching tag_filter, in no particular order,
    as numpy: (times, series ids, per numeric field (values with nulls as 0, validity; empty
    validity: no nulls)). Only for chunks without a repeated (series, time)
    (WriteBuffer.ordered_snapshot): nothing is merged."""
    picks = _selections(chunks, series, n_series, start_ns, end_ns, tag_filter)
    if not picks:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32), {}
    times = np.concatenate([c.time if idx is None else c.time[idx] for c, idx in picks])
    sids = np.concatenate([c.series_id if idx is None else c.series_id[idx] for c, idx in picks])
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in fields:
        atype = field_types[name].arrow_type
        values: list[np.ndarray] = []
        valids: list[np.ndarray] = []
        any_null = False
        for c, idx in picks:
            rows = slice(None) if idx is None else idx
            count = c.rows if idx is None else idx.shape[0]
            arr = c.fields.get(name)
            if arr is None:
                values.append(np.zeros(count, dtype=atype.to_pandas_dtype()))
                valids.append(np.zeros(count, dtype=np.bool_))
                any_null = True
                continue
            arr = _fit(arr, atype)
            if arr.null_count:
                any_null = True
                valids.append(np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)[rows])
                values.append(arr.fill_null(0).to_numpy(zero_copy_only=False)[rows])
            else:
                valids.append(np.ones(count, dtype=np.bool_))
                values.append(arr.to_numpy(zero_copy_only=False)[rows])
        joined = values[0] if len(values) == 1 else np.concatenate(values)
        columns[name] = (joined, (valids[0] if len(valids) == 1 else np.concatenate(valids)) if any_null
                         else _ALL_ROWS_VALID)
    return times, sids, columns


def empty_table(field_types: dict[str, FieldType], tag_keys: list[str], columns: list[str] | None = None) -> pa.Table:
    tags = [k for k in sorted(tag_keys) if columns is None or k in columns]
    fields = [f for f in sorted(field_types) if columns is None or f in columns]
    names = [TIME_COLUMN, *tags, *fields]
    types = [pa.timestamp("ns")] + [pa.string()] * len(tags) + [field_types[f].arrow_type for f in fields]
    return pa.Table.from_arrays([pa.array([], type=t) for t in types], names=names)


def assemble(
    chunks: list[Chunk],
    series: SeriesIndex,
    n_series: int,
    field_types: dict[str, FieldType],
    tag_keys: list[str],
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    columns: list[str] | None = None,
    tag_filter: dict[str, set[str]] | None = None,
) -> pa.Table:
    """Reader-shaped table over chunks (in arrival order): filtered by time [start, end) and
    tags, sorted by (series key, time), duplicate (series, time) merged so that per field the
    newest non-null value wins. Vectorised: one stable lexsort + reduceat per field."""
    return _assemble(chunks, series, n_series, field_types, tag_keys, start_ns, end_ns, columns, tag_filter)[0]


def assemble_runs(
    chunks: list[Chunk],
    series: SeriesIndex,
    n_series: int,
    field_types: dict[str, FieldType],
    tag_keys: list[str],
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    columns: list[str] | None = None,
    tag_filter: dict[str, set[str]] | None = None,
) -> tuple[pa.Table, list[str], np.ndarray]:
    """assemble(), plus the series key of each run of rows of one series and the run offsets
    (runs + 1 int64), so callers can merge with other sorted parts without re-deriving series."""
    table, sid = _assemble(chunks, series, n_series, field_types, tag_keys, start_ns, end_ns, columns, tag_filter)
    if sid is None or len(sid) == 0:
        return table, [], np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], sid[1:] != sid[:-1])))
    keys = [series_key(series.measurement, series.tagsets[s]) for s in sid[starts].tolist()]
    return table, keys, np.append(starts, len(sid)).astype(np.int64)


def assemble_series(
    chunks: list[Chunk],
    series: SeriesIndex,
    n_series: int,
    field_types: dict[str, FieldType],
    tag_keys: list[str],
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    columns: list[str] | None = None,
    tag_filter: dict[str, set[str]] | None = None,
) -> tuple[pa.Table, np.ndarray, list[TagSet]]:
    """assemble(), plus the buffer series id of every row and the tag set of every id."""
    table, sid = _assemble(chunks, series, n_series, field_types, tag_keys, start_ns, end_ns, columns, tag_filter)
    return table, (np.zeros(0, dtype=np.int64) if sid is None else sid), series.tagsets


def _assemble(
    chunks: list[Chunk],
    series: SeriesIndex,
    n_series: int,
    field_types: dict[str, FieldType],
    tag_keys: list[str],
    start_ns: int | None,
    end_ns: int | None,
    columns: list[str] | None,
    tag_filter: dict[str, set[str]] | None,
) -> tuple[pa.Table, np.ndarray | None]:
    tags = [k for k in sorted(tag_keys) if columns is None or k in columns]
    fields = [f for f in sorted(field_types) if columns is None or f in columns]
    sids: list[np.ndarray] = []
    times: list[np.ndarray] = []
    pieces: dict[str, list[pa.Array]] = {f: [] for f in fields}
    for c, idx in _selections(chunks, series, n_series, start_ns, end_ns, tag_filter):
        sids.append(c.series_id if idx is None else c.series_id[idx])
        times.append(c.time if idx is None else c.time[idx])
        rows = c.rows if idx is None else len(idx)
        for f in fields:
            atype = field_types[f].arrow_type
            arr = c.fields.get(f)
            if arr is None:
                pieces[f].append(pa.nulls(rows, atype))
            else:
                arr = _fit(arr, atype)
                pieces[f].append(arr if idx is None else _take(arr, idx))
    if not sids:
        return empty_table(field_types, tag_keys, columns), None
    sid = sids[0] if len(sids) == 1 else np.concatenate(sids)
    time = times[0] if len(times) == 1 else np.concatenate(times)
    key = series.rank(n_series)[sid]
    n = len(time)
    if n == 1 or (key[0] == key[-1] and bool(np.all(key == key[0])) and bool(np.all(time[1:] > time[:-1]))):
        order = np.arange(n, dtype=np.int64)  # one series, already in time order (a dashboard's read)
        key_sorted, time_sorted, starts = key, time, order
    else:
        order = np.lexsort((time, key))  # stable: equal (key, time) stay in arrival order
        key_sorted = key[order]
        time_sorted = time[order]
        new_group = np.empty(n, dtype=bool)
        new_group[0] = True
        np.not_equal(key_sorted[1:], key_sorted[:-1], out=new_group[1:])
        new_group[1:] |= time_sorted[1:] != time_sorted[:-1]
        starts = np.flatnonzero(new_group)
    has_duplicates = len(starts) < n
    out_sid = sid[order[starts]]
    arrays: list[pa.Array] = [_timestamps(time_sorted[starts])]
    sid_index = pa.array(out_sid, type=pa.int32())
    for k in tags:
        arrays.append(series.tag_column(k, n_series).take(sid_index))
    in_order = not has_duplicates and bool(np.all(order[1:] > order[:-1]))
    order_index = pa.array(order, type=pa.int64())
    for f in fields:
        arr = pieces[f][0] if len(pieces[f]) == 1 else pa.concat_arrays(pieces[f])
        if not has_duplicates:
            arrays.append(arr if in_order else arr.take(order_index))
            continue
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        pos = np.where(valid[order], np.arange(n, dtype=np.int64), -1)
        last = np.maximum.reduceat(pos, starts)  # last valid row of each group (newest)
        missing = last < 0
        src = order[np.where(missing, 0, last)]
        arrays.append(arr.take(pa.array(src, type=pa.int64(), mask=missing)))
    return pa.Table.from_arrays(arrays, names=[TIME_COLUMN, *tags, *fields]), out_sid
