"""`edgets agent` end to end: real Mosquitto, a real agent subprocess, paho publishers sending the
exact mapper wire formats, HTTP pushes; data read back typed through StorageEngine after stop."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pyarrow as pa
import yaml

from edge_agent.config import load_config
from edge_agent.edge_node import storage_config
from edge_agent.simulator import (
    DATAMODEL_TOPIC,
    PROPERTIES,
    TEXT_TOPIC,
    format_datamodel,
    format_http_form,
    format_mapper_text,
    format_twin_update,
    write_device_yaml,
)
from storage.engine import StorageEngine
from tests.influxdb_process import free_port
from tests.mosquitto_fixture import Broker, mosquitto_broker
from tests.server_process import ServerProcess
from tests.waiting import wait_until

T0_S = 1_714_557_600  # 2024-05-01 10:00:00 UTC
UTC = __import__("zoneinfo").ZoneInfo("UTC")
PROP = {p.name: p for p in PROPERTIES}


def write_agent_config(tmp: Path, broker: Broker, devices_dir: Path | None = None,
                       client_id: str = "edgets-test-agent", **mqtt: object) -> Path:
    lines = ["[storage]", 'fsync = "always"', "[mqtt]", f'broker = "tcp://{broker.host}:{broker.port}"',
             f'client_id = "{client_id}"', 'datamodel_topics = ["sim/datamodel/#"]',
             'lineprotocol_topics = ["lp/#"]', 'reconnect_max = "1s"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in mqtt.items()]
    lines += ["[kubeedge]", 'database = "edge"', "coerce_influx_strings = true"]
    if devices_dir is not None:
        lines += ["[devices]", f'dir = "{devices_dir}"']
    path = tmp / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def health(url: str) -> dict:
    try:
        with urllib.request.urlopen(url + "/health", timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:  # 503 while an input is down: same JSON body
        return json.loads(err.read())


def check(body: dict, name: str) -> dict:
    return next(c for c in body["checks"] if c["name"] == name)


def mqtt_connected(url: str) -> bool:
    return bool(check(health(url), "mqtt").get("connected"))


def post(url: str, body: bytes, content_type: str) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def read_tables(data_dir: Path, db: str = "edge") -> dict[str, pa.Table]:
    engine = StorageEngine(storage_config(load_config(None, {"storage.data_dir": str(data_dir)},
                                                      environ={})))
    engine.open()
    try:
        tables = {m: engine.read(db, m) for m in engine.measurements(db)}
    finally:
        engine.close()
    # time as int64 ns (to_pylist cannot turn ns timestamps into datetime)
    return {m: t.set_column(t.schema.get_field_index("time"), "time", t["time"].cast(pa.int64()))
            for m, t in tables.items()}


class Publisher:
    """A paho QoS 1 publisher that records which messages got their PUBACK."""

    def __init__(self, broker: Broker, client_id: str, clean: bool = True) -> None:
        self.acked: set[int] = set()
        self.mids: dict[int, int] = {}
        self.early: set[int] = set()
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=clean)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()

    def _on_publish(self, _c: object, _u: object, mid: int, _rc: object, _p: object) -> None:
        with self.lock:
            if mid in self.mids:
                self.acked.add(self.mids.pop(mid))
            else:
                self.early.add(mid)  # PUBACK came before publish() recorded the mid

    def publish(self, topic: str, payload: bytes, key: int = -1) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1)  # never under self.lock: paho may
        if key >= 0:  # call on_publish while holding its own lock (lock-order deadlock)
            with self.lock:
                if info.mid in self.early:
                    self.early.discard(info.mid)
                    self.acked.add(key)
                else:
                    self.mids[info.mid] = key
        return info

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_subscribed(url: str, pub: Publisher) -> None:
    """The agent's subscriptions are active once a probe message was stored (a message sent
    before the SUBACK would be dropped by the broker yet PUBACKed to the publisher)."""
    wait_until(lambda: mqtt_connected(url), 20, "agent connected to the broker")
    sent_at = [-1.0]

    def probe_stored() -> bool:
        if check(health(url), "mqtt")["topics"].get("lp/probe", {}).get("stored", 0) >= 1:
            return True
        if time.monotonic() - sent_at[0] > 0.5:  # one sent before the SUBACK was dropped: resend
            pub.publish("lp/probe", b"probe v=1i 1714557600000000000").wait_for_publish(10)
            sent_at[0] = time.monotonic()
        return False

    wait_until(probe_stored, 20, "the probe message stored")


def rows(table: pa.Table, **where: str) -> list[dict]:
    return [r for r in table.to_pylist() if all(r.get(k) == v for k, v in where.items())]


def test_every_payload_format_end_to_end(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    with mosquitto_broker(tmp_path / "broker") as broker:
        write_device_yaml(devices, 2, mqtt_address=f"tcp://{broker.host}:{broker.port}")
        meter = {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
                 "metadata": {"name": "meter-1", "namespace": "default"},
                 "spec": {"deviceModelRef": {"name": "sim-sensor-model"}, "properties": [
                     {"name": "counter", "pushMethod": {"dbMethod": {"influxdb2": {
                         "influxdb2ClientConfig": {"url": "http://x", "org": "o", "bucket": "edge"},
                         "influxdb2DataConfig": {"measurement": "stat", "tag": {"unit": "count"},
                                                 "fieldKey": "beta1test"}}}}}]}}
        (devices / "meter.yaml").write_text(yaml.safe_dump(meter))
        conf = write_agent_config(tmp_path, broker, devices)
        data = tmp_path / "data"
        agent = ServerProcess(data, "-c", str(conf), command="agent").start()
        try:
            t_ns = T0_S * 1_000_000_000
            pub = Publisher(broker, "mapper-e2e")
            wait_subscribed(agent.url, pub)
            d0, d1 = "sim-device-0000", "sim-device-0001"
            text_t = TEXT_TOPIC.format(namespace="default", device=d0, property="temperature")
            text_c = TEXT_TOPIC.format(namespace="default", device=d0, property="counter")
            messages = [
                (text_t, format_mapper_text(text_t, "21.5", t_ns, UTC)),
                (text_c, format_mapper_text(text_c, "42", t_ns, UTC)),
                (DATAMODEL_TOPIC.format(namespace="default", device=d1, property=""),
                 format_datamodel("default", d1, PROP["door_open"], "true", t_ns + 5_000_000)),
                (f"$hw/events/device/default/{d1}/twin/update",
                 format_twin_update({"counter": "7", "status": "warn"}, t_ns + 7_000_000)),
                ("$hw/events/device/legacy-dev/twin/update",
                 format_twin_update({"temperature": "19.5"}, t_ns + 9_000_000)),
                ("lp/site-a", f"lpm,site=a v=1.5,n=3i {t_ns + 11}\nlpm,site=b v=2.5 {t_ns + 12}".encode()),
            ]
            for topic, payload in messages:
                pub.publish(topic, payload).wait_for_publish(10)
            pub.close()
            push_path = "/sim/default/sim-device-0000/humidity"
            assert post(agent.url + push_path, format_http_form("humidity", "55.25", t_ns, UTC),
                        "application/x-www-form-urlencoded") == 204
            assert post(agent.url + push_path, b"no-equals-sign", "application/x-www-form-urlencoded") == 400
            assert post(agent.url + "/api/v2/write?bucket=edge&org=o&precision=ns",
                        f'stat,unit=count beta1test="25" {t_ns}'.encode(), "text/plain") == 204
            wait_until(lambda: check(health(agent.url), "mqtt")["totals"]["stored"] == len(messages) + 1,
                       20, "every MQTT message stored")
            status = health(agent.url)
            assert status["status"] == "pass"
            mq = check(status, "mqtt")
            assert mq["topics"][text_t]["stored"] == 1 and mq["totals"]["malformed"] == 0
            push = check(status, "http_push")["paths"][push_path]
            assert push["stored"] == 1 and push["malformed"] == 1
        finally:
            assert agent.stop() == 0
        assert "stopped cleanly" in "".join(agent.output)

    tables = read_tables(data)
    dd = tables["device_data"]
    assert dd.schema.field("temperature").type == pa.float64()
    assert dd.schema.field("counter").type == pa.int64()  # typed by the Device Model (INT)
    assert dd.schema.field("door_open").type == pa.bool_()
    r0 = rows(dd, device=d0, namespace="default")
    assert {(r["time"], r["temperature"], r["counter"], r["humidity"]) for r in r0} == {
        (t_ns, 21.5, 42, 55.25)}  # text (2 topics) + HTTP push merge into one row
    r1 = rows(dd, device=d1)
    assert [(r["door_open"], r["time"]) for r in r1] == [(True, t_ns + 5_000_000)]
    twin = tables["device_twin"]
    assert [r["value_int"] for r in rows(twin, device=d1, property="counter")] == [7]
    assert [r["value_str"] for r in rows(twin, device=d1, property="status")] == ["warn"]
    assert [r["value"] for r in rows(twin, device="legacy-dev", namespace="default")] == [19.5]
    lpm = tables["lpm"]
    assert sorted((r["site"], r["v"], r["n"]) for r in lpm.to_pylist()) == [("a", 1.5, 3), ("b", 2.5, None)]
    stat = tables["stat"]
    assert stat.schema.field("beta1test").type == pa.int64()  # "25" coerced to the model's INT
    assert [r["beta1test"] for r in stat.to_pylist()] == [25]


MALFORMED = {
    "sim/default/sim-device-0000/temperature": [b"garbage", b"time is 2024-13-01 10:00:00  x: 1",
                                                b"\xff\xfe\x00"],
    "sim/datamodel/default/sim-device-0001": [b"{", b"[1, 2]", b'{"DeviceName": "x"}'],
    "$hw/events/device/default/sim-device-0001/twin/update": [b"null", b'{"twin": 5}',
                                                              b'{"twin": {"t": "x"}}'],
    "lp/bad": [b"no fields here", b"m v=\n", b""],
}


def test_broker_restart_mid_stream_and_malformed_corpus(tmp_path: Path) -> None:
    total = 300
    devices = tmp_path / "devices"
    with mosquitto_broker(tmp_path / "broker") as broker:
        write_device_yaml(devices, 2, mqtt_address=f"tcp://{broker.host}:{broker.port}")
        data = tmp_path / "data"
        agent = ServerProcess(data, "-c", str(write_agent_config(tmp_path, broker, devices)),
                              command="agent").start()
        try:
            pub = Publisher(broker, "lp-publisher", clean=False)
            wait_subscribed(agent.url, pub)
            sent = threading.Event()
            base = T0_S * 1_000_000_000

            def stream() -> None:
                pause = threading.Event()
                for i in range(total):
                    pub.publish("lp/stream", f"stream,src=p seq={i}i {base + i}".encode(), key=i)
                    pause.wait(0.004)
                sent.set()

            thread = threading.Thread(target=stream)
            thread.start()
            wait_until(lambda: pub.acked_count() >= total // 3, 20, "a third of the stream acked")
            broker.stop()  # clean stop: the broker saves its sessions and queued messages
            broker.start()
            for topic, payloads in MALFORMED.items():
                for payload in payloads:
                    pub.publish(topic, payload)
            good_dm = format_datamodel("default", "sim-device-0001", PROP["humidity"], "50.5",
                                       base + 1_000_000)
            pub.publish("sim/datamodel/default/sim-device-0001", good_dm)
            thread.join(30)
            assert sent.is_set()
            try:
                wait_until(lambda: pub.acked_count() == total, 30, "every stream message acked")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {pub.acked_count()} of {total}") from None

            def settled() -> dict | None:
                mq = check(health(agent.url), "mqtt")
                topics = mq["topics"]
                done = (topics.get("lp/stream", {}).get("stored", 0) >= total
                        and mq["unacked"] == 0 and mq["queued"] == 0
                        and topics.get("sim/datamodel/default/sim-device-0001", {}).get("stored") == 1
                        and all(topics.get(t, {}).get("malformed") == len(p) for t, p in MALFORMED.items()))
                return mq if done else None

            try:
                mq = wait_until(settled, 30, "stream, malformed corpus and good message processed")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; publisher acked {pub.acked_count()}; agent mqtt "
                                     f"{check(health(agent.url), 'mqtt')}") from None
            assert mq["connected"] is True
            assert agent.proc is not None and agent.proc.poll() is None  # never crashed
            pub.close()
        finally:
            assert agent.stop() == 0
    stream_rows = read_tables(data)["stream"].to_pylist()
    seqs = [r["seq"] for r in stream_rows]
    assert len(seqs) == len(set(seqs)) and set(seqs) == set(range(total))
    dd = read_tables(data)["device_data"]
    assert [r["humidity"] for r in rows(dd, device="sim-device-0001")] == [50.5]


def test_disk_budget_full_blocks_intake_until_the_cloud_takes_the_backlog(tmp_path: Path) -> None:
    """Sync on, cloud unreachable: segments may not be deleted, so a full disk budget must block
    intake (MQTT acks withheld, HTTP 503/429 + Retry-After) and lose nothing; once the cloud is
    up, synced segments are dropped by retention, intake resumes, every message lands once."""
    total, node, token = 1600, "edge-disk", "tok-disk"
    cloud_port = free_port()
    rng = np.random.default_rng(5)  # random padding: ~100 incompressible bytes a point
    pads = [rng.bytes(100).hex() for _ in range(total)]

    def message(i: int) -> bytes:
        return f'flood,device=d{i % 20} v={i}i,pad="{pads[i]}" {1714557600000000000 + i}'.encode()

    with mosquitto_broker(tmp_path / "broker") as broker:
        conf = tmp_path / "agent.toml"
        conf.write_text("\n".join([
            "[storage]", 'disk_budget = "160KiB"', 'flush_size = "8KiB"', 'flush_age = "100ms"',
            "compaction = false", 'wal_file_size = "32KiB"',
            "[mqtt]", f'broker = "tcp://{broker.host}:{broker.port}"', 'client_id = "edgets-disk"',
            'lineprotocol_topics = ["lp/#"]', 'reconnect_max = "1s"', "receive_maximum = 20",
            "[kubeedge]", 'database = "edge"',
            "[sync]", f'url = "ws://127.0.0.1:{cloud_port}"', f'node_id = "{node}"', f'token = "{token}"',
            'heartbeat = "1s"', 'backoff_cap = "300ms"']) + "\n")
        agent = ServerProcess(tmp_path / "data", "-c", str(conf), command="agent").start()
        cloud: ServerProcess | None = None
        try:
            pub = Publisher(broker, "disk-publisher")
            wait_subscribed(agent.url, pub)

            def blocked() -> dict | None:
                status = health(agent.url)
                mq, storage = check(status, "mqtt"), check(status, "storage")["stats"]
                return status if storage["overloaded"] > 0 and mq["unacked"] > 0 else None

            def stored() -> int:
                return check(health(agent.url), "mqtt")["topics"].get("lp/flood", {}).get("stored", 0)

            published, status = 0, None
            while status is None and published < total:  # waves, so flushes see the budget fill up
                for i in range(published, published + 100):
                    pub.publish("lp/flood", message(i), key=i)
                published += 100
                wait_until(lambda n=published: blocked() or stored() == n, 60, "a wave stored, or intake blocked")
                status = blocked()
            assert status is not None, f"intake never blocked: {json.dumps(health(agent.url))[:3000]}"
            for i in range(published, total):  # the rest queues at the broker while intake is blocked
                pub.publish("lp/flood", message(i), key=i)
            wait_until(lambda: pub.acked_count() == total, 30, "the broker accepting the whole flood")
            assert 0 < check(status, "mqtt")["unacked"] <= 100
            # whatever the broker makes of Receive Maximum, the agent holds at most
            # max(2 x receive_maximum, 64) un-acked messages; the rest waits at the broker
            mq = check(health(agent.url), "mqtt")
            assert mq["unacked"] <= 64 and mq["queued"] <= 64, mq
            assert stored() < total
            # HTTP writers are refused too. Usage hovers at the budget (WAL files go after each
            # flush), so a small write may still fit: write until refused, keep what was accepted.
            accepted: list[int] = []

            def refused_probe(path: str, code: int) -> urllib.error.HTTPError | None:
                for _ in range(200):
                    n = 10_000 + len(accepted) + 1000 * (code == 429)
                    line = f"httpprobe,device=http v={n}i {1714557600000000000 + n}".encode()
                    req = urllib.request.Request(f"{agent.url}{path}", data=line, method="POST")
                    try:
                        with urllib.request.urlopen(req, timeout=30):
                            accepted.append(n)
                    except urllib.error.HTTPError as err:
                        return err
                return None

            refused = refused_probe("/write?db=edge", 503)
            assert refused is not None and refused.code == 503 and int(refused.headers["Retry-After"]) >= 1
            refused = refused_probe("/api/v2/write?bucket=edge", 429)
            assert refused is not None and refused.code == 429 and "Retry-After" in refused.headers

            cloud = ServerProcess(tmp_path / "cloud", "--set", f"cloud.tokens={node}:{token}", command="cloud")
            cloud.args[cloud.args.index("--bind") + 1] = f"127.0.0.1:{cloud_port}"
            cloud.start()

            def drained() -> bool:
                status = health(agent.url)
                sync, stats = check(status, "sync"), check(status, "storage")["stats"]
                return stored() == total and stats["buffer_rows"] == 0 and sync["lag_segments"] == 0
            try:
                wait_until(drained, 120, "every message stored and shipped to the cloud")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {json.dumps(health(agent.url))[:4000]}") from None
            pub.close()
            params = urllib.parse.urlencode({"db": "edge", "q": "SELECT v FROM flood", "epoch": "ns"})
            with urllib.request.urlopen(f"{cloud.url}/query?{params}", timeout=60) as resp:
                series = json.loads(resp.read())["results"][0]["series"]
            values = [row[1] for s in series for row in s["values"]]
            assert sorted(values) == list(range(total)), "every message exactly once in the cloud"
            params = urllib.parse.urlencode({"db": "edge", "q": "SELECT v FROM httpprobe", "epoch": "ns"})
            with urllib.request.urlopen(f"{cloud.url}/query?{params}", timeout=60) as resp:
                probe_series = json.loads(resp.read())["results"][0].get("series", [])
            assert sorted(row[1] for s in probe_series for row in s["values"]) == sorted(accepted)
        finally:
            assert agent.stop(timeout=60) == 0
            if cloud is not None:
                cloud.stop()
