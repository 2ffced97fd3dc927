"""Segment format v2 row groups: v1 compatibility, pruning by row-group stats, tail reads, footer cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.segment_format import (
    ROLE_TIME,
    ROLE_VALUES,
    SegmentCorrupt,
    SegmentInfo,
    plan_row_groups,
    read_footer,
    read_segment,
    read_segment_rows,
    write_segment,
)
from storage.segment_store import SegmentStore

HOSTS = ["a", "b", "c", "d", "e"]


def sample_table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "time": pa.array(rng.integers(0, 1000, n), type=pa.timestamp("ns")),
        "host": pa.array([HOSTS[i] for i in rng.integers(0, len(HOSTS), n)], type=pa.string()),
        "dc": pa.array([None if i % 3 == 0 else "x" for i in range(n)], type=pa.string()),
        "f": pa.array([None if i % 4 == 1 else float(i) for i in range(n)], type=pa.float64()),
        "i": pa.array(rng.integers(-50, 50, n), type=pa.int64()),
    })


def int_rows(table: pa.Table) -> list[dict]:
    return table.set_column(0, "time", table.column("time").cast(pa.int64())).to_pylist()


def brute_tail(table: pa.Table, fields: list[str], n: int) -> list[dict]:
    """Last n rows per series (table sorted by series, time) having a non-null requested field."""
    rows = int_rows(table)
    keep = [r for r in rows if not fields or any(r[f] is not None for f in fields)]
    out: list[dict] = []
    by_series: dict[tuple, list[dict]] = {}
    for r in keep:
        by_series.setdefault((r["dc"], r["host"]), []).append(r)
    wanted = {id(r) for rs in by_series.values() for r in rs[-n:]}
    out = [r for r in keep if id(r) in wanted]
    return out


def test_plan_row_groups_cuts_at_series_boundaries() -> None:
    runs = np.array([0, 3, 5, 20, 21, 22], dtype=np.int64)  # series of 3, 2, 15, 1, 1 rows
    groups = plan_row_groups(runs, 6)
    # the 15-row series is longer than the target: three equal groups of its own (5 rows each)
    assert groups == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 22)]
    assert plan_row_groups(np.array([0, 4], dtype=np.int64), 6) == [(0, 4)]
    assert plan_row_groups(np.array([0, 8640], dtype=np.int64), 8192) == [(0, 4320), (4320, 8640)]
    assert plan_row_groups(np.array([0, 13], dtype=np.int64), 6) == [(0, 4), (4, 8), (8, 13)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 120), seed=st.integers(0, 10**6), group=st.integers(1, 40),
       lo=st.integers(-10, 1010), width=st.integers(0, 1100), hosts=st.sets(st.sampled_from(HOSTS + [""])),
       cols=st.sampled_from([None, ["f"], ["i", "host"], []]))
def test_row_group_reads_equal_v1_reads(tmp_path: Path, n: int, seed: int, group: int, lo: int, width: int,
                                        hosts: set[str], cols: list[str] | None) -> None:
    table = sample_table(n, seed)
    v1 = write_segment(tmp_path / "v1.seg", database="db", measurement="m", seq=1, table=table,
                       tag_keys=["host", "dc"], version=1)
    assert read_footer(v1.path).version == 1
    plain = write_segment(tmp_path / "plain.seg", database="db", measurement="m", seq=2, table=table,
                          tag_keys=["host", "dc"], row_group_rows=group, version=2)
    assert read_footer(plain.path).version == 2
    v3 = write_segment(tmp_path / "v3.seg", database="db", measurement="m", seq=3, table=table,
                       tag_keys=["host", "dc"], row_group_rows=group)  # default: compressed footer
    for v2 in (plain, v3):
        _check_row_group_reads(v1, v2, table, n, lo, width, hosts, cols)


def _check_row_group_reads(v1: SegmentInfo, v2: SegmentInfo, table: pa.Table, n: int, lo: int, width: int,
                           hosts: set[str], cols: list[str] | None) -> None:
    footer = read_footer(v2.path)
    assert footer.row_groups[0].row_start == 0 and footer.row_groups[-1].row_end == n
    times = read_segment(v2.path).column("time").cast(pa.int64()).to_numpy()
    for g in footer.row_groups:
        assert g.min_time_ns == times[g.row_start:g.row_end].min()
        assert g.max_time_ns == times[g.row_start:g.row_end].max()
    tag_filter = {"host": hosts} if hosts else None
    kw = dict(columns=cols, start_ns=lo, end_ns=lo + width, tag_filter=tag_filter)
    assert read_segment(v2.path, **kw).equals(read_segment(v1.path, **kw))
    full = read_segment(v1.path)
    for tail in (1, 2):
        fields = ["f"] if cols is None else [c for c in (cols or []) if c in ("f", "i")]
        got = read_segment_rows(v2.path, fields=fields, tail=tail)
        got_v1 = read_segment_rows(v1.path, fields=fields, tail=tail)
        expect = brute_tail(full, fields, tail)
        for rows in (got, got_v1):
            if not expect:
                assert rows is None
                continue
            assert rows is not None
            schema_cols = ["host", "dc", *fields]
            table_rows = int_rows(rows.to_table(pa.schema([full.schema.field(c) for c in ["time", *schema_cols]])))
            assert table_rows == [{k: r[k] for k in ["time", *schema_cols]} for r in expect]


def test_only_matching_row_groups_are_decoded(tmp_path: Path) -> None:
    t = np.arange(40, dtype=np.int64)
    table = pa.table({"time": pa.array(np.concatenate([t, t]), type=pa.timestamp("ns")),
                      "host": ["a"] * 40 + ["b"] * 40, "v": pa.array(np.arange(80, dtype=np.float64))})
    info = write_segment(tmp_path / "s.seg", database="db", measurement="m", seq=1, table=table,
                         tag_keys=["host"], row_group_rows=10)
    footer = read_footer(info.path)
    assert len(footer.row_groups) == 8
    # corrupt the values chunk of host b's last row group (rows 70..79, times 30..39)
    victim = footer.row_groups[-1].chunks[("v", ROLE_VALUES)]
    data = bytearray(info.path.read_bytes())
    data[victim.offset + victim.length - 1] ^= 0xFF
    info.path.write_bytes(bytes(data))
    a = read_segment(info.path, tag_filter={"host": {"a"}})
    assert a.column("v").to_pylist() == [float(x) for x in range(40)]
    early_b = read_segment(info.path, tag_filter={"host": {"b"}}, end_ns=30)
    assert early_b.column("v").to_pylist() == [float(x) for x in range(40, 70)]
    with pytest.raises(SegmentCorrupt, match="checksum mismatch"):
        read_segment(info.path, tag_filter={"host": {"b"}}, start_ns=35)
    tc = footer.row_groups[0].chunks[("time", ROLE_TIME)]
    assert tc.group == 0 and footer.row_groups[-1].chunks[("v", ROLE_VALUES)].group == 7


def test_store_parses_each_footer_once(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.open()
    info = store.seal("db", "m", sample_table(50, 1), tag_keys=["host", "dc"])
    for host in HOSTS:
        store.read("db", "m", tag_filter={"host": {host}})
        store.read_rows("db", "m", fields=["f"], start_ns=10)
    assert store.footer_parses == 1
    store.delete(info, "test", force=True)
    assert store.read("db", "m") == []
    info2 = store.seal("db", "m", sample_table(30, 2), tag_keys=["host", "dc"])
    assert sum(t.num_rows for t in store.read("db", "m")) == 30 == info2.rows
    assert store.footer_parses == 2
