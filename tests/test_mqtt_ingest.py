"""MqttIngest end to end: real Mosquitto, paho publishers as a mapper, a durable file sink."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge_agent.mqtt_ingest import MqttIngest, MqttIngestConfig, topic_summary
from edge_agent.simulator import (
    DATAMODEL_TOPIC,
    PROPERTIES,
    run_simulator,
    write_device_yaml,
)
from ingest.device_models import load_device_dir
from ingest.kubeedge_payloads import PayloadConfig, TextTopic
from storage.batch import Batch
from tests.mosquitto_fixture import Broker, mosquitto_broker
from tests.waiting import wait_until

DEADLINE_S = 20.0


class Overloaded(Exception):
    """Stands in for the storage engine's Overloaded (matched by name)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"overloaded, retry after {retry_after}s")
        self.retry_after = retry_after


class FileSink:
    """Test stand-in for storage submit(): appends rows as JSON lines, fsyncs, then completes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.overloaded = False
        self.overload_calls = 0
        self._pool = ThreadPoolExecutor(1)
        self._lock = threading.Lock()

    def submit(self, db: str, batches: list[Batch]) -> Future:
        with self._lock:
            if self.overloaded:
                self.overload_calls += 1
                raise Overloaded(0.05)
        return self._pool.submit(self._append, db, batches)

    def _append(self, db: str, batches: list[Batch]) -> int:
        lines = []
        for batch in batches:
            cols = {k: v.to_pylist() for k, v in batch.fields.items()}
            for r in range(len(batch)):
                lines.append(json.dumps({
                    "db": db, "m": batch.measurement,
                    "tags": dict(batch.series[batch.series_id[r]]), "t": int(batch.time[r]),
                    "f": {k: v[r] for k, v in cols.items() if v[r] is not None},
                }))
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())
        return len(lines)

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()]

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    wait_until(condition, timeout, what, interval=0.01)


def publish(broker: Broker, messages: list[tuple[str, bytes]], qos: int = 1, retain: bool = False,
            configure: Callable[[mqtt.Client], None] | None = None) -> None:
    """Publish as a mapper does (paho, QoS 1) and wait for each PUBACK from the broker;
    `configure` sets the client up before it connects (TLS, login)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if configure is not None:
        configure(client)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=qos, retain=retain) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=DEADLINE_S)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def datamodel(i: int, device: str = "d1") -> tuple[str, bytes]:
    body = {"DeviceName": device, "PropertyName": "seq", "Namespace": "ns", "Value": str(i),
            "Type": "int", "TimeStamp": 1714557600000 + i}
    return DATAMODEL_TOPIC.format(namespace="ns", device=device), json.dumps(body).encode()


def ingest_config(broker: Broker, payloads: PayloadConfig | None = None,
                  **overrides: object) -> MqttIngestConfig:
    cfg = MqttIngestConfig(
        host=broker.host, port=broker.port, client_id="edgets-test-ingest",
        topics=("sim/#", "$hw/events/device/+/+/twin/update", "bad/#"),
        database="edge", reconnect_min_s=0.05, reconnect_max_s=0.5,
        payloads=payloads or PayloadConfig(datamodel_topics=("sim/datamodel/+/+",)),
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with mosquitto_broker(tmp_path / "broker") as running:
        yield running


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[FileSink]:
    file_sink = FileSink(tmp_path / "sink.jsonl")
    yield file_sink
    file_sink.close()


def test_simulator_to_storage_exactly_once(broker: Broker, sink: FileSink, tmp_path: Path) -> None:
    devices, ticks = 3, 15
    write_device_yaml(tmp_path / "devices", devices, namespace="sim")
    registry = load_device_dir(tmp_path / "devices")
    payloads = PayloadConfig(
        datamodel_topics=("sim/datamodel/+/+",), models=registry,
        text_topics={topic: TextTopic("mapper_text", prop.name, (), None, dev.namespace,
                                      dev.name, prop.name)
                     for topic, (dev, prop) in registry.mqtt_topics().items()},
    )
    ingest = MqttIngest(ingest_config(broker, payloads), sink.submit)
    ingest.start()
    try:
        wait_for(lambda: ingest.stats()["connected"], "connect")
        counts = run_simulator(
            devices, 1000, None, ["text", "json", "twin"], broker.host, broker.port,
            max_ticks=ticks, namespace="sim", qos=1, start_time_ns=1714557600_000_000_000, seed=7)
        per_format = devices * ticks * len(PROPERTIES)
        assert counts == {"text": per_format, "json": per_format, "twin": devices * ticks,
                          "http_errors": 0}
        bad = [("bad/topic", b"\xffgarbage" * 40),
               ("$hw/events/device/sim/x/twin/update", b"{nope")]
        publish(broker, bad)
        total = 2 * per_format + devices * ticks + len(bad)
        wait_for(lambda: topic_summary(ingest.stats())["received"] == total
                 and ingest.stats()["unacked"] == 0, "all messages handled")
        summary = topic_summary(ingest.stats())
        assert summary == {"received": total, "stored": total - 2, "malformed": 2}
    finally:
        ingest.stop(5)
    rows = sink.rows()
    by_m = Counter(r["m"] for r in rows)
    assert by_m == {"mapper_text": per_format, "device_data": per_format,
                    "device_twin": per_format}
    # every reading exactly once: (device, property, time) unique per path
    dm = Counter((r["tags"]["device"], next(iter(r["f"])), r["t"]) for r in rows
                 if r["m"] == "device_data")
    tw = Counter((r["tags"]["device"], r["tags"]["property"], r["t"]) for r in rows
                 if r["m"] == "device_twin")
    assert max(dm.values()) == 1 and max(tw.values()) == 1
    # typed by the device model: counter INT, door_open BOOLEAN, status STRING
    text_types = {k: type(v).__name__ for r in rows if r["m"] == "mapper_text"
                  for k, v in r["f"].items()}
    assert text_types == {"temperature": "float", "humidity": "float", "counter": "int",
                          "door_open": "bool", "status": "str"}
    # malformed ones were acked: a new session only gets the new sentinel message
    again = MqttIngest(ingest_config(broker), sink.submit)
    again.start()
    try:
        publish(broker, [datamodel(10_000)])
        wait_for(lambda: topic_summary(again.stats())["stored"] == 1, "sentinel stored")
        assert topic_summary(again.stats())["received"] == 1
    finally:
        again.stop(5)


def test_overloaded_withholds_acks_until_redelivery(broker: Broker, sink: FileSink) -> None:
    n, window = 30, 5
    sink.overloaded = True
    first = MqttIngest(ingest_config(broker, receive_maximum=window), sink.submit)
    first.start()
    try:
        wait_for(lambda: first.stats()["connected"], "connect")
        publish(broker, [datamodel(i) for i in range(n)])  # the broker holds all 30
        wait_for(lambda: topic_summary(first.stats())["received"] == window
                 and sink.overload_calls >= 3, "window filled and retries")
        stats = first.stats()
        # acks withheld: the broker's inflight window stopped delivery at Receive Maximum
        assert topic_summary(stats)["received"] == window
        assert topic_summary(stats)["stored"] == 0 and stats["unacked"] == window
        assert "Overloaded" in stats["last_error"]
    finally:
        first.stop(0.2)  # gives up: nothing acked
    assert sink.rows() == []
    sink.overloaded = False
    second = MqttIngest(ingest_config(broker, receive_maximum=window), sink.submit)
    second.start()
    try:
        wait_for(lambda: len(sink.rows()) >= n, "all redelivered and stored")
        wait_for(lambda: second.stats()["unacked"] == 0, "acks sent")
    finally:
        second.stop(5)
    values = Counter(r["f"]["seq"] for r in sink.rows())
    assert values == Counter(range(n))


def test_overload_recovers_in_place(broker: Broker, sink: FileSink) -> None:
    sink.overloaded = True
    ingest = MqttIngest(ingest_config(broker, receive_maximum=10), sink.submit)
    ingest.start()
    try:
        wait_for(lambda: ingest.stats()["connected"], "connect")
        publish(broker, [datamodel(i) for i in range(25)])
        wait_for(lambda: sink.overload_calls >= 2, "overload seen")
        sink.overloaded = False
        wait_for(lambda: topic_summary(ingest.stats())["stored"] == 25, "stored after recovery")
    finally:
        ingest.stop(5)
    assert Counter(r["f"]["seq"] for r in sink.rows()) == Counter(range(25))


def test_broker_down_at_start_and_killed(tmp_path: Path, sink: FileSink) -> None:
    with mosquitto_broker(tmp_path / "b", start=False) as broker:
        ingest = MqttIngest(ingest_config(broker), sink.submit)
        ingest.start()
        try:
            wait_for(lambda: ingest.stats()["last_error"] is not None, "connect failure noted")
            assert not ingest.stats()["connected"]
            broker.start()
            wait_for(lambda: ingest.stats()["connected"], "connect once the broker is up")
            publish(broker, [datamodel(i) for i in range(10)])
            wait_for(lambda: len(sink.rows()) == 10, "first 10 stored")
            broker.kill()
            wait_for(lambda: not ingest.stats()["connected"], "disconnect noticed")
            broker.start()
            wait_for(lambda: ingest.stats()["connected"], "reconnect after kill -9")
            publish(broker, [datamodel(i) for i in range(10, 20)])
            wait_for(lambda: len(sink.rows()) >= 20, "next 10 stored")
        finally:
            ingest.stop(5)
    assert Counter(r["f"]["seq"] for r in sink.rows()) == Counter(range(20))
