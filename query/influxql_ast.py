"""InfluxQL abstract syntax tree: expression nodes, sources and statement dataclasses.

Pure data; parsing lives in influxql_parser, evaluation in influxql_exec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


# ---- expressions ---------------------------------------------------------------------------
@dataclass(slots=True)
class VarRef:
    name: str
    type: str | None = None  # None, "field", "tag", "float", "integer", "unsigned", "string", "boolean"


@dataclass(slots=True)
class Wildcard:
    type: str | None = None  # None, "field" or "tag"


@dataclass(slots=True)
class Call:
    name: str
    args: list[Expr] = field(default_factory=list)


@dataclass(slots=True)
class Distinct:
    name: str


@dataclass(slots=True)
class BinaryExpr:
    op: str  # "+", "-", "*", "/", "%", "&", "|", "^", "AND", "OR", "=", "!=", "=~", "!~", "<", ...
    lhs: Expr
    rhs: Expr


@dataclass(slots=True)
class ParenExpr:
    expr: Expr


@dataclass(slots=True)
class IntegerLiteral:
    value: int
    pos: int = field(default=-1, compare=False, repr=False)  # offset of its token in the query text


@dataclass(slots=True)
class UnsignedLiteral:
    value: int
    pos: int = field(default=-1, compare=False, repr=False)  # offset of its token in the query text


@dataclass(slots=True)
class NumberLiteral:
    value: float
    pos: int = field(default=-1, compare=False, repr=False)  # offset of its token in the query text


@dataclass(slots=True)
class StringLiteral:
    value: str
    pos: int = field(default=-1, compare=False, repr=False)  # offset of its token in the query text


@dataclass(slots=True)
class BooleanLiteral:
    value: bool


@dataclass(slots=True)
class DurationLiteral:
    ns: int
    text: str = ""
    pos: int = field(default=-1, compare=False, repr=False)  # offset of its token in the query text


@dataclass(slots=True)
class RegexLiteral:
    pattern: str

    def compiled(self) -> re.Pattern[str]:
        """Python regex for the RE2 pattern (InfluxDB matches anywhere: use .search)."""
        return re.compile(self.pattern.replace("\\z", "\\Z"))


@dataclass(slots=True)
class ListLiteral:
    values: list[str]


Expr = (
    VarRef | Wildcard | Call | Distinct | BinaryExpr | ParenExpr | IntegerLiteral | UnsignedLiteral
    | NumberLiteral | StringLiteral | BooleanLiteral | DurationLiteral | RegexLiteral | ListLiteral
)


# ---- select parts ---------------------------------------------------------------------------
@dataclass(slots=True)
class Field:
    expr: Expr
    alias: str = ""


@dataclass(slots=True)
class Measurement:
    name: str = ""
    database: str = ""
    retention_policy: str = ""
    regex: RegexLiteral | None = None
    back_reference: bool = False  # INTO [db.[rp].]:MEASUREMENT: each source measurement's name


@dataclass(slots=True)
class SubQuery:
    statement: SelectStatement


Source = Measurement | SubQuery


@dataclass(slots=True)
class Dimension:
    expr: Expr


@dataclass(slots=True)
class SortField:
    name: str = ""
    ascending: bool = True


# ---- statements -----------------------------------------------------------------------------
@dataclass(slots=True)
class SelectStatement:
    fields: list[Field]
    sources: list[Source]
    condition: Expr | None = None
    dimensions: list[Dimension] = field(default_factory=list)
    fill: str = "null"  # "null", "none", "previous", "linear", "number"
    fill_value: float | int | None = None
    sort_fields: list[SortField] = field(default_factory=list)
    limit: int = 0
    offset: int = 0
    slimit: int = 0
    soffset: int = 0
    tz: str | None = None
    into: Measurement | None = None

    @property
    def is_raw(self) -> bool:
        return not any(_contains_call(f.expr) for f in self.fields)


def _contains_call(expr: Expr) -> bool:
    if isinstance(expr, Call):
        return True
    if isinstance(expr, BinaryExpr):
        return _contains_call(expr.lhs) or _contains_call(expr.rhs)
    if isinstance(expr, ParenExpr):
        return _contains_call(expr.expr)
    return False


@dataclass(slots=True)
class ShowDatabasesStatement:
    pass


@dataclass(slots=True)
class ShowContinuousQueriesStatement:
    """SHOW CONTINUOUS QUERIES: edgets has none (CREATE CONTINUOUS QUERY is refused)."""


@dataclass(slots=True)
class ShowMeasurementsStatement:
    database: str = ""
    source: Measurement | None = None  # WITH MEASUREMENT = name | =~ /re/
    condition: Expr | None = None
    limit: int = 0
    offset: int = 0


@dataclass(slots=True)
class ShowTagKeysStatement:
    database: str = ""
    sources: list[Source] = field(default_factory=list)
    condition: Expr | None = None
    limit: int = 0
    offset: int = 0
    slimit: int = 0
    soffset: int = 0


@dataclass(slots=True)
class ShowTagValuesStatement:
    database: str = ""
    sources: list[Source] = field(default_factory=list)
    op: str = "="  # "=", "!=", "=~", "!~", "IN"
    key_expr: Expr | None = None  # StringLiteral, RegexLiteral or ListLiteral
    condition: Expr | None = None
    limit: int = 0
    offset: int = 0


@dataclass(slots=True)
class ShowFieldKeysStatement:
    database: str = ""
    sources: list[Source] = field(default_factory=list)
    limit: int = 0
    offset: int = 0


@dataclass(slots=True)
class ShowSeriesStatement:
    database: str = ""
    sources: list[Source] = field(default_factory=list)
    condition: Expr | None = None
    limit: int = 0
    offset: int = 0


@dataclass(slots=True)
class ShowCardinalityStatement:
    """SHOW SERIES | MEASUREMENT | TAG KEY | TAG VALUES | FIELD KEY [EXACT] CARDINALITY."""
    what: str  # "SERIES", "MEASUREMENT", "TAG KEY", "TAG VALUES" or "FIELD KEY"
    exact: bool = False
    database: str = ""
    sources: list[Source] = field(default_factory=list)
    key_op: str = ""  # TAG VALUES: "=", "!=", "=~", "!~" or "IN" (WITH KEY ...)
    key_expr: Expr | None = None
    condition: Expr | None = None
    dimensions: list[Dimension] = field(default_factory=list)
    limit: int = 0
    offset: int = 0


@dataclass(slots=True)
class ShowRetentionPoliciesStatement:
    database: str = ""


@dataclass(slots=True)
class CreateDatabaseStatement:
    name: str
    rp_duration_ns: int | None = None
    rp_replication: int | None = None
    rp_shard_duration_ns: int | None = None
    rp_name: str = ""


@dataclass(slots=True)
class DropDatabaseStatement:
    name: str


@dataclass(slots=True)
class CreateRetentionPolicyStatement:
    name: str
    database: str
    duration_ns: int
    replication: int
    shard_duration_ns: int = 0
    default: bool = False


@dataclass(slots=True)
class AlterRetentionPolicyStatement:
    name: str
    database: str
    duration_ns: int | None = None
    replication: int | None = None
    shard_duration_ns: int | None = None
    default: bool = False


@dataclass(slots=True)
class DropRetentionPolicyStatement:
    name: str
    database: str


@dataclass(slots=True)
class DropMeasurementStatement:
    name: str


@dataclass(slots=True)
class DeleteStatement:
    sources: list[Source] = field(default_factory=list)
    condition: Expr | None = None


@dataclass(slots=True)
class DropSeriesStatement:
    sources: list[Source] = field(default_factory=list)
    condition: Expr | None = None


Statement = (
    SelectStatement | ShowDatabasesStatement | ShowMeasurementsStatement | ShowTagKeysStatement
    | ShowTagValuesStatement | ShowFieldKeysStatement | ShowSeriesStatement
    | ShowRetentionPoliciesStatement | CreateDatabaseStatement | DropDatabaseStatement
    | CreateRetentionPolicyStatement | AlterRetentionPolicyStatement | DropRetentionPolicyStatement
    | DropMeasurementStatement | DeleteStatement | DropSeriesStatement
)
