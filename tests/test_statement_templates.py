"""Statement templates give exactly parse_query's statements and errors: the differential corpus,
TSBS and Grafana texts, and every literal of them swapped for random values of its class."""

from __future__ import annotations

import random

import pytest

import tests.influxql_corpus as corpus
from bench.query import QUERY_TYPES, Workload
from query.influxql_parser import InfluxQLParseError, parse_query
from query.statement_templates import _SLOT, StatementTemplates, shape_of


def _outcome(parse: object, text: str) -> tuple[object, str | None]:
    try:
        return parse(text), None  # type: ignore[operator]
    except InfluxQLParseError as exc:
        return None, str(exc)


def _texts() -> list[str]:
    texts = [entry.query for entry in corpus.CORPUS]
    for name, make in QUERY_TYPES.items():
        rng = random.Random(name)
        texts += [make(rng, Workload(100, 24)) for _ in range(3)]
    texts += [  # Grafana's shapes: epoch-ms bounds, quoted identifiers, $__interval rendered
        'SELECT mean("value") FROM "cpu" WHERE ("host" = \'server01\') AND time >= 1514764800000ms and '
        'time <= 1514775599000ms GROUP BY time(20s) fill(null)',
        'SELECT max("usage_idle") FROM "autogen"."cpu" WHERE time >= now() - 6h GROUP BY time(1m), "host"',
        "SELECT count(x) FROM m WHERE a = '5' AND b = 5 AND c = 5.5 AND d = 5s AND time > 5 LIMIT 5",
        "SELECT x FROM m WHERE x = -5 OR y = +18446744073709551615 OR z = -1.5",
        "SELECT mean(x) FROM m GROUP BY time(1m) tz('Europe/Paris')",
        "SELECT x FROM \"m 1'\" WHERE \"t'2\" = '3' AND time > '2018-01-01T00:00:00Z'",
        "SELECT x FROM m WHERE y =~ /a'5'b/ AND z = 'q' -- 7 'comment'",
        "SELECT x FROM m WHERE y = 'a' /* 5 */ AND z = 6",
    ]
    return texts


def _swap_literals(text: str, rng: random.Random) -> str:
    """The text with each literal slot replaced by another value of its class (edge values
    included: beyond int64/uint64, invalid duration units, empty strings)."""
    out = []
    last = 0
    for m in _SLOT.finditer(text):
        kind = m.lastgroup
        if kind == "q":
            continue
        if kind == "s":
            new = "'" + rng.choice(["", "x", "host_7", "2018-01-01T00:00:00Z", "a b", "ü"]) + "'"
        elif kind == "i":
            new = str(rng.choice([0, 1, 7, 42, 9223372036854775807, 9223372036854775808,
                                  18446744073709551615, 18446744073709551616, rng.randint(0, 10**12)]))
        elif kind == "f":
            new = rng.choice(["0.5", "1.25", ".5", "100.0"])
        else:
            new = rng.choice(["1m", "5s", "1514764800000ms", "2h30m", "0s", "7x", "99999999999999999999w"])
        out.append(text[last:m.start()])
        out.append(new)
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def test_same_statements_and_errors_as_the_parser() -> None:
    templates = StatementTemplates()
    rng = random.Random(5)
    checked = 0
    for text in _texts():
        for variant in (text, text, _swap_literals(text, rng), _swap_literals(text, rng)):
            assert _outcome(templates.parse, variant) == _outcome(parse_query, variant), variant
            checked += 1
    assert templates.hits > 300, templates.hits  # the corpus repeats many shapes
    assert checked > 1400


def test_shapes_that_are_never_templated() -> None:
    """Literals that do not become literal nodes (LIMIT, tz(), fill values, signed numbers),
    non-SELECT statements and bound parameters always get a full parse."""
    templates = StatementTemplates()
    for text in ["SELECT x FROM m LIMIT 5", "SELECT mean(x) FROM m GROUP BY time(1m) tz('UTC')",
                 "SELECT mean(x) FROM m WHERE time > 5 GROUP BY time(1m) fill(3)", "SELECT x FROM m WHERE x = -5",
                 "SHOW TAG VALUES WITH KEY = \"host\" WHERE a = '1'", "DELETE FROM m WHERE time < 5"]:
        for _ in range(2):
            assert templates.parse(text) == parse_query(text)
        shape = shape_of(text)
        assert shape is not None and templates._entries[shape[0]] is None, text
    bound = "SELECT x FROM m WHERE host = $h AND y = 5"
    assert templates.parse(bound, {"h": "a"}) == parse_query(bound, {"h": "a"})
    assert shape_of("SELECT x FROM m") is None  # nothing to swap


def test_copies_share_nothing_that_holds_a_literal() -> None:
    templates = StatementTemplates()
    first = templates.parse("SELECT max(v) FROM m WHERE host = 'a' AND time > 10 GROUP BY time(1m)")
    second = templates.parse("SELECT max(v) FROM m WHERE host = 'b' AND time > 20 GROUP BY time(5m)")
    assert templates.hits == 1
    assert first == parse_query("SELECT max(v) FROM m WHERE host = 'a' AND time > 10 GROUP BY time(1m)")
    assert second == parse_query("SELECT max(v) FROM m WHERE host = 'b' AND time > 20 GROUP BY time(5m)")
    assert first[0].fields is second[0].fields  # literal-free parts are shared ...
    assert first[0].condition is not second[0].condition  # ... the paths to literals are not


@pytest.mark.parametrize("capacity", [0, 1])
def test_capacity_bounds_the_cache(capacity: int) -> None:
    templates = StatementTemplates(capacity)
    for i in range(5):
        text = f"SELECT max(v) FROM m{i} WHERE time > 10"
        assert templates.parse(text) == parse_query(text)
    assert len(templates._entries) == capacity
