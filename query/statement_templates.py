"""SELECT texts that differ only in literal values share one parse (statement templates).

Dashboards and pollers send one query shape again and again with new time bounds or tag values;
the second and later texts of a shape get their AST by swapping the literals into the first one's.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, fields
from typing import Any

from query import influxql_ast as ast
from query.influxql_lexer import parse_duration
from query.influxql_parser import parse_query

# Literal tokens exactly as the lexer's common-token regex classifies them (number, duration,
# integer, string), never glued to an identifier, a dot or a parameter. Double-quoted
# identifiers are matched only to be skipped. A slot is trusted only after the first text of
# its shape showed the parser turned it into a literal node at that very offset.
_SLOT = re.compile(
    r"""(?P<q>"[^"\\\n]*")
    | (?P<s>'[^'\\\n]*')
    | (?<![\w.$])(?: (?P<f>[0-9]*\.[0-9]+)
                   | (?P<d>[0-9]+[A-Za-zµ][A-Za-zµ0-9]*)
                   | (?P<i>[0-9]++)(?![.A-Za-zµ]) )""",
    re.VERBOSE,
)
_NODE_OF_SLOT = {"s": (ast.StringLiteral,), "f": (ast.NumberLiteral,), "d": (ast.DurationLiteral,),
                 "i": (ast.IntegerLiteral, ast.UnsignedLiteral)}
_LITERALS = (ast.StringLiteral, ast.NumberLiteral, ast.DurationLiteral, ast.IntegerLiteral, ast.UnsignedLiteral)
_INT64_MAX = 9223372036854775807
_UINT64_MAX = 18446744073709551615
_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    return names


def shape_of(text: str) -> tuple[str, list[tuple[str, str, int]]] | None:
    """(key, slots): the text with each literal replaced by a class marker, and each literal's
    (class, text, offset); None for texts the template path leaves alone."""
    if "\x00" in text:
        return None
    pieces: list[str] = []
    slots: list[tuple[str, str, int]] = []
    last = 0
    for m in _SLOT.finditer(text):
        kind = m.lastgroup
        if kind == "q":
            continue
        start, end = m.span()
        pieces.append(text[last:start])
        pieces.append("\x00" + kind)  # type: ignore[operator]
        slots.append((kind, text[start:end], start))  # type: ignore[arg-type]
        last = end
    if not slots:
        return None
    pieces.append(text[last:])
    return "".join(pieces), slots


def _literal(kind: str, text: str, pos: int) -> ast.Expr | None:
    """The node the parser makes of this literal token (None: it would not make one)."""
    if kind == "s":
        return ast.StringLiteral(text[1:-1], pos)
    if kind == "f":
        return ast.NumberLiteral(float(text), pos)
    if kind == "i":
        value = int(text)
        if value <= _INT64_MAX:
            return ast.IntegerLiteral(value, pos)
        return ast.UnsignedLiteral(value, pos) if value <= _UINT64_MAX else None
    try:
        return ast.DurationLiteral(parse_duration(text), text, pos)
    except (ValueError, OverflowError):
        return None


@dataclass(slots=True)
class _Template:
    statements: list[ast.Statement]
    slot_nodes: list[int]  # id() of the literal node of each slot, in text order
    on_path: set[int]  # id() of every node or list holding a slot node (rebuilt per use)


def _collect(obj: Any, by_pos: dict[int, Any], parents: dict[int, list[int]], chain: list[int]) -> None:
    """Literal nodes by offset, and for each the ids of the nodes/lists above it."""
    if isinstance(obj, list):
        chain.append(id(obj))
        for item in obj:
            _collect(item, by_pos, parents, chain)
        chain.pop()
        return
    if not hasattr(obj, "__dataclass_fields__"):
        return
    if isinstance(obj, _LITERALS) and obj.pos >= 0:
        by_pos[obj.pos] = obj
        parents[id(obj)] = list(chain)
    chain.append(id(obj))
    for name in _field_names(type(obj)):
        _collect(getattr(obj, name), by_pos, parents, chain)
    chain.pop()


def _template(statements: list[ast.Statement], slots: list[tuple[str, str, int]]) -> _Template | None:
    """The template of a fresh parse, if every slot became a literal node at its own offset
    holding the value _literal() derives (else None: this shape is always parsed in full)."""
    if not all(isinstance(s, ast.SelectStatement) for s in statements):
        return None
    by_pos: dict[int, Any] = {}
    parents: dict[int, list[int]] = {}
    _collect(statements, by_pos, parents, [])
    slot_nodes: list[int] = []
    on_path: set[int] = set()
    for kind, text, pos in slots:
        node = by_pos.get(pos)
        if node is None or not isinstance(node, _NODE_OF_SLOT[kind]) or node != _literal(kind, text, pos):
            return None
        slot_nodes.append(id(node))
        on_path.update(parents[id(node)])
    return _Template(statements, slot_nodes, on_path)


def _rebuild(obj: Any, on_path: set[int], replace: dict[int, Any]) -> Any:
    """A copy of `obj` (a node or list on a path to a literal) with the slot nodes replaced;
    children without slots are shared, not visited."""
    if isinstance(obj, list):
        out = []
        for item in obj:
            key = id(item)
            new = replace.get(key)
            out.append(new if new is not None else _rebuild(item, on_path, replace) if key in on_path else item)
        return out
    cls = type(obj)
    copy = object.__new__(cls)
    for name in _field_names(cls):
        value = getattr(obj, name)
        key = id(value)
        new = replace.get(key)
        if new is None and key in on_path:
            new = _rebuild(value, on_path, replace)
        object.__setattr__(copy, name, value if new is None else new)
    return copy


class StatementTemplates:
    """parse_query with a bounded cache of SELECT shapes (thread-safe; ASTs are never modified
    after parsing, so templates share their literal-free subtrees with every copy)."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._entries: dict[str, _Template | None] = {}  # None: a shape that is always parsed in full
        self._lock = threading.Lock()
        self.hits = 0

    def parse(self, text: str, params: dict[str, Any] | None = None) -> list[ast.Statement]:
        """parse_query(text, params): same statements, same errors."""
        shape = None if params or self.capacity <= 0 else shape_of(text)
        if shape is None:
            return parse_query(text, params)
        key, slots = shape
        template = self._entries.get(key, False)
        if template is False:
            statements = parse_query(text)  # a parse error propagates before anything is kept
            with self._lock:
                if len(self._entries) >= self.capacity:
                    self._entries.clear()
                self._entries[key] = _template(statements, slots)
            return statements
        literals = None if template is None else _literals(slots)
        if template is None or literals is None:  # literal out of range: the parser reports it
            return parse_query(text)
        self.hits += 1
        return self.rebuild(TemplateHit(key, template, literals))

    def match(self, text: str) -> TemplateHit | None:
        """The known template `text` fills in and its literal nodes, without building the
        statements (None: not a known template shape; parse() it)."""
        if self.capacity <= 0 or (shape := shape_of(text)) is None:
            return None
        key, slots = shape
        template = self._entries.get(key)
        literals = None if template is None else _literals(slots)
        return None if template is None or literals is None else TemplateHit(key, template, literals)

    @staticmethod
    def rebuild(hit: TemplateHit) -> list[ast.Statement]:
        """The statements of a match(): the template's, with the hit's literals."""
        replace = dict(zip(hit.template.slot_nodes, hit.literals, strict=True))
        return [_rebuild(s, hit.template.on_path, replace) for s in hit.template.statements]


@dataclass(slots=True)
class TemplateHit:
    key: str  # the shape: same key, same statements up to the literal values
    template: _Template
    literals: list[ast.Expr]  # this text's literal nodes, in text order (template.slot_nodes order)


def _literals(slots: list[tuple[str, str, int]]) -> list[ast.Expr] | None:
    nodes = []
    for kind, text, pos in slots:
        node = _literal(kind, text, pos)
        if node is None:
            return None
        nodes.append(node)
    return nodes
