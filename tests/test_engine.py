"""StorageEngine: write/read of every field type, merging, partial writes, filters, DDL,
group commit, back-pressure, concurrent reads, flush hooks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from storage.batch import Batch, FieldType
from storage.engine import (
    DatabaseNotFound,
    Overloaded,
    RetentionPolicyNotFound,
    StorageConfig,
    StorageEngine,
    StorageError,
)

HOUR = 3600 * 10**9


def batch(measurement: str, series: list, sid: list[int], times: list[int], **fields: pa.Array) -> Batch:
    return Batch(measurement, series, np.array(sid, np.int32), np.array(times, np.int64), dict(fields))


def times_of(table: pa.Table) -> list[int]:
    return table.column("time").cast(pa.int64()).to_pylist()


@pytest.fixture
def engine(tmp_path: Path):
    eng = StorageEngine(StorageConfig(data_dir=tmp_path / "data"))
    eng.open()
    eng.create_database("db")
    yield eng
    eng.close()


def test_all_field_types_with_nulls(engine: StorageEngine) -> None:
    b = batch(
        "m", [(("host", "a"),)], [0, 0, 0], [1, 2, 3],
        f=pa.array([1.5, None, -2.0]),
        i=pa.array([None, -7, 2**62], pa.int64()),
        u=pa.array([2**64 - 1, 0, None], pa.uint64()),
        s=pa.array(["x", "", None]),
        b=pa.array([True, None, False]),
    )
    out = engine.write("db", [b])
    assert (out.points_written, out.dropped, out.errors) == (3, 0, [])
    t = engine.read("db", "m")
    assert t.column_names == ["time", "host", "b", "f", "i", "s", "u"]
    assert [t.schema.field(c).type for c in t.column_names] == [
        pa.timestamp("ns"), pa.string(), pa.bool_(), pa.float64(), pa.int64(), pa.string(), pa.uint64()
    ]
    for name in ("f", "i", "u", "s", "b"):
        assert t.column(name).to_pylist() == b.fields[name].to_pylist()
    assert engine.field_types("db", "m") == {
        "b": FieldType.BOOLEAN, "f": FieldType.FLOAT, "i": FieldType.INTEGER, "s": FieldType.STRING, "u": FieldType.UNSIGNED
    }
    assert engine.tag_keys("db", "m") == ["host"] and engine.measurements("db") == ["m"]


def test_duplicates_merge_across_writes(engine: StorageEngine) -> None:
    s = [(("host", "a"),)]
    engine.write("db", [batch("m", s, [0], [10], v=pa.array([1.0]), w=pa.array([1.0]))])
    engine.write("db", [batch("m", s, [0], [10], v=pa.array([2.0]), w=pa.array([None], pa.float64()))])
    engine.write("db", [batch("m", s, [0, 0], [10, 10], v=pa.array([None, 3.0]), x=pa.array(["new", None]))])
    t = engine.read("db", "m")
    assert t.num_rows == 1
    assert (t.column("v")[0].as_py(), t.column("w")[0].as_py(), t.column("x")[0].as_py()) == (3.0, 1.0, "new")


def test_type_conflict_is_partial_write(engine: StorageEngine) -> None:
    s = [(("host", "a"),), (("host", "b"),)]
    engine.write("db", [batch("m", s, [0], [1], v=pa.array([1.0]))])
    b = batch("m", s, [0, 1, 1], [2, 3, 4], v=pa.array([5, None, 7], pa.int64()), ok=pa.array([1.0, 2.0, 3.0]))
    out = engine.write("db", [b])
    assert out.points_written == 1 and out.dropped == 2
    assert out.errors == [
        'field type conflict: input field "v" on measurement "m" is type integer, already exists as type float'
    ]
    t = engine.read("db", "m")
    assert times_of(t) == [1, 3]  # the row without a value for "v" was kept
    assert t.column("ok").to_pylist() == [None, 2.0]
    assert engine.field_types("db", "m")["v"] == FieldType.FLOAT
    assert engine.stats()["points_dropped"] == 2


def test_filters_projection_and_missing_tags(engine: StorageEngine) -> None:
    series = [(("host", "a"), ("region", "eu")), (("host", "b"),), (("region", "us"),)]
    sid = [0, 1, 2, 0, 1, 2]
    engine.write("db", [batch("cpu", series, sid, [0, 1, 2, HOUR, HOUR + 1, HOUR + 2], v=pa.array([0.0, 1, 2, 3, 4, 5]))])
    t = engine.read("db", "cpu")
    assert t.column("host").to_pylist() == ["a", "a", "b", "b", None, None]
    assert t.column("region").to_pylist() == ["eu", "eu", None, None, "us", "us"]
    t = engine.read("db", "cpu", start_ns=1, end_ns=HOUR + 1)
    assert sorted(times_of(t)) == [1, 2, HOUR]
    t = engine.read("db", "cpu", tag_filter={"region": {"us", "eu"}}, columns=["region", "v"])
    assert t.column_names == ["time", "region", "v"]
    assert t.column("v").to_pylist() == [0.0, 3.0, 2.0, 5.0]
    t = engine.read("db", "cpu", columns=[])
    assert t.column_names == ["time"] and t.num_rows == 6
    empty = engine.read("db", "nothing")
    assert empty.num_rows == 0 and empty.column_names == ["time"]
    assert [dict(s) for s in engine.series("db", "cpu")] == [dict(s) for s in series]


def test_unknown_database_and_rp(engine: StorageEngine) -> None:
    b = batch("m", [()], [0], [1], v=pa.array([1.0]))
    with pytest.raises(DatabaseNotFound) as err:
        engine.submit("mydb", [b])
    assert str(err.value) == 'database not found: "mydb"'
    with pytest.raises(DatabaseNotFound):
        engine.read("mydb", "m")
    with pytest.raises(RetentionPolicyNotFound):
        engine.write("db", [b], rp="nope")


def test_retention_policies(engine: StorageEngine) -> None:
    (rp,) = engine.retention_policies("db")
    assert (rp.name, rp.duration_ns, rp.default) == ("autogen", 0, True)
    engine.create_retention_policy("db", "short", duration_ns=HOUR, default=True)
    engine.create_retention_policy("db", "short", duration_ns=HOUR, default=True)  # idempotent
    with pytest.raises(StorageError, match="already exists"):
        engine.create_retention_policy("db", "short", duration_ns=2 * HOUR)
    rps = {r.name: r for r in engine.retention_policies("db")}
    assert rps["short"].default and not rps["autogen"].default and rps["short"].shard_group_duration_ns == HOUR
    now = time.time_ns()
    out = engine.write("db", [batch("m", [()], [0, 0], [now - 2 * HOUR, now], v=pa.array([1.0, 2.0]))])
    assert (out.points_written, out.dropped, out.errors) == (1, 1, ["points beyond retention policy"])
    engine.alter_retention_policy("db", "short", duration_ns=0)
    assert {r.name: r.duration_ns for r in engine.retention_policies("db")}["short"] == 0
    engine.drop_retention_policy("db", "short")
    assert [r.name for r in engine.retention_policies("db")] == ["autogen"]


def test_drop_measurement_and_database(engine: StorageEngine) -> None:
    engine.write("db", [batch("a", [()], [0], [1], v=pa.array([1.0])), batch("b", [()], [0], [1], v=pa.array([1.0]))])
    engine.drop_measurement("db", "a")
    assert engine.measurements("db") == ["b"] and engine.read("db", "a").num_rows == 0
    # a dropped measurement's field types are forgotten
    assert engine.write("db", [batch("a", [()], [0], [2], v=pa.array(["s"]))]).errors == []
    engine.drop_database("db")
    assert not engine.has_database("db") and engine.databases() == []
    assert engine.stats()["buffer_rows"] == 0
    engine.create_database("db")
    assert engine.measurements("db") == [] and engine.read("db", "b").num_rows == 0


def test_group_commit_fewer_fsyncs_than_writes(engine: StorageEngine) -> None:
    fsyncs_before = engine.stats()["fsyncs"]
    threads, per_thread = 12, 25
    start = threading.Barrier(threads)

    def writer(k: int) -> None:
        start.wait()
        for j in range(per_thread):
            engine.write("db", [batch("m", [(("w", str(k)),)], [0], [j], v=pa.array([float(j)]))])

    pool = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    stats = engine.stats()
    writes = threads * per_thread
    assert engine.read("db", "m").num_rows == writes
    assert stats["fsyncs"] - fsyncs_before < writes
    assert stats["group_commits"] < stats["wal_records"]


def test_reads_concurrent_with_writes(engine: StorageEngine) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                counts.append(engine.read("db", "m", columns=["v"]).num_rows)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    r = threading.Thread(target=reader)
    r.start()
    futures = [engine.submit("db", [batch("m", [()], [0] * 50, list(range(i * 50, i * 50 + 50)), v=pa.array(np.ones(50)))]) for i in range(100)]
    for f in futures:
        assert f.result().points_written == 50
    stop.set()
    r.join()
    assert errors == []
    assert counts == sorted(counts)  # each read sees a prefix of the acknowledged writes
    assert engine.read("db", "m").num_rows == 5000


def test_overloaded_when_memory_budget_tiny(tmp_path: Path) -> None:
    with StorageEngine(StorageConfig(data_dir=tmp_path, memory_budget_bytes=20_000)) as eng:
        eng.create_database("db")
        b = batch("m", [()], [0] * 500, list(range(500)), v=pa.array(np.ones(500)))
        eng.write("db", [b])  # an empty buffer always takes one batch
        with pytest.raises(Overloaded) as err:
            for _ in range(20):
                eng.write("db", [b])
        assert err.value.retry_after == 1.0 and "buffer" in str(err.value)
        assert eng.stats()["overloaded"] == 1
        assert eng.stats()["buffer_bytes"] <= 20_000 + 12_000


def test_overloaded_when_disk_budget_reached(tmp_path: Path) -> None:
    with StorageEngine(StorageConfig(data_dir=tmp_path, disk_budget_bytes=4096)) as eng:
        eng.create_database("db")
        b = batch("m", [()], [0] * 200, list(range(200)), v=pa.array(np.arange(200.0)))
        with pytest.raises(Overloaded) as err:
            for _ in range(50):
                eng.write("db", [b])
        assert "disk budget" in str(err.value) and err.value.retry_after > 0


def test_freeze_and_mark_flushed_release_wal(tmp_path: Path) -> None:
    with StorageEngine(StorageConfig(data_dir=tmp_path, wal_file_bytes=2000)) as eng:
        eng.create_database("db")
        for i in range(10):
            eng.write("db", [batch("m", [()], [0] * 20, list(range(i * 20, i * 20 + 20)), v=pa.array(np.ones(20)))])
        files_before = eng.stats()["wal_files"]
        assert files_before > 2
        frozen = eng.freeze("db", "m")
        assert frozen is not None and frozen.to_table(eng.field_types("db", "m"), []).num_rows == 200
        deleted = eng.mark_flushed(frozen)
        assert deleted == files_before - 1 and eng.stats()["wal_files"] == 1
        assert eng.read("db", "m").num_rows == 0  # the segment layer will serve these rows
    with StorageEngine(StorageConfig(data_dir=tmp_path)) as eng:
        assert eng.read("db", "m").num_rows == 0  # flushed records are not replayed
        assert eng.field_types("db", "m") == {"v": FieldType.FLOAT}


def test_closed_engine_refuses_writes(tmp_path: Path) -> None:
    eng = StorageEngine(StorageConfig(data_dir=tmp_path))
    eng.open()
    with pytest.raises(StorageError, match="in use"):
        StorageEngine(StorageConfig(data_dir=tmp_path)).open()
    eng.close()
    with pytest.raises(StorageError, match="not open"):
        eng.submit("db", [])
