"""KubeEdge Device / DeviceModel (devices.kubeedge.io/v1beta1) YAML loading, property types and
value coercion (a mapper's string value -> a typed field value)."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import yaml

from storage.batch import FieldType

API_VERSION = "devices.kubeedge.io/v1beta1"
DEFAULT_NAMESPACE = "default"
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class PropertyType(Enum):
    """Device Model property types (spec.properties[].type)."""

    INT = "INT"
    FLOAT = "FLOAT"
    DOUBLE = "DOUBLE"
    STRING = "STRING"
    BOOLEAN = "BOOLEAN"
    BYTES = "BYTES"
    STREAM = "STREAM"

    @property
    def field_type(self) -> FieldType | None:
        """The stored field type; None for STREAM (never stored)."""
        return _FIELD_TYPES[self]


_FIELD_TYPES: dict[PropertyType, FieldType | None] = {
    PropertyType.INT: FieldType.INTEGER,
    PropertyType.FLOAT: FieldType.FLOAT,
    PropertyType.DOUBLE: FieldType.FLOAT,
    PropertyType.STRING: FieldType.STRING,
    PropertyType.BOOLEAN: FieldType.BOOLEAN,
    PropertyType.BYTES: FieldType.STRING,
    PropertyType.STREAM: None,
}

# Spellings seen in CRDs, twin metadata ("int", "float", "boolean"...) and DataModel.Type.
_TYPE_ALIASES: dict[str, PropertyType] = {
    "int": PropertyType.INT,
    "integer": PropertyType.INT,
    "int64": PropertyType.INT,
    "int32": PropertyType.INT,
    "float": PropertyType.FLOAT,
    "float32": PropertyType.FLOAT,
    "float64": PropertyType.DOUBLE,
    "double": PropertyType.DOUBLE,
    "string": PropertyType.STRING,
    "str": PropertyType.STRING,
    "boolean": PropertyType.BOOLEAN,
    "bool": PropertyType.BOOLEAN,
    "bytes": PropertyType.BYTES,
    "stream": PropertyType.STREAM,
}

_TRUE = frozenset({"1", "t", "true"})  # Go strconv.ParseBool, case-insensitive
_FALSE = frozenset({"0", "f", "false"})


def parse_property_type(name: str) -> PropertyType:
    """`INT`, `int`, `integer`, `double`, `bool`... -> PropertyType; ValueError if unknown."""
    ptype = _TYPE_ALIASES.get(name.strip().lower())
    if ptype is None:
        raise ValueError(f"unknown property type {name!r}")
    return ptype


TypedValue = tuple[FieldType, int | float | bool | str]


def coerce_value(raw: object, ptype: PropertyType) -> TypedValue | None:
    """Convert a mapper value (normally a string) to `ptype`.

    Returns None for STREAM (never stored); raises ValueError when the value does not convert.
    BYTES are stored as the base64 of the value's UTF-8 bytes.
    """
    if ptype is PropertyType.STREAM:
        return None
    if ptype is PropertyType.STRING:
        return FieldType.STRING, _as_text(raw)
    if ptype is PropertyType.BYTES:
        data = raw if isinstance(raw, bytes) else _as_text(raw).encode("utf-8")
        return FieldType.STRING, base64.b64encode(data).decode("ascii")
    if ptype is PropertyType.BOOLEAN:
        return FieldType.BOOLEAN, _to_bool(raw)
    if ptype is PropertyType.INT:
        return FieldType.INTEGER, _to_int(raw)
    return FieldType.FLOAT, _to_float(raw)


def infer_value(raw: object) -> TypedValue:
    """Type a value with no declared type: numbers -> FLOAT (so `25` and `25.5` of one property
    never conflict), `true`/`false` -> BOOLEAN, anything else -> STRING."""
    if isinstance(raw, bool):
        return FieldType.BOOLEAN, raw
    text = _as_text(raw).strip()
    if text.lower() in ("true", "false"):
        return FieldType.BOOLEAN, text.lower() == "true"
    try:
        return FieldType.FLOAT, _to_float(text)
    except ValueError:
        return FieldType.STRING, _as_text(raw)


def _as_text(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return str(raw)


def _to_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = _as_text(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not a BOOLEAN")


def _to_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not an INT")
    if isinstance(raw, int):
        value = raw
    else:
        text = _as_text(raw).strip()
        try:
            value = int(text, 10)
        except ValueError:
            # "25.0" (a float formatted by the mapper) is accepted when integral.
            try:
                as_float = float(text)
            except ValueError:
                raise ValueError(f"{raw!r} is not an INT") from None
            if not math.isfinite(as_float) or as_float != int(as_float):
                raise ValueError(f"{raw!r} is not an INT") from None
            value = int(as_float)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{raw!r} is out of the int64 range")
    return value


def _to_float(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a FLOAT")
    try:
        value = float(raw) if isinstance(raw, int | float) else float(_as_text(raw).strip())
    except ValueError:
        raise ValueError(f"{raw!r} is not a FLOAT") from None
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite FLOAT")
    return value


# ---------------------------------------------------------------------------- CRD loading


class DeviceModelError(ValueError):
    """A Device/DeviceModel document that cannot be used; names the file and document."""

    def __init__(self, path: Path, document: int, reason: str) -> None:
        super().__init__(f"{path} (document {document}): {reason}")
        self.path = path
        self.document = document
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MqttPush:
    """A property's spec.properties[].pushMethod.mqtt."""

    address: str
    topic: str
    qos: int
    retained: bool


@dataclass(frozen=True, slots=True)
class HttpPush:
    """A property's spec.properties[].pushMethod.http."""

    host_name: str
    port: int
    request_path: str


@dataclass(frozen=True, slots=True)
class DeviceProperty:
    name: str
    type: PropertyType
    mqtt: MqttPush | None = None
    http: HttpPush | None = None


@dataclass(frozen=True, slots=True)
class DeviceModel:
    namespace: str
    name: str
    properties: dict[str, PropertyType]
    source: Path


@dataclass(frozen=True, slots=True)
class Device:
    namespace: str
    name: str
    model: str
    properties: dict[str, DeviceProperty]
    source: Path


@dataclass(slots=True)
class DeviceRegistry:
    """Devices resolved against their models: (namespace, device, property) -> type."""

    devices: dict[tuple[str, str], Device] = field(default_factory=dict)
    models: dict[tuple[str, str], DeviceModel] = field(default_factory=dict)

    def property_type(self, namespace: str, device: str, prop: str) -> PropertyType | None:
        found = self.devices.get((namespace, device))
        if found is None:
            return None
        entry = found.properties.get(prop)
        return None if entry is None else entry.type

    def mqtt_topics(self) -> dict[str, tuple[Device, DeviceProperty]]:
        """pushMethod.mqtt topic -> (device, property), for the plain-text decoder's mapping."""
        topics: dict[str, tuple[Device, DeviceProperty]] = {}
        for device in self.devices.values():
            for prop in device.properties.values():
                if prop.mqtt is not None:
                    topics[prop.mqtt.topic] = (device, prop)
        return topics

    def http_paths(self) -> dict[str, tuple[Device, DeviceProperty]]:
        """pushMethod.http requestPath -> (device, property)."""
        paths: dict[str, tuple[Device, DeviceProperty]] = {}
        for device in self.devices.values():
            for prop in device.properties.values():
                if prop.http is not None:
                    paths[prop.http.request_path] = (device, prop)
        return paths


def load_device_dir(directory: str | Path) -> DeviceRegistry:
    """Load every *.yaml / *.yml (multi-document) under `directory` (not recursive).

    Other kinds are ignored; Device/DeviceModel documents must be v1beta1. Raises
    DeviceModelError naming the file for malformed documents, unknown property types,
    a deviceModelRef to a missing model or a device property the model does not declare.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"device directory {root} does not exist")
    files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    raw_devices: list[tuple[Path, int, dict]] = []
    registry = DeviceRegistry()
    for path in files:
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            raise DeviceModelError(path, 0, f"invalid YAML: {exc}") from exc
        for index, doc in enumerate(documents, start=1):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise DeviceModelError(path, index, "document is not a mapping")
            kind = doc.get("kind")
            if kind not in ("Device", "DeviceModel"):
                continue
            if doc.get("apiVersion") != API_VERSION:
                raise DeviceModelError(
                    path, index, f"{kind} apiVersion {doc.get('apiVersion')!r} is not {API_VERSION}"
                )
            if kind == "DeviceModel":
                model = _parse_model(path, index, doc)
                key = (model.namespace, model.name)
                if key in registry.models:
                    raise DeviceModelError(path, index, f"DeviceModel {key} defined twice")
                registry.models[key] = model
            else:
                raw_devices.append((path, index, doc))
    for path, index, doc in raw_devices:
        device = _parse_device(path, index, doc, registry.models)
        key = (device.namespace, device.name)
        if key in registry.devices:
            raise DeviceModelError(path, index, f"Device {key} defined twice")
        registry.devices[key] = device
    return registry


def _metadata(path: Path, index: int, doc: dict) -> tuple[str, str]:
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise DeviceModelError(path, index, "metadata.name is missing")
    namespace = meta.get("namespace") or DEFAULT_NAMESPACE
    return str(namespace), meta["name"]


def _spec_properties(path: Path, index: int, doc: dict) -> list[dict]:
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise DeviceModelError(path, index, "spec is missing")
    props = spec.get("properties") or []
    if not isinstance(props, list) or not all(isinstance(p, dict) for p in props):
        raise DeviceModelError(path, index, "spec.properties is not a list of mappings")
    for i, prop in enumerate(props):
        if not isinstance(prop.get("name"), str) or not prop["name"]:
            raise DeviceModelError(path, index, f"spec.properties[{i}].name is missing")
    return props


def _parse_model(path: Path, index: int, doc: dict) -> DeviceModel:
    namespace, name = _metadata(path, index, doc)
    properties: dict[str, PropertyType] = {}
    for prop in _spec_properties(path, index, doc):
        type_name = prop.get("type")
        if not isinstance(type_name, str):
            raise DeviceModelError(path, index, f"property {prop['name']!r} has no type")
        try:
            properties[prop["name"]] = parse_property_type(type_name)
        except ValueError as exc:
            raise DeviceModelError(path, index, f"property {prop['name']!r}: {exc}") from None
    return DeviceModel(namespace, name, properties, path)


def _parse_device(
    path: Path, index: int, doc: dict, models: dict[tuple[str, str], DeviceModel]
) -> Device:
    namespace, name = _metadata(path, index, doc)
    ref = (doc.get("spec") or {}).get("deviceModelRef")
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
        raise DeviceModelError(path, index, f"Device {name!r}: spec.deviceModelRef.name missing")
    model = models.get((namespace, ref["name"]))
    if model is None:
        raise DeviceModelError(
            path, index, f"Device {namespace}/{name}: DeviceModel {ref['name']!r} not found"
        )
    properties: dict[str, DeviceProperty] = {}
    for prop in _spec_properties(path, index, doc):
        pname = prop["name"]
        ptype = model.properties.get(pname)
        if ptype is None:
            raise DeviceModelError(
                path, index, f"Device {namespace}/{name}: property {pname!r} not in model "
                f"{model.name!r} ({model.source})"
            )
        push = prop.get("pushMethod") or {}
        properties[pname] = DeviceProperty(
            pname, ptype, _parse_mqtt(path, index, push.get("mqtt")),
            _parse_http(path, index, push.get("http")),
        )
    # Model properties the instance does not list are still typed (twin / DataModel paths).
    for pname, ptype in model.properties.items():
        properties.setdefault(pname, DeviceProperty(pname, ptype))
    return Device(namespace, name, model.name, properties, path)


def _parse_mqtt(path: Path, index: int, raw: object) -> MqttPush | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("topic"), str) or not raw["topic"]:
        raise DeviceModelError(path, index, "pushMethod.mqtt.topic is missing")
    try:
        qos = int(raw.get("qos", 0))
    except (TypeError, ValueError):
        raise DeviceModelError(path, index, f"pushMethod.mqtt.qos {raw.get('qos')!r}") from None
    return MqttPush(str(raw.get("address", "")), raw["topic"], qos, bool(raw.get("retained")))


def _parse_http(path: Path, index: int, raw: object) -> HttpPush | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("requestPath"), str):
        raise DeviceModelError(path, index, "pushMethod.http.requestPath is missing")
    try:
        port = int(raw.get("port", 80))
    except (TypeError, ValueError):
        raise DeviceModelError(path, index, f"pushMethod.http.port {raw.get('port')!r}") from None
    return HttpPush(str(raw.get("hostName", "")), port, raw["requestPath"])
