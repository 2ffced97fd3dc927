"""Parquet export of committed cloud segments: DuckDB (real) reads the Hive layout and sees exactly
the rows the cloud query view returns; kill -9 of an exporting process never loses or duplicates rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from aiohttp import web

from query.influxql_exec import QueryExecutor
from storage.fsio import write_atomic
from storage.segment_format import write_segment
from sync.cloud_store import CloudTableSource
from sync.parquet_export import ExportConfig, ParquetExporter
from sync.receiver import CloudConfig, add_sync_routes, committed_segments
from sync.segment_source import DirectorySegmentSource
from sync.sender import SenderConfig, SyncSender
from tests.server_process import REPO
from tests.waiting import wait_until, wait_until_async

HOUR = 3600 * 10**9
T0 = 1_700_000_000 * 10**9 - (1_700_000_000 * 10**9) % (86_400 * 10**9)  # a UTC midnight
TOKENS = {"n1": "t1", "n2": "t2"}
Row = tuple[Any, ...]


def segment_table(rng: np.random.Generator, start: int, rows: int, step: int, hosts: list[str]) -> pa.Table:
    times = start + np.arange(rows, dtype=np.int64) * step
    return pa.table({
        "time": pa.array(times, type=pa.timestamp("ns")),
        "host": pa.array([hosts[i % len(hosts)] for i in range(rows)], type=pa.string()),
        "value": pa.array(rng.normal(size=rows), type=pa.float64()),
    })


async def _sync_all(cloud_dir: Path, node_dirs: dict[str, Path], tmp: Path) -> None:
    app = web.Application()
    receiver = add_sync_routes(app, CloudConfig(cloud_dir=cloud_dir, tokens=TOKENS))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        senders = [SyncSender(SenderConfig(url=f"ws://127.0.0.1:{port}", node=node, token=TOKENS[node],
                                           ledger_dir=tmp / f"ledger-{node}", backoff_base_s=0.05),
                              DirectorySegmentSource(directory)) for node, directory in node_dirs.items()]
        tasks = [asyncio.ensure_future(s.run()) for s in senders]
        await wait_until_async(lambda: all(s.status()["lag_segments"] == 0 for s in senders), 60,
                               "sync to finish")
        for s in senders:
            s.stop()
        await asyncio.gather(*tasks)
        assert receiver.counters["segments_committed"] == sum(
            len(DirectorySegmentSource(d).all_sealed()) for d in node_dirs.values())
    finally:
        await runner.cleanup()


def build_cloud(tmp: Path, segments: dict[str, list[tuple[str, pa.Table]]]) -> Path:
    """Segments per node (measurement, table) -> real files streamed into a real receiver."""
    cloud_dir = tmp / "cloud"
    node_dirs: dict[str, Path] = {}
    for node, items in segments.items():
        directory = tmp / f"edge-{node}"
        directory.mkdir()
        for seq, (measurement, table) in enumerate(items):
            write_measurement_segment(directory, seq, measurement, table)
        node_dirs[node] = directory
    asyncio.run(_sync_all(cloud_dir, node_dirs, tmp))
    return cloud_dir


def write_measurement_segment(directory: Path, seq: int, measurement: str, table: pa.Table) -> None:
    """A real segment file + its DirectorySegmentSource sidecar (sealed once the sidecar lands)."""
    path = directory / f"{seq:020d}.seg"
    info = write_segment(path, database="plant", measurement=measurement, seq=seq, table=table,
                         tag_keys=["host"])
    meta = {"size": info.size, "content_hash": info.content_hash, "min_time_ns": info.min_time_ns,
            "max_time_ns": info.max_time_ns, "rows": info.rows, "database": "plant",
            "measurement": measurement}
    write_atomic(directory / f"{seq:020d}.json", json.dumps(meta).encode())


def cloud_view_rows(cloud_dir: Path) -> Counter[Row]:
    """(node, measurement, host, time ns, value) of every row the cloud query view returns."""
    source = CloudTableSource(cloud_dir)
    out: Counter[Row] = Counter()
    for db in source.databases():
        for m in source.measurements(db):
            t = source.read(db, m)
            for node, host, time_ns, value in zip(
                    t.column("node").to_pylist(), t.column("host").to_pylist(),
                    t.column("time").cast(pa.int64()).to_pylist(), t.column("value").to_pylist(),
                    strict=True):
                out[(node, m, host, time_ns, value)] += 1
    return out


def duckdb_rows(root: Path) -> Counter[Row]:
    con = duckdb.connect()
    rows = con.execute(
        "SELECT node, measurement, host, epoch_ns(time), value, CAST(day AS VARCHAR) "
        f"FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true, union_by_name=true)"
    ).fetchall()
    out: Counter[Row] = Counter()
    for node, m, host, time_ns, value, day in rows:
        assert day == dt.datetime.fromtimestamp(time_ns / 1e9, dt.UTC).date().isoformat()
        out[(node, m, host, int(time_ns), value)] += 1
    return out


def test_export_matches_cloud_query_and_is_incremental(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n1_first = segment_table(rng, T0, 30, 2 * HOUR, ["a", "b"])  # spans 3 days
    rewrite = segment_table(rng, T0, 10, 2 * HOUR, ["a", "b"])  # same (host, time): newer values
    segments = {
        "n1": [("cpu", n1_first), ("cpu", rewrite), ("mem", segment_table(rng, T0 + HOUR, 12, 5 * HOUR, ["a"]))],
        "n2": [("cpu", segment_table(rng, T0 + 7, 40, HOUR, ["a", "c"]))],
    }
    cloud_dir = build_cloud(tmp_path, segments)
    view = cloud_view_rows(cloud_dir)
    # the cloud view merges the rewrite like the edge: 30 + 12 + 40 rows, newest value wins
    assert sum(view.values()) == 82 and max(view.values()) == 1
    rewritten = {(h, t): v for t, h, v in zip(rewrite.column("time").cast(pa.int64()).to_pylist(),
                                              rewrite.column("host").to_pylist(),
                                              rewrite.column("value").to_pylist(), strict=True)}
    for node, m, host, time_ns, value in view:
        if node == "n1" and m == "cpu" and (host, time_ns) in rewritten:
            assert value == rewritten[(host, time_ns)]
    # /query goes through the same view: count per node
    counts = QueryExecutor(CloudTableSource(cloud_dir)).execute(
        "SELECT count(value) FROM cpu GROUP BY node", "plant")[0]["series"]
    assert {s["tags"]["node"]: s["values"][0][1] for s in counts} == {"n1": 30, "n2": 40}

    root = tmp_path / "parquet"
    exporter = ParquetExporter(ExportConfig(cloud_dir, str(root)))
    report = exporter.export_once()
    assert report.segments == 4 and report.rows == 82
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    assert files == exporter.done_files()
    assert all(f.split("/")[0].startswith("measurement=") and f.split("/")[1].startswith("day=")
               and f.split("/")[2].startswith("part-n") for f in files)
    assert {f.split("/")[1] for f in files} == {f"day={(dt.date(1970, 1, 1) + dt.timedelta(days=T0 // (86_400 * 10**9) + k)).isoformat()}"
                                                for k in range(3)}
    assert duckdb_rows(root) == view
    again = exporter.export_once()  # nothing new: nothing exported twice
    assert again.segments == 0 and duckdb_rows(root) == view
    exporter.close()


def _kill_during_export(cloud_dir: Path, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sync.parquet_export", "--cloud-dir", str(cloud_dir),
                           "--root", str(root), "--max-batch-segments", "1", *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def _no_duplicate_segments_data(tmp: Path, segments_per_node: int = 6) -> Path:
    rng = np.random.default_rng(9)
    segments = {node: [("cpu", segment_table(rng, T0 + i * 9 * HOUR + k, 18, HOUR // 2, ["a", "b"]))
                       for i in range(segments_per_node)] for k, node in enumerate(TOKENS)}
    return build_cloud(tmp, segments)


@pytest.mark.parametrize("stage", ["planned", "written", "moved"])
def test_kill9_at_each_export_stage_loses_and_duplicates_nothing(tmp_path: Path, stage: str) -> None:
    cloud_dir = _no_duplicate_segments_data(tmp_path, segments_per_node=3)
    view = cloud_view_rows(cloud_dir)
    root = tmp_path / "parquet"
    crashed = _kill_during_export(cloud_dir, root, "--kill-self-at", stage)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    conn = sqlite3.connect(cloud_dir / "catalog.sqlite")
    states = [r[0] for r in conn.execute("SELECT state FROM parquet_batches")]
    conn.close()
    assert states == ["writing"]  # killed inside the first batch, before its commit
    leftovers = list(root.rglob("*.parquet")) + list(root.rglob(".*.tmp"))
    assert leftovers if stage in ("written", "moved") else not leftovers
    finished = _kill_during_export(cloud_dir, root)
    assert finished.returncode == 0, finished.stderr
    assert '"recovered_batches": 1' in finished.stdout
    assert not list(root.rglob(".*.tmp"))
    assert duckdb_rows(root) == view


def test_kill9_at_a_random_moment_of_a_long_export(tmp_path: Path) -> None:
    cloud_dir = _no_duplicate_segments_data(tmp_path, segments_per_node=10)
    view = cloud_view_rows(cloud_dir)
    root = tmp_path / "parquet"
    proc = subprocess.Popen([sys.executable, "-m", "sync.parquet_export", "--cloud-dir", str(cloud_dir),
                             "--root", str(root), "--max-batch-segments", "1"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def batches_started() -> int:
        try:
            conn = sqlite3.connect(cloud_dir / "catalog.sqlite", timeout=5)
            try:
                return int(conn.execute("SELECT COUNT(*) FROM parquet_batches").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return 0  # table not created yet

    wait_until(lambda: batches_started() >= 3 or proc.poll() is not None, 60, "export under way")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = duckdb_rows(root) if list(root.rglob("*.parquet")) else Counter()
    assert all(n <= view[row] for row, n in partial.items())  # never more than the truth
    exporter = ParquetExporter(ExportConfig(cloud_dir, str(root)))
    exporter.export_once()
    exporter.close()
    assert duckdb_rows(root) == view
    assert len(committed_segments(cloud_dir)) == 20
