"""Plan recipes give exactly the full path's fast aggregate plans: TSBS, Grafana and corpus texts
with their literals swapped for other values (valid and invalid), on a real storage engine."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.influxql_corpus as corpus
from bench.query import QUERY_TYPES, Workload
from ingest.lineproto import parse_lines
from query.influxql_exec import DeferredStatements, QueryExecutor
from query.influxql_parser import InfluxQLParseError, parse_query
from query.statement_templates import _SLOT
from storage.engine import StorageConfig, StorageEngine

NOW = 1_514_775_600_000_000_000  # 2018-01-01T03:00:00Z
STRINGS = ["2016-01-01T00:30:00Z", "2016-01-01T01:10:00Z", "2018-01-01T01:30:00Z", "2018-01-01T00:00:00Z",
           "2017-12-31T23:00:00Z", "host_0", "host_3", "host_9", "berlin", "a", "b c", "L1", "", "x"]
DURATIONS = ["1m", "5m", "10s", "1h", "1514764800000ms", "1514770000000ms", "0s", "7x", "30m"]


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueryExecutor]:
    engine = StorageEngine(StorageConfig(Path(tmp_path_factory.mktemp("recipes")), fsync="never", background=False))
    engine.open()
    engine.create_database(corpus.DB)
    engine.create_database(corpus.TSBS_DB)
    engine.write(corpus.DB, list(parse_lines(("\n".join(corpus.build_dataset().lines) + "\n").encode())
                                 .batches.values()))
    for body in corpus.tsbs_lines():
        engine.write(corpus.TSBS_DB, list(parse_lines(body).batches.values()))
    engine.flush_all()
    try:
        yield QueryExecutor(engine, now_ns=lambda: NOW)
    finally:
        engine.close()


def _texts() -> list[tuple[str, str]]:
    """(database, text): the corpus's aggregates and TSBS's shapes on the TSBS slice."""
    texts = [(e.db or corpus.DB, e.query) for e in corpus.CORPUS if e.db and "SELECT" in e.query.upper()]
    for name, make in QUERY_TYPES.items():
        rng = random.Random(name)
        texts += [(corpus.TSBS_DB, make(rng, Workload(100, corpus.TSBS_HOURS))) for _ in range(2)]
    texts += [
        (corpus.DB, 'SELECT mean("temp") FROM "weather" WHERE ("location" = \'berlin\') AND time >= 1514764800000ms '
                    "and time <= 1514775599000ms GROUP BY time(20s) fill(null)"),
        (corpus.DB, 'SELECT max("watts") FROM "autogen"."power" WHERE time >= now() - 6h GROUP BY time(1m), "site"'),
        (corpus.DB, "SELECT count(watts) FROM power WHERE (site = 'a' OR site = 'b c') AND phase = 'L1' "
                    "AND time > '2018-01-01T00:10:00Z' - 5m GROUP BY time(15m, 5m) fill(none)"),
        (corpus.DB, "SELECT sum(counter), min(watts) FROM power WHERE time >= '2018-01-01T01:00:00Z' "
                    "AND time < now() GROUP BY site ORDER BY time DESC"),
    ]
    return texts


def _swap(text: str, rng: random.Random) -> str:
    out, last = [], 0
    for m in _SLOT.finditer(text):
        kind = m.lastgroup
        if kind == "q":
            continue
        if kind == "s":
            new = "'" + rng.choice(STRINGS) + "'"
        elif kind == "d":
            new = rng.choice(DURATIONS)
        else:
            new = m.group()
        out += [text[last:m.start()], new]
        last = m.end()
    return "".join([*out, text[last:]])


def _full_plans(ex: QueryExecutor, text: str, db: str) -> object:
    try:
        return [ex._fast_aggregate_plan(s, db, None, NOW) if s.__class__.__name__ == "SelectStatement" else None
                for s in parse_query(text)]
    except InfluxQLParseError as exc:
        return str(exc)


def _prepared_plans(ex: QueryExecutor, text: str, db: str) -> tuple[object, bool]:
    try:
        prepared = ex.prepare(text, db)
    except InfluxQLParseError as exc:
        return str(exc), False
    return prepared.plans, isinstance(prepared.statements, DeferredStatements)


def test_recipe_plans_equal_full_path_plans(executor: QueryExecutor) -> None:
    rng = random.Random(11)
    from_recipe = checked = 0
    for db, text in _texts():
        for variant in (text, text, *(_swap(text, rng) for _ in range(6))):
            plans, used_recipe = _prepared_plans(executor, variant, db)
            assert plans == _full_plans(executor, variant, db), variant
            from_recipe += used_recipe
            checked += 1
    assert from_recipe > 80, from_recipe  # the recipe path really answered many of them
    assert checked > 2000


def test_recipe_is_dropped_when_the_schema_changes(executor: QueryExecutor) -> None:
    """A new tag key changes what GROUP BY * and tag equalities mean: the next text plans in full."""
    text = "SELECT mean(temp) FROM weather WHERE location = 'berlin' AND time >= 0 GROUP BY time(1h), *"
    for _ in range(2):  # the first text of a shape makes the template, the second the recipe
        assert not isinstance(executor.prepare(text, corpus.DB).statements, DeferredStatements)
    assert isinstance(executor.prepare(text, corpus.DB).statements, DeferredStatements)
    executor.source.write(corpus.DB, list(parse_lines(b"weather,location=berlin,floor=3 temp=1.5 1\n")
                                          .batches.values()))
    prepared = executor.prepare(text.replace("'berlin'", "'paris'"), corpus.DB)
    assert not isinstance(prepared.statements, DeferredStatements)
    assert prepared.plans[0] is not None and "floor" in prepared.plans[0].group_tags


def test_recipe_follows_a_new_default_policy_and_the_rp_parameter(tmp_path: Path) -> None:
    """A recipe remembers which policy namespace its source resolved to: after ALTER ... DEFAULT
    the same template reads the new default policy's rows, and rp= gets recipes of its own."""
    engine = StorageEngine(StorageConfig(tmp_path, fsync="never", background=False))
    engine.open()
    try:
        engine.create_database("db")
        engine.create_retention_policy("db", "other", duration_ns=0)
        engine.write("db", list(parse_lines(f"m v=1 {NOW - 60 * 10**9}\n".encode()).batches.values()))
        engine.write("db", list(parse_lines(f"m v=5 {NOW - 60 * 10**9}\n".encode()).batches.values()), rp="other")
        ex = QueryExecutor(engine, now_ns=lambda: NOW)

        recipes_used = []

        def total(lower: str, rp: str | None = None) -> float:
            text = f"SELECT sum(v) FROM m WHERE time >= '{lower}' GROUP BY time(1h)"
            prepared = ex.prepare(text, "db", rp=rp)
            recipes_used.append(isinstance(prepared.statements, DeferredStatements))
            values = ex.execute_prepared(prepared, "db", rp=rp)[0]["series"][0]["values"]
            return sum(v[1] or 0 for v in values)

        # a shape's first text is parsed, its second planned in full (and a recipe kept per
        # (shape, db, rp)), later ones come from the recipe
        assert [total(f"2018-01-01T0{h}:00:00Z") for h in (0, 1, 2)] == [1, 1, 1]
        assert [total(f"2018-01-01T0{h}:00:00Z", "other") for h in (0, 1)] == [5, 5]
        assert recipes_used == [False, False, True, False, True]
        engine.alter_retention_policy("db", "other", default=True)
        assert [total("2018-01-01T02:00:00Z"), total("2018-01-01T01:30:00Z")] == [5, 5]
        assert recipes_used[-2:] == [False, True]  # the stale recipe was dropped, a new one made
        assert total("2018-01-01T02:00:00Z", "autogen") == 1
    finally:
        engine.close()
