"""Decoded-chunk cache: LRU bounds, reads through it equal reads without it, shared arrays are
read-only; cached series selections equal fresh ones; the engine reports the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.lineproto import parse_lines
from storage.chunk_cache import ChunkCache
from storage.engine import StorageConfig, StorageEngine
from storage.segment_format import (
    read_footer,
    read_segment,
    read_segment_rows,
    series_matching,
    series_selection,
    write_segment,
)
from tests.test_segment_rowgroups import HOSTS
from tests.test_segment_rowgroups import sample_table as _table


def test_lru_keeps_recent_entries_within_the_budget() -> None:
    cache = ChunkCache(100)
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("c", "C", 40)  # over budget: b (least recent) goes
    assert cache.get("b") is None and cache.get("a") == "A" and cache.get("c") == "C"
    cache.put("huge", "H", 101)  # larger than the whole budget: not kept, nothing evicted
    assert cache.get("huge") is None and cache.get("a") == "A"
    cache.put("a", "A2", 10)  # replacing an entry re-counts its bytes
    assert cache.stats() == {"chunk_cache_bytes": 50, "chunk_cache_entries": 2,
                             "chunk_cache_hits": 4, "chunk_cache_misses": 2}
    off = ChunkCache(0)
    off.put("x", "X", 1)
    assert off.get("x") is None
    with pytest.raises(ValueError, match="chunk cache size"):
        ChunkCache(-1)


def test_reads_through_the_cache_equal_plain_reads(tmp_path: Path) -> None:
    path = tmp_path / "s.seg"
    write_segment(path, database="d", measurement="m", seq=1, table=_table(3000, 1), row_group_rows=256)
    footer = read_footer(path)
    cache = ChunkCache(64 * 2**20)
    cases = [dict(start_ns=None, end_ns=None, tag_filter=None), dict(start_ns=200, end_ns=700, tag_filter=None),
             dict(start_ns=10, end_ns=900, tag_filter={"host": {"b", "e"}}),
             dict(start_ns=None, end_ns=500, tag_filter={"dc": {""}})]
    for case in cases:
        plain = read_segment(path, footer=footer, **case)  # type: ignore[arg-type]
        for _ in range(2):  # the second read is served from the cache
            assert read_segment(path, footer=footer, cache=cache, **case).equals(plain)  # type: ignore[arg-type]
    assert cache.hits > 0 and cache.misses > 0
    hits = cache.hits
    rows = read_segment_rows(path, fields=["f", "i"], footer=footer, cache=cache, tail=2)
    again = read_segment_rows(path, fields=["f", "i"], footer=footer, tail=2)
    assert rows is not None and again is not None
    assert rows.time.tolist() == again.time.tolist() and rows.fields["f"].equals(again.fields["f"])
    assert cache.hits > hits  # the tail read found the chunks the full reads decoded
    small = tmp_path / "small.seg"
    write_segment(small, database="d", measurement="m", seq=2, table=_table(100, 3))  # one row group
    rows = read_segment_rows(small, fields=["f"], cache=cache)
    assert rows is not None and not rows.time.flags.writeable  # a view of the cached chunk: read-only
    with pytest.raises(ValueError):
        rows.time[0] = 1


def test_cached_series_selection_equals_a_fresh_one(tmp_path: Path) -> None:
    path = tmp_path / "s.seg"
    write_segment(path, database="d", measurement="m", seq=1, table=_table(500, 2))
    footer = read_footer(path)
    filters = [None, {}, {"host": {"a"}}, {"host": {"a", "zz"}}, {"dc": {""}}, {"dc": {"x"}, "host": {"c", "d"}},
               {"nothere": {"v"}}, {"nothere": {""}}]
    for _ in range(2):
        for tag_filter in filters:
            selection = series_selection(footer, tag_filter)
            fresh = series_matching(footer, tag_filter)
            assert selection.ok.tolist() == fresh.tolist()
            assert selection.any == bool(fresh.any()) and selection.all == bool(fresh.all())
            assert selection.prefix.tolist() == [0, *np.cumsum(fresh).tolist()]
    assert len(footer._selections) == 7  # None and {} share the empty key


def test_engine_reads_fill_and_report_the_cache(tmp_path: Path) -> None:
    with StorageEngine(StorageConfig(tmp_path / "on", fsync="never", background=False)) as engine, \
            StorageEngine(StorageConfig(tmp_path / "off", fsync="never", background=False,
                                        chunk_cache_bytes=0)) as uncached:
        for eng in (engine, uncached):
            eng.create_database("d")
            body = "\n".join(f"m,host={HOSTS[k % len(HOSTS)]} v={k}.5,n={k}i {1_000_000_000 * k}" for k in range(2000))
            eng.write("d", list(parse_lines(body.encode(), "ns").batches.values()))
            eng.flush_all()
        for _ in range(2):
            ours = engine.read("d", "m", start_ns=10**11, end_ns=10**12, tag_filter={"host": {"b"}})
            assert ours.equals(uncached.read("d", "m", start_ns=10**11, end_ns=10**12, tag_filter={"host": {"b"}}))
        stats, off = engine.stats(), uncached.stats()
        assert stats["chunk_cache_hits"] > 0 and stats["chunk_cache_bytes"] > 0
        assert off["chunk_cache_hits"] == 0 and off["chunk_cache_bytes"] == 0


def test_a_fully_cached_read_does_not_open_the_file(tmp_path: Path) -> None:
    """The file is opened at the first chunk the cache lacks: a read whose chunks are all
    cached works without it (a segment deleted under a running read still answers as listed)."""
    path = tmp_path / "s.seg"
    write_segment(path, database="d", measurement="m", seq=1, table=_table(400, 4))
    footer = read_footer(path)
    cache = ChunkCache(2**20)
    first = read_segment(path, columns=["f"], footer=footer, cache=cache)
    path.unlink()
    assert read_segment(path, columns=["f"], footer=footer, cache=cache).equals(first)
    with pytest.raises(FileNotFoundError):
        read_segment(path, columns=["i"], footer=footer, cache=cache)  # "i" was never decoded


def test_large_scans_do_not_evict_the_cache(tmp_path: Path) -> None:
    """A read decoding more than a quarter of the cache only looks chunks up (no LRU thrash)."""
    path = tmp_path / "s.seg"
    write_segment(path, database="d", measurement="m", seq=1, table=_table(4000, 5), row_group_rows=500)
    footer = read_footer(path)
    cache = ChunkCache(200_000)  # a full read (4000 rows x 3 columns x 8 bytes) is > 1/4 of it
    small = read_segment(path, columns=["f"], start_ns=0, end_ns=30, tag_filter={"host": {"a"}},
                         footer=footer, cache=cache)
    kept = cache.stats()["chunk_cache_entries"]
    assert kept > 0
    full = read_segment(path, columns=["f", "i"], footer=footer, cache=cache)
    assert cache.stats()["chunk_cache_entries"] == kept  # the scan added nothing ...
    assert cache.hits > 0  # ... but used what was there
    assert full.equals(read_segment(path, columns=["f", "i"], footer=footer))
    assert read_segment(path, columns=["f"], start_ns=0, end_ns=30, tag_filter={"host": {"a"}},
                        footer=footer, cache=cache).equals(small)
