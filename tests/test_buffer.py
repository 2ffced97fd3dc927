"""Write buffer: duplicate merging against a reference model, filters, memory accounting,
freeze/release and the WAL position hooks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.batch import Batch, FieldType, series_key
from storage.buffer import MERGE_CAP_ROWS, WriteBuffer, assemble, select_numeric

SERIES = [(("host", "a"),), (("host", "b"), ("rack", "r1")), (("rack", "r2"),), ()]
TYPES = {"f": FieldType.FLOAT, "s": FieldType.STRING}


def _batch(rows: list[tuple[int, int, float | None, str | None]]) -> Batch:
    return Batch(
        measurement="m",
        series=SERIES,
        series_id=np.array([r[0] for r in rows], dtype=np.int32),
        time=np.array([r[1] for r in rows], dtype=np.int64),
        fields={"f": pa.array([r[2] for r in rows], pa.float64()), "s": pa.array([r[3] for r in rows], pa.string())},
    )


def _read(buf: WriteBuffer, **kw) -> pa.Table:
    chunks, index, n = buf.snapshot("db", "m")
    return assemble(chunks, index, n, TYPES, ["host", "rack"], **kw)


def _reference(batches: list[list[tuple[int, int, float | None, str | None]]]) -> list[tuple]:
    """Per (series, time): per field the last non-null value in arrival order."""
    merged: dict[tuple[int, int], dict[str, object]] = {}
    for rows in batches:
        for sid, t, f, s in rows:
            slot = merged.setdefault((sid, t), {"f": None, "s": None})
            if f is not None:
                slot["f"] = f
            if s is not None:
                slot["s"] = s
    keyed = sorted(merged.items(), key=lambda kv: (series_key("m", SERIES[kv[0][0]]), kv[0][1]))
    out = []
    for (sid, t), v in keyed:
        tags = dict(SERIES[sid])
        out.append((t, tags.get("host"), tags.get("rack"), v["f"], v["s"]))
    return out


def _rows(table: pa.Table) -> list[tuple]:
    cols = [table.column("time").cast(pa.int64()).to_pylist()] + [table.column(c).to_pylist() for c in table.column_names[1:]]
    return list(zip(*cols, strict=True))


row = st.tuples(
    st.integers(0, len(SERIES) - 1),
    st.integers(0, 5),
    st.one_of(st.none(), st.floats(allow_nan=False, width=64)),
    st.one_of(st.none(), st.sampled_from(["x", "y", "zz"])),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(row, min_size=1, max_size=30), min_size=1, max_size=8))
def test_duplicates_merge_newest_non_null_wins(batches: list[list[tuple]]) -> None:
    buf = WriteBuffer()
    for seq, rows in enumerate(batches, start=1):
        buf.append("db", _batch(rows), seq, 1)
    table = _read(buf)
    assert table.column_names == ["time", "host", "rack", "f", "s"]
    assert table.schema.field("time").type == pa.timestamp("ns")
    assert _rows(table) == _reference(batches)


def test_filters_and_projection() -> None:
    buf = WriteBuffer()
    buf.append("db", _batch([(0, 1, 1.0, "a"), (1, 2, 2.0, None), (2, 3, None, "c"), (0, 9, 4.0, "d")]), 1, 1)
    t = _read(buf, start_ns=2, end_ns=9)
    assert t.column("time").cast(pa.int64()).to_pylist() == [2, 3]
    t = _read(buf, tag_filter={"host": {"a"}})
    assert t.column("host").to_pylist() == ["a", "a"] and t.column("f").to_pylist() == [1.0, 4.0]
    t = _read(buf, tag_filter={"rack": {"r1", "r2"}}, columns=["rack", "s"])
    assert t.column_names == ["time", "rack", "s"]
    assert t.column("rack").to_pylist() == ["r1", "r2"]
    t = _read(buf, start_ns=100)
    assert t.num_rows == 0 and t.column_names == ["time", "host", "rack", "f", "s"]


def test_memory_accounting_and_drop() -> None:
    buf = WriteBuffer()
    rows = [(i % 4, i, float(i), None) for i in range(1000)]
    buf.append("db", _batch(rows), 1, 1)
    first = buf.bytes
    assert first >= 1000 * (4 + 8 + 8)
    buf.append("db", _batch(rows), 2, 1)
    assert buf.bytes > first and buf.rows == 2000
    buf.drop_database("db")
    assert buf.bytes == 0 and buf.rows == 0 and buf.snapshot("db", "m") is None


def test_chunk_count_stays_logarithmic() -> None:
    buf = WriteBuffer()
    for seq in range(1, 257):
        buf.append("db", _batch([(0, seq, 1.0, None)] * 4), seq, 1)
    assert buf.chunk_count() <= 10
    assert _read(buf).num_rows == 256
    assert MERGE_CAP_ROWS > 256


def test_freeze_release_and_wal_position() -> None:
    buf = WriteBuffer()
    buf.append("db", _batch([(0, 1, 1.0, None)]), 5, 2)
    buf.append("db", _batch([(0, 2, 2.0, None)]), 6, 3)
    frozen = buf.freeze("db", "m")
    assert frozen is not None and frozen.seq_max == 6 and frozen.wal_file_min == 2
    buf.append("db", _batch([(0, 3, 3.0, None)]), 7, 4)
    assert _read(buf).num_rows == 3  # frozen rows stay readable
    snap = frozen.to_table(TYPES, ["host", "rack"])
    assert snap.column("f").to_pylist() == [1.0, 2.0]  # immutable: the later append is not in it
    assert buf.oldest_wal_file() == 2
    bytes_before = buf.bytes
    buf.release(frozen)
    assert buf.bytes == bytes_before - frozen.nbytes
    assert _read(buf).column("f").to_pylist() == [3.0]
    assert buf.oldest_wal_file() == 4
    assert buf.freeze("db", "other") is None


def test_series_listed_in_series_key_order() -> None:
    buf = WriteBuffer()
    buf.append("db", _batch([(2, 1, 1.0, None), (0, 1, 1.0, None), (1, 1, 1.0, None)]), 1, 1)
    listed = buf.series("db", "m")
    assert [series_key("m", t) for t in listed] == sorted(series_key("m", t) for t in SERIES[:3])


_ROW = st.tuples(st.integers(0, 3), st.integers(0, 30), st.one_of(st.none(), st.floats(-1e6, 1e6)),
                 st.one_of(st.none(), st.text(max_size=3)))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_ROW, min_size=1, max_size=12), min_size=1, max_size=5),
       st.one_of(st.none(), st.integers(0, 30)), st.one_of(st.none(), st.integers(0, 31)),
       st.sampled_from([None, {"host": {"a"}}, {"rack": {"r1", "r2"}}]))
def test_ordered_snapshot_and_select_numeric_agree_with_the_merged_view(
        batches: list[list[tuple[int, int, float | None, str | None]]], start: int | None, end: int | None,
        tag_filter: dict[str, set[str]] | None) -> None:
    """ordered_snapshot() is given exactly while no (series, time) repeats in arrival order, and
    then select_numeric() holds the same rows and values as the sorted, merged view."""
    buf = WriteBuffer()
    newest: dict[int, int] = {}
    in_order = True
    for seq, rows in enumerate(batches):
        buf.append("db", _batch(rows), seq=seq + 1, wal_file_no=1)
        for sid, t, _f, _s in rows:
            in_order = in_order and t > newest.get(sid, -1)
            newest[sid] = max(t, newest.get(sid, -1))
    ordered = buf.ordered_snapshot("db", "m")
    assert (ordered is not None) == in_order
    if ordered is None:
        return
    chunks, index, n = ordered
    times, sids, columns = select_numeric(chunks, index, n, TYPES, ["f"], start_ns=start, end_ns=end,
                                          tag_filter=tag_filter)
    values, valid = columns.get("f", (np.zeros(0), np.zeros(0, dtype=np.bool_)))
    flags = valid.tolist() if valid.shape[0] else [True] * len(values)

    def tags(sid: int) -> tuple[str | None, str | None]:
        found = dict(index.tagsets[sid])
        return found.get("host"), found.get("rack")

    ours = sorted(((repr(tags(int(s))), int(t)), float(v) if ok else None)
                  for s, t, v, ok in zip(sids.tolist(), times.tolist(), values.tolist(), flags, strict=True))
    table = assemble(chunks, index, n, TYPES, ["host", "rack"], start_ns=start, end_ns=end, tag_filter=tag_filter)
    rows = zip(table.column("time").cast(pa.int64()).to_pylist(),
               *(table.column(c).to_pylist() for c in ("host", "rack", "f")), strict=True)
    merged = sorted(((repr((h, r)), t), f) for t, h, r, f in rows)
    assert ours == merged


def test_an_emptied_buffer_starts_a_new_in_order_history() -> None:
    buf = WriteBuffer()
    buf.append("db", _batch([(0, 10, 1.0, None)]), seq=1, wal_file_no=1)
    assert buf.ordered_snapshot("db", "m") is not None
    buf.append("db", _batch([(0, 10, 2.0, None)]), seq=2, wal_file_no=1)  # the same (series, time) again
    assert buf.ordered_snapshot("db", "m") is None
    frozen = buf.freeze("db", "m")
    assert frozen is not None
    buf.append("db", _batch([(0, 20, 3.0, None)]), seq=3, wal_file_no=1)
    buf.release(frozen)
    assert buf.ordered_snapshot("db", "m") is None  # rows remain: the history goes on
    frozen = buf.freeze("db", "m")
    assert frozen is not None
    buf.release(frozen)
    buf.append("db", _batch([(0, 5, 4.0, None)]), seq=4, wal_file_no=1)  # older than before, but alone
    assert buf.ordered_snapshot("db", "m") is not None
