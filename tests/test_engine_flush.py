"""StorageEngine with segments: flush by size/age/flush_all, reads merged over segments + buffer
against a brute-force model, WAL release, restart, drop, DELETE, retention, compaction, overload."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from storage.batch import Batch
from storage.engine import Overloaded, StorageConfig, StorageEngine
from tests.waiting import wait_until

DAY = 86_400 * 10**9
HOSTS = [(("host", "a"),), (("host", "b"), ("rack", "r1")), (("host", "c"),), ()]


def make_batch(sids: list[int], times: list[int], v: list, w: list | None = None, m: str = "cpu") -> Batch:
    fields = {"v": pa.array(v, pa.float64())}
    if w is not None:
        fields["w"] = pa.array(w, pa.int64())
    return Batch(m, HOSTS, np.array(sids, np.int32), np.array(times, np.int64), fields)


def open_engine(path: Path, **kw) -> StorageEngine:
    kw.setdefault("background", False)
    eng = StorageEngine(StorageConfig(data_dir=path, **kw))
    eng.open()
    eng.create_database("db")
    return eng


def rows_of(table: pa.Table) -> list[tuple]:
    """Rows as (tags..., time, fields...) tuples, order preserved."""
    return list(zip(*[table.column(c).to_pylist() for c in table.column_names], strict=True))


class Model:
    """Brute force: {(series id, time): {field: value}}, later non-null values win."""

    def __init__(self) -> None:
        self.points: dict[tuple[int, int], dict[str, object]] = {}

    def write(self, sids: list[int], times: list[int], fields: dict[str, list]) -> None:
        for r, key in enumerate(zip(sids, times, strict=True)):
            slot = self.points.setdefault(key, {})
            for name, values in fields.items():
                if values[r] is not None:
                    slot[name] = values[r]

    def delete(self, start: int, end: int, hosts: set[str] | None) -> None:
        for sid, t in list(self.points):
            host = dict(HOSTS[sid]).get("host")
            if start <= t < end and (hosts is None or host in hosts):
                del self.points[(sid, t)]

    def table_rows(self, start: int | None = None, end: int | None = None, hosts: set[str] | None = None) -> list[tuple]:
        from storage.batch import series_key

        out = []
        for (sid, t), vals in self.points.items():
            tags = dict(HOSTS[sid])
            if start is not None and t < start or end is not None and t >= end:
                continue
            if hosts is not None and tags.get("host") not in hosts:
                continue
            out.append((series_key("cpu", HOSTS[sid]), t, tags.get("host"), tags.get("rack"), vals.get("v"), vals.get("w")))
        out.sort(key=lambda r: (r[0], r[1]))
        return [r[1:] for r in out]


def engine_rows(eng: StorageEngine, **kw) -> list[tuple]:
    t = eng.read("db", "cpu", **kw)
    cols = [t.column("time").cast(pa.int64()).to_pylist()]
    for name in ("host", "rack", "v", "w"):
        cols.append(t.column(name).to_pylist() if name in t.column_names else [None] * t.num_rows)
    return list(zip(*cols, strict=True))


def random_write(rng: random.Random, eng: StorageEngine, model: Model, base: int) -> None:
    n = rng.randint(1, 40)
    sids = [rng.randrange(len(HOSTS)) for _ in range(n)]
    times = [base + rng.randrange(0, 3 * DAY, DAY // 4) for _ in range(n)]  # many duplicates, 3 windows
    v = [rng.choice([None, float(rng.randint(0, 9))]) for _ in range(n)]
    w = [rng.choice([None, rng.randint(-5, 5)]) for _ in range(n)]
    keep = [i for i in range(n) if v[i] is not None or w[i] is not None]
    if not keep:
        return
    sids, times, v, w = ([x[i] for i in keep] for x in (sids, times, v, w))
    eng.write("db", [make_batch(sids, times, v, w)])
    model.write(sids, times, {"v": v, "w": w})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reads_match_model_across_flushes_and_restarts(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    base = 1_600_000_000 * 10**9
    eng = open_engine(tmp_path, flush_window_ns=DAY)
    model = Model()
    for step in range(30):
        random_write(rng, eng, model, base)
        if rng.random() < 0.3:
            before = engine_rows(eng)
            eng.flush_all()
            assert engine_rows(eng) == before  # read-after-flush equals read-before-flush
        if rng.random() < 0.1:
            lo = base + rng.randrange(0, 3 * DAY, DAY // 4)
            hosts = rng.choice([None, {"a"}, {"b", "c"}])
            eng.delete("db", "cpu", lo, lo + DAY // 2, {"host": hosts} if hosts else None)
            model.delete(lo, lo + DAY // 2, hosts)
        if step % 10 == 9:
            eng.close()
            eng = open_engine(tmp_path, flush_window_ns=DAY)
        assert engine_rows(eng) == model.table_rows()
    lo, hi = base + DAY // 2, base + 2 * DAY
    assert engine_rows(eng, start_ns=lo, end_ns=hi) == model.table_rows(lo, hi)
    assert engine_rows(eng, tag_filter={"host": {"b"}}) == model.table_rows(hosts={"b"})
    assert eng.compact_once() or len(eng.segment_store.segments()) <= 3
    assert engine_rows(eng) == model.table_rows()
    infos = eng.segment_store.segments("db", "cpu")
    assert all(i.min_time_ns // DAY == i.max_time_ns // DAY for i in infos)  # never spans windows
    eng.close()


def test_flush_by_size_in_background_releases_wal(tmp_path: Path) -> None:
    eng = open_engine(tmp_path, background=True, flush_bytes=30_000, flush_age_s=3600, wal_file_bytes=8_000)
    model = Model()
    for k in range(40):
        times = list(range(k * 100, k * 100 + 100))
        eng.write("db", [make_batch([k % 3] * 100, times, [float(k)] * 100)])
        model.write([k % 3] * 100, times, {"v": [float(k)] * 100})
    wait_until(lambda: eng.stats()["flushes"] >= 2, 20, "size-triggered flushes")
    stats = eng.stats()
    assert stats["wal_files_released"] > 0 and stats["segments"] >= 2
    assert stats["wal_files"] < 40 * 100 * 16 // 8_000  # files covered by segments are gone
    assert engine_rows(eng) == model.table_rows()
    eng.close()


def test_flush_by_age(tmp_path: Path) -> None:
    eng = open_engine(tmp_path, background=True, flush_age_s=0.2, flush_check_s=0.05)
    eng.write("db", [make_batch([0, 1], [1, 2], [1.0, 2.0])])
    wait_until(lambda: eng.stats()["buffer_rows"] == 0, 20, "age-triggered flush")
    assert eng.stats()["segments"] == 1 and eng.read("db", "cpu").num_rows == 2
    eng.close()


def test_restart_after_flush_replays_nothing_flushed(tmp_path: Path) -> None:
    eng = open_engine(tmp_path)
    eng.write("db", [make_batch([0, 1, 2], [10, 20, 30], [1.0, 2.0, 3.0])])
    eng.flush_all()
    eng.write("db", [make_batch([0], [10], [9.0])])  # overwrite lives in the buffer
    before = eng.read("db", "cpu")
    eng.close()
    eng = StorageEngine(StorageConfig(data_dir=tmp_path, background=False))
    report = eng.open()
    assert report.replayed_points == 1 and report.quarantined == []
    assert eng.read("db", "cpu").equals(before)
    assert eng.measurements("db") == ["cpu"]
    assert eng.series("db", "cpu") == [HOSTS[0], HOSTS[1], HOSTS[2]]
    eng.close()


def test_flush_on_close_and_orphan_flush_segments_removed(tmp_path: Path) -> None:
    eng = open_engine(tmp_path, flush_on_close=True)
    eng.write("db", [make_batch([0, 1], [5, 6], [1.0, 2.0])])
    eng.close()
    eng = StorageEngine(StorageConfig(data_dir=tmp_path, background=False))
    assert eng.open().replayed_points == 0
    assert eng.stats()["segments"] == 1 and eng.read("db", "cpu").num_rows == 2
    # a flush interrupted after sealing, before its marker: simulate by sealing without marking
    eng.write("db", [make_batch([2], [7], [3.0])])
    frozen = eng.freeze("db", "cpu")
    assert frozen is not None
    eng._log_ddl({"op": "flush_begin", "db": "db", "measurement": "cpu", "seq": frozen.seq_max,
                  "floor": eng._segment_floor()}).result()
    eng.segment_store.seal("db", "cpu", frozen.to_table(eng.field_types("db", "cpu"), ["host"]))
    eng.close()  # the frozen rows are still only in the WAL as far as replay knows
    eng = StorageEngine(StorageConfig(data_dir=tmp_path, background=False))
    report = eng.open()
    assert report.orphan_segments_removed == 1 and report.replayed_points == 1
    assert eng.stats()["segments"] == 1 and eng.stats()["buffer_rows"] == 1
    assert sorted(eng.read("db", "cpu").column("v").to_pylist()) == [1.0, 2.0, 3.0]
    eng.close()


def test_drop_measurement_and_database_remove_segments(tmp_path: Path) -> None:
    eng = open_engine(tmp_path)
    eng.write("db", [make_batch([0], [1], [1.0]), make_batch([0], [1], [2.0], m="mem")])
    eng.flush_all()
    eng.drop_measurement("db", "cpu")
    assert eng.measurements("db") == ["mem"]
    # only the zero-row DROP tombstone that carries the drop to the cloud is left
    assert [(i.rows, i.drop) for i in eng.segment_store.segments("db", "cpu")] == [(0, "measurement")]
    eng.write("db", [make_batch([1], [2], [5.0])])  # recreated after the drop
    eng.flush_all()
    eng.close()
    eng = open_engine(tmp_path)  # replaying the drop must not touch the newer segment
    assert eng.read("db", "cpu").column("v").to_pylist() == [5.0]
    eng.drop_database("db")
    tombstone = [(i.rows, i.measurement, i.drop) for i in eng.segment_store.segments()]
    assert tombstone == [(0, "", "database")] and eng.databases() == []
    eng.close()
    eng = StorageEngine(StorageConfig(data_dir=tmp_path, background=False))
    eng.open()
    assert eng.databases() == []
    assert [(i.rows, i.measurement, i.drop) for i in eng.segment_store.segments()] == tombstone
    eng.close()


def test_delete_by_time_and_tag_in_segments_and_buffer(tmp_path: Path) -> None:
    eng = open_engine(tmp_path)
    eng.write("db", [make_batch([0, 1, 2, 0], [10, 10, 10, 50], [1.0, 2.0, 3.0, 4.0])])
    eng.flush_all()
    eng.write("db", [make_batch([0, 2], [20, 20], [5.0, 6.0])])
    removed = eng.delete("db", "cpu", 0, 30, {"host": {"a", "c"}})
    assert removed == 4
    assert engine_rows(eng) == [(50, "a", None, 4.0, None), (10, "b", "r1", 2.0, None)]
    eng.close()
    eng = open_engine(tmp_path)
    assert engine_rows(eng) == [(50, "a", None, 4.0, None), (10, "b", "r1", 2.0, None)]
    eng.close()


def test_retention_by_duration(tmp_path: Path) -> None:
    now = time.time_ns()
    eng = open_engine(tmp_path, flush_window_ns=DAY)
    eng.write("db", [make_batch([0, 0], [now - 5 * DAY, now - 60 * 10**9], [1.0, 2.0])])
    eng.flush_all()
    assert len(eng.segment_store.segments()) == 2
    eng.alter_retention_policy("db", "autogen", duration_ns=2 * DAY)
    report = eng.enforce_retention()
    assert len(report.dropped_expired) == 1
    assert eng.read("db", "cpu").column("v").to_pylist() == [2.0]
    eng.close()


def test_disk_budget_blocks_unsynced_then_drops_oldest_synced(tmp_path: Path) -> None:
    base = 1_600_000_000 * 10**9
    rng = np.random.default_rng(5)
    eng = open_engine(tmp_path, flush_window_ns=DAY, wal_file_bytes=16_000)
    for day in range(4):
        n = 5000
        times = (base + day * DAY + np.arange(n) * 10**9).tolist()
        eng.write("db", [make_batch([0] * n, times, rng.random(n).tolist())])
        eng.flush_all()
    sizes = [i.size for i in eng.segment_store.segments()]
    eng.close()
    assert len(sizes) == 4
    # The operator lowers the budget below what is stored: about 3.5 segments' worth.
    budget = int((sum(sizes) - sizes[0] // 2) / 0.9)
    eng = open_engine(tmp_path, flush_window_ns=DAY, wal_file_bytes=16_000, disk_budget_bytes=budget)
    synced: set[int] = set()
    eng.set_segment_delete_guard(lambda info: info.seq in synced)
    with pytest.raises(Overloaded) as err:  # over budget and nothing may be deleted: intake blocks
        eng.write("db", [make_batch([1], [base], [1.0])])
    assert err.value.retry_after == 5 and "disk budget" in str(err.value)
    report = eng.enforce_retention()
    assert report.over_budget and report.blocked_unsynced and not report.dropped_for_budget
    assert eng.segment_store.disk_bytes() == sum(sizes)  # nothing unsynced was dropped
    infos = eng.segment_store.segments()
    synced.update(i.seq for i in infos)  # the cloud has them now
    report = eng.enforce_retention()
    assert not report.over_budget and report.dropped_for_budget == [infos[0].seq]  # oldest first
    assert eng.segment_store.disk_bytes() <= eng.retention.disk_budget_bytes
    eng.write("db", [make_batch([1], [base + 3 * DAY], [1.0])])  # intake resumes
    assert eng.read("db", "cpu", start_ns=base, end_ns=base + DAY).num_rows == 0
    eng.close()


def test_memory_pressure_flush_avoids_overload(tmp_path: Path) -> None:
    eng = open_engine(tmp_path, background=True, memory_budget_bytes=400_000, flush_check_s=0.05)
    written = 0
    for k in range(60):
        batch = make_batch([k % 4] * 1000, list(range(k * 1000, k * 1000 + 1000)), [1.0] * 1000)
        deadline = time.monotonic() + 20
        while True:
            try:
                eng.write("db", [batch])
                written += 1000
                break
            except Overloaded:
                assert time.monotonic() < deadline, "flusher never made room"
                wait_until(lambda: eng.stats()["buffer_bytes"] < 200_000, 20, "flush under memory pressure")
    assert eng.stats()["flushes"] > 0 and eng.read("db", "cpu").num_rows == written
    eng.close()


def test_writes_racing_flushes_always_get_their_write_outcome(tmp_path: Path) -> None:
    """A flush marker committed in the same group as client writes must not hand its
    'WAL files released' count to a writer (a group's last record is often a write)."""
    import concurrent.futures

    from ingest.lineproto import parse_lines
    from storage.engine import WriteOutcome

    engine = StorageEngine(StorageConfig(data_dir=tmp_path, flush_bytes=4096, flush_age_s=0.01,
                                         flush_check_s=0.005, wal_file_bytes=8192))
    engine.open()
    engine.create_database("db")

    def writer(w: int) -> list[object]:
        outcomes = []
        for i in range(150):
            body = f"m,w=w{w} v={i}i,s=\"{'x' * 64}\" {1_700_000_000_000_000_000 + i}".encode()
            outcomes.append(engine.write("db", list(parse_lines(body).batches.values())))
        return outcomes

    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = [o for chunk in pool.map(writer, range(4)) for o in chunk]
        assert engine.stats()["flushes"] > 5
        assert all(isinstance(o, WriteOutcome) and o.points_written == 1 for o in results)
    finally:
        engine.close()
