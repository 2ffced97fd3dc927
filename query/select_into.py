"""SELECT ... INTO: the result series of a SELECT become points written through a storage write.

Owns the row -> point conversion (tags from GROUP BY, every other column a field, nulls skipped,
one Arrow type per column) and InfluxDB 1.x's answer: one `result` row of points `written`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from query.results import Series
from storage.batch import Batch, TagSet

WRITE_ROWS = 50_000  # rows per write call: a large INTO is written in bounded slices
_INT64_MAX = (1 << 63) - 1


class WriteResult(Protocol):
    points_written: int
    dropped: int
    errors: list[str]


PointsWriter = Callable[[str, list[Batch], str | None], WriteResult]
"""(database, batches, retention policy or None) -> outcome: StorageEngine.write."""


@dataclass
class _MeasurementPoints:
    """Points of one target measurement collected column-wise (None where a field is absent)."""

    series: dict[TagSet, int] = field(default_factory=dict)
    series_id: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    fields: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, tags: TagSet, time_ns: int, values: dict[str, Any]) -> None:
        sid = self.series.setdefault(tags, len(self.series))
        row = len(self.times)
        self.series_id.append(sid)
        self.times.append(time_ns)
        for name, column in self.fields.items():
            column.append(values.pop(name, None))
        for name, value in values.items():  # a field this measurement has not had yet
            self.fields[name] = [None] * row + [value]

    def batch(self, measurement: str) -> Batch:
        return Batch(measurement, list(self.series), np.asarray(self.series_id, dtype=np.int32),
                     np.asarray(self.times, dtype=np.int64),
                     {name: _column(values) for name, values in self.fields.items()})


def _column(values: list[Any]) -> pa.Array:
    """One Arrow array per field: float when any value is a float (an int fill value among float
    aggregates stays a float field, as InfluxDB), else int64 / uint64 / bool / string."""
    present = [v for v in values if v is not None]
    if any(isinstance(v, bool | np.bool_) for v in present):
        return pa.array(values, pa.bool_())
    if any(isinstance(v, str) for v in present):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    if any(isinstance(v, float | np.floating) for v in present):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if any(int(v) > _INT64_MAX for v in present):
        return pa.array(values, pa.uint64())
    return pa.array([None if v is None else int(v) for v in values], pa.int64())


def result_batches(series: Iterable[Series], measurement: str | None) -> list[Batch]:
    """Points of the SELECT result: into `measurement`, or (None: `:MEASUREMENT`) into the
    measurement each series came from. GROUP BY tags stay tags (empty ones are left out);
    every other column is a field; a row whose fields are all null is no point."""
    targets: dict[str, _MeasurementPoints] = {}
    for s in series:
        name = measurement or s.name or ""
        tags: TagSet = tuple(sorted((k, v) for k, v in (s.tags or {}).items() if v != ""))
        columns = s.columns[1:]
        points = targets.setdefault(name, _MeasurementPoints())
        for row in s.rows():
            values = {c: v for c, v in zip(columns, row[1:], strict=True) if v is not None}
            if values:
                points.add(tags, int(row[0]), values)
    batches: list[Batch] = []
    for name, points in targets.items():
        if not points.times:
            continue
        whole = points.batch(name)
        for start in range(0, len(whole), WRITE_ROWS):
            batches.append(whole.take(np.arange(start, min(start + WRITE_ROWS, len(whole)))))
    return batches


def write_result(writer: PointsWriter, db: str, rp: str | None, batches: list[Batch]) -> Series:
    """Write the batches one call at a time; InfluxDB's answer: time 0, points written. A write
    that drops points (field type conflicts, points beyond the retention policy) raises
    ValueError with the storage's reasons after writing what it could."""
    written = dropped = 0
    errors: list[str] = []
    for batch in batches:
        outcome = writer(db, [batch], rp)
        written += outcome.points_written
        dropped += outcome.dropped
        errors.extend(e for e in outcome.errors if e not in errors)
    if errors:
        raise ValueError(f"partial write: {'; '.join(errors)} dropped={dropped}")
    return Series("result", ["time", "written"], [[0, written]])
