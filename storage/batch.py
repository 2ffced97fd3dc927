"""The Batch: the one columnar structure every layer passes (parser -> WAL -> buffer -> segments).

Owns field types, their Arrow mapping and the canonical series key; no I/O here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import pyarrow as pa

TagSet = tuple[tuple[str, str], ...]
"""A series' tags: (key, value) pairs sorted by key, no empty keys or values."""


class FieldType(IntEnum):
    """Line-protocol field types. The numbers are stored on disk (WAL, segments): never renumber."""

    FLOAT = 1
    INTEGER = 2
    UNSIGNED = 3
    STRING = 4
    BOOLEAN = 5

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self]

    @property
    def influx_name(self) -> str:
        """The name InfluxDB uses in errors and SHOW FIELD KEYS: float, integer, ..."""
        return _INFLUX_NAMES[self]

    @classmethod
    def from_arrow(cls, arrow_type: pa.DataType) -> FieldType:
        for ftype, atype in _ARROW_TYPES.items():
            if atype == arrow_type:
                return ftype
        if pa.types.is_large_string(arrow_type):
            return cls.STRING
        raise TypeError(f"no line-protocol field type for Arrow type {arrow_type}")


_ARROW_TYPES = {
    FieldType.FLOAT: pa.float64(),
    FieldType.INTEGER: pa.int64(),
    FieldType.UNSIGNED: pa.uint64(),
    FieldType.STRING: pa.string(),
    FieldType.BOOLEAN: pa.bool_(),
}
_INFLUX_NAMES = {
    FieldType.FLOAT: "float",
    FieldType.INTEGER: "integer",
    FieldType.UNSIGNED: "unsigned",
    FieldType.STRING: "string",
    FieldType.BOOLEAN: "boolean",
}

TIME_COLUMN = "time"
TAG_KEYS_METADATA = "edgets:tag_keys"
"""Arrow schema metadata key listing which string columns are tags (JSON list)."""
MIN_TIME_NS = -9223372036854775806  # 1677-09-21T00:12:43.145224194Z, as InfluxDB
MAX_TIME_NS = 9223372036854775806  # 2262-04-11T23:47:16.854775806Z


def series_key(measurement: str, tags: TagSet) -> str:
    """Canonical series key `measurement,k1=v1,k2=v2` with line-protocol escaping."""
    parts = [_escape(measurement, ", ")]
    parts.extend(f"{_escape(k, ',= ')}={_escape(v, ',= ')}" for k, v in tags)
    return ",".join(parts)


def _escape(text: str, specials: str) -> str:
    for ch in specials:
        text = text.replace(ch, "\\" + ch)
    return text


@dataclass(slots=True)
class Batch:
    """Points of one measurement, as equal-length columns.

    `series[i]` is the tag set of series id i; `series_id[r]` and `time[r]` describe row r;
    each `fields[name]` is a nullable Arrow array of that field's type with one slot per row
    (null where the point did not carry the field). `line` (optional) is the 1-based source
    line of each row, for error messages. Rows are in arrival order; later rows win on
    duplicate (series, time).
    """

    measurement: str
    series: list[TagSet]
    series_id: np.ndarray  # int32, shape (n,)
    time: np.ndarray  # int64 ns since epoch, shape (n,)
    fields: dict[str, pa.Array] = field(default_factory=dict)
    line: np.ndarray | None = None  # int32, shape (n,)

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def field_types(self) -> dict[str, FieldType]:
        return {name: FieldType.from_arrow(arr.type) for name, arr in self.fields.items()}

    def field_value_count(self) -> int:
        """Number of non-null field values (InfluxDB's 'fields written')."""
        return sum(len(arr) - arr.null_count for arr in self.fields.values())

    def take(self, rows: np.ndarray) -> Batch:
        """A Batch of the given row indices (series dictionary kept as is)."""
        idx = pa.array(rows, type=pa.int64())
        return Batch(
            measurement=self.measurement,
            series=self.series,
            series_id=self.series_id[rows],
            time=self.time[rows],
            fields={k: v.take(idx) for k, v in self.fields.items()},
            line=None if self.line is None else self.line[rows],
        )

    def tag_keys(self) -> list[str]:
        keys: set[str] = set()
        for tags in self.series:
            keys.update(k for k, _ in tags)
        return sorted(keys)

    def to_arrow(self) -> pa.Table:
        """Reader shape: `time` (timestamp ns), one string column per tag key, then fields."""
        keys = self.tag_keys()
        cols: dict[str, pa.Array] = {TIME_COLUMN: pa.array(self.time, type=pa.timestamp("ns"))}
        sid = self.series_id
        for key in keys:
            per_series = [dict(tags).get(key) for tags in self.series]
            dictionary = pa.array(per_series, type=pa.string())
            cols[key] = dictionary.take(pa.array(sid, type=pa.int32()))
        for name in sorted(self.fields):
            cols[name] = self.fields[name]
        return pa.table(cols).replace_schema_metadata({TAG_KEYS_METADATA: json.dumps(keys)})
