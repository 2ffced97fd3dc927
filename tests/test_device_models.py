"""Device/DeviceModel v1beta1 YAML loading and value coercion."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.simulator import PROPERTIES, write_device_yaml
from ingest.device_models import (
    DeviceModelError,
    PropertyType,
    coerce_value,
    load_device_dir,
    parse_property_type,
)
from storage.batch import FieldType

MODEL = """\
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: thermo-model
  namespace: plant
spec:
  protocol: modbus
  properties:
    - name: temp
      type: INT
      accessMode: ReadOnly
    - name: ratio
      type: DOUBLE
    - name: label
      type: STRING
    - name: frame
      type: STREAM
"""

DEVICE = """\
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: thermo-1
  namespace: plant
spec:
  deviceModelRef:
    name: thermo-model
  protocol:
    protocolName: modbus
  properties:
    - name: temp
      collectCycle: 1000
      reportCycle: 1000
      pushMethod:
        mqtt: {address: "tcp://127.0.0.1:1883", topic: temp, qos: 1, retained: false}
        dbMethod:
          influxdb2:
            influxdb2ClientConfig: {url: "http://127.0.0.1:8086", org: o, bucket: b}
            influxdb2DataConfig: {measurement: stat, tag: {unit: temperature}, fieldKey: t}
    - name: ratio
      pushMethod:
        http: {hostName: "http://127.0.0.1", port: 8086, requestPath: /push/ratio, timeout: 1}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
"""


def test_load_model_and_device_multi_document(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text(MODEL)
    (tmp_path / "devices.yml").write_text(DEVICE)
    (tmp_path / "notes.txt").write_text("not yaml: [")
    registry = load_device_dir(tmp_path)
    assert registry.property_type("plant", "thermo-1", "temp") is PropertyType.INT
    assert registry.property_type("plant", "thermo-1", "ratio") is PropertyType.DOUBLE
    # declared by the model only: still typed
    assert registry.property_type("plant", "thermo-1", "label") is PropertyType.STRING
    assert registry.property_type("plant", "thermo-1", "nope") is None
    assert registry.property_type("default", "thermo-1", "temp") is None
    device, prop = registry.mqtt_topics()["temp"]
    assert (device.name, prop.name, prop.mqtt.qos) == ("thermo-1", "temp", 1)
    device, prop = registry.http_paths()["/push/ratio"]
    assert (device.namespace, prop.name, prop.http.port) == ("plant", "ratio", 8086)


@pytest.mark.parametrize(("text", "message"), [
    (DEVICE, "DeviceModel 'thermo-model' not found"),
    (MODEL.replace("type: INT", "type: COMPLEX"), "unknown property type 'COMPLEX'"),
    (MODEL.replace("v1beta1", "v1alpha2"), "apiVersion 'devices.kubeedge.io/v1alpha2'"),
    (MODEL + "---\n" + DEVICE.replace("name: ratio", "name: pressure"),
     "property 'pressure' not in model"),
    (MODEL.replace("  name: thermo-model\n", ""), "metadata.name is missing"),
    ("kind: Device\n  bad: [", "invalid YAML"),
])
def test_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(DeviceModelError) as info:
        load_device_dir(tmp_path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_simulator_yaml_types_every_property(tmp_path: Path) -> None:
    write_device_yaml(tmp_path, 3, namespace="sim")
    registry = load_device_dir(tmp_path)
    assert len(registry.devices) == 3
    for prop in PROPERTIES:
        assert registry.property_type("sim", "sim-device-0002", prop.name) is \
            parse_property_type(prop.model_type)
    assert len(registry.mqtt_topics()) == 3 * len(PROPERTIES)


COERCE = [
    ("25", PropertyType.INT, (FieldType.INTEGER, 25)),
    ("-3", PropertyType.INT, (FieldType.INTEGER, -3)),
    ("25.0", PropertyType.INT, (FieldType.INTEGER, 25)),
    ("25.5", PropertyType.FLOAT, (FieldType.FLOAT, 25.5)),
    ("1", PropertyType.DOUBLE, (FieldType.FLOAT, 1.0)),
    ("true", PropertyType.BOOLEAN, (FieldType.BOOLEAN, True)),
    ("F", PropertyType.BOOLEAN, (FieldType.BOOLEAN, False)),
    ("1", PropertyType.BOOLEAN, (FieldType.BOOLEAN, True)),
    ("a b", PropertyType.STRING, (FieldType.STRING, "a b")),
    ("\x00\x01", PropertyType.BYTES, (FieldType.STRING, "AAE=")),
    (7, PropertyType.FLOAT, (FieldType.FLOAT, 7.0)),
    ("x", PropertyType.STREAM, None),
]


@pytest.mark.parametrize(("raw", "ptype", "expected"), COERCE)
def test_coerce_table(raw: object, ptype: PropertyType, expected: object) -> None:
    assert coerce_value(raw, ptype) == expected


@pytest.mark.parametrize(("raw", "ptype"), [
    ("25.5", PropertyType.INT), ("9223372036854775808", PropertyType.INT),
    ("hot", PropertyType.FLOAT), ("NaN", PropertyType.DOUBLE), ("inf", PropertyType.FLOAT),
    ("yes", PropertyType.BOOLEAN), (True, PropertyType.INT),
])
def test_coerce_rejects(raw: object, ptype: PropertyType) -> None:
    with pytest.raises(ValueError):
        coerce_value(raw, ptype)
