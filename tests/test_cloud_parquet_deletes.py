"""Edge DELETE / DROP SERIES / DROP MEASUREMENT / DROP DATABASE / DROP RETENTION POLICY after a
Parquet export: the exporter rewrites exactly the touched (node, measurement, day) partitions so
Parquet equals the cloud view, also when it is SIGKILLed at any step of the rewrite and run again.
Retention policies arrive in the cloud and in Parquet apart."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from aiohttp import web

from query.influxql_exec import QueryExecutor
from storage.batch import Batch
from storage.engine import StorageConfig, StorageEngine
from storage.fsio import write_atomic
from storage.segment_format import write_segment
from sync.cloud_store import CloudTableSource
from sync.ledger import AckLedger
from sync.parquet_export import REWRITE_STAGES, ExportConfig, ExportReport, ParquetExporter
from sync.receiver import CloudConfig, add_sync_routes
from sync.segment_source import DirectorySegmentSource, SegmentSource
from sync.sender import SenderConfig, SyncSender
from sync.store_source import StoreSegmentSource, ledger_delete_guard
from tests.server_process import REPO
from tests.waiting import wait_until_async

DB = "plant"
HOUR = 3600 * 10**9
DAY = 24 * HOUR
T0 = 1_700_000_000 * 10**9 - (1_700_000_000 * 10**9) % DAY  # a UTC midnight
TOKENS = {"na": "secret-a", "nb": "secret-b"}
Row = tuple[str, str, int, float]  # node, host, time ns, value


def rfc3339(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns // 10**9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_name(day: int) -> str:
    return f"day={(dt.datetime.fromtimestamp((T0 + day * DAY) // 10**9, dt.UTC)).date().isoformat()}"


@dataclass
class Edge:
    """A real storage engine of one node, with its ack ledger."""

    node: str
    engine: StorageEngine
    ledger: AckLedger

    def influxql(self, text: str) -> None:
        result = QueryExecutor(self.engine).execute(text, DB)
        assert all("error" not in r for r in result), result

    def write(self, measurement: str, hosts: list[str], start: int, points: int, step: int,
              base: float = 0.0) -> None:
        n = len(hosts) * points
        self.engine.write(DB, [Batch(
            measurement=measurement,
            series=[(("host", h),) for h in hosts],
            series_id=np.tile(np.arange(len(hosts), dtype=np.int32), points),
            time=start + np.repeat(np.arange(points, dtype=np.int64), len(hosts)) * step,
            fields={"value": pa.array(base + np.arange(n, dtype=np.float64))},
        )])
        self.engine.flush_all()


def open_edge(tmp: Path, node: str) -> Edge:
    engine = StorageEngine(StorageConfig(tmp / f"edge-{node}", background=False, deletes_need_guard=True))
    engine.open()
    engine.create_database(DB)
    ledger = AckLedger.open(tmp / f"edge-{node}" / "sync")
    engine.set_segment_delete_guard(ledger_delete_guard(ledger))
    return Edge(node, engine, ledger)


def sync(cloud_dir: Path, edges: list[Edge]) -> None:
    """Real receiver + one real sender per edge until no edge has an unsynced segment."""
    sync_sources(cloud_dir, [(e.node, StoreSegmentSource(e.engine.segment_store, e.ledger),
                              e.ledger.directory) for e in edges])


def sync_sources(cloud_dir: Path, sources: list[tuple[str, SegmentSource, Path]]) -> None:
    """Real receiver + one real sender per (node, segment source, ledger dir) until idle."""

    async def run() -> None:
        app = web.Application()
        add_sync_routes(app, CloudConfig(cloud_dir=cloud_dir, tokens=TOKENS))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            senders = [SyncSender(SenderConfig(url=f"ws://127.0.0.1:{port}", node=node,
                                               token=TOKENS[node], ledger_dir=ledger_dir,
                                               backoff_base_s=0.05, heartbeat_s=1.0), source,
                                  AckLedger.open(ledger_dir))
                       for node, source, ledger_dir in sources]
            tasks = [asyncio.ensure_future(s.run()) for s in senders]
            await wait_until_async(lambda: all(s.connected and s.status()["lag_segments"] == 0
                                               for s in senders), 30, "sync idle")
            for s in senders:
                s.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
        finally:
            await runner.cleanup()

    asyncio.run(run())


def export(cloud_dir: Path, root: Path) -> ExportReport:
    exporter = ParquetExporter(ExportConfig(cloud_dir, str(root)))
    try:
        report = exporter.export_once()
        assert not exporter.counters["errors"]
        return report
    finally:
        exporter.close()


def view_rows(cloud_dir: Path, measurement: str, node: str | None = None) -> Counter[Row]:
    t = CloudTableSource(cloud_dir).read(DB, measurement)
    if t.num_rows == 0:
        return Counter()
    rows = zip(t.column("node").to_pylist(), t.column("host").to_pylist(),
               t.column("time").cast(pa.int64()).to_pylist(), t.column("value").to_pylist(), strict=True)
    return Counter(r for r in rows if node is None or r[0] == node)


def parquet_rows(root: Path, measurement: str, node: str | None = None) -> Counter[Row]:
    """Rows of the Hive layout read with pyarrow.dataset (day partitions checked against time)."""
    if not list(root.rglob("*.parquet")):
        return Counter()
    dataset = ds.dataset(root, format="parquet", partitioning="hive")
    wanted = ds.field("measurement") == measurement
    if node is not None:
        wanted = wanted & (ds.field("node") == node)
    t = dataset.to_table(filter=wanted, columns=["node", "host", "time", "value", "day"])
    out: Counter[Row] = Counter()
    for n, host, time_ns, value, day in zip(
            t.column("node").to_pylist(), t.column("host").to_pylist(),
            t.column("time").cast(pa.int64()).to_pylist(), t.column("value").to_pylist(),
            t.column("day").to_pylist(), strict=True):
        assert str(day) == dt.datetime.fromtimestamp(time_ns / 1e9, dt.UTC).date().isoformat()
        out[(n, host, time_ns, value)] += 1
    return out


def files_on_disk(root: Path) -> dict[str, int]:
    """Relative path -> mtime ns of every visible Parquet file."""
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*.parquet")}


def done_files(cloud_dir: Path, root: Path) -> list[str]:
    exporter = ParquetExporter(ExportConfig(cloud_dir, str(root)))
    try:
        return exporter.done_files()
    finally:
        exporter.close()


def catalog_rows(cloud_dir: Path, query: str) -> list[tuple]:
    conn = sqlite3.connect(cloud_dir / "catalog.sqlite")
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def assert_parquet_is_the_view(cloud_dir: Path, root: Path, measurements: list[str]) -> None:
    for m in measurements:
        parquet, view = parquet_rows(root, m), view_rows(cloud_dir, m)
        assert parquet == view, (m, parquet - view, view - parquet)
        assert set(parquet.values()) <= {1}  # no duplicate
    assert sorted(files_on_disk(root)) == done_files(cloud_dir, root)
    assert not list(root.rglob("*.tmp"))
    assert catalog_rows(cloud_dir, "SELECT * FROM parquet_rewrites") == []


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    e = open_edge(tmp_path, "na")
    try:
        yield e
    finally:
        e.engine.close()


def three_days(e: Edge, measurement: str = "cpu", base: float = 0.0) -> None:
    e.write(measurement, ["h1", "h2", "h3"], T0, 72, HOUR, base)  # hourly over three days


def test_delete_with_tag_and_time_predicate_rewrites_that_partition(edge: Edge, tmp_path: Path) -> None:
    cloud_dir, root = tmp_path / "cloud", tmp_path / "parquet"
    three_days(edge)
    sync(cloud_dir, [edge])
    first = export(cloud_dir, root)
    assert first.rows == 216 and first.deletions_applied == 0
    assert parquet_rows(root, "cpu") == view_rows(cloud_dir, "cpu")
    before = files_on_disk(root)

    lo, hi = T0 + DAY + 6 * HOUR, T0 + DAY + 12 * HOUR
    edge.influxql(f"DELETE FROM cpu WHERE host = 'h2' AND time >= '{rfc3339(lo)}' AND time < '{rfc3339(hi)}'")
    sync(cloud_dir, [edge])
    view = view_rows(cloud_dir, "cpu")
    assert sum(view.values()) == 216 - 6
    assert not any(h == "h2" and lo <= t < hi for _n, h, t, _v in view)
    report = export(cloud_dir, root)
    assert (report.deletions_applied, report.rewritten_partitions, report.skipped_segments) == (1, 1, 1)
    assert_parquet_is_the_view(cloud_dir, root, ["cpu"])
    after = files_on_disk(root)
    changed = {f.split("/")[1] for f in set(before) ^ set(after)}
    assert changed == {day_name(1)}  # only the day of the deleted rows
    assert {f: before[f] for f in after if f in before} == {f: after[f] for f in after if f in before}

    # a deleted point written again later is exported again (not taken for a duplicate)
    edge.write("cpu", ["h2"], lo, 2, HOUR, base=1000.0)
    sync(cloud_dir, [edge])
    export(cloud_dir, root)
    assert_parquet_is_the_view(cloud_dir, root, ["cpu"])
    assert sum(parquet_rows(root, "cpu").values()) == 216 - 4
    again = export(cloud_dir, root)  # idempotent: nothing left to do
    assert (again.segments, again.deletions_applied, again.rewritten_partitions) == (0, 0, 0)


def test_delete_over_two_days_rewrites_both_and_leaves_the_third_untouched(edge: Edge,
                                                                           tmp_path: Path) -> None:
    cloud_dir, root = tmp_path / "cloud", tmp_path / "parquet"
    three_days(edge)
    sync(cloud_dir, [edge])
    export(cloud_dir, root)
    before = files_on_disk(root)
    batches_before = catalog_rows(cloud_dir, "SELECT id, files FROM parquet_batches ORDER BY id")
    assert {f.split("/")[1] for f in before} == {day_name(d) for d in range(3)}

    edge.influxql(f"DELETE FROM cpu WHERE host = 'h1' AND time >= '{rfc3339(T0 + 20 * HOUR)}' "
                  f"AND time < '{rfc3339(T0 + DAY + 4 * HOUR)}'")
    sync(cloud_dir, [edge])
    report = export(cloud_dir, root)
    assert (report.deletions_applied, report.rewritten_partitions) == (2, 2)
    assert_parquet_is_the_view(cloud_dir, root, ["cpu"])
    after = files_on_disk(root)
    third = {f: m for f, m in before.items() if f.split("/")[1] == day_name(2)}
    assert third and {f: m for f, m in after.items() if f.split("/")[1] == day_name(2)} == third
    for day in (0, 1):  # both rewritten: new file names, old ones gone
        old = {f for f in before if f.split("/")[1] == day_name(day)}
        new = {f for f in after if f.split("/")[1] == day_name(day)}
        assert old and new and not old & new
    batches_after = dict(catalog_rows(cloud_dir, "SELECT id, files FROM parquet_batches"))
    for batch_id, files in batches_before:  # the third day's entries stay in their batch rows
        kept = [f for f in json.loads(files) if f in third]
        assert [f for f in json.loads(batches_after[batch_id]) if f in third] == kept


def test_drop_series_removes_the_series_from_every_day(edge: Edge, tmp_path: Path) -> None:
    cloud_dir, root = tmp_path / "cloud", tmp_path / "parquet"
    three_days(edge)
    sync(cloud_dir, [edge])
    export(cloud_dir, root)
    edge.influxql("DROP SERIES FROM cpu WHERE host = 'h3'")
    sync(cloud_dir, [edge])
    report = export(cloud_dir, root)
    assert report.rewritten_partitions == 3
    assert_parquet_is_the_view(cloud_dir, root, ["cpu"])
    assert {h for _n, h, _t, _v in parquet_rows(root, "cpu")} == {"h1", "h2"}


def test_drop_measurement_and_database_remove_their_partitions(edge: Edge, tmp_path: Path) -> None:
    cloud_dir, root = tmp_path / "cloud", tmp_path / "parquet"
    three_days(edge, "cpu")
    edge.write("mem", ["h1"], T0 + HOUR, 30, 2 * HOUR)  # days 0..2
    sync(cloud_dir, [edge])
    export(cloud_dir, root)
    assert (root / "measurement=mem").is_dir()
    cpu_files = {f: m for f, m in files_on_disk(root).items() if f.startswith("measurement=cpu/")}

    edge.influxql("DROP MEASUREMENT mem")
    sync(cloud_dir, [edge])
    report = export(cloud_dir, root)
    assert report.deletions_applied == 1 and report.rewritten_partitions == 3
    assert not (root / "measurement=mem").exists()  # every partition left empty is removed
    assert {f: m for f, m in files_on_disk(root).items() if f.startswith("measurement=cpu/")} == cpu_files
    assert_parquet_is_the_view(cloud_dir, root, ["cpu", "mem"])

    edge.write("mem", ["h7"], T0 + 2 * HOUR, 3, HOUR)  # after the drop: visible, exported
    sync(cloud_dir, [edge])
    export(cloud_dir, root)
    assert {h for _n, h, _t, _v in parquet_rows(root, "mem")} == {"h7"}
    assert_parquet_is_the_view(cloud_dir, root, ["cpu", "mem"])

    edge.influxql(f"DROP DATABASE {DB}")
    sync(cloud_dir, [edge])
    export(cloud_dir, root)
    assert files_on_disk(root) == {} and not any(root.iterdir())
    assert done_files(cloud_dir, root) == []
    edge.engine.create_database(DB)
    edge.write("cpu", ["h8"], T0, 2, HOUR)
    sync(cloud_dir, [edge])
    export(cloud_dir, root)
    assert_parquet_is_the_view(cloud_dir, root, ["cpu", "mem"])
    assert sum(parquet_rows(root, "cpu").values()) == 2


def seal_file(directory: Path, seq: int, table: pa.Table, replaces: list[int] = (),
              origin: str = "flush") -> None:
    """A real segment file + the DirectorySegmentSource sidecar that marks it sealed."""
    info = write_segment(directory / f"{seq:020d}.seg", database=DB, measurement="cpu", seq=seq,
                         table=table, tag_keys=["host"], replaces=replaces, origin=origin)
    meta = {"size": info.size, "content_hash": info.content_hash, "min_time_ns": info.min_time_ns,
            "max_time_ns": info.max_time_ns, "rows": info.rows, "database": DB, "measurement": "cpu"}
    write_atomic(directory / f"{seq:020d}.json", json.dumps(meta).encode())


def test_a_delete_rewrite_hidden_by_a_compaction_before_any_export_saw_it(tmp_path: Path) -> None:
    """S exported; then the edge's DELETE rewrite D of S, a new segment N and a compaction C of
    D and N (shipped: not every input acked) are committed before the exporter runs. D is hidden,
    never exported; C is exported with S's rows left out as duplicates; D's deletion still
    reaches Parquet."""
    cloud_dir, root, directory = tmp_path / "cloud", tmp_path / "parquet", tmp_path / "segments"
    directory.mkdir()
    times = T0 + np.arange(24, dtype=np.int64) * HOUR
    full = pa.table({"time": pa.array(np.repeat(times, 2), type=pa.timestamp("ns")),
                     "host": pa.array(["h1", "h2"] * 24), "value": pa.array(np.arange(48.0))})
    seal_file(directory, 0, full)
    sync_sources(cloud_dir, [("na", DirectorySegmentSource(directory), tmp_path / "ledger")])
    export(cloud_dir, root)
    kept = full.filter(pc.equal(full.column("host"), "h1"))
    seal_file(directory, 1, kept, replaces=[0], origin="delete")
    later = pa.table({"time": pa.array([T0 + 30 * HOUR], type=pa.timestamp("ns")),
                      "host": pa.array(["h1"]), "value": pa.array([99.0])})
    seal_file(directory, 2, later)
    seal_file(directory, 3, pa.concat_tables([kept, later]), replaces=[0, 1, 2], origin="compaction")
    sync_sources(cloud_dir, [("na", DirectorySegmentSource(directory), tmp_path / "ledger")])
    assert [s.footer.origin for s in CloudTableSource(cloud_dir).segments(DB, "cpu")] == ["compaction"]
    report = export(cloud_dir, root)
    assert report.deletions_applied == 1 and report.rewritten_partitions == 1
    assert_parquet_is_the_view(cloud_dir, root, ["cpu"])
    assert Counter(h for _n, h, _t, _v in parquet_rows(root, "cpu")) == {"h1": 25}


def test_a_delete_on_one_node_leaves_the_other_nodes_files_alone(tmp_path: Path) -> None:
    cloud_dir, root = tmp_path / "cloud", tmp_path / "parquet"
    a, b = open_edge(tmp_path, "na"), open_edge(tmp_path, "nb")
    try:
        three_days(a)
        three_days(b, base=0.5)
        sync(cloud_dir, [a, b])
        export(cloud_dir, root)
        b_files = {f: m for f, m in files_on_disk(root).items() if "/part-nb-" in f}
        b_batches = catalog_rows(cloud_dir, "SELECT * FROM parquet_batches WHERE node='nb' ORDER BY id")
        assert len(b_files) == 3

        a.influxql("DELETE FROM cpu WHERE host = 'h2'")
        sync(cloud_dir, [a, b])
        report = export(cloud_dir, root)
        assert report.rewritten_partitions == 3  # node a's three days
        assert_parquet_is_the_view(cloud_dir, root, ["cpu"])
        assert {h for _n, h, _t, _v in parquet_rows(root, "cpu", "na")} == {"h1", "h3"}
        assert parquet_rows(root, "cpu", "nb") == view_rows(cloud_dir, "cpu", "nb")
        assert {f: m for f, m in files_on_disk(root).items() if "/part-nb-" in f} == b_files
        assert catalog_rows(cloud_dir, "SELECT * FROM parquet_batches WHERE node='nb' ORDER BY id") == b_batches
    finally:
        a.engine.close()
        b.engine.close()


# ------------------------------------------------------------------ kill -9 during a rewrite
@pytest.fixture(scope="module")
def deleted_after_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A cloud dir + Parquet root: three days exported, then a two-day DELETE and a DROP SERIES
    committed (not exported yet). Segment paths in the catalog point into this directory."""
    tmp = tmp_path_factory.mktemp("deleted")
    e = open_edge(tmp, "na")
    try:
        three_days(e)
        e.write("mem", ["h1"], T0 + HOUR, 30, 2 * HOUR)
        cloud_dir, root = tmp / "cloud", tmp / "parquet"
        sync(cloud_dir, [e])
        export(cloud_dir, root)
        e.influxql(f"DELETE FROM cpu WHERE host = 'h1' AND time >= '{rfc3339(T0 + 20 * HOUR)}' "
                   f"AND time < '{rfc3339(T0 + DAY + 4 * HOUR)}'")
        e.influxql("DROP SERIES FROM mem WHERE host = 'h1'")
        sync(cloud_dir, [e])
    finally:
        e.engine.close()
    return cloud_dir, root


def _copy(template: tuple[Path, Path], tmp: Path) -> tuple[Path, Path]:
    cloud_dir, root = tmp / "cloud", tmp / "parquet"
    shutil.copytree(template[0], cloud_dir)
    shutil.copytree(template[1], root)
    return cloud_dir, root


def _exporter_process(cloud_dir: Path, root: Path, stage: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sync.parquet_export", "--cloud-dir", str(cloud_dir),
                           "--root", str(root), "--kill-self-at", stage],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("stage", REWRITE_STAGES)
def test_kill9_at_each_rewrite_step_then_rerun_equals_the_view(deleted_after_export: tuple[Path, Path],
                                                               tmp_path: Path, stage: str) -> None:
    cloud_dir, root = _copy(deleted_after_export, tmp_path)
    old_files = set(files_on_disk(root))
    crashed = _exporter_process(cloud_dir, root, stage)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    states = [s for (s,) in catalog_rows(cloud_dir, "SELECT state FROM parquet_rewrites")]
    committed = stage in ("rewrite-committed", "rewrite-deleting", "rewrite-cleaned")
    assert states == ["committed" if committed else "writing"]
    catalog_files = set(done_files(cloud_dir, root))
    assert (catalog_files == old_files) is not committed  # the catalog names one version only
    assert catalog_files <= set(files_on_disk(root))  # ... and every file it names exists
    applied = catalog_rows(cloud_dir, "SELECT COUNT(*) FROM parquet_applied_deletions")[0][0]
    assert (applied > 0) is committed

    report = export(cloud_dir, root)
    # one DELETE rewrite per day segment of cpu (2), one DROP SERIES tombstone per day of mem (3)
    assert report.deletions_applied == (0 if committed else 5)
    assert_parquet_is_the_view(cloud_dir, root, ["cpu", "mem"])
    assert not (root / "measurement=mem").exists()


def test_kill9_again_while_recovering_a_committed_rewrite(deleted_after_export: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    cloud_dir, root = _copy(deleted_after_export, tmp_path)
    assert _exporter_process(cloud_dir, root, "rewrite-committed").returncode == -signal.SIGKILL
    second = _exporter_process(cloud_dir, root, "rewrite-deleting")  # hit inside recover()
    assert second.returncode == -signal.SIGKILL, second.stderr
    assert [s for (s,) in catalog_rows(cloud_dir, "SELECT state FROM parquet_rewrites")] == ["committed"]
    export(cloud_dir, root)
    assert_parquet_is_the_view(cloud_dir, root, ["cpu", "mem"])


# ---------------------------------------------------------------- retention policies
def policy_counts(cloud_dir: Path, text: str, rp: str | None = None) -> list[object]:
    """Per statement of the cloud view's answer: the first series' count, 0 when none, or the error."""
    out: list[object] = []
    for result in QueryExecutor(CloudTableSource(cloud_dir)).execute(text, DB, rp=rp):
        if "error" in result:
            out.append(result["error"])
        else:
            out.append(result["series"][0]["values"][0][1] if result.get("series") else 0)
    return out


def parquet_policies(root: Path) -> dict[str, int]:
    """retention_policy -> rows in the exported Parquet files (all of database DB)."""
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table(columns=["database", "retention_policy"])
    assert set(table.column("database").to_pylist()) <= {DB}
    found = pc.value_counts(table.column("retention_policy")).to_pylist()
    return {item["values"]: item["counts"] for item in found}


def test_policies_reach_the_cloud_apart_and_their_drop_follows(edge: Edge, tmp_path: Path) -> None:
    """An edge's retention policies arrive as their own namespaces (FROM rp.m, rp=), are
    exported with a retention_policy column, and DROP RETENTION POLICY removes that policy's
    rows from the cloud view and from Parquet."""
    cloud_dir, root = tmp_path / "cloud", tmp_path / "parquet"
    edge.influxql(f"CREATE RETENTION POLICY week ON {DB} DURATION INF REPLICATION 1")
    edge.write("cpu", ["h1", "h2"], T0, 10, HOUR)  # autogen: 20 rows
    week = Batch("cpu", [(("host", "w1"),)], np.zeros(7, np.int32), T0 + np.arange(7, dtype=np.int64) * HOUR,
                 {"value": pa.array(np.arange(7, dtype=np.float64))})
    edge.engine.write(DB, [week], rp="week")
    edge.engine.flush_all()
    sync(cloud_dir, [edge])
    source = CloudTableSource(cloud_dir)
    assert source.databases() == [DB]
    assert [p.name for p in source.retention_policies(DB)] == ["autogen", "week"]
    assert policy_counts(cloud_dir, "SELECT count(value) FROM cpu; SELECT count(value) FROM week.cpu; "
                                    f"SELECT count(value) FROM {DB}.autogen.cpu") == [20, 7, 20]
    assert policy_counts(cloud_dir, "SELECT count(value) FROM cpu", rp="week") == [7]
    assert policy_counts(cloud_dir, "SELECT count(value) FROM nope.cpu") == ["retention policy not found: nope"]
    export(cloud_dir, root)
    assert parquet_policies(root) == {"autogen": 20, "week": 7}

    edge.influxql(f"DROP RETENTION POLICY week ON {DB}")
    sync(cloud_dir, [edge])
    assert [p.name for p in CloudTableSource(cloud_dir).retention_policies(DB)] == ["autogen"]
    assert policy_counts(cloud_dir, "SELECT count(value) FROM week.cpu") == ["retention policy not found: week"]
    assert policy_counts(cloud_dir, "SELECT count(value) FROM cpu") == [20]
    export(cloud_dir, root)
    assert parquet_policies(root) == {"autogen": 20}
