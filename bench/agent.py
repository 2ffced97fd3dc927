"""Agent ingest benchmark: simulator (1,000 devices) -> Mosquitto -> MqttIngest -> StorageEngine,
next to the same points as line protocol over HTTP to `edgets serve`. Prints a table.

Latency definition (both paths): durable_time - point timestamp, where the point timestamp is the
publisher's clock written into the payload (DataModel `TimeStamp` / twin `timestamp`, epoch ms;
for HTTP the line's timestamp) and durable_time is when the storage write future completed
(WAL written + fsynced with fsync=always, rows readable) for MQTT — i.e. the moment the PUBACK
may go out — and when the 204 arrived for HTTP. Simulator and agent share the host clock.

    python bench/agent.py [--devices 1000] [--rate 1] [--duration 20] [--formats twin]
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_agent.agent import agent_state, mqtt_ingest_config  # noqa: E402
from edge_agent.config import load_config  # noqa: E402
from edge_agent.demo import ChildBroker, find_mosquitto, free_port  # noqa: E402
from edge_agent.edge_node import storage_config  # noqa: E402
from edge_agent.mqtt_ingest import MqttIngest, topic_summary  # noqa: E402
from edge_agent.simulator import PROPERTIES, DeviceState  # noqa: E402
from storage.batch import Batch  # noqa: E402
from storage.engine import StorageEngine  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of `pid` in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


class LatencyRecorder:
    """Wraps engine.submit: on completion records now - point time for every row (numpy)."""

    def __init__(self, engine: StorageEngine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.samples: list[np.ndarray] = []
        self.points = 0

    def submit(self, db: str, batches: list[Batch]) -> Future:
        future = self.engine.submit(db, batches)
        times = np.concatenate([b.time for b in batches]) if batches else np.empty(0, np.int64)

        def done(f: Future) -> None:
            if f.exception() is None:
                now = time.time_ns()
                with self.lock:
                    self.samples.append(now - times)
                    self.points += len(times)

        future.add_done_callback(done)
        return future

    def percentiles(self) -> tuple[float, float]:
        with self.lock:
            if not self.samples:
                return float("nan"), float("nan")
            lat = np.concatenate(self.samples) / 1e6
        return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def bench_mqtt(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    exe = find_mosquitto()
    if exe is None:
        raise SystemExit("mosquitto not installed")
    broker = ChildBroker(exe, workdir)
    broker.start()
    config = load_config(None, {"storage.data_dir": str(workdir / "mqtt-data"),
                                "mqtt.broker": f"tcp://127.0.0.1:{broker.port}",
                                "mqtt.client_id": "bench-agent"}, environ={})
    config.mqtt.datamodel_topics = ["sim/datamodel/#"]
    engine = StorageEngine(storage_config(config))
    engine.open()
    engine.create_database(config.kubeedge.database)
    recorder = LatencyRecorder(engine)
    state = agent_state(config)
    ingest = MqttIngest(mqtt_ingest_config(config, state), recorder.submit)
    ingest.start()
    deadline = time.monotonic() + 10
    while not ingest.stats()["connected"] and time.monotonic() < deadline:
        threading.Event().wait(0.05)
    sim = subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "simulate", "--devices", str(args.devices),
         "--rate", str(args.rate), "--duration", str(args.duration), "--formats", args.formats,
         "--mqtt-port", str(broker.port), "--qos", "1"], cwd=REPO, stdout=subprocess.PIPE)
    started = time.monotonic()
    sim.wait()
    # Drain: until every message the broker took is stored (or 30 s).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stats = ingest.stats()
        if stats["queued"] == 0 and stats["unacked"] == 0:
            break
        threading.Event().wait(0.1)
    elapsed = time.monotonic() - started
    stats = ingest.stats()
    totals = topic_summary(stats)
    p50, p99 = recorder.percentiles()
    rss, peak = rss_mib(os.getpid())
    ingest.stop()
    engine.close()
    broker.stop()
    return {"messages/s": totals["stored"] / elapsed, "points/s": recorder.points / elapsed,
            "p50 ms": p50, "p99 ms": p99, "RSS MiB": rss, "peak RSS MiB": peak,
            "messages": totals["stored"], "points": recorder.points}


def bench_http(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "serve", "--data-dir", str(workdir / "http-data"),
         "--bind", f"127.0.0.1:{port}", "--log-level", "WARNING"], cwd=REPO,
        stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    for line in server.stdout:
        if "listening on" in line:
            break
    import random

    rng = random.Random(1)
    devices = [DeviceState(i, random.Random(rng.getrandbits(64))) for i in range(args.devices)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: list[float] = []
    points = requests = 0
    started = time.monotonic()
    tick = 0
    period = 1.0 / args.rate
    while tick * period < args.duration:
        wait = started + tick * period - time.monotonic()
        if wait > 0:
            threading.Event().wait(wait)
        now_ns = time.time_ns()
        lines = []
        for device in devices:  # one request per tick, as a batching mapper/telegraf would
            values = device.step()
            fields = []
            for prop in PROPERTIES:
                v = values[prop.name]
                fields.append(f"{prop.name}={v}i" if prop.model_type == "INT" else
                              f'{prop.name}="{v}"' if prop.model_type == "STRING" else
                              f"{prop.name}={v}")
            lines.append(f"device_data,device={device.name},namespace=default "
                         f"{','.join(fields)} {now_ns}")
        conn.request("POST", "/api/v2/write?bucket=edge&precision=ns", body="\n".join(lines))
        resp = conn.getresponse()
        resp.read()
        done = time.time_ns()
        if resp.status == 204:
            latencies.append((done - now_ns) / 1e6)
            points += len(lines) * len(PROPERTIES)
            requests += 1
        tick += 1
    elapsed = time.monotonic() - started
    rss, peak = rss_mib(server.pid)
    server.terminate()
    server.wait(30)
    lat = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {"messages/s": requests / elapsed, "points/s": points / elapsed,
            "p50 ms": float(np.percentile(lat, 50)), "p99 ms": float(np.percentile(lat, 99)),
            "RSS MiB": rss, "peak RSS MiB": peak, "messages": requests, "points": points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1.0, help="readings/s per device")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--formats", default="twin", help="simulator MQTT formats: twin,json,text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgets-bench-agent-") as tmp:
        results = {f"MQTT ({args.formats})": bench_mqtt(args, Path(tmp)),
                   "HTTP line protocol": bench_http(args, Path(tmp))}
    columns = ["messages/s", "points/s", "p50 ms", "p99 ms", "RSS MiB", "peak RSS MiB",
               "messages", "points"]
    print(f"{args.devices} devices x {args.rate:g} Hz x {args.duration:g} s, fsync=always")
    print(f"{'path':<22}" + "".join(f"{c:>14}" for c in columns))
    for name, row in results.items():
        print(f"{name:<22}" + "".join(f"{row[c]:>14.1f}" for c in columns))


if __name__ == "__main__":
    main()
