"""Compiles (or loads from numba's cache) every hot kernel once: parser, codecs, segments, query.

Run at install time (`python -m edge_agent.warmup`, from the Makefile) so the first write of a
fresh install does not wait for compilation, and in the background when a node starts.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

_BODY = (
    b"warm,host=a,region=eu\\ west f=1.5,i=-3i,u=7u,s=\"x\",b=true 1700000000000000000\n"
    b"warm,host=b f=2.25,i=4i,u=9u,s=\"y\\\"z\",b=F 1700000010000000000\n"
    b"bad line\n"
)


def warm_parser() -> None:
    from ingest.lineproto import parse_lines

    for precision in ("ns", "s"):
        parse_lines(_BODY, precision)


def warm_codecs() -> None:
    from storage import codecs

    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.integers(-2, 3, 3000)).astype(np.int64)
    times = 1_700_000_000_000_000_000 + np.arange(3000, dtype=np.int64) * 10**10 + rng.integers(0, 10**6, 3000)
    decimals = np.round(20 + np.cumsum(rng.normal(0, 0.1, 3000)), 2)
    for values in (walk, walk * 1000 + 7, rng.integers(-(2**62), 2**62, 3000)):
        codecs.decode_ints(codecs.encode_ints(values))
        codecs.decode_uints(codecs.encode_uints(values.view(np.uint64)))
    codecs.decode_timestamps(codecs.encode_timestamps(times))
    for floats in (decimals, rng.normal(0, 1, 3000), np.full(10, 1.5)):
        codecs.decode_floats(codecs.encode_floats(floats))
        codecs.decode_floats(codecs.encode_floats_gorilla(floats))
    codecs.decode_bools(codecs.encode_bools(rng.random(3000) < 0.1))
    codecs.decode_strings(codecs.encode_strings(pa.array(["ok", "warn"] * 1500)))
    codecs.decode_validity(codecs.encode_validity(rng.random(3000) < 0.9))


def warm_segments() -> None:
    from ingest.lineproto import parse_lines
    from storage.segment_format import read_segment, write_segment

    batch = next(iter(parse_lines(_BODY).batches.values()))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warm.seg"
        write_segment(path, database="warm", measurement="warm", seq=1, table=batch.to_arrow())
        read_segment(path)


def warm_query() -> None:
    from query.bucket_aggregates import (
        FOLD_LAST,
        FOLD_MAX,
        FOLD_SUM,
        bucket_aggregates,
        fold_bucket_points,
        fold_buckets,
    )
    from query.results import format_times
    from storage.segment_format import repeats_key

    format_times(np.array([0, 1_500_000_000_000_000_001], dtype=np.int64), None)  # both branches
    format_times(np.array([0, 1_500_000_000_000_000_000], dtype=np.int64), None)

    specs = [(function, "v") for function in ("sum", "max")]
    for values in (pa.array([1.5, None, 2.0]), pa.array([1, None, 2], type=pa.int64())):
        table = pa.table({"time": pa.array([2, 1, 0], type=pa.int64()), "v": values})
        bucket_aggregates(table, [], specs, 1, 0)  # unsorted: the permuted kernels
        bucket_aggregates(table.slice(2), [], specs, 1, 0)
    times = np.array([0, 1, 2], dtype=np.int64)
    repeats_key(times, times)
    from storage.buffer import note_rows, select_rows  # the write buffer's row kernels
    sids = np.zeros(3, dtype=np.int32)
    note_rows(sids, times, np.zeros(1, dtype=np.int64))
    readonly = np.ones(1, dtype=np.bool_)
    readonly.flags.writeable = False  # as SeriesIndex.matching hands it out
    for allowed in (np.empty(0, dtype=np.bool_), readonly):
        select_rows(times, sids, 0, 3, allowed)
    for dtype in (np.float64, np.int64):  # the fast aggregate path's dense folds
        for kind in (FOLD_SUM, FOLD_MAX):
            for groups in (np.empty(0, dtype=np.int64), np.zeros(3, dtype=np.int64)):
                fold_buckets(times, groups, np.ones(3, dtype=dtype), np.empty(0, dtype=np.bool_), 0, 1, 3,
                             kind, np.zeros(3, dtype=dtype), np.zeros(3, dtype=np.int64))
        for groups in (np.empty(0, dtype=np.int64), np.zeros(3, dtype=np.int64)):
            fold_bucket_points(times, groups, np.ones(3, dtype=dtype), np.empty(0, dtype=np.bool_), 0, 1, 3,
                               FOLD_LAST, np.zeros(3, dtype=dtype), np.zeros(3, dtype=np.int64),
                               np.zeros(3, dtype=np.int64))


def warm_engine_queries() -> None:
    """Typical InfluxQL shapes against a throwaway engine, twice: the second pass reads through
    the chunk cache, whose read-only arrays are their own numba signatures."""
    from ingest.lineproto import parse_lines
    from query.influxql_exec import QueryExecutor
    from storage.engine import StorageConfig, StorageEngine

    lines = "\n".join(f"warm,host=h{i % 3} f={i}.5,i={i}i {1_700_000_000_000_000_000 + i * 10**10}"
                      for i in range(300))
    queries = [
        "SELECT max(f), mean(i), count(f) FROM warm WHERE host = 'h1' AND time >= 1700000000000000000 "
        "AND time < 1700000003000000000 GROUP BY time(1m)",
        "SELECT mean(f) FROM warm WHERE time >= 1700000000000000000 GROUP BY time(10m), host",
        "SELECT * FROM warm WHERE f > 10 AND host = 'h2' AND time >= 1700000000000000000",
        "SELECT f, i FROM warm WHERE time >= 1700000000000000000 ORDER BY time DESC LIMIT 3",
        "SELECT last(f) FROM warm WHERE host = 'h0'",
        "SELECT first(i), last(f) FROM warm WHERE time >= 1700000000000000000 GROUP BY time(10m), host",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        engine = StorageEngine(StorageConfig(Path(tmp), fsync="never", background=False))
        engine.open()
        try:
            engine.create_database("warm")
            engine.write("warm", list(parse_lines(lines.encode()).batches.values()))
            engine.flush_all()
            executor = QueryExecutor(engine)
            try:
                for _ in range(2):
                    for q in queries:
                        executor.execute(q, "warm")
            finally:
                executor.close()
        finally:
            engine.close()


WARM_UP_STEPS = (warm_parser, warm_codecs, warm_segments, warm_query, warm_engine_queries)


def warm_up() -> float:
    """Run every warm-up; returns seconds taken. Failures are logged, never raised."""
    start = time.perf_counter()
    for step in WARM_UP_STEPS:
        try:
            step()
        except Exception:  # warm-up must never stop a node from starting
            log.exception("warm-up step %s failed", step.__name__)
    return time.perf_counter() - start


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(f"edgets: numba kernels compiled and cached in {warm_up():.1f} s")
