"""The SQL endpoint's sandbox: SELECTs over stored measurements work, every escape is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.lineproto import parse_lines
from query.sql_sandbox import SqlError, run_sql
from storage.engine import StorageConfig, StorageEngine


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    eng = StorageEngine(StorageConfig(data_dir=tmp_path_factory.mktemp("sql")))
    eng.open()
    eng.create_database("plant")
    body = "\n".join(f"cpu,host=h{i % 3} usage={i * 1.5},n={i}i {1_700_000_000_000_000_000 + i}" for i in range(30))
    eng.write("plant", list(parse_lines(body.encode()).batches.values()))
    yield eng
    eng.close()


def test_select_over_a_measurement(engine: StorageEngine) -> None:
    table = run_sql(engine, "plant", "SELECT host, count(*) AS n, sum(usage) AS s FROM cpu GROUP BY host ORDER BY host")
    assert table.column("host").to_pylist() == ["h0", "h1", "h2"]
    assert table.column("n").to_pylist() == [10, 10, 10]
    expected = [sum(i * 1.5 for i in range(30) if i % 3 == h) for h in range(3)]
    assert table.column("s").to_pylist() == pytest.approx(expected)


ESCAPES = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('/tmp/x.parquet')",
    "COPY (SELECT 1) TO '/tmp/edgets-escape.csv'",
    "ATTACH '/tmp/edgets-escape.db' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET memory_limit = '100GB'",
    "PRAGMA database_list",
    "CREATE TABLE evil AS SELECT 1",
    "INSERT INTO cpu VALUES (1)",
    "DROP TABLE cpu",
    "SELECT 1; COPY (SELECT 1) TO '/tmp/edgets-escape2.csv'",
    "EXPORT DATABASE '/tmp/edgets-export'",
    "CALL pragma_version()",
    "SELECT * FROM read_json_auto('https://example.invalid/x.json')",
]


@pytest.mark.parametrize("sql", ESCAPES)
def test_escape_attempts_are_refused(engine: StorageEngine, sql: str) -> None:
    with pytest.raises(SqlError) as info:
        run_sql(engine, "plant", sql)
    assert 400 <= info.value.status < 500
    assert not Path("/tmp/edgets-escape.csv").exists()
    assert not Path("/tmp/edgets-escape.db").exists()


def test_time_limit_cancels_a_runaway_query(engine: StorageEngine) -> None:
    with pytest.raises(SqlError) as info:
        run_sql(engine, "plant", "SELECT count(*) FROM range(1000000000000) a", timeout_s=0.5)
    assert info.value.status == 408 and "time limit" in str(info.value)


def test_unknown_database_and_table(engine: StorageEngine) -> None:
    with pytest.raises(SqlError) as info:
        run_sql(engine, "nope", "SELECT 1")
    assert info.value.status == 404
    with pytest.raises(SqlError) as info:
        run_sql(engine, "plant", "SELECT * FROM missing_measurement")
    assert info.value.status == 400 and "missing_measurement" in str(info.value)
