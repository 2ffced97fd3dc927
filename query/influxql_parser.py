"""Recursive-descent InfluxQL parser producing influxql_ast statements.

Error texts and positions mirror influxdata/influxql ("found X, expected Y at line L, char C").
"""

from __future__ import annotations

import re
from typing import Any

from query import influxql_ast as ast
from query.influxql_lexer import (
    BADREGEX,
    BADSTRING,
    BOUNDPARAM,
    DURATIONVAL,
    EOF,
    IDENT,
    INTEGER,
    NUMBER,
    OPERATOR_PRECEDENCE,
    REGEX,
    STRING,
    WS,
    Lexer,
    Token,
    parse_duration,
)

MAX_INT32 = 2147483647
_REGEX_LEAD_WS = re.compile(r"[ \t\n]*")  # parseRegex skips these (not \r) before `/`


class InfluxQLParseError(Exception):
    """A query that does not parse; str() is InfluxDB's text: 'error parsing query: ...'."""

    def __init__(self, message: str, line: int | None = None, char: int | None = None) -> None:
        self.message = message
        self.line = line
        self.char = char
        detail = message if line is None else f"{message} at line {line}, char {char}"
        super().__init__(f"error parsing query: {detail}")


def parse_query(text: str, params: dict[str, Any] | None = None) -> list[ast.Statement]:
    """Parse `;`-separated InfluxQL statements."""
    return Parser(text, params).parse_query()


def _bind(value: Any) -> tuple[str, str]:
    """Bound parameter value -> (token kind, literal), as influxql's BindValue."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, inner),) = value.items()
        mapping = {
            "identifier": IDENT, "string": STRING, "integer": INTEGER, "number": NUMBER,
            "float": NUMBER, "duration": DURATIONVAL, "regex": REGEX,
        }
        if kind == "boolean":
            return ("TRUE" if inner in (True, "true") else "FALSE"), ""
        if kind in mapping:
            return mapping[kind], str(inner)
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE"), ""
    if isinstance(value, int):
        return INTEGER, str(value)
    if isinstance(value, float):
        return NUMBER, repr(value)
    return STRING, str(value)


class Parser:
    def __init__(self, text: str, params: dict[str, Any] | None = None) -> None:
        self.lex = Lexer(text)
        self.pos = 0
        self.params = params or {}
        self._significant = self.lex.significant_memo  # read directly on the hot path

    # ---- token plumbing ----------------------------------------------------------------
    def _bound(self, tok: Token) -> Token:
        """A BOUNDPARAM token replaced by its bound value's token, if the parameter is bound."""
        name = tok.lit[1:]
        if name and name in self.params:
            kind, lit = _bind(self.params[name])
            return Token(kind, lit, tok.start, tok.end)
        return tok

    def scan(self) -> Token:
        tok = self.lex.scan(self.pos)
        self.pos = tok.end
        if tok.kind == BOUNDPARAM:
            return self._bound(tok)
        return tok

    def scan_ws(self) -> Token:
        tok = self._significant.get(self.pos) or self.lex.scan_significant(self.pos)
        self.pos = tok.end
        if tok.kind == BOUNDPARAM:
            return self._bound(tok)
        return tok

    def peek_ws(self) -> Token:
        tok = self._significant.get(self.pos) or self.lex.scan_significant(self.pos)
        if tok.kind == BOUNDPARAM:
            return self._bound(tok)
        return tok

    def error(self, tok: Token, expected: list[str]) -> InfluxQLParseError:
        # influxql reports quoted strings one char before their opening quote
        offset = tok.start - 1 if tok.kind in (STRING, BADSTRING) and tok.start > 0 else tok.start
        line, char = self.lex.position(offset)
        return InfluxQLParseError(f"found {tok.found()}, expected {', '.join(expected)}", line, char)

    def error_at(self, message: str, offset: int) -> InfluxQLParseError:
        line, char = self.lex.position(offset)
        return InfluxQLParseError(message, line, char)

    def expect(self, *kinds: str) -> Token:
        tok = self.scan_ws()
        if tok.kind not in kinds:
            raise self.error(tok, list(kinds))
        return tok

    def accept(self, kind: str) -> bool:
        tok = self._significant.get(self.pos) or self.lex.scan_significant(self.pos)
        if tok.kind == BOUNDPARAM:
            tok = self._bound(tok)
        if tok.kind == kind:
            self.pos = tok.end
            return True
        return False

    def parse_ident(self) -> str:
        tok = self.scan_ws()
        if tok.kind != IDENT:
            raise self.error(tok, ["identifier"])
        return tok.lit

    def parse_int(self, lo: int, hi: int) -> int:
        tok = self.scan_ws()
        if tok.kind != INTEGER:
            raise self.error(tok, ["integer"])
        n = int(tok.lit)
        if n < lo or n > hi:
            raise self.error_at(f"invalid value {n}: must be {lo} <= n <= {hi}", tok.start)
        return n

    def parse_duration_value(self) -> int:
        tok = self.scan_ws()
        if tok.kind == "INF":
            return 0
        if tok.kind != DURATIONVAL:
            raise self.error(tok, ["duration"])
        try:
            return parse_duration(tok.lit)
        except OverflowError as exc:
            raise self.error_at(str(exc), tok.start) from None
        except ValueError:
            raise self.error_at("invalid duration", tok.start) from None

    def optional_int(self, keyword: str) -> int:
        if not self.accept(keyword):
            return 0
        tok = self.scan_ws()
        if tok.kind != INTEGER:
            raise self.error(tok, ["integer"])
        return int(tok.lit)

    # ---- query / statements ------------------------------------------------------------
    def parse_query(self) -> list[ast.Statement]:
        statements: list[ast.Statement] = []
        semi = True
        while True:
            mark = self.pos
            tok = self.scan_ws()
            if tok.kind == EOF:
                return statements
            if tok.kind == ";":
                semi = True
                continue
            if not semi:
                raise self.error(tok, [";"])
            self.pos = mark
            statements.append(self.parse_statement())
            semi = False

    def parse_statement(self) -> ast.Statement:
        tok = self.scan_ws()
        kind = tok.kind
        if kind == "SELECT":
            return self.parse_select()
        if kind == "DELETE":
            return self.parse_delete()
        if kind == "SHOW":
            return self.parse_show()
        if kind == "CREATE":
            return self.parse_create()
        if kind == "DROP":
            return self.parse_drop()
        if kind == "ALTER":
            self.expect("RETENTION")
            self.expect("POLICY")
            return self.parse_alter_rp()
        if kind in ("EXPLAIN", "GRANT", "REVOKE", "SET", "KILL"):
            raise InfluxQLParseError(f"{kind} statements are not supported by edgets")
        raise self.error(
            tok, ["SELECT", "DELETE", "SHOW", "CREATE", "DROP", "EXPLAIN", "GRANT", "REVOKE",
                  "ALTER", "SET", "KILL"]
        )

    def parse_select(self) -> ast.SelectStatement:
        fields = self.parse_fields()
        into = None
        if self.accept("INTO"):
            into = self.parse_into_target()
        tok = self.scan_ws()
        if tok.kind != "FROM":
            raise self.error(tok, ["FROM"])
        sources = self.parse_sources(subqueries=True)
        stmt = ast.SelectStatement(fields=fields, sources=sources, into=into)
        stmt.condition = self.parse_condition()
        stmt.dimensions = self.parse_dimensions()
        self.parse_fill(stmt)
        stmt.sort_fields = self.parse_order_by()
        stmt.limit = self.optional_int("LIMIT")
        stmt.offset = self.optional_int("OFFSET")
        stmt.slimit = self.optional_int("SLIMIT")
        stmt.soffset = self.optional_int("SOFFSET")
        stmt.tz = self.parse_tz()
        return stmt

    def parse_fields(self) -> list[ast.Field]:
        fields: list[ast.Field] = []
        while True:
            fields.append(self.parse_field())
            mark = self.pos
            if self.scan().kind != ",":
                self.pos = mark
                return fields

    def parse_field(self) -> ast.Field:
        regex = self.parse_regex()
        if regex is not None:
            expr: ast.Expr = regex
        else:
            start = self.peek_ws().start
            expr = self.parse_expr()
            bad = _find_comparison(expr)
            if bad is not None:
                line, char = self.lex.position(start)
                raise InfluxQLParseError(
                    f"invalid operator {bad} in SELECT clause at line {line}, char {char}; "
                    "operator is intended for WHERE clause"
                )
        alias = ""
        if self.accept("AS"):
            alias = self.parse_ident()
        return ast.Field(expr=expr, alias=alias)

    def parse_sources(self, *, subqueries: bool) -> list[ast.Source]:
        sources: list[ast.Source] = []
        while True:
            sources.append(self.parse_source(subqueries=subqueries))
            if not self.accept(","):
                return sources

    def parse_source(self, *, subqueries: bool) -> ast.Source:
        regex = self.parse_regex()
        if regex is not None:
            return ast.Measurement(regex=regex)
        if subqueries and self.accept("("):
            self.expect("SELECT")
            stmt = self.parse_select()
            self.expect(")")
            return ast.SubQuery(statement=stmt)
        idents = self.parse_segmented_idents()
        if len(idents) == 3:
            return ast.Measurement(database=idents[0], retention_policy=idents[1], name=idents[2])
        regex = self.parse_regex()
        if len(idents) == 1:
            if regex is not None:
                return ast.Measurement(retention_policy=idents[0], regex=regex)
            return ast.Measurement(name=idents[0])
        if regex is not None:
            return ast.Measurement(database=idents[0], retention_policy=idents[1], regex=regex)
        return ast.Measurement(retention_policy=idents[0], name=idents[1])

    def parse_into_target(self) -> ast.Measurement:
        """INTO measurement | rp.m | db.rp.m | db..m, or a :MEASUREMENT back-reference
        (`:MEASUREMENT`, `rp.:MEASUREMENT`, `db.rp.:MEASUREMENT`, `db..:MEASUREMENT`)."""
        idents: list[str] = []
        if not self.accept(":"):
            idents = self.parse_segmented_idents()
            if not self.accept(":"):
                return self._measurement_of(idents)
        self.expect("MEASUREMENT")
        if len(idents) > 2:
            raise InfluxQLParseError("too many segments in " + ".".join(f'"{i}"' for i in idents))
        if len(idents) == 2:
            return ast.Measurement(database=idents[0], retention_policy=idents[1], back_reference=True)
        return ast.Measurement(retention_policy=idents[0] if idents else "", back_reference=True)

    @staticmethod
    def _measurement_of(idents: list[str]) -> ast.Measurement:
        if len(idents) == 3:
            return ast.Measurement(database=idents[0], retention_policy=idents[1], name=idents[2])
        if len(idents) == 2:
            return ast.Measurement(retention_policy=idents[0], name=idents[1])
        return ast.Measurement(name=idents[0])

    def parse_segmented_idents(self) -> list[str]:
        idents = [self.parse_ident()]
        text = self.lex.text
        while True:
            mark = self.pos
            if self.scan().kind != ".":
                self.pos = mark
                break
            nxt = text[self.pos] if self.pos < len(text) else ""
            if nxt in ("/", ":"):
                break
            if nxt == ".":
                idents.append("")
                continue
            idents.append(self.parse_ident())
        if len(idents) > 3:
            raise InfluxQLParseError("too many segments in " + ".".join(f'"{i}"' for i in idents))
        return idents

    def parse_condition(self) -> ast.Expr | None:
        if not self.accept("WHERE"):
            return None
        return self.parse_expr()

    def parse_dimensions(self) -> list[ast.Dimension]:
        if not self.accept("GROUP"):
            return []
        tok = self.scan_ws()
        if tok.kind != "BY":
            raise self.error(tok, ["BY"])
        dims: list[ast.Dimension] = []
        while True:
            regex = self.parse_regex()
            dims.append(ast.Dimension(regex if regex is not None else self.parse_expr()))
            if not self.accept(","):
                return dims

    def parse_fill(self, stmt: ast.SelectStatement) -> None:
        tok = self.peek_ws()
        if tok.kind != IDENT or tok.lit.lower() != "fill":
            return
        expr = self.parse_expr()
        if not isinstance(expr, ast.Call):
            raise InfluxQLParseError("fill must be a function call")
        if len(expr.args) != 1:
            raise InfluxQLParseError("fill requires an argument, e.g.: 0, null, none, previous, linear")
        arg = expr.args[0]
        if isinstance(arg, ast.VarRef) and arg.type is None and arg.name in (
            "null", "none", "previous", "linear",
        ):
            stmt.fill = arg.name
        elif isinstance(arg, ast.IntegerLiteral | ast.NumberLiteral):
            stmt.fill, stmt.fill_value = "number", arg.value
        else:
            raise InfluxQLParseError("expected number argument in fill()")

    def parse_order_by(self) -> list[ast.SortField]:
        if not self.accept("ORDER"):
            return []
        tok = self.scan_ws()
        if tok.kind != "BY":
            raise self.error(tok, ["BY"])
        tok = self.scan_ws()
        fields: list[ast.SortField] = []
        if tok.kind in ("ASC", "DESC"):
            fields.append(ast.SortField(ascending=tok.kind == "ASC"))
        elif tok.kind == IDENT:
            fields.append(ast.SortField(name=tok.lit, ascending=self.parse_direction()))
            if tok.lit != "time":
                raise InfluxQLParseError("only ORDER BY time supported at this time")
        else:
            raise self.error(tok, ["identifier", "ASC", "DESC"])
        while self.accept(","):
            name = self.parse_ident()
            fields.append(ast.SortField(name=name, ascending=self.parse_direction()))
        if len(fields) > 1:
            raise InfluxQLParseError("only ORDER BY time supported at this time")
        return fields

    def parse_direction(self) -> bool:
        """Optional ASC | DESC after a sort field; True for ascending."""
        if self.accept("DESC"):
            return False
        self.accept("ASC")
        return True

    def parse_tz(self) -> str | None:
        tok = self.peek_ws()
        if tok.kind != IDENT or tok.lit.lower() != "tz":
            return None
        expr = self.parse_expr()
        if not isinstance(expr, ast.Call):
            raise InfluxQLParseError("tz must be a function call")
        if len(expr.args) != 1:
            raise InfluxQLParseError("tz requires exactly one argument")
        arg = expr.args[0]
        if not isinstance(arg, ast.StringLiteral):
            raise InfluxQLParseError("expected string argument in tz()")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(arg.value)
        except Exception:
            raise InfluxQLParseError(f"unable to find time zone {arg.value}") from None
        return arg.value

    # ---- SHOW ---------------------------------------------------------------------------
    def parse_show(self) -> ast.Statement:
        tok = self.scan_ws()
        kind = tok.kind
        if kind == "DATABASES":
            return ast.ShowDatabasesStatement()
        if kind == "MEASUREMENTS":
            return self.parse_show_measurements()
        if kind == "TAG":
            tok2 = self.scan_ws()
            if tok2.kind == "KEYS":
                return self.parse_show_tag_keys()
            if tok2.kind == "KEY":
                return self.parse_show_cardinality("TAG KEY")
            if tok2.kind == "VALUES":
                if self.peek_ws().kind in ("EXACT", "CARDINALITY"):
                    return self.parse_show_cardinality("TAG VALUES")
                return self.parse_show_tag_values()
            raise self.error(tok2, ["KEY", "KEYS", "VALUES"])
        if kind == "MEASUREMENT":
            return self.parse_show_cardinality("MEASUREMENT")
        if kind == "FIELD":
            tok2 = self.scan_ws()
            if tok2.kind == "KEY":
                return self.parse_show_cardinality("FIELD KEY")
            if tok2.kind != "KEYS":
                raise self.error(tok2, ["KEY", "KEYS"])
            stmt = ast.ShowFieldKeysStatement()
            if self.accept("ON"):
                stmt.database = self.parse_ident()
            if self.accept("FROM"):
                stmt.sources = self.parse_sources(subqueries=False)
            self.parse_order_by()
            stmt.limit = self.optional_int("LIMIT")
            stmt.offset = self.optional_int("OFFSET")
            return stmt
        if kind == "SERIES":
            if self.peek_ws().kind in ("EXACT", "CARDINALITY"):
                return self.parse_show_cardinality("SERIES")
            stmt_s = ast.ShowSeriesStatement()
            if self.accept("ON"):
                stmt_s.database = self.parse_ident()
            if self.accept("FROM"):
                stmt_s.sources = self.parse_sources(subqueries=False)
            stmt_s.condition = self.parse_condition()
            self.parse_order_by()
            stmt_s.limit = self.optional_int("LIMIT")
            stmt_s.offset = self.optional_int("OFFSET")
            return stmt_s
        if kind == "RETENTION":
            self.expect("POLICIES")
            stmt_r = ast.ShowRetentionPoliciesStatement()
            if self.accept("ON"):
                stmt_r.database = self.parse_ident()
            return stmt_r
        if kind == "CONTINUOUS":
            self.expect("QUERIES")
            return ast.ShowContinuousQueriesStatement()
        if kind in ("DIAGNOSTICS", "GRANTS", "QUERIES", "SHARD",
                    "SHARDS", "STATS", "SUBSCRIPTIONS", "USERS"):
            raise InfluxQLParseError(f"SHOW {kind} is not supported by edgets")
        raise self.error(
            tok, ["CONTINUOUS", "DATABASES", "DIAGNOSTICS", "FIELD", "GRANTS", "MEASUREMENT",
                  "MEASUREMENTS", "QUERIES", "RETENTION", "SERIES", "SHARD", "SHARDS", "STATS",
                  "SUBSCRIPTIONS", "TAG", "USERS"]
        )

    def parse_show_measurements(self) -> ast.ShowMeasurementsStatement:
        stmt = ast.ShowMeasurementsStatement()
        if self.accept("ON"):
            stmt.database = self.parse_ident()
        if self.accept("WITH"):
            self.expect("MEASUREMENT")
            tok = self.scan_ws()
            if tok.kind not in ("=", "=~"):
                raise self.error(tok, ["=", "=~"])
            source = self.parse_source(subqueries=False)
            assert isinstance(source, ast.Measurement)
            stmt.source = source
        stmt.condition = self.parse_condition()
        self.parse_order_by()
        stmt.limit = self.optional_int("LIMIT")
        stmt.offset = self.optional_int("OFFSET")
        return stmt

    def parse_show_tag_keys(self) -> ast.ShowTagKeysStatement:
        stmt = ast.ShowTagKeysStatement()
        if self.accept("ON"):
            stmt.database = self.parse_ident()
        if self.accept("FROM"):
            stmt.sources = self.parse_sources(subqueries=False)
        stmt.condition = self.parse_condition()
        self.parse_order_by()
        stmt.limit = self.optional_int("LIMIT")
        stmt.offset = self.optional_int("OFFSET")
        stmt.slimit = self.optional_int("SLIMIT")
        stmt.soffset = self.optional_int("SOFFSET")
        return stmt

    def parse_show_tag_values(self) -> ast.ShowTagValuesStatement:
        stmt = ast.ShowTagValuesStatement()
        if self.accept("ON"):
            stmt.database = self.parse_ident()
        if self.accept("FROM"):
            stmt.sources = self.parse_sources(subqueries=False)
        stmt.op, stmt.key_expr = self.parse_with_key()
        stmt.condition = self.parse_condition()
        self.parse_order_by()
        stmt.limit = self.optional_int("LIMIT")
        stmt.offset = self.optional_int("OFFSET")
        return stmt

    def parse_with_key(self) -> tuple[str, ast.Expr]:
        """WITH KEY = k | != k | =~ /re/ | !~ /re/ | IN (k, ...): (operator, key expression)."""
        self.expect("WITH")
        self.expect("KEY")
        tok = self.scan_ws()
        if tok.kind == "IN":
            self.expect("(")
            keys = [self.parse_ident()]
            while self.accept(","):
                keys.append(self.parse_ident())
            self.expect(")")
            return "IN", ast.ListLiteral(keys)
        if tok.kind in ("=", "!="):
            return tok.kind, ast.StringLiteral(self.parse_ident())
        if tok.kind in ("=~", "!~"):
            regex = self.parse_regex()
            if regex is None:
                raise self.error(self.scan_ws(), ["regex"])
            return tok.kind, regex
        raise self.error(tok, ["IN", "=", "=~"])

    def parse_show_cardinality(self, what: str) -> ast.ShowCardinalityStatement:
        """The rest of SHOW <what> [EXACT] CARDINALITY [ON db] [FROM ...] [WITH KEY ...]
        [WHERE ...] [GROUP BY ...] [LIMIT n] [OFFSET n]."""
        exact = self.accept("EXACT")
        if exact:
            self.expect("CARDINALITY")
        else:
            self.expect("EXACT", "CARDINALITY")
        stmt = ast.ShowCardinalityStatement(what, exact)
        if self.accept("ON"):
            stmt.database = self.parse_ident()
        if self.accept("FROM"):
            stmt.sources = self.parse_sources(subqueries=False)
        if what == "TAG VALUES":
            stmt.key_op, stmt.key_expr = self.parse_with_key()
        stmt.condition = self.parse_condition()
        stmt.dimensions = self.parse_dimensions()
        stmt.limit = self.optional_int("LIMIT")
        stmt.offset = self.optional_int("OFFSET")
        return stmt

    # ---- CREATE / DROP / ALTER / DELETE ---------------------------------------------------
    def parse_create(self) -> ast.Statement:
        tok = self.scan_ws()
        if tok.kind == "DATABASE":
            stmt = ast.CreateDatabaseStatement(name=self.parse_ident())
            if self.accept("WITH"):
                nxt = self.peek_ws()
                if nxt.kind not in ("DURATION", "NAME", "REPLICATION", "SHARD", "FUTURE", "PAST"):
                    raise self.error(self.scan_ws(), ["DURATION", "NAME", "REPLICATION", "SHARD",
                                                      "FUTURE", "PAST"])
                if self.accept("DURATION"):
                    stmt.rp_duration_ns = self.parse_duration_value()
                if self.accept("REPLICATION"):
                    stmt.rp_replication = self.parse_int(1, MAX_INT32)
                if self.accept("SHARD"):
                    self.expect("DURATION")
                    stmt.rp_shard_duration_ns = self.parse_duration_value()
                if self.accept("NAME"):
                    stmt.rp_name = self.parse_ident()
            return stmt
        if tok.kind == "RETENTION":
            self.expect("POLICY")
            name = self.parse_ident()
            self.expect("ON")
            database = self.parse_ident()
            self.expect("DURATION")
            duration = self.parse_duration_value()
            self.expect("REPLICATION")
            replication = self.parse_int(1, MAX_INT32)
            stmt_rp = ast.CreateRetentionPolicyStatement(name, database, duration, replication)
            if self.accept("SHARD"):
                self.expect("DURATION")
                inf = self.peek_ws()
                if inf.kind == "INF":
                    raise self.error_at("invalid duration INF for shard duration", inf.start)
                stmt_rp.shard_duration_ns = self.parse_duration_value()
            stmt_rp.default = self.accept("DEFAULT")
            return stmt_rp
        if tok.kind in ("CONTINUOUS", "USER", "SUBSCRIPTION"):
            raise InfluxQLParseError(f"CREATE {tok.kind} is not supported by edgets")
        raise self.error(tok, ["CONTINUOUS", "DATABASE", "USER", "RETENTION", "SUBSCRIPTION"])

    def parse_alter_rp(self) -> ast.AlterRetentionPolicyStatement:
        tok = self.scan_ws()
        if tok.kind == "DEFAULT":
            name = "default"
        elif tok.kind == IDENT:
            name = tok.lit
        else:
            raise self.error(tok, ["identifier"])
        self.expect("ON")
        stmt = ast.AlterRetentionPolicyStatement(name=name, database=self.parse_ident())
        found: set[str] = set()
        while True:
            mark = self.pos
            tok = self.scan_ws()
            if tok.kind in found:
                raise self.error_at(f"found duplicate {tok.kind} option", tok.start)
            if tok.kind == "DURATION":
                stmt.duration_ns = self.parse_duration_value()
            elif tok.kind == "REPLICATION":
                stmt.replication = self.parse_int(1, MAX_INT32)
            elif tok.kind == "SHARD":
                self.expect("DURATION")
                inf = self.peek_ws()
                if inf.kind == "INF":
                    raise self.error_at("invalid duration INF for shard duration", inf.start)
                stmt.shard_duration_ns = self.parse_duration_value()
            elif tok.kind == "DEFAULT":
                stmt.default = True
            else:
                if not found:
                    raise self.error(tok, ["DURATION", "REPLICATION", "SHARD", "DEFAULT", "FUTURE",
                                           "PAST"])
                self.pos = mark
                return stmt
            found.add(tok.kind)

    def parse_drop(self) -> ast.Statement:
        tok = self.scan_ws()
        if tok.kind == "DATABASE":
            return ast.DropDatabaseStatement(self.parse_ident())
        if tok.kind == "MEASUREMENT":
            return ast.DropMeasurementStatement(self.parse_ident())
        if tok.kind == "RETENTION":
            self.expect("POLICY")
            name = self.parse_ident()
            self.expect("ON")
            return ast.DropRetentionPolicyStatement(name, self.parse_ident())
        if tok.kind == "SERIES":
            return self.parse_drop_series()
        if tok.kind in ("CONTINUOUS", "SHARD", "SUBSCRIPTION", "USER"):
            raise InfluxQLParseError(f"DROP {tok.kind} is not supported by edgets")
        raise self.error(tok, ["CONTINUOUS", "DATABASE", "MEASUREMENT", "RETENTION", "SERIES",
                               "SHARD", "SUBSCRIPTION", "USER"])

    def parse_drop_series(self) -> ast.DropSeriesStatement:
        stmt = ast.DropSeriesStatement()
        mark = self.pos
        tok = self.scan_ws()
        if tok.kind == "FROM":
            stmt.sources = self.parse_sources(subqueries=False)
        else:
            self.pos = mark
        stmt.condition = self.parse_condition()
        if not stmt.sources and stmt.condition is None:
            raise self.error(tok, ["FROM", "WHERE"])
        return stmt

    def parse_delete(self) -> ast.DeleteStatement:
        mark = self.pos
        tok = self.scan_ws()
        stmt = ast.DeleteStatement()
        if tok.kind == "FROM":
            stmt.sources = self.parse_sources(subqueries=False)
            for src in stmt.sources:
                if isinstance(src, ast.Measurement) and src.database:
                    line, char = self.lex.position(0)
                    raise InfluxQLParseError("database not supported", line, char)
        else:
            self.pos = mark
        stmt.condition = self.parse_condition()
        if stmt.condition is None and not stmt.sources:
            raise self.error(tok, ["FROM", "WHERE"])
        return stmt

    # ---- expressions ---------------------------------------------------------------------
    def parse_expr(self) -> ast.Expr:
        root = self.parse_unary()
        while True:
            op = self.peek_ws()
            if op.kind not in OPERATOR_PRECEDENCE:
                return root
            self.pos = op.end
            if op.kind in ("=~", "!~"):
                rhs: ast.Expr | None = self.parse_regex()
                if rhs is None:
                    raise self.error(self.scan_ws(), ["regex"])
            else:
                rhs = self.parse_unary()
            root = _insert_binary(root, op.kind, rhs)

    def parse_unary(self) -> ast.Expr:
        tok = self.scan_ws()
        kind = tok.kind
        if kind == "(":
            expr = self.parse_expr()
            tok = self.scan_ws()
            if tok.kind != ")":
                raise self.error(tok, [")"])
            return ast.ParenExpr(expr)
        if kind == IDENT:
            nxt = self.scan().kind
            if nxt == "(":
                return self.parse_call(tok.lit)
            if nxt != "." and nxt != "::":  # a plain one-segment, untyped reference
                self.pos = tok.end
                return ast.VarRef(tok.lit)
            self.pos = tok.start
            return self.parse_varref()
        if kind == "DISTINCT":
            nxt = self.scan()
            if nxt.kind == "(":
                return self.parse_call("distinct")
            if nxt.kind == WS:
                ident = self.scan_ws()
                if ident.kind != IDENT:
                    raise self.error(ident, ["identifier"])
                return ast.Distinct(ident.lit)
            raise self.error(nxt, ["(", "identifier"])
        if kind == STRING:
            return ast.StringLiteral(tok.lit, tok.start)
        if kind == NUMBER:
            return ast.NumberLiteral(float(tok.lit), tok.start)
        if kind == INTEGER:
            value = int(tok.lit)
            if value <= 9223372036854775807:
                return ast.IntegerLiteral(value, tok.start)
            if value <= 18446744073709551615:
                return ast.UnsignedLiteral(value, tok.start)
            raise self.error_at("unable to parse integer", tok.start)
        if kind in ("TRUE", "FALSE"):
            return ast.BooleanLiteral(kind == "TRUE")
        if kind == DURATIONVAL:
            try:
                return ast.DurationLiteral(parse_duration(tok.lit), tok.lit, tok.start)
            except (ValueError, OverflowError) as exc:
                raise InfluxQLParseError(str(exc)) from None
        if kind == "*":
            mark2 = self.pos
            if self.scan().kind == "::":
                typ = self.scan()
                if typ.kind not in ("FIELD", "TAG"):
                    raise self.error(typ, ["field", "tag"])
                return ast.Wildcard(typ.kind.lower())
            self.pos = mark2
            return ast.Wildcard()
        if kind == REGEX:
            return self._compile_regex(tok)
        if kind == BOUNDPARAM:
            name = tok.lit[1:]
            if not name:
                raise InfluxQLParseError("empty bound parameter")
            raise InfluxQLParseError(f"missing parameter: {name}")
        if kind in ("+", "-"):
            sign = -1 if kind == "-" else 1
            nxt = self.peek_ws()
            if nxt.kind not in (NUMBER, INTEGER, DURATIONVAL, "(", IDENT):
                raise self.error(nxt, ["identifier", "number", "duration", "("])
            inner = self.parse_unary()
            if isinstance(inner, ast.NumberLiteral):
                return ast.NumberLiteral(inner.value * sign)
            if isinstance(inner, ast.IntegerLiteral):
                return ast.IntegerLiteral(inner.value * sign)
            if isinstance(inner, ast.UnsignedLiteral):
                if sign == -1:
                    if inner.value == 9223372036854775808:
                        return ast.IntegerLiteral(-inner.value)
                    raise InfluxQLParseError(f"constant -{inner.value} underflows int64")
                return inner
            if isinstance(inner, ast.DurationLiteral):
                return ast.DurationLiteral(inner.ns * sign, ("-" if sign < 0 else "") + inner.text)
            return ast.BinaryExpr("*", ast.IntegerLiteral(sign), inner)
        raise self.error(tok, ["identifier", "string", "number", "bool"])

    def parse_varref(self) -> ast.VarRef:
        segments = self.parse_segmented_idents()
        mark = self.pos
        vtype = None
        if self.scan().kind == "::":
            typ = self.scan()
            if typ.kind == IDENT and typ.lit.lower() in ("float", "integer", "unsigned", "string",
                                                          "boolean"):
                vtype = typ.lit.lower()
            elif typ.kind in ("FIELD", "TAG"):
                vtype = typ.kind.lower()
            elif typ.kind == IDENT:
                raise self.error(typ, ["float", "integer", "unsigned", "string", "boolean", "field",
                                       "tag"])
            else:
                raise self.error(typ, ["float", "integer", "string", "boolean", "field", "tag"])
        else:
            self.pos = mark
        return ast.VarRef(".".join(segments), vtype)

    def parse_call(self, name: str) -> ast.Call:
        name = name.lower()
        args: list[ast.Expr] = []
        regex = self.parse_regex()
        if regex is not None:
            args.append(regex)
        else:
            mark = self.pos
            if self.scan().kind == ")":
                return ast.Call(name, [])
            self.pos = mark
            args.append(self.parse_expr())
        while self.accept(","):
            regex = self.parse_regex()
            args.append(regex if regex is not None else self.parse_expr())
        tok = self.scan()
        if tok.kind != ")":
            raise self.error(tok, [")"])
        return ast.Call(name, args)

    def parse_regex(self) -> ast.RegexLiteral | None:
        text = self.lex.text
        pos = _REGEX_LEAD_WS.match(text, self.pos).end()
        if pos < len(text) and text[pos] == "$":
            mark = self.pos
            self.pos = pos
            tok = self.scan()
            if tok.kind == REGEX:
                return self._compile_regex(tok)
            self.pos = mark
            return None
        if pos >= len(text):
            self.lex.peeked_eof()
            return None
        if text[pos] != "/":
            return None
        tok = self.lex.scan_regex(pos)
        if tok.kind == BADREGEX:
            raise self.error_at(f"bad regex: {tok.lit}", tok.start)
        self.pos = tok.end
        return self._compile_regex(tok)

    def _compile_regex(self, tok: Token) -> ast.RegexLiteral:
        try:
            re.compile(go_regex_to_python(tok.lit))
        except re.error as exc:
            # influxql reports the position just before the opening slash
            raise self.error_at(f"error parsing regexp: {go_regex_error(exc, tok.lit)}",
                                max(tok.start - 1, 0)) from None
        return ast.RegexLiteral(tok.lit)


def go_regex_to_python(pattern: str) -> str:
    """RE2 syntax accepted by InfluxDB mapped onto Python's `re` (`\\z` end anchor)."""
    return pattern.replace("\\z", "\\Z")


def go_regex_error(exc: re.error, pattern: str) -> str:
    """Go regexp/syntax's error text ("missing closing ): `(`") for a Python `re` error."""
    msg = str(exc.msg)
    pos = exc.pos if exc.pos is not None else 0
    if msg.startswith("missing ), unterminated subpattern"):
        return f"missing closing ): `{pattern}`"
    if msg.startswith("unbalanced parenthesis"):
        return f"unexpected ): `{pattern}`"
    if msg.startswith("unterminated character set"):
        return f"missing closing ]: `{pattern[pos:]}`"
    if msg.startswith("nothing to repeat"):
        return f"missing argument to repetition operator: `{pattern[pos:pos + 1]}`"
    if msg.startswith("multiple repeat"):
        return f"invalid nested repetition operator: `{pattern[max(pos - 1, 0):pos + 1]}`"
    if msg.startswith("bad escape"):
        return f"invalid escape sequence: `{pattern[pos:pos + 2]}`"
    if msg.startswith("bad character range"):
        end = pattern.find("]", pos)
        return f"invalid character class range: `{pattern[pos:end if end > 0 else len(pattern)]}`"
    if msg.startswith("unknown extension") or msg.startswith("missing -, : or )"):
        return f"invalid or unsupported Perl syntax: `{pattern[pos:pos + 3]}`"
    return msg


def _insert_binary(root: ast.Expr, op: str, rhs: ast.Expr) -> ast.Expr:
    """Insert `op rhs` into the tree honouring precedence (left-associative)."""
    prec = OPERATOR_PRECEDENCE[op]
    if not isinstance(root, ast.BinaryExpr) or OPERATOR_PRECEDENCE[root.op] >= prec:
        return ast.BinaryExpr(op, root, rhs)
    root.rhs = _insert_binary(root.rhs, op, rhs)
    return root


def _find_comparison(expr: ast.Expr) -> str | None:
    if isinstance(expr, ast.BinaryExpr):
        if expr.op in ("=", "!=", "=~", "!~", "<", "<=", ">", ">=", "AND", "OR"):
            return expr.op
        return _find_comparison(expr.lhs) or _find_comparison(expr.rhs)
    return None
