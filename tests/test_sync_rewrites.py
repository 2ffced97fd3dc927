"""Rewrites and re-flushes reaching the cloud: an edge DELETE (segment rewrite) is shipped and hides
the old rows in the cloud view and Parquet; rows re-sealed under a new seq are exported once;
SyncSender.last_error clears after a reconnect."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from aiohttp import web

from storage.batch import Batch
from storage.engine import StorageConfig, StorageEngine
from storage.segment_store import SegmentStore
from sync.cloud_store import CloudTableSource
from sync.ledger import AckLedger
from sync.parquet_export import ExportConfig, ParquetExporter
from sync.receiver import CloudConfig, CloudReceiver, add_sync_routes
from sync.sender import SenderConfig, SyncSender
from sync.store_source import StoreSegmentSource, already_synced, ledger_delete_guard

TOKENS = {"edge-r": "secret-r"}
from tests.waiting import wait_until_async as wait_for  # noqa: E402

DB = "plant"
T0 = 1_700_000_000 * 10**9


async def start_cloud(cloud_dir: Path, port: int = 0) -> tuple[web.AppRunner, CloudReceiver, int]:
    app = web.Application()
    receiver = add_sync_routes(app, CloudConfig(cloud_dir=cloud_dir, tokens=TOKENS))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    return runner, receiver, runner.addresses[0][1]


def sender_of(port: int, ledger: AckLedger, store: SegmentStore) -> SyncSender:
    config = SenderConfig(url=f"ws://127.0.0.1:{port}", node="edge-r", token=TOKENS["edge-r"],
                          ledger_dir=ledger.directory, backoff_base_s=0.05, backoff_cap_s=0.3,
                          heartbeat_s=1.0)
    return SyncSender(config, StoreSegmentSource(store, ledger), ledger)


def sync_until_idle(cloud_dir: Path, store: SegmentStore, ledger: AckLedger) -> SyncSender:
    """Run a real receiver and sender until the edge has no unsynced segment left."""

    async def run() -> SyncSender:
        runner, _receiver, port = await start_cloud(cloud_dir)
        try:
            sender = sender_of(port, ledger, store)
            task = asyncio.ensure_future(sender.run())
            await wait_for(lambda: sender.connected and sender.status()["lag_segments"] == 0, 30,
                           "sync idle")
            sender.stop()
            await asyncio.wait_for(task, 10)
            return sender
        finally:
            await runner.cleanup()

    return asyncio.run(run())


def cpu_batch(hosts: list[str], points: int) -> Batch:
    n = len(hosts) * points
    return Batch(
        measurement="cpu",
        series=[(("host", h),) for h in hosts],
        series_id=np.tile(np.arange(len(hosts), dtype=np.int32), points),
        time=T0 + np.repeat(np.arange(points, dtype=np.int64), len(hosts)) * 10**9,
        fields={"value": pa.array(np.arange(n, dtype=np.float64))},
    )


def cloud_hosts(cloud_dir: Path) -> Counter[tuple[str, str, int]]:
    """(node, host, time) of every row of plant.cpu in the cloud query view (duplicates count)."""
    table = CloudTableSource(cloud_dir).read(DB, "cpu")
    return Counter(zip(table.column("node").to_pylist(), table.column("host").to_pylist(),
                       table.column("time").cast(pa.int64()).to_pylist(), strict=True))


def parquet_hosts(root: Path) -> Counter[tuple[str, str, int]]:
    rows = duckdb.connect().execute(
        f"SELECT node, host, epoch_ns(time) FROM read_parquet('{root}/**/*.parquet', "
        "hive_partitioning=true)").fetchall()
    return Counter((str(n), str(h), int(t)) for n, h, t in rows)


def export(cloud_dir: Path, root: Path) -> ParquetExporter:
    exporter = ParquetExporter(ExportConfig(cloud_dir, str(root)))
    try:
        exporter.export_once()
    finally:
        exporter.close()
    return exporter


def test_edge_delete_rewrite_is_shipped_and_hides_the_deleted_rows_in_the_cloud(tmp_path: Path) -> None:
    engine = StorageEngine(StorageConfig(tmp_path / "edge", background=False, deletes_need_guard=True))
    engine.open()
    try:
        engine.create_database(DB)
        engine.write(DB, [cpu_batch(["h1", "h2", "h3"], 100)])
        flushed = engine.flush_all()
        ledger = AckLedger.open(tmp_path / "edge" / "sync")
        engine.set_segment_delete_guard(ledger_delete_guard(ledger))
        store = engine.segment_store
        cloud_dir = tmp_path / "cloud"
        sync_until_idle(cloud_dir, store, ledger)
        assert set(cloud_hosts(cloud_dir).values()) == {1} and len(cloud_hosts(cloud_dir)) == 300

        removed = engine.delete(DB, "cpu", tag_filter={"host": {"h2"}})
        assert removed == 100
        rewrites = [i for i in store.segments() if i.replaces]
        assert [(r.replaces, r.origin) for r in rewrites] == [(tuple(i.seq for i in flushed), "delete")]
        # the rewrite holds fewer rows than its (acked) input: not synced until acked itself
        assert not already_synced(rewrites[0], ledger)
        assert not store.delete(rewrites[0], "test: retention before the rewrite is shipped")

        sender = sync_until_idle(cloud_dir, store, ledger)
        assert sender.segments_acked == 1
        rows = cloud_hosts(cloud_dir)
        assert len(rows) == 200 and set(rows.values()) == {1}
        assert {host for _node, host, _t in rows} == {"h1", "h3"}
        assert already_synced(rewrites[0], ledger)

        export(cloud_dir, tmp_path / "parquet")  # the replaced input is hidden: not exported
        assert parquet_hosts(tmp_path / "parquet") == rows
    finally:
        engine.close()


def test_rows_resealed_under_a_new_seq_are_exported_to_parquet_once(tmp_path: Path) -> None:
    """The edge deletes an orphan segment of an interrupted flush (already shipped) and seals its
    rows again under a new seq: the cloud view and the Parquet export hold every point once."""
    store = SegmentStore(tmp_path / "edge")
    store.open()
    ledger = AckLedger.open(tmp_path / "edge" / "sync")
    store.set_delete_guard(ledger_delete_guard(ledger))
    cloud_dir, root = tmp_path / "cloud", tmp_path / "parquet"
    first = cpu_batch(["a", "b"], 50).to_arrow()
    orphan = store.seal(DB, "cpu", first, tag_keys=["host"])
    sync_until_idle(cloud_dir, store, ledger)
    export(cloud_dir, root)
    assert len(parquet_hosts(root)) == 100

    # engine.open(): the orphan is force-deleted, its rows replayed and flushed again with
    # some newer rows (the same points, plus the rest of the buffer)
    assert store.delete(orphan, "test: orphan of an interrupted flush", force=True)
    later = cpu_batch(["a", "b", "c"], 60).to_arrow()
    store.seal(DB, "cpu", later, tag_keys=["host"])
    sync_until_idle(cloud_dir, store, ledger)
    view = cloud_hosts(cloud_dir)
    assert len(view) == 180 and set(view.values()) == {1}
    exporter = export(cloud_dir, root)
    assert parquet_hosts(root) == view
    assert exporter.counters["duplicate_rows_skipped"] == 100


def test_last_error_clears_after_a_successful_reconnect(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = SegmentStore(tmp_path / "edge")
    store.open()
    store.seal(DB, "cpu", cpu_batch(["a"], 5).to_arrow(), tag_keys=["host"])
    ledger = AckLedger.open(tmp_path / "edge" / "sync")

    async def run() -> dict[str, object]:
        sender = sender_of(port, ledger, store)
        task = asyncio.ensure_future(sender.run())
        await wait_for(lambda: sender.last_error is not None, 10, "a connection error")
        failed = sender.last_error
        runner, _receiver, _port = await start_cloud(tmp_path / "cloud", port)
        try:
            await wait_for(lambda: sender.status()["lag_segments"] == 0, 30, "synced after reconnect")
            status = sender.status()
            sender.stop()
            await asyncio.wait_for(task, 10)
        finally:
            await runner.cleanup()
        return {"failed": failed, **status}

    status = asyncio.run(run())
    assert status["connected"] is True and status["last_error"] is None
    assert status["previous_error"] is not None and status["last_error_at"] is not None
    assert "Connect" in str(status["failed"]) or "refused" in str(status["failed"]).lower()


def test_edge_delete_of_every_row_of_a_synced_segment_reaches_the_cloud(tmp_path: Path) -> None:
    """The DELETE seals an empty tombstone that `replaces` the segment: once committed, the cloud
    view and the Parquet export no longer hold those rows."""
    engine = StorageEngine(StorageConfig(tmp_path / "edge", background=False, deletes_need_guard=True))
    engine.open()
    try:
        engine.create_database(DB)
        engine.write(DB, [cpu_batch(["h1", "h2"], 50)])
        (doomed,) = engine.flush_all()
        later = cpu_batch(["h3"], 20)
        later.time = later.time + 3600 * 10**9
        engine.write(DB, [later])
        (kept,) = engine.flush_all()
        ledger = AckLedger.open(tmp_path / "edge" / "sync")
        engine.set_segment_delete_guard(ledger_delete_guard(ledger))
        store = engine.segment_store
        cloud_dir = tmp_path / "cloud"
        sync_until_idle(cloud_dir, store, ledger)
        assert len(cloud_hosts(cloud_dir)) == 120

        assert engine.delete(DB, "cpu", end_ns=T0 + 3600 * 10**9) == 100
        (tomb,) = [i for i in store.segments() if i.replaces]
        assert (tomb.rows, tomb.origin, tomb.replaces) == (0, "delete", (doomed.seq,))
        assert not already_synced(tomb, ledger)  # the cloud still holds the rows it hides
        sender = sync_until_idle(cloud_dir, store, ledger)
        assert sender.segments_acked == 1 and already_synced(tomb, ledger)
        rows = cloud_hosts(cloud_dir)
        assert {host for _node, host, _t in rows} == {"h3"} and len(rows) == 20 == kept.rows
        assert CloudTableSource(cloud_dir).measurements(DB) == ["cpu"]

        export(cloud_dir, tmp_path / "parquet")
        assert parquet_hosts(tmp_path / "parquet") == rows

        assert engine.delete(DB, "cpu") == 20  # the last rows too: the measurement is gone
        sync_until_idle(cloud_dir, store, ledger)
        assert CloudTableSource(cloud_dir).read(DB, "cpu").num_rows == 0
        assert CloudTableSource(cloud_dir).measurements(DB) == []
        assert export(cloud_dir, tmp_path / "parquet").counters["errors"] == 0
    finally:
        engine.close()


def test_edge_drop_measurement_and_database_reach_the_cloud(tmp_path: Path) -> None:
    """A DROP seals a tombstone hiding the scope's segments with seq below the drop, also those
    already pruned at the edge; rows written after the drop stay visible."""
    engine = StorageEngine(StorageConfig(tmp_path / "edge", background=False, deletes_need_guard=True))
    engine.open()
    try:
        engine.create_database(DB)
        engine.write(DB, [cpu_batch(["h1", "h2"], 30)])
        (pruned,) = engine.flush_all()
        engine.write(DB, [cpu_batch(["h4"], 10)])
        engine.flush_all()
        mem = cpu_batch(["h1"], 7)
        mem.measurement = "mem"
        engine.write(DB, [mem])
        engine.flush_all()
        ledger = AckLedger.open(tmp_path / "edge" / "sync")
        engine.set_segment_delete_guard(ledger_delete_guard(ledger))
        store = engine.segment_store
        cloud_dir = tmp_path / "cloud"
        sync_until_idle(cloud_dir, store, ledger)
        assert store.delete(pruned, "test: synced, pruned at the edge")  # still in the cloud
        cloud = CloudTableSource(cloud_dir)
        assert len(cloud_hosts(cloud_dir)) == 70 and cloud.measurements(DB) == ["cpu", "mem"]

        engine.drop_measurement(DB, "cpu")
        after = cpu_batch(["h9"], 5)
        after.time = after.time + 7200 * 10**9
        engine.write(DB, [after])
        engine.flush_all()
        sync_until_idle(cloud_dir, store, ledger)
        assert {host for _n, host, _t in cloud_hosts(cloud_dir)} == {"h9"}
        assert len(cloud_hosts(cloud_dir)) == 5
        assert cloud.read(DB, "mem").num_rows == 7
        export(cloud_dir, tmp_path / "parquet")
        assert Counter(h for _n, h, _t in parquet_hosts(tmp_path / "parquet")) == {"h9": 5, "h1": 7}  # h1: mem

        engine.drop_database(DB)
        sync_until_idle(cloud_dir, store, ledger)
        assert cloud.databases() == [] and not cloud.has_database(DB)
        assert cloud.read(DB, "cpu").num_rows == 0 and cloud.read(DB, "mem").num_rows == 0
    finally:
        engine.close()
