"""Footer `origin` and zero-row tombstones: format round trip and compatibility, SegmentStore
seal rules and recovery, compaction and retention around tombstones, engine DELETE / DROP."""

from __future__ import annotations

import hashlib
from pathlib import Path

import crc32c
import msgpack
import numpy as np
import pyarrow as pa
import pytest

from storage.batch import Batch
from storage.compaction import CompactionPolicy, Compactor
from storage.engine import StorageConfig, StorageEngine
from storage.retention import RetentionEnforcer
from storage.segment_format import (
    TRAILER,
    TRAILER_MAGIC,
    encode_segment,
    read_footer,
    read_segment,
    read_segment_info,
    read_segment_rows,
    write_segment,
)
from storage.segment_store import SegmentStore

T0 = 1_700_000_000 * 10**9
SEC = 10**9


def cpu_table(hosts: list[str], points: int, start: int = T0) -> pa.Table:
    n = len(hosts) * points
    return pa.table({
        "time": pa.array(start + np.repeat(np.arange(points, dtype=np.int64), len(hosts)) * SEC,
                         type=pa.timestamp("ns")),
        "host": pa.array(hosts * points),
        "value": pa.array(np.arange(n, dtype=np.float64)),
    })


def empty_table() -> pa.Table:
    return pa.table({"time": pa.array([], type=pa.timestamp("ns"))})


def without_footer_key(data: bytes, key: str) -> bytes:
    """The segment bytes re-written as a writer that never had footer key `key` would."""
    footer_len = TRAILER.unpack_from(data, len(data) - TRAILER.size)[0]
    body_end = len(data) - TRAILER.size
    footer = msgpack.unpackb(data[body_end - footer_len:body_end], raw=False, strict_map_key=False)
    assert key in footer
    del footer[key]
    raw = msgpack.packb(footer, use_bin_type=True)
    body = data[:body_end - footer_len] + raw
    digest = hashlib.blake2b(body, digest_size=32).digest()
    return body + TRAILER.pack(len(raw), crc32c.crc32c(raw), 0, digest, TRAILER_MAGIC)


# ---------------------------------------------------------------- format

def test_origin_round_trips_and_defaults_to_flush(tmp_path: Path) -> None:
    plain = write_segment(tmp_path / "a.seg", database="d", measurement="m", seq=1, table=cpu_table(["a"], 3))
    merged = write_segment(tmp_path / "b.seg", database="d", measurement="m", seq=2, table=cpu_table(["a"], 3),
                           replaces=[1], origin="compaction")
    assert (plain.origin, merged.origin) == ("flush", "compaction")
    assert read_footer(tmp_path / "b.seg").origin == "compaction"
    assert read_segment_info(tmp_path / "b.seg").origin == "compaction"
    v1 = write_segment(tmp_path / "c.seg", database="d", measurement="m", seq=3, table=cpu_table(["a"], 3),
                       version=1, origin="delete")
    assert v1.origin == "delete" and read_footer(tmp_path / "c.seg").version == 1


def test_file_without_origin_key_reads_as_unknown(tmp_path: Path) -> None:
    table = cpu_table(["a", "b"], 5)
    data = encode_segment(database="d", measurement="m", seq=4, table=table, origin="compaction",
                          version=2)  # a plain-footer file, as the writers before `origin` made
    path = tmp_path / "old.seg"
    path.write_bytes(without_footer_key(data, "origin"))
    info = read_segment_info(path)  # checksums of the rewritten file hold
    assert info.origin == "" and info.rows == 10
    assert read_segment(path).equals(read_segment(path))
    assert read_segment(path).num_rows == table.num_rows


def test_tombstone_round_trip_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "t.seg"
    info = write_segment(path, database="d", measurement="m", seq=9, table=empty_table(), replaces=[3, 5],
                         precedence=5, origin="delete", tombstone_range=(T0, T0 + 60 * SEC))
    assert (info.rows, info.series_count, info.field_values) == (0, 0, 0)
    assert (info.min_time_ns, info.max_time_ns, info.replaces) == (T0, T0 + 60 * SEC, (3, 5))
    assert info.is_tombstone and info.origin == "delete" and info.precedence == 5
    again = read_segment_info(path)
    assert again == info
    footer = read_footer(path)
    assert footer.row_groups == [] and footer.chunks == [] and footer.fields == {}
    assert read_segment(path).num_rows == 0
    assert read_segment(path, columns=["host", "value"], tag_filter={"host": {"a"}}).num_rows == 0
    assert read_segment_rows(path) is None and read_segment_rows(path, tail=1) is None


def test_drop_tombstone_round_trip(tmp_path: Path) -> None:
    info = write_segment(tmp_path / "d.seg", database="d", measurement="", seq=12, table=empty_table(),
                         origin="drop", drop="database", drop_below=12, tombstone_range=(T0, T0))
    assert (info.drop, info.drop_below, info.rows, info.replaces) == ("database", 12, 0, ())
    plain = write_segment(tmp_path / "p.seg", database="d", measurement="m", seq=1, table=cpu_table(["a"], 1))
    assert (plain.drop, plain.drop_below) == ("", 0)


@pytest.mark.parametrize("kwargs", [
    {},  # no time range, no replaces
    {"tombstone_range": (T0, T0)},  # nothing to hide
    {"replaces": [1]},  # no time range
    {"replaces": [1], "tombstone_range": (T0, T0), "version": 1},  # v1 cannot hold zero row groups
    {"replaces": [1], "tombstone_range": (T0 + 1, T0)},  # reversed range
    {"drop": "database", "tombstone_range": (T0, T0)},  # drop without drop_below
    {"drop": "table", "drop_below": 3, "tombstone_range": (T0, T0)},  # unknown scope
])
def test_empty_segments_that_are_no_valid_tombstone_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        encode_segment(database="d", measurement="m", seq=2, table=empty_table(), **kwargs)


def test_a_drop_tombstone_with_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="drop"):
        encode_segment(database="d", measurement="m", seq=2, table=cpu_table(["a"], 1), drop="measurement",
                       drop_below=2, tombstone_range=(T0, T0))


# ---------------------------------------------------------------- store

def test_store_seals_a_delete_tombstone_and_open_finishes_the_delete(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.open()
    old = store.seal("d", "m", cpu_table(["a", "b"], 10), tag_keys=["host"])
    with pytest.raises(ValueError, match="tombstone"):
        store.seal("d", "m", empty_table())  # origin flush: no empty segment
    with pytest.raises(ValueError, match="tombstone"):
        store.seal("d", "m", empty_table(), origin="delete")  # nothing replaced
    tomb = store.seal("d", "m", empty_table(), replaces=[old.seq], precedence=old.precedence, origin="delete")
    assert (tomb.min_time_ns, tomb.max_time_ns) == (old.min_time_ns, old.max_time_ns)  # from the index
    assert tomb.path.name.endswith(f"-{old.min_time_ns}-{old.max_time_ns}.seg")
    assert [i.seq for i in store.segments()] == [tomb.seq]  # the replaced segment is hidden
    assert store.read("d", "m") == [] and store.read_rows("d", "m", tail=1) == []
    # crash before the replaced file was deleted: open() finishes the job
    reopened = SegmentStore(tmp_path)
    notes = reopened.open()
    assert any("replaced" in n for n in notes) and not old.path.exists()
    assert [(i.seq, i.rows, i.origin) for i in reopened.segments()] == [(tomb.seq, 0, "delete")]


def test_compaction_skips_tombstones_and_marks_its_output(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.open()
    doomed = store.seal("d", "m", cpu_table(["a"], 5, T0), tag_keys=["host"])
    store.seal("d", "m", empty_table(), replaces=[doomed.seq], origin="delete")
    store.delete(doomed, "test: DELETE removed every row")
    inputs = [store.seal("d", "m", cpu_table(["a"], 5, T0 + k * 10 * SEC), tag_keys=["host"]) for k in (1, 2)]
    compactor = Compactor(store, CompactionPolicy(min_inputs=2))
    assert [[i.seq for i in run] for run in compactor.plan()] == [[i.seq for i in inputs]]
    merged = compactor.compact_once()
    assert merged is not None and merged.origin == "compaction" and merged.rows == 10
    assert compactor.plan() == []  # the lone tombstone is never a merge input
    assert sorted(i.rows for i in store.segments()) == [0, 10]


def test_retention_drops_a_synced_tombstone_with_the_data_it_hid(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.open()
    old = store.seal("d", "m", cpu_table(["a"], 5), tag_keys=["host"])
    tomb = store.seal("d", "m", empty_table(), replaces=[old.seq], origin="delete")
    store.delete(old, "test: DELETE rewrote it", force=True)
    acked: set[int] = set()
    store.set_delete_guard(lambda info: info.seq in acked)
    retention = RetentionEnforcer(store, durations={"d": 3600 * SEC}, clock_ns=lambda: T0 + 7200 * SEC)
    report = retention.enforce()
    assert report.blocked_unsynced == [tomb.seq] and store.get(tomb.seq) is not None
    acked.add(tomb.seq)
    assert retention.enforce().dropped_expired == [tomb.seq] and not tomb.path.exists()


# ---------------------------------------------------------------- engine DELETE / DROP

def cpu_batch(hosts: list[str], points: int, start: int = T0) -> Batch:
    return Batch(
        measurement="cpu",
        series=[(("host", h),) for h in hosts],
        series_id=np.tile(np.arange(len(hosts), dtype=np.int32), points),
        time=start + np.repeat(np.arange(points, dtype=np.int64), len(hosts)) * SEC,
        fields={"value": pa.array(np.arange(len(hosts) * points, dtype=np.float64))},
    )


def test_engine_delete_of_every_row_seals_a_tombstone_that_survives_reopen(tmp_path: Path) -> None:
    config = StorageConfig(data_dir=tmp_path, background=False)
    with StorageEngine(config) as engine:
        engine.create_database("db")
        engine.write("db", [cpu_batch(["h1", "h2"], 20)])
        (seg,) = engine.flush_all()
        engine.write("db", [cpu_batch(["h1"], 5, T0 + 100 * SEC)])
        (other,) = engine.flush_all()
        assert engine.delete("db", "cpu", end_ns=T0 + 50 * SEC) == 40
        by_seq = {i.seq: i for i in engine.segment_store.segments()}
        tombs = [i for i in by_seq.values() if i.rows == 0]
        assert [(t.replaces, t.origin, t.precedence) for t in tombs] == [((seg.seq,), "delete", seg.precedence)]
        assert other.seq in by_seq and seg.seq not in by_seq and not seg.path.exists()
        assert engine.read("db", "cpu").num_rows == 5
        assert engine.delete("db", "cpu", tag_filter={"host": {"h1"}}) == 5  # the other one too
        assert engine.read("db", "cpu").num_rows == 0
    with StorageEngine(config) as engine:  # replay of both DELETEs seals nothing new
        infos = engine.segment_store.segments()
        assert sorted(i.replaces for i in infos) == [(seg.seq,), (other.seq,)]
        assert all(i.rows == 0 and i.origin == "delete" for i in infos)
        assert engine.read("db", "cpu").num_rows == 0


def test_engine_partial_delete_rewrite_has_origin_delete(tmp_path: Path) -> None:
    with StorageEngine(StorageConfig(data_dir=tmp_path, background=False)) as engine:
        engine.create_database("db")
        engine.write("db", [cpu_batch(["h1", "h2"], 10)])
        (seg,) = engine.flush_all()
        assert engine.delete("db", "cpu", tag_filter={"host": {"h2"}}) == 10
        (rewrite,) = engine.segment_store.segments()
        assert (rewrite.rows, rewrite.origin, rewrite.replaces) == (10, "delete", (seg.seq,))
        assert (rewrite.min_time_ns, rewrite.max_time_ns) == (T0, T0 + 9 * SEC)


def test_engine_drop_seals_one_drop_tombstone_even_across_replay(tmp_path: Path) -> None:
    config = StorageConfig(data_dir=tmp_path, background=False)
    with StorageEngine(config) as engine:
        engine.create_database("db")
        engine.write("db", [cpu_batch(["h1"], 10)])
        engine.flush_all()
        engine.write("db", [Batch("mem", [(("host", "h1"),)], np.zeros(3, np.int32),
                                  T0 + np.arange(3, dtype=np.int64), {"used": pa.array([1.0, 2.0, 3.0])})])
        engine.flush_all()
        next_seq = engine.segment_store.next_seq()
        engine.drop_measurement("db", "cpu")
        (tomb,) = engine.segment_store.segments("db", "cpu")
        assert (tomb.rows, tomb.origin, tomb.drop, tomb.drop_below) == (0, "drop", "measurement", next_seq)
        assert engine.measurements("db") == ["mem"]
        engine.drop_measurement("db", "cpu")  # nothing left to drop: no second tombstone
        assert [i.seq for i in engine.segment_store.segments("db", "cpu")] == [tomb.seq]
        engine.write("db", [cpu_batch(["h9"], 2, T0 + 500 * SEC)])
        engine.flush_all()
        assert engine.read("db", "cpu").column("host").to_pylist() == ["h9", "h9"]
    with StorageEngine(config) as engine:  # the WAL's drop op is replayed: the tombstone is found
        cpu = engine.segment_store.segments("db", "cpu")
        assert sorted((i.rows, i.drop) for i in cpu) == [(0, "measurement"), (2, "")]
        next_seq = engine.segment_store.next_seq()
        engine.drop_database("db")
        (db_tomb,) = engine.segment_store.segments("db")
        assert (db_tomb.measurement, db_tomb.drop, db_tomb.drop_below) == ("", "database", next_seq)
        assert "db" not in engine.databases()
    with StorageEngine(config) as engine:
        assert [i.seq for i in engine.segment_store.segments("db")] == [db_tomb.seq]
