"""Lexer tests: tokens, positions and EOF quirks recorded from the char-by-char scanner (before
memoisation and regex fast paths), plus properties over arbitrary text from a small alphabet."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from query.influxql_lexer import BADESCAPE, BADSTRING, COMMENT, EOF, WS, Lexer, Token
from query.influxql_parser import InfluxQLParseError, parse_query

# (text, every token of a scan loop from offset 0 as (kind, lit, start, end)); recorded from the
# previous implementation, which had no fast paths or memo.
TOKEN_TABLE: list[tuple[str, list[tuple[str, str, int, int]]]] = [
    ('', [('EOF', '', -1, 0)]),
    (' ', [('WS', ' ', 0, 1), ('EOF', '', -1, 1)]),
    (' \t\r\n x', [('WS', ' \t\r\n ', 0, 5), ('IDENT', 'x', 5, 6), ('EOF', '', -1, 6)]),
    ('select', [('SELECT', '', 0, 6), ('EOF', '', -1, 6)]),
    ('SeLeCt from', [('SELECT', '', 0, 6), ('WS', ' ', 6, 7), ('FROM', '', 7, 11), ('EOF', '', -1, 11)]),
    ('fill', [('IDENT', 'fill', 0, 4), ('EOF', '', -1, 4)]),
    ('_foo foo_1 a1b2', [('IDENT', '_foo', 0, 4), ('WS', ' ', 4, 5), ('IDENT', 'foo_1', 5, 10), ('WS', ' ', 10, 11), ('IDENT', 'a1b2', 11, 15), ('EOF', '', -1, 15)]),
    ('foo"bar"', [('IDENT', 'bar', 0, 8), ('EOF', '', -1, 8)]),
    ('"a""b"', [('IDENT', 'a', 0, 3), ('IDENT', 'b', 3, 6), ('EOF', '', -1, 6)]),
    ('"a"b', [('IDENT', 'a', 0, 3), ('IDENT', 'b', 3, 4), ('EOF', '', -1, 4)]),
    ('x"a\\"b"', [('IDENT', 'a"b', 0, 7), ('EOF', '', -1, 7)]),
    ('"a\\x"', [('BADESCAPE', '\\x', 2, 4), ('BADSTRING', '', 4, 5), ('EOF', '', -1, 5)]),
    ('"abc', [('BADSTRING', 'abc', 0, 4), ('EOF', '', -1, 4)]),
    ('"ab\ncd"', [('BADSTRING', 'ab', 0, 3), ('WS', '\n', 3, 4), ('BADSTRING', '', 6, 7), ('EOF', '', -1, 7)]),
    ('foo"bar', [('BADSTRING', 'bar', 3, 7), ('EOF', '', -1, 7)]),
    ('"select"', [('IDENT', 'select', 0, 8), ('EOF', '', -1, 8)]),
    ("'it\\'s'", [('STRING', "it's", 0, 7), ('EOF', '', -1, 7)]),
    ("'a\\nb'", [('STRING', 'a\nb', 0, 6), ('EOF', '', -1, 6)]),
    ("'bad\\q'", [('BADESCAPE', '\\q', 4, 6), ('BADSTRING', '', 6, 7), ('EOF', '', -1, 7)]),
    ("'unterminated", [('BADSTRING', 'unterminated', 0, 13), ('EOF', '', -1, 13)]),
    ("''", [('STRING', '', 0, 2), ('EOF', '', -1, 2)]),
    ("'a\nb'", [('BADSTRING', 'a', 0, 2), ('WS', '\n', 2, 3), ('IDENT', 'b', 3, 4), ('BADSTRING', '', 4, 5), ('EOF', '', -1, 5)]),
    ("'tab\\\\'", [('STRING', 'tab\\', 0, 7), ('EOF', '', -1, 7)]),
    ('123', [('INTEGER', '123', 0, 3), ('EOF', '', -1, 3)]),
    ('1.5', [('NUMBER', '1.5', 0, 3), ('EOF', '', -1, 3)]),
    ('.5', [('NUMBER', '.5', 0, 2), ('EOF', '', -1, 2)]),
    ('100.', [('NUMBER', '100', 0, 4), ('EOF', '', -1, 4)]),
    ('100.x', [('NUMBER', '100', 0, 4), ('IDENT', 'x', 4, 5), ('EOF', '', -1, 5)]),
    ('10s', [('DURATIONVAL', '10s', 0, 3), ('EOF', '', -1, 3)]),
    ('1h30m', [('DURATIONVAL', '1h30m', 0, 5), ('EOF', '', -1, 5)]),
    ('10µs', [('DURATIONVAL', '10µs', 0, 4), ('EOF', '', -1, 4)]),
    ('5u', [('DURATIONVAL', '5u', 0, 2), ('EOF', '', -1, 2)]),
    ('1.5s', [('NUMBER', '1.5', 0, 3), ('IDENT', 's', 3, 4), ('EOF', '', -1, 4)]),
    ('10s5', [('DURATIONVAL', '10s5', 0, 4), ('EOF', '', -1, 4)]),
    ('1e5', [('DURATIONVAL', '1e5', 0, 3), ('EOF', '', -1, 3)]),
    ('9223372036854775808', [('INTEGER', '9223372036854775808', 0, 19), ('EOF', '', -1, 19)]),
    ('1µ', [('DURATIONVAL', '1µ', 0, 2), ('EOF', '', -1, 2)]),
    ('µ', [('ILLEGAL', 'µ', 0, 1), ('EOF', '', -1, 1)]),
    ('é', [('ILLEGAL', 'é', 0, 1), ('EOF', '', -1, 1)]),
    ('3.', [('NUMBER', '3', 0, 2), ('EOF', '', -1, 2)]),
    ('.', [('.', '', 0, 1), ('EOF', '', -1, 1)]),
    ('a.b', [('IDENT', 'a', 0, 1), ('.', '', 1, 2), ('IDENT', 'b', 2, 3), ('EOF', '', -1, 3)]),
    ('..', [('.', '', 0, 1), ('.', '', 1, 2), ('EOF', '', -1, 2)]),
    ('a..b', [('IDENT', 'a', 0, 1), ('.', '', 1, 2), ('.', '', 2, 3), ('IDENT', 'b', 3, 4), ('EOF', '', -1, 4)]),
    ('$param', [('BOUNDPARAM', '$param', 0, 6), ('EOF', '', -1, 6)]),
    ('$', [('BOUNDPARAM', '$', 0, 1), ('EOF', '', -1, 1)]),
    ('$"quoted"', [('BOUNDPARAM', '$quoted', 0, 9), ('EOF', '', -1, 9)]),
    ('$1', [('BOUNDPARAM', '$1', 0, 2), ('EOF', '', -1, 2)]),
    ('$"bad', [('BADSTRING', '$bad', 0, 5), ('EOF', '', -1, 5)]),
    ('$_x1 ', [('BOUNDPARAM', '$_x1', 0, 4), ('WS', ' ', 4, 5), ('EOF', '', -1, 5)]),
    ('$a"b"', [('BOUNDPARAM', '$b', 0, 5), ('EOF', '', -1, 5)]),
    ('$"a\\q"', [('BADESCAPE', '$\\q', 0, 5), ('BADSTRING', '', 5, 6), ('EOF', '', -1, 6)]),
    ('=~ != !~ >= <= :: <> + - * / % & | ^ = > < ( ) , ; :', [('=~', '', 0, 2), ('WS', ' ', 2, 3), ('!=', '', 3, 5), ('WS', ' ', 5, 6), ('!~', '', 6, 8), ('WS', ' ', 8, 9), ('>=', '', 9, 11), ('WS', ' ', 11, 12), ('<=', '', 12, 14), ('WS', ' ', 14, 15), ('::', '', 15, 17), ('WS', ' ', 17, 18), ('!=', '', 18, 20), ('WS', ' ', 20, 21), ('+', '', 21, 22), ('WS', ' ', 22, 23), ('-', '', 23, 24), ('WS', ' ', 24, 25), ('*', '', 25, 26), ('WS', ' ', 26, 27), ('/', '', 27, 28), ('WS', ' ', 28, 29), ('%', '', 29, 30), ('WS', ' ', 30, 31), ('&', '', 31, 32), ('WS', ' ', 32, 33), ('|', '', 33, 34), ('WS', ' ', 34, 35), ('^', '', 35, 36), ('WS', ' ', 36, 37), ('=', '', 37, 38), ('WS', ' ', 38, 39), ('>', '', 39, 40), ('WS', ' ', 40, 41), ('<', '', 41, 42), ('WS', ' ', 42, 43), ('(', '', 43, 44), ('WS', ' ', 44, 45), (')', '', 45, 46), ('WS', ' ', 46, 47), (',', '', 47, 48), ('WS', ' ', 48, 49), (';', '', 49, 50), ('WS', ' ', 50, 51), (':', '', 51, 52), ('EOF', '', -1, 52)]),
    ('!', [('ILLEGAL', '!', 0, 1), ('EOF', '', -1, 1)]),
    ('!!=', [('ILLEGAL', '!', 0, 1), ('!=', '', 1, 3), ('EOF', '', -1, 3)]),
    ('a<>b', [('IDENT', 'a', 0, 1), ('!=', '', 1, 3), ('IDENT', 'b', 3, 4), ('EOF', '', -1, 4)]),
    ('a::tag', [('IDENT', 'a', 0, 1), ('::', '', 1, 3), ('TAG', '', 3, 6), ('EOF', '', -1, 6)]),
    ('-- comment\nx', [('COMMENT', '', 0, 11), ('IDENT', 'x', 11, 12), ('EOF', '', -1, 12)]),
    ('--', [('COMMENT', '', 0, 2), ('EOF', '', -1, 2)]),
    ('-- at eof', [('COMMENT', '', 0, 9), ('EOF', '', -1, 9)]),
    ('/* block */x', [('COMMENT', '', 0, 11), ('IDENT', 'x', 11, 12), ('EOF', '', -1, 12)]),
    ('/* unterminated', [('ILLEGAL', '', 0, 15), ('EOF', '', -1, 15)]),
    ('/**/', [('COMMENT', '', 0, 4), ('EOF', '', -1, 4)]),
    ('a/*b*/c', [('IDENT', 'a', 0, 1), ('COMMENT', '', 1, 6), ('IDENT', 'c', 6, 7), ('EOF', '', -1, 7)]),
    ('-1', [('-', '', 0, 1), ('INTEGER', '1', 1, 2), ('EOF', '', -1, 2)]),
    ('x\\y', [('IDENT', 'x', 0, 1), ('ILLEGAL', '\\', 1, 2), ('IDENT', 'y', 2, 3), ('EOF', '', -1, 3)]),
    ('@#', [('ILLEGAL', '@', 0, 1), ('ILLEGAL', '#', 1, 2), ('EOF', '', -1, 2)]),
    ('time >= now() - 6h', [('IDENT', 'time', 0, 4), ('WS', ' ', 4, 5), ('>=', '', 5, 7), ('WS', ' ', 7, 8), ('IDENT', 'now', 8, 11), ('(', '', 11, 12), (')', '', 12, 13), ('WS', ' ', 13, 14), ('-', '', 14, 15), ('WS', ' ', 15, 16), ('DURATIONVAL', '6h', 16, 18), ('EOF', '', -1, 18)]),
    ('"host" =~ /^a$/', [('IDENT', 'host', 0, 6), ('WS', ' ', 6, 7), ('=~', '', 7, 9), ('WS', ' ', 9, 10), ('/', '', 10, 11), ('^', '', 11, 12), ('IDENT', 'a', 12, 13), ('BOUNDPARAM', '$', 13, 14), ('/', '', 14, 15), ('EOF', '', -1, 15)]),
]

# (text, Lexer(text).scan_regex(0)) recorded the same way.
REGEX_TABLE: list[tuple[str, tuple[str, str, int, int]]] = [
    ('/a\\/b/', ('REGEX', 'a/b', 0, 6)),
    ('/a\\d/', ('REGEX', 'a\\d', 0, 5)),
    ('/abc', ('BADREGEX', '', 0, 4)),
    ('/ab\ncd/', ('BADREGEX', '', 0, 3)),
    ('//', ('REGEX', '', 0, 2)),
    ('/x/ rest', ('REGEX', 'x', 0, 3)),
    ('/\\\\/', ('BADREGEX', '', 0, 4)),
]

# Lexer(text).position(-1), where an EOF error is reported: one char further after whitespace,
# bare identifiers/keywords, $params and -- comments without a trailing newline.
EOF_POSITIONS: list[tuple[str, tuple[int, int]]] = [
    ('', (1, 1)),
    (' ', (1, 3)),
    ('a', (1, 3)),
    ('a ', (1, 4)),
    ('a\n', (2, 2)),
    ('select', (1, 8)),
    ('"q"', (1, 4)),
    ('a"q"', (1, 5)),
    ('$p', (1, 4)),
    ('$p ', (1, 5)),
    ('$', (1, 3)),
    ('-- c', (1, 6)),
    ('-- c\n', (2, 1)),
    ('/* c */', (1, 9)),
    ('/a/', (1, 4)),
    ("'s'", (1, 4)),
    ('1', (1, 2)),
    ('10s', (1, 4)),
    ('1.', (1, 3)),
    (',', (1, 2)),
    ('a\n\n', (3, 2)),
    ('x -- c\n\n', (3, 2)),
]

# (query, params, str(InfluxQLParseError) or "OK") recorded from the previous implementation.
PARSE_ERRORS: list[tuple[str, dict | None, str]] = [
    ('SELECT ', None, 'error parsing query: found EOF, expected identifier, string, number, bool at line 1, char 9'),
    ('SELECT\n', None, 'error parsing query: found EOF, expected identifier, string, number, bool at line 2, char 2'),
    ('SELECT a FROM', None, 'error parsing query: found EOF, expected identifier at line 1, char 15'),
    ('SELECT a FROM ', None, 'error parsing query: found EOF, expected identifier at line 1, char 16'),
    ('SELECT a FROM cpu WHERE', None, 'error parsing query: found EOF, expected identifier, string, number, bool at line 1, char 25'),
    ('SELECT a FROM cpu WHERE x =', None, 'error parsing query: found EOF, expected identifier, string, number, bool at line 1, char 28'),
    ('SELECT a -- c', None, 'error parsing query: found EOF, expected FROM at line 1, char 15'),
    ('SELECT a -- c\n', None, 'error parsing query: found EOF, expected FROM at line 2, char 1'),
    ('SELECT a /* c */', None, 'error parsing query: found EOF, expected FROM at line 1, char 18'),
    ('SELECT a FROM "cpu" WHERE x = "y" AND', None, 'error parsing query: found EOF, expected identifier, string, number, bool at line 1, char 39'),
    ('SELECT "a"', None, 'error parsing query: found EOF, expected FROM at line 1, char 11'),
    ('SELECT a "b"', None, 'error parsing query: found b, expected FROM at line 1, char 10'),
    ('SELECT /a/', None, 'error parsing query: found EOF, expected FROM at line 1, char 11'),
    ('SELECT a FROM /cpu/ WHERE x =~ /a/ GROUP BY', None, 'error parsing query: found EOF, expected identifier, string, number, bool at line 1, char 45'),
    ('SELECT a FROM cpu WHERE x =~', None, 'error parsing query: found EOF, expected regex at line 1, char 30'),
    ('SELECT a FROM cpu WHERE x =~ ', None, 'error parsing query: found EOF, expected regex at line 1, char 31'),
    ('SHOW TAG VALUES FROM $m', {'m': {'identifier': 'cpu'}}, 'error parsing query: found EOF, expected WITH at line 1, char 25'),
    ('SHOW TAG VALUES FROM $m ', {'m': {'identifier': 'cpu'}}, 'error parsing query: found EOF, expected WITH at line 1, char 26'),
    ('SELECT a FROM cpu WHERE $p', {'p': {'identifier': 'x'}}, 'OK'),
    ('SELECT a FROM cpu WHERE x = $p', None, 'error parsing query: missing parameter: p'),
    ('SELECT a FROM cpu GROUP BY time(1m) fill(', None, 'error parsing query: found EOF, expected identifier, string, number, bool at line 1, char 43'),
    ('SELECT max(a', None, 'error parsing query: found EOF, expected ) at line 1, char 14'),
    ('SELECT max(a) FROM cpu LIMIT', None, 'error parsing query: found EOF, expected integer at line 1, char 30'),
    ('SELECT a FROM cpu ORDER BY', None, 'error parsing query: found EOF, expected identifier, ASC, DESC at line 1, char 28'),
    ("SELECT a FROM cpu WHERE x = 'abc", None, 'error parsing query: found abc, expected identifier, string, number, bool at line 1, char 28'),
    ("SELECT a FROM cpu WHERE x = 'a\\q'", None, 'error parsing query: found \\q, expected identifier, string, number, bool at line 1, char 31'),
    ('SELECT a FROM "cpu', None, 'error parsing query: found cpu, expected identifier at line 1, char 14'),
    ('SELECT a FROM cpu"x', None, 'error parsing query: found x, expected identifier at line 1, char 17'),
    ('SELECT a FROM cpu WHERE x =~ /a', None, 'error parsing query: bad regex:  at line 1, char 30'),
    ('SELECT a FROM cpu WHERE x =~ /(/', None, 'error parsing query: error parsing regexp: missing closing ): `(` at line 1, char 29'),
    ('SELECT a, FROM cpu', None, 'error parsing query: found FROM, expected identifier, string, number, bool at line 1, char 11'),
    ('SELECT a , b FROM cpu', None, 'error parsing query: found ,, expected FROM at line 1, char 10'),
    ('SELECT a FROM cpu;;SELECT', None, 'error parsing query: found EOF, expected identifier, string, number, bool at line 1, char 27'),
    ('SELECT a FROM cpu SELECT', None, 'error parsing query: found SELECT, expected ; at line 1, char 19'),
    ('SELECT a FROM a.b.c.d', None, 'error parsing query: too many segments in "a"."b"."c"."d"'),
    ('SELECT a::foo FROM cpu', None, 'error parsing query: found foo, expected float, integer, unsigned, string, boolean, field, tag at line 1, char 11'),
    ('SELECT * FROM cpu GROUP BY µ', None, 'error parsing query: found µ, expected identifier, string, number, bool at line 1, char 28'),
    ('SELECT a FROM cpu WHERE time > now() - 99999999999999999h', None, 'error parsing query: overflowed duration 99999999999999999h: choose a smaller duration or INF'),
    ('SELECT distinct', None, 'error parsing query: found EOF, expected (, identifier at line 1, char 17'),
    ('SELECT distinct a', None, 'error parsing query: found EOF, expected FROM at line 1, char 19'),
    ('DELETE', None, 'error parsing query: found EOF, expected FROM, WHERE at line 1, char 8'),
    ('DROP SERIES', None, 'error parsing query: found EOF, expected FROM, WHERE at line 1, char 13'),
    ('CREATE DATABASE x WITH', None, 'error parsing query: found EOF, expected DURATION, NAME, REPLICATION, SHARD, FUTURE, PAST at line 1, char 24'),
    ('ALTER RETENTION POLICY p ON d', None, 'error parsing query: found EOF, expected DURATION, REPLICATION, SHARD, DEFAULT, FUTURE, PAST at line 1, char 31'),
    ('SELECT a FROM b\n\nWHERE', None, 'error parsing query: found EOF, expected identifier, string, number, bool at line 3, char 7'),
]


def _scan_all(lex: Lexer) -> list[tuple[str, str, int, int]]:
    out: list[tuple[str, str, int, int]] = []
    offset = 0
    while True:
        tok = lex.scan(offset)
        out.append((tok.kind, tok.lit, tok.start, tok.end))
        if tok.kind == EOF:
            return out
        assert tok.end > offset, f"scan at {offset} of {lex.text!r} did not advance"
        offset = tok.end


@pytest.mark.parametrize(("text", "expected"), TOKEN_TABLE)
def test_tokens_match_recorded_table(text: str, expected: list[tuple[str, str, int, int]]) -> None:
    assert _scan_all(Lexer(text)) == expected


@pytest.mark.parametrize(("text", "expected"), TOKEN_TABLE)
def test_tokens_after_significant_scans_match_table(
    text: str, expected: list[tuple[str, str, int, int]]
) -> None:
    # the parser's path (scan_significant fills the memo in runs) must memoise the same tokens
    lex = Lexer(text)
    offset = 0
    while (tok := lex.scan_significant(offset)).kind != EOF:
        offset = tok.end
    assert _scan_all(lex) == expected


@pytest.mark.parametrize(("text", "expected"), REGEX_TABLE)
def test_scan_regex_matches_recorded_table(text: str, expected: tuple[str, str, int, int]) -> None:
    tok = Lexer(text).scan_regex(0)
    assert (tok.kind, tok.lit, tok.start, tok.end) == expected


@pytest.mark.parametrize(("text", "expected"), EOF_POSITIONS)
def test_eof_position(text: str, expected: tuple[int, int]) -> None:
    assert Lexer(text).position(-1) == expected


def test_peeked_eof_moves_eof_one_char_further_only_when_it_was_at_the_end() -> None:
    after_quote = Lexer('"q"')  # EOF right at the end: the peek moves it
    after_quote.peeked_eof()
    assert after_quote.position(-1) == (1, 5)
    after_ident = Lexer("a")  # already one char further: unchanged
    assert after_ident.position(-1) == (1, 3)
    after_ident.peeked_eof()
    assert after_ident.position(-1) == (1, 3)


@pytest.mark.parametrize(("text", "params", "error"), PARSE_ERRORS)
def test_parse_errors_match_recorded_texts(text: str, params: dict | None, error: str) -> None:
    try:
        parse_query(text, params)
    except InfluxQLParseError as exc:
        assert str(exc) == error
    else:
        assert error == "OK"


def test_memoised_scan_returns_the_same_token() -> None:
    lex = Lexer("SELECT a FROM cpu")
    first = lex.scan(7)
    assert lex.scan(7) is first
    assert first == Token("IDENT", "a", 7, 8)
    assert lex.scan_significant(6) == first
    assert lex.scan_significant(6) is lex.scan_significant(6)


ALPHABET = st.sampled_from(
    [*"aZq_09'\"\\ \n\t\r=<>!~:+-*/%&|^(),;.µ$", "--", "/*", "*/", "select", "1h", "é"]
)
TEXTS = st.lists(ALPHABET, max_size=30).map("".join)


@settings(max_examples=200, deadline=None)
@given(TEXTS)
def test_scan_never_raises_and_tokens_tile_the_text(text: str) -> None:
    # Each scan starts where the previous one ended and advances; a token's start is that offset,
    # except BADSTRING/BADESCAPE, which (as in influxql) point inside the lexeme at the bad part.
    # A BADESCAPE of a lone trailing backslash ends one past the text (its lit is just "\\").
    lex = Lexer(text)
    offset = 0
    last = ""
    while True:
        tok = lex.scan(offset)
        if tok.kind == EOF:
            assert tok.end == len(text)
            break
        last = tok.kind
        assert tok.end > offset
        if tok.kind in (BADSTRING, BADESCAPE):
            assert offset <= tok.start < tok.end
        else:
            assert tok.start == offset
        offset = tok.end
    assert offset == len(text) or (last == BADESCAPE and offset == len(text) + 1)
    assert lex.position(-1)[0] == text.count("\n") + 1


@settings(max_examples=200, deadline=None)
@given(TEXTS, st.data())
def test_fast_paths_equal_the_per_offset_scanner(text: str, data: st.DataObject) -> None:
    # scan_significant's run fill must memoise exactly what a fresh per-offset scan returns, at
    # every offset (unscans land anywhere), and skip exactly WS and COMMENT tokens
    start = data.draw(st.integers(0, len(text)))
    lex = Lexer(text)
    tok = lex.scan_significant(start)
    offset = start
    while (raw := Lexer(text).scan(offset)).kind in (WS, COMMENT):
        offset = raw.end
    assert tok == raw
    for offset in range(len(text) + 1):
        assert lex.scan(offset) == Lexer(text).scan(offset)
