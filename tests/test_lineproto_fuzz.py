"""Fuzzing: random and mutated bodies never raise; results stay self-consistent."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.lineproto import parse_lines

SEED_LINES = [
    b'cpu,host=a\\ b,region=eu usage=1.5,n=3i,u=4u,ok=t,s="x \\"y\\" z" 1700000000000000000',
    b"mem free=10i",
    b"# comment",
    b'w\\,x,k\\==v\\, f\\ 1="\\\\",g=-1e-3 -5',
]
ALPHABET = b' ,="\\\n\r\t#-.0123456789eEiutfTFabcxyz\xff\xc3\xa9'


def _check(body: bytes) -> None:
    result = parse_lines(body, default_time_ns=0)
    lines = body.count(b"\n") + 1
    assert result.points + len(result.errors) <= lines
    assert result.points == sum(len(b) for b in result.batches.values())
    for e in result.errors:
        assert 1 <= e.line <= lines and e.reason and isinstance(e.text, str)
    for name, batch in result.batches.items():
        n = len(batch)
        assert batch.measurement == name and n > 0
        assert batch.series_id.dtype == np.int32 and batch.time.dtype == np.int64
        assert batch.line is not None and batch.line.shape == (n,)
        assert np.all(np.diff(batch.line) > 0)  # body order
        assert 0 <= batch.series_id.min() and batch.series_id.max() < len(batch.series)
        assert len(set(batch.series)) == len(batch.series)
        for tags in batch.series:
            assert list(tags) == sorted(tags) and all(k and v for k, v in tags)
        for arr in batch.fields.values():
            assert len(arr) == n
            arr.validate(full=True)
        assert batch.field_value_count() >= n  # every row carries at least one field


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(body: bytes) -> None:
    _check(body)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(ALPHABET)), max_size=200).map(bytes))
def test_protocol_alphabet_soup_never_raises(body: bytes) -> None:
    _check(body)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SEED_LINES), st.integers(0, 200),
                          st.sampled_from(list(ALPHABET)), st.sampled_from(["ins", "del", "set"])),
                min_size=1, max_size=8))
def test_mutated_lines_never_raise(edits: list[tuple[bytes, int, int, str]]) -> None:
    lines = []
    for line, pos, byte, op in edits:
        pos %= len(line) + 1
        if op == "ins":
            line = line[:pos] + bytes([byte]) + line[pos:]
        elif op == "del":
            line = line[:pos] + line[pos + 1:]
        else:
            line = line[:pos] + bytes([byte]) + line[pos + 1:]
        lines.append(line)
    _check(b"\n".join(lines))


def test_unmutated_seed_lines_all_parse() -> None:
    result = parse_lines(b"\n".join(SEED_LINES))
    assert result.errors == [] and result.points == 3


def test_trailing_backslash_and_empty_bodies() -> None:
    for body in (b"", b"\n", b"\\", b"m v=1\\", b"m\\", b'm v="\\', b"\x00", b"m v=1 1\\\n"):
        _check(body)
    assert parse_lines(b"").points == 0 and parse_lines(b"").errors == []


def test_concurrent_calls_match_sequential_ones() -> None:
    from concurrent.futures import ThreadPoolExecutor

    bodies = [
        "".join(f"m{k},h=h{i % 13} v={i}i,f={i / 7!r},s=\"{i}\" {i}\n" for i in range(4000)).encode()
        for k in range(4)
    ]
    expected = [parse_lines(b) for b in bodies]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(parse_lines, bodies))
    for want, have in zip(expected, got, strict=True):
        assert have.points == want.points == 4000
        (name, batch), = have.batches.items()
        assert name == next(iter(want.batches))
        other = want.batches[name]
        assert batch.series == other.series
        assert batch.time.tolist() == other.time.tolist()
        assert all(batch.fields[k].equals(other.fields[k]) for k in other.fields)
