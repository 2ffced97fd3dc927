"""The executor's numpy/pyarrow paths give exactly the DuckDB path's answers (real storage engine)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from query.influxql_exec import QueryExecutor
from storage.batch import Batch
from storage.engine import StorageConfig, StorageEngine

S = 1_000_000_000
T0 = 1_500_000_000 * S
DB = "fast"
SERIES = [(("host", "a"), ("region", "eu")), (("host", "b"), ("region", "us")), (("host", "c"),),
          (("host", "d"), ("region", "eu"))]


def _batch(rng: np.random.Generator, start: int, rows_per_series: int) -> Batch:
    n = rows_per_series * len(SERIES)
    series_id = np.repeat(np.arange(len(SERIES), dtype=np.int32), rows_per_series)
    times = T0 + (start + np.tile(np.arange(rows_per_series), len(SERIES)) * 7) * S
    floats = rng.uniform(0, 100, n).round(3)
    float_mask = rng.random(n) < 0.15  # some points lack the field
    ints = rng.integers(-50, 50, n)
    int_mask = rng.random(n) < 0.1
    return Batch("cpu", [tuple(s) for s in SERIES], series_id, times.astype(np.int64), {
        "usage": pa.array(floats, mask=float_mask, type=pa.float64()),
        "load": pa.array(ints, mask=int_mask, type=pa.int64()),
    })


@pytest.fixture(scope="module")
def executors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[QueryExecutor, QueryExecutor]]:
    root: Path = tmp_path_factory.mktemp("fastpaths")
    engine = StorageEngine(StorageConfig(root, fsync="never", background=False))
    engine.open()
    engine.create_database(DB)
    rng = np.random.default_rng(7)
    engine.write(DB, [_batch(rng, 0, 300)])
    engine.flush_all()  # one segment ...
    engine.write(DB, [_batch(rng, 2100, 200)])  # ... plus buffered rows
    fast = QueryExecutor(engine, now_ns=lambda: T0 + 10_000 * S)
    slow = QueryExecutor(engine, now_ns=lambda: T0 + 10_000 * S, fast_paths=False)
    try:
        yield fast, slow
    finally:
        fast.close()
        slow.close()
        engine.close()


def _t(seconds: int) -> str:
    return f"{T0 + seconds * S}"


QUERIES = [
    f"SELECT max(usage) FROM cpu WHERE time >= {_t(100)} AND time < {_t(1900)} GROUP BY time(1m)",
    f"SELECT min(usage), max(load), count(usage) FROM cpu WHERE host = 'a' AND time >= {_t(0)} "
    f"AND time < {_t(3000)} GROUP BY time(5m)",
    f"SELECT mean(usage), sum(load), mean(load) FROM cpu WHERE time >= {_t(50)} AND time < {_t(3500)} "
    "GROUP BY time(10m, 3m), host",
    f"SELECT count(load), max(usage) FROM cpu WHERE (host = 'b' OR host = 'c') AND time >= {_t(0)} "
    f"AND time < {_t(3500)} GROUP BY time(7m), region fill(none)",
    f"SELECT mean(usage) FROM cpu WHERE time >= {_t(-600)} AND time < {_t(4000)} GROUP BY time(10m), * fill(-1)",
    f"SELECT count(usage), mean(usage) FROM cpu WHERE time >= {_t(0)} AND time < {_t(4000)} "
    "GROUP BY time(15m), nothere fill(previous)",
    f"SELECT max(usage) FROM cpu WHERE time < {_t(2000)} GROUP BY time(1m) LIMIT 5",
    f"SELECT min(load), max(load), min(usage) FROM cpu WHERE time >= {_t(0)} AND time < {_t(2100)} "
    "GROUP BY time(14s), host",
    f"SELECT max(usage) AS top, count(usage) FROM cpu WHERE time >= {_t(0)} AND time < {_t(3000)} "
    "GROUP BY time(1h) ORDER BY time DESC",
    f"SELECT * FROM cpu WHERE usage > 90.0 AND time >= {_t(0)} AND time < {_t(4000)}",
    f"SELECT * FROM cpu WHERE usage > 90.0 AND host = 'a' AND time >= {_t(0)} AND time < {_t(4000)}",
    f"SELECT usage, region, load FROM cpu WHERE 20 >= load AND usage < 30 AND time >= {_t(0)}",
    f"SELECT load FROM cpu WHERE load != 0 AND time >= {_t(0)} AND time < {_t(2500)}",
    f"SELECT usage * 2, load FROM cpu WHERE usage > 50 AND load < 0 AND time >= {_t(0)}",
    f"SELECT * FROM cpu WHERE usage > 50 AND usage <= 80.5 AND load >= -10 AND time >= {_t(1000)}",
    f"SELECT usage::field, host::tag FROM cpu WHERE time >= {_t(100)} AND time < {_t(300)}",
    # the lastpoint shape (tail read, ranked in pyarrow): ties at equal times across series,
    # a group whose tag is absent (host c has no region), OFFSET, a time bound, an absent tag
    'SELECT * FROM cpu GROUP BY "host" ORDER BY time DESC LIMIT 1',
    "SELECT * FROM cpu GROUP BY region ORDER BY time DESC LIMIT 3 OFFSET 1",
    "SELECT usage FROM cpu ORDER BY time DESC LIMIT 5",
    f"SELECT load, host FROM cpu WHERE time < {_t(2000)} GROUP BY region ORDER BY time DESC LIMIT 2",
    "SELECT usage FROM cpu GROUP BY host, nothere ORDER BY time DESC LIMIT 2 OFFSET 1",
    "SELECT usage, load FROM cpu GROUP BY * ORDER BY time DESC LIMIT 2 tz('Europe/Berlin')",
]


def _same(ours: Any, reference: Any) -> bool:
    """Equal, with the same types; floats may differ in the last digits (summation order of a
    mean/sum over several series differs between numpy and DuckDB, see docs/influxql.md)."""
    if isinstance(ours, float) and isinstance(reference, float):
        return math.isclose(ours, reference, rel_tol=1e-12, abs_tol=1e-9)
    if isinstance(ours, list) and isinstance(reference, list):
        return len(ours) == len(reference) and all(_same(a, b) for a, b in zip(ours, reference, strict=True))
    if isinstance(ours, dict) and isinstance(reference, dict):
        return ours.keys() == reference.keys() and all(_same(ours[k], reference[k]) for k in ours)
    return type(ours) is type(reference) and ours == reference


@pytest.mark.parametrize("query", QUERIES)
def test_fast_path_matches_sql_path(executors: tuple[QueryExecutor, QueryExecutor], query: str) -> None:
    fast, slow = executors
    for epoch in (None, "ns"):
        ours = fast.execute(query, DB, None, epoch)
        reference = slow.execute(query, DB, None, epoch)
        assert _same(ours, reference), f"{query}\nfast: {ours}\nsql:  {reference}"
        assert "error" not in ours[0] and ours[0].get("series"), ours


def test_fast_path_value_types(executors: tuple[QueryExecutor, QueryExecutor]) -> None:
    """Integer aggregates stay ints, means are floats, counts of empty buckets with fill(null) are 0."""
    fast, _ = executors
    result = fast.execute(f"SELECT count(load), max(load), mean(load) FROM cpu WHERE host = 'a' AND "
                          f"time >= {_t(-120)} AND time < {_t(60)} GROUP BY time(1m)", DB, None, "ns")
    rows = result[0]["series"][0]["values"]
    assert rows[0][1:] == [0, None, None] and rows[1][1:] == [0, None, None]
    assert all(isinstance(v, int) and not isinstance(v, bool) for v in (rows[2][1], rows[2][2]))
    assert isinstance(rows[2][3], float)
