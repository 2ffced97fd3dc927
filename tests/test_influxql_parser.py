"""Parser tests: one table of statements -> AST, one of queries -> InfluxDB's exact error text."""

from __future__ import annotations

import pytest

from query import influxql_ast as ast
from query.influxql_lexer import parse_duration
from query.influxql_parser import InfluxQLParseError, parse_query

S = 1_000_000_000


def one(text: str, params: dict | None = None) -> ast.Statement:
    statements = parse_query(text, params)
    assert len(statements) == 1
    return statements[0]


def test_select_wildcard_and_fields() -> None:
    stmt = one("SELECT *, field1 FROM myseries")
    assert isinstance(stmt, ast.SelectStatement)
    assert stmt.fields == [ast.Field(ast.Wildcard()), ast.Field(ast.VarRef("field1"))]
    assert stmt.sources == [ast.Measurement(name="myseries")]
    assert stmt.is_raw


def test_select_full_clause_set() -> None:
    stmt = one(
        "SELECT mean(field1), sum(field2), count(field3) AS field_x FROM myseries "
        "WHERE host = 'hosta.influxdb.org' and time > '2018-01-01T00:00:00Z' "
        "GROUP BY time(10h, 1m), host fill(previous) ORDER BY time DESC "
        "LIMIT 20 OFFSET 10 SLIMIT 3 SOFFSET 1 tz('Europe/Paris')"
    )
    assert isinstance(stmt, ast.SelectStatement)
    assert [f.alias for f in stmt.fields] == ["", "", "field_x"]
    assert stmt.fields[0].expr == ast.Call("mean", [ast.VarRef("field1")])
    assert stmt.condition == ast.BinaryExpr(
        "AND",
        ast.BinaryExpr("=", ast.VarRef("host"), ast.StringLiteral("hosta.influxdb.org")),
        ast.BinaryExpr(">", ast.VarRef("time"), ast.StringLiteral("2018-01-01T00:00:00Z")),
    )
    assert stmt.dimensions == [
        ast.Dimension(ast.Call("time", [ast.DurationLiteral(36000 * S, "10h"),
                                        ast.DurationLiteral(60 * S, "1m")])),
        ast.Dimension(ast.VarRef("host")),
    ]
    assert (stmt.fill, stmt.limit, stmt.offset, stmt.slimit, stmt.soffset) == ("previous", 20, 10, 3, 1)
    assert stmt.sort_fields == [ast.SortField("time", ascending=False)]
    assert stmt.tz == "Europe/Paris"
    assert not stmt.is_raw


@pytest.mark.parametrize(
    ("text", "expr"),
    [
        ("1 + 2 * 3", ast.BinaryExpr("+", ast.IntegerLiteral(1),
                                     ast.BinaryExpr("*", ast.IntegerLiteral(2), ast.IntegerLiteral(3)))),
        ("1 * 2 + 3", ast.BinaryExpr("+", ast.BinaryExpr("*", ast.IntegerLiteral(1), ast.IntegerLiteral(2)),
                                     ast.IntegerLiteral(3))),
        ("1+2-3", ast.BinaryExpr("-", ast.BinaryExpr("+", ast.IntegerLiteral(1), ast.IntegerLiteral(2)),
                                 ast.IntegerLiteral(3))),
        ("(1 + 2) * 3", ast.BinaryExpr("*", ast.ParenExpr(ast.BinaryExpr("+", ast.IntegerLiteral(1),
                                                                           ast.IntegerLiteral(2))),
                                       ast.IntegerLiteral(3))),
        ("-value", ast.BinaryExpr("*", ast.IntegerLiteral(-1), ast.VarRef("value"))),
        ("-2 * 3", ast.BinaryExpr("*", ast.IntegerLiteral(-2), ast.IntegerLiteral(3))),
        ("100.0", ast.NumberLiteral(100.0)),
        (".23", ast.NumberLiteral(0.23)),
        ("9223372036854775808", ast.UnsignedLiteral(9223372036854775808)),
        ("-9223372036854775808", ast.IntegerLiteral(-9223372036854775808)),
        ("-1s", ast.DurationLiteral(-S, "-1s")),
        ("'foo bar'", ast.StringLiteral("foo bar")),
        ("true", ast.BooleanLiteral(True)),
        ('"foo.bar"::tag', ast.VarRef("foo.bar", "tag")),
        ("value::field", ast.VarRef("value", "field")),
        ("v::integer", ast.VarRef("v", "integer")),
        ("*::tag", ast.Wildcard("tag")),
        ("region =~ /us.*/", ast.BinaryExpr("=~", ast.VarRef("region"), ast.RegexLiteral("us.*"))),
        (r"url=~/http\:\/\/www\.example\.com/",
         ast.BinaryExpr("=~", ast.VarRef("url"), ast.RegexLiteral(r"http\://www\.example\.com"))),
        ("time>now()-5m", ast.BinaryExpr(">", ast.VarRef("time"), ast.BinaryExpr(
            "-", ast.Call("now", []), ast.DurationLiteral(300 * S, "5m")))),
        ("time >= 1514764800000ms", ast.BinaryExpr(">=", ast.VarRef("time"),
                                                    ast.DurationLiteral(1514764800000 * 1_000_000,
                                                                        "1514764800000ms"))),
        ("a <> 'x' OR b != 1 AND c !~ /y/", ast.BinaryExpr(
            "OR", ast.BinaryExpr("!=", ast.VarRef("a"), ast.StringLiteral("x")),
            ast.BinaryExpr("AND", ast.BinaryExpr("!=", ast.VarRef("b"), ast.IntegerLiteral(1)),
                           ast.BinaryExpr("!~", ast.VarRef("c"), ast.RegexLiteral("y"))))),
        ("percentile(v, 95.5)", ast.Call("percentile", [ast.VarRef("v"), ast.NumberLiteral(95.5)])),
        ("count(distinct(v))", ast.Call("count", [ast.Call("distinct", [ast.VarRef("v")])])),
        ("derivative(mean(v), 1s)", ast.Call("derivative", [ast.Call("mean", [ast.VarRef("v")]),
                                                             ast.DurationLiteral(S, "1s")])),
    ],
)
def test_expressions(text: str, expr: ast.Expr) -> None:
    stmt = one(f"SELECT x FROM m WHERE {text}")
    assert isinstance(stmt, ast.SelectStatement)
    assert stmt.condition == expr


@pytest.mark.parametrize(
    ("text", "unit_ns"),
    [("1ns", 1), ("1u", 1_000), ("1µ", 1_000), ("1ms", 1_000_000), ("1s", S), ("1m", 60 * S),
     ("1h", 3600 * S), ("1d", 86400 * S), ("1w", 604800 * S), ("1h30m", 5400 * S)],
)
def test_durations(text: str, unit_ns: int) -> None:
    assert parse_duration(text) == unit_ns


def test_sources() -> None:
    stmt = one('SELECT v FROM "db"."rp"."m m", rp2.cpu, /^c.*/, db..mem, (SELECT mean(v) FROM cpu)')
    assert isinstance(stmt, ast.SelectStatement)
    assert stmt.sources[:4] == [
        ast.Measurement(name="m m", database="db", retention_policy="rp"),
        ast.Measurement(name="cpu", retention_policy="rp2"),
        ast.Measurement(regex=ast.RegexLiteral("^c.*")),
        ast.Measurement(name="mem", database="db", retention_policy=""),
    ]
    sub = stmt.sources[4]
    assert isinstance(sub, ast.SubQuery)
    assert sub.statement.fields[0].expr == ast.Call("mean", [ast.VarRef("v")])


def test_fill_variants_and_group_by_star() -> None:
    for text, fill, value in [("null", "null", None), ("none", "none", None), ("linear", "linear", None),
                              ("-1.5", "number", -1.5), ("0", "number", 0)]:
        stmt = one(f"SELECT mean(v) FROM m GROUP BY time(1m), * fill({text})")
        assert isinstance(stmt, ast.SelectStatement)
        assert (stmt.fill, stmt.fill_value) == (fill, value)
        assert stmt.dimensions[1] == ast.Dimension(ast.Wildcard())


def test_bound_parameters() -> None:
    stmt = one("SELECT count($value) FROM $m WHERE host = $h LIMIT $limit",
               {"value": {"identifier": "my_value"}, "m": {"identifier": "cpu"}, "h": "a", "limit": 10})
    assert isinstance(stmt, ast.SelectStatement)
    assert stmt.fields[0].expr == ast.Call("count", [ast.VarRef("my_value")])
    assert stmt.sources == [ast.Measurement(name="cpu")]
    assert stmt.condition == ast.BinaryExpr("=", ast.VarRef("host"), ast.StringLiteral("a"))
    assert stmt.limit == 10


def test_multiple_statements_and_comments() -> None:
    statements = parse_query("SELECT a FROM b; -- comment\n/* block */ SHOW DATABASES;")
    assert [type(s) for s in statements] == [ast.SelectStatement, ast.ShowDatabasesStatement]
    assert parse_query("") == []


def test_show_statements() -> None:
    assert one("SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)cp/ WHERE host = 'a' LIMIT 100") == (
        ast.ShowMeasurementsStatement(
            source=ast.Measurement(regex=ast.RegexLiteral("(?i)cp")),
            condition=ast.BinaryExpr("=", ast.VarRef("host"), ast.StringLiteral("a")), limit=100))
    assert one('SHOW MEASUREMENTS WITH MEASUREMENT = "cpu"') == ast.ShowMeasurementsStatement(
        source=ast.Measurement(name="cpu"))
    assert one('SHOW TAG KEYS FROM "m"') == ast.ShowTagKeysStatement(sources=[ast.Measurement(name="m")])
    assert one('SHOW TAG VALUES FROM "m" WITH KEY = "k" WHERE a = \'b\'') == ast.ShowTagValuesStatement(
        sources=[ast.Measurement(name="m")], op="=", key_expr=ast.StringLiteral("k"),
        condition=ast.BinaryExpr("=", ast.VarRef("a"), ast.StringLiteral("b")))
    assert one("SHOW TAG VALUES WITH KEY IN (a, b)") == ast.ShowTagValuesStatement(
        op="IN", key_expr=ast.ListLiteral(["a", "b"]))
    assert one("SHOW TAG VALUES WITH KEY =~ /h.*/") == ast.ShowTagValuesStatement(
        op="=~", key_expr=ast.RegexLiteral("h.*"))
    assert one('SHOW FIELD KEYS FROM "rp"."m"') == ast.ShowFieldKeysStatement(
        sources=[ast.Measurement(name="m", retention_policy="rp")])
    assert one("SHOW SERIES FROM cpu WHERE host = 'a'") == ast.ShowSeriesStatement(
        sources=[ast.Measurement(name="cpu")],
        condition=ast.BinaryExpr("=", ast.VarRef("host"), ast.StringLiteral("a")))
    assert one('SHOW RETENTION POLICIES on "db"') == ast.ShowRetentionPoliciesStatement("db")
    assert one("SHOW DATABASES") == ast.ShowDatabasesStatement()


def test_ddl_statements() -> None:
    assert one('CREATE DATABASE "telegraf"') == ast.CreateDatabaseStatement("telegraf")
    assert one("CREATE DATABASE db WITH DURATION 1d REPLICATION 1 SHARD DURATION 1h NAME rp") == (
        ast.CreateDatabaseStatement("db", 86400 * S, 1, 3600 * S, "rp"))
    assert one("DROP DATABASE db") == ast.DropDatabaseStatement("db")
    assert one("CREATE RETENTION POLICY rp ON db DURATION 1h REPLICATION 2 SHARD DURATION 30m DEFAULT") == (
        ast.CreateRetentionPolicyStatement("rp", "db", 3600 * S, 2, 1800 * S, True))
    assert one("ALTER RETENTION POLICY rp ON db DURATION INF DEFAULT") == (
        ast.AlterRetentionPolicyStatement("rp", "db", duration_ns=0, default=True))
    assert one("DROP RETENTION POLICY rp ON db") == ast.DropRetentionPolicyStatement("rp", "db")
    assert one('DROP MEASUREMENT "cpu"') == ast.DropMeasurementStatement("cpu")
    assert one("DELETE FROM cpu WHERE time < 10s") == ast.DeleteStatement(
        [ast.Measurement(name="cpu")], ast.BinaryExpr("<", ast.VarRef("time"), ast.DurationLiteral(10 * S, "10s")))
    assert one("DELETE WHERE host = 'a'") == ast.DeleteStatement(
        [], ast.BinaryExpr("=", ast.VarRef("host"), ast.StringLiteral("a")))


# Expected texts are InfluxDB's (influxdata/influxql parser tests), prefixed as /query reports them.
@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("SELECT", "found EOF, expected identifier, string, number, bool at line 1, char 8"),
        ("SELECT a", "found EOF, expected FROM at line 1, char 10"),
        ("SELECT *", "found EOF, expected FROM at line 1, char 9"),
        ("blah blah", "found blah, expected SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, "
                      "REVOKE, ALTER, SET, KILL at line 1, char 1"),
        ("SELECT field1 X", "found X, expected FROM at line 1, char 15"),
        ('SELECT field1 FROM "series" WHERE X +;',
         "found ;, expected identifier, string, number, bool at line 1, char 38"),
        ("SELECT field1 FROM myseries GROUP", "found EOF, expected BY at line 1, char 35"),
        ("SELECT field1 FROM myseries LIMIT", "found EOF, expected integer at line 1, char 35"),
        ("SELECT field1 FROM myseries LIMIT 10.5", "found 10.5, expected integer at line 1, char 35"),
        ("SELECT field1 FROM myseries OFFSET", "found EOF, expected integer at line 1, char 36"),
        ("SELECT field1 FROM myseries ORDER", "found EOF, expected BY at line 1, char 35"),
        ("SELECT field1 FROM myseries ORDER BY", "found EOF, expected identifier, ASC, DESC at line 1, char 38"),
        ("SELECT field1 FROM myseries ORDER BY /", "found /, expected identifier, ASC, DESC at line 1, char 38"),
        ("SELECT field1 FROM myseries ORDER BY 1", "found 1, expected identifier, ASC, DESC at line 1, char 38"),
        ("SELECT field1 FROM myseries ORDER BY time, field1", "only ORDER BY time supported at this time"),
        ("SELECT field1 AS", "found EOF, expected identifier at line 1, char 18"),
        ("SELECT field1 FROM 12", "found 12, expected identifier at line 1, char 20"),
        ("SELECT 10.5h FROM myseries", "found h, expected FROM at line 1, char 12"),
        ("SELECT distinct FROM myseries", "found FROM, expected identifier at line 1, char 17"),
        ("SELECT count(distinct) FROM myseries", "found ), expected (, identifier at line 1, char 22"),
        ("SELECT field1 from myseries WHERE host =~ 'asd' LIMIT 1", "found asd, expected regex at line 1, char 42"),
        ("SELECT value > 2 FROM cpu", "invalid operator > in SELECT clause at line 1, char 8; "
                                      "operator is intended for WHERE clause"),
        ("SELECT s =~ /foo/ FROM cpu", "invalid operator =~ in SELECT clause at line 1, char 8; "
                                       "operator is intended for WHERE clause"),
        ("SELECT mean(value) FROM cpu FILL + value", "fill must be a function call"),
        ("DELETE", "found EOF, expected FROM, WHERE at line 1, char 8"),
        ("DELETE FROM", "found EOF, expected identifier at line 1, char 13"),
        ("DELETE FROM &foo.myseries", "found &, expected identifier at line 1, char 13"),
        ("DELETE FROM myseries WHERE", "found EOF, expected identifier, string, number, bool at line 1, char 28"),
        ("DROP MEASUREMENT", "found EOF, expected identifier at line 1, char 18"),
        ("SHOW RETENTION", "found EOF, expected POLICIES at line 1, char 16"),
        ("SHOW RETENTION ON", "found ON, expected POLICIES at line 1, char 16"),
        ("SHOW RETENTION POLICIES ON", "found EOF, expected identifier at line 1, char 28"),
        ("SHOW FOO", "found FOO, expected CONTINUOUS, DATABASES, DIAGNOSTICS, FIELD, GRANTS, MEASUREMENT, "
                     "MEASUREMENTS, QUERIES, RETENTION, SERIES, SHARD, SHARDS, STATS, SUBSCRIPTIONS, TAG, "
                     "USERS at line 1, char 6"),
        ("DROP FOO", "found FOO, expected CONTINUOUS, DATABASE, MEASUREMENT, RETENTION, SERIES, SHARD, "
                     "SUBSCRIPTION, USER at line 1, char 6"),
        ("CREATE FOO", "found FOO, expected CONTINUOUS, DATABASE, USER, RETENTION, SUBSCRIPTION at line 1, char 8"),
        ("CREATE DATABASE", "found EOF, expected identifier at line 1, char 17"),
        ('CREATE DATABASE "testdb" WITH', "found EOF, expected DURATION, NAME, REPLICATION, SHARD, FUTURE, "
                                          "PAST at line 1, char 31"),
        ('CREATE DATABASE "testdb" WITH DURATION', "found EOF, expected duration at line 1, char 40"),
        ('CREATE DATABASE "testdb" WITH REPLICATION', "found EOF, expected integer at line 1, char 43"),
        ("DROP DATABASE", "found EOF, expected identifier at line 1, char 15"),
        ("DROP RETENTION", "found EOF, expected POLICY at line 1, char 16"),
        ('DROP RETENTION POLICY "1h.cpu"', "found EOF, expected ON at line 1, char 31"),
        ('DROP RETENTION POLICY "1h.cpu" ON', "found EOF, expected identifier at line 1, char 35"),
        ("CREATE RETENTION POLICY policy1 ON testdb", "found EOF, expected DURATION at line 1, char 43"),
        ("CREATE RETENTION POLICY policy1 ON testdb DURATION bad", "found bad, expected duration at line 1, char 52"),
        ("CREATE RETENTION POLICY policy1 ON testdb DURATION 1h", "found EOF, expected REPLICATION at line 1, char 54"),
        ("CREATE RETENTION POLICY policy1 ON testdb DURATION 1h REPLICATION 0",
         "invalid value 0: must be 1 <= n <= 2147483647 at line 1, char 67"),
        ("CREATE RETENTION POLICY policy1 ON testdb DURATION 1h REPLICATION 2 SHARD DURATION INF",
         "invalid duration INF for shard duration at line 1, char 84"),
        ("ALTER", "found EOF, expected RETENTION at line 1, char 7"),
        ("ALTER RETENTION POLICY policy1 ON testdb",
         "found EOF, expected DURATION, REPLICATION, SHARD, DEFAULT, FUTURE, PAST at line 1, char 42"),
        ("ALTER RETENTION POLICY policy1 ON testdb REPLICATION 1 REPLICATION 2",
         "found duplicate REPLICATION option at line 1, char 56"),
        ("CREATE DATABASE foo CREATE DATABASE bar", "found CREATE, expected ; at line 1, char 21"),
        ('SELECT * FROM cpu WHERE "tagkey" = $$', "empty bound parameter"),
        ("SELECT * FROM cpu WHERE host = $h", "missing parameter: h"),
        ("$SHOW$DATABASES", "found $SHOW, expected SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, "
                            "REVOKE, ALTER, SET, KILL at line 1, char 1"),
        ("SELECT a FROM b\nWHERE", "found EOF, expected identifier, string, number, bool at line 2, char 7"),
    ],
)
def test_error_texts(text: str, error: str) -> None:
    with pytest.raises(InfluxQLParseError) as info:
        parse_query(text)
    assert str(info.value) == "error parsing query: " + error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT mean(temp) FROM weather GROUP BY time(",
         "found EOF, expected identifier, string, number, bool at line 1, char 47"),
        ("SELECT * FROM weather WHERE location =~ /(/", "error parsing regexp: missing closing ): `(` at line 1, char 40"),
        ("SELECT * FROM m WHERE a =~ /a)/", "error parsing regexp: unexpected ): `a)` at line 1, char 27"),
        ("SELECT * FROM m WHERE a =~ /[a/", "error parsing regexp: missing closing ]: `[a` at line 1, char 27"),
        ("SELECT * FROM m WHERE a =~ /*/",
         "error parsing regexp: missing argument to repetition operator: `*` at line 1, char 27"),
        ("DROP SERIES", "found EOF, expected FROM, WHERE at line 1, char 13"),
    ],
)
def test_influxdb_error_positions_and_go_regex_texts(text: str, message: str) -> None:
    with pytest.raises(InfluxQLParseError) as info:
        parse_query(text)
    assert str(info.value) == f"error parsing query: {message}"


def test_order_by_asc_and_drop_series_parse() -> None:
    (stmt,) = parse_query("SELECT v FROM m ORDER BY time ASC")
    assert isinstance(stmt, ast.SelectStatement) and stmt.sort_fields == [ast.SortField("time", True)]
    (drop,) = parse_query("DROP SERIES FROM m1 WHERE host = 'c'")
    assert isinstance(drop, ast.DropSeriesStatement) and drop.sources == [ast.Measurement(name="m1")]


@pytest.mark.parametrize(("text", "target"), [
    ("SELECT v INTO m FROM cpu", ast.Measurement(name="m")),
    ("SELECT v INTO rp.m FROM cpu", ast.Measurement(name="m", retention_policy="rp")),
    ("SELECT v INTO db.rp.m FROM cpu", ast.Measurement(name="m", database="db", retention_policy="rp")),
    ("SELECT v INTO db..m FROM cpu", ast.Measurement(name="m", database="db")),
    ("SELECT v INTO :MEASUREMENT FROM /c/", ast.Measurement(back_reference=True)),
    ("SELECT v INTO rp.:MEASUREMENT FROM /c/", ast.Measurement(retention_policy="rp", back_reference=True)),
    ('SELECT v INTO "db"."rp".:MEASUREMENT FROM /c/',
     ast.Measurement(database="db", retention_policy="rp", back_reference=True)),
    ("SELECT v INTO db..:MEASUREMENT FROM /c/", ast.Measurement(database="db", back_reference=True)),
])
def test_into_targets(text: str, target: ast.Measurement) -> None:
    stmt = parse_query(text)[0]
    assert isinstance(stmt, ast.SelectStatement) and stmt.into == target


def test_into_back_reference_needs_the_keyword() -> None:
    """InfluxDB 1.6.7's text for a suffix after the back-reference (checked by hand)."""
    with pytest.raises(InfluxQLParseError) as err:
        parse_query("SELECT v INTO db..:MEASUREMENT_max FROM cpu")
    assert str(err.value) == "error parsing query: found MEASUREMENT_max, expected MEASUREMENT at line 1, char 20"
