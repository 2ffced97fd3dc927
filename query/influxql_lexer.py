"""InfluxQL tokenizer: turns query text into tokens with InfluxDB's positions and names.

Positions (line, char) follow influxql's scanner, including where it reports EOF.
"""

from __future__ import annotations

from dataclasses import dataclass

KEYWORDS = frozenset(
    """ALL ALTER ANALYZE AND ANY AS ASC BEGIN BY CARDINALITY CONTINUOUS CREATE DATABASE DATABASES
    DEFAULT DELETE DESC DESTINATIONS DIAGNOSTICS DISTINCT DROP DURATION END EVERY EXACT EXPLAIN
    FALSE FIELD FOR FROM FUTURE GRANT GRANTS GROUP GROUPS IN INF INSERT INTO KEY KEYS KILL LIMIT
    MEASUREMENT MEASUREMENTS NAME OFFSET ON OR ORDER PASSWORD PAST POLICIES POLICY PRIVILEGES
    QUERIES QUERY READ REPLICATION RESAMPLE RETENTION REVOKE SELECT SERIES SET SHARD SHARDS SLIMIT
    SHOW SOFFSET STATS SUBSCRIPTION SUBSCRIPTIONS TAG TO TRUE USER USERS VALUES WHERE WITH WRITE""".split()
)

# token kinds that are not keywords or punctuation
EOF = "EOF"
WS = "WS"
IDENT = "IDENT"
STRING = "STRING"
NUMBER = "NUMBER"
INTEGER = "INTEGER"
DURATIONVAL = "DURATIONVAL"
REGEX = "REGEX"
BOUNDPARAM = "BOUNDPARAM"
BADSTRING = "BADSTRING"
BADESCAPE = "BADESCAPE"
BADREGEX = "BADREGEX"
ILLEGAL = "ILLEGAL"
COMMENT = "COMMENT"

OPERATOR_PRECEDENCE = {
    "OR": 1, "AND": 2,
    "=": 4, "!=": 4, "=~": 4, "!~": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
    "+": 5, "-": 5, "|": 5, "^": 5,
    "*": 6, "/": 6, "%": 6, "&": 6,
}


@dataclass(slots=True, frozen=True)
class Token:
    kind: str  # a kind above, an upper-case keyword, or a punctuation string like ";"
    lit: str  # literal text for identifiers, strings, numbers...; "" for keywords/punct
    start: int  # offset in the query text (position reported in errors)
    end: int  # offset just after the token

    def found(self) -> str:
        """How influxql names this token in 'found X' errors."""
        return self.lit if self.lit else self.kind


def _is_letter(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def _is_ident_char(ch: str) -> bool:
    return _is_letter(ch) or _is_digit(ch) or ch == "_"


class Lexer:
    """Scans tokens at any offset of `text`; the parser owns the cursor (cheap unscan)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._eof_offset = self._compute_eof_offset()

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, char) for an offset, as influxql prints them."""
        return self._line_char(self._eof_offset if offset == -1 else offset)

    def peeked_eof(self) -> None:
        """influxql's parseRegex peeks a rune without unreading EOF: later EOFs sit one char further."""
        self._eof_offset = max(self._eof_offset, len(self.text) + 1)

    def _line_char(self, offset: int) -> tuple[int, int]:
        text = self.text[: min(offset, len(self.text))]
        line = text.count("\n")
        last_nl = text.rfind("\n")
        char = offset - (last_nl + 1)
        return line + 1, char + 1

    def _compute_eof_offset(self) -> int:
        # influxql counts the EOF rune one char further when the last lexeme was consumed by a
        # scanner that reads through EOF (whitespace, bare identifiers/keywords, $params, -- comments).
        text = self.text
        n = len(text)
        if n == 0:
            return 0
        offset = 0
        last_kind = ""
        while True:
            tok = self.scan(offset)
            if tok.kind == EOF:
                break
            last_kind = tok.kind
            offset = tok.end
        through = last_kind in (WS, COMMENT, BOUNDPARAM) or (
            (last_kind == IDENT or last_kind in KEYWORDS) and text[-1] != '"'
        )
        if last_kind == COMMENT and text.rstrip("\n") != text:
            through = False
        return n + 1 if through else n

    # ---- scanning ---------------------------------------------------------------------
    def scan(self, offset: int) -> Token:
        text = self.text
        n = len(text)
        if offset >= n:
            return Token(EOF, "", -1, n)
        ch = text[offset]
        if ch in " \t\n\r":
            end = offset
            while end < n and text[end] in " \t\n\r":
                end += 1
            return Token(WS, text[offset:end], offset, end)
        if _is_letter(ch) or ch == "_" or ch == '"':
            return self._scan_ident(offset, lookup=True)
        if _is_digit(ch) or (ch == "." and offset + 1 < n and _is_digit(text[offset + 1])):
            return self._scan_number(offset)
        two = text[offset : offset + 2]
        if ch == "'":
            return self._scan_string(offset)
        if ch == ".":
            return Token(".", "", offset, offset + 1)
        if ch == "$":
            tok = self._scan_ident(offset + 1, lookup=False)
            if tok.kind != IDENT:
                return Token(tok.kind, "$" + tok.lit, offset, tok.end)
            return Token(BOUNDPARAM, "$" + tok.lit, offset, tok.end)
        if two == "--":
            end = text.find("\n", offset)
            return Token(COMMENT, "", offset, n if end < 0 else end + 1)
        if two == "/*":
            end = text.find("*/", offset + 2)
            if end < 0:
                return Token(ILLEGAL, "", offset, n)
            return Token(COMMENT, "", offset, end + 2)
        for op in ("=~", "!=", "!~", ">=", "<=", "::"):
            if two == op:
                return Token(op, "", offset, offset + 2)
        if two == "<>":
            return Token("!=", "", offset, offset + 2)
        if ch in "+-*/%&|^=><(),;:":
            return Token(ch, "", offset, offset + 1)
        return Token(ILLEGAL, ch, offset, offset + 1)

    def _scan_ident(self, offset: int, *, lookup: bool) -> Token:
        text = self.text
        n = len(text)
        parts: list[str] = []
        pos = offset
        while pos < n:
            ch = text[pos]
            if ch == '"':
                tok = self._scan_string(pos)
                if tok.kind in (BADSTRING, BADESCAPE):
                    return tok
                return Token(IDENT, tok.lit, offset, tok.end)
            if _is_ident_char(ch):
                end = pos
                while end < n and _is_ident_char(text[end]):
                    end += 1
                parts.append(text[pos:end])
                pos = end
            else:
                break
        lit = "".join(parts)
        if lookup and lit.upper() in KEYWORDS:
            return Token(lit.upper(), "", offset, pos)
        return Token(IDENT, lit, offset, pos)

    def _scan_string(self, offset: int) -> Token:
        text = self.text
        quote = text[offset]
        out: list[str] = []
        pos = offset + 1
        n = len(text)
        while True:
            if pos >= n or text[pos] == "\n":
                return Token(BADSTRING, "".join(out), offset, pos)
            ch = text[pos]
            if ch == quote:
                return Token(STRING, "".join(out), offset, pos + 1)
            if ch == "\\":
                nxt = text[pos + 1] if pos + 1 < n else ""
                mapped = {"n": "\n", "\\": "\\", '"': '"', "'": "'"}.get(nxt)
                if mapped is None:
                    return Token(BADESCAPE, "\\" + nxt, pos, pos + 2)
                out.append(mapped)
                pos += 2
                continue
            out.append(ch)
            pos += 1

    def _scan_number(self, offset: int) -> Token:
        text = self.text
        n = len(text)
        pos = offset
        while pos < n and _is_digit(text[pos]):
            pos += 1
        is_decimal = False
        if pos < n and text[pos] == ".":
            is_decimal = True
            if pos + 1 < n and _is_digit(text[pos + 1]):
                pos += 1
                while pos < n and _is_digit(text[pos]):
                    pos += 1
                return Token(NUMBER, text[offset:pos], offset, pos)
            return Token(NUMBER, text[offset:pos], offset, pos + 1)  # `100.` eats the dot
        if not is_decimal and pos < n and (_is_letter(text[pos]) or text[pos] == "µ"):
            while pos < n and (_is_letter(text[pos]) or text[pos] == "µ"):
                pos += 1
            while pos < n and (_is_letter(text[pos]) or text[pos] == "µ" or _is_digit(text[pos])):
                pos += 1
            return Token(DURATIONVAL, text[offset:pos], offset, pos)
        return Token(INTEGER, text[offset:pos], offset, pos)

    def scan_regex(self, offset: int) -> Token:
        """Scan `/.../` at offset (only `\\/` is an escape; other escapes pass through)."""
        text = self.text
        n = len(text)
        out: list[str] = []
        pos = offset + 1
        while True:
            if pos >= n:
                return Token(BADREGEX, "", offset, pos)
            ch = text[pos]
            if ch == "/":
                return Token(REGEX, "".join(out), offset, pos + 1)
            if ch == "\n":
                return Token(BADREGEX, "", offset, pos)
            if ch == "\\" and pos + 1 < n and text[pos + 1] == "/":
                out.append("/")
                pos += 2
                continue
            out.append(ch)
            pos += 1


_DURATION_UNITS = {
    "ns": 1, "u": 1_000, "µ": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000, "w": 604_800_000_000_000,
}


def parse_duration(text: str) -> int:
    """InfluxQL duration literal (`10s`, `1h30m`, `1514764800000ms`) to nanoseconds."""
    total = 0
    pos = 0
    n = len(text)
    if n == 0:
        raise ValueError("invalid duration")
    while pos < n:
        start = pos
        while pos < n and _is_digit(text[pos]):
            pos += 1
        if pos == start:
            raise ValueError("invalid duration")
        value = int(text[start:pos])
        unit_start = pos
        while pos < n and not _is_digit(text[pos]):
            pos += 1
        unit = text[unit_start:pos]
        if unit not in _DURATION_UNITS:
            raise ValueError("invalid duration")
        total += value * _DURATION_UNITS[unit]
    if total > 9223372036854775807:
        raise OverflowError(f"overflowed duration {text}: choose a smaller duration or INF")
    return total
