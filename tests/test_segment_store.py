"""SegmentStore: seq assignment, listing, pruned reads, quarantine, guarded deletes, drops."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from storage.segment_format import SegmentInfo, read_footer
from storage.segment_store import SegmentStore


def cpu_table(t0: int, n: int, hosts: list[str], seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "time": pa.array(t0 + np.repeat(np.arange(n), len(hosts)) * 10, type=pa.timestamp("ns")),
        "host": pa.array(hosts * n, type=pa.string()),
        "usage": pa.array(rng.integers(0, 100, n * len(hosts)).astype(np.float64)),
    })


def read_all(store: SegmentStore, db: str, m: str, **kw: object) -> list[dict]:
    tables = store.read(db, m, **kw)  # type: ignore[arg-type]
    rows = []
    for t in tables:
        t = t.set_column(0, "time", t.column("time").cast(pa.int64()))
        rows.extend(t.to_pylist())
    return sorted(rows, key=lambda r: (r.get("host") or "", r["time"]))


def test_seal_list_and_seq_survive_reopen(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    assert store.open() == []
    a = store.seal("db", "cpu", cpu_table(0, 10, ["h1", "h2"]), tag_keys=["host"])
    b = store.seal("db", "mem", cpu_table(100, 10, ["h1"]), tag_keys=["host"])
    c = store.seal("other/db", "cpu", cpu_table(200, 10, ["h3"]), tag_keys=["host"])
    assert [a.seq, b.seq, c.seq] == [1, 2, 3]
    assert a.path.name == f"{1:016d}-0-90.seg"
    assert a.path.parent == tmp_path / "segments" / "db" / "cpu"
    assert "/" not in c.path.parent.parent.name
    assert store.segments("db") == [a, b]
    assert store.segments("db", "cpu") == [a]
    assert store.sealed_after(1, 10) == [b, c]
    assert store.sealed_after(0, 2) == [a, b]
    assert store.disk_bytes() == a.size + b.size + c.size
    assert store.delete(c, "test")  # the newest seq is gone: the counter must not reuse it
    again = SegmentStore(tmp_path)
    assert again.open() == []
    assert again.segments() == [a, b]
    d = again.seal("db", "cpu", cpu_table(300, 5, ["h1"]), tag_keys=["host"])
    assert d.seq == 4


def test_read_prunes_by_time_and_tags(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.open()
    early = cpu_table(0, 10, ["h1", "h2"], seed=1)
    late = cpu_table(1000, 10, ["h2", "h3"], seed=2)
    store.seal("db", "cpu", early, tag_keys=["host"])
    store.seal("db", "cpu", late, tag_keys=["host"])
    assert len(store.read("db", "cpu")) == 2
    tables = store.read("db", "cpu", start_ns=1000)
    assert len(tables) == 1 and tables[0].num_rows == late.num_rows
    assert len(store.read("db", "cpu", tag_filter={"host": {"h1"}})) == 1
    rows = read_all(store, "db", "cpu", start_ns=50, end_ns=1050, tag_filter={"host": {"h2", "h3"}},
                    columns=["usage"])
    everything = read_all(store, "db", "cpu")
    want = [{"time": r["time"], "usage": r["usage"]} for r in everything
            if 50 <= r["time"] < 1050 and r["host"] in ("h2", "h3")]
    assert sorted(rows, key=lambda r: (r["time"], r["usage"])) == sorted(want, key=lambda r: (r["time"], r["usage"]))
    assert store.read("db", "nothing") == []


def test_open_removes_tmp_and_quarantines_corrupt(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.open()
    good = store.seal("db", "cpu", cpu_table(0, 10, ["h1"]), tag_keys=["host"])
    bad = store.seal("db", "cpu", cpu_table(500, 10, ["h1"]), tag_keys=["host"])
    leftover = good.path.parent / "0000000000000099-0-0.seg.tmp"
    leftover.write_bytes(b"partial")
    data = bytearray(bad.path.read_bytes())
    data[40] ^= 0xFF
    bad.path.write_bytes(bytes(data))
    again = SegmentStore(tmp_path)
    problems = again.open()
    assert not leftover.exists()
    assert any("quarantined" in p and bad.path.name in p for p in problems), problems
    assert again.segments() == [good]
    q = tmp_path / "quarantine" / bad.path.name
    assert q.exists()
    assert bad.path.name in (tmp_path / "quarantine" / (bad.path.name + ".reason")).read_text()


def test_corrupt_chunk_on_read_is_quarantined_and_others_served(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SegmentStore(tmp_path)
    store.open()
    good = store.seal("db", "cpu", cpu_table(0, 10, ["h1"]), tag_keys=["host"])
    bad = store.seal("db", "cpu", cpu_table(500, 10, ["h1"]), tag_keys=["host"])
    chunk = read_footer(bad.path).chunk("usage", "values")
    data = bytearray(bad.path.read_bytes())
    data[chunk.offset + 1] ^= 0x01
    bad.path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="edgets.storage.segments"):
        tables = store.read("db", "cpu")
    assert len(tables) == 1 and tables[0].num_rows == good.rows
    assert any(str(bad.path) in r.getMessage() and f"offset {chunk.offset}" in r.getMessage() for r in caplog.records)
    assert store.segments() == [good]
    reason = (tmp_path / "quarantine" / (bad.path.name + ".reason")).read_text()
    assert f"offset {chunk.offset}" in reason
    assert len(store.read("db", "cpu")) == 1  # keeps serving


def test_delete_guard_and_drops(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.open()
    a = store.seal("db", "cpu", cpu_table(0, 5, ["h1"]), tag_keys=["host"])
    b = store.seal("db", "mem", cpu_table(0, 5, ["h1"]), tag_keys=["host"])
    c = store.seal("db2", "cpu", cpu_table(0, 5, ["h1"]), tag_keys=["host"])
    acked: set[int] = set()

    def is_acked(info: SegmentInfo) -> bool:
        return info.seq in acked

    store.set_delete_guard(is_acked)
    assert not store.delete(a, "retention")
    assert a.path.exists()
    acked.add(a.seq)
    assert store.delete(a, "retention")
    assert not a.path.exists() and store.segments("db") == [b]
    assert store.drop_measurement("db", "mem") == 1 and not b.path.exists()
    assert store.drop_database("db2") == 1 and not c.path.exists()
    assert store.segments() == [] and store.disk_bytes() == 0
