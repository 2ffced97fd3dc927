"""Segment file: round trip of every type with nulls, pruned reads vs brute force, corruption."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.batch import FieldType, series_key
from storage.segment_format import (
    SegmentCorrupt,
    read_footer,
    read_segment,
    read_segment_info,
    write_segment,
)

TAGS = ["host", "region"]


def rows_of(table: pa.Table) -> list[dict]:
    """Rows as dicts with integer times (no pandas needed)."""
    if "time" in table.column_names:
        idx = table.column_names.index("time")
        table = table.set_column(idx, "time", table.column("time").cast(pa.int64()))
    return table.to_pylist()


def expected_sorted(table: pa.Table, measurement: str, tag_keys: list[str]) -> list[dict]:
    rows = rows_of(table)

    def key(r: dict) -> tuple[str, int]:
        tags = tuple((k, r[k]) for k in sorted(tag_keys) if r.get(k) is not None)
        return series_key(measurement, tags), r["time"]

    return sorted(rows, key=key)


def all_types_table() -> pa.Table:
    n = 40
    rng = np.random.default_rng(7)
    hosts = ["h,1 =x", "ü-ñ", "a\\b", "plain", None]
    late = [None] * 20 + list(range(20))  # a field appearing later
    return pa.table({
        "time": pa.array(rng.integers(0, 10**12, n), type=pa.timestamp("ns")),
        "host": pa.array([hosts[i % 5] for i in range(n)], type=pa.string()),
        "region": pa.array(["eu" if i % 3 else None for i in range(n)], type=pa.string()),
        "f": pa.array([None if i % 7 == 0 else float(i) / 3 for i in range(n)], type=pa.float64()),
        "nan": pa.array([float("nan"), -0.0, float("inf")] * 13 + [1.5], type=pa.float64()),
        "i": pa.array([None if i % 4 == 0 else -(2**63) + i for i in range(n)], type=pa.int64()),
        "u": pa.array([2**64 - 1 - i for i in range(n)], type=pa.uint64()),
        "b": pa.array([None if i % 5 == 1 else i % 2 == 0 for i in range(n)], type=pa.bool_()),
        "s": pa.array(["", "😀 x", None, "line\nbreak"] * 10, type=pa.string()),
        "late": pa.array(late, type=pa.int64()),
        "allnull": pa.array([None] * n, type=pa.float64()),
    })


def test_round_trip_every_type_with_nulls(tmp_path: Path) -> None:
    table = all_types_table()
    path = tmp_path / "a.seg"
    info = write_segment(path, database="db", measurement="cpu load", seq=7, table=table, tag_keys=TAGS)
    assert not (tmp_path / "a.seg.tmp").exists()
    assert info.content_hash == hashlib.blake2b(path.read_bytes(), digest_size=32).hexdigest()
    assert info.size == path.stat().st_size
    assert read_segment_info(path) == info
    assert info.field_types == {"allnull": FieldType.FLOAT, "b": FieldType.BOOLEAN, "f": FieldType.FLOAT,
                                "i": FieldType.INTEGER, "late": FieldType.INTEGER, "nan": FieldType.FLOAT,
                                "s": FieldType.STRING, "u": FieldType.UNSIGNED}
    assert info.tag_keys == TAGS
    times = table.column("time").cast(pa.int64()).to_numpy()
    assert (info.min_time_ns, info.max_time_ns, info.rows) == (times.min(), times.max(), 40)
    got = read_segment(path)
    assert got.schema.field("time").type == pa.timestamp("ns")
    assert got.column_names == ["time", "host", "region", "allnull", "b", "f", "i", "late", "nan", "s", "u"]
    want = expected_sorted(table, "cpu load", TAGS)
    got_rows = rows_of(got)
    # NaN != NaN: compare float bit patterns for the "nan" column separately.
    got_nan = np.array([r.pop("nan") for r in got_rows]).view(np.uint64)
    want_nan = np.array([r.pop("nan") for r in want]).view(np.uint64)
    assert got_rows == want
    assert np.array_equal(got_nan, want_nan)
    assert info.series_count == len({(r["host"], r["region"]) for r in want})
    assert info.field_values == sum(len(c) - c.null_count for c in table.columns[3:])


def test_footer_dictionary_stores_each_tag_value_once(tmp_path: Path) -> None:
    n = 1000
    table = pa.table({"time": pa.array(np.arange(n), type=pa.int64()),
                      "host": [f"h{i % 10}" for i in range(n)], "dc": ["x" if i % 2 else "y" for i in range(n)],
                      "v": pa.array(np.arange(n, dtype=np.float64))})
    write_segment(tmp_path / "d.seg", database="db", measurement="m", seq=1, table=table, tag_keys=["host", "dc"])
    footer = read_footer(tmp_path / "d.seg")
    assert footer.tag_keys == ["dc", "host"]
    assert footer.tag_values == [["x", "y"], [f"h{i}" for i in range(10)]]
    assert footer.series_count == 10
    assert [c.role for c in footer.chunks] == ["time", "values"]  # v2: no series_id, no all-valid validity
    assert sum(np.diff(footer.series_rows.astype(np.int64))) == n


def test_string_columns_default_to_tags_and_metadata_overrides(tmp_path: Path) -> None:
    table = pa.table({"time": pa.array([1, 2], type=pa.int64()), "t": ["a", "b"], "s": ["x", "y"]})
    info = write_segment(tmp_path / "a.seg", database="d", measurement="m", seq=1, table=table)
    assert info.tag_keys == ["s", "t"]
    back = read_segment(tmp_path / "a.seg")
    info2 = write_segment(tmp_path / "b.seg", database="d", measurement="m", seq=2, table=back)
    assert info2.tag_keys == ["s", "t"] and info2.field_types == {}
    meta = table.replace_schema_metadata({b"edgets:tag_keys": b'["t"]'})
    info3 = write_segment(tmp_path / "c.seg", database="d", measurement="m", seq=3, table=meta)
    assert info3.tag_keys == ["t"] and info3.field_types == {"s": FieldType.STRING}


def test_empty_table_is_refused(tmp_path: Path) -> None:
    table = pa.table({"time": pa.array([], type=pa.int64()), "v": pa.array([], type=pa.float64())})
    with pytest.raises(ValueError, match="empty"):
        write_segment(tmp_path / "e.seg", database="d", measurement="m", seq=1, table=table)


# ---------------------------------------------------------------- pruned reads vs brute force

HOSTS = ["a", "b", "c,d", "é"]
REGIONS = ["x", "y"]


@st.composite
def random_tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(1, 60))
    host = draw(st.lists(st.sampled_from([*HOSTS, None]), min_size=n, max_size=n))
    region = draw(st.lists(st.sampled_from([*REGIONS, None]), min_size=n, max_size=n))
    times = draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n))
    f = draw(st.lists(st.one_of(st.none(), st.floats(allow_nan=False, width=64)), min_size=n, max_size=n))
    i = draw(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=n, max_size=n))
    s = draw(st.lists(st.one_of(st.none(), st.text(max_size=4)), min_size=n, max_size=n))
    b = draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n))
    return pa.table({"time": pa.array(times, type=pa.timestamp("ns")), "host": pa.array(host, pa.string()),
                     "region": pa.array(region, pa.string()), "f": pa.array(f, pa.float64()),
                     "i": pa.array(i, pa.int64()), "s": pa.array(s, pa.string()), "b": pa.array(b, pa.bool_())})


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table=random_tables(),
    start=st.one_of(st.none(), st.integers(-60, 60)),
    end=st.one_of(st.none(), st.integers(-60, 60)),
    hosts=st.one_of(st.none(), st.sets(st.sampled_from([*HOSTS, "", "zz"]), max_size=3)),
    regions=st.one_of(st.none(), st.sets(st.sampled_from([*REGIONS, ""]), max_size=2)),
    columns=st.one_of(st.none(), st.lists(st.sampled_from(["f", "i", "s", "b", "host", "region", "nope"]),
                                          max_size=4, unique=True)),
)
def test_pruned_read_equals_brute_force(tmp_path: Path, table: pa.Table, start: int | None, end: int | None,
                                        hosts: set[str] | None, regions: set[str] | None,
                                        columns: list[str] | None) -> None:
    path = tmp_path / "h.seg"
    write_segment(path, database="db", measurement="m", seq=1, table=table, tag_keys=["host", "region"])
    tag_filter = {k: v for k, v in (("host", hosts), ("region", regions)) if v is not None}
    got = read_segment(path, columns=columns, start_ns=start, end_ns=end, tag_filter=tag_filter or None)
    want = []
    for r in expected_sorted(table, "m", ["host", "region"]):
        if start is not None and r["time"] < start or end is not None and r["time"] >= end:
            continue
        if any((r[k] or "") not in allowed for k, allowed in tag_filter.items()):
            continue
        if columns is not None:
            r = {"time": r["time"], **{c: r[c] for c in columns if c in r}}
        want.append(r)
    assert rows_of(got) == want


# ---------------------------------------------------------------- corruption

def test_corrupt_chunk_byte_names_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "c.seg"
    write_segment(path, database="db", measurement="m", seq=1, table=all_types_table(), tag_keys=TAGS)
    chunk = read_footer(path).chunk("i", "values")
    data = bytearray(path.read_bytes())
    data[chunk.offset + chunk.length // 2] ^= 0x40
    path.write_bytes(bytes(data))
    read_segment(path, columns=["f"])  # other columns still read fine
    with pytest.raises(SegmentCorrupt) as err:
        read_segment(path, columns=["i"])
    assert err.value.offset == chunk.offset
    assert str(path) in str(err.value) and f"offset {chunk.offset}" in str(err.value)
    with pytest.raises(SegmentCorrupt) as err2:
        read_segment_info(path)
    assert err2.value.offset == chunk.offset


def test_corrupt_footer_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "f.seg"
    write_segment(path, database="db", measurement="m", seq=1, table=all_types_table(), tag_keys=TAGS)
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[-100] ^= 1  # inside the footer
    path.write_bytes(bytes(damaged))
    with pytest.raises(SegmentCorrupt, match="footer checksum"):
        read_segment(path)
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(SegmentCorrupt, match="trailer"):
        read_segment_info(path)
    path.write_bytes(b"NOTASEGM" + good[8:])
    with pytest.raises(SegmentCorrupt, match="magic") as err:
        read_segment_info(path)
    assert err.value.offset == 0
