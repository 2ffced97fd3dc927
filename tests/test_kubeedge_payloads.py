"""Decoders against exact KubeEdge payloads (table), plus rejection of malformed ones."""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.simulator import (
    PROPERTIES,
    format_datamodel,
    format_http_form,
    format_mapper_text,
    format_twin_update,
)
from ingest.device_models import Device, DeviceProperty, DeviceRegistry, PropertyType
from ingest.kubeedge_payloads import (
    DecodeCounts,
    HttpPath,
    PayloadConfig,
    PayloadError,
    TextTopic,
    decode_http_form,
    decode_mqtt,
)
from storage.batch import Batch

RECEIVED = 1_700_000_000_000_000_000
T_MS = 1714557600123
T_NS = T_MS * 1_000_000


def local_ns(text: str, zone: str) -> int:
    naive = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    return int(naive.replace(tzinfo=ZoneInfo(zone)).timestamp()) * 1_000_000_000


def rows(batches: list[Batch]) -> list[tuple]:
    """(measurement, tags, time, {field: value}) per row, non-null fields only."""
    out = []
    for batch in batches:
        cols = {k: v.to_pylist() for k, v in batch.fields.items()}
        for r in range(len(batch)):
            fields = {k: v[r] for k, v in cols.items() if v[r] is not None}
            out.append((batch.measurement, dict(batch.series[batch.series_id[r]]),
                        int(batch.time[r]), fields))
    return out


def config(**overrides) -> PayloadConfig:
    cfg = PayloadConfig(
        timezone="Europe/Berlin",
        text_topics={
            "temp": TextTopic("room", "temp", (("site", "lab"),), PropertyType.INT),
            "hum": TextTopic("room", "humidity", (), PropertyType.DOUBLE),
            "a/b": TextTopic("room", "status", (), PropertyType.STRING, device="d1"),
            "flag": TextTopic("room", "on", (), PropertyType.BOOLEAN),
            "guess": TextTopic("room", "x"),
        },
        http_paths={"/push/temp": HttpPath("d1", "ns1", "http_data")},
        datamodel_topics=("mapper/+/data",),
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


BERLIN_10 = local_ns("2024-05-01 10:00:00", "Europe/Berlin")

CASES = [
    # mapper pushMethod mqtt plain text
    ("temp", b"time is 2024-05-01 10:00:00  temp: 25",
     [("room", {"site": "lab"}, BERLIN_10, {"temp": 25})]),
    ("hum", b"time is 2024-05-01 10:00:00  hum: 47.25\n",
     [("room", {}, BERLIN_10, {"humidity": 47.25})]),
    ("a/b", b"time is 2024-05-01 10:00:00  a/b: running: fine",
     [("room", {"device": "d1", "namespace": "default"}, BERLIN_10, {"status": "running: fine"})]),
    ("flag", b"time is 2024-05-01 10:00:00  flag: true", [("room", {}, BERLIN_10, {"on": True})]),
    ("guess", b"time is 2024-05-01 10:00:00  guess: 3", [("room", {}, BERLIN_10, {"x": 3.0})]),
    ("temp", b"time is 2024-05-01 10:00:00  temp: hot",
     [("room", {"site": "lab"}, BERLIN_10, {"temp_raw": "hot"})]),
    # DataModel JSON
    ("mapper/x/data",
     b'{"DeviceName":"d1","PropertyName":"temp","Namespace":"ns1","Value":"25.5",'
     b'"Type":"float","TimeStamp":1714557600123}',
     [("device_data", {"device": "d1", "namespace": "ns1"}, T_NS, {"temp": 25.5})]),
    ("mapper/x/data",
     b'{"DeviceName":"d1","PropertyName":"n","Namespace":"","Value":"7","Type":"int",'
     b'"TimeStamp":1714557600123}',
     [("device_data", {"device": "d1", "namespace": "default"}, T_NS, {"n": 7})]),
    ("mapper/x/data",
     b'{"apiVersion":"v1","statusCode":200,"timeStamp":"2024-05-01T10:00:00Z","Data":'
     b'{"DeviceName":"d1","PropertyName":"b","Namespace":"ns","Value":"hi","Type":"bytes",'
     b'"TimeStamp":1714557600123}}',
     [("device_data", {"device": "d1", "namespace": "ns"}, T_NS,
       {"b": base64.b64encode(b"hi").decode()})]),
    ("mapper/x/data",
     b'{"DeviceName":"cam","PropertyName":"saveFrame","Namespace":"ns","Value":"x",'
     b'"Type":"stream","TimeStamp":1714557600123}', []),
    ("mapper/x/data",
     b'{"DeviceName":"d1","PropertyName":"ok","Namespace":"ns","Value":"false",'
     b'"Type":"boolean","TimeStamp":0}',
     [("device_data", {"device": "d1", "namespace": "ns"}, RECEIVED, {"ok": False})]),
    # EdgeCore twin update >= 1.17
    ("$hw/events/device/ns1/d1/twin/update",
     b'{"event_id":"","timestamp":1714557600123,"twin":{"temp":{"actual":{"value":"25",'
     b'"metadata":{"timestamp":1714557600123}},"expected":{"value":"30"},'
     b'"metadata":{"type":"int"}}}}',
     [("device_twin", {"device": "d1", "namespace": "ns1", "property": "temp"}, T_NS,
       {"value_int": 25})]),
    # pre-1.17 (device id only), message timestamp used, expected-only entry skipped
    ("$hw/events/device/d2/twin/update",
     b'{"event_id":"e","timestamp":1714557600123,"twin":{"t":{"actual":{"value":"1.5"},'
     b'"metadata":{"type":"double"}},"mode":{"expected":{"value":"eco"},'
     b'"metadata":{"type":"string"}},"s":{"actual":{"value":"ok"},"metadata":{"type":"string"}}}}',
     [("device_twin", {"device": "d2", "namespace": "default", "property": "t"}, T_NS,
       {"value": 1.5}),
      ("device_twin", {"device": "d2", "namespace": "default", "property": "s"}, T_NS,
       {"value_str": "ok"})]),
    # older $ke data update
    ("$ke/events/device/d3/data/update",
     b'{"event_id":"","timestamp":1714557600000,"data":{"c":{"value":"123",'
     b'"metadata":{"timestamp":1714557600123,"type":"int"}}}}',
     [("device_twin", {"device": "d3", "namespace": "default", "property": "c"}, T_NS,
       {"value_int": 123})]),
]


@pytest.mark.parametrize(("topic", "payload", "expected"), CASES)
def test_decode_table(topic: str, payload: bytes, expected: list[tuple]) -> None:
    assert rows(decode_mqtt(topic, payload, config(), RECEIVED)) == expected


def test_twin_value_layout_splits_conflicting_types_into_batches() -> None:
    payload = (b'{"timestamp":1714557600123,"twin":{"a":{"actual":{"value":"1"},'
               b'"metadata":{"type":"int"}},"b":{"actual":{"value":"x"},'
               b'"metadata":{"type":"string"}}}}')
    batches = decode_mqtt("$hw/events/device/ns/d/twin/update", payload,
                          config(twin_layout="value"), RECEIVED)
    assert [b.field_types()["value"].name for b in batches] == ["INTEGER", "STRING"]
    assert [r[3] for r in rows(batches)] == [{"value": 1}, {"value": "x"}]


def test_bad_value_reject_policy_drops_and_counts() -> None:
    counts = DecodeCounts()
    out = decode_mqtt("temp", b"time is 2024-05-01 10:00:00  temp: 2.5", config(
        on_bad_value="reject"), RECEIVED, counts)
    assert out == [] and counts.bad_values == 1 and counts.points == 0


def test_model_type_used_when_payload_has_none() -> None:
    registry = DeviceRegistry()
    registry.devices[("ns1", "d1")] = Device(
        "ns1", "d1", "m", {"temp": DeviceProperty("temp", PropertyType.INT)}, Path("x.yaml"))
    cfg = config(models=registry)
    out = decode_http_form("/push/temp", b"temp=25&time=2024-05-01 10:00:00", cfg, RECEIVED)
    assert rows(out) == [("http_data", {"device": "d1", "namespace": "ns1"}, BERLIN_10,
                          {"temp": 25})]


@pytest.mark.parametrize("body", [
    b"temp=25&time=2024-05-01 10:00:00",
    b"temp=25&time=2024-05-01+10%3A00%3A00",
    b"time=2024-05-01%2010:00:00&temp=25",
])
def test_http_form_raw_and_url_encoded(body: bytes) -> None:
    out = decode_http_form("/push/temp", body, config(), RECEIVED)
    assert rows(out) == [("http_data", {"device": "d1", "namespace": "ns1"}, BERLIN_10,
                          {"temp": 25.0})]


MALFORMED = [
    ("temp", b"temp: 25"),
    ("temp", b"time is 2024-13-01 10:00:00  temp: 25"),
    ("temp", b"\xff\xfe"),
    ("mapper/x/data", b"{not json"),
    ("mapper/x/data", b'{"PropertyName":"t","Value":"1"}'),
    ("mapper/x/data", b'{"DeviceName":"d","PropertyName":"t","Value":"1","Type":"complex"}'),
    ("mapper/x/data", b'{"DeviceName":"d","PropertyName":"t","Value":"1","TimeStamp":"x"}'),
    ("$hw/events/device/ns/d/twin/update", b'{"timestamp":1}'),
    ("$hw/events/device/ns/d/twin/update", b'{"twin":{"t":5}}'),
    ("$ke/events/device/d/data/update", b"[]"),
    ("unmapped/topic", b"anything"),
]


@pytest.mark.parametrize(("topic", "payload"), MALFORMED)
def test_malformed_payloads_raise_payload_error(topic: str, payload: bytes) -> None:
    with pytest.raises(PayloadError) as info:
        decode_mqtt(topic, payload, config(), RECEIVED)
    assert info.value.topic == topic and info.value.excerpt == payload[:200]


def test_http_form_errors_name_the_path() -> None:
    with pytest.raises(PayloadError, match="/push/temp"):
        decode_http_form("/push/temp", b"time=2024-05-01 10:00:00", config(), RECEIVED)
    with pytest.raises(PayloadError, match="no mapping"):
        decode_http_form("/other", b"temp=1", config(), RECEIVED)


@settings(max_examples=150, deadline=None)
@given(
    value=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: f"{v:.1f}"),
    epoch_s=st.integers(min_value=946_684_800, max_value=4_102_444_800),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "Asia/Shanghai", "America/New_York"]),
)
def test_simulator_formats_round_trip(value: str, epoch_s: int, zone: str) -> None:
    """What the simulator emits (mapper formats) decodes back to the same value and time."""
    time_ns = epoch_s * 1_000_000_000
    cfg = config(timezone=zone, text_topics={"t": TextTopic("m", "f", (), PropertyType.FLOAT)},
                 http_paths={"/p": HttpPath("d", "n", "m")})
    zi = ZoneInfo(zone)
    text = rows(decode_mqtt("t", format_mapper_text("t", value, time_ns, zi), cfg, RECEIVED))
    # local wall times repeated by a DST fall-back are ambiguous in the mapper format (fold=0)
    assert text[0][3] == {"f": float(value)}
    assert abs(text[0][2] - time_ns) in (0, 3600 * 1_000_000_000)
    form = rows(decode_http_form("/p", format_http_form("f", value, time_ns, zi), cfg, RECEIVED))
    assert form[0][3] == {"f": float(value)} and form[0][2] == text[0][2]
    temp = PROPERTIES[0]
    dm = rows(decode_mqtt("mapper/a/data", format_datamodel("n", "d", temp, value, time_ns),
                          cfg, RECEIVED))
    assert dm == [("device_data", {"device": "d", "namespace": "n"}, time_ns,
                   {"temperature": float(value)})]
    twin = rows(decode_mqtt("$hw/events/device/n/d/twin/update",
                            format_twin_update({"temperature": value, "counter": "7"}, time_ns),
                            cfg, RECEIVED))
    assert [r[3] for r in twin] == [{"value": float(value)}, {"value_int": 7}]


def test_simulator_http_push_and_influx_line(tmp_path: Path) -> None:
    """Simulator HTTP formats against a real loopback HTTP server; form bodies decode back."""
    import re
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from edge_agent.simulator import run_simulator, write_device_yaml
    from ingest.device_models import load_device_dir

    received: list[tuple[str, dict[str, str], bytes]] = []

    class Capture(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), body))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        counts = run_simulator(2, 1000, None, ["http", "influx"], http_url=url, max_ticks=2,
                               influx_token="tok", influx_bucket="b", influx_org="o",
                               start_time_ns=1714557600_000_000_000, timezone="Asia/Shanghai")
    finally:
        server.shutdown()
        server.server_close()
    assert counts == {"http": 20, "influx": 20, "http_errors": 0}
    influx = [r for r in received if r[0].startswith("/api/v2/write")]
    assert {r[0] for r in influx} == {"/api/v2/write?bucket=b&org=o&precision=ns"}
    assert all(r[1]["Authorization"] == "Token tok" for r in influx)
    line = re.compile(rb'stat,device=sim-device-000[01],unit=\w+ \w+="[^"]+" 17145576\d{11}')
    assert all(line.fullmatch(r[2]) for r in influx)
    write_device_yaml(tmp_path, 2, http_url=url)
    registry = load_device_dir(tmp_path)
    cfg = PayloadConfig(timezone="Asia/Shanghai", models=registry, http_paths={
        path: HttpPath(dev.name, dev.namespace) for path, (dev, _) in registry.http_paths().items()
    })
    forms = [r for r in received if r[0].startswith("/sim/")]
    assert len(forms) == 20
    assert all(b" " in r[2] and b"%" not in r[2] for r in forms)  # raw, as the mapper sends
    decoded = [row for path, _, body in forms for row in rows(decode_http_form(path, body, cfg, 0))]
    assert {row[2] for row in decoded} == {1714557600_000_000_000}
    types = {k: type(v).__name__ for row in decoded for k, v in row[3].items()}
    assert types == {"temperature": "float", "humidity": "float", "counter": "int",
                     "door_open": "bool", "status": "str"}
