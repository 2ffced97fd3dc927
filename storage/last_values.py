"""Latest-value cache: per (db, measurement, series) the newest non-null value and time of every
field, kept current from applied write batches; serves last_rows(n=1) without reading segments."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.batch import TIME_COLUMN, Batch, TagSet, series_key

NO_TIME = np.iinfo(np.int64).min  # a field that never had a value in the series


class _FieldLast:
    """Newest non-null value of one field per series id (capacity-grown arrays)."""

    def __init__(self, arrow_type: pa.DataType, capacity: int) -> None:
        self.type = arrow_type
        self.is_string = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
        self.time = np.full(capacity, NO_TIME, dtype=np.int64)
        dtype = object if self.is_string else arrow_type.to_pandas_dtype()
        self.values = np.zeros(capacity, dtype=dtype)

    def grow(self, capacity: int) -> None:
        if capacity <= len(self.time):
            return
        time = np.full(capacity, NO_TIME, dtype=np.int64)
        time[: len(self.time)] = self.time
        values = np.zeros(capacity, dtype=self.values.dtype)
        values[: len(self.values)] = self.values
        self.time, self.values = time, values

    def store(self, sids: np.ndarray, times: np.ndarray, values: pa.Array) -> None:
        self.time[sids] = times
        if self.is_string:
            self.values[sids] = np.array(values.to_pylist(), dtype=object)
        else:
            self.values[sids] = values.to_numpy(zero_copy_only=False)


class MeasurementLastValues:
    """The cache of one measurement: a series dictionary and one _FieldLast per field."""

    def __init__(self, measurement: str) -> None:
        self.measurement = measurement
        self.ids: dict[TagSet, int] = {}
        self.tagsets: list[TagSet] = []
        self.fields: dict[str, _FieldLast] = {}
        self._capacity = 0
        self._rank: tuple[int, np.ndarray] | None = None
        self._tag_columns: dict[str, tuple[int, pa.Array]] = {}

    def _ids_of(self, series: list[TagSet]) -> np.ndarray:
        out = np.empty(len(series), dtype=np.int64)
        for i, tags in enumerate(series):
            sid = self.ids.get(tags)
            if sid is None:
                sid = self.ids[tags] = len(self.tagsets)
                self.tagsets.append(tags)
            out[i] = sid
        if len(self.tagsets) > self._capacity:
            self._capacity = max(16, 2 * len(self.tagsets))
            for fl in self.fields.values():
                fl.grow(self._capacity)
        return out

    def _field(self, name: str, arrow_type: pa.DataType) -> _FieldLast | None:
        fl = self.fields.get(name)
        if fl is None:
            fl = self.fields[name] = _FieldLast(arrow_type, self._capacity)
        return fl if fl.type == arrow_type else None

    def apply(self, batch: Batch) -> bool:
        """Fold a logged batch in (later rows win on equal times). False: a field changed type
        (the caller drops the entry and rebuilds it)."""
        n = len(batch)
        if n == 0:
            return True
        local = np.asarray(batch.series_id, dtype=np.int64)
        used = np.unique(local)
        remap = np.full(len(batch.series), -1, dtype=np.int64)
        remap[used] = self._ids_of([batch.series[i] for i in used.tolist()])
        sid = remap[local]
        times = np.asarray(batch.time, dtype=np.int64)
        dense_pick: np.ndarray | None = None  # newest row per series when every row counts
        for name, arr in batch.fields.items():
            fl = self._field(name, arr.type)
            if fl is None:
                return False
            if arr.null_count == 0:
                if dense_pick is None:
                    dense_pick = _newest_per_series(np.arange(n, dtype=np.int64), sid, times)
                rows = dense_pick
            else:
                valid = np.flatnonzero(np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_))
                if len(valid) == 0:
                    continue
                rows = _newest_per_series(valid, sid[valid], times[valid])
            s, t = sid[rows], times[rows]
            newer = t >= fl.time[s]
            if not newer.all():
                rows, s, t = rows[newer], s[newer], t[newer]
            if len(rows):
                fl.store(s, t, arr.take(pa.array(rows, type=pa.int64())))
        return True

    def load(self, table: pa.Table, tag_keys: list[str], fields: list[str]) -> list[str]:
        """Take each row of a last_rows(n=1) answer (one row per series) as the newest values of
        its non-null `fields`; returns the fields left null in some row (to be loaded alone)."""
        if table.num_rows == 0:
            return []
        tag_values = [table.column(k).to_pylist() if k in table.column_names else [None] * table.num_rows
                      for k in tag_keys]
        series = [tuple((k, vals[r]) for k, vals in zip(tag_keys, tag_values, strict=True) if vals[r])
                  for r in range(table.num_rows)]
        sid = self._ids_of(series)  # type: ignore[arg-type]
        times = table.column(TIME_COLUMN).combine_chunks().cast(pa.int64()).to_numpy()
        unresolved = []
        for name in fields:
            col = table.column(name).combine_chunks()
            fl = self._field(name, col.type)
            if fl is None:
                raise TypeError(f"last-value cache of {self.measurement}: field {name!r} read as {col.type}")
            valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
            rows = np.flatnonzero(valid)
            if len(rows) < len(valid):
                unresolved.append(name)
            fl.store(sid[rows], times[rows], col.take(pa.array(rows, type=pa.int64())))
        return unresolved

    def _series_rank(self) -> np.ndarray:
        n = len(self.tagsets)
        if self._rank is None or self._rank[0] != n:
            keys = [series_key(self.measurement, t) for t in self.tagsets]
            self._rank = (n, np.array(sorted(range(n), key=keys.__getitem__), dtype=np.int64))
        return self._rank[1]

    def _tag_column(self, key: str) -> pa.Array:
        n = len(self.tagsets)
        cached = self._tag_columns.get(key)
        if cached is None or cached[0] != n:
            cached = (n, pa.array([dict(t).get(key) for t in self.tagsets], type=pa.string()))
            self._tag_columns[key] = cached
        return cached[1]

    def newest_rows(self, fields: list[str], field_types: list[pa.DataType], tags_out: list[str],
                    tag_filter: dict[str, set[str]] | None, start_ns: int | None,
                    end_ns: int | None) -> pa.Table | None:
        """last_rows(n=1) in read() shape for non-empty `fields`; None when end_ns cuts off a
        newest row (the caller reads instead)."""
        order = self._series_rank()  # series ids in series-key order
        newest = np.full(len(order), NO_TIME, dtype=np.int64)
        for name in fields:
            fl = self.fields.get(name)
            if fl is not None:
                np.maximum(newest, fl.time[order], out=newest)
        keep = newest != NO_TIME
        if start_ns is not None:
            keep &= newest >= start_ns
        for key, values in (tag_filter or {}).items():
            col = self._tag_column(key).take(pa.array(order, type=pa.int64()))
            hit = pc.is_in(col, value_set=pa.array(sorted(values), type=pa.string()))
            if "" in values:  # `tag = ''` also matches series without the tag
                hit = pc.or_(hit, col.is_null())
            keep &= np.asarray(hit.to_numpy(zero_copy_only=False), dtype=np.bool_)
        sel = order[keep]
        times = newest[keep]
        if end_ns is not None and len(times) and int(times.max()) >= end_ns:
            return None
        idx = pa.array(sel, type=pa.int64())
        arrays: list[pa.Array] = [pa.array(times, type=pa.timestamp("ns"))]
        arrays += [self._tag_column(k).take(idx) for k in tags_out]
        for name, atype in zip(fields, field_types, strict=True):
            fl = self.fields.get(name)
            if fl is None:
                arrays.append(pa.nulls(len(sel), atype))
                continue
            present = fl.time[sel] == times
            if fl.is_string:
                values = fl.values[sel].tolist()
                arr = pa.array([v if p else None for v, p in zip(values, present.tolist(), strict=True)],
                               type=fl.type)
            else:
                arr = pa.array(fl.values[sel], mask=~present, type=fl.type)
            arrays.append(arr if arr.type == atype else arr.cast(atype, safe=False))
        return pa.Table.from_arrays(arrays, names=[TIME_COLUMN, *tags_out, *fields])


def _newest_per_series(rows: np.ndarray, sid: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Of `rows` (ascending, with their series ids and times), the last row of the newest time
    of each series."""
    order = np.lexsort((rows, times, sid))
    s = sid[order]
    last = np.flatnonzero(np.concatenate((s[1:] != s[:-1], [True])))
    return rows[order[last]]


@dataclass(eq=False)
class _Entry:
    values: MeasurementLastValues
    store_epoch: int  # SegmentStore.removal_epoch when the build started
    building: bool = True
    pending: list[Batch] = field(default_factory=list)  # batches applied while building


class LastValueCache:
    """The cache of every measurement, built lazily (build_begin/build_end around a read of the
    newest rows) and updated by apply() in the engine's write-apply thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}

    def apply(self, db: str, batch: Batch) -> None:
        key = (db, batch.measurement)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            if entry.building:
                entry.pending.append(batch)
            elif not entry.values.apply(batch):
                del self._entries[key]

    def invalidate(self, db: str, measurement: str | None = None) -> None:
        """Forget a measurement (None: every measurement of db); rebuilt at its next use."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == db and measurement in (None, k[1])]:
                del self._entries[key]

    def build_begin(self, db: str, measurement: str, store_epoch: int) -> _Entry:
        """Start a rebuild: batches applied from now on are kept until build_end."""
        entry = _Entry(MeasurementLastValues(measurement), store_epoch)
        with self._lock:
            self._entries[(db, measurement)] = entry
        return entry

    def build_end(self, db: str, measurement: str, entry: _Entry) -> None:
        """Install a rebuilt entry (unless invalidated meanwhile), folding in pending batches."""
        with self._lock:
            if self._entries.get((db, measurement)) is not entry:
                return
            for batch in entry.pending:
                if not entry.values.apply(batch):
                    del self._entries[(db, measurement)]
                    return
            entry.pending = []
            entry.building = False

    def abandon(self, db: str, measurement: str, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get((db, measurement)) is entry:
                del self._entries[(db, measurement)]

    def newest_rows(self, db: str, measurement: str, store_epoch: int, fields: list[str],
                    field_types: list[pa.DataType], tags_out: list[str],
                    tag_filter: dict[str, set[str]] | None, start_ns: int | None,
                    end_ns: int | None) -> tuple[bool, pa.Table | None]:
        """(built, table): built False when the entry is missing, building or stale."""
        with self._lock:
            entry = self._entries.get((db, measurement))
            if entry is None or entry.building or entry.store_epoch != store_epoch:
                return False, None
            return True, entry.values.newest_rows(fields, field_types, tags_out, tag_filter, start_ns, end_ns)
