"""Query scheduling: cost estimates from segment footers, and small /query answers on the event
loop give exactly what worker threads give (real servers, real storage)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from query.influxql_exec import QueryExecutor
from query.influxql_parser import InfluxQLParseError
from storage.engine import StorageConfig, StorageEngine
from tests.server_process import ServerProcess
from tests.test_http_write import http

HOSTS = [f"h{i}" for i in range(6)]
BASE_S = 1_700_000_000
POINTS = 6_000  # per host, 10 s apart: segments hold 2 hosts per 16,384-row group


def lines() -> bytes:
    rows = [f"cpu,host={h} v={i * 0.25 + k},n={i}i {(BASE_S + i * 10) * 10**9}"
            for k, h in enumerate(HOSTS) for i in range(POINTS)]
    return "\n".join(rows).encode()


@pytest.fixture
def engine(tmp_path: Path):
    eng = StorageEngine(StorageConfig(tmp_path / "data", fsync="never", background=False))
    eng.open()
    eng.create_database("db")
    from ingest.lineproto import parse_lines

    parsed = parse_lines(lines(), "ns")
    eng.write("db", list(parsed.batches.values()))
    eng.flush_all()
    yield eng
    eng.close()


def test_estimate_covers_every_row_read(engine: StorageEngine) -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        lo = BASE_S + int(rng.integers(-100, POINTS * 10))
        hi = lo + int(rng.integers(0, POINTS * 10))
        hosts = {str(h) for h in rng.choice(HOSTS, size=int(rng.integers(1, 4)), replace=False)}
        kw = dict(start_ns=lo * 10**9, end_ns=hi * 10**9, tag_filter={"host": hosts})
        rows = engine.read("db", "cpu", columns=["v"], **kw).num_rows
        estimate = engine.estimate_rows("db", "cpu", **kw)
        assert rows <= estimate <= len(HOSTS) * POINTS
    assert engine.estimate_rows("db", "cpu") == len(HOSTS) * POINTS
    assert engine.estimate_rows("db", "cpu", tag_filter={"host": {"nope"}}) == 0
    assert engine.estimate_rows("db", "cpu", start_ns=(BASE_S + POINTS * 10) * 10**9) == 0
    assert engine.estimate_rows("db", "nothing") == 0


def test_prepare_costs(engine: StorageEngine) -> None:
    executor = QueryExecutor(engine)
    try:
        one_host = executor.prepare("SELECT max(v) FROM cpu WHERE host = 'h1' GROUP BY time(1m)", "db")
        every_host = executor.prepare("SELECT max(v) FROM cpu GROUP BY time(1m)", "db")
        star = executor.prepare("SELECT * FROM cpu", "db")
        assert one_host.cost is not None and every_host.cost is not None and star.cost is not None
        # time + v per row; one host: its row groups only (they hold other hosts too)
        assert 2 * POINTS <= one_host.cost < every_host.cost == 2 * len(HOSTS) * POINTS
        assert star.cost == 3 * len(HOSTS) * POINTS  # time, v, n
        assert executor.prepare("SHOW DATABASES", "db").cost == 0
        for unknown in ("SELECT max(v) FROM (SELECT v FROM cpu)", "DROP MEASUREMENT cpu", "SHOW SERIES"):
            assert executor.prepare(unknown, "db").cost is None
        assert executor.prepare("SELECT v FROM cpu", "missing_db").cost is None  # execution reports it
        with pytest.raises(InfluxQLParseError):
            executor.prepare("SELECT FROM", "db")
        prepared = executor.prepare("SELECT count(v) FROM cpu WHERE host = 'h2'", "db")
        assert executor.execute_statements(prepared.statements, "db") == executor.execute(
            "SELECT count(v) FROM cpu WHERE host = 'h2'", "db")
    finally:
        executor.close()


QUERIES = [
    # an upper bound: without one the last bucket is now()'s, and the two servers answer a moment apart
    "SELECT max(v), min(n) FROM cpu WHERE host = 'h1' AND time >= '2023-11-14T22:14:00Z' "
    "AND time < '2023-11-15T15:00:00Z' GROUP BY time(5m)",
    "SELECT mean(v) FROM cpu WHERE host = 'h2' OR host = 'h4' GROUP BY time(10m), host fill(none)",
    "SELECT * FROM cpu WHERE host = 'h3' AND v > 103",
    "SELECT count(v) FROM cpu GROUP BY host",
    "SHOW DATABASES",
]


def health_counts(server: ServerProcess) -> dict[str, int]:
    status, _, body = http("GET", f"{server.url}/health", None)
    assert status == 200
    (check,) = [c for c in json.loads(body)["checks"] if c["name"] == "query"]
    return check["stats"]


def test_inline_answers_equal_threaded_answers(tmp_path: Path) -> None:
    # buffered rows count whatever the filter: each query below costs <= 36,000 rows x 3 values
    inline = ServerProcess(tmp_path / "inline", "--set", "query.inline_max_values=150000").start()
    threaded = ServerProcess(tmp_path / "threaded", "--set", "query.inline_max_values=0").start()
    try:
        for server in (inline, threaded):
            status, _, _ = http("POST", f"{server.url}/write?db=edge", lines())
            assert status == 204
        for q in QUERIES:
            url = "/query?" + urllib.parse.urlencode({"db": "edge", "q": q})
            answers = [http("GET", server.url + url, None) for server in (inline, threaded)]
            assert answers[0][0] == answers[1][0] == 200
            assert json.loads(answers[0][2]) == json.loads(answers[1][2]), q
            assert "series" in json.loads(answers[0][2])["results"][0], q
        assert health_counts(inline) == {"inline": len(QUERIES), "threaded": 0}
        assert health_counts(threaded) == {"inline": 0, "threaded": len(QUERIES)}
        # over the budget: a worker thread (72,000 rows x 3 values)
        for _ in range(2):
            assert http("POST", f"{inline.url}/write?db=edge", lines().replace(b"cpu,", b"cpu2,"))[0] == 204
        many = "/query?" + urllib.parse.urlencode({"db": "edge", "q": "SELECT * FROM cpu2"})
        assert http("GET", inline.url + many, None)[0] == 200
        assert health_counts(inline) == {"inline": len(QUERIES), "threaded": 1}
    finally:
        inline.stop()
        threaded.stop()


def test_unfiltered_estimate_equals_rows_read(engine: StorageEngine) -> None:
    table = engine.read("db", "cpu")
    assert isinstance(table, pa.Table) and table.num_rows == engine.estimate_rows("db", "cpu")
