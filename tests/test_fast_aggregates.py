"""The fast aggregate path (dense bucket folds straight from storage columns) against the DuckDB
path: which statements it takes, identical answers over segments, buffer and overwrites."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.lineproto import parse_lines
from query.influxql_exec import QueryExecutor
from storage.engine import StorageConfig, StorageEngine
from tests.test_influxql_fastpaths import _same

S = 1_000_000_000
T0 = 1_600_000_200 * S  # on a 5-minute edge
DB = "agg"
NOW = T0 + 7200 * S


def _write(engine: StorageEngine, lines: list[str]) -> None:
    parsed = parse_lines("\n".join(lines).encode(), "ns")
    assert not parsed.errors, parsed.errors
    engine.write(DB, list(parsed.batches.values()))


def _points(start_s: int, stop_s: int, step_s: int, salt: int) -> list[str]:
    """Three series with float and integer fields, some points without one of them."""
    lines = []
    for t in range(start_s, stop_s, step_s):
        for k, host in enumerate(("a", "b", "c")):
            fields = []
            if (t + k) % 5:
                fields.append(f"temp={((t * 7 + k * 13 + salt) % 1000) / 10}")
            if (t + k) % 7:
                fields.append(f"load={(t * 3 + k + salt) % 97 - 40}i")
            if fields:
                lines.append(f"m,host={host},zone={'x' if k < 2 else 'y'} {','.join(fields)} {T0 + t * S}")
    return lines


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[StorageEngine]:
    eng = StorageEngine(StorageConfig(tmp_path, fsync="never", background=False))
    eng.open()
    eng.create_database(DB)
    try:
        yield eng
    finally:
        eng.close()


def _executors(engine: StorageEngine) -> tuple[QueryExecutor, QueryExecutor]:
    return (QueryExecutor(engine, now_ns=lambda: NOW),
            QueryExecutor(engine, now_ns=lambda: NOW, fast_paths=False))


def _t(seconds: int) -> int:
    return T0 + seconds * S


PLANNED = [
    f"SELECT max(temp) FROM m WHERE host = 'a' AND time >= {_t(0)} AND time < {_t(3600)} GROUP BY time(1m)",
    f"SELECT count(temp), sum(load), mean(load), min(temp), max(load) FROM m WHERE time >= {_t(0)} "
    f"AND time < {_t(3600)} GROUP BY time(5m)",
    f"SELECT mean(temp) FROM m WHERE (host = 'a' OR host = 'c') AND time >= {_t(17)} AND time <= {_t(2000)} "
    "GROUP BY time(7m, 2m) fill(none)",
    f"SELECT max(temp) AS hottest, max(temp), count(load) FROM m WHERE zone = 'x' AND host = 'b' "
    f"AND time >= {_t(-300)} AND time < {_t(4000)} GROUP BY time(10m) fill(-1)",
    f"SELECT sum(load) FROM m WHERE time >= {_t(0)} AND time < {_t(3600)} GROUP BY time(15m) ORDER BY time DESC",
    f"SELECT min(load), max(load) FROM m WHERE time < {_t(3600)} GROUP BY time(20m)",  # no lower bound
    "SELECT count(temp) FROM m WHERE time > now() - 3h GROUP BY time(30m) fill(0)",  # upper bound: now()
    f"SELECT mean(temp) FROM m WHERE host = 'nope' AND time >= {_t(0)} AND time < {_t(3600)} GROUP BY time(1m)",
    f"SELECT max(temp) FROM m WHERE time >= {_t(5000)} AND time < {_t(6000)} GROUP BY time(1m)",  # no rows
    f"SELECT mean(\"temp\") FROM \"agg\"..\"m\" WHERE time >= {_t(0)}ns AND time <= {_t(3599)}ns GROUP BY time(1m)",
    f"SELECT max(temp), mean(load) FROM m WHERE time >= {_t(0)} AND time < {_t(3600)} GROUP BY time(10m), host",
    f"SELECT count(load) FROM m WHERE time >= {_t(0)} AND time < {_t(3600)} GROUP BY zone, time(15m) fill(none)",
    f"SELECT sum(temp) FROM m WHERE (host = 'a' OR host = 'c') AND time >= {_t(0)} AND time < {_t(3600)} "
    "GROUP BY time(1h), *",
    f"SELECT min(temp) FROM m WHERE time >= {_t(0)} AND time < {_t(3600)} GROUP BY time(20m), /o/, nothere",
    f"SELECT max(load) FROM m WHERE host = 'b' AND time >= {_t(0)} AND time < {_t(3600)} "
    "GROUP BY time(30m), host ORDER BY time DESC",
    f"SELECT mean(temp) FROM m WHERE time >= {_t(0)} AND time < {_t(3600)} GROUP BY time(5m), zone, host fill(7)",
    f"SELECT count(temp), mean(load) FROM m WHERE time >= {_t(100)} AND time < {_t(3000)}",  # one bucket
    "SELECT sum(load), max(temp), min(temp) FROM m WHERE host = 'a' GROUP BY zone",  # no time bounds
    "SELECT count(load) FROM m WHERE time > now() - 1h GROUP BY *",
    # selectors: a lone one without GROUP BY time() answers with its point's time; the three hosts
    # share timestamps and values repeat, so InfluxDB's tie rules are exercised
    f"SELECT max(temp) FROM m WHERE time >= {_t(0)}",
    f"SELECT min(load) FROM m WHERE time >= {_t(0)} GROUP BY host",
    "SELECT last(temp) FROM m",
    f"SELECT first(load) FROM m WHERE host = 'b' AND time >= {_t(0)}",
    f"SELECT last(temp), first(temp), max(load) FROM m WHERE time >= {_t(0)} AND time < {_t(3600)} "
    "GROUP BY time(10m), host",
    f"SELECT last(load) FROM m WHERE time >= {_t(0)} AND time < {_t(3600)} GROUP BY time(15m) fill(none) "
    "ORDER BY time DESC",
    f"SELECT first(temp), count(temp) FROM m WHERE time >= {_t(100)} AND time < {_t(3000)}",
    f"SELECT first(temp) FROM m WHERE zone = 'y' AND time >= {_t(0)} GROUP BY time(20m) fill(0)",
    "SELECT last(temp) FROM m WHERE host = 'nope'",
]

NOT_PLANNED = [
    f"SELECT max(temp) FROM m WHERE time >= {_t(0)} GROUP BY time(1m), host SLIMIT 1",
    f"SELECT max(temp) FROM m WHERE time >= {_t(0)} GROUP BY time(1m), time(2m)",
    f"SELECT max(temp) FROM m WHERE time >= {_t(0)} GROUP BY time(1m) LIMIT 3",
    f"SELECT max(temp) FROM m WHERE time >= {_t(0)} GROUP BY time(1m) fill(previous)",
    f"SELECT max(temp) FROM m WHERE temp > 5 AND time >= {_t(0)} GROUP BY time(1m)",  # field condition
    f"SELECT max(temp) FROM m WHERE host =~ /a/ AND time >= {_t(0)} GROUP BY time(1m)",
    f"SELECT max(temp) FROM m WHERE time >= {_t(0)} GROUP BY time(1m) tz('Europe/Berlin')",
    f"SELECT median(temp) FROM m WHERE time >= {_t(0)} GROUP BY time(1m)",
    f"SELECT max(temp) * 2 FROM m WHERE time >= {_t(0)} GROUP BY time(1m)",
    f"SELECT max(temp), host FROM m WHERE time >= {_t(0)} GROUP BY time(1m)",
    f"SELECT count(distinct(load)) FROM m WHERE time >= {_t(0)} GROUP BY time(1m)",
    f"SELECT max(temp) FROM /m/ WHERE time >= {_t(0)} GROUP BY time(1m)",
    f"SELECT max(temp) FROM m, m WHERE time >= {_t(0)} GROUP BY time(1m)",
    f"SELECT max(max) FROM (SELECT max(temp) FROM m GROUP BY time(1m)) WHERE time >= {_t(0)} GROUP BY time(5m)",
    f"SELECT max(nothere) FROM m WHERE time >= {_t(0)} GROUP BY time(1m)",
    f"SELECT max(temp::integer) FROM m WHERE time >= {_t(0)} GROUP BY time(1m)",
    f"SELECT max(temp) FROM nothere WHERE time >= {_t(0)} GROUP BY time(1m)",
]


def _layouts(engine: StorageEngine, layout: str) -> None:
    """buffer: buffered only, each series in time order (the buffer's unsorted column view);
    buffer-repeat: buffered, then some of the same points again (the sorted, merged view);
    segments: flushed only; split: a segment plus newer buffered rows; overwrite: buffered rows
    rewriting flushed points (same series and times, other values)."""
    _write(engine, _points(0, 2400, 10, 0))
    if layout == "buffer-repeat":
        _write(engine, _points(1200, 3600, 20, 5))
    if layout in ("segments", "split", "overwrite"):
        engine.flush_all()
    if layout == "split":
        _write(engine, _points(2400, 3600, 10, 0))
    if layout == "overwrite":
        _write(engine, _points(1200, 3600, 20, 5))


@pytest.mark.parametrize("layout", ["buffer", "buffer-repeat", "segments", "split", "overwrite"])
def test_planned_statements_match_the_sql_path(engine: StorageEngine, layout: str) -> None:
    _layouts(engine, layout)
    ordered = engine._buffer.ordered_snapshot(DB, "m") is not None  # which buffer view read_columns takes
    assert ordered == (layout != "buffer-repeat"), layout
    fast, slow = _executors(engine)
    try:
        for query in PLANNED:
            prepared = fast.prepare(query, DB)
            assert prepared.plans[0] is not None, query
            for epoch in (None, "s"):
                ours = fast.execute_prepared(prepared, DB, epoch)
                reference = slow.execute(query, DB, None, epoch)
                assert _same(ours, reference), f"{layout}: {query}\nfast: {ours}\nsql:  {reference}"
        rows = fast.execute(PLANNED[1], DB, None, "s")[0]["series"][0]["values"]
        assert len(rows) == 12 and all(isinstance(r[1], int) for r in rows)  # count: int, also when 0
        assert all(isinstance(r[2], int) and isinstance(r[3], float) for r in rows if r[2] is not None)
    finally:
        fast.close()
        slow.close()


def test_other_shapes_take_the_generic_path(engine: StorageEngine) -> None:
    _layouts(engine, "split")
    fast, slow = _executors(engine)
    try:
        for query in NOT_PLANNED:
            prepared = fast.prepare(query, DB)
            assert prepared.plans == [None], query
            assert _same(fast.execute_prepared(prepared, DB), slow.execute(query, DB)), query
        assert slow.prepare(PLANNED[0], DB).plans == [None]  # fast_paths=False: never planned
    finally:
        fast.close()
        slow.close()


def test_overwritten_points_fall_back_to_the_merging_read(engine: StorageEngine) -> None:
    """A buffered point rewriting a flushed one: storage refuses unmerged columns, the answer
    is the newest value (as InfluxDB: last write wins)."""
    _write(engine, [f"m,host=a temp=1.5 {_t(60)}", f"m,host=a temp=2.5 {_t(70)}"])
    engine.flush_all()
    _write(engine, [f"m,host=a temp=99.5 {_t(60)}"])
    assert engine.read_columns(DB, "m", start_ns=_t(0), end_ns=_t(120), fields=["temp"],
                               tag_filter={"host": {"a"}}) is None
    fast, slow = _executors(engine)
    try:
        query = f"SELECT max(temp), count(temp) FROM m WHERE time >= {_t(0)} AND time < {_t(120)} GROUP BY time(1m)"
        result = fast.execute(query, DB, None, "s")
        assert result[0]["series"][0]["values"] == [[T0 // S, None, 0], [T0 // S + 60, 99.5, 2]]
        assert _same(result, slow.execute(query, DB, None, "s"))
    finally:
        fast.close()
        slow.close()


def test_read_columns_parts_cover_every_row(engine: StorageEngine) -> None:
    _layouts(engine, "split")
    parts = engine.read_columns(DB, "m", start_ns=_t(100), end_ns=_t(3000), fields=["temp", "load"],
                                tag_filter={"host": {"a", "b"}})
    assert parts is not None and len(parts) == 2  # one segment, the buffer
    table = engine.read(DB, "m", start_ns=_t(100), end_ns=_t(3000), columns=["temp", "load"],
                        tag_filter={"host": {"a", "b"}})
    assert sum(len(p.time) for p in parts) == table.num_rows
    for name in ("temp", "load"):
        values = sorted(float(v) for p in parts for v, ok in zip(
            p.fields[name][0].tolist(), (p.fields[name][1].tolist() or [True] * len(p.time)), strict=True) if ok)
        assert values == sorted(float(v) for v in table.column(name).drop_null().to_pylist())


def test_bucket_limit_and_wide_fill_none(engine: StorageEngine) -> None:
    _write(engine, [f"m,host=a temp=1.5 {_t(0)}", f"m,host=a temp=2.5 {_t(2_000_000)}"])
    fast, slow = _executors(engine)
    try:
        wide = f"SELECT max(temp) FROM m WHERE time >= {_t(0)} AND time <= {_t(2_000_000)} GROUP BY time(1s)"
        assert fast.execute(wide, DB)[0]["error"].startswith("max-select-buckets limit exceeded")
        assert fast.execute(wide, DB) == slow.execute(wide, DB)
        sparse = wide + " fill(none)"  # too wide for dense folds: the generic path answers
        assert fast.execute(sparse, DB, None, "s")[0]["series"][0]["values"] == [
            [T0 // S, 1.5], [T0 // S + 2_000_000, 2.5]]
    finally:
        fast.close()
        slow.close()
