"""read(field_filter=...): the rows of a full read() whose field conditions hold, whether pushed down
to the row groups (disjoint parts) or applied after the merge (overlapping parts, duplicates)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from storage.batch import Batch, TagSet
from storage.compaction import merge_tables
from storage.engine import StorageConfig, StorageEngine
from storage.segment_format import read_segment, read_segment_rows, write_segment

SERIES: list[TagSet] = [(("host", h),) for h in "abcdef"] + [(("dc", "x"),)]
OPS = [">", ">=", "<", "<=", "=", "!="]


def random_batch(rng: random.Random, t_lo: int, t_hi: int, n: int) -> Batch:
    sid = np.array([rng.randrange(len(SERIES)) for _ in range(n)], dtype=np.int32)
    times = np.array([rng.randrange(t_lo, t_hi) for _ in range(n)], dtype=np.int64)
    v = [None if rng.random() < 0.2 else float(rng.randrange(20)) for _ in range(n)]
    w = [None if rng.random() < 0.3 else rng.randrange(-5, 5) for _ in range(n)]
    for i in range(n):
        if v[i] is None and w[i] is None:
            w[i] = 0
    return Batch("m", SERIES, sid, times, {"v": pa.array(v, type=pa.float64()), "w": pa.array(w, type=pa.int64())})


def brute(engine: StorageEngine, columns: list[str] | None, conditions: list[tuple[str, str, float | int]],
          **kw: object) -> list[dict]:
    table = engine.read("db", "m", **kw)  # type: ignore[arg-type]
    rows = table.set_column(0, "time", table.column("time").cast(pa.int64())).to_pylist()
    compare = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
               "<=": lambda a, b: a <= b, "=": lambda a, b: a == b, "!=": lambda a, b: a != b}
    kept = [r for r in rows if all(r.get(f) is not None and compare[op](r[f], x) for f, op, x in conditions)]
    if columns is not None:
        kept = [{k: v for k, v in r.items() if k == "time" or k in columns} for r in kept]
    return kept


@pytest.mark.parametrize("overlapping", [False, True])
def test_field_filter_equals_filtered_full_read(tmp_path: Path, overlapping: bool) -> None:
    rng = random.Random(11 + overlapping)
    engine = StorageEngine(StorageConfig(data_dir=tmp_path / "d", background=False, fsync="never",
                                         flush_window_ns=1 << 62))
    engine.open()
    try:
        engine.create_database("db")
        for k in range(4):  # overlapping: every batch spans the same times (overwrites across parts)
            lo, hi = (0, 500) if overlapping else (k * 500, k * 500 + 500)
            engine.write("db", [random_batch(rng, lo, hi, 400)])
            engine.write("db", [random_batch(rng, lo, hi, 50)])  # overwrites inside the buffer
            if k < 3:
                engine.flush("db", "m")
        checked = 0
        for _ in range(60):
            conditions = [(rng.choice("vw"), rng.choice(OPS), rng.choice([3, 7.5, 0, -2]))
                          for _ in range(rng.randint(1, 2))]
            columns = rng.choice([None, ["v"], ["host", "w"], ["w", "v", "dc"]])
            kw = {"start_ns": rng.choice([None, 100, 700]), "end_ns": rng.choice([None, 1200, 1900]),
                  "tag_filter": rng.choice([None, {"host": {"a", "c"}}])}
            got = engine.read("db", "m", columns=columns, field_filter=conditions, **kw)  # type: ignore[arg-type]
            got_rows = got.set_column(0, "time", got.column("time").cast(pa.int64())).to_pylist()
            want = brute(engine, columns, conditions, **kw)
            assert got_rows == want, (conditions, columns, kw)
            checked += len(want)
        assert checked > 1000
        with pytest.raises(ValueError, match="operator"):
            engine.read("db", "m", field_filter=[("v", "~", 1)])
    finally:
        engine.close()


def test_segment_field_filter_keeps_duplicate_rows(tmp_path: Path) -> None:
    """A segment holding two rows of one (series, time): both come back whatever their values, so
    the caller's merge (newest non-null wins) sees the row that decides."""
    times = pa.array([10, 10, 20, 30, 30], type=pa.timestamp("ns"))
    table = pa.table({"time": times, "host": ["a"] * 5, "v": pa.array([95.0, 5.0, 99.0, 1.0, 2.0])})
    path = tmp_path / "s.seg"
    write_segment(path, database="db", measurement="m", seq=1, table=table, tag_keys=["host"])
    rows = read_segment_rows(path, field_filter=[("v", ">", 50.0)])
    assert rows is not None
    assert rows.time.tolist() == [10, 10, 20, 30, 30]
    merged = merge_tables([read_segment(path)], "m", ["host"])
    final = merged.filter(pa.compute.greater(merged.column("v"), 50.0))
    assert final.column("v").to_pylist() == [v for v in merged.column("v").to_pylist() if v > 50]
    unique = pa.table({"time": pa.array([1, 2, 3, 4], type=pa.timestamp("ns")), "host": ["a", "a", "b", "b"],
                       "v": pa.array([60.0, None, 70.0, 10.0])})
    write_segment(path, database="db", measurement="m", seq=2, table=unique, tag_keys=["host"])
    rows = read_segment_rows(path, fields=["v"], field_filter=[("v", ">=", 60)])
    assert rows is not None and rows.time.tolist() == [1, 3]
    assert rows.fields["v"].to_pylist() == [60.0, 70.0]
    assert read_segment_rows(path, field_filter=[("missing", ">", 0)]) is None
