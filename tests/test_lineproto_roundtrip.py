"""Hypothesis round trips: format_line -> parse_lines gives back the same names, tags, typed
values (bit-exact floats) and times; float parsing is exact against Python's float()."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.lineproto import parse_lines
from ingest.lineproto_format import format_line
from storage.batch import MAX_TIME_NS, MIN_TIME_NS, FieldType

NASTY = " ,=\"\\'\t#é✓日\u00a0x"
_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n")
_text = st.text(alphabet=st.one_of(st.sampled_from(NASTY), _chars), min_size=1, max_size=12)
_name = _text.filter(lambda s: not s.endswith("\\"))
_measurement = _name.filter(lambda s: s[0] not in "#\t\0")
_field_key = _name.filter(lambda s: s[0] not in "\t\0" and s != "time")
_tag_key = _name.filter(lambda s: s != "time")
_value = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=0, max_value=2**64 - 1).map(lambda n: ("u", n)),
    st.booleans(),
    st.text(alphabet=st.one_of(st.sampled_from(NASTY + "\n"), _chars), max_size=20),
)


def _typed(value: object) -> tuple[FieldType, object]:
    if isinstance(value, bool):
        return FieldType.BOOLEAN, value
    if isinstance(value, tuple):
        return FieldType.UNSIGNED, value[1]
    if isinstance(value, int):
        return FieldType.INTEGER, value
    if isinstance(value, float):
        return FieldType.FLOAT, struct.pack("<d", value)
    return FieldType.STRING, value


def _got(arr: object, row: int) -> object:
    value = arr.to_pylist()[row]  # type: ignore[attr-defined]
    return struct.pack("<d", value) if isinstance(value, float) else value


@settings(max_examples=150, deadline=None)
@given(
    measurement=_measurement,
    tags=st.dictionaries(_tag_key, _name, max_size=4),
    fields=st.dictionaries(_field_key, _value, min_size=1, max_size=5),
    time_ns=st.one_of(st.none(), st.integers(min_value=MIN_TIME_NS, max_value=MAX_TIME_NS)),
)
def test_format_then_parse_round_trips(measurement: str, tags: dict[str, str],
                                       fields: dict[str, object], time_ns: int | None) -> None:
    line = format_line(measurement, tags, fields, time_ns)
    body = ("# header\n" + line + "\n" + line + "\n").encode()
    result = parse_lines(body, default_time_ns=42)
    assert result.errors == [], (line, result.errors)
    assert list(result.batches) == [measurement]
    batch = result.batches[measurement]
    assert batch.series == [tuple(sorted(tags.items()))]
    assert batch.time.tolist() == [42 if time_ns is None else time_ns] * 2
    assert batch.line.tolist() == [2, 3 + line.count("\n")]  # physical line numbers
    assert batch.field_types() == {k: _typed(v)[0] for k, v in fields.items()}
    for name, value in fields.items():
        assert _got(batch.fields[name], 1) == _typed(value)[1], (line, name)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30))
def test_float_repr_parses_bit_exact(values: list[float]) -> None:
    body = "".join(f"m v={v!r} {i}\n" for i, v in enumerate(values)).encode()
    got = parse_lines(body).batches["m"].fields["v"].to_numpy()
    assert got.view(np.int64).tolist() == np.array(values).view(np.int64).tolist()


_decimal = st.builds(
    lambda sign, whole, frac, exp: f"{sign}{whole}{frac}{exp}",
    st.sampled_from(["", "-"]),
    st.text(alphabet="0123456789", min_size=1, max_size=22),
    st.one_of(st.just(""), st.text(alphabet="0123456789", max_size=22).map(lambda s: "." + s)),
    st.one_of(st.just(""), st.integers(-350, 350).map(lambda e: f"e{e:+d}")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_decimal, min_size=1, max_size=20))
def test_decimal_text_matches_python_float(texts: list[str]) -> None:
    body = "".join(f"m v={t} {i}\n" for i, t in enumerate(texts)).encode()
    result = parse_lines(body)
    expected = [float(t) for t in texts]
    finite = [v for v in expected if abs(v) != float("inf")]
    assert len(result.errors) == len(expected) - len(finite)
    assert all(e.reason == "invalid float" for e in result.errors)
    if finite:
        got = result.batches["m"].fields["v"].to_numpy()
        assert got.view(np.int64).tolist() == np.array(finite).view(np.int64).tolist()


def test_format_line_examples_and_refusals() -> None:
    line = format_line("c,p u", {"z": "1", "a b": "x=y"},
                       {"v": 1.5, "n": 3, "u": ("u", 7), "b": True, "s": 'a"b\\c'}, 10)
    assert line == 'c\\,p\\ u,a\\ b=x\\=y,z=1 v=1.5,n=3i,u=7u,b=true,s="a\\"b\\\\c" 10'
    assert format_line("m", (), {"u": np.uint64(2**64 - 1)}, None) == "m u=18446744073709551615u"
    for bad in [("", {}, {"v": 1}), ("#m", {}, {"v": 1}), ("m\\", {}, {"v": 1}),
                ("m", {"k": ""}, {"v": 1}), ("m", {}, {}), ("m", {}, {"v": float("nan")}),
                ("m", {}, {"v": 2**63}), ("m", {}, {"a\nb": 1})]:
        try:
            format_line(*bad, None)
        except ValueError:
            continue
        raise AssertionError(f"format_line accepted {bad!r}")
