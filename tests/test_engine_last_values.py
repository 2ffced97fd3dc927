"""The latest-value cache behind last_rows(n=1): equal to the newest row per series computed from a
full read(), through overwrites, sparse fields, flushes, compaction, DELETE, DROP and restarts."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa

from storage.batch import Batch, TagSet
from storage.engine import StorageConfig, StorageEngine

SERIES: list[TagSet] = [(("host", h),) for h in ("a", "b", "c")] + [(("dc", "x"), ("host", "a")), (("dc", "y"),)]
FIELDS = ["s", "v", "w"]


def random_batch(rng: random.Random, t_hi: int) -> Batch:
    n = rng.randint(1, 30)
    sid = np.array([rng.randrange(len(SERIES)) for _ in range(n)], dtype=np.int32)
    times = np.array([rng.randrange(0, t_hi) for _ in range(n)], dtype=np.int64)
    v = [None if rng.random() < 0.4 else rng.random() for _ in range(n)]
    w = [None if rng.random() < 0.5 else rng.randrange(100) for _ in range(n)]
    s = [None if rng.random() < 0.7 else f"s{rng.randrange(9)}" for _ in range(n)]
    for i in range(n):  # every point carries at least one field, as line protocol
        if v[i] is None and w[i] is None and s[i] is None:
            v[i] = 1.5
    fields = {"v": pa.array(v, type=pa.float64()), "w": pa.array(w, type=pa.int64()),
              "s": pa.array(s, type=pa.string())}
    return Batch("m", SERIES, sid, times, fields)


def newest_by_full_read(engine: StorageEngine, columns: list[str] | None, start: int | None,
                        tags: dict[str, set[str]] | None) -> list[dict]:
    """The newest row of each series among rows with a requested field, from a full read()."""
    tag_keys = engine.tag_keys("db", "m")
    wanted = tag_keys + FIELDS if columns is None else columns
    fields = [f for f in FIELDS if f in wanted]
    table = engine.read("db", "m", start_ns=start, columns=tag_keys + fields, tag_filter=tags)
    rows = table.set_column(0, "time", table.column("time").cast(pa.int64())).to_pylist()
    newest: dict[tuple, dict] = {}
    for row in rows:  # sorted by (series, time): the last qualifying row of a series wins
        if any(row[f] is not None for f in fields):
            newest[tuple(row[t] for t in tag_keys)] = {k: v for k, v in row.items() if k == "time" or k in wanted}
    return list(newest.values())


def check(engine: StorageEngine, rng: random.Random) -> int:
    checked = 0
    for columns in (None, ["v"], ["s", "host"], ["w", "dc", "v"]):
        start = None if rng.random() < 0.5 else rng.randrange(0, 200)
        tags = None if rng.random() < 0.5 else {"host": {"a", ""}}
        got = engine.last_rows("db", "m", n=1, columns=columns, start_ns=start, tag_filter=tags)
        got_rows = got.set_column(0, "time", got.column("time").cast(pa.int64())).to_pylist()
        want = newest_by_full_read(engine, columns, start, tags)
        assert got_rows == want, (columns, start, tags)
        checked += len(want)
    return checked


def test_last_values_match_full_read_randomized(tmp_path: Path) -> None:
    rng = random.Random(7)
    config = StorageConfig(data_dir=tmp_path / "data", background=False, fsync="never",
                           compaction_small_segment_bytes=1 << 30)
    engine = StorageEngine(config)
    engine.open()
    engine.create_database("db")
    checked = 0
    ops = {"write": 0, "flush": 0, "delete": 0, "drop": 0, "restart": 0, "compact": 0}
    try:
        for step in range(160):
            op = rng.choices(list(ops), weights=[10, 2, 2, 1, 1, 1])[0]
            if op == "write" or step < 3:
                op = "write"
                engine.write("db", [random_batch(rng, 60 + 2 * step)])
            elif op == "flush":
                engine.flush("db", "m")
            elif op == "delete":
                lo = rng.randrange(0, 300)
                tags = None if rng.random() < 0.5 else {"host": {rng.choice("abc")}}
                engine.delete("db", "m", start_ns=lo, end_ns=lo + rng.randrange(1, 200), tag_filter=tags)
            elif op == "drop":
                engine.drop_measurement("db", "m")
            elif op == "restart":
                engine.close()
                engine = StorageEngine(config)
                engine.open()
            elif op == "compact":
                engine.compact_once()
            ops[op] += 1
            if engine.measurements("db"):
                checked += check(engine, rng)
    finally:
        engine.close()
    assert checked > 500
    assert all(ops.values()), ops  # every kind of operation was exercised


def test_cache_answers_without_reading_segments(tmp_path: Path) -> None:
    engine = StorageEngine(StorageConfig(data_dir=tmp_path / "data", background=False, fsync="never"))
    engine.open()
    try:
        engine.create_database("db")
        rng = random.Random(3)
        for _ in range(5):
            engine.write("db", [random_batch(rng, 100)])
        engine.flush("db", "m")
        first = engine.last_rows("db", "m", n=1)  # builds the cache from the segment
        store = engine.segment_store
        real_read_rows = store.read_rows
        calls = []

        def counting_read_rows(*args: object, **kw: object) -> object:
            calls.append(kw)
            return real_read_rows(*args, **kw)

        store.read_rows = counting_read_rows  # type: ignore[method-assign]
        engine.write("db", [random_batch(rng, 200)])
        again = engine.last_rows("db", "m", n=1)
        assert calls == []  # served from the cache
        assert again.num_rows >= first.num_rows
        want = newest_by_full_read(engine, None, None, None)
        assert again.set_column(0, "time", again.column("time").cast(pa.int64())).to_pylist() == want
        # an end bound below some newest row: answered by the reading path, still exact
        bounded = engine.last_rows("db", "m", n=1, end_ns=50)
        assert bounded.num_rows > 0
        assert int(bounded.column("time").cast(pa.int64()).to_numpy().max()) < 50
    finally:
        engine.close()
