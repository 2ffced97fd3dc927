"""Line-protocol serializer: format_line, the inverse of ingest.lineproto.parse_lines for every
name and value the protocol can represent (others raise ValueError)."""

from __future__ import annotations

import math
import re

import numpy as np

from storage.batch import TagSet

UnsignedValue = tuple[str, int]
"""An unsigned field is written as ("u", n) (or given as numpy.uint64): `12u` on the wire."""

FieldValue = float | int | bool | str | UnsignedValue | np.uint64

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1


def _escaper(always: str, after_backslash: str) -> re.Pattern[str]:
    """Escape `always` chars everywhere, and `after_backslash` chars where they follow a literal
    backslash (so the parser's unescaping does not eat that backslash)."""
    parts = [f"[{re.escape(always)}]"]
    if after_backslash:
        parts.append(f"(?<=\\\\)[{re.escape(after_backslash)}]")
    return re.compile("|".join(parts))


# What the parser unescapes (pkg/escape codes): measurement and field keys `, " space =`,
# tag keys and values `, space =`.
_MEASUREMENT = _escaper(", ", '="')
_TAG = _escaper(",= ", "")
_FIELD_KEY = _escaper(",= ", '"')


def _escape(name: str, pattern: re.Pattern[str], what: str) -> str:
    if not name:
        raise ValueError(f"{what} must not be empty")
    if name.endswith("\\"):
        raise ValueError(f"{what} {name!r} ends with a backslash: not representable")
    if "\n" in name:
        raise ValueError(f"{what} {name!r} contains a newline: not representable")
    return pattern.sub(lambda m: "\\" + m.group(0), name)


def _format_value(name: str, value: FieldValue) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, np.uint64):
        return f"{int(value)}u"
    if isinstance(value, tuple):
        tag, number = value
        if tag != "u" or not isinstance(number, int) or not 0 <= number <= _UINT64_MAX:
            raise ValueError(f"field {name!r}: unsigned must be ('u', 0..2**64-1), got {value!r}")
        return f"{number}u"
    if isinstance(value, int | np.integer):
        number = int(value)
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise ValueError(f"field {name!r}: integer {number} outside int64")
        return f"{number}i"
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise ValueError(f"field {name!r}: {number} is not supported by line protocol")
        return repr(number)  # shortest text that parses back to the same bits
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"field {name!r}: unsupported value type {type(value).__name__}")


def format_line(measurement: str, tags: dict[str, str] | TagSet,
                fields: dict[str, FieldValue], time_ns: int | None) -> str:
    """One line (no trailing newline). Tags are written sorted by key; fields in the given
    order; time_ns None leaves the timestamp out. Unsigned values: ("u", n) or numpy.uint64.
    Raises ValueError for what line protocol cannot carry (empty names, names ending in a
    backslash or holding a newline, a measurement starting with '#' or whitespace, a field key
    starting with tab/NUL, NaN/Inf, out-of-range integers, no fields)."""
    if measurement[:1] in ("#", "\t", "\0"):
        raise ValueError(f"measurement {measurement!r} starts with {measurement[:1]!r}: "
                         "not representable")
    if not fields:
        raise ValueError("a point needs at least one field")
    parts = [_escape(measurement, _MEASUREMENT, "measurement")]
    pairs = sorted(tags.items() if isinstance(tags, dict) else tags)
    for key, value in pairs:
        parts.append(f"{_escape(key, _TAG, 'tag key')}={_escape(value, _TAG, 'tag value')}")
    field_parts = []
    for name, value in fields.items():
        if name[:1] in ("\t", "\0"):
            raise ValueError(f"field key {name!r} starts with {name[:1]!r}: not representable")
        field_parts.append(f"{_escape(name, _FIELD_KEY, 'field key')}={_format_value(name, value)}")
    line = ",".join(parts) + " " + ",".join(field_parts)
    if time_ns is not None:
        line += f" {int(time_ns)}"
    return line
