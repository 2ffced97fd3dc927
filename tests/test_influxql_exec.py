"""Executor tests on a small in-memory TableSource; expectations computed in plain Python."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from query.influxql_exec import QueryError, QueryExecutor, parse_time_string
from query.results import chunk_result, format_times, go_float, results_to_csv, rfc3339nano
from storage.batch import Batch, FieldType, TagSet
from storage.engine import DatabaseNotFound, RetentionPolicyNotFound, StorageConfig, StorageEngine

S = 1_000_000_000
NOW = 1000 * S


@dataclass
class RetentionPolicy:
    name: str
    duration_ns: int
    shard_group_duration_ns: int
    replication: int
    default: bool


class MemorySource:
    """A real in-memory TableSource built from Batches; records read() calls for pushdown checks."""

    def __init__(self) -> None:
        self.dbs: dict[str, dict[str, list[Batch]]] = {}
        self.reads: list[dict[str, Any]] = []

    def write(self, db: str, batch: Batch) -> None:
        self.dbs.setdefault(db, {}).setdefault(batch.measurement, []).append(batch)

    def databases(self) -> list[str]:
        return list(self.dbs)

    def has_database(self, name: str) -> bool:
        return name in self.dbs

    def measurements(self, db: str) -> list[str]:
        return sorted(self.dbs.get(db, {}))

    def field_types(self, db: str, measurement: str) -> dict[str, FieldType]:
        out: dict[str, FieldType] = {}
        for b in self.dbs[db].get(measurement, []):
            out.update(b.field_types())
        return out

    def tag_keys(self, db: str, measurement: str) -> list[str]:
        return sorted({k for b in self.dbs[db].get(measurement, []) for k in b.tag_keys()})

    def series(self, db: str, measurement: str) -> list[TagSet]:
        return sorted({s for b in self.dbs[db].get(measurement, []) for s in b.series})

    def read(self, db: str, measurement: str, *, start_ns: int | None = None, end_ns: int | None = None,
             columns: list[str] | None = None, tag_filter: dict[str, set[str]] | None = None) -> pa.Table:
        self.reads.append({"measurement": measurement, "start_ns": start_ns, "end_ns": end_ns,
                           "columns": columns, "tag_filter": tag_filter})
        table = pa.concat_tables([b.to_arrow() for b in self.dbs[db][measurement]], promote_options="default")
        t = table.column("time").cast(pa.int64()).to_numpy()
        mask = np.ones(len(t), dtype=bool)
        if start_ns is not None:
            mask &= t >= start_ns
        if end_ns is not None:
            mask &= t < end_ns
        for key, values in (tag_filter or {}).items():
            if key not in table.column_names:
                mask &= False
                continue
            hit = pc.is_in(table.column(key), pa.array(sorted(values))).fill_null(False)
            mask &= hit.to_numpy(zero_copy_only=False)
        table = table.filter(pa.array(mask))
        keep = ["time"] + [c for c in table.column_names if c != "time" and (columns is None or c in columns)]
        return table.select(keep)

    def create_database(self, name: str) -> None:
        self.dbs.setdefault(name, {})

    def drop_database(self, name: str) -> None:
        self.dbs.pop(name, None)

    def drop_measurement(self, db: str, measurement: str) -> None:
        self.dbs[db].pop(measurement, None)

    def retention_policies(self, db: str) -> list[RetentionPolicy]:
        return [RetentionPolicy("autogen", 0, 168 * 3600 * S, 1, True)]

    def data_keys(self, db: str) -> list[str]:
        return [db]

    def data_key(self, db: str, rp: str | None = None) -> str:
        if db not in self.dbs:
            raise DatabaseNotFound(db)
        if rp not in (None, "autogen"):
            raise RetentionPolicyNotFound(rp)
        return db


HOSTS = [(("host", "a"), ("region", "eu")), (("host", "b"), ("region", "eu")), (("host", "c"), ("region", "us"))]


def make_points() -> list[tuple[int, int, float | None, int]]:
    """(series id, time ns, usage float or None, count int): 3 hosts, every 10 s for 300 s."""
    rng = np.random.default_rng(7)
    points = []
    for step in range(30):
        for sid in range(3):
            t = step * 10 * S + sid * S
            usage = None if (step * 3 + sid) % 11 == 5 else round(float(rng.uniform(0, 100)), 2)
            points.append((sid, t, usage, int(rng.integers(0, 50))))
    return points


POINTS = make_points()


@pytest.fixture
def executor() -> QueryExecutor:
    src = MemorySource()
    src.create_database("db")
    sid = np.array([p[0] for p in POINTS], dtype=np.int32)
    t = np.array([p[1] for p in POINTS], dtype=np.int64)
    src.write("db", Batch("cpu", HOSTS, sid, t, {
        "usage": pa.array([p[2] for p in POINTS], pa.float64()),
        "n": pa.array([p[3] for p in POINTS], pa.int64()),
    }))
    src.write("db", Batch("mem", [(("host", "a"),)], np.zeros(2, np.int32), np.array([5 * S, 15 * S]),
                          {"free": pa.array([10, 30], pa.int64())}))
    ex = QueryExecutor(src, now_ns=lambda: NOW)
    ex.source_for_tests = src  # type: ignore[attr-defined]
    return ex


def run(ex: QueryExecutor, q: str, epoch: str | None = "ns") -> dict[str, Any]:
    results = ex.execute(q, "db", epoch=epoch)
    assert len(results) == 1
    return results[0]


def rows_close(got: list[list[Any]], expected: list[list[Any]]) -> bool:
    """Nested row comparison: floats with relative tolerance 1e-9, everything else exactly."""
    if len(got) != len(expected):
        return False
    for g_row, e_row in zip(got, expected, strict=True):
        if len(g_row) != len(e_row):
            return False
        for g, e in zip(g_row, e_row, strict=True):
            if isinstance(e, float) and isinstance(g, int | float) and g is not None:
                if not math.isclose(g, e, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif g != e:
                return False
    return True


def host_points(host: str | None = None, lo: int = -(2**62), hi: int = 2**62) -> list[tuple]:
    ids = {h[0][1]: i for i, h in enumerate(HOSTS)}
    return [p for p in POINTS if (host is None or p[0] == ids[host]) and lo <= p[1] < hi]


# ---- raw ------------------------------------------------------------------------------------------
def test_select_star_columns_sorted_and_rows_in_time_order(executor: QueryExecutor) -> None:
    res = run(executor, "SELECT * FROM cpu")
    (series,) = res["series"]
    assert series["name"] == "cpu" and "tags" not in series
    assert series["columns"] == ["time", "host", "n", "region", "usage"]
    expected = [[t, HOSTS[sid][0][1], n, HOSTS[sid][1][1], u] for sid, t, u, n in sorted(POINTS, key=lambda p: p[1])]
    assert series["values"] == expected


def test_tag_equality_and_time_range_are_pushed_into_read(executor: QueryExecutor) -> None:
    src = executor.source_for_tests  # type: ignore[attr-defined]
    res = run(executor, "SELECT usage FROM cpu WHERE host = 'b' AND time >= 20s AND time <= 100s AND usage > 10")
    read = src.reads[-1]
    assert read["tag_filter"] == {"host": {"b"}}
    assert (read["start_ns"], read["end_ns"]) == (20 * S, 100 * S + 1)
    assert "usage" in read["columns"] and "n" not in read["columns"]  # projection pushed down
    expected = [[t, u] for _, t, u, _ in host_points("b", 20 * S, 100 * S + 1) if u is not None and u > 10]
    assert res["series"][0]["values"] == expected


def test_regex_or_and_not_equal_conditions(executor: QueryExecutor) -> None:
    res = run(executor, "SELECT n FROM cpu WHERE (host =~ /^[ab]$/ OR region = 'us') AND host != 'a' AND n >= 25")
    expected = [[t, n] for sid, t, _, n in sorted(POINTS, key=lambda p: p[1]) if sid in (1, 2) and n >= 25]
    assert res["series"][0]["values"] == expected


def test_raw_group_by_tag_order_desc_limit_offset_slimit(executor: QueryExecutor) -> None:
    res = run(executor, "SELECT usage FROM cpu GROUP BY host ORDER BY time DESC LIMIT 2 OFFSET 1 SLIMIT 2 SOFFSET 1")
    # SOFFSET/SLIMIT pick b, c in key order; ORDER BY time DESC then emits series in reverse (as 1.6.7)
    assert [s["tags"] for s in res["series"]] == [{"host": "c"}, {"host": "b"}]
    for s in res["series"]:
        pts = [[t, u] for _, t, u, _ in host_points(s["tags"]["host"]) if u is not None]
        assert s["values"] == pts[::-1][1:3]
        assert s["columns"] == ["time", "usage"]


def test_arithmetic_and_alias(executor: QueryExecutor) -> None:
    res = run(executor, "SELECT usage * 2 + n AS x, n FROM cpu WHERE host = 'a' LIMIT 3")
    assert res["series"][0]["columns"] == ["time", "x", "n"]
    expected = [[t, None if u is None else u * 2 + n, n] for _, t, u, n in host_points("a")[:3]]
    assert rows_close(res["series"][0]["values"], expected)


def test_lastpoint_shape(executor: QueryExecutor) -> None:
    res = run(executor, 'SELECT * FROM cpu GROUP BY "host" ORDER BY time DESC LIMIT 1')
    assert len(res["series"]) == 3
    for s in res["series"]:
        last = host_points(s["tags"]["host"])[-1]
        assert s["columns"] == ["time", "n", "region", "usage"]
        assert s["values"] == [[last[1], last[3], HOSTS[last[0]][1][1], last[2]]]


# ---- aggregates -----------------------------------------------------------------------------------
def test_aggregates_group_by_time_and_host(executor: QueryExecutor) -> None:
    q = ("SELECT count(usage), mean(usage), sum(n), min(usage), max(usage), first(n), last(n), spread(n) "
         "FROM cpu WHERE time >= 0s AND time < 120s GROUP BY time(1m), host")
    res = run(executor, q)
    assert [s["tags"] for s in res["series"]] == [{"host": "a"}, {"host": "b"}, {"host": "c"}]
    for s in res["series"]:
        assert s["columns"] == ["time", "count", "mean", "sum", "min", "max", "first", "last", "spread"]
        rows = []
        for bucket in (0, 60 * S):
            pts = host_points(s["tags"]["host"], bucket, bucket + 60 * S)
            us = [p[2] for p in pts if p[2] is not None]
            ns = [p[3] for p in pts]
            rows.append([bucket, len(us), sum(us) / len(us), sum(ns), min(us), max(us), ns[0], ns[-1],
                         max(ns) - min(ns)])
        assert rows_close(s["values"], rows)
        assert all(isinstance(r[1], int) and isinstance(r[3], int) for r in s["values"])


def test_aggregate_without_group_by_time_uses_start_time(executor: QueryExecutor) -> None:
    us = [p[2] for p in POINTS if p[2] is not None]
    res = run(executor, "SELECT mean(usage), count(n) FROM cpu")
    assert res["series"][0]["values"] == [[0, pytest.approx(sum(us) / len(us)), len(POINTS)]]
    res = run(executor, "SELECT count(n) FROM cpu WHERE time >= 100s")
    assert res["series"][0]["values"] == [[100 * S, len([p for p in POINTS if p[1] >= 100 * S])]]


def test_single_selector_keeps_point_time(executor: QueryExecutor) -> None:
    best = max((p for p in POINTS if p[2] is not None), key=lambda p: (p[2], -p[1]))
    assert run(executor, "SELECT max(usage) FROM cpu")["series"][0]["values"] == [[best[1], best[2]]]
    last = max(POINTS, key=lambda p: p[1])
    assert run(executor, "SELECT last(n) FROM cpu")["series"][0]["values"] == [[last[1], last[3]]]
    both = run(executor, "SELECT max(usage), min(usage) FROM cpu")["series"][0]["values"]
    assert both[0][0] == 0


def test_fill_options(executor: QueryExecutor) -> None:
    # mem has points at 5 s and 15 s; window 0..60 s in 10 s buckets
    base = "SELECT mean(free) FROM mem WHERE time >= 0s AND time < 60s GROUP BY time(10s)"
    buckets = [i * 10 * S for i in range(6)]
    assert run(executor, base)["series"][0]["values"] == [[b, v] for b, v in zip(
        buckets, [10.0, 30.0, None, None, None, None], strict=True)]
    assert run(executor, base + " fill(none)")["series"][0]["values"] == [[0, 10.0], [10 * S, 30.0]]
    assert [r[1] for r in run(executor, base + " fill(previous)")["series"][0]["values"]] == [10.0, 30.0, 30.0, 30.0, 30.0, 30.0]
    assert [r[1] for r in run(executor, base + " fill(-1)")["series"][0]["values"]] == [10.0, 30.0, -1, -1, -1, -1]
    count = run(executor, "SELECT count(free) FROM mem WHERE time >= 0s AND time < 40s GROUP BY time(10s)")
    assert [r[1] for r in count["series"][0]["values"]] == [1, 1, 0, 0]


def test_fill_linear(executor: QueryExecutor) -> None:
    res = run(executor, "SELECT max(free) FROM mem WHERE time >= 0s AND time < 30s GROUP BY time(5s) fill(linear)")
    values = [r[1] for r in res["series"][0]["values"]]
    assert values == [None, 10, 20, 30, None, None]


def test_group_by_time_offset_and_default_upper_bound_now(executor: QueryExecutor) -> None:
    res = run(executor, "SELECT count(free) FROM mem WHERE time >= 0s GROUP BY time(10s, 3s) fill(none)")
    # buckets are [-7,3), [3,13), [13,23): points 5 s and 15 s fall in the 3 s and 13 s buckets
    assert res["series"][0]["values"] == [[3 * S, 1], [13 * S, 1]]
    res = run(executor, "SELECT count(free) FROM mem WHERE time >= 900s GROUP BY time(50s)")
    assert res == {"statement_id": 0}
    res = run(executor, "SELECT count(free) FROM mem WHERE time >= 0s GROUP BY time(100s)")
    assert len(res["series"][0]["values"]) == NOW // (100 * S) + 1  # buckets run up to now()


def test_median_mode_stddev_percentile_distinct_integral(executor: QueryExecutor) -> None:
    us = [p[2] for p in host_points("a") if p[2] is not None]
    ns = [p[3] for p in host_points("a")]
    where = " FROM cpu WHERE host = 'a'"
    assert run(executor, "SELECT median(usage)" + where)["series"][0]["values"][0][1] == pytest.approx(statistics.median(us))
    counts = {v: ns.count(v) for v in ns}
    top = max(counts.values())
    assert run(executor, "SELECT mode(n)" + where)["series"][0]["values"][0][1] == min(v for v, c in counts.items() if c == top)
    assert run(executor, "SELECT stddev(usage)" + where)["series"][0]["values"][0][1] == pytest.approx(statistics.stdev(us))
    ordered = sorted(us)
    idx = int(math.floor(len(ordered) * 0.9 + 0.5)) - 1
    assert run(executor, "SELECT percentile(usage, 90)" + where)["series"][0]["values"][0][1] == ordered[idx]
    distinct = run(executor, "SELECT distinct(n)" + where)["series"][0]["values"]
    assert [r[1] for r in distinct] == list(dict.fromkeys(ns))  # first-appearance order (as 1.6.7)
    pts = [(p[1], p[3]) for p in host_points("a")]
    area = sum((v0 + v1) / 2 * (t1 - t0) / S for (t0, v0), (t1, v1) in zip(pts, pts[1:], strict=False))
    assert run(executor, "SELECT integral(n)" + where)["series"][0]["values"][0][1] == pytest.approx(area)


def test_top_bottom(executor: QueryExecutor) -> None:
    pts = [(p[1], p[3]) for p in host_points("c")]
    top = sorted(sorted(pts, key=lambda p: (-p[1], p[0]))[:3])
    bottom = sorted(sorted(pts, key=lambda p: (p[1], p[0]))[:2])
    assert run(executor, "SELECT top(n, 3) FROM cpu WHERE host = 'c'")["series"][0]["values"] == [list(p) for p in top]
    assert run(executor, "SELECT bottom(n, 2) FROM cpu WHERE host = 'c'")["series"][0]["values"] == [list(p) for p in bottom]


def test_transformations(executor: QueryExecutor) -> None:
    pts = [(p[1], p[3]) for p in host_points("b")]
    where = " FROM cpu WHERE host = 'b'"
    deriv = [[t1, (v1 - v0) / ((t1 - t0) / S)] for (t0, v0), (t1, v1) in zip(pts, pts[1:], strict=False)]
    assert rows_close(run(executor, "SELECT derivative(n)" + where)["series"][0]["values"], deriv)
    per_min = [[t, v * 60] for t, v in deriv if v >= 0]
    assert rows_close(run(executor, "SELECT non_negative_derivative(n, 1m)" + where)["series"][0]["values"], per_min)
    diff = [[t1, v1 - v0] for (t0, v0), (t1, v1) in zip(pts, pts[1:], strict=False)]
    assert run(executor, "SELECT difference(n)" + where)["series"][0]["values"] == diff
    cum = list(np.cumsum([v for _, v in pts]))
    assert run(executor, "SELECT cumulative_sum(n)" + where)["series"][0]["values"] == [[t, int(c)] for (t, _), c in zip(pts, cum, strict=True)]
    mov = [[pts[i][0], sum(v for _, v in pts[i - 2 : i + 1]) / 3] for i in range(2, len(pts))]
    assert rows_close(run(executor, "SELECT moving_average(n, 3)" + where)["series"][0]["values"], mov)
    assert run(executor, "SELECT elapsed(n, 1s)" + where)["series"][0]["values"][0] == [pts[1][0], 10]


def test_derivative_of_aggregate(executor: QueryExecutor) -> None:
    res = run(executor, "SELECT derivative(sum(n), 10s) FROM cpu WHERE time >= 0s AND time < 60s GROUP BY time(20s)")
    sums = [sum(p[3] for p in POINTS if b <= p[1] < b + 20 * S) for b in (0, 20 * S, 40 * S)]
    expected = [[20 * S, (sums[1] - sums[0]) / 2], [40 * S, (sums[2] - sums[1]) / 2]]
    assert rows_close(res["series"][0]["values"], expected)


def test_subquery_regex_and_multiple_measurements(executor: QueryExecutor) -> None:
    means = []
    for host in "abc":
        us = [p[2] for p in host_points(host) if p[2] is not None]
        means.append(sum(us) / len(us))
    res = run(executor, "SELECT max(mean) FROM (SELECT mean(usage) FROM cpu GROUP BY host)")
    assert res["series"][0]["values"][0][1] == pytest.approx(max(means))
    res = run(executor, "SELECT count(free) FROM /^me/")
    assert [s["name"] for s in res["series"]] == ["mem"]
    res = run(executor, "SELECT * FROM cpu, mem WHERE host = 'a' AND time < 10s")
    assert [s["name"] for s in res["series"]] == ["cpu", "mem"]
    # the wildcard expands over both measurements' columns (as 1.6.7)
    assert res["series"][1]["columns"] == ["time", "free", "host", "n", "region", "usage"]
    assert res["series"][1]["values"] == [[5 * S, 10, "a", None, None, None]]


def test_epoch_and_rfc3339_formatting(executor: QueryExecutor) -> None:
    res = run(executor, "SELECT free FROM mem", epoch="ms")
    assert res["series"][0]["values"] == [[5000, 10], [15000, 30]]
    res = run(executor, "SELECT free FROM mem", epoch=None)
    assert res["series"][0]["values"][0][0] == "1970-01-01T00:00:05Z"
    assert rfc3339nano(1514764800_123456700) == "2018-01-01T00:00:00.1234567Z"
    assert rfc3339nano(0, "Europe/Paris") == "1970-01-01T01:00:00+01:00"


def test_vectorised_rfc3339_equals_the_scalar_formatter() -> None:
    """format_times (numba civil-date kernel) against rfc3339nano (datetime) over InfluxDB's
    whole time range: leap years, negative times, whole seconds and nanosecond fractions."""
    rng = np.random.default_rng(11)
    ns = rng.integers(-9223372036854775806, 9223372036854775806, 20_000)
    ns[:2000] = ns[:2000] // 10**9 * 10**9
    edges = [0, -1, 1, 951_782_400 * 10**9, 4_107_542_400 * 10**9, -9223372036854775806, 9223372036854775806]
    ns = np.concatenate([ns, np.array(edges, dtype=np.int64)])
    assert format_times(ns, None) == [rfc3339nano(int(t)) for t in ns.tolist()]
    whole = ns[:2000]  # only whole seconds: the fixed-width branch
    assert format_times(whole, None) == [rfc3339nano(int(t)) for t in whole.tolist()]
    assert format_times(np.empty(0, dtype=np.int64), None) == []


# ---- statement errors, SHOW and DDL -----------------------------------------------------------------
def test_statement_errors_are_per_statement(executor: QueryExecutor) -> None:
    results = executor.execute("SELECT * FROM cpu LIMIT 1; SELECT mean(usage), n FROM cpu", "db")
    assert "series" in results[0]
    assert results[1] == {"statement_id": 1, "error": "mixing aggregate and non-aggregate queries is not supported"}
    assert executor.execute("SELECT * FROM cpu", "nope") == [{"statement_id": 0, "error": "database not found: nope"}]
    assert executor.execute("SELECT * FROM cpu", None) == [{"statement_id": 0, "error": "database name required"}]
    assert executor.execute("SELECT * FROM nothing", "db") == [{"statement_id": 0}]
    err = executor.execute("SELECT usage FROM cpu GROUP BY time(1m)", "db")[0]["error"]
    assert err == "GROUP BY requires at least one aggregate function"


def test_show_statements(executor: QueryExecutor) -> None:
    assert run(executor, "SHOW DATABASES")["series"] == [{"name": "databases", "columns": ["name"], "values": [["db"]]}]
    assert run(executor, "SHOW MEASUREMENTS")["series"][0]["values"] == [["cpu"], ["mem"]]
    assert run(executor, "SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)CP/ LIMIT 100")["series"][0]["values"] == [["cpu"]]
    assert run(executor, "SHOW MEASUREMENTS WHERE region = 'us'")["series"][0]["values"] == [["cpu"]]
    assert run(executor, 'SHOW TAG KEYS FROM "cpu"')["series"] == [
        {"name": "cpu", "columns": ["tagKey"], "values": [["host"], ["region"]]}]
    assert run(executor, "SHOW TAG VALUES FROM cpu WITH KEY = \"host\" WHERE region = 'eu'")["series"] == [
        {"name": "cpu", "columns": ["key", "value"], "values": [["host", "a"], ["host", "b"]]}]
    assert run(executor, "SHOW TAG VALUES WITH KEY IN (region)")["series"][0]["values"] == [["region", "eu"], ["region", "us"]]
    assert run(executor, "SHOW FIELD KEYS")["series"] == [
        {"name": "cpu", "columns": ["fieldKey", "fieldType"], "values": [["n", "integer"], ["usage", "float"]]},
        {"name": "mem", "columns": ["fieldKey", "fieldType"], "values": [["free", "integer"]]}]
    assert run(executor, "SHOW SERIES WHERE host = 'a'")["series"] == [
        {"columns": ["key"], "values": [["cpu,host=a,region=eu"], ["mem,host=a"]]}]
    assert run(executor, 'SHOW RETENTION POLICIES ON "db"')["series"] == [
        {"columns": ["name", "duration", "shardGroupDuration", "replicaN", "default"],
         "values": [["autogen", "0s", "168h0m0s", 1, True]]}]


def test_create_and_drop(executor: QueryExecutor) -> None:
    assert executor.execute('CREATE DATABASE "telegraf"', None) == [{"statement_id": 0}]
    assert "telegraf" in executor.source.databases()
    assert run(executor, "DROP MEASUREMENT mem") == {"statement_id": 0}
    assert run(executor, "SHOW MEASUREMENTS")["series"][0]["values"] == [["cpu"]]
    assert executor.execute("DROP DATABASE telegraf", None) == [{"statement_id": 0}]
    assert "telegraf" not in executor.source.databases()


# ---- result shapes ----------------------------------------------------------------------------------
def test_go_float_chunking_and_csv() -> None:
    assert [go_float(v) for v in (1.0, 0.1, 1e21, 1.5e-7, -2.5)] == ["1", "0.1", "1e+21", "1.5e-07", "-2.5"]
    result = {"statement_id": 0, "series": [{"name": "m", "columns": ["time", "v"],
                                             "values": [[1, 1.5], [2, 2.0], [3, None]]}]}
    chunks = chunk_result(result, 2)
    assert [len(c["series"][0]["values"]) for c in chunks] == [2, 1]
    assert chunks[0]["partial"] is True and "partial" not in chunks[-1]
    assert results_to_csv([result]) == "name,tags,time,v\nm,,1,1.5\nm,,2,2\nm,,3,\n"


def test_derivative_default_unit_is_group_by_interval(executor: QueryExecutor) -> None:
    res = run(executor, "SELECT derivative(sum(n)) FROM cpu WHERE time >= 0s AND time < 40s GROUP BY time(20s)")
    sums = [sum(p[3] for p in POINTS if b <= p[1] < b + 20 * S) for b in (0, 20 * S)]
    assert res["series"][0]["values"] == [[20 * S, float(sums[1] - sums[0])]]


def test_subquery_inherits_outer_interval_and_range(executor: QueryExecutor) -> None:
    q = "SELECT mean(m) FROM (SELECT max(usage) AS m FROM cpu GROUP BY host) WHERE time >= 0s AND time < 60s GROUP BY time(30s)"
    expected = []
    for bucket in (0, 30 * S):
        maxes = []
        for host in "abc":
            us = [p[2] for p in host_points(host, bucket, bucket + 30 * S) if p[2] is not None]
            if us:
                maxes.append(max(us))
        expected.append([bucket, sum(maxes) / len(maxes)])
    assert rows_close(run(executor, q)["series"][0]["values"], expected)


def test_tz_shifts_day_buckets_to_local_midnight(executor: QueryExecutor) -> None:
    res = run(executor, "SELECT count(free) FROM mem WHERE time >= 0s AND time < 1d GROUP BY time(1d) tz('Europe/Paris')",
              epoch=None)
    # Paris is UTC+1 in January 1970: local midnight buckets start at 23:00 UTC
    assert res["series"][0]["values"] == [["1970-01-01T00:00:00+01:00", 2], ["1970-01-02T00:00:00+01:00", 0]]


def test_type_mismatched_comparisons_match_nothing(executor: QueryExecutor) -> None:
    assert run(executor, "SELECT usage FROM cpu WHERE usage = 'x'") == {"statement_id": 0}
    res = run(executor, "SELECT n FROM cpu WHERE host = 1 OR n >= 49")
    assert res["series"][0]["values"] == [[t, n] for _, t, _, n in sorted(POINTS, key=lambda p: p[1]) if n >= 49]


def test_bound_parameters_and_multiple_statements(executor: QueryExecutor) -> None:
    results = executor.execute("SELECT free FROM mem WHERE free > $min; SHOW MEASUREMENTS", "db",
                               params={"min": 20}, epoch="s")
    assert results[0]["series"][0]["values"] == [[15, 30]]
    assert results[1]["statement_id"] == 1 and results[1]["series"][0]["name"] == "measurements"


def test_single_selector_with_extra_fields(executor: QueryExecutor) -> None:
    best = max((p for p in POINTS if p[2] is not None), key=lambda p: (p[2], -p[1]))
    res = run(executor, "SELECT max(usage), host, n FROM cpu")
    assert res["series"][0]["columns"] == ["time", "max", "host", "n"]
    assert res["series"][0]["values"] == [[best[1], best[2], HOSTS[best[0]][0][1], best[3]]]
    err = executor.execute("SELECT min(usage), max(usage), n FROM cpu", "db")[0]["error"]
    assert err == "mixing multiple selector functions with tags or fields is not supported"


def test_group_by_time_limit_without_upper_bound_does_not_materialise(executor: QueryExecutor) -> None:
    far = QueryExecutor(executor.source, now_ns=lambda: 10**18)  # ~31 years of 1 m buckets
    res = far.execute("SELECT last(free) FROM mem WHERE time >= 0s GROUP BY time(1m) LIMIT 2", "db", epoch="s")
    assert res[0]["series"][0]["values"] == [[0, 30], [60, None]]


def test_influxdb_167_quirks(executor: QueryExecutor) -> None:
    # each expectation below was observed on a real InfluxDB 1.6.7 with this data set
    assert run(executor, "SELECT n FROM cpu GROUP BY host SOFFSET 1") == {"statement_id": 0}
    res = run(executor, "SELECT count(n) FROM cpu GROUP BY host SLIMIT 1 SOFFSET 1")
    assert [s["tags"] for s in res["series"]] == [{"host": "b"}]
    res = run(executor, "SELECT mean(usage) AS m, max(usage) AS m, mean(n), mean(n) FROM cpu")
    assert res["series"][0]["columns"] == ["time", "m", "m", "mean", "mean_1"]
    res = run(executor, "SELECT sum(n) FROM cpu GROUP BY nonexistent")
    assert res["series"][0]["tags"] == {"nonexistent": ""}
    assert res["series"][0]["values"] == [[0, sum(p[3] for p in POINTS)]]
    res = run(executor, "SELECT stddev(n) FROM cpu WHERE host = 'a' AND time < 10s")
    assert res["series"][0]["values"] == [[0, None]]  # one point: a row with null, not no row
    assert run(executor, "SELECT host FROM cpu") == {"statement_id": 0}


# ---- InfluxDB 1.6.7 parity fixes (differential corpus) ----------------------------------------------
class DeletingSource(MemorySource):
    """MemorySource with the engine's delete(db, measurement, start_ns, end_ns, tag_filter)."""

    def __init__(self) -> None:
        super().__init__()
        self.deletes: list[tuple[str, str, int | None, int | None, dict[str, set[str]] | None]] = []

    def delete(self, db: str, measurement: str, start_ns: int | None = None, end_ns: int | None = None,
               tag_filter: dict[str, set[str]] | None = None) -> int:
        self.deletes.append((db, measurement, start_ns, end_ns, tag_filter))
        return 0


@pytest.fixture
def typed() -> QueryExecutor:
    """'dev': one series per site with a float, an integer, a string and a boolean field."""
    src = DeletingSource()
    src.create_database("db")
    sites = [(("site", "x"),), (("site", "y"),)]
    n = 12
    sid = np.array([i % 2 for i in range(n)], np.int32)
    t = np.array([i * 7 * S for i in range(n)], np.int64)
    src.write("db", Batch("dev", sites, sid, t, {
        "v": pa.array([float((i * 37) % 11) for i in range(n)], pa.float64()),
        "k": pa.array([(i * 5) % 7 for i in range(n)], pa.int64()),
        "s": pa.array([f"s{i % 3}" for i in range(n)], pa.string()),
        "b": pa.array([i % 3 == 0 for i in range(n)], pa.bool_()),
    }))
    ex = QueryExecutor(src, now_ns=lambda: NOW)
    ex.source_for_tests = src  # type: ignore[attr-defined]
    return ex


def dev_points() -> list[tuple[str, int, float, int]]:
    return [("xy"[i % 2], i * 7 * S, float((i * 37) % 11), (i * 5) % 7) for i in range(12)]


def test_order_by_time_asc_is_accepted(typed: QueryExecutor) -> None:
    asc = run(typed, "SELECT v FROM dev ORDER BY time ASC")["series"][0]["values"]
    assert asc == sorted(asc) and len(asc) == 12


def test_wildcard_aggregates_expand_to_influxdb_types(typed: QueryExecutor) -> None:
    assert run(typed, "SELECT max(*) FROM dev")["series"][0]["columns"] == ["time", "max_b", "max_k", "max_v"]
    assert run(typed, "SELECT mean(*) FROM dev")["series"][0]["columns"] == ["time", "mean_k", "mean_v"]
    assert run(typed, "SELECT count(*) FROM dev")["series"][0]["columns"] == [
        "time", "count_b", "count_k", "count_s", "count_v"]


def test_percentile_selecting_nothing_returns_no_series(typed: QueryExecutor) -> None:
    assert run(typed, "SELECT percentile(v, 0) FROM dev") == {"statement_id": 0}
    got = run(typed, "SELECT percentile(v, 100) FROM dev")["series"][0]["values"][0][1]
    assert got == max(p[2] for p in dev_points())


def test_top_bottom_with_tag_arguments(typed: QueryExecutor) -> None:
    best: dict[str, tuple[int, float]] = {}
    for site, t, v, _ in dev_points():  # max per site, earliest on ties
        if site not in best or (-v, t) < (-best[site][1], best[site][0]):
            best[site] = (t, v)
    expected = sorted([[t, v, site] for site, (t, v) in best.items()])
    res = run(typed, "SELECT top(v, site, 2) FROM dev")["series"][0]
    assert res["columns"] == ["time", "top", "site"]
    assert res["values"] == expected
    res = run(typed, "SELECT bottom(v, site, 1), k FROM dev")["series"][0]
    assert res["columns"] == ["time", "bottom", "site", "k"]
    low = min(dev_points(), key=lambda p: (p[2], p[1]))
    assert res["values"] == [[low[1], low[2], low[0], low[3]]]


def test_integral_group_by_time_interpolates_window_edges(typed: QueryExecutor) -> None:
    pts = [(t, v) for site, t, v, _ in dev_points() if site == "x"]
    width = 20 * S
    areas: dict[int, float] = {}
    for (t0, v0), (t1, v1) in zip(pts, pts[1:], strict=False):  # split each trapezoid at window edges
        cuts = [t0] + list(range((t0 // width + 1) * width, t1, width)) + [t1]
        for a, b in zip(cuts, cuts[1:], strict=False):
            va = v0 + (v1 - v0) * (a - t0) / (t1 - t0)
            vb = v0 + (v1 - v0) * (b - t0) / (t1 - t0)
            areas[a // width * width] = areas.get(a // width * width, 0.0) + (va + vb) / 2 * (b - a) / S
    res = run(typed, f"SELECT integral(v) FROM dev WHERE site = 'x' AND time >= 0s AND time < {pts[-1][0] + 1} "
                     "GROUP BY time(20s) fill(none)")
    assert rows_close(res["series"][0]["values"], [[b, a] for b, a in sorted(areas.items())])


def test_transformations_over_descending_series_and_mixed(typed: QueryExecutor) -> None:
    pts = [(t, v) for site, t, v, _ in dev_points() if site == "y"]
    desc = pts[::-1]
    expected = [[t1, (v1 - v0) / ((t0 - t1) / S)] for (t0, v0), (t1, v1) in zip(desc, desc[1:], strict=False)]
    res = run(typed, "SELECT derivative(v, 1s) FROM dev WHERE site = 'y' ORDER BY time DESC")
    assert rows_close(res["series"][0]["values"], expected)
    res = run(typed, "SELECT derivative(v, 1s), difference(v) FROM dev WHERE site = 'y'")["series"][0]
    assert res["columns"] == ["time", "derivative", "difference"]
    both = [[t1, (v1 - v0) / ((t1 - t0) / S), v1 - v0] for (t0, v0), (t1, v1) in zip(pts, pts[1:], strict=False)]
    assert rows_close(res["values"], both)


def test_statements_after_a_failure_are_not_executed(typed: QueryExecutor) -> None:
    results = typed.execute("SELECT count(v) FROM dev; SELECT v FROM nosuch.autogen.m; SELECT count(k) FROM dev", "db")
    assert results[0]["series"][0]["values"][0][1] == 12
    assert results[1] == {"statement_id": 1, "error": "database not found: nosuch"}
    assert results[2] == {"statement_id": 2, "error": "not executed"}


def test_influxdb_error_texts(typed: QueryExecutor) -> None:
    assert run(typed, "SELECT mean(s) FROM dev")["error"] == "unsupported mean iterator type: *query.stringInterruptIterator"
    assert run(typed, "SELECT sum(b) FROM dev")["error"] == "unsupported sum iterator type: *query.booleanInterruptIterator"
    assert run(typed, "SELECT top(v) FROM dev")["error"] == "invalid number of arguments for top, expected at least 2, got 1"


def test_drop_series_and_delete_map_to_source_delete(typed: QueryExecutor) -> None:
    src: DeletingSource = typed.source_for_tests  # type: ignore[attr-defined]
    assert typed.execute("DROP SERIES FROM dev WHERE site = 'x'", "db") == [{"statement_id": 0}]
    assert src.deletes == [("db", "dev", None, None, {"site": {"x"}})]
    assert typed.execute("DELETE FROM dev WHERE time < 10s", "db") == [{"statement_id": 0}]
    assert src.deletes[-1] == ("db", "dev", None, 10 * S, {})
    assert "error" in typed.execute("DELETE FROM dev WHERE site != 'x'", "db")[0]  # never deletes too much
    assert typed.execute("DELETE FROM dev WHERE nosuchtag = 'x'", "db") == [{"statement_id": 0}]
    assert len(src.deletes) == 2
    assert typed.execute("SHOW MEASUREMENTS", "gone") == [{"statement_id": 0}]


def test_rfc3339_literals_match_the_calendar() -> None:
    """The integer fast path of parse_time_string equals datetime arithmetic on every date shape
    (leap years, centuries, month ends, offsets, fractions) and still rejects impossible dates."""
    from datetime import UTC, datetime, timedelta

    rng = random.Random(11)
    for _ in range(20_000):
        year = rng.choice([1, 4, 100, 400, 1600, 1900, 1969, 1970, 2000, 2016, 2100, 2262, 9999, rng.randint(1, 9999)])
        month, day = rng.randint(1, 12), rng.randint(1, 31)
        hour, minute, sec = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
        zone = rng.choice(["Z", "+02:00", "-05:30"])
        frac = rng.choice(["", ".5", ".123456789"])
        text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{sec:02d}{frac}{zone}"
        try:
            moment = datetime(year, month, day, hour, minute, sec, tzinfo=UTC)
        except ValueError:
            with pytest.raises(QueryError, match="invalid timestamp string"):
                parse_time_string(text)
            continue
        if zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            moment -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        want = (delta.days * 86400 + delta.seconds) * 10**9 + int((frac[1:] or "0").ljust(9, "0"))
        if not -9223372036854775806 <= want <= 9223372036854775806:
            with pytest.raises(QueryError, match="flows time literal"):
                parse_time_string(text)
            continue
        assert parse_time_string(text) == want, text


def test_cardinality_group_by_time_is_refused_with_a_clear_error(executor: QueryExecutor) -> None:
    """InfluxDB 1.6.7 answers a count row per interval since the epoch; edgets refuses instead
    (every other cardinality form is compared with InfluxDB in the differential corpus)."""
    result = run(executor, "SHOW SERIES EXACT CARDINALITY GROUP BY time(1h)")
    assert result["error"] == "GROUP BY time() is not supported by edgets in SHOW SERIES CARDINALITY"
    counted = run(executor, "SHOW SERIES EXACT CARDINALITY")["series"]
    assert counted and all(s["columns"] == ["count"] and s["values"][0][0] > 0 for s in counted)


def test_select_into_on_a_read_only_store_is_a_clear_error(executor: QueryExecutor) -> None:
    """No writer (the cloud's view of synced data): SELECT INTO answers an error, writes nothing."""
    result = run(executor, "SELECT usage INTO copy FROM cpu")
    assert result["error"] == "SELECT INTO is not supported by this server: its store is read-only"
    assert "copy" not in executor.source.measurements("db")


def test_select_into_writes_points_through_the_writer() -> None:
    """Rows become points of the target: GROUP BY tags stay tags, nulls are skipped, a float
    aggregate with an integer fill stays a float field, :MEASUREMENT keeps each source's name."""
    src = MemorySource()
    src.create_database("db")
    src.write("db", Batch("cpu", HOSTS, np.array([p[0] for p in POINTS], dtype=np.int32),
                          np.array([p[1] for p in POINTS], dtype=np.int64),
                          {"usage": pa.array([p[2] for p in POINTS], pa.float64())}))
    written: list[tuple[str, list[Batch], str | None]] = []

    def writer(db: str, batches: list[Batch], rp: str | None) -> Any:
        written.append((db, batches, rp))
        return type("Outcome", (), {"points_written": sum(len(b) for b in batches), "dropped": 0, "errors": []})()

    ex = QueryExecutor(src, now_ns=lambda: NOW, writer=writer)
    result = run(ex, f"SELECT mean(usage) INTO db.autogen.agg FROM cpu WHERE time >= 0 AND time < {40 * S} "
                     "GROUP BY time(10s), host fill(0)")
    buckets_per_host = 4
    assert result["series"][0]["values"] == [[0, buckets_per_host * len(HOSTS)]]
    db, batches, rp = written[0]
    assert (db, rp) == ("db", "autogen")
    batch = batches[0]
    assert batch.measurement == "agg" and batch.fields["mean"].type == pa.float64()
    assert sorted(batch.series) == sorted((("host", dict(h)["host"]),) for h in HOSTS)  # GROUP BY host only
    run(ex, "SELECT max(usage) INTO :MEASUREMENT FROM /cpu/")
    assert written[-1][1][0].measurement == "cpu"


def test_select_into_another_retention_policy_keeps_its_points_apart(tmp_path: Path) -> None:
    """INTO db.forever.m writes into the forever policy's own namespace: readable as
    forever.m, absent from the default policy; an unknown target policy is a statement error."""
    engine = StorageEngine(StorageConfig(tmp_path, fsync="never", background=False))
    engine.open()
    try:
        ex = QueryExecutor(engine, writer=engine.write)
        run(ex, "CREATE DATABASE db")
        run(ex, "CREATE RETENTION POLICY forever ON db DURATION INF REPLICATION 1")
        engine.write("db", [Batch("cpu", HOSTS[:1], np.zeros(1, np.int32), np.array([NOW]),
                                  {"usage": pa.array([1.5])})])
        result = run(ex, "SELECT mean(usage) INTO db.forever.cpu_1h FROM cpu GROUP BY time(1h)")
        assert result["series"][0]["values"] == [[0, 1]]
        assert engine.measurements("db") == ["cpu"]
        assert engine.measurements(engine.data_key("db", "forever")) == ["cpu_1h"]
        moved = run(ex, "SELECT mean FROM forever.cpu_1h")
        assert moved["series"][0]["values"][0][1] == 1.5
        assert "series" not in run(ex, "SELECT mean FROM cpu_1h")
        nope = run(ex, "SELECT mean(usage) INTO db.nope.cpu_x FROM cpu")
        assert nope["error"] == "retention policy not found: nope"
    finally:
        engine.close()
