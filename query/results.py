"""InfluxDB /query result shapes: series objects, time formatting per epoch, chunking and CSV.

Internally times are int64 ns; this module turns them into RFC3339Nano strings or epoch ints.
"""

from __future__ import annotations

import gc
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numba import njit

EPOCH_UNITS_NS = {
    "ns": 1, "n": 1, "u": 1_000, "µ": 1_000, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "m": 60_000_000_000, "h": 3_600_000_000_000,
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class Series:
    """One result series; `values` rows hold the time (int ns) in column 0 when columns[0]=='time'."""

    name: str | None
    columns: list[str]
    values: list[list[Any]] = field(default_factory=list)
    tags: dict[str, str] | None = None
    tz: str | None = None  # tz() of the statement: RFC3339 output in this zone
    # columnar rows (large raw results): int64 ns times and one list of JSON-ready values per
    # column after time; when set, `values` is unused
    times: np.ndarray | None = None
    value_columns: list[list[Any]] | None = None

    def rows(self) -> list[list[Any]]:
        """Rows with int ns times, whichever form the series holds."""
        if self.times is None or self.value_columns is None:
            return self.values
        return list(map(list, zip(self.times.tolist(), *self.value_columns, strict=True)))

    def to_json(self, epoch: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        if self.tags is not None:
            out["tags"] = self.tags
        out["columns"] = list(self.columns)
        if self.times is not None and self.value_columns is not None:
            times = format_times(self.times, epoch, self.tz)
            collecting = gc.isenabled()
            gc.disable()  # many small lists, no cycles: cyclic GC passes would dominate the cost
            try:
                out["values"] = list(map(list, zip(times, *self.value_columns, strict=True)))
            finally:
                if collecting:
                    gc.enable()
        elif self.columns and self.columns[0] == "time" and self.values:
            times = format_times(np.array([row[0] for row in self.values], dtype=np.int64), epoch, self.tz)
            out["values"] = [[t, *row[1:]] for t, row in zip(times, self.values, strict=True)]
        elif self.values:  # InfluxDB leaves "values" out of a series without rows
            out["values"] = [list(row) for row in self.values]
        return out


def format_time(ns: int, epoch: str | None, tz: str | None = None) -> int | str:
    """InfluxDB's time column: epoch ints (truncated like Go) or RFC3339Nano strings."""
    if epoch:
        unit = EPOCH_UNITS_NS.get(epoch, 1)
        return int(ns / unit) if ns < 0 else ns // unit
    return rfc3339nano(ns, tz)


def format_times(ns: np.ndarray, epoch: str | None, tz: str | None = None) -> list[Any]:
    """format_time over an int64 array, vectorised (epoch units, UTC RFC3339Nano)."""
    if epoch:
        unit = EPOCH_UNITS_NS.get(epoch, 1)
        if unit == 1:
            return ns.tolist()
        return np.where(ns < 0, -((-ns) // unit), ns // unit).tolist()  # Go truncates toward 0
    if tz:
        return [rfc3339nano(t, tz) for t in ns.tolist()]
    if ns.shape[0] == 0:
        return []
    secs = ns // 1_000_000_000
    if bool(np.all(ns == secs * 1_000_000_000)):  # whole seconds: fixed-width rows, one conversion
        return rfc3339_seconds(secs).view("S20").ravel().astype("U20").tolist()
    return rfc3339_nano_lines(np.ascontiguousarray(ns, dtype=np.int64)).tobytes().decode("ascii").split("\n")


@njit(cache=True, nogil=True)
def _put_digits(row: np.ndarray, at: int, value: int, width: int) -> None:
    """ASCII decimal digits of `value` (>= 0), zero-padded to `width`, into row[at:at + width]."""
    for k in range(width - 1, -1, -1):
        row[at + k] = 48 + value % 10
        value //= 10


@njit(cache=True, nogil=True)
def _put_datetime(row: np.ndarray, at: int, s: int) -> None:
    """'YYYY-MM-DDTHH:MM:SS' of second `s` since the epoch (UTC, years 0-9999; proleptic
    Gregorian civil date from the day number) into row[at:at + 19]."""
    days = s // 86400
    sod = s - days * 86400
    z = days + 719468  # days since 0000-03-01
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    _put_digits(row, at, year, 4)
    row[at + 4] = 45  # '-'
    _put_digits(row, at + 5, month, 2)
    row[at + 7] = 45
    _put_digits(row, at + 8, day, 2)
    row[at + 10] = 84  # 'T'
    _put_digits(row, at + 11, sod // 3600, 2)
    row[at + 13] = 58  # ':'
    _put_digits(row, at + 14, sod % 3600 // 60, 2)
    row[at + 16] = 58
    _put_digits(row, at + 17, sod % 60, 2)


@njit(cache=True, nogil=True)
def rfc3339_seconds(secs: np.ndarray) -> np.ndarray:
    """uint8 [n, 20]: 'YYYY-MM-DDTHH:MM:SSZ' of each int64 second since the epoch (UTC)."""
    out = np.empty((secs.shape[0], 20), dtype=np.uint8)
    for i in range(secs.shape[0]):
        row = out[i]
        _put_datetime(row, 0, secs[i])
        row[19] = 90  # 'Z'
    return out


@njit(cache=True, nogil=True)
def rfc3339_nano_lines(ns: np.ndarray) -> np.ndarray:
    """Go's RFC3339Nano of each int64 nanosecond time (UTC; the fraction's trailing zeros
    trimmed, none for whole seconds), one per line: ASCII bytes joined by newlines."""
    out = np.empty(ns.shape[0] * 31, dtype=np.uint8)
    pos = 0
    for i in range(ns.shape[0]):
        s = ns[i] // 1_000_000_000
        frac = ns[i] - s * 1_000_000_000
        _put_datetime(out, pos, s)
        pos += 19
        if frac:
            out[pos] = 46  # '.'
            _put_digits(out, pos + 1, frac, 9)
            width = 9
            while out[pos + width] == 48:  # trailing '0'
                width -= 1
            pos += 1 + width
        out[pos] = 90  # 'Z'
        out[pos + 1] = 10  # newline
        pos += 2
    return out[: max(pos - 1, 0)]


def rfc3339nano(ns: int, tz: str | None = None) -> str:
    """Go's time.RFC3339Nano: trailing zeros of the fraction trimmed, 'Z' for UTC."""
    secs, frac = divmod(ns, 1_000_000_000)
    moment = _EPOCH + timedelta(seconds=secs)
    if tz:
        moment = moment.astimezone(ZoneInfo(tz))
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        base += "." + f"{frac:09d}".rstrip("0")
    offset = moment.utcoffset()
    if not tz or offset is None or offset == timedelta(0):
        return base + "Z"
    total = int(offset.total_seconds())
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{base}{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


def statement_result(statement_id: int, series: list[Series], epoch: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"statement_id": statement_id}
    if series:
        result["series"] = [s.to_json(epoch) for s in series]
    return result


def chunk_result(result: dict[str, Any], chunk_size: int) -> list[dict[str, Any]]:
    """Split one statement result into InfluxDB chunks (`partial: true` on all but the last)."""
    series = result.get("series")
    if not series or chunk_size <= 0:
        return [result]
    chunks: list[dict[str, Any]] = []
    for s in series:
        values = s.get("values", [])
        for start in range(0, max(len(values), 1), chunk_size):
            part = dict(s)
            part["values"] = values[start : start + chunk_size]
            if start + chunk_size < len(values):
                part["partial"] = True
            chunks.append({"statement_id": result["statement_id"], "series": [part]})
    for chunk in chunks[:-1]:
        chunk["partial"] = True
    return chunks


def results_to_csv(results: list[dict[str, Any]]) -> str:
    """`Accept: application/csv` body: name,tags,<columns...> then one line per row."""
    lines: list[str] = []
    last_columns: list[str] | None = None
    for result in results:
        for s in result.get("series", []):
            columns = s["columns"]
            if columns != last_columns:
                if last_columns is not None:
                    lines.append("")
                lines.append(",".join(["name", "tags", *columns]))
                last_columns = columns
            tags = s.get("tags") or {}
            tag_text = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
            for row in s["values"]:
                cells = [_csv_cell(s.get("name", "")), _csv_cell(tag_text)]
                cells.extend(_csv_cell(v) for v in row)
                lines.append(",".join(cells))
    return "\n".join(lines) + ("\n" if lines else "")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    text = str(value)
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def go_float(value: float) -> str:
    """A float as Go's encoding/json writes it (1 not 1.0; exponent form outside 1e-6..1e21)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {value}")
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-6 <= magnitude < 1e21:
        text = repr(value)
        if "e" in text or "E" in text:
            text = f"{value:.17f}".rstrip("0").rstrip(".")
            # shortest round-trip representation
            for digits in range(1, 18):
                candidate = f"{value:.{digits}f}"
                if float(candidate) == value:
                    text = candidate
                    break
        if text.endswith(".0"):
            text = text[:-2]
        return text
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if mantissa.endswith(".0"):
        mantissa = mantissa[:-2]
    exp = int(exponent)
    return f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def dumps(obj: Any) -> str:
    """JSON text with Go-style float formatting (what InfluxDB's HTTP handler writes)."""
    return _encode(obj)


def _encode(obj: Any) -> str:
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, float):
        return go_float(obj)
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_encode(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__} in a query result")


def go_duration(ns: int) -> str:
    """Go's time.Duration.String() for whole seconds and up (168h0m0s, 1h0m0s, 0s)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                value = ns / size
                text = f"{value:.9f}".rstrip("0").rstrip(".")
                return f"{sign}{text}{unit}"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = rest / 1e9
    sec_text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    if hours:
        return f"{sign}{hours}h{minutes}m{sec_text}s"
    if minutes:
        return f"{sign}{minutes}m{sec_text}s"
    return f"{sign}{sec_text}s"
