"""System level: an `edgets serve` process syncing to an `edgets cloud` process; points written over
HTTP show up in the cloud's /query tagged with the node; kill -9 loops of both keep every
acknowledged point in the cloud (query view and Parquet export) exactly once."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np

from sync.parquet_export import ExportConfig, ParquetExporter
from tests.server_process import ServerProcess
from tests.waiting import wait_until

DB = "plant"
NODE, TOKEN = "edge-s", "secret-s"
T0 = 1_700_400_000 * 10**9
Point = tuple[str, int, float]  # host, time ns, value


def start_cloud(cloud_dir: Path, bind: str = "127.0.0.1:0") -> ServerProcess:
    cloud = ServerProcess(cloud_dir, "--set", f"cloud.tokens={NODE}:{TOKEN}", command="cloud")
    cloud.args[cloud.args.index("--bind") + 1] = bind
    return cloud.start()


def start_edge(edge_dir: Path, cloud_port: int) -> ServerProcess:
    return ServerProcess(
        edge_dir, "--set", f"sync.url=ws://127.0.0.1:{cloud_port}", "--set", f"sync.node_id={NODE}",
        "--set", f"sync.token={TOKEN}", "--set", "sync.heartbeat=1s", "--set", "sync.backoff_cap=300ms",
        "--set", f"http.default_database={DB}", "--set", "storage.flush_size=64KiB",
        "--set", "storage.flush_age=200ms", "--set", "storage.compaction=false").start()


def write_points(url: str, points: list[Point]) -> bool:
    """POST line protocol; True only when the edge acknowledged it (204)."""
    body = "\n".join(f"cpu,host={h} value={v!r} {t}" for h, t, v in points).encode()
    request = urllib.request.Request(f"{url}/write?db={DB}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status == 204
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def cloud_points(url: str) -> Counter[tuple[str, str, int, float]]:
    """(node, host, time, value) of every row the cloud's /query returns (duplicates counted)."""
    params = urllib.parse.urlencode({"q": "SELECT * FROM cpu", "db": DB, "epoch": "ns"})
    try:
        with urllib.request.urlopen(f"{url}/query?{params}", timeout=30) as resp:
            result = json.loads(resp.read())["results"][0]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return Counter()
    out: Counter[tuple[str, str, int, float]] = Counter()
    for series in result.get("series", []):
        cols = series["columns"]
        for values in series["values"]:
            row = dict(zip(cols, values, strict=True))
            out[(row["node"], row["host"], row["time"], float(row["value"]))] += 1
    return out


def test_edge_and_cloud_processes_kill9_loop_every_acked_point_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    cloud = start_cloud(tmp_path / "cloud")
    cloud_bind = f"127.0.0.1:{cloud.port}"
    edge = start_edge(tmp_path / "edge", cloud.port)
    acked: list[Point] = []
    unacked: list[Point] = []  # refused or cut off: may or may not have been stored
    counter = 0
    kills = Counter[str]()
    pause = threading.Event()
    try:
        # first: plain delivery, tagged with the node
        first = [(f"h{i % 4}", T0 + i * 1000, float(i)) for i in range(300)]
        assert write_points(edge.url, first)
        acked += first
        counter = len(first)
        wait_until(lambda: len(cloud_points(cloud.url)) == 300, 30, "first points in the cloud")
        assert {k[0] for k in cloud_points(cloud.url)} == {NODE}

        for round_no in range(6):
            for _ in range(int(rng.integers(2, 6))):
                batch = [(f"h{(counter + i) % 4}", T0 + (counter + i) * 1000, float(counter + i))
                         for i in range(int(rng.integers(100, 400)))]
                counter += len(batch)
                (acked if write_points(edge.url, batch) else unacked).extend(batch)
            # a random moment relative to the edge's background flush and sync (not a sync wait)
            pause.wait(float(rng.uniform(0.0, 0.8)))
            victim = "edge" if round_no % 2 == 0 or rng.random() < 0.3 else "cloud"
            kills[victim] += 1
            if victim == "edge":
                edge.kill()
                edge = start_edge(tmp_path / "edge", cloud.port)
            else:
                cloud.kill()
                cloud = start_cloud(tmp_path / "cloud", cloud_bind)

        want = Counter((NODE, h, t, v) for h, t, v in acked)
        wait_until(lambda: set(cloud_points(cloud.url)) >= set(want), 40,
                   f"all {len(want)} acknowledged points in the cloud")
        got = cloud_points(cloud.url)
        assert max(got.values()) == 1, "a point is in the cloud query view twice"
        maybe = {(NODE, h, t, v) for h, t, v in unacked}
        assert set(got) - set(want) <= maybe  # nothing that was never written
        assert kills["edge"] >= 3 and kills["cloud"] >= 1
    finally:
        edge.stop()
        cloud.stop()

    # the Parquet export of the same cloud holds every acknowledged point exactly once as well
    exporter = ParquetExporter(ExportConfig(tmp_path / "cloud", str(tmp_path / "parquet")))
    try:
        exporter.export_once()
    finally:
        exporter.close()
    rows = duckdb.connect().execute(
        f"SELECT node, host, epoch_ns(time), value FROM read_parquet('{tmp_path}/parquet/**/*.parquet',"
        " hive_partitioning=true)").fetchall()
    in_parquet = Counter((str(n), str(h), int(t), float(v)) for n, h, t, v in rows)
    assert in_parquet == Counter(set(got))
