"""`edgets simulate`: fake KubeEdge mappers publishing the exact mapper wire formats (MQTT text,
DataModel JSON, twin updates, HTTP form push, influxdb2 line), plus matching Device YAML."""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import yaml

FORMATS = ("text", "json", "twin", "http", "influx")
TEXT_TOPIC = "sim/{namespace}/{device}/{property}"
DATAMODEL_TOPIC = "sim/datamodel/{namespace}/{device}"
HTTP_PATH = "/sim/{namespace}/{device}/{property}"
INFLUX_MEASUREMENT = "stat"
MODEL_NAME = "sim-sensor-model"


@dataclass(frozen=True, slots=True)
class SimProperty:
    name: str
    model_type: str  # DeviceModel type: INT FLOAT DOUBLE STRING BOOLEAN
    twin_type: str  # twin metadata.type spelling
    unit: str


PROPERTIES: tuple[SimProperty, ...] = (
    SimProperty("temperature", "FLOAT", "float", "celsius"),
    SimProperty("humidity", "DOUBLE", "double", "percent"),
    SimProperty("counter", "INT", "int", "count"),
    SimProperty("door_open", "BOOLEAN", "boolean", "bool"),
    SimProperty("status", "STRING", "string", "state"),
)


class DeviceState:
    """One simulated device: a slow random walk per property, seeded."""

    def __init__(self, index: int, rng: random.Random) -> None:
        self.name = f"sim-device-{index:04d}"
        self.rng = rng
        self.temperature = 18.0 + rng.random() * 8
        self.humidity = 40.0 + rng.random() * 20
        self.counter = rng.randrange(0, 1000)
        self.door_open = False
        self.status = "ok"

    def step(self) -> dict[str, str]:
        """Next reading of every property, formatted as a mapper does (strings)."""
        rng = self.rng
        self.temperature = min(45.0, max(-10.0, self.temperature + rng.gauss(0, 0.2)))
        self.humidity = min(100.0, max(0.0, self.humidity + rng.gauss(0, 0.5)))
        self.counter += rng.randrange(1, 5)
        if rng.random() < 0.05:
            self.door_open = not self.door_open
        roll = rng.random()
        self.status = "fault" if roll < 0.01 else "warn" if roll < 0.05 else "ok"
        return {
            "temperature": f"{self.temperature:.1f}",
            "humidity": f"{self.humidity:.2f}",
            "counter": str(self.counter),
            "door_open": "true" if self.door_open else "false",
            "status": self.status,
        }


@dataclass(slots=True)
class SimulatorConfig:
    devices: int = 10
    rate_hz: float = 1.0  # readings per second per device (every property each time)
    duration_s: float | None = 10.0  # None: until stop_event is set
    formats: tuple[str, ...] = ("text", "json", "twin")
    namespace: str = "default"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    qos: int = 1
    http_url: str = "http://127.0.0.1:8086"
    influx_org: str = "edge"
    influx_bucket: str = "kubeedge"
    influx_token: str | None = None
    timezone: str = "UTC"  # the mapper's local time zone for text/HTTP time strings
    seed: int = 1
    max_ticks: int | None = None  # stop after this many ticks (tests, reproducible runs)
    start_time_ns: int | None = None  # simulated clock start; None = wall clock


def format_mapper_text(topic: str, value: str, time_ns: int, zone: ZoneInfo) -> bytes:
    """`time is 2024-05-01 10:00:00  temp: 25` (local time, second resolution)."""
    return f"time is {_local(time_ns, zone)}  {topic}: {value}".encode()


def format_datamodel(namespace: str, device: str, prop: SimProperty, value: str,
                     time_ns: int) -> bytes:
    return json.dumps({
        "DeviceName": device, "PropertyName": prop.name, "Namespace": namespace,
        "Value": value, "Type": prop.twin_type, "TimeStamp": time_ns // 1_000_000,
    }).encode()


def format_twin_update(values: dict[str, str], time_ns: int) -> bytes:
    ms = time_ns // 1_000_000
    by_name = {p.name: p for p in PROPERTIES}
    twin = {
        name: {"actual": {"value": value, "metadata": {"timestamp": ms}},
               "metadata": {"type": by_name[name].twin_type}}
        for name, value in values.items()
    }
    return json.dumps({"event_id": "", "timestamp": ms, "twin": twin}).encode()


def format_http_form(prop: str, value: str, time_ns: int, zone: ZoneInfo) -> bytes:
    """`temp=25&time=2024-05-01 10:00:00`: raw space, not URL-encoded, as the mapper sends."""
    return f"{prop}={value}&time={_local(time_ns, zone)}".encode()


def format_influx_line(device: str, prop: SimProperty, value: str, time_ns: int) -> bytes:
    """`stat,device=...,unit=celsius temperature="25.3" <ns>`: string field, as the mapper."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return (f'{INFLUX_MEASUREMENT},device={device},unit={prop.unit} '
            f'{prop.name}="{escaped}" {time_ns}').encode()


def _local(time_ns: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(time_ns // 1_000_000_000, zone).strftime("%Y-%m-%d %H:%M:%S")


class _HttpPoster:
    """Keep-alive HTTP/1.1 POSTs to one base URL; reconnects after errors."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.https = parts.scheme == "https"
        self.prefix = parts.path.rstrip("/")
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        for attempt in range(2):
            if self.conn is None:
                cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                self.conn = cls(self.host, self.port, timeout=10)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.conn.request("POST", self.prefix + path, body=body, headers=headers)
                response = self.conn.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def run_simulator(
    devices: int,
    rate_hz: float,
    duration_s: float | None,
    formats: Sequence[str],
    mqtt_host: str = "127.0.0.1",
    mqtt_port: int = 1883,
    http_url: str = "http://127.0.0.1:8086",
    *,
    stop_event: threading.Event | None = None,
    **options: object,
) -> dict[str, int]:
    """Run fake mappers; `options` are the other SimulatorConfig fields (qos, seed, ...).
    Returns messages sent per format (see `simulate`)."""
    config = SimulatorConfig(devices=devices, rate_hz=rate_hz, duration_s=duration_s,
                             formats=tuple(formats), mqtt_host=mqtt_host, mqtt_port=mqtt_port,
                             http_url=http_url, **options)  # type: ignore[arg-type]
    return simulate(config, stop_event)


def simulate(config: SimulatorConfig,
             stop_event: threading.Event | None = None) -> dict[str, int]:
    """Publish until duration/max_ticks/stop_event; returns messages sent per format (QoS 1:
    acknowledged by the broker; HTTP: answered 2xx) plus `http_errors`."""
    unknown = set(config.formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown simulator formats {sorted(unknown)}; known: {FORMATS}")
    zone = ZoneInfo(config.timezone)
    rng = random.Random(config.seed)
    devices = [DeviceState(i, random.Random(rng.getrandbits(64))) for i in range(config.devices)]
    counts = dict.fromkeys(config.formats, 0)
    counts["http_errors"] = 0
    stop = stop_event or threading.Event()
    client: mqtt.Client | None = None
    infos: list[tuple[str, mqtt.MQTTMessageInfo]] = []
    if {"text", "json", "twin"} & set(config.formats):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"edgets-sim-{config.seed}", protocol=mqtt.MQTTv311)
        client.max_queued_messages_set(0)
        client.connect(config.mqtt_host, config.mqtt_port, keepalive=30)
        client.loop_start()
    poster = _HttpPoster(config.http_url) if {"http", "influx"} & set(config.formats) else None
    token_header = {"Authorization": f"Token {config.influx_token}"} if config.influx_token else {}
    write_path = (f"/api/v2/write?bucket={quote(config.influx_bucket)}"
                  f"&org={quote(config.influx_org)}&precision=ns")
    period = 1.0 / config.rate_hz
    started = time.monotonic()
    tick = 0
    ns = config.namespace
    try:
        while not stop.is_set():
            if config.max_ticks is not None and tick >= config.max_ticks:
                break
            due = started + tick * period
            if config.duration_s is not None and due - started >= config.duration_s:
                break
            wait = due - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
            if config.start_time_ns is not None:
                now_ns = config.start_time_ns + int(tick * period * 1e9)
            else:
                now_ns = time.time_ns()
            for device in devices:
                values = device.step()
                for prop in PROPERTIES:
                    value = values[prop.name]
                    topic_args = {"namespace": ns, "device": device.name, "property": prop.name}
                    if "text" in counts:
                        topic = TEXT_TOPIC.format(**topic_args)
                        payload = format_mapper_text(topic, value, now_ns, zone)
                        infos.append(("text", client.publish(topic, payload, qos=config.qos)))
                    if "json" in counts:
                        topic = DATAMODEL_TOPIC.format(**topic_args)
                        payload = format_datamodel(ns, device.name, prop, value, now_ns)
                        infos.append(("json", client.publish(topic, payload, qos=config.qos)))
                    if "http" in counts:
                        status = poster.post(
                            HTTP_PATH.format(**topic_args),
                            format_http_form(prop.name, value, now_ns, zone),
                            {"Content-Type": "application/x-www-form-urlencoded"},
                        )
                        counts["http" if 200 <= status < 300 else "http_errors"] += 1
                    if "influx" in counts:
                        status = poster.post(write_path,
                                             format_influx_line(device.name, prop, value, now_ns),
                                             {"Content-Type": "text/plain; charset=utf-8",
                                              **token_header})
                        counts["influx" if 200 <= status < 300 else "http_errors"] += 1
                if "twin" in counts:
                    topic = f"$hw/events/device/{ns}/{device.name}/twin/update"
                    infos.append(("twin", client.publish(topic, format_twin_update(values, now_ns),
                                                         qos=config.qos)))
            tick += 1
            infos = _settle(infos, counts, block=False)
    finally:
        if client is not None:
            _settle(infos, counts, block=True)
            client.disconnect()
            client.loop_stop()
        if poster is not None:
            poster.close()
    return counts


def _settle(infos: list[tuple[str, mqtt.MQTTMessageInfo]], counts: dict[str, int],
            block: bool) -> list[tuple[str, mqtt.MQTTMessageInfo]]:
    """Count published messages; keep the ones still waiting for their PUBACK."""
    waiting = []
    for fmt, info in infos:
        if block and not info.is_published():
            try:
                info.wait_for_publish(timeout=30)
            except (RuntimeError, ValueError):
                pass
        if info.is_published():
            counts[fmt] += 1
        else:
            waiting.append((fmt, info))
    return waiting


def write_device_yaml(directory: str | Path, devices: int, namespace: str = "default",
                      mqtt_address: str = "tcp://127.0.0.1:1883", qos: int = 1,
                      http_url: str = "http://127.0.0.1:8086") -> list[Path]:
    """Write the DeviceModel and one Device per simulated device (v1beta1), with the text and
    HTTP pushMethods the simulator uses, so `load_device_dir` types every property."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    http = urlsplit(http_url)
    model = {
        "apiVersion": "devices.kubeedge.io/v1beta1", "kind": "DeviceModel",
        "metadata": {"name": MODEL_NAME, "namespace": namespace},
        "spec": {"protocol": "virtual", "properties": [
            {"name": p.name, "type": p.model_type, "accessMode": "ReadOnly", "unit": p.unit}
            for p in PROPERTIES]},
    }
    written = [_write_yaml(root / "sim-model.yaml", [model])]
    docs = []
    for index in range(devices):
        name = f"sim-device-{index:04d}"
        props = []
        for p in PROPERTIES:
            args = {"namespace": namespace, "device": name, "property": p.name}
            props.append({
                "name": p.name, "reportCycle": 1000, "collectCycle": 1000,
                "reportToCloud": False,
                "pushMethod": {
                    "mqtt": {"address": mqtt_address, "topic": TEXT_TOPIC.format(**args),
                             "qos": qos, "retained": False},
                    "http": {"hostName": f"{http.scheme}://{http.hostname}",
                             "port": http.port or 80, "requestPath": HTTP_PATH.format(**args),
                             "timeout": 1},
                },
            })
        docs.append({
            "apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"deviceModelRef": {"name": MODEL_NAME},
                     "protocol": {"protocolName": "virtual"}, "properties": props},
        })
    written.append(_write_yaml(root / "sim-devices.yaml", docs))
    return written


def _write_yaml(path: Path, documents: list[dict]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return path


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="edgets simulate",
                                               description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1.0, help="readings/s per device")
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    parser.add_argument("--formats", default="text,json,twin", help=",".join(FORMATS))
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    parser.add_argument("--http-url", default="http://127.0.0.1:8086")
    parser.add_argument("--org", default="edge")
    parser.add_argument("--bucket", default="kubeedge")
    parser.add_argument("--token", default=None)
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write-devices", metavar="DIR", default=None,
                        help="write matching Device/DeviceModel YAML into DIR and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.write_devices:
        for path in write_device_yaml(args.write_devices, args.devices, args.namespace,
                                      f"tcp://{args.mqtt_host}:{args.mqtt_port}", args.qos,
                                      args.http_url):
            print(path)
        return 0
    config = SimulatorConfig(
        devices=args.devices, rate_hz=args.rate, duration_s=args.duration,
        formats=tuple(f for f in args.formats.split(",") if f), namespace=args.namespace,
        mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port, qos=args.qos,
        http_url=args.http_url, influx_org=args.org, influx_bucket=args.bucket,
        influx_token=args.token, timezone=args.timezone, seed=args.seed,
    )
    stop = threading.Event()
    try:
        counts = simulate(config, stop)
    except KeyboardInterrupt:
        stop.set()
        return 130
    print(json.dumps(counts))
    return 0
