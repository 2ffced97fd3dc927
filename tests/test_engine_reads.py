"""StorageEngine read paths: time-disjoint fast merge vs the general merge, last_rows, and the
catalog listings InfluxDB semantics need (database creation order, series gone after DELETE)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from storage.batch import Batch
from storage.compaction import merge_tables
from storage.engine import StorageConfig, StorageEngine

HOSTS = [(("host", h),) for h in ("a", "b", "c")] + [(("dc", "x"), ("host", "a"))]


def rows_batch(t0: int, n: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    sid = rng.integers(0, len(HOSTS), n).astype(np.int32)
    times = t0 + rng.integers(0, 50, n).astype(np.int64)
    v = pa.array([None if x % 5 == 0 else float(x) for x in range(n)], type=pa.float64())
    w = pa.array(rng.integers(0, 9, n), type=pa.int64())
    return Batch("m", HOSTS, sid, times, {"v": v, "w": w})


def int_rows(table: pa.Table) -> list[dict]:
    return table.set_column(0, "time", table.column("time").cast(pa.int64())).to_pylist()


@pytest.fixture
def engine(tmp_path: Path):
    eng = StorageEngine(StorageConfig(data_dir=tmp_path / "data", background=False))
    eng.open()
    eng.create_database("db")
    yield eng
    eng.close()


def reference(engine: StorageEngine, **kw: object) -> list[dict]:
    """The general merge over every part (what read() must equal)."""
    store = engine.segment_store
    tables = store.read("db", "m")
    buffered = engine.freeze("db", "m")
    if buffered is not None:
        engine._buffer.unfreeze(buffered)
    tags = engine.tag_keys("db", "m")
    names = ["time", *tags, "v", "w"]
    from storage.engine import conform
    types = [pa.timestamp("ns"), *[pa.string()] * len(tags), pa.float64(), pa.int64()]
    parts = [conform(t, names, types) for t in tables]
    snap = engine._buffer.snapshot("db", "m")
    if snap is not None:
        from storage.buffer import assemble
        parts.append(conform(assemble(*snap, engine.field_types("db", "m"), tags), names, types))
    merged = merge_tables([p for p in parts if p.num_rows], "m", tags)
    return int_rows(merged)


@pytest.mark.parametrize("overlap", [False, True])
def test_read_equals_general_merge(engine: StorageEngine, overlap: bool) -> None:
    engine.write("db", [rows_batch(0, 200, 1)])
    engine.flush("db", "m")
    engine.write("db", [rows_batch(30 if overlap else 100, 200, 2)])
    engine.flush("db", "m")
    engine.write("db", [rows_batch(40 if overlap else 200, 100, 3)])  # stays in the buffer
    expect = reference(engine)
    assert len(engine.segment_store.segments("db", "m")) == 2
    assert int_rows(engine.read("db", "m")) == expect
    sub = engine.read("db", "m", columns=["v"], start_ns=20, end_ns=230, tag_filter={"host": {"a", "c"}})
    assert sub.column_names == ["time", "v"]
    keep = [r for r in expect if 20 <= r["time"] < 230 and r["host"] in ("a", "c")]
    assert int_rows(sub) == [{"time": r["time"], "v": r["v"]} for r in keep]


@pytest.mark.parametrize("overlap", [False, True])
def test_last_rows_equals_tail_of_read(engine: StorageEngine, overlap: bool) -> None:
    engine.write("db", [rows_batch(0, 150, 4)])
    engine.flush("db", "m")
    engine.write("db", [rows_batch(20 if overlap else 100, 150, 5)])
    for n in (1, 3):
        for columns in (None, ["v"], ["host", "v"]):
            full = int_rows(engine.read("db", "m", columns=columns, end_ns=140))
            fields = ["v"] if columns else ["v", "w"]
            got = int_rows(engine.last_rows("db", "m", n=n, columns=columns, end_ns=140))
            all_rows = int_rows(engine.read("db", "m", end_ns=140))
            series = [(r.get("dc"), r["host"]) for r in all_rows]
            picked: list[dict] = []
            for key in dict.fromkeys(series):
                mine = [i for i, s in enumerate(series) if s == key and any(full[i][f] is not None for f in fields)]
                picked.extend(full[i] for i in mine[-n:])
            assert got == picked


def test_databases_in_creation_order_and_series_after_delete(engine: StorageEngine) -> None:
    engine.create_database("zeta")
    engine.create_database("alpha")
    assert engine.databases() == ["db", "zeta", "alpha"]
    engine.write("db", [rows_batch(0, 100, 6)])
    engine.flush("db", "m")
    engine.write("db", [rows_batch(100, 100, 7)])
    before = engine.series("db", "m")
    assert (("host", "b"),) in before
    engine.delete("db", "m", tag_filter={"host": {"b"}})
    after = engine.series("db", "m")
    assert after == [s for s in before if s != (("host", "b"),)]


class ReadOnlySource:
    """The engine without last_rows: the executor falls back to read() (the reference)."""

    def __init__(self, engine: StorageEngine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> object:
        if name == "last_rows":
            raise AttributeError(name)
        return getattr(self._engine, name)


def test_influxql_lastpoint_uses_last_rows_and_matches_full_read(engine: StorageEngine) -> None:
    from query.influxql_exec import QueryExecutor

    engine.write("db", [rows_batch(0, 300, 8)])
    engine.flush("db", "m")
    engine.write("db", [rows_batch(30, 100, 9)])  # overlaps the segment in time
    calls: list[int] = []
    real_last_rows = engine.last_rows

    def counting_last_rows(*args: object, **kw: object) -> pa.Table:
        calls.append(1)
        return real_last_rows(*args, **kw)

    engine.last_rows = counting_last_rows  # type: ignore[method-assign]
    fast, slow = QueryExecutor(engine), QueryExecutor(ReadOnlySource(engine))
    try:
        for q in ['SELECT * FROM m GROUP BY "host" ORDER BY time DESC LIMIT 1',
                  "SELECT v FROM m GROUP BY * ORDER BY time DESC LIMIT 2 OFFSET 1",
                  "SELECT w, v FROM m WHERE time < 45 ORDER BY time DESC LIMIT 3"]:
            got = fast.execute(q, "db", epoch="ns")
            assert got == slow.execute(q, "db", epoch="ns")
            assert got[0].get("series")
        assert len(calls) == 3
    finally:
        fast.close()
        slow.close()
