"""InfluxQL tokenizer: turns query text into tokens with InfluxDB's positions and names.

Positions (line, char) follow influxql's scanner, including where it reports EOF.
"""

from __future__ import annotations

import re
from typing import NamedTuple

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


class Token(NamedTuple):
    """One lexeme; immutable, so the lexer can hand the same memoised token out many times."""

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


# Fast paths (ASCII classes only: influxql's isLetter/isDigit are ASCII). Anything they do not
# cover exactly (escapes, bad strings, quoted parts glued to bare identifiers) takes the slow path.
_WS_CHARS = frozenset(" \t\n\r")
_IDENT_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_DIGITS = frozenset("0123456789")
_WS_RUN = re.compile(r"[ \t\n\r]*")
_BARE_IDENT = re.compile(r"[A-Za-z0-9_]*")
_PARAM = re.compile(r"\$[A-Za-z0-9_]*")
_SIMPLE_QUOTED_IDENT = re.compile(r'"([^"\\\n]*)"')
_SIMPLE_STRING = re.compile(r"'([^'\\\n]*)'")
_SIMPLE_REGEX = re.compile(r"/([^/\\\n]*)/")
_NUMBER = re.compile(r"[0-9]*(?:(?P<frac>\.[0-9]+)|(?P<dot>\.)|(?P<unit>[A-Za-zµ][A-Za-zµ0-9]*))?")
_TWO_CHAR_OPS = {"=~": "=~", "!=": "!=", "!~": "!~", ">=": ">=", "<=": "<=", "::": "::", "<>": "!="}
_ONE_CHAR_OPS = frozenset("+-*/%&|^=><(),;:")
_NOT_SIGNIFICANT = (WS, COMMENT)
_new_token = tuple.__new__  # Token(...) without the Python-level NamedTuple __new__ frame
# Whitespace, then one common significant lexeme that _scan would return unchanged at its start.
# Lookaheads leave the odd cases to _scan: bare identifiers glued to `"`, `100.`, `--`, `/*`;
# possessive quantifiers stop backtracking into a shorter lexeme (`foo"` must not give `fo`).
_SIMPLE_SIGNIFICANT = re.compile(
    r"""[ \t\n\r]*+(?:
      (?P<ident>[A-Za-z_][A-Za-z0-9_]*+)(?!")
    | (?P<number>[0-9]*\.[0-9]+)
    | (?P<duration>[0-9]+[A-Za-zµ][A-Za-zµ0-9]*)
    | (?P<integer>[0-9]++)(?![.A-Za-zµ])
    | (?P<qident>"[^"\\\n]*")
    | (?P<string>'[^'\\\n]*')
    | (?P<op>=~|!=|!~|>=|<=|::|<>|[+*%&|^=><(),;:.]|-(?!-)|/(?!\*))
    | (?P<param>\$[A-Za-z0-9_]*+)(?!")
    )""",
    re.VERBOSE,
)


class Lexer:
    """Scans tokens at any offset of `text`; the parser owns the cursor (cheap unscan).

    Tokens are memoised by offset (a re-scan after an unscan is a dict lookup); the EOF position,
    which needs a full tokenisation, is computed only when an error asks for it.
    """

    __slots__ = ("text", "_n", "_tokens", "significant_memo", "_eof", "_peeked_eof")

    def __init__(self, text: str) -> None:
        self.text = text
        self._n = len(text)
        self._tokens: dict[int, Token] = {}
        # offset -> scan_significant(offset); the parser reads it directly before calling
        self.significant_memo: dict[int, Token] = {}
        self._eof: int | None = None
        self._peeked_eof = False

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, char) for an offset, as influxql prints them."""
        return self._line_char(self._eof_offset() if offset == -1 else offset)

    def peeked_eof(self) -> None:
        """influxql's parseRegex peeks a rune without unreading EOF: later EOFs sit one char further."""
        self._peeked_eof = True

    def _eof_offset(self) -> int:
        if self._eof is None:
            self._eof = self._compute_eof_offset()
        return max(self._eof, self._n + 1) if self._peeked_eof else self._eof

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
        """The token starting at `offset` (whitespace and comments included)."""
        tok = self._tokens.get(offset)
        if tok is None:
            tok = self._tokens[offset] = self._scan(offset)
        return tok

    def scan_significant(self, offset: int) -> Token:
        """The first token at or after `offset` that is not whitespace or a comment."""
        tok = self.significant_memo.get(offset)
        if tok is None:
            self._fill_simple_run(offset)
            tok = self.significant_memo.get(offset)
            if tok is not None:
                return tok
            text = self.text
            pos = offset
            while True:
                if pos < self._n and text[pos] in _WS_CHARS:
                    pos = _WS_RUN.match(text, pos).end()
                tok = self._tokens.get(pos) or self.scan(pos)
                if tok.kind not in _NOT_SIGNIFICANT:
                    break
                pos = tok.end
            self.significant_memo[offset] = tok
        return tok

    def _fill_simple_run(self, offset: int) -> None:
        """Memoise the run of common significant tokens from `offset` with one regex match each.

        Stops at the first lexeme _SIMPLE_SIGNIFICANT does not cover (comments, `$`, escapes,
        bad strings, EOF...); scan_significant takes the per-offset path from there.
        """
        text = self.text
        tokens = self._tokens
        memo = self.significant_memo
        match = _SIMPLE_SIGNIFICANT.match
        pos = offset
        while True:
            m = match(text, pos)
            if m is None:
                return
            shape = m.lastgroup
            start, end = m.span(shape)
            if shape == "ident":
                lit = text[start:end]
                upper = lit.upper()
                if upper in KEYWORDS:
                    tok = _new_token(Token, (upper, "", start, end))
                else:
                    tok = _new_token(Token, (IDENT, lit, start, end))
            elif shape == "op":
                op = text[start:end]
                tok = _new_token(Token, ("!=" if op == "<>" else op, "", start, end))
            elif shape == "qident":
                tok = _new_token(Token, (IDENT, text[start + 1 : end - 1], start, end))
            elif shape == "string":
                tok = _new_token(Token, (STRING, text[start + 1 : end - 1], start, end))
            elif shape == "integer":
                tok = _new_token(Token, (INTEGER, text[start:end], start, end))
            elif shape == "duration":
                tok = _new_token(Token, (DURATIONVAL, text[start:end], start, end))
            elif shape == "number":
                tok = _new_token(Token, (NUMBER, text[start:end], start, end))
            else:  # param
                tok = _new_token(Token, (BOUNDPARAM, text[start:end], start, end))
            tokens[start] = tok
            memo[start] = tok
            memo[pos] = tok
            pos = end

    def _scan(self, offset: int) -> Token:
        text = self.text
        n = self._n
        if offset >= n:
            return Token(EOF, "", -1, n)
        ch = text[offset]
        if ch in _IDENT_START:
            end = _BARE_IDENT.match(text, offset).end()
            if end < n and text[end] == '"':
                return self._scan_ident(offset, lookup=True)
            lit = text[offset:end]
            upper = lit.upper()
            if upper in KEYWORDS:
                return Token(upper, "", offset, end)
            return Token(IDENT, lit, offset, end)
        if ch in _WS_CHARS:
            end = _WS_RUN.match(text, offset).end()
            return Token(WS, text[offset:end], offset, end)
        if ch in _DIGITS or (ch == "." and offset + 1 < n and text[offset + 1] in _DIGITS):
            m = _NUMBER.match(text, offset)
            end = m.end()
            shape = m.lastgroup
            if shape is None:
                return Token(INTEGER, text[offset:end], offset, end)
            if shape == "unit":
                return Token(DURATIONVAL, text[offset:end], offset, end)
            if shape == "dot":
                return Token(NUMBER, text[offset : end - 1], offset, end)  # `100.` eats the dot
            return Token(NUMBER, text[offset:end], offset, end)
        if ch == '"':
            m = _SIMPLE_QUOTED_IDENT.match(text, offset)
            if m is not None:
                return Token(IDENT, m.group(1), offset, m.end())
            return self._scan_ident(offset, lookup=True)
        if ch == "'":
            m = _SIMPLE_STRING.match(text, offset)
            if m is not None:
                return Token(STRING, m.group(1), offset, m.end())
            return self._scan_string(offset)
        if ch == ".":
            return Token(".", "", offset, offset + 1)
        if ch == "$":
            end = _PARAM.match(text, offset).end()
            if end < n and text[end] == '"':
                tok = self._scan_ident(offset + 1, lookup=False)
                if tok.kind != IDENT:
                    return Token(tok.kind, "$" + tok.lit, offset, tok.end)
                return Token(BOUNDPARAM, "$" + tok.lit, offset, tok.end)
            return Token(BOUNDPARAM, text[offset:end], offset, end)
        two = text[offset : offset + 2]
        if two == "--":
            end = text.find("\n", offset)
            return Token(COMMENT, "", offset, n if end < 0 else end + 1)
        if two == "/*":
            end = text.find("*/", offset + 2)
            if end < 0:
                return Token(ILLEGAL, "", offset, n)
            return Token(COMMENT, "", offset, end + 2)
        op = _TWO_CHAR_OPS.get(two)
        if op is not None:
            return Token(op, "", offset, offset + 2)
        if ch in _ONE_CHAR_OPS:
            return Token(ch, "", offset, offset + 1)
        return Token(ILLEGAL, ch, offset, offset + 1)

    def _scan_ident(self, offset: int, *, lookup: bool) -> Token:
        """Slow path: bare parts glued to a quoted part (`foo"bar"`), or a quoted part with escapes."""
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
        """Slow path for quoted text: escapes, or no closing quote before a newline/EOF."""
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
                mapped = _STRING_ESCAPES.get(nxt)
                if mapped is None:
                    return Token(BADESCAPE, "\\" + nxt, pos, pos + 2)
                out.append(mapped)
                pos += 2
                continue
            out.append(ch)
            pos += 1

    def scan_regex(self, offset: int) -> Token:
        """Scan `/.../` at offset (only `\\/` is an escape; other escapes pass through)."""
        text = self.text
        m = _SIMPLE_REGEX.match(text, offset)
        if m is not None:
            return Token(REGEX, m.group(1), offset, m.end())
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


_STRING_ESCAPES = {"n": "\n", "\\": "\\", '"': '"', "'": "'"}


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
