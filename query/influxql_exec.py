"""InfluxQL planner/executor: statements -> source.read() pushdown -> DuckDB SQL -> Series.

Owns InfluxDB 1.x query semantics (time ranges, buckets, fill, selectors, limits, SHOW/DDL).
"""

from __future__ import annotations

import inspect
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from query import influxql_ast as ast
from query.bucket_aggregates import (
    BUCKET_AGGREGATES,
    DENSE_FOLDS,
    BucketRuns,
    bucket_aggregates,
    dense_bucket_columns,
    filled_values,
    group_ids,
    plain_rows,
)
from query.results import Series, go_duration, statement_result
from query.select_into import PointsWriter, result_batches, write_result
from query.statement_templates import StatementTemplates, TemplateHit
from query.time_windows import ZoneWindows
from storage.batch import MAX_TIME_NS, MIN_TIME_NS, FieldType, TagSet, series_key
from storage.engine import DatabaseNotFound, StorageError


class TableSource(Protocol):
    """What the executor reads from (the storage engine satisfies it)."""

    def databases(self) -> list[str]: ...
    def has_database(self, name: str) -> bool: ...
    def measurements(self, db: str) -> list[str]: ...
    def field_types(self, db: str, measurement: str) -> dict[str, FieldType]: ...
    def tag_keys(self, db: str, measurement: str) -> list[str]: ...
    def series(self, db: str, measurement: str) -> list[TagSet]: ...
    def read(
        self, db: str, measurement: str, *, start_ns: int | None = None, end_ns: int | None = None,
        columns: list[str] | None = None, tag_filter: dict[str, set[str]] | None = None,
    ) -> pa.Table: ...
    def create_database(self, name: str, **policy: Any) -> None:
        """`policy`: rp_name, duration_ns, replication, shard_group_duration_ns of CREATE
        DATABASE ... WITH (none given: the autogen policy)."""
        ...
    def drop_database(self, name: str) -> None: ...
    def drop_measurement(self, db: str, measurement: str) -> None: ...
    def retention_policies(self, db: str) -> list[Any]: ...
    def data_key(self, db: str, rp: str | None = None) -> str:
        """Where db's rows under policy rp (None: the default policy) live: the `db` argument
        of measurements(), read() etc. (storage/namespaces.py). DatabaseNotFound /
        RetentionPolicyNotFound (StorageError) when either is missing."""
        ...
    def data_keys(self, db: str) -> list[str]:
        """The data keys of every retention policy of db."""
        ...


class QueryError(Exception):
    """A statement-level error: reported as {"statement_id": i, "error": str(e)}."""


SELECTORS = {"first", "last", "min", "max", "percentile", "sample", "top", "bottom"}
SQL_AGGREGATES = {"count", "mean", "sum", "min", "max", "first", "last", "spread", "stddev", "median"}
LIST_AGGREGATES = {"mode", "percentile", "distinct", "integral", "top", "bottom", "sample"}
AGGREGATES = SQL_AGGREGATES | LIST_AGGREGATES
MULTI_ROW = {"distinct", "top", "bottom", "sample"}
TRANSFORMS = {
    "derivative", "non_negative_derivative", "difference", "non_negative_difference",
    "moving_average", "cumulative_sum", "elapsed",
}
MAX_BUCKETS = 1_000_000
DENSE_CELLS_MAX = 500_000  # a fast aggregate over more (group, bucket) cells takes the generic path
RECIPES_MAX = 512  # PlanRecipes kept (template shapes x databases)
# field types a `fn(*)` / `fn(/re/)` expands to (InfluxDB: numeric unless listed here)
_ANY_TYPE = frozenset(FieldType)
_WILDCARD_TYPES: dict[str, frozenset[FieldType] | tuple[FieldType, ...]] = {
    **{fn: _ANY_TYPE for fn in ("count", "first", "last", "distinct", "elapsed", "mode", "sample")},
    "min": frozenset((*(FieldType.FLOAT, FieldType.INTEGER, FieldType.UNSIGNED), FieldType.BOOLEAN)),
    "max": frozenset((*(FieldType.FLOAT, FieldType.INTEGER, FieldType.UNSIGNED), FieldType.BOOLEAN)),
}
# aggregates InfluxDB refuses on string/boolean input ("unsupported mean iterator type: ...")
_NUMERIC_ONLY = ("mean", "sum", "median", "stddev", "spread", "integral")
_ITERATOR_TYPE = {FieldType.STRING: "*query.stringInterruptIterator",
                  FieldType.BOOLEAN: "*query.booleanInterruptIterator"}
NUMERIC = (FieldType.FLOAT, FieldType.INTEGER, FieldType.UNSIGNED)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parse_size(text: str) -> str:
    return text.strip()


# ---- time conditions ---------------------------------------------------------------------------
@dataclass(slots=True)
class TimeRange:
    min_ns: int | None = None  # inclusive
    max_ns: int | None = None  # inclusive

    def intersect(self, other: TimeRange) -> TimeRange:
        lo = [v for v in (self.min_ns, other.min_ns) if v is not None]
        hi = [v for v in (self.max_ns, other.max_ns) if v is not None]
        return TimeRange(max(lo) if lo else None, min(hi) if hi else None)


_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


_DAYS_BEFORE_MONTH = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


def _epoch_seconds(year: int, month: int, day: int, hour: int, minute: int, sec: int) -> int:
    """UTC seconds since 1970 of a civil time (proleptic Gregorian); ValueError when out of range."""
    if not (1 <= month <= 12 and 1 <= day <= 28 and hour < 24 and minute < 60 and sec < 60 and year >= 1):
        base = datetime(year, month, day, hour, minute, sec, tzinfo=UTC)  # validates the rest
        return _datetime_ns(base) // 1_000_000_000
    y = year - 1
    leap_day = 1 if month > 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 0
    days = y * 365 + y // 4 - y // 100 + y // 400 + _DAYS_BEFORE_MONTH[month] + leap_day + day - 719163
    return ((days * 24 + hour) * 60 + minute) * 60 + sec


_DATE_SHAPED = re.compile(r"\d{4}-\d{2}-\d{2}")  # influxql's date/datetime string test: a prefix


def parse_time_string(text: str) -> int:
    """RFC3339(Nano) or InfluxQL date literals to ns since epoch; InfluxDB 1.x errors for
    impossible dates and instants outside the int64 ns range."""
    if not _DATE_SHAPED.match(text):
        raise QueryError("invalid operation: time and *influxql.StringLiteral are not compatible")
    m = _RFC3339.match(text)
    if m:
        year, month, day, hour, minute, sec, fraction, zone = m.groups()
        frac = int(fraction.ljust(9, "0")) if fraction else 0
        shown = f"{year}-{month}-{day}T{hour}:{minute}:{sec}{zone}"
        try:
            ns = _epoch_seconds(int(year), int(month), int(day), int(hour), int(minute), int(sec)) * 1_000_000_000 + frac
        except ValueError:
            if int(year) == 0 and int(month) in range(1, 13) and int(day) in range(1, 32):
                raise QueryError(f"time {shown} underflows time literal") from None
            raise QueryError("invalid timestamp string") from None
        if zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            ns -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * 1_000_000_000
        return _time_literal_in_range(ns, shown)
    for fmt in _TIME_FORMATS:
        try:
            moment = datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        ns = _datetime_ns(moment.replace(microsecond=0)) + moment.microsecond * 1000
        shown = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
        return _time_literal_in_range(ns, shown)
    raise QueryError("invalid timestamp string")


def _time_literal_in_range(ns: int, shown: str) -> int:
    if ns < MIN_TIME_NS:
        raise QueryError(f"time {shown} underflows time literal")
    if ns > MAX_TIME_NS:
        raise QueryError(f"time {shown} overflows time literal")
    return ns


def _datetime_ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _time_value(expr: ast.Expr, now_ns: int) -> int:
    if isinstance(expr, ast.StringLiteral):
        return parse_time_string(expr.value)
    if isinstance(expr, ast.IntegerLiteral | ast.UnsignedLiteral):
        return int(expr.value)
    if isinstance(expr, ast.NumberLiteral):
        return int(expr.value)
    if isinstance(expr, ast.DurationLiteral):
        return expr.ns
    if isinstance(expr, ast.Call) and expr.name == "now":
        return now_ns
    if isinstance(expr, ast.ParenExpr):
        return _time_value(expr.expr, now_ns)
    if isinstance(expr, ast.BinaryExpr) and expr.op in ("+", "-"):
        lhs, rhs = _time_value(expr.lhs, now_ns), _time_value(expr.rhs, now_ns)
        return lhs + rhs if expr.op == "+" else lhs - rhs
    raise QueryError(f"invalid time condition: {type(expr).__name__}")


def _is_time_ref(expr: ast.Expr) -> bool:
    return isinstance(expr, ast.VarRef) and expr.name.lower() == "time"


def _mentions_time(expr: ast.Expr | None) -> bool:
    if expr is None:
        return False
    if _is_time_ref(expr):
        return True
    if isinstance(expr, ast.BinaryExpr):
        return _mentions_time(expr.lhs) or _mentions_time(expr.rhs)
    if isinstance(expr, ast.ParenExpr):
        return _mentions_time(expr.expr)
    return False


_FLIP = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "="}


def _time_bound(op: str, value: int) -> TimeRange:
    """The range of `time <op> value` (InfluxDB: > and < exclusive by 1 ns)."""
    if op == ">":
        return TimeRange(value + 1, None)
    if op == ">=":
        return TimeRange(value, None)
    if op == "<":
        return TimeRange(None, value - 1)
    if op == "<=":
        return TimeRange(None, value)
    return TimeRange(value, value)


def split_condition(expr: ast.Expr | None, now_ns: int) -> tuple[TimeRange, ast.Expr | None]:
    """Separate the time range (ANDed time comparisons) from the rest of a WHERE clause."""
    if expr is None:
        return TimeRange(), None
    if isinstance(expr, ast.ParenExpr):
        return split_condition(expr.expr, now_ns)
    if isinstance(expr, ast.BinaryExpr):
        if expr.op == "AND":
            lr, lrest = split_condition(expr.lhs, now_ns)
            rr, rrest = split_condition(expr.rhs, now_ns)
            rest = lrest if rrest is None else rrest if lrest is None else ast.BinaryExpr("AND", lrest, rrest)
            return lr.intersect(rr), rest
        if expr.op == "OR" and _mentions_time(expr):
            raise QueryError("invalid condition: time comparisons inside OR are not supported")
        if expr.op in _FLIP and (_is_time_ref(expr.lhs) or _is_time_ref(expr.rhs)):
            op = expr.op
            other = expr.rhs
            if _is_time_ref(expr.rhs):
                op, other = _FLIP[op], expr.lhs
            return _time_bound(op, _time_value(other, now_ns)), None
        if _mentions_time(expr):
            raise QueryError(f"invalid time comparison operator: {expr.op}")
    return TimeRange(), expr


# ---- measurement data (real or from a subquery) -----------------------------------------------
@dataclass(slots=True)
class MeasurementData:
    name: str
    field_types: dict[str, FieldType]
    tag_keys: list[str]
    reader: Callable[[int | None, int | None, list[str], dict[str, set[str]] | None], pa.Table]
    # (n, start, end, columns, tag_filter) -> the newest n rows of each series (storage last_rows)
    tail_reader: Callable[[int, int | None, int | None, list[str], dict[str, set[str]] | None], pa.Table] | None = None
    filters_tags: bool = False  # reader applies tag_filter itself (subquery readers do not)
    # (start, end, columns, tag_filter, [(field, op, number)]) -> rows where the conditions hold
    filtered_reader: Callable[[int | None, int | None, list[str], dict[str, set[str]] | None,
                               list[tuple[str, str, float | int]]], pa.Table] | None = None


@dataclass(slots=True)
class _OuterContext:
    """What an outer query hands down to its subquery."""

    time_range: TimeRange
    interval: int
    offset: int
    tags: list[str]
    slimit: int
    soffset: int


def _dimension_tag_names(dimensions: list[ast.Dimension]) -> list[str]:
    return [d.expr.name for d in dimensions if isinstance(d.expr, ast.VarRef)]


# ---- evaluation helpers ------------------------------------------------------------------------
@dataclass(slots=True)
class AggSpec:
    name: str
    field: str
    args: tuple[Any, ...] = ()
    distinct: bool = False
    aux: tuple[str, ...] = ()  # extra columns read from the selected point (single selector)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.name, self.field, self.args, self.distinct)


@dataclass(slots=True)
class OutputColumn:
    name: str
    expr: ast.Expr
    aliased: bool = False


@dataclass(slots=True)
class _Group:
    tags: tuple[str, ...]
    # bucket start -> {agg key: value}; selectors also store (value, time)
    buckets: dict[int, dict[tuple[Any, ...], Any]] = field(default_factory=dict)


class Watchdog:
    """One thread calling a callback when its deadline passes (query timeouts without a thread each)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._alarms: dict[int, tuple[float, Callable[[], None]]] = {}
        self._seq = 0
        self._stopped = False
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback: Callable[[], None]) -> int:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="query-watchdog", daemon=True)
                self._thread.start()
            self._seq += 1
            self._alarms[self._seq] = (time.monotonic() + seconds, callback)
            self._cond.notify()
            return self._seq

    def disarm(self, alarm: int) -> None:
        with self._cond:
            self._alarms.pop(alarm, None)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _loop(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                due = [k for k, (deadline, _) in self._alarms.items() if deadline <= now]
                for key in due:
                    _, callback = self._alarms.pop(key)
                    callback()
                upcoming = [deadline for deadline, _ in self._alarms.values()]
                self._cond.wait(timeout=min(upcoming) - now if upcoming else None)


class DeferredStatements(Sequence[ast.Statement]):
    """The statements of a template hit planned from its recipe: built only if a plan cannot
    answer after all (storage parts that overlap), which is rare."""

    def __init__(self, hit: TemplateHit) -> None:
        self._hit = hit
        self._built: list[ast.Statement] | None = None

    def __len__(self) -> int:
        return len(self._hit.template.statements)

    def __getitem__(self, index: int) -> ast.Statement:  # type: ignore[override]
        if self._built is None:
            self._built = StatementTemplates.rebuild(self._hit)
        return self._built[index]


@dataclass(slots=True)
class PreparedQuery:
    """Parsed statements, their estimated cost (values decoded; None: unknown), the now() they
    were planned at, and per statement its fast aggregate plan (None: the generic executor)."""

    statements: Sequence[ast.Statement]
    cost: int | None
    now_ns: int = 0
    plans: list[FastAggregatePlan | None] = field(default_factory=list)


@dataclass(slots=True)
class FastAggregatePlan:
    """A SELECT answered by dense bucket folds straight from storage columns (no tables, no
    SQL): count/sum/mean/min/max/first/last of numeric fields of one measurement, WHERE of a
    time range and tag equalities only (storage applies them), GROUP BY time (or none: one
    bucket) and tags, fill(null|none|<n>), no LIMIT/OFFSET/SLIMIT/SOFFSET/tz(). A lone selector
    without GROUP BY time() answers with the time of the point it chose (point_time)."""

    database: str
    measurement: str
    specs: list[tuple[str, str, np.dtype]]  # (function, field, the field's numpy dtype)
    names: list[str]  # output column names after time
    tag_filter: dict[str, set[str]]
    group_tags: list[str]  # GROUP BY tags (sorted), [] for one series
    lower: int | None  # lowest time of the WHERE (None: unbounded)
    max_ns: int  # highest time (inclusive; unbounded: now() with GROUP BY time, else the maximum)
    interval: int
    offset: int
    fill: str
    fill_value: Any
    descending: bool
    point_time: bool = False

    @property
    def fields(self) -> list[str]:
        return list(dict.fromkeys(f for _fn, f, _dt in self.specs))

    @property
    def end_ns(self) -> int | None:
        return self.max_ns + 1 if self.max_ns < MAX_TIME_NS else None


@dataclass(slots=True)
class PlanRecipe:
    """How a template's FastAggregatePlan follows from its literal values: the plan of the
    first text of the shape with the literal-dependent parts (time bounds, tag values, GROUP BY
    interval and offset) recomputed from a new text's literals, as _fast_aggregate_plan does,
    without rebuilding the statement or planning it again. Valid while the schema it was made
    for holds (field types of the aggregated fields, the measurement's tag keys)."""

    base: FastAggregatePlan
    slots: dict[int, int]  # id() of a template literal node -> its slot (index into the literals)
    times: list[tuple[str, ast.Expr]]  # time comparisons: (operator with time on the left, the other side)
    tags: list[tuple[str, list[ast.StringLiteral]]]  # tag equality groups: (tag, its literal nodes)
    interval: ast.Expr | None  # the time() arguments of GROUP BY (None: no GROUP BY time)
    offset: ast.Expr | None
    types: dict[str, FieldType]  # field -> type the specs were planned with
    tag_keys: list[str]

    def plan(self, literals: list[ast.Expr], now: int) -> FastAggregatePlan | None:
        """The plan for these literals (None: let the full path decide, e.g. an invalid time)."""
        try:
            trange = TimeRange()
            for op, other in self.times:
                trange = trange.intersect(_time_bound(op, _time_value(self._fill(other, literals), now)))
            interval, offset = 0, 0
            if self.interval is not None:
                args = [self._fill(a, literals) for a in (self.interval, self.offset) if a is not None]
                interval, offset = _group_by_time([ast.Dimension(ast.Call("time", args))])
        except QueryError:
            return None
        tag_filter: dict[str, set[str]] = {}
        for key, nodes in self.tags:
            values = {self._fill(node, literals).value for node in nodes}  # type: ignore[attr-defined]
            if "" in values:
                return None  # tag = '' is not a plain equality (it matches series without the tag)
            tag_filter[key] = tag_filter[key] & values if key in tag_filter else values
        base = self.base
        lower = trange.min_ns
        max_ns = trange.max_ns if trange.max_ns is not None else now if interval else MAX_TIME_NS
        if lower is not None and lower > max_ns:
            return None
        return FastAggregatePlan(base.database, base.measurement, base.specs, base.names, tag_filter,
                                 base.group_tags, lower, max_ns, interval, offset, base.fill,
                                 base.fill_value, base.descending, base.point_time)

    def _fill(self, expr: ast.Expr, literals: list[ast.Expr]) -> ast.Expr:
        """`expr` of the template with its slot literals replaced by this text's."""
        slot = self.slots.get(id(expr))
        if slot is not None:
            return literals[slot]
        if isinstance(expr, ast.ParenExpr):
            return ast.ParenExpr(self._fill(expr.expr, literals))
        if isinstance(expr, ast.BinaryExpr):
            return ast.BinaryExpr(expr.op, self._fill(expr.lhs, literals), self._fill(expr.rhs, literals))
        return expr


def plan_recipe(stmt: ast.SelectStatement, plan: FastAggregatePlan, slot_nodes: list[int],
                types: dict[str, FieldType], tag_keys: list[str]) -> PlanRecipe | None:
    """The recipe of a template statement whose plan is `plan`; None when its WHERE or GROUP BY
    has a form the recipe does not replay (every such text then takes the full path)."""
    slots = {node_id: i for i, node_id in enumerate(slot_nodes)}
    times: list[tuple[str, ast.Expr]] = []
    tags: list[tuple[str, list[ast.StringLiteral]]] = []
    keys = set(tag_keys)
    for term in _conjuncts(stmt.condition):
        while isinstance(term, ast.ParenExpr):
            term = term.expr
        if isinstance(term, ast.BinaryExpr) and term.op in _FLIP and (_is_time_ref(term.lhs) or _is_time_ref(term.rhs)):
            op, other = (term.op, term.rhs) if _is_time_ref(term.lhs) else (_FLIP[term.op], term.lhs)
            if not _replayable_time(other):
                return None
            times.append((op, other))
            continue
        found = _tag_equalities(term, keys)
        if found is None:
            return None
        nodes = _string_literals(term)
        if nodes is None:
            return None
        tags.append((found[0], nodes))
    interval = offset = None
    for dim in stmt.dimensions:
        if isinstance(dim.expr, ast.Call) and dim.expr.name == "time":
            if not 1 <= len(dim.expr.args) <= 2 or not all(isinstance(a, ast.DurationLiteral) for a in dim.expr.args):
                return None
            interval = dim.expr.args[0]
            offset = dim.expr.args[1] if len(dim.expr.args) == 2 else None
    used = {field_name: types[field_name] for _fn, field_name, _dt in plan.specs}
    return PlanRecipe(plan, slots, times, tags, interval, offset, used, list(tag_keys))


def _replayable_time(expr: ast.Expr) -> bool:
    """A time comparison's other side made of literals, now() and + / -: _time_value evaluates it."""
    if isinstance(expr, ast.StringLiteral | ast.IntegerLiteral | ast.UnsignedLiteral | ast.NumberLiteral
                  | ast.DurationLiteral):
        return True
    if isinstance(expr, ast.Call):
        return expr.name == "now" and not expr.args
    if isinstance(expr, ast.ParenExpr):
        return _replayable_time(expr.expr)
    if isinstance(expr, ast.BinaryExpr) and expr.op in ("+", "-"):
        return _replayable_time(expr.lhs) and _replayable_time(expr.rhs)
    return False


def _string_literals(expr: ast.Expr) -> list[ast.StringLiteral] | None:
    """The value literals of a tag equality group (tag = 'a' OR tag = 'b' ...)."""
    if isinstance(expr, ast.ParenExpr):
        return _string_literals(expr.expr)
    if not isinstance(expr, ast.BinaryExpr):
        return None
    if expr.op == "OR":
        lhs, rhs = _string_literals(expr.lhs), _string_literals(expr.rhs)
        return None if lhs is None or rhs is None else lhs + rhs
    literal = expr.rhs if isinstance(expr.rhs, ast.StringLiteral) else expr.lhs
    return [literal] if isinstance(literal, ast.StringLiteral) else None


class QueryExecutor:
    """Runs InfluxQL text against a TableSource; DuckDB cursors per thread (one shared database)."""

    def __init__(
        self, source: TableSource, *, now_ns: Callable[[], int] = time.time_ns,
        max_memory: str = "1GB", timeout_s: float = 30.0, fast_paths: bool = True,
        writer: PointsWriter | None = None,
    ) -> None:
        self.source = source
        self.writer = writer  # SELECT INTO writes through it (None: a read-only store)
        self.fast_paths = fast_paths  # numpy/pyarrow paths that skip DuckDB (False: SQL only)
        self.now_ns = now_ns
        self.timeout_s = timeout_s
        self._con = duckdb.connect(config={"memory_limit": _parse_size(max_memory), "threads": 1})
        self._local = threading.local()  # one DuckDB cursor per worker thread: no global lock
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        self._watchdog = Watchdog()
        self._table_seq = 0
        self._read_filters_fields = "field_filter" in _parameters(source.read)  # pushdown supported?
        self._templates = StatementTemplates()  # repeated query shapes skip the parser
        self._recipes: dict[tuple[str, str | None], PlanRecipe] = {}  # (template key, db): fast plans

    def close(self) -> None:
        self._watchdog.stop()
        with self._cursors_lock:
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
        self._con.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._con.cursor()
            self._local.cursor = cursor
            with self._cursors_lock:
                self._cursors.append(cursor)
        return cursor

    # ---- entry point ----------------------------------------------------------------------
    def execute(
        self, text: str, db: str | None, params: dict[str, Any] | None = None,
        epoch: str | None = None, rp: str | None = None,
    ) -> list[dict[str, Any]]:
        """One InfluxDB result object per statement; parse errors raise InfluxQLParseError.
        `rp`: the retention policy of sources that name none (else the database's default)."""
        return self.execute_prepared(self.prepare(text, db, params, estimate=False, rp=rp), db, epoch, rp)

    def prepare(self, text: str, db: str | None, params: dict[str, Any] | None = None,
                estimate: bool = True, rp: str | None = None) -> PreparedQuery:
        """Parse (InfluxQLParseError as execute), plan the fast aggregates and (`estimate`)
        estimate the work: values the storage reads will decode, from footers and buffer sizes
        only; None when unknown (subqueries, DDL, SHOW of series, a source without estimates...).
        A text of a known template with a PlanRecipe gets its plan from the recipe."""
        now = self.now_ns()
        hit = None if params or not self.fast_paths else self._templates.match(text)
        if hit is not None:
            plan = self._recipe_plan(hit, db, rp, now)
            if plan is not None:
                return PreparedQuery(DeferredStatements(hit), self._plan_cost(plan) if estimate else None,
                                     now, [plan])
            statements: Sequence[ast.Statement] = StatementTemplates.rebuild(hit)
        else:
            statements = self._templates.parse(text, params)
        plans = [self._fast_aggregate_plan(stmt, db, rp, now) if isinstance(stmt, ast.SelectStatement) else None
                 for stmt in statements]
        if hit is not None and len(plans) == 1 and plans[0] is not None:
            self._remember_recipe(hit, db, rp, plans[0], now)
        cost: int | None = 0 if estimate else None
        for stmt, plan in zip(statements, plans, strict=True):
            if cost is None:
                break
            if isinstance(stmt, ast.ShowDatabasesStatement | ast.ShowRetentionPoliciesStatement):
                continue
            try:
                if plan is not None:
                    one: int | None = self._plan_cost(plan)
                else:
                    one = self._select_cost(stmt, db, rp, now) if isinstance(stmt, ast.SelectStatement) else None
            except (QueryError, StorageError):
                one = None  # execution reports the error
            cost = None if one is None else cost + one
        return PreparedQuery(statements, cost, now, plans)

    def _recipe_plan(self, hit: TemplateHit, db: str | None, rp: str | None, now: int) -> FastAggregatePlan | None:
        """The plan from the recipe of hit's template, if there is one and its schema (and the
        namespace its source resolves to: ALTER ... DEFAULT moves it) still holds."""
        recipe = self._recipes.get((hit.key, db, rp))
        if recipe is None:
            return None
        stmt = hit.template.statements[0]
        src = stmt.sources[0]  # type: ignore[union-attr]
        key = self._source_key(src.database or db, src.retention_policy or rp)  # type: ignore[union-attr]
        measurement = recipe.base.measurement
        if key is None:
            return None
        types = self.source.field_types(key, measurement)
        tag_keys = self._tag_keys(self._policy_keys(src.database or db), measurement)  # type: ignore[union-attr]
        if key != recipe.base.database or any(types.get(name) != ftype for name, ftype in recipe.types.items()) \
                or tag_keys != recipe.tag_keys:
            self._recipes.pop((hit.key, db, rp), None)  # the schema changed: plan again, in full
            return None
        return recipe.plan(hit.literals, now)

    def _remember_recipe(self, hit: TemplateHit, db: str | None, rp: str | None, plan: FastAggregatePlan,
                         now: int) -> None:
        """Keep a recipe for hit's template if it reproduces `plan` (the full path's) exactly."""
        if (hit.key, db, rp) in self._recipes:
            return  # a recipe that declined these literals: keep it
        stmt = hit.template.statements[0]
        if not isinstance(stmt, ast.SelectStatement):
            return
        types = self.source.field_types(plan.database, plan.measurement)
        src = stmt.sources[0]
        tag_keys = self._tag_keys(self._policy_keys(src.database or db), plan.measurement)  # type: ignore[union-attr,arg-type]
        recipe = plan_recipe(stmt, plan, hit.template.slot_nodes, types, tag_keys)
        if recipe is not None and recipe.plan(hit.literals, now) == plan:
            if len(self._recipes) >= RECIPES_MAX:
                self._recipes.clear()
            self._recipes[(hit.key, db, rp)] = recipe

    def _plan_cost(self, plan: FastAggregatePlan) -> int | None:
        estimate = getattr(self.source, "estimate_rows", None)
        if estimate is None:
            return None
        rows = estimate(plan.database, plan.measurement, start_ns=plan.lower, end_ns=plan.end_ns,
                        tag_filter=plan.tag_filter or None)
        return int(rows) * (1 + len(plan.fields))

    def _fast_aggregate_plan(self, stmt: ast.SelectStatement, db: str | None, rp: str | None,
                             now: int) -> FastAggregatePlan | None:
        """The FastAggregatePlan of `stmt`, or None when it has another shape (or would fail:
        the generic executor then reports the error)."""
        if (not self.fast_paths or stmt.into is not None or len(stmt.sources) != 1 or stmt.limit
                or stmt.offset or stmt.slimit or stmt.soffset or stmt.tz
                or stmt.fill not in ("null", "none", "number")
                or getattr(self.source, "read_columns", None) is None):
            return None
        src = stmt.sources[0]
        if not isinstance(src, ast.Measurement) or src.regex is not None or not src.name:
            return None
        database = self._source_key(src.database or db, src.retention_policy or rp)
        if database is None:
            return None
        sorted_tags = self._tag_keys(self._policy_keys(src.database or db), src.name)  # type: ignore[arg-type]
        try:
            interval, offset = _group_by_time(stmt.dimensions)
            trange, rest = split_condition(stmt.condition, now)
        except QueryError:
            return None
        types = self.source.field_types(database, src.name)
        if not types:
            return None
        tag_keys = set(sorted_tags)
        try:
            group_tags = _group_tags(stmt.dimensions, sorted_tags)
        except QueryError:
            return None
        if sum(isinstance(d.expr, ast.Call) for d in stmt.dimensions) != (1 if interval else 0):
            return None  # time() twice, or time(0): the generic path reports it
        # a lone selector without GROUP BY time() answers with its point's time
        point_time = not interval and len(stmt.fields) == 1 and isinstance(stmt.fields[0].expr, ast.Call) \
            and stmt.fields[0].expr.name in SELECTORS
        tag_filter: dict[str, set[str]] = {}
        for term in _conjuncts(rest):
            equality = _tag_equalities(term, tag_keys)
            if equality is None:
                return None
            key, values = equality
            tag_filter[key] = tag_filter[key] & values if key in tag_filter else values
        specs: list[tuple[str, str, np.dtype]] = []
        columns: list[OutputColumn] = []
        for f in stmt.fields:
            call = f.expr
            if not (isinstance(call, ast.Call) and call.name in DENSE_FOLDS and len(call.args) == 1):
                return None
            arg = call.args[0]
            if not isinstance(arg, ast.VarRef) or arg.type not in (None, "field"):
                return None
            ftype = types.get(arg.name)
            if ftype not in (FieldType.FLOAT, FieldType.INTEGER):
                return None
            specs.append((call.name, arg.name, np.dtype(np.float64 if ftype == FieldType.FLOAT else np.int64)))
            columns.append(OutputColumn(f.alias or call.name, call, bool(f.alias)))
        lower = trange.min_ns
        max_ns = trange.max_ns if trange.max_ns is not None else now if interval else MAX_TIME_NS
        if lower is not None and lower > max_ns:
            return None
        descending = bool(stmt.sort_fields) and not stmt.sort_fields[0].ascending
        return FastAggregatePlan(database, src.name, specs, _column_names(columns),
                                 tag_filter, group_tags, lower, max_ns, interval, offset,
                                 stmt.fill, stmt.fill_value, descending, point_time)

    def _fast_aggregate(self, plan: FastAggregatePlan) -> list[Series] | None:
        """The plan's result series; None when storage cannot give unmerged columns (or the
        (group, bucket) grid is too large for dense folds): the generic executor then runs it."""
        parts = self.source.read_columns(  # type: ignore[attr-defined]
            plan.database, plan.measurement, start_ns=plan.lower, end_ns=plan.end_ns,
            fields=plan.fields, tag_filter=plan.tag_filter or None, group_tags=plan.group_tags)
        if parts is None:
            return None
        parts = [p for p in parts if p.time.shape[0]]
        if not parts:
            return []
        interval, offset = plan.interval, plan.offset
        first = plan.lower if plan.lower is not None else min(int(p.time.min()) for p in parts)
        if interval:
            start = _window(first, interval, offset)
            buckets = (_window(plan.max_ns, interval, offset) - start) // interval + 1
        else:  # no GROUP BY time(): one bucket over every row, stamped with the lower bound (or 0)
            start = min(int(p.time.min()) for p in parts)
            interval = max(int(p.time.max()) for p in parts) - start + 1
            buckets = 1
        if plan.fill != "none" and buckets > MAX_BUCKETS:
            raise QueryError(f"max-select-buckets limit exceeded: ({buckets}/{MAX_BUCKETS})")
        numbers: dict[tuple[str, ...], int] = {}  # group tag values -> group number over all parts
        groups = []
        for part in parts:
            if not plan.group_tags:
                groups.append(part.group)
                continue
            local = np.array([numbers.setdefault(k, len(numbers)) for k in part.group_keys], dtype=np.int64)
            groups.append(local[part.group])
        cells = buckets * max(1, len(numbers))
        if cells > DENSE_CELLS_MAX:
            return None
        results, seens, chosen = dense_bucket_columns(parts, groups, plan.specs, start, interval, cells, buckets,
                                                      point_times=plan.point_time)
        bucket_times = start + np.arange(buckets, dtype=np.int64) * interval
        if not plan.interval:
            bucket_times = np.array([plan.lower if plan.lower is not None else 0], dtype=np.int64)
        out = []
        for key in sorted(numbers) if plan.group_tags else [()]:
            cell = slice(numbers[key] * buckets, (numbers[key] + 1) * buckets) if plan.group_tags else slice(None)
            present = seens[0][cell] > 0
            for seen in seens[1:]:
                present |= seen[cell] > 0
            if not present.any():
                continue
            times, keep = bucket_times, None
            if plan.point_time:  # one bucket, and it has a value: the time of the chosen point
                times = chosen[0][cell]  # type: ignore[index]
            if plan.fill == "none":
                keep = np.flatnonzero(present)
                times = times[keep]
            columns = []
            for (function, _f, _dt), values, seen in zip(plan.specs, results, seens, strict=True):
                gap = (plan.fill_value if plan.fill == "number"
                       else 0 if function == "count" and plan.fill == "null" else None)
                columns.append(filled_values(values[cell], seen[cell], keep, gap))
            if plan.descending:
                times = times[::-1]
                columns = [c[::-1] for c in columns]
            tags = dict(zip(plan.group_tags, key, strict=True)) if plan.group_tags else None
            out.append(Series(plan.measurement, ["time", *plan.names], [], tags, None, times=times,
                              value_columns=columns))
        if plan.descending:
            out.reverse()  # InfluxDB emits the series in descending order too
        return out

    def _select_cost(self, stmt: ast.SelectStatement, db: str | None, rp: str | None, now: int) -> int | None:
        estimate = getattr(self.source, "estimate_rows", None)
        if estimate is None or stmt.into is not None:
            return None
        trange, rest = split_condition(stmt.condition, now)
        end = trange.max_ns + 1 if trange.max_ns is not None and trange.max_ns < MAX_TIME_NS else None
        wildcard = any(_has_wildcard(f.expr) for f in stmt.fields)
        named = set().union(*(_var_names(f.expr) for f in stmt.fields), _var_names(rest))
        total = 0
        for src in stmt.sources:
            if isinstance(src, ast.SubQuery):
                return None
            database = self._source_key(src.database or db, src.retention_policy or rp)
            if database is None:
                return None
            for name in self._resolve_names([database], [src]):
                types = self.source.field_types(database, name)
                tag_filter = _tag_filter(rest, set(self.source.tag_keys(database, name)))
                fields = len(types) if wildcard else len(named & types.keys())
                rows = estimate(database, name, start_ns=trange.min_ns, end_ns=end, tag_filter=tag_filter or None)
                total += rows * (1 + fields)
        return total

    def execute_prepared(self, prepared: PreparedQuery, db: str | None, epoch: str | None = None,
                         rp: str | None = None) -> list[dict[str, Any]]:
        """Run a prepare()d query at its planning time, fast aggregate plans first."""
        return self.execute_statements(prepared.statements, db, epoch, now=prepared.now_ns,
                                       plans=prepared.plans, rp=rp)

    def execute_statements(self, statements: Sequence[ast.Statement], db: str | None,
                           epoch: str | None = None, *, now: int | None = None,
                           plans: list[FastAggregatePlan | None] | None = None,
                           rp: str | None = None) -> list[dict[str, Any]]:
        """Run parsed statements (parse_query or prepare): one result object per statement.
        `rp`: the retention policy of sources that name none (else the database's default)."""
        if now is None:
            now = self.now_ns()
        results: list[dict[str, Any]] = []
        failed = False
        for statement_id in range(len(statements)):
            if failed:  # InfluxDB stops at the first failing statement
                results.append({"statement_id": statement_id, "error": "not executed"})
                continue
            failed = True
            try:
                plan = plans[statement_id] if plans else None
                series = self._fast_aggregate(plan) if plan is not None else None
                if series is None:
                    series = self._run(statements[statement_id], db, rp, now)
                results.append(statement_result(statement_id, series, epoch))
                failed = False
            except (QueryError, StorageError) as exc:
                results.append({"statement_id": statement_id, "error": str(exc)})
            except duckdb.InterruptException:
                results.append({"statement_id": statement_id, "error": "query timeout"})
            except duckdb.Error as exc:
                results.append({"statement_id": statement_id, "error": f"query engine error: {exc}"})
        return results

    def _run(self, stmt: ast.Statement, db: str | None, rp: str | None, now: int) -> list[Series]:
        if isinstance(stmt, ast.SelectStatement):
            if stmt.into is not None:
                return [self._select_into(stmt, db, rp, now)]
            return self._select(stmt, db, rp, now)
        if isinstance(stmt, ast.ShowDatabasesStatement):
            return [Series("databases", ["name"], [[d] for d in self.source.databases()])]
        if isinstance(stmt, ast.ShowContinuousQueriesStatement):  # one empty series per database
            return [Series(d, ["name", "query"]) for d in self.source.databases()]
        if isinstance(stmt, ast.CreateDatabaseStatement):
            spec = {"rp_name": stmt.rp_name or None, "duration_ns": stmt.rp_duration_ns,
                    "replication": stmt.rp_replication, "shard_group_duration_ns": stmt.rp_shard_duration_ns}
            if any(v is not None for v in spec.values()):  # WITH ...: that policy instead of autogen
                self.source.create_database(stmt.name, **spec)
            else:
                self.source.create_database(stmt.name)
            return []
        if isinstance(stmt, ast.DropDatabaseStatement):
            if self.source.has_database(stmt.name):
                self.source.drop_database(stmt.name)
            return []
        if isinstance(stmt, ast.ShowRetentionPoliciesStatement):
            return self._show_retention_policies(stmt.database or db)
        if isinstance(stmt, ast.CreateRetentionPolicyStatement | ast.AlterRetentionPolicyStatement
                      | ast.DropRetentionPolicyStatement):
            return self._retention_ddl(stmt)
        if isinstance(stmt, ast.DropMeasurementStatement):
            database = self._require_db(db)
            self.source.drop_measurement(database, stmt.name)
            return []
        if isinstance(stmt, ast.DeleteStatement):
            return self._delete(stmt, self._require_db(db), now)
        if isinstance(stmt, ast.ShowMeasurementsStatement):
            database = stmt.database or db
            if database and not self.source.has_database(database):
                return []  # InfluxDB 1.6.7: no error, no series
            return self._show_measurements(stmt, self._policy_keys(self._require_db(database)))
        if isinstance(stmt, ast.DropSeriesStatement):
            return self._drop_series(stmt, self._require_db(db))
        # as InfluxDB 1.x: SHOW MEASUREMENTS / TAG KEYS / TAG VALUES read the database-wide index
        # (every policy); SHOW SERIES / FIELD KEYS and the exact cardinalities read one policy
        # per source (the one it names, else rp, else the default)
        if isinstance(stmt, ast.ShowTagKeysStatement):
            return self._show_tag_keys(stmt, self._policy_keys(self._require_db(stmt.database or db)))
        if isinstance(stmt, ast.ShowTagValuesStatement):
            return self._show_tag_values(stmt, self._policy_keys(self._require_db(stmt.database or db)))
        if isinstance(stmt, ast.ShowFieldKeysStatement):
            return self._show_field_keys(stmt, self._require_db(stmt.database or db), rp)
        if isinstance(stmt, ast.ShowSeriesStatement):
            return self._show_series(stmt, self._require_db(stmt.database or db), rp)
        if isinstance(stmt, ast.ShowCardinalityStatement):
            return self._show_cardinality(stmt, stmt.database or db, rp)
        raise QueryError(f"unsupported statement {type(stmt).__name__}")

    def _require_db(self, db: str | None) -> str:
        if not db:
            raise QueryError("database name required")
        if not self.source.has_database(db):
            raise QueryError(f"database not found: {db}")
        return db

    # ---- retention policy namespaces ----------------------------------------------------------
    def _data_key(self, db: str | None, rp: str | None) -> str:
        """Where db's rows under rp (None: its default policy) live; QueryError as InfluxDB's
        ("database not found: x", "retention policy not found: y")."""
        if not db:
            raise QueryError("database name required")
        try:
            return self.source.data_key(db, rp or None)
        except DatabaseNotFound as exc:
            raise QueryError(f"database not found: {db}") from exc
        except StorageError as exc:
            raise QueryError(f"retention policy not found: {rp}" if rp else str(exc)) from exc

    def _source_key(self, db: str | None, rp: str | None) -> str | None:
        """_data_key, or None where it would fail (planning leaves the error to execution)."""
        try:
            return self._data_key(db, rp)
        except QueryError:
            return None

    def _policy_keys(self, db: str) -> list[str]:
        """The namespaces of every retention policy of db (the database-wide index spans them)."""
        return self.source.data_keys(db)

    def _measurements(self, keys: Sequence[str]) -> list[str]:
        if len(keys) == 1:
            return self.source.measurements(keys[0])
        return sorted({m for key in keys for m in self.source.measurements(key)})

    def _tag_keys(self, keys: Sequence[str], name: str) -> list[str]:
        if len(keys) == 1:
            return self.source.tag_keys(keys[0], name)
        return sorted({k for key in keys for k in self.source.tag_keys(key, name)})

    def _series(self, keys: Sequence[str], name: str) -> list[TagSet]:
        if len(keys) == 1:
            return self.source.series(keys[0], name)
        found = {ts for key in keys for ts in self.source.series(key, name)}
        return sorted(found, key=lambda tags: series_key(name, tags))

    # ---- SHOW / DDL --------------------------------------------------------------------------
    def _show_retention_policies(self, db: str | None) -> list[Series]:
        if not db:
            raise QueryError("database name required")
        if not self.source.has_database(db):
            raise QueryError(f"database not found: {db}")
        rows = [
            [rp.name, go_duration(rp.duration_ns), go_duration(rp.shard_group_duration_ns),
             rp.replication, bool(rp.default)]
            for rp in self.source.retention_policies(db)
        ]
        return [Series(None, ["name", "duration", "shardGroupDuration", "replicaN", "default"], rows)]

    def _retention_ddl(self, stmt: ast.Statement) -> list[Series]:
        method = {
            ast.CreateRetentionPolicyStatement: "create_retention_policy",
            ast.AlterRetentionPolicyStatement: "alter_retention_policy",
            ast.DropRetentionPolicyStatement: "drop_retention_policy",
        }[type(stmt)]
        target = getattr(self.source, method, None)
        database = stmt.database  # type: ignore[union-attr]
        if not self.source.has_database(database):
            raise QueryError(f"database not found: {database}")
        if target is None:
            raise QueryError(f"retention policy management is not supported by this store ({method})")
        if isinstance(stmt, ast.CreateRetentionPolicyStatement):
            target(database, stmt.name, duration_ns=stmt.duration_ns, shard_group_duration_ns=stmt.shard_duration_ns,
                   replication=stmt.replication, default=stmt.default)
        elif isinstance(stmt, ast.AlterRetentionPolicyStatement):
            target(database, stmt.name, duration_ns=stmt.duration_ns, shard_group_duration_ns=stmt.shard_duration_ns,
                   replication=stmt.replication, default=True if stmt.default else None)
        else:
            target(database, stmt.name)  # type: ignore[union-attr]
        return []

    def _delete(self, stmt: ast.DeleteStatement, db: str, now: int) -> list[Series]:
        """DELETE (and DROP SERIES) hit every retention policy of db, as InfluxDB 1.x."""
        delete = getattr(self.source, "delete", None)
        if delete is None:
            raise QueryError("DELETE is not supported by this store")
        trange, rest = split_condition(stmt.condition, now)
        keys = self._policy_keys(db)
        names = self._resolve_names(keys, stmt.sources) if stmt.sources else self._measurements(keys)
        for name in names:
            tag_filter = _delete_tag_filter(rest, set(self._tag_keys(keys, name)))
            if tag_filter is None:
                continue  # no series of this measurement can match
            delete(db, name, start_ns=trange.min_ns,
                   end_ns=None if trange.max_ns is None else trange.max_ns + 1, tag_filter=tag_filter)
        return []

    def _drop_series(self, stmt: ast.DropSeriesStatement, db: str) -> list[Series]:
        """DROP SERIES: DELETE over all time of the series matching the tag condition."""
        if _mentions_time(stmt.condition):
            raise QueryError("DROP SERIES doesn't support time in WHERE clause")
        return self._delete(ast.DeleteStatement(stmt.sources, stmt.condition), db, self.now_ns())

    def _resolve_names(self, keys: Sequence[str], sources: Iterable[ast.Source]) -> list[str]:
        """The measurements of the namespaces `keys` that the sources name or match."""
        names: list[str] = []
        existing = self._measurements(keys)
        for src in sources:
            if isinstance(src, ast.SubQuery):
                raise QueryError("subqueries are only supported in SELECT")
            if src.regex is not None:
                pattern = src.regex.compiled()
                names.extend(m for m in existing if pattern.search(m))
            elif src.name in existing:
                names.append(src.name)
        return sorted(set(names))

    def _filtered_series(self, keys: Sequence[str], name: str, condition: ast.Expr | None, other: bool = True,
                         absent: str | None = "") -> list[TagSet]:
        tag_sets = self._series(keys, name)
        if condition is None:
            return tag_sets
        return [ts for ts in tag_sets if _eval_tag_condition(condition, dict(ts), other, absent)]

    def _show_measurements(self, stmt: ast.ShowMeasurementsStatement, keys: list[str]) -> list[Series]:
        names = self._measurements(keys)
        if stmt.source is not None:
            if stmt.source.regex is not None:
                pattern = stmt.source.regex.compiled()
                names = [n for n in names if pattern.search(n)]
            else:
                names = [n for n in names if n == stmt.source.name]
        if stmt.condition is not None:
            names = [n for n in names if self._filtered_series(keys, n, stmt.condition)]
        names = _limit(sorted(names), stmt.limit, stmt.offset)
        return [Series("measurements", ["name"], [[n] for n in names])] if names else []

    def _show_tag_keys(self, stmt: ast.ShowTagKeysStatement, keys: list[str]) -> list[Series]:
        names = self._resolve_names(keys, stmt.sources) if stmt.sources else self._measurements(keys)
        out: list[Series] = []
        for name in names:
            if stmt.condition is not None:
                tags = sorted({k for ts in self._filtered_series(keys, name, stmt.condition) for k, _ in ts})
            else:
                tags = sorted(self._tag_keys(keys, name))
            tags = _limit(tags, stmt.limit, stmt.offset)
            if tags:
                out.append(Series(name, ["tagKey"], [[k] for k in tags]))
        return _limit(out, stmt.slimit, stmt.soffset)

    def _show_tag_values(self, stmt: ast.ShowTagValuesStatement, keys: list[str]) -> list[Series]:
        names = self._resolve_names(keys, stmt.sources) if stmt.sources else self._measurements(keys)
        out: list[Series] = []
        for name in names:
            wanted = _keys_with(stmt.op, stmt.key_expr, self._tag_keys(keys, name))
            pairs: set[tuple[str, str]] = set()
            for ts in self._filtered_series(keys, name, stmt.condition):
                for k, v in ts:
                    if k in wanted:
                        pairs.add((k, v))
            rows = _limit([[k, v] for k, v in sorted(pairs)], stmt.limit, stmt.offset)
            if rows:
                out.append(Series(name, ["key", "value"], rows))
        return out

    def _policy_sources(self, sources: Sequence[ast.Source], db: str, rp: str | None) -> list[tuple[str, str]]:
        """(measurement, namespace) of each measurement the sources name or match, in the
        policy each names (else rp, else the default); no sources: all of that policy's."""
        if not sources:
            key = self._data_key(db, rp)
            return [(name, key) for name in self.source.measurements(key)]
        found: list[tuple[str, str]] = []
        for src in sources:
            key = self._data_key(db, getattr(src, "retention_policy", "") or rp)
            found.extend((name, key) for name in self._resolve_names([key], [src]))
        return sorted(set(found))

    def _show_field_keys(self, stmt: ast.ShowFieldKeysStatement, db: str, rp: str | None) -> list[Series]:
        out: list[Series] = []
        for name, key in self._policy_sources(stmt.sources, db, rp):
            types = self.source.field_types(key, name)
            rows = _limit([[f, types[f].influx_name] for f in sorted(types)], stmt.limit, stmt.offset)
            if rows:
                out.append(Series(name, ["fieldKey", "fieldType"], rows))
        return out

    def _show_cardinality(self, stmt: ast.ShowCardinalityStatement, db: str | None, rp: str | None) -> list[Series]:
        """Cardinality as InfluxDB 1.6 answers it: exact counts (the estimates of SHOW SERIES /
        MEASUREMENT CARDINALITY without FROM, WHERE and GROUP BY are exact counts here too, over
        every policy; the exact forms count one policy per source, as InfluxDB)."""
        what = stmt.what
        if what in ("SERIES", "MEASUREMENT") and not (stmt.exact or stmt.sources or stmt.condition
                                                       or stmt.dimensions or stmt.limit or stmt.offset):
            keys = self._policy_keys(db) if db and self.source.has_database(db) else []
            names = self._measurements(keys)
            total = sum(len(self._series(keys, n)) for n in names) if what == "SERIES" else len(names)
            return [Series(None, ["cardinality estimation"], [[total]])]
        if _mentions_time(stmt.condition):
            if what == "TAG VALUES":
                return []  # InfluxDB 1.6.7 answers no series rather than an error
            label = f"{what} EXACT" if stmt.exact or what != "FIELD KEY" else what
            raise QueryError(f"SHOW {label} CARDINALITY doesn't support time in WHERE clause")
        database = self._require_db(db)
        if any(isinstance(d.expr, ast.Call) for d in stmt.dimensions):
            raise QueryError(f"GROUP BY time() is not supported by edgets in SHOW {what} CARDINALITY")
        sources: list[tuple[str, str]] = []  # (namespace, measurement)
        for src in stmt.sources or [ast.Measurement("", regex=ast.RegexLiteral(""))]:
            src_db = src.database or database  # type: ignore[union-attr]
            if self.source.has_database(src_db):
                key = self._data_key(src_db, src.retention_policy or rp)  # type: ignore[union-attr]
                sources.extend((key, n) for n in self._resolve_names([key], [src]))
        sources = sorted(set(sources), key=lambda s: s[1])
        tags = _group_tags(stmt.dimensions, sorted({k for d, n in sources for k in self.source.tag_keys(d, n)}))
        counts: dict[tuple[str | None, tuple[str, ...]], int] = {}
        measurements: dict[tuple[str, ...], set[str]] = {}
        absent = None if what == "TAG VALUES" else ""
        for src_db, name in sources:
            groups: dict[tuple[str, ...], list[TagSet]] = {}
            for ts in self._filtered_series([src_db], name, stmt.condition, other=False, absent=absent):
                values = dict(ts)
                groups.setdefault(tuple(values.get(t, "") for t in tags), []).append(ts)
            wanted = _keys_with(stmt.key_op, stmt.key_expr, self.source.tag_keys(src_db, name))
            fields = len(self.source.field_types(src_db, name)) if what == "FIELD KEY" else 0
            for key, members in groups.items():
                if what == "SERIES":
                    count = len(members)
                elif what == "TAG KEY":
                    count = len({k for ts in members for k, _ in ts})
                elif what == "TAG VALUES":
                    count = len({v for ts in members for k, v in ts if k in wanted})
                elif what == "FIELD KEY":
                    count = fields
                else:
                    measurements.setdefault(key, set()).add(name)
                    continue
                if count:
                    counts[(name, key)] = count
        for key, names in measurements.items():
            counts[(None, key)] = len(names)
        if stmt.offset:
            return []  # one row per series: any OFFSET skips it
        return [Series(name, ["count"], [[count]], dict(zip(tags, key, strict=True)) if tags else None)
                for (name, key), count in sorted(counts.items(), key=lambda item: (item[0][0] or "", item[0][1]))]

    def _show_series(self, stmt: ast.ShowSeriesStatement, db: str, rp: str | None) -> list[Series]:
        """As InfluxDB 1.6 (in-memory index): each source is read through the shards of its
        policy (the one it names, else rp, else the default), and every shard answers from
        the database-wide index: a policy holding rows lists the series of every policy, one
        holding none lists nothing."""
        everywhere = self._policy_keys(db)
        found: list[str] = []
        for src in stmt.sources or [None]:
            key = self._data_key(db, getattr(src, "retention_policy", "") or rp)
            if not self.source.measurements(key):
                continue
            names = self._resolve_names(everywhere, [src]) if src is not None else self._measurements(everywhere)
            for name in names:
                found.extend(series_key(name, ts) for ts in self._filtered_series(everywhere, name, stmt.condition))
        found = _limit(sorted(set(found)), stmt.limit, stmt.offset)
        return [Series(None, ["key"], [[k] for k in found])] if found else []

    # ---- SELECT -----------------------------------------------------------------------------
    def _select_into(self, stmt: ast.SelectStatement, db: str | None, rp: str | None, now: int) -> Series:
        """Run the SELECT, write its rows as points into the target (InfluxDB 1.x rules: GROUP BY
        tags stay tags, other columns, tags selected as columns included, become fields; a
        target naming no policy gets rp, else the target database's default)."""
        target = stmt.into
        assert target is not None
        if self.writer is None:
            raise QueryError("SELECT INTO is not supported by this server: its store is read-only")
        database = self._require_db(target.database or db)
        into_rp = target.retention_policy or rp or None
        self._data_key(database, into_rp)  # "retention policy not found: x" before any work
        series = self._select(replace(stmt, into=None), db, rp, now)
        batches = result_batches(series, None if target.back_reference else target.name)
        try:
            return write_result(self.writer, database, into_rp, batches)
        except ValueError as exc:
            raise QueryError(str(exc)) from exc

    def _select(self, stmt: ast.SelectStatement, db: str | None, rp: str | None, now: int,
                outer: _OuterContext | None = None) -> list[Series]:
        if stmt.into is not None:
            raise QueryError("SELECT INTO is not supported in a subquery")
        trange, rest = split_condition(stmt.condition, now)
        interval, offset = _group_by_time(stmt.dimensions)
        if outer is not None:
            # InfluxDB subquery rules: outer time range narrows the inner one, an inner query
            # without GROUP BY time inherits the outer interval, outer tags are added to the
            # inner grouping, and fill(null) becomes fill(none) for inner aggregates.
            trange = trange.intersect(outer.time_range)
            if not interval and outer.interval:
                interval, offset = outer.interval, outer.offset
            extra = [ast.Dimension(ast.VarRef(t)) for t in outer.tags]
            stmt = ast.SelectStatement(
                fields=stmt.fields, sources=stmt.sources, condition=stmt.condition,
                dimensions=[*stmt.dimensions, *extra], fill="none" if stmt.fill == "null" else stmt.fill,
                fill_value=stmt.fill_value, sort_fields=stmt.sort_fields, limit=stmt.limit,
                offset=stmt.offset, slimit=stmt.slimit + outer.slimit, soffset=stmt.soffset + outer.soffset,
                tz=stmt.tz,
            )
            if interval and not any(isinstance(d.expr, ast.Call) and d.expr.name == "time"
                                    for d in stmt.dimensions):
                stmt.dimensions.append(ast.Dimension(ast.Call("time", [ast.DurationLiteral(interval),
                                                                       ast.DurationLiteral(offset)])))
        datas: list[MeasurementData] = []
        for src in stmt.sources:
            if isinstance(src, ast.SubQuery):
                context = _OuterContext(trange, interval, offset,
                                        [t for t in _dimension_tag_names(stmt.dimensions)],
                                        stmt.slimit, stmt.soffset)
                datas.append(self._subquery_data(src.statement, db, rp, now, context))
                continue
            # InfluxDB 1.x: measurement names and tag keys from the database-wide index, fields
            # and rows from the source's policy
            key = self._data_key(src.database or db, src.retention_policy or rp)
            everywhere = self._policy_keys(src.database or db)  # type: ignore[arg-type]
            for name in self._resolve_names(everywhere, [src]):
                datas.append(self._measurement_data(key, name, self._tag_keys(everywhere, name)))
        # wildcards expand over the union of all sources' fields and tags (as InfluxDB)
        union_types: dict[str, FieldType] = {}
        union_tags: set[str] = set()
        for data in datas:
            for name, ftype in data.field_types.items():
                union_types.setdefault(name, ftype)
            union_tags.update(data.tag_keys)
        expansion = MeasurementData("", union_types, sorted(union_tags), datas[0].reader) if datas else None
        out: list[Series] = []
        for data in datas:
            out.extend(self._select_measurement(stmt, data, trange, rest, interval, offset, now, expansion))
        out.sort(key=lambda s: (s.name or "", sorted((s.tags or {}).items())))
        if stmt.soffset and not stmt.slimit:
            return []  # InfluxDB 1.6.7 returns no series for SOFFSET without SLIMIT
        out = _limit(out, stmt.slimit, stmt.soffset)
        if stmt.sort_fields and not stmt.sort_fields[0].ascending:
            out.reverse()  # InfluxDB emits series in descending order too
        return out

    def _measurement_data(self, db: str, name: str, tag_keys: list[str]) -> MeasurementData:
        """The reads of measurement `name` of namespace `db` (a data key)."""
        def reader(start: int | None, end: int | None, columns: list[str],
                   tag_filter: dict[str, set[str]] | None) -> pa.Table:
            return self.source.read(db, name, start_ns=start, end_ns=end, columns=columns,
                                    tag_filter=tag_filter or None)

        last_rows = getattr(self.source, "last_rows", None)
        tail_reader = None
        if last_rows is not None:
            def tail_reader(n: int, start: int | None, end: int | None, columns: list[str],
                            tag_filter: dict[str, set[str]] | None) -> pa.Table:
                return last_rows(db, name, n=n, start_ns=start, end_ns=end, columns=columns,
                                 tag_filter=tag_filter or None)

        filtered_reader = None
        if self._read_filters_fields:
            def filtered_reader(start: int | None, end: int | None, columns: list[str],
                                tag_filter: dict[str, set[str]] | None,
                                conditions: list[tuple[str, str, float | int]]) -> pa.Table:
                return self.source.read(db, name, start_ns=start, end_ns=end, columns=columns,  # type: ignore[call-arg]
                                        tag_filter=tag_filter or None, field_filter=conditions)

        return MeasurementData(name, self.source.field_types(db, name), sorted(tag_keys), reader, tail_reader,
                               True, filtered_reader)

    def _subquery_data(self, inner: ast.SelectStatement, db: str | None, rp: str | None, now: int,
                       outer: _OuterContext) -> MeasurementData:
        series = self._select(inner, db, rp, now, outer)
        tag_keys = sorted({k for s in series for k in (s.tags or {})})
        columns: dict[str, list[Any]] = {"time": []}
        value_columns: list[str] = []
        for s in series:
            for col in s.columns[1:]:
                if col not in value_columns:
                    value_columns.append(col)
        for key in tag_keys:
            columns[key] = []
        for col in value_columns:
            columns[col] = []
        for s in series:
            idx = {c: i for i, c in enumerate(s.columns)}
            for row in s.rows():
                columns["time"].append(row[0])
                for key in tag_keys:
                    columns[key].append((s.tags or {}).get(key))
                for col in value_columns:
                    columns[col].append(row[idx[col]] if col in idx else None)
        arrays: dict[str, pa.Array] = {"time": pa.array(columns["time"], type=pa.int64())}
        types: dict[str, FieldType] = {}
        for key in tag_keys:
            arrays[key] = pa.array(columns[key], type=pa.string())
        for col in value_columns:
            arr = pa.array(columns[col])
            if pa.types.is_null(arr.type):
                arr = arr.cast(pa.float64())
            arrays[col] = arr
            types[col] = FieldType.from_arrow(arr.type)
        table = pa.table(arrays)
        name = series[0].name if series else ""

        def reader(start: int | None, end: int | None, cols: list[str],
                   tag_filter: dict[str, set[str]] | None) -> pa.Table:
            return table

        return MeasurementData(name or "", types, tag_keys, reader)

    def _select_measurement(
        self, stmt: ast.SelectStatement, data: MeasurementData, trange: TimeRange,
        rest: ast.Expr | None, interval: int, offset: int, now: int,
        expansion: MeasurementData | None = None,
    ) -> list[Series]:
        group_tags = _group_tags(stmt.dimensions, (expansion or data).tag_keys)
        columns = _expand_fields(stmt.fields, expansion or data, group_tags)
        if not columns:
            return []
        is_raw = not any(ast._contains_call(c.expr) for c in columns)
        if interval and is_raw:
            raise QueryError("GROUP BY requires at least one aggregate function")
        min_ns = trange.min_ns if trange.min_ns is not None else MIN_TIME_NS
        if trange.max_ns is not None:
            max_ns = trange.max_ns
        else:
            max_ns = now if interval else MAX_TIME_NS
        if min_ns > max_ns:
            return []
        tag_keys = set(data.tag_keys)
        # pushed: storage applies every WHERE term (tag equalities) itself
        pushed = self.fast_paths and data.filters_tags and all(
            _tag_equalities(term, tag_keys) is not None for term in _conjuncts(rest))
        needed = set()
        for col in columns:
            needed |= _var_names(col.expr)
        if not pushed:  # the WHERE is evaluated on the rows read: its columns are needed
            needed |= _var_names(rest) if rest is not None else set()
        needed |= set(group_tags)
        if is_raw:
            needed |= set(data.tag_keys)  # tie-breakers for rows at equal times
        read_cols = sorted(n for n in needed if n in data.field_types or n in data.tag_keys)
        tag_filter = _tag_filter(rest, set(data.tag_keys))
        end = max_ns + 1 if max_ns < MAX_TIME_NS else None
        desc = bool(stmt.sort_fields) and not stmt.sort_fields[0].ascending
        tail = (data.tail_reader is not None and is_raw and desc and bool(stmt.limit) and rest is None
                and all(isinstance(c.expr, ast.VarRef) for c in columns))
        if tail:
            # lastpoint shape: each group's newest rows are among its series' newest rows
            table = data.tail_reader(stmt.offset + stmt.limit, min_ns, end, read_cols, tag_filter)  # type: ignore[misc]
        elif (conditions := self._pushable_conditions(stmt, data, is_raw, group_tags, desc, rest)):
            # raw rows filtered by numeric field comparisons: evaluated per row group in storage
            table = data.filtered_reader(min_ns, end, read_cols, tag_filter, conditions)  # type: ignore[misc]
        else:
            table = data.reader(min_ns, end, read_cols, tag_filter)
        table = _normalise_table(table, data, read_cols, min_ns, max_ns)
        if table.num_rows == 0:
            return []
        if tail and self.fast_paths:
            ranked = _raw_tail(stmt, data, table, columns, group_tags)
            if ranked is not None:
                return ranked
        if (self.fast_paths and is_raw and not group_tags and not stmt.limit and not stmt.offset
                and not desc and data.filters_tags):
            fast = _raw_arrow(stmt, data, table, columns, rest)
            if fast is not None:
                return fast
        ctx = _SqlContext(data.field_types, set(data.tag_keys))
        if is_raw:
            where = ctx.condition(rest) if rest is not None else "TRUE"
            with self._registered(table) as view:
                return self._raw(stmt, data, view, columns, group_tags, where, ctx)
        where = "TRUE" if rest is None or pushed else ctx.condition(rest)
        return self._aggregate(stmt, data, table, columns, group_tags, where, ctx, interval,
                               offset, min_ns if trange.min_ns is not None else None, max_ns, pushed)

    def _pushable_conditions(self, stmt: ast.SelectStatement, data: MeasurementData, is_raw: bool,
                             group_tags: list[str], desc: bool,
                             rest: ast.Expr | None) -> list[tuple[str, str, float | int]]:
        """The numeric field comparisons of a WHERE the raw arrow path will evaluate (AND of tag
        equalities and such comparisons only), for the storage reader; [] when not applicable."""
        if (data.filtered_reader is None or not self.fast_paths or not is_raw or group_tags
                or stmt.limit or stmt.offset or desc or not data.filters_tags or rest is None):
            return []
        tag_keys = set(data.tag_keys)
        conditions = []
        for term in _conjuncts(rest):
            if _tag_equalities(term, tag_keys) is not None:
                continue
            found = _field_comparison(term, data)
            if found is None:
                return []
            conditions.append(found)
        return conditions

    def _view_name(self) -> str:
        with self._cursors_lock:
            self._table_seq += 1
            return f"src_{self._table_seq}"

    @contextmanager
    def _registered(self, table: pa.Table, view: str | None = None) -> Iterator[str]:
        """`table` as a DuckDB view of this thread's cursor, under the query timeout watchdog."""
        view = view or self._view_name()
        con = self._cursor()
        con.register(view, table)
        alarm = self._watchdog.arm(self.timeout_s, con.interrupt)
        try:
            yield view
        finally:
            self._watchdog.disarm(alarm)
            con.unregister(view)

    # ---- raw ----------------------------------------------------------------------------------
    def _raw(self, stmt: ast.SelectStatement, data: MeasurementData, view: str,
             columns: list[OutputColumn], group_tags: list[str], where: str,
             ctx: _SqlContext) -> list[Series]:
        select = ['"time" AS __t'] + [f"{_tag_sql(t, data)} AS __g{i}" for i, t in enumerate(group_tags)]
        field_cols: list[str] = []
        for i, col in enumerate(columns):
            select.append(f"{ctx.value(col.expr)} AS __c{i}")
            if _var_names(col.expr) & set(data.field_types):
                field_cols.append(f"__c{i}")
        if not field_cols:
            return []  # InfluxDB returns no rows when no selected column is a field
        # hidden tie-breakers so rows at equal times come out in series-key order
        tie_tags = [t for t in data.tag_keys if t not in group_tags]
        select.extend(f"COALESCE({_q(t)}, '') AS __k{i}" for i, t in enumerate(tie_tags))
        desc = bool(stmt.sort_fields) and not stmt.sort_fields[0].ascending
        order = " DESC" if desc else ""
        groups = [f"__g{i}" for i in range(len(group_tags))]
        inner = f"SELECT {', '.join(select)} FROM {view} WHERE {where}"
        keep = " OR ".join(f"{c} IS NOT NULL" for c in field_cols) or "FALSE"
        sql = f"SELECT * FROM ({inner}) WHERE ({keep})"
        time_order = ", ".join([f"__t{order}", *[f"__k{i}{order}" for i in range(len(tie_tags))]])
        if stmt.limit:
            # narrow pre-pass: each group's k-th time, so only rows beyond it are projected/ranked
            k = stmt.offset + stmt.limit
            pick, bound, cmp = ("max", "list_min", ">=") if desc else ("min", "list_max", "<=")
            fields = sorted(set().union(*(_var_names(c.expr) for c in columns)) & set(data.field_types))
            present = " OR ".join(f"{_q(f)} IS NOT NULL" for f in fields)
            gexprs = [_tag_sql(t, data) for t in group_tags]
            gsel = "".join(f"{g} AS __cg{i}, " for i, g in enumerate(gexprs))
            group_by = f" GROUP BY {', '.join(gexprs)}" if gexprs else ""
            cut = f"SELECT {gsel}{bound}({pick}(\"time\", {k})) AS __cut FROM {view} WHERE ({where}) AND ({present}){group_by}"
            join = " AND ".join(f"{g} IS NOT DISTINCT FROM __c.__cg{i}" for i, g in enumerate(gexprs)) or "TRUE"
            inner = (f"SELECT {', '.join(select)} FROM {view} JOIN ({cut}) AS __c ON {join} "
                     f"WHERE ({where}) AND \"time\" {cmp} __c.__cut")
            sql = f"SELECT * FROM ({inner}) WHERE ({keep})"
        if stmt.limit or stmt.offset:
            part = f"PARTITION BY {', '.join(groups)} " if groups else ""
            rank = f"row_number() OVER ({part}ORDER BY {time_order})"
            hi = f" AND {rank} <= {stmt.offset + stmt.limit}" if stmt.limit else ""
            sql += f" QUALIFY {rank} >= {stmt.offset + 1}{hi}"
        sql += " ORDER BY " + ", ".join([*groups, time_order])
        result = self._cursor().sql(sql).to_arrow_table()
        names = _column_names(columns)
        ng = len(group_tags)
        n = result.num_rows
        if n == 0:
            return []
        times = result.column(0).to_numpy()
        # whole columns to Python lists at once (NaN/inf -> null), groups are runs of equal keys
        values = [_json_column(result.column(1 + ng + i)) for i in range(len(columns))]
        starts, keys = _group_runs(result, groups)
        bounds = [*starts, n]
        out = []
        for a, b in zip(bounds, bounds[1:], strict=False):
            tags = {t: keys[i][a] for i, t in enumerate(group_tags)} if ng else None
            out.append(Series(data.name, ["time", *names], [], tags, stmt.tz, times=times[a:b],
                              value_columns=[col[a:b] for col in values]))
        return out

    # ---- aggregates ---------------------------------------------------------------------------
    def _aggregate(self, stmt: ast.SelectStatement, data: MeasurementData, table: pa.Table,
                   columns: list[OutputColumn], group_tags: list[str], where: str,
                   ctx: _SqlContext, interval: int, offset: int, lower: int | None,
                   max_ns: int, pushed: bool = False) -> list[Series]:
        """`pushed`: `table` needs no WHERE filtering beyond read() (enables the numpy path for
        plain count/sum/mean/min/max over GROUP BY time and tags; else DuckDB SQL)."""
        specs: dict[tuple[Any, ...], AggSpec] = {}
        calls = 0
        aux = [c.expr.name for c in columns if isinstance(c.expr, ast.VarRef)]
        call_columns = [c for c in columns if not isinstance(c.expr, ast.VarRef)]
        for col in call_columns:
            _check_no_raw_mix(col.expr)
            calls += _collect_specs(col.expr, specs, data.field_types, interval)
        only = next(iter(specs.values())) if len(specs) == 1 else None
        if aux:
            if calls == 1 and only is not None and only.name in SELECTORS:
                only.aux = tuple(aux)
            elif calls > 1 and all(s.name in SELECTORS for s in specs.values()):
                raise QueryError("mixing multiple selector functions with tags or fields is not supported")
            else:
                raise QueryError("mixing aggregate and non-aggregate queries is not supported")
        zone_windows: ZoneWindows | None = None  # tz(): windows follow the zone's offset changes
        if stmt.tz and interval:
            times = table.column("time").to_numpy()
            lo = lower if lower is not None else (int(times.min()) if len(times) else max_ns)
            zone_windows = ZoneWindows(stmt.tz, interval, offset, min(lo, max_ns), max_ns)
            group = group_ids(table, group_tags)[0] if group_tags else None
            descending = bool(stmt.sort_fields) and not stmt.sort_fields[0].ascending
            table = table.append_column(
                "__bucket", pa.array(zone_windows.assign_groups(times, group, descending), type=pa.int64()))
        multi = [s for s in specs.values() if s.name in MULTI_ROW or s.name == "raw"]
        raw_transforms = all(s.name == "raw" for s in multi) and all(
            _is_raw_transform(c.expr) for c in call_columns)
        if multi and len(call_columns) > 1 and not raw_transforms:
            raise QueryError(f"selector function {multi[0].name}() cannot be combined with other functions")
        point_time = not interval and calls == 1 and only is not None and only.name in SELECTORS
        spec_list = list(specs.values())
        groups: dict[tuple[str, ...], dict[int, list[Any]]] = {}
        bucket_runs: dict[tuple[str, ...], BucketRuns] | None = None
        first_time: int | None = None
        limited = False
        numpy_path = pushed and interval and not aux and zone_windows is None and all(
            s.name in BUCKET_AGGREGATES and not s.distinct and s.field in data.field_types
            and data.field_types[s.field] in (FieldType.FLOAT, FieldType.INTEGER) for s in spec_list)
        if numpy_path:
            bucket_runs = bucket_aggregates(table, group_tags, [(s.name, s.field) for s in spec_list],
                                            interval, offset)
        else:
            aux_sql = [ctx.value(ast.VarRef(name)) for name in aux]
            bucket_sql = (
                '"__bucket"' if zone_windows is not None else
                f'(("time" - {offset}) - ((("time" - {offset}) % {interval}) + {interval}) % {interval} + {offset})'
                if interval else "0"
            )
            select = [f"{_tag_sql(t, data)} AS __g{i}" for i, t in enumerate(group_tags)] + [f"{bucket_sql} AS __b"]
            for i, spec in enumerate(spec_list):
                select.append(f"{_agg_sql(spec, data.field_types, point_time or bool(aux), aux_sql)} AS __a{i}")
            for i, spec in enumerate(spec_list):  # did the bucket hold any value of this field?
                present_sql = f"count({_q(spec.field)})" if spec.field in data.field_types else "0"
                select.append(f"{present_sql} AS __p{i}")
            ng = len(group_tags)
            group_by = ", ".join([f"__g{i}" for i in range(ng)] + ["__b"])
            view = self._view_name()
            sql = f"SELECT {', '.join(select)} FROM {view} WHERE {where} GROUP BY {group_by}"
            with self._registered(table, view):
                fetched = self._cursor().execute(sql).fetchall()
            for row in fetched:
                key = tuple("" if v is None else v for v in row[:ng])
                groups.setdefault(key, {})[row[ng]] = list(row[ng + 1 :])
        if interval:
            present = ([b for runs in bucket_runs.values() for b in runs.buckets] if bucket_runs is not None
                       else [b for g in groups.values() for b in g])
            if not present:
                return []
            if stmt.fill == "none":
                buckets = sorted(set(present))
            else:
                if zone_windows is not None:  # windows are laid out per series (see group loop)
                    zone_span = (zone_windows.start_of(lower) if lower is not None else min(present),
                                 zone_windows.start_of(max_ns))
                start = _window(lower, interval, offset) if lower is not None else min(present)
                end = _window(max_ns, interval, offset)
                bucket_range = range(start, end + 1, interval) if zone_windows is None else range(0)
                plain = not multi and not any(_has_transform(c.expr) for c in columns)
                if stmt.limit and plain and stmt.fill in ("null", "number") and zone_windows is None:
                    # LIMIT/OFFSET pick buckets directly: no need to materialise the whole range
                    desc = bool(stmt.sort_fields) and not stmt.sort_fields[0].ascending
                    ordered = bucket_range[::-1] if desc else bucket_range
                    buckets = sorted(ordered[stmt.offset : stmt.offset + stmt.limit])
                    bucket_range = range(0)
                    limited = True
                if len(bucket_range) > MAX_BUCKETS:
                    raise QueryError(f"max-select-buckets limit exceeded: ({len(bucket_range)}/{MAX_BUCKETS})")
                if not limited:
                    buckets = list(bucket_range)
        else:
            buckets = [0]
            first_time = lower if lower is not None else 0
        names = _column_names(columns)
        plain_columns: list[int] | None = None
        if numpy_path and stmt.fill in ("null", "none", "number") and all(
                isinstance(c.expr, ast.Call) and c.expr.name in BUCKET_AGGREGATES for c in columns):
            index = {s.key: i for i, s in enumerate(spec_list)}
            plain_columns = [index[_spec_key_of(c.expr)] for c in columns]  # type: ignore[arg-type]
            plain_gaps: list[Any] | None = None
            if stmt.fill == "number":
                plain_gaps = [stmt.fill_value] * len(columns)
            elif stmt.fill == "null":
                plain_gaps = [0 if spec_list[i].name == "count" and spec_list[i].field in data.field_types
                              else None for i in plain_columns]
        out: list[Series] = []
        for key in sorted(bucket_runs if bucket_runs is not None else groups):
            if plain_columns is not None and bucket_runs is not None:
                rows = plain_rows(plain_gaps, plain_columns, bucket_runs[key], buckets)
            else:
                per_bucket = bucket_runs[key].per_bucket() if bucket_runs is not None else groups[key]
                series_buckets = buckets
                if zone_windows is not None and stmt.fill != "none":
                    try:
                        windows = sorted(per_bucket)  # without a lower bound each series starts at its data
                        first = zone_span[0] if lower is not None else windows[0]
                        if stmt.sort_fields and not stmt.sort_fields[0].ascending:  # InfluxDB steps back
                            series_buckets = zone_windows.fill_times(
                                zone_span[1], first if lower is not None else None, windows[::-1], MAX_BUCKETS,
                                descending=True)[::-1]
                        else:
                            series_buckets = zone_windows.fill_times(first, zone_span[1], windows, MAX_BUCKETS)
                    except ValueError:
                        raise QueryError(f"max-select-buckets limit exceeded: (>{MAX_BUCKETS}/{MAX_BUCKETS})") from None
                rows = self._group_rows(stmt, columns, spec_list, per_bucket, series_buckets, interval,
                                        point_time, first_time, data.field_types)
            if stmt.sort_fields and not stmt.sort_fields[0].ascending:
                rows.reverse()
            if not limited:
                rows = _limit(rows, stmt.limit, stmt.offset)
            if not rows:
                continue
            tags = dict(zip(group_tags, key, strict=True)) if group_tags else None
            out.append(Series(data.name, ["time", *names], rows, tags, stmt.tz))
        return out

    def _group_rows(self, stmt: ast.SelectStatement, columns: list[OutputColumn],
                    specs: list[AggSpec], per_bucket: dict[int, list[Any]], buckets: list[int],
                    interval: int, point_time: bool, first_time: int | None,
                    types: dict[str, FieldType]) -> list[list[Any]]:
        # finish each aggregate per bucket: value and (for selectors) the point's time
        finished: list[dict[int, tuple[Any, int | None, list[Any]]]] = []
        for i, spec in enumerate(specs):
            values: dict[int, tuple[Any, int | None, list[Any]]] = {}
            if spec.name == "integral" and interval:
                for bucket, area in _windowed_integral(per_bucket, i, interval, spec.args[0]).items():
                    values[bucket] = (area, None, [])
                finished.append(values)
                continue
            for bucket, raw in per_bucket.items():
                values[bucket] = _finish(spec, raw[i], types)
            finished.append(values)
        ascending = not stmt.sort_fields or stmt.sort_fields[0].ascending
        multi = [i for i, s in enumerate(specs) if s.name in MULTI_ROW or s.name == "raw"]
        if multi and all(_is_raw_transform(c.expr) for c in columns):
            # transformations of raw points: each column over its field's points, merged by time
            per_col: list[list[list[Any]]] = []
            for col in columns:
                key = _spec_key_of(col.expr.args[0])  # type: ignore[union-attr]
                i = next(j for j, s in enumerate(specs) if s.key == key)
                points = [[t, v] for bucket in sorted(per_bucket)
                          for t, v, _aux in (finished[i][bucket][0] or [])]
                per_col.append(_apply_transform(col.expr, points, interval, ascending))  # type: ignore[arg-type]
            return _merge_by_time(per_col)
        if multi:
            idx = multi[0]
            rows: list[list[Any]] = []
            spec = specs[idx]
            for bucket in sorted(per_bucket):
                value = finished[idx][bucket][0]
                points = value if isinstance(value, list) else []
                for t, v, aux_values in points:
                    env: dict[tuple[Any, ...], Any] = {spec.key: v}
                    env.update({("aux", n): a for n, a in zip(spec.aux, aux_values, strict=True)})
                    row_time = t if t is not None else bucket if interval else first_time
                    rows.append([row_time, *[_eval_output(c.expr, env) for c in columns]])
            col = columns[0]
            if isinstance(col.expr, ast.Call) and col.expr.name in TRANSFORMS:
                return _apply_transform(col.expr, rows, interval, ascending)
            return rows
        # plain aggregates: fill over the bucket range
        rows = []
        fill = stmt.fill
        fill_value = stmt.fill_value
        series_values: list[list[Any]] = []
        nspec = len(specs)
        presence: list[list[bool]] = []
        for bucket in buckets:
            vals = []
            present = []
            raw = per_bucket.get(bucket)
            for i in range(nspec):
                got = finished[i].get(bucket)
                vals.append(None if got is None else got[0])
                # a percentile beyond the points selects nothing: the bucket has no value
                empty_selection = specs[i].name == "percentile" and (got is None or got[0] is None)
                present.append(raw is not None and bool(raw[nspec + i]) and not empty_selection)
            series_values.append(vals)
            presence.append(present)
        keep = [any(p) for p in presence]
        if not any(keep):
            return []
        for i, spec in enumerate(specs):
            # fill only replaces buckets without values of this field (a present null stays null)
            column = [vals[i] for vals in series_values]
            missing = [not p[i] for p in presence]
            # count fills 0, but a field this measurement lacks (a wildcard over several) stays null
            if fill == "number" or (spec.name == "count" and fill == "null" and spec.field in types):
                value = 0 if fill == "null" else fill_value
                column = [value if gap else v for v, gap in zip(column, missing, strict=True)]
            elif fill == "previous":
                prev = None
                for j, v in enumerate(column):
                    if missing[j]:
                        column[j] = prev
                    else:
                        prev = v
            elif fill == "linear":
                column = _linear_fill(buckets, [None if gap else v for v, gap in zip(column, missing, strict=True)],
                                      interval or 1)
            for j, v in enumerate(column):
                series_values[j][i] = v
        for j, bucket in enumerate(buckets):
            if fill == "none" and not keep[j]:
                continue
            if interval:
                t = bucket
            elif point_time and 0 in finished[0] and finished[0][0][1] is not None:
                t = finished[0][0][1]
            else:
                t = first_time or 0
            env = {specs[i].key: series_values[j][i] for i in range(len(specs))}
            if specs and specs[0].aux:
                got = finished[0].get(bucket)
                aux_values = got[2] if got is not None else [None] * len(specs[0].aux)
                env.update({("aux", n): a for n, a in zip(specs[0].aux, aux_values, strict=True)})
            rows.append([t, *[_eval_output(c.expr, env) for c in columns]])
        transforms = [c for c in columns if isinstance(c.expr, ast.Call) and c.expr.name in TRANSFORMS]
        if transforms:
            if len(columns) > 1:
                return _merge_by_time([
                    _apply_transform(c.expr, [[r[0], r[1 + k]] for r in rows], interval, ascending)  # type: ignore[arg-type]
                    for k, c in enumerate(columns)])
            return _apply_transform(columns[0].expr, rows, interval, ascending)  # type: ignore[arg-type]
        return rows


# ---- raw rows without DuckDB ------------------------------------------------------------------
_ARROW_COMPARE = {">": pc.greater, ">=": pc.greater_equal, "<": pc.less, "<=": pc.less_equal,
                  "=": pc.equal, "!=": pc.not_equal}


def _parameters(function: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def _field_comparison(term: ast.Expr, data: MeasurementData) -> tuple[str, str, float | int] | None:
    """(field, op, number) for `numeric_field op number` (either side); None for anything else."""
    while isinstance(term, ast.ParenExpr):
        term = term.expr
    if not isinstance(term, ast.BinaryExpr) or term.op not in _ARROW_COMPARE:
        return None
    ref, lit, op = term.lhs, term.rhs, term.op
    if isinstance(ref, ast.IntegerLiteral | ast.NumberLiteral):
        ref, lit, op = lit, ref, _FLIP[op] if op in _FLIP else op
    if not (isinstance(ref, ast.VarRef) and isinstance(lit, ast.IntegerLiteral | ast.NumberLiteral)):
        return None
    if ref.type not in (None, "field") or ref.name in data.tag_keys:
        return None
    if data.field_types.get(ref.name) not in (FieldType.FLOAT, FieldType.INTEGER):
        return None
    return ref.name, op, lit.value


def _plain_references(columns: list[OutputColumn], data: MeasurementData) -> bool:
    """Every column is a plain field or tag reference (no cast, no missing name)."""
    tag_keys = set(data.tag_keys)
    for col in columns:
        expr = col.expr
        if not isinstance(expr, ast.VarRef) or expr.type not in (None, "field", "tag"):
            return False
        is_field, is_tag = expr.name in data.field_types, expr.name in tag_keys
        if is_field == is_tag or (expr.type == "tag" and not is_tag) or (expr.type == "field" and not is_field):
            return False
    return True


def _has_a_selected_field(table: pa.Table, columns: list[OutputColumn], data: MeasurementData) -> pa.Array | None:
    """Per row: does some selected field have a value (InfluxDB leaves out rows without one)?
    None when no selected column is a field (the answer is no rows)."""
    fields = [c.expr.name for c in columns if c.expr.name in data.field_types]  # type: ignore[union-attr]
    if not fields:
        return None
    mask = table.column(fields[0]).is_valid()
    for name in fields[1:]:
        mask = pc.or_(mask, table.column(name).is_valid())
    return mask


def _group_runs(table: pa.Table, group_tags: list[str]) -> tuple[list[int], list[list[str]]]:
    """Start rows of the runs of equal group tag values (table sorted by them) and each tag's
    values per row ("" for a null or absent tag)."""
    n = table.num_rows
    starts = [0]
    values: list[list[str]] = []
    if not group_tags or n == 0:
        return starts, values
    change = np.zeros(n - 1, dtype=bool)
    for tag in group_tags:
        col = table.column(tag).combine_chunks().fill_null("") if tag in table.column_names \
            else pa.array([""] * n, type=pa.string())
        values.append(col.to_pylist())
        codes = col.dictionary_encode().indices.to_numpy(zero_copy_only=False)
        change |= codes[1:] != codes[:-1]
    starts.extend((np.flatnonzero(change) + 1).tolist())
    return starts, values


def _raw_tail(stmt: ast.SelectStatement, data: MeasurementData, table: pa.Table,
              columns: list[OutputColumn], group_tags: list[str]) -> list[Series] | None:
    """The lastpoint shape (plain fields/tags, no WHERE but time, ORDER BY time DESC, LIMIT) over
    the few rows a tail read gives: per group the rows ranked by time, then the other tags,
    descending, as the DuckDB path ranks them, and cut to OFFSET/LIMIT with pyarrow. None when
    the columns need that path."""
    if not _plain_references(columns, data):
        return None
    mask = _has_a_selected_field(table, columns, data)
    if mask is None:
        return []
    table = table.filter(mask)
    if table.num_rows == 0:
        return []
    present = set(table.column_names)
    ties = [t for t in data.tag_keys if t not in group_tags and t in present]
    # as the SQL path: groups ascending (a null tag last), then time and the other tags descending
    sort_keys = [(t, "ascending", "at_end") for t in group_tags if t in present] \
        + [("time", "descending", "at_end")] + [(t, "descending", "at_end") for t in ties]
    table = table.take(pc.sort_indices(table, sort_keys=sort_keys))
    starts, _values = _group_runs(table, group_tags)
    run_start = np.repeat(np.array(starts, dtype=np.int64), np.diff([*starts, table.num_rows]))
    rank = np.arange(table.num_rows, dtype=np.int64) - run_start
    keep = (rank >= stmt.offset) & (rank < stmt.offset + stmt.limit)
    if not keep.all():
        table = table.filter(pa.array(keep))
    starts, group_values = _group_runs(table, group_tags)
    times = table.column("time").to_numpy()
    values = [_json_column(table.column(c.expr.name)) for c in columns]  # type: ignore[union-attr]
    names = _column_names(columns)
    out = []
    for a, b in zip(starts, [*starts[1:], table.num_rows], strict=True):
        tags = {t: group_values[i][a] for i, t in enumerate(group_tags)} if group_tags else None
        out.append(Series(data.name, ["time", *names], [], tags, stmt.tz, times=times[a:b],
                          value_columns=[col[a:b] for col in values]))
    return out


def _raw_arrow(stmt: ast.SelectStatement, data: MeasurementData, table: pa.Table,
               columns: list[OutputColumn], rest: ast.Expr | None) -> list[Series] | None:
    """Raw SELECT of plain fields/tags without GROUP BY tags, LIMIT or DESC, WHERE made of pushed
    tag equalities and numeric field comparisons: filtered and ordered with pyarrow.compute
    (same rows and order as the DuckDB path). None when the statement needs that path."""
    tag_keys = set(data.tag_keys)
    comparisons = []
    for term in _conjuncts(rest):
        if _tag_equalities(term, tag_keys) is not None:
            continue
        found = _field_comparison(term, data)
        if found is None:
            return None
        comparisons.append(found)
    if not _plain_references(columns, data):
        return None
    mask = _has_a_selected_field(table, columns, data)
    if mask is None:
        return []
    for name, op, value in comparisons:
        mask = pc.and_(mask, _ARROW_COMPARE[op](table.column(name), pa.scalar(value)).fill_null(False))
    table = table.filter(mask)
    if table.num_rows == 0:
        return []
    keys = [("time", "ascending", "at_start")] + [
        (t, "ascending", "at_start") for t in data.tag_keys if t in table.column_names]  # null tag == ''
    times = table.column("time").to_numpy()
    if table.num_rows > 1 and not bool(np.all(times[1:] > times[:-1])):  # one series: in order already
        table = table.take(pc.sort_indices(table, sort_keys=keys))
        times = table.column("time").to_numpy()
    names = _column_names(columns)
    values = [_json_column(table.column(c.expr.name)) for c in columns]  # type: ignore[union-attr]
    return [Series(data.name, ["time", *names], [], None, stmt.tz, times=times, value_columns=values)]


# ---- SQL translation --------------------------------------------------------------------------
_CASTS = frozenset({"float", "integer", "string", "boolean"})


def _cast_sql(sql: str, ftype: FieldType, target: str) -> str:
    """A field cast as InfluxDB 1.x: float <-> integer convert (toward zero), a cast to another
    type family gives no value (string/boolean only keep fields of that type)."""
    if target == "float":
        return f"CAST({sql} AS DOUBLE)" if ftype in NUMERIC else "NULL"
    if target == "integer":
        if ftype == FieldType.FLOAT:
            return f"TRY_CAST(trunc({sql}) AS BIGINT)"
        return f"TRY_CAST({sql} AS BIGINT)" if ftype in NUMERIC else "NULL"
    if target == "string":
        return sql if ftype == FieldType.STRING else "NULL"
    return sql if ftype == FieldType.BOOLEAN else "NULL"


class _SqlContext:
    def __init__(self, field_types: dict[str, FieldType], tag_keys: set[str]) -> None:
        self.field_types = field_types
        self.tag_keys = tag_keys

    def _ref(self, ref: ast.VarRef) -> tuple[str, str]:
        """(sql, kind) where kind is 'tag', 'field' or 'missing'."""
        name = ref.name
        if ref.type == "tag":
            return (_q(name), "tag") if name in self.tag_keys else ("NULL", "missing")
        if ref.type is not None and ref.type != "tag":
            return (_q(name), "field") if name in self.field_types else ("NULL", "missing")
        if name in self.field_types:
            return _q(name), "field"
        if name in self.tag_keys:
            return _q(name), "tag"
        return "NULL", "missing"

    def _incomparable(self, ref: ast.Expr, other: ast.Expr) -> bool:
        if not isinstance(ref, ast.VarRef):
            return False
        _, kind = self._ref(ref)
        numeric_literal = isinstance(other, ast.IntegerLiteral | ast.NumberLiteral | ast.UnsignedLiteral)
        if kind == "tag":
            return numeric_literal or isinstance(other, ast.BooleanLiteral)
        if kind == "field":
            ftype = self.field_types[ref.name]
            if ftype in NUMERIC:
                return isinstance(other, ast.StringLiteral | ast.BooleanLiteral)
            if ftype == FieldType.STRING:
                return numeric_literal or isinstance(other, ast.BooleanLiteral)
            if ftype == FieldType.BOOLEAN:
                return numeric_literal or isinstance(other, ast.StringLiteral)
        return False

    def value(self, expr: ast.Expr) -> str:
        if isinstance(expr, ast.VarRef):
            sql, kind = self._ref(expr)
            if kind == "field" and expr.type in _CASTS:
                return _cast_sql(sql, self.field_types[expr.name], expr.type)
            return sql
        if isinstance(expr, ast.ParenExpr):
            return f"({self.value(expr.expr)})"
        if isinstance(expr, ast.IntegerLiteral | ast.UnsignedLiteral):
            return str(expr.value)
        if isinstance(expr, ast.NumberLiteral):
            return repr(float(expr.value))
        if isinstance(expr, ast.StringLiteral):
            return _sql_str(expr.value)
        if isinstance(expr, ast.BooleanLiteral):
            return "TRUE" if expr.value else "FALSE"
        if isinstance(expr, ast.DurationLiteral):
            return str(expr.ns)
        if isinstance(expr, ast.BinaryExpr):
            if expr.op in ("+", "-", "*", "%"):
                return f"({self.value(expr.lhs)} {expr.op} {self.value(expr.rhs)})"
            if expr.op == "/":
                return f"(CAST({self.value(expr.lhs)} AS DOUBLE) / {self.value(expr.rhs)})"
            if expr.op in ("&", "|", "^"):
                op = {"&": "&", "|": "|", "^": "xor"}[expr.op]
                if op == "xor":
                    return f"xor({self.value(expr.lhs)}, {self.value(expr.rhs)})"
                return f"({self.value(expr.lhs)} {op} {self.value(expr.rhs)})"
            return self.condition(expr)
        raise QueryError(f"unsupported expression in SELECT: {type(expr).__name__}")

    def condition(self, expr: ast.Expr) -> str:
        if isinstance(expr, ast.ParenExpr):
            return f"({self.condition(expr.expr)})"
        if isinstance(expr, ast.BooleanLiteral):
            return "TRUE" if expr.value else "FALSE"
        if not isinstance(expr, ast.BinaryExpr):
            raise QueryError("invalid condition")
        op = expr.op
        if op in ("AND", "OR"):
            return f"({self.condition(expr.lhs)} {op} {self.condition(expr.rhs)})"
        lhs, rhs = expr.lhs, expr.rhs
        if op in ("=~", "!~"):
            if not isinstance(rhs, ast.RegexLiteral):
                raise QueryError("invalid regex condition")
            target = lhs
            kind = self._ref(target)[1] if isinstance(target, ast.VarRef) else "field"
            sql = self.value(target)
            if kind == "tag" or kind == "missing":
                sql = f"COALESCE({sql}, '')"
            match = f"regexp_matches({sql}, {_sql_str(rhs.pattern)})"
            return f"COALESCE({'NOT ' if op == '!~' else ''}{match}, FALSE)"
        sql_op = "!=" if op == "!=" else op
        if self._incomparable(lhs, rhs) or self._incomparable(rhs, lhs):
            return "FALSE"  # InfluxDB: comparing different types matches nothing
        # tag comparisons treat a missing tag as ''
        parts = []
        kinds = []
        for side in (lhs, rhs):
            if isinstance(side, ast.VarRef):
                sql, kind = self._ref(side)
                kinds.append(kind)
                if kind == "tag":
                    sql = f"COALESCE({sql}, '')"
                elif kind == "missing" and isinstance((rhs if side is lhs else lhs), ast.StringLiteral):
                    sql = "''"
                parts.append(sql)
            else:
                kinds.append("literal")
                parts.append(self.value(side))
        return f"COALESCE({parts[0]} {sql_op} {parts[1]}, FALSE)"


def _agg_sql(spec: AggSpec, types: dict[str, FieldType], need_time: bool, aux_sql: list[str]) -> str:
    f = _q(spec.field)
    nn = f"FILTER (WHERE {f} IS NOT NULL)"
    name = spec.name
    ftype = types.get(spec.field)
    if ftype is None:
        return "NULL"
    extra = "".join(f", a{j} := {sql}" for j, sql in enumerate(aux_sql)) if spec.aux else ""
    if name == "count":
        return f"count(DISTINCT {f})" if spec.distinct else f"count({f})"
    if name == "mean":
        return f"avg(CAST({f} AS DOUBLE))"
    if name == "sum":
        if ftype in (FieldType.INTEGER, FieldType.UNSIGNED):
            return f"CAST(sum({f}) AS BIGINT)"
        return f"sum({f})"
    if name == "min":
        return f'min(struct_pack(v := {f}, t := "time"{extra})) {nn}' if need_time else f"min({f})"
    if name == "max":
        return f'max(struct_pack(v := {f}, t := -"time"{extra})) {nn}' if need_time else f"max({f})"
    if name == "first":  # earliest time; equal times: the larger value (false for booleans), as InfluxDB
        order = "ASC" if ftype == FieldType.BOOLEAN else "DESC"
        return f'first(struct_pack(t := "time", v := {f}{extra}) ORDER BY "time", {f} {order}) {nn}'
    if name == "last":
        return f'max(struct_pack(t := "time", v := {f}{extra})) {nn}'
    if name == "spread":
        return f"max({f}) - min({f})"
    if name == "stddev":
        return f"stddev_samp(CAST({f} AS DOUBLE))"
    if name == "median":
        return f"median(CAST({f} AS DOUBLE))"
    # list-based aggregates and raw transforms: (t, v) ordered by time
    return f'list(struct_pack(t := "time", v := {f}{extra}) ORDER BY "time") {nn}'


def _finish(spec: AggSpec, raw: Any, types: dict[str, FieldType]) -> tuple[Any, int | None, list[Any]]:
    """Aggregate SQL output -> (value, point time or None, aux column values of that point)."""
    name = spec.name
    no_aux = [None] * len(spec.aux)
    if raw is None:
        return None, None, no_aux
    if name in ("min", "max", "first", "last"):
        if not isinstance(raw, dict):
            return _json_value(raw), None, no_aux
        aux = [_json_value(raw[f"a{j}"]) for j in range(len(spec.aux))]
        t = -raw["t"] if name == "max" else raw["t"]
        return _json_value(raw["v"]), t, aux
    if name in ("count", "mean", "sum", "spread", "stddev", "median"):
        return _json_value(raw), None, no_aux
    points = [(p["t"], p["v"], [_json_value(p[f"a{j}"]) for j in range(len(spec.aux))]) for p in raw]
    if not points:
        return None, None, no_aux
    values = [p[1] for p in points]
    if name == "mode":
        counts: dict[Any, int] = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        best = max(counts.values())
        return _json_value(min(v for v, c in counts.items() if c == best)), None, no_aux
    if name == "percentile":
        pct = float(spec.args[0])
        ordered = sorted(points, key=lambda p: (p[1], p[0]))
        i = int(math.floor(len(ordered) * pct / 100.0 + 0.5)) - 1
        if i < 0 or i >= len(ordered):
            return None, None, no_aux
        return _json_value(ordered[i][1]), ordered[i][0], ordered[i][2]
    if name == "integral":
        unit = spec.args[0] if spec.args else 1_000_000_000
        area = 0.0
        for (t0, v0, _), (t1, v1, _) in zip(points, points[1:], strict=False):
            area += (float(v0) + float(v1)) / 2.0 * (t1 - t0) / unit
        return area, None, no_aux
    if name == "distinct":
        uniq = list(dict.fromkeys(values))  # first appearance in time order, as InfluxDB
        return [(None, _json_value(v), no_aux) for v in uniq], None, no_aux
    if name in ("top", "bottom"):
        n = int(spec.args[0])
        sign = -1 if name == "top" else 1
        tags = spec.args[1]
        if tags:  # the best point of each tag combination first, then the best n of those
            where = [spec.aux.index(t) for t in tags]
            best: dict[tuple[Any, ...], tuple[int, Any, list[Any]]] = {}
            for p in points:
                key = tuple(p[2][j] for j in where)
                held = best.get(key)
                if held is None or (sign * p[1], p[0]) < (sign * held[1], held[0]):
                    best[key] = p
            points = list(best.values())
        chosen = sorted(points, key=lambda p: (sign * p[1], p[0]))[:n]
        return [(t, _json_value(v), a) for t, v, a in sorted(chosen, key=lambda p: p[0])], None, no_aux
    if name == "sample":
        n = int(spec.args[0])
        chosen = points if len(points) <= n else random.Random(len(points)).sample(points, n)
        return [(t, _json_value(v), a) for t, v, a in sorted(chosen, key=lambda p: p[0])], None, no_aux
    if name == "raw":
        return [(t, _json_value(v), a) for t, v, a in points], None, no_aux
    raise QueryError(f"unsupported aggregate {name}")


def _windowed_integral(per_bucket: dict[int, list[Any]], index: int, interval: int,
                       unit: int) -> dict[int, float]:
    """integral() with GROUP BY time as InfluxDB: one trapezoid stream over the series; at each
    window end the value is interpolated, closes that window and opens the next one."""
    out: dict[int, float] = {}
    prev_t: int | None = None
    prev_v = 0.0
    start = end = 0
    total = 0.0
    for bucket in sorted(per_bucket):
        for point in per_bucket[bucket][index] or []:
            t, v = point["t"], float(point["v"])
            if prev_t is None:
                prev_t, prev_v, start, end = t, v, bucket, bucket + interval
                continue
            if t == prev_t:
                prev_v = v
                continue
            if t >= end:
                if prev_t != end:
                    edge = prev_v + (v - prev_v) * (end - prev_t) / (t - prev_t)
                    total += 0.5 * (edge + prev_v) * (end - prev_t) / unit
                    prev_t, prev_v = end, edge
                out[start] = total
                start, end, total = bucket, bucket + interval, 0.0
            total += 0.5 * (v + prev_v) * (t - prev_t) / unit
            prev_t, prev_v = t, v
    if prev_t is not None:
        out[start] = total
    return out


def _is_raw_transform(expr: ast.Expr) -> bool:
    return (isinstance(expr, ast.Call) and expr.name in TRANSFORMS and bool(expr.args)
            and isinstance(expr.args[0], ast.Call) and expr.args[0].name == "__raw")


def _merge_by_time(per_col: list[list[list[Any]]]) -> list[list[Any]]:
    """Rows of several single-value columns joined on time (missing cells are null)."""
    merged: dict[int, list[Any]] = {}
    for k, col_rows in enumerate(per_col):
        for t, v in col_rows:
            merged.setdefault(t, [None] * len(per_col))[k] = v
    return [[t, *merged[t]] for t in sorted(merged)]


def _apply_transform(call: ast.Call, rows: list[list[Any]], interval: int,
                     ascending: bool = True) -> list[list[Any]]:
    """A transformation over time-ascending rows; with ORDER BY time DESC InfluxDB runs it over
    the descending series (result returned ascending again, the caller reverses)."""
    points = [(r[0], r[1]) for r in rows if r[1] is not None]
    if ascending:
        return _transform_points(call, points, interval, True)
    return _transform_points(call, points[::-1], interval, False)[::-1]


def _transform_points(call: ast.Call, points: list[tuple[int, Any]], interval: int,
                      ascending: bool) -> list[list[Any]]:
    name = call.name
    out: list[list[Any]] = []
    if name in ("derivative", "non_negative_derivative"):
        # default unit: the GROUP BY interval when there is one, else 1s (as InfluxDB)
        unit = _duration_arg(call, 1, interval or 1_000_000_000)
        for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
            if t1 == t0:
                continue
            elapsed = t1 - t0 if ascending else t0 - t1
            value = (float(v1) - float(v0)) / (elapsed / unit)
            if name == "non_negative_derivative" and value < 0:
                continue
            out.append([t1, value])
    elif name in ("difference", "non_negative_difference"):
        for (_t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
            value = v1 - v0
            if name == "non_negative_difference" and value < 0:
                continue
            out.append([t1, value])
    elif name == "moving_average":
        n = int(_literal_arg(call, 1))
        if n < 1:
            raise QueryError("moving_average window must be greater than 1")
        for i in range(n - 1, len(points)):
            window = [float(v) for _, v in points[i - n + 1 : i + 1]]
            out.append([points[i][0], sum(window) / n])
    elif name == "cumulative_sum":
        total: Any = 0
        for t, v in points:
            total = total + v
            out.append([t, total])
    elif name == "elapsed":
        unit = _duration_arg(call, 1, 1)
        for (t0, _), (t1, _) in zip(points, points[1:], strict=False):
            span = t1 - t0
            out.append([t1, span // unit if span >= 0 else -((-span) // unit)])
    return out


def _duration_arg(call: ast.Call, index: int, default: int) -> int:
    if len(call.args) <= index:
        return default
    arg = call.args[index]
    if isinstance(arg, ast.DurationLiteral):
        return arg.ns
    raise QueryError(f"second argument to {call.name} must be a duration, got {type(arg).__name__}")


def _literal_arg(call: ast.Call, index: int) -> int | float:
    if len(call.args) <= index:
        raise QueryError(f"invalid number of arguments for {call.name}, expected {index + 1}, got {len(call.args)}")
    arg = call.args[index]
    if isinstance(arg, ast.IntegerLiteral | ast.NumberLiteral):
        return arg.value
    raise QueryError(f"expected integer argument in {call.name}()")


def _collect_specs(expr: ast.Expr, specs: dict[tuple[Any, ...], AggSpec],
                   types: dict[str, FieldType], interval: int) -> int:
    """Register the aggregates an output expression needs; returns how many calls it has."""
    if isinstance(expr, ast.ParenExpr):
        return _collect_specs(expr.expr, specs, types, interval)
    if isinstance(expr, ast.BinaryExpr):
        return _collect_specs(expr.lhs, specs, types, interval) + _collect_specs(expr.rhs, specs, types, interval)
    if not isinstance(expr, ast.Call):
        return 0
    if expr.name in TRANSFORMS:
        if not expr.args:
            raise QueryError(f"invalid number of arguments for {expr.name}, expected at least 1, got 0")
        inner = expr.args[0]
        if isinstance(inner, ast.Call):
            if not interval:
                raise QueryError(f"{expr.name} aggregate requires a GROUP BY interval")
            return _collect_specs(inner, specs, types, interval)
        if interval:
            raise QueryError(f"aggregate function required inside the call to {expr.name}")
        if not isinstance(inner, ast.VarRef):
            raise QueryError(f"expected field argument in {expr.name}()")
        spec = AggSpec("raw", inner.name)
        specs[spec.key] = spec
        expr.args[0] = ast.Call("__raw", [inner])
        return 1
    if expr.name == "__raw":
        return 1
    if expr.name not in AGGREGATES:
        raise QueryError(f"undefined function {expr.name}()")
    if not expr.args:
        raise QueryError(f"invalid number of arguments for {expr.name}, expected at least 1, got 0")
    arg0 = expr.args[0]
    distinct = False
    if expr.name == "count" and isinstance(arg0, ast.Call) and arg0.name == "distinct":
        distinct = True
        arg0 = arg0.args[0] if arg0.args else arg0
    if isinstance(arg0, ast.Distinct):
        arg0 = ast.VarRef(arg0.name)
        distinct = expr.name == "count"
    if not isinstance(arg0, ast.VarRef):
        raise QueryError(f"expected field argument in {expr.name}()")
    if expr.name in ("top", "bottom") and len(expr.args) < 2:
        raise QueryError(f"invalid number of arguments for {expr.name}, expected at least 2, "
                         f"got {len(expr.args)}")
    ftype = types.get(arg0.name)
    if expr.name in _NUMERIC_ONLY and ftype in _ITERATOR_TYPE:
        raise QueryError(f"unsupported {expr.name} iterator type: {_ITERATOR_TYPE[ftype]}")
    spec = AggSpec(expr.name, arg0.name, _call_args(expr), distinct)
    specs[spec.key] = spec
    return 1


def _spec_key_of(call: ast.Call) -> tuple[Any, ...]:
    if call.name == "__raw":
        return ("raw", call.args[0].name, (), False)  # type: ignore[union-attr]
    arg0 = call.args[0]
    distinct = False
    if call.name == "count" and isinstance(arg0, ast.Call) and arg0.name == "distinct":
        distinct, arg0 = True, arg0.args[0]
    if isinstance(arg0, ast.Distinct):
        distinct, arg0 = call.name == "count", ast.VarRef(arg0.name)
    return (call.name, arg0.name, _call_args(call), distinct)  # type: ignore[union-attr]


def _call_args(call: ast.Call) -> tuple[Any, ...]:
    """The literal arguments after the field: percentile N, top/bottom (N, tags), sample N, unit."""
    if call.name == "percentile":
        return (_literal_arg(call, 1),)
    if call.name in ("top", "bottom"):
        last = len(call.args) - 1
        tags = tuple(a.name for a in call.args[1:last] if isinstance(a, ast.VarRef))
        return (int(_literal_arg(call, last)), tags)
    if call.name == "sample":
        return (int(_literal_arg(call, 1)),)
    if call.name == "integral":
        return (_duration_arg(call, 1, 1_000_000_000),)
    return ()


def _eval_output(expr: ast.Expr, env: dict[tuple[Any, ...], Any]) -> Any:
    if isinstance(expr, ast.VarRef):
        return env.get(("aux", expr.name))
    if isinstance(expr, ast.Call):
        if expr.name in TRANSFORMS:
            return _eval_output(expr.args[0], env)
        return env.get(_spec_key_of(expr))
    if isinstance(expr, ast.ParenExpr):
        return _eval_output(expr.expr, env)
    if isinstance(expr, ast.IntegerLiteral | ast.NumberLiteral | ast.UnsignedLiteral):
        return expr.value
    if isinstance(expr, ast.BinaryExpr):
        lhs, rhs = _eval_output(expr.lhs, env), _eval_output(expr.rhs, env)
        if lhs is None or rhs is None or isinstance(lhs, list) or isinstance(rhs, list):
            return None
        if expr.op == "+":
            return lhs + rhs
        if expr.op == "-":
            return lhs - rhs
        if expr.op == "*":
            return lhs * rhs
        if expr.op == "/":
            return None if rhs == 0 else lhs / rhs
        if expr.op == "%":
            return None if rhs == 0 else math.fmod(lhs, rhs)
        raise QueryError(f"unsupported operator {expr.op} in SELECT")
    return None


def _has_transform(expr: ast.Expr) -> bool:
    if isinstance(expr, ast.Call):
        return expr.name in TRANSFORMS
    if isinstance(expr, ast.BinaryExpr):
        return _has_transform(expr.lhs) or _has_transform(expr.rhs)
    if isinstance(expr, ast.ParenExpr):
        return _has_transform(expr.expr)
    return False


def _check_no_raw_mix(expr: ast.Expr) -> None:
    if isinstance(expr, ast.VarRef | ast.Wildcard):
        raise QueryError("mixing aggregate and non-aggregate queries is not supported")
    if isinstance(expr, ast.BinaryExpr):
        _check_no_raw_mix(expr.lhs)
        _check_no_raw_mix(expr.rhs)
    if isinstance(expr, ast.ParenExpr):
        _check_no_raw_mix(expr.expr)


# ---- planning helpers -------------------------------------------------------------------------
def _group_by_time(dimensions: list[ast.Dimension]) -> tuple[int, int]:
    for dim in dimensions:
        expr = dim.expr
        if isinstance(expr, ast.Call) and expr.name == "time":
            if not expr.args or not isinstance(expr.args[0], ast.DurationLiteral):
                raise QueryError("time dimension expected 1 or 2 arguments")
            interval = expr.args[0].ns
            if interval <= 0:
                raise QueryError("group by interval must be positive")
            offset = 0
            if len(expr.args) > 1:
                arg = expr.args[1]
                if isinstance(arg, ast.DurationLiteral):
                    offset = arg.ns
                elif isinstance(arg, ast.Call) and arg.name == "now":
                    offset = 0
                else:
                    raise QueryError("time dimension offset must be duration or now()")
            return interval, offset % interval
    return 0, 0


def _keys_with(op: str, key_expr: ast.Expr | None, keys: Iterable[str]) -> list[str]:
    """The tag keys a SHOW TAG VALUES ... WITH KEY <op> <key_expr> clause selects."""
    if op == "IN" and isinstance(key_expr, ast.ListLiteral):
        return [k for k in keys if k in key_expr.values]
    if op in ("=", "!=") and isinstance(key_expr, ast.StringLiteral):
        return [k for k in keys if (k == key_expr.value) == (op == "=")]
    if isinstance(key_expr, ast.RegexLiteral):
        pattern = key_expr.compiled()
        return [k for k in keys if bool(pattern.search(k)) == (op == "=~")]
    return []


def _group_tags(dimensions: list[ast.Dimension], tag_keys: list[str]) -> list[str]:
    tags: list[str] = []
    for dim in dimensions:
        expr = dim.expr
        if isinstance(expr, ast.Call) and expr.name == "time":
            continue
        if isinstance(expr, ast.Wildcard):
            tags.extend(tag_keys)
        elif isinstance(expr, ast.RegexLiteral):
            pattern = expr.compiled()
            tags.extend(k for k in tag_keys if pattern.search(k))
        elif isinstance(expr, ast.VarRef):
            tags.append(expr.name)
        else:
            raise QueryError("only time() calls allowed in dimensions")
    seen: list[str] = []
    for t in tags:
        if t not in seen:
            seen.append(t)
    return sorted(seen)


def _expand_fields(fields: list[ast.Field], data: MeasurementData,
                   group_tags: list[str]) -> list[OutputColumn]:
    out: list[OutputColumn] = []
    for f in fields:
        expr = f.expr
        if isinstance(expr, ast.Wildcard | ast.RegexLiteral):
            names: list[str] = []
            pattern = expr.compiled() if isinstance(expr, ast.RegexLiteral) else None
            kind = expr.type if isinstance(expr, ast.Wildcard) else None
            if kind in (None, "field"):
                names.extend(data.field_types)
            if kind in (None, "tag"):
                names.extend(t for t in data.tag_keys if t not in group_tags)
            for name in sorted(set(names)):
                if pattern is None or pattern.search(name):
                    # typed like InfluxDB's expansion: over several measurements a name that is a
                    # field in one stays a field (null) where another has it as a tag
                    out.append(OutputColumn(name, ast.VarRef(name, "field" if name in data.field_types else "tag")))
            continue
        if isinstance(expr, ast.Call) and expr.args and isinstance(expr.args[0], ast.Wildcard | ast.RegexLiteral):
            arg = expr.args[0]
            pattern = arg.compiled() if isinstance(arg, ast.RegexLiteral) else None
            accepted = _WILDCARD_TYPES.get(expr.name, NUMERIC)
            for name in sorted(data.field_types):
                if pattern is not None and not pattern.search(name):
                    continue
                if data.field_types[name] not in accepted:
                    continue
                out.append(OutputColumn(f"{expr.name}_{name}",
                                        ast.Call(expr.name, [ast.VarRef(name), *expr.args[1:]])))
            continue
        if isinstance(expr, ast.VarRef) and expr.name == "time":
            continue  # time is always the first column
        out.append(OutputColumn(f.alias or _expr_name(expr), _copy_expr(expr), bool(f.alias)))
        if isinstance(expr, ast.Call) and expr.name in ("top", "bottom") and len(expr.args) > 2:
            # top(field, tag..., N): each tag argument is also an output column of the point
            for arg in expr.args[1:-1]:
                if not isinstance(arg, ast.VarRef):
                    raise QueryError(f"only fields or tags are allowed in {expr.name}(), found {_expr_text(arg)}")
                out.append(OutputColumn(arg.name, ast.VarRef(arg.name)))
    return out


def _expr_text(expr: ast.Expr) -> str:
    if isinstance(expr, ast.IntegerLiteral | ast.NumberLiteral | ast.UnsignedLiteral):
        return str(expr.value)
    if isinstance(expr, ast.StringLiteral):
        return "'" + expr.value + "'"
    return _expr_name(expr)


def _copy_expr(expr: ast.Expr) -> ast.Expr:
    if isinstance(expr, ast.Call):
        return ast.Call(expr.name, [_copy_expr(a) for a in expr.args])
    if isinstance(expr, ast.BinaryExpr):
        return ast.BinaryExpr(expr.op, _copy_expr(expr.lhs), _copy_expr(expr.rhs))
    if isinstance(expr, ast.ParenExpr):
        return ast.ParenExpr(_copy_expr(expr.expr))
    return expr


def _expr_name(expr: ast.Expr) -> str:
    if isinstance(expr, ast.Call):
        return expr.name
    if isinstance(expr, ast.VarRef):
        return expr.name
    if isinstance(expr, ast.ParenExpr):
        return _expr_name(expr.expr)
    if isinstance(expr, ast.BinaryExpr):
        parts = [p for p in (_binary_names(expr.lhs), _binary_names(expr.rhs)) if p]
        return "_".join(parts)
    return ""


def _binary_names(expr: ast.Expr) -> str:
    if isinstance(expr, ast.BinaryExpr):
        return "_".join(p for p in (_binary_names(expr.lhs), _binary_names(expr.rhs)) if p)
    if isinstance(expr, ast.ParenExpr):
        return _binary_names(expr.expr)
    if isinstance(expr, ast.Call | ast.VarRef):
        return expr.name
    return ""


def _tag_sql(tag: str, data: MeasurementData) -> str:
    return _q(tag) if tag in data.tag_keys else "CAST(NULL AS VARCHAR)"


def _column_names(columns: list[OutputColumn]) -> list[str]:
    """Generated names get _1, _2 suffixes when repeated; explicit aliases are kept as given."""
    seen: dict[str, int] = {"time": 1}
    names = []
    for col in columns:
        name = col.name
        if name in seen and not col.aliased:
            while f"{col.name}_{seen[col.name]}" in seen:
                seen[col.name] += 1
            new = f"{col.name}_{seen[col.name]}"
            seen[col.name] += 1
            name = new
        seen.setdefault(name, 1)
        names.append(name)
    return names


def _has_wildcard(expr: ast.Expr | None) -> bool:
    if isinstance(expr, ast.Wildcard | ast.RegexLiteral):
        return True
    if isinstance(expr, ast.Call):
        return any(_has_wildcard(a) for a in expr.args)
    if isinstance(expr, ast.BinaryExpr):
        return _has_wildcard(expr.lhs) or _has_wildcard(expr.rhs)
    if isinstance(expr, ast.ParenExpr):
        return _has_wildcard(expr.expr)
    return False


def _var_names(expr: ast.Expr | None) -> set[str]:
    if expr is None:
        return set()
    if isinstance(expr, ast.VarRef):
        return {expr.name}
    if isinstance(expr, ast.Call):
        out: set[str] = set()
        for a in expr.args:
            out |= _var_names(a)
        return out
    if isinstance(expr, ast.Distinct):
        return {expr.name}
    if isinstance(expr, ast.BinaryExpr):
        return _var_names(expr.lhs) | _var_names(expr.rhs)
    if isinstance(expr, ast.ParenExpr):
        return _var_names(expr.expr)
    return set()


def _tag_filter(expr: ast.Expr | None, tag_keys: set[str]) -> dict[str, set[str]]:
    """Tag equality/IN-like predicates that are ANDed at top level (safe to push into read())."""
    out: dict[str, set[str]] = {}
    for term in _conjuncts(expr):
        values = _tag_equalities(term, tag_keys)
        if values is None:
            continue
        key, vals = values
        out[key] = out[key] & vals if key in out else vals
    return out


def _delete_tag_filter(expr: ast.Expr | None, tag_keys: set[str]) -> dict[str, set[str]] | None:
    """The exact tag filter of a DELETE/DROP SERIES condition; None when no series can match."""
    out: dict[str, set[str]] = {}
    for term in _conjuncts(expr):
        found = _tag_equalities(term, tag_keys | _var_names(term))
        if found is None:
            raise QueryError("DELETE and DROP SERIES support only tag = 'value' conditions "
                             "(ANDed, or ORed on one tag) besides time")
        key, values = found
        if key not in tag_keys:
            return None
        out[key] = out[key] & values if key in out else values
        if not out[key]:
            return None
    return out


def _conjuncts(expr: ast.Expr | None) -> list[ast.Expr]:
    if expr is None:
        return []
    if isinstance(expr, ast.ParenExpr):
        return _conjuncts(expr.expr)
    if isinstance(expr, ast.BinaryExpr) and expr.op == "AND":
        return _conjuncts(expr.lhs) + _conjuncts(expr.rhs)
    return [expr]


def _tag_equalities(expr: ast.Expr, tag_keys: set[str]) -> tuple[str, set[str]] | None:
    if isinstance(expr, ast.ParenExpr):
        return _tag_equalities(expr.expr, tag_keys)
    if not isinstance(expr, ast.BinaryExpr):
        return None
    if expr.op == "=":
        ref, lit = expr.lhs, expr.rhs
        if isinstance(lit, ast.VarRef):
            ref, lit = lit, ref
        if (isinstance(ref, ast.VarRef) and isinstance(lit, ast.StringLiteral) and ref.name in tag_keys
                and ref.type in (None, "tag") and lit.value != ""):
            return ref.name, {lit.value}
        return None
    if expr.op == "OR":
        lhs = _tag_equalities(expr.lhs, tag_keys)
        rhs = _tag_equalities(expr.rhs, tag_keys)
        if lhs and rhs and lhs[0] == rhs[0]:
            return lhs[0], lhs[1] | rhs[1]
    return None


def _eval_tag_condition(expr: ast.Expr, tags: dict[str, str], other: bool = True, absent: str | None = "") -> bool:
    """WHERE of SHOW statements evaluated on a series' tags; comparisons that are not tag
    comparisons (fields, time) count as `other`, a tag the series lacks has the value `absent`
    (None: any comparison on it is false). InfluxDB 1.6.7: other=True for SHOW SERIES/TAG
    KEYS/..., other=False for the cardinality statements, absent=None for TAG VALUES CARDINALITY."""
    if isinstance(expr, ast.ParenExpr):
        return _eval_tag_condition(expr.expr, tags, other, absent)
    if not isinstance(expr, ast.BinaryExpr):
        return other
    if expr.op == "AND":
        return _eval_tag_condition(expr.lhs, tags, other, absent) and _eval_tag_condition(expr.rhs, tags, other, absent)
    if expr.op == "OR":
        return _eval_tag_condition(expr.lhs, tags, other, absent) or _eval_tag_condition(expr.rhs, tags, other, absent)
    if not isinstance(expr.lhs, ast.VarRef) or _is_time_ref(expr.lhs):
        return other
    value = tags.get(expr.lhs.name, absent)
    if value is None:
        return False
    rhs = expr.rhs
    if expr.op in ("=~", "!~") and isinstance(rhs, ast.RegexLiteral):
        return bool(rhs.compiled().search(value)) == (expr.op == "=~")
    if isinstance(rhs, ast.StringLiteral):
        if expr.op == "=":
            return value == rhs.value
        if expr.op == "!=":
            return value != rhs.value
    return other


def _normalise_table(table: pa.Table, data: MeasurementData, read_cols: list[str],
                     min_ns: int, max_ns: int) -> pa.Table:
    """time as int64 ns; add missing requested columns as nulls of their type."""
    time_col = table.column("time")
    if pa.types.is_timestamp(time_col.type):
        time_col = time_col.cast(pa.int64())
    arrays: dict[str, Any] = {"time": time_col}
    present = set(table.column_names)
    for name in read_cols:
        if name in present:
            arrays[name] = table.column(name)
        elif name in data.field_types:
            arrays[name] = pa.nulls(table.num_rows, data.field_types[name].arrow_type)
        else:
            arrays[name] = pa.nulls(table.num_rows, pa.string())
    out = pa.table(arrays)
    if out.num_rows and (min_ns > MIN_TIME_NS or max_ns < MAX_TIME_NS):
        t = out.column("time").to_numpy()
        mask = (t >= min_ns) & (t <= max_ns)
        if not mask.all():
            out = out.filter(pa.array(mask))
    return out


def _window(t: int, interval: int, offset: int) -> int:
    return (t - offset) - ((t - offset) % interval) + offset


def _linear_fill(buckets: list[int], column: list[Any], interval: int) -> list[Any]:
    """fill(linear) as InfluxDB computes it: positions are window times divided by the interval
    (Go's truncating division), value = slope * steps + previous (integers truncated)."""
    def step(t: int) -> int:
        return -(-t // interval) if t < 0 else t // interval

    known = [i for i, v in enumerate(column) if v is not None]
    out = list(column)
    for a, b in zip(known, known[1:], strict=False):
        if b - a < 2:
            continue
        va, vb = column[a], column[b]
        ints = isinstance(va, int) and isinstance(vb, int)
        ta, tb = step(buckets[a]), step(buckets[b])
        slope = (vb - va) / (tb - ta) if tb != ta else 0.0
        for i in range(a + 1, b):
            value = slope * (step(buckets[i]) - ta) + va
            out[i] = int(value) if ints else value
    return out


def _limit(items: list[Any], limit: int, offset: int) -> list[Any]:
    items = items[offset:] if offset else items
    return items[:limit] if limit else items


_SMALL_COLUMN = 4096  # up to this many rows Arrow's to_pylist beats the numpy/dictionary detours


def _json_column(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """An Arrow result column as JSON-ready Python values (NaN and infinities become null);
    large numeric and string columns go through numpy (one C loop) rather than Arrow scalars."""
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
    kind = column.type
    if len(column) <= _SMALL_COLUMN:
        out = column.to_pylist()
        if pa.types.is_floating(kind):
            finite = np.isfinite(column.to_numpy(zero_copy_only=False))  # nulls read as NaN: None already
            if not finite.all():
                for i in np.flatnonzero(~finite).tolist():
                    out[i] = None
        return out
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        values = column.fill_null(0).to_numpy(zero_copy_only=False)
        bad = ~column.is_valid().to_numpy(zero_copy_only=False) if column.null_count else None
        if pa.types.is_floating(kind):
            finite = np.isfinite(values)
            if not finite.all():
                bad = ~finite if bad is None else bad | ~finite
        out = values.tolist()
        if bad is not None:
            for i in np.flatnonzero(bad).tolist():
                out[i] = None
        return out
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = column.dictionary_encode()
        words = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)
        index = encoded.indices.fill_null(len(words) - 1).to_numpy(zero_copy_only=False)
        return words[index].tolist()
    return column.to_pylist()


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
