"""Pure decoders for KubeEdge device data (mapper MQTT text, DataModel JSON, EdgeCore twin
updates, mapper HTTP push) into storage Batches; no I/O, no clock (callers pass `received_ns`)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from urllib.parse import unquote_plus
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from ingest.device_models import (
    DEFAULT_NAMESPACE,
    DeviceRegistry,
    PropertyType,
    TypedValue,
    coerce_value,
    infer_value,
    parse_property_type,
)
from storage.batch import Batch, FieldType, TagSet

EXCERPT_BYTES = 200
_MS = 1_000_000
_TEXT_RE = re.compile(r"time is (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})  (.*)", re.DOTALL)
_LOCAL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# `$hw/events/device/{ns}/{name}/twin/update` (>= 1.17) or `$hw/events/device/{id}/twin/update`.
_TWIN_RE = re.compile(r"\$hw/events/device/(?:([^/]+)/)?([^/]+)/twin/update")
_KE_DATA_RE = re.compile(r"\$ke/events/device/(?:([^/]+)/)?([^/]+)/data/update")
_TYPE_SUFFIX = {
    FieldType.FLOAT: "",
    FieldType.INTEGER: "_int",
    FieldType.BOOLEAN: "_bool",
    FieldType.STRING: "_str",
    FieldType.UNSIGNED: "_uint",
}


class PayloadError(ValueError):
    """A payload that can never be stored (retrying will not help)."""

    def __init__(self, topic: str, payload: bytes, reason: str) -> None:
        self.topic = topic
        self.excerpt = bytes(payload[:EXCERPT_BYTES])
        self.reason = reason
        super().__init__(f"{topic}: {reason}; payload starts {self.excerpt!r}")


@dataclass(frozen=True, slots=True)
class TextTopic:
    """Where a plain-text `time is ...  <topic>: <value>` reading goes.

    `type` wins; else the device model type of (namespace, device, property); else inferred.
    Tags: `tags` plus namespace/device when given.
    """

    measurement: str
    field: str
    tags: TagSet = ()
    type: PropertyType | None = None
    namespace: str | None = None
    device: str | None = None
    property: str | None = None


@dataclass(frozen=True, slots=True)
class HttpPath:
    """Where a mapper HTTP push to `requestPath` goes: fields are the body's property keys."""

    device: str
    namespace: str = DEFAULT_NAMESPACE
    measurement: str = "device_data"


BadValuePolicy = Literal["raw", "reject"]
TwinLayout = Literal["by_type", "value"]


@dataclass(slots=True)
class PayloadConfig:
    """Decoder settings; see docs/kubeedge.md for the defaults' reasons."""

    timezone: str = "UTC"  # the mappers' local time zone (text and HTTP payloads)
    text_topics: dict[str, TextTopic] = field(default_factory=dict)
    http_paths: dict[str, HttpPath] = field(default_factory=dict)
    datamodel_topics: tuple[str, ...] = ()  # MQTT topic filters carrying DataModel JSON
    datamodel_measurement: str = "device_data"
    twin_measurement: str = "device_twin"
    twin_layout: TwinLayout = "by_type"
    on_bad_value: BadValuePolicy = "raw"
    default_namespace: str = DEFAULT_NAMESPACE
    models: DeviceRegistry | None = None
    _zone: ZoneInfo | None = field(default=None, repr=False)

    def zone(self) -> ZoneInfo:
        if self._zone is None or self._zone.key != self.timezone:
            self._zone = ZoneInfo(self.timezone)
        return self._zone

    def model_type(self, namespace: str, device: str, prop: str) -> PropertyType | None:
        return None if self.models is None else self.models.property_type(namespace, device, prop)


@dataclass(slots=True)
class DecodeCounts:
    """Running totals a caller may pass in to learn about values that did not convert."""

    points: int = 0
    bad_values: int = 0  # values not matching their declared type (stored raw or dropped)
    skipped: int = 0  # STREAM properties and twin entries without an actual value


@dataclass(frozen=True, slots=True)
class _Point:
    measurement: str
    tags: TagSet
    field: str
    ftype: FieldType
    value: int | float | bool | str
    time_ns: int


# ---------------------------------------------------------------------------- dispatch


def decode_mqtt(
    topic: str,
    payload: bytes,
    config: PayloadConfig,
    received_ns: int,
    counts: DecodeCounts | None = None,
) -> list[Batch]:
    """Pick the decoder for `topic` (twin, $ke data, configured text or DataModel topics)."""
    if _TWIN_RE.fullmatch(topic):
        return decode_twin_update(topic, payload, config, received_ns, counts)
    if _KE_DATA_RE.fullmatch(topic):
        return decode_ke_data_update(topic, payload, config, received_ns, counts)
    if topic in config.text_topics:
        return decode_mapper_text(topic, payload, config, counts)
    if any(topic_matches(f, topic) for f in config.datamodel_topics):
        return decode_datamodel(topic, payload, config, received_ns, counts)
    raise PayloadError(topic, payload, "no decoder configured for this topic")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching with `+` and `#` ($-topics only match filters naming them)."""
    if topic.startswith("$") and not topic_filter.startswith("$"):
        return False
    fparts = topic_filter.split("/")
    tparts = topic.split("/")
    for i, part in enumerate(fparts):
        if part == "#":
            return True
        if i >= len(tparts) or (part != "+" and part != tparts[i]):
            return False
    return len(fparts) == len(tparts)


# ---------------------------------------------------------------------------- decoders


def decode_mapper_text(
    topic: str, payload: bytes, config: PayloadConfig, counts: DecodeCounts | None = None
) -> list[Batch]:
    """`time is 2024-05-01 10:00:00  temp: 25` published on a configured topic."""
    mapping = config.text_topics.get(topic)
    if mapping is None:
        raise PayloadError(topic, payload, "topic has no text mapping")
    text = _utf8(topic, payload).rstrip("\r\n")
    match = _TEXT_RE.fullmatch(text)
    if match is None:
        raise PayloadError(topic, payload, "not `time is YYYY-MM-DD hh:mm:ss  <topic>: <value>`")
    time_ns = _local_time_ns(topic, payload, match.group(1), config)
    rest = match.group(2)
    if rest.startswith(topic + ": "):
        raw = rest[len(topic) + 2 :]
    else:  # topic rewritten on the way (bridge prefix): the name ends at the first ": "
        name, sep, raw = rest.partition(": ")
        if not sep:
            raise PayloadError(topic, payload, "no `<topic>: ` before the value")
    ptype = mapping.type
    if ptype is None and mapping.device is not None:
        ptype = config.model_type(
            mapping.namespace or config.default_namespace,
            mapping.device,
            mapping.property or mapping.field,
        )
    tags = dict(mapping.tags)
    if mapping.device is not None:
        tags["device"] = mapping.device
        tags["namespace"] = mapping.namespace or config.default_namespace
    points: list[_Point] = []
    _add_point(points, config, counts, mapping.measurement, _tagset(tags), mapping.field,
               raw, ptype, time_ns)
    return _to_batches(topic, payload, points, counts)


def decode_datamodel(
    topic: str,
    payload: bytes,
    config: PayloadConfig,
    received_ns: int,
    counts: DecodeCounts | None = None,
) -> list[Batch]:
    """Mapper DataModel JSON (Go field names), a list of them, or the REST `{"Data": ...}`."""
    doc = _json(topic, payload)
    if isinstance(doc, dict) and isinstance(doc.get("Data"), dict):
        doc = doc["Data"]
    records = doc if isinstance(doc, list) else [doc]
    points: list[_Point] = []
    for record in records:
        if not isinstance(record, dict):
            raise PayloadError(topic, payload, "DataModel is not a JSON object")
        device = record.get("DeviceName")
        prop = record.get("PropertyName")
        if not isinstance(device, str) or not device or not isinstance(prop, str) or not prop:
            raise PayloadError(topic, payload, "DataModel needs DeviceName and PropertyName")
        if "Value" not in record or record["Value"] is None:
            raise PayloadError(topic, payload, f"DataModel {device}/{prop} has no Value")
        namespace = record.get("Namespace") or config.default_namespace
        if not isinstance(namespace, str):
            raise PayloadError(topic, payload, "DataModel Namespace is not a string")
        ptype = _declared_type(topic, payload, record.get("Type"))
        if ptype is None:
            ptype = config.model_type(namespace, device, prop)
        time_ns = _ms_to_ns(topic, payload, record.get("TimeStamp"), received_ns)
        tags = _tagset({"namespace": namespace, "device": device})
        _add_point(points, config, counts, config.datamodel_measurement, tags, prop,
                   record["Value"], ptype, time_ns)
    return _to_batches(topic, payload, points, counts)


def _device_document(topic: str, payload: bytes, config: PayloadConfig, received_ns: int,
                     topic_re: re.Pattern[str], key: str, what: str) -> tuple[str, str, dict, int]:
    """(namespace, device, doc[key], message time) of an EdgeCore per-device JSON document."""
    match = topic_re.fullmatch(topic)
    if match is None:
        raise PayloadError(topic, payload, f"not a {what} topic")
    doc = _json(topic, payload)
    if not isinstance(doc, dict) or not isinstance(doc.get(key), dict):
        raise PayloadError(topic, payload, f"{what.rsplit('/', 1)[-1]} has no `{key}` object")
    message_ns = _ms_to_ns(topic, payload, doc.get("timestamp"), received_ns)
    return match.group(1) or config.default_namespace, match.group(2), doc[key], message_ns


def decode_twin_update(
    topic: str,
    payload: bytes,
    config: PayloadConfig,
    received_ns: int,
    counts: DecodeCounts | None = None,
) -> list[Batch]:
    """EdgeCore `$hw/events/device/.../twin/update`: every twin.<prop>.actual.value."""
    namespace, device, twins, message_ns = _device_document(
        topic, payload, config, received_ns, _TWIN_RE, "twin", "$hw/events/device/.../twin/update")
    entries: list[tuple[str, object, object, object]] = []
    for prop, twin in twins.items():
        if not isinstance(twin, dict):
            raise PayloadError(topic, payload, f"twin.{prop} is not an object")
        actual = twin.get("actual")
        meta = twin.get("metadata") if isinstance(twin.get("metadata"), dict) else {}
        if not isinstance(actual, dict) or actual.get("value") is None:
            entries.append((prop, None, None, None))
            continue
        ameta = actual.get("metadata") if isinstance(actual.get("metadata"), dict) else {}
        entries.append((prop, actual["value"], meta.get("type"), ameta.get("timestamp")))
    return _device_props(topic, payload, config, counts, namespace, device, entries, message_ns)


def decode_ke_data_update(
    topic: str,
    payload: bytes,
    config: PayloadConfig,
    received_ns: int,
    counts: DecodeCounts | None = None,
) -> list[Batch]:
    """The older `$ke/events/device/{id}/data/update`: data.<prop>.{value, metadata}."""
    namespace, device, items, message_ns = _device_document(
        topic, payload, config, received_ns, _KE_DATA_RE, "data", "$ke/events/device/.../data/update")
    entries: list[tuple[str, object, object, object]] = []
    for prop, item in items.items():
        if not isinstance(item, dict):
            raise PayloadError(topic, payload, f"data.{prop} is not an object")
        meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        entries.append((prop, item.get("value"), meta.get("type"), meta.get("timestamp")))
    return _device_props(topic, payload, config, counts, namespace, device, entries, message_ns)


def decode_http_form(
    request_path: str,
    body: bytes,
    config: PayloadConfig,
    received_ns: int,
    counts: DecodeCounts | None = None,
) -> list[Batch]:
    """Mapper HTTP push body `temp=25&time=2024-05-01 10:00:00` (raw space; URL-encoded too).

    A body containing a raw space is taken literally (the mapper does not encode); otherwise
    each key and value is URL-decoded (`+` and `%XX`).
    """
    mapping = config.http_paths.get(request_path)
    if mapping is None:
        raise PayloadError(request_path, body, "requestPath has no mapping")
    text = _utf8(request_path, body).strip("\r\n")
    encoded = " " not in text
    values: dict[str, str] = {}
    for part in text.split("&"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise PayloadError(request_path, body, f"form part {part[:40]!r} is not key=value")
        if encoded:
            key, value = unquote_plus(key), unquote_plus(value)
        values[key] = value
    time_text = values.pop("time", None)
    if not values:
        raise PayloadError(request_path, body, "no property value in the form body")
    time_ns = (
        received_ns
        if time_text is None
        else _local_time_ns(request_path, body, time_text.strip(), config)
    )
    tags = _tagset({"namespace": mapping.namespace, "device": mapping.device})
    points: list[_Point] = []
    for prop, raw in values.items():
        ptype = config.model_type(mapping.namespace, mapping.device, prop)
        _add_point(points, config, counts, mapping.measurement, tags, prop, raw, ptype, time_ns)
    return _to_batches(request_path, body, points, counts)


# ---------------------------------------------------------------------------- shared parts


def _device_props(
    topic: str,
    payload: bytes,
    config: PayloadConfig,
    counts: DecodeCounts | None,
    namespace: str,
    device: str,
    entries: list[tuple[str, object, object, object]],
    message_ns: int,
) -> list[Batch]:
    points: list[_Point] = []
    for prop, value, type_name, ts in entries:
        if value is None:
            if counts is not None:
                counts.skipped += 1
            continue
        ptype = _declared_type(topic, payload, type_name)
        if ptype is None:
            ptype = config.model_type(namespace, device, prop)
        time_ns = _ms_to_ns(topic, payload, ts, message_ns)
        tags = _tagset({"namespace": namespace, "device": device, "property": prop})
        _add_point(points, config, counts, config.twin_measurement, tags, "value", value,
                   ptype, time_ns, suffix_by_type=config.twin_layout == "by_type")
    return _to_batches(topic, payload, points, counts)


def _add_point(
    points: list[_Point],
    config: PayloadConfig,
    counts: DecodeCounts | None,
    measurement: str,
    tags: TagSet,
    field_name: str,
    raw: object,
    ptype: PropertyType | None,
    time_ns: int,
    suffix_by_type: bool = False,
) -> None:
    typed: TypedValue | None
    bad = False
    if ptype is None:
        typed = infer_value(raw)
    else:
        try:
            typed = coerce_value(raw, ptype)
        except ValueError:
            bad = True
            typed = None
        if typed is None and not bad:  # STREAM
            if counts is not None:
                counts.skipped += 1
            return
    if bad:
        if counts is not None:
            counts.bad_values += 1
        if config.on_bad_value == "reject":
            return
        ftype, value = FieldType.STRING, raw if isinstance(raw, str) else json.dumps(raw)
        name = field_name + "_raw"
    else:
        assert typed is not None
        ftype, value = typed
        name = field_name + _TYPE_SUFFIX[ftype] if suffix_by_type else field_name
    points.append(_Point(measurement, tags, name, ftype, value, time_ns))


def _to_batches(
    topic: str, payload: bytes, points: list[_Point], counts: DecodeCounts | None
) -> list[Batch]:
    """Group points by measurement (a second Batch of a measurement only if one call carries a
    field with two types); points of one (series, time) merge into one row, later wins."""
    if counts is not None:
        counts.points += len(points)
    groups: list[tuple[str, dict[str, FieldType], list[_Point]]] = []
    for point in points:
        for measurement, types, members in groups:
            if measurement == point.measurement and types.get(point.field, point.ftype) is point.ftype:
                types[point.field] = point.ftype
                members.append(point)
                break
        else:
            groups.append((point.measurement, {point.field: point.ftype}, [point]))
    return [_build_batch(measurement, types, members) for measurement, types, members in groups]


def _build_batch(measurement: str, types: dict[str, FieldType], points: list[_Point]) -> Batch:
    series_index: dict[TagSet, int] = {}
    row_index: dict[tuple[int, int], int] = {}
    sids: list[int] = []
    times: list[int] = []
    columns: dict[str, list[object]] = {name: [] for name in types}
    for point in points:
        sid = series_index.setdefault(point.tags, len(series_index))
        row = row_index.get((sid, point.time_ns))
        if row is None:
            row = len(times)
            row_index[(sid, point.time_ns)] = row
            sids.append(sid)
            times.append(point.time_ns)
            for column in columns.values():
                column.append(None)
        columns[point.field][row] = point.value
    return Batch(
        measurement=measurement,
        series=list(series_index),
        series_id=np.asarray(sids, dtype=np.int32),
        time=np.asarray(times, dtype=np.int64),
        fields={
            name: pa.array(values, type=types[name].arrow_type)
            for name, values in columns.items()
        },
    )


def _tagset(tags: Mapping[str, str]) -> TagSet:
    return tuple(sorted((k, v) for k, v in tags.items() if k and v))


def _declared_type(topic: str, payload: bytes, type_name: object) -> PropertyType | None:
    if type_name is None or type_name == "":
        return None
    if not isinstance(type_name, str):
        raise PayloadError(topic, payload, f"type {type_name!r} is not a string")
    try:
        return parse_property_type(type_name)
    except ValueError as exc:
        raise PayloadError(topic, payload, str(exc)) from None


def _ms_to_ns(topic: str, payload: bytes, ms: object, fallback_ns: int) -> int:
    if ms is None or ms == 0:
        return fallback_ns
    if isinstance(ms, bool) or not isinstance(ms, int | float | str):
        raise PayloadError(topic, payload, f"timestamp {ms!r} is not epoch milliseconds")
    try:
        value = int(ms)
    except ValueError:
        raise PayloadError(topic, payload, f"timestamp {ms!r} is not epoch milliseconds") from None
    if not 0 < value < 9_223_372_036_854:
        raise PayloadError(topic, payload, f"timestamp {ms!r} out of range")
    return value * _MS


def _local_time_ns(topic: str, payload: bytes, text: str, config: PayloadConfig) -> int:
    try:
        naive = datetime.strptime(text, _LOCAL_TIME_FORMAT)
    except ValueError:
        raise PayloadError(topic, payload, f"time {text!r} is not YYYY-MM-DD hh:mm:ss") from None
    aware = naive.replace(tzinfo=config.zone())
    return int(aware.timestamp()) * 1_000_000_000


def _utf8(topic: str, payload: bytes) -> str:
    try:
        return bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(topic, payload, f"not UTF-8 at byte {exc.start}") from None


def _json(topic: str, payload: bytes) -> object:
    try:
        return json.loads(bytes(payload))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PayloadError(topic, payload, f"invalid JSON: {exc}") from None
