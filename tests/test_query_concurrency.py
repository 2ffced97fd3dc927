"""Fast aggregates, the chunk cache and statement templates under concurrent writes, flushes and
compactions: no query fails, none counts a point twice or misses one acknowledged before it."""

from __future__ import annotations

import threading
from pathlib import Path

from ingest.lineproto import parse_lines
from query.influxql_exec import QueryExecutor
from storage.engine import StorageConfig, StorageEngine

S = 1_000_000_000
T0 = 1_700_000_000 * S
ROUNDS = 120
POINTS_PER_ROUND = 50  # 5 hosts x 10 times


def test_counts_stay_exact_while_storage_changes_underneath(tmp_path: Path) -> None:
    engine = StorageEngine(StorageConfig(tmp_path, fsync="never", background=False,
                                         compaction_small_segment_bytes=1 << 30, chunk_cache_bytes=1 << 20))
    engine.open()
    engine.create_database("c")
    written = [0]  # points acknowledged so far (the writer's own count)
    started = [0]  # points of writes begun so far (a query may see an unacknowledged write)
    done = threading.Event()
    failures: list[str] = []

    def writer() -> None:
        try:
            for r in range(ROUNDS):
                lines = [f"m,host=h{h} v={r}.5,n={h}i {T0 + (r * 10 + k) * S}" for h in range(5) for k in range(10)]
                started[0] += POINTS_PER_ROUND
                engine.write("c", list(parse_lines("\n".join(lines).encode(), "ns").batches.values()))
                written[0] += POINTS_PER_ROUND
                if r % 7 == 6:
                    engine.flush_all()
                if r % 20 == 19:
                    engine.compact_once()
        except Exception as exc:  # reported by the test thread
            failures.append(f"writer: {exc!r}")
        finally:
            done.set()

    def reader(fast: bool) -> None:
        executor = QueryExecutor(engine, now_ns=lambda: T0 + 10**6 * S, fast_paths=fast)
        host = 0
        try:
            while not done.is_set():
                host = (host + 1) % 5
                before = written[0] // 5  # this host's points acknowledged before the query
                queries = [f"SELECT count(v), sum(n) FROM m WHERE host = 'h{host}' AND time >= {T0} GROUP BY time(1h)",
                           f"SELECT count(n) FROM m WHERE time >= {T0} GROUP BY time(1h), host"]
                result = executor.execute(queries[host % 2], "c", None, "s")[0]
                after = started[0] // 5  # ... and begun before it ended
                if "error" in result:
                    failures.append(f"fast={fast}: {result['error']}")
                    return
                series = [s for s in result.get("series", []) if s.get("tags", {}).get("host", f"h{host}") == f"h{host}"]
                count = sum(row[1] for s in series for row in s["values"])
                if not before <= count <= after:
                    failures.append(f"fast={fast}: host h{host} counted {count}, written {before}..{after}")
                    return
        finally:
            executor.close()

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(f,)) for f in (True, True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert not failures, failures
        assert not any(t.is_alive() for t in threads)
        fast = QueryExecutor(engine, now_ns=lambda: T0 + 10**6 * S)
        final = fast.execute(f"SELECT count(v) FROM m WHERE time >= {T0} GROUP BY time(1h), host", "c", None, "s")
        fast.close()
        assert sum(row[1] for s in final[0]["series"] for row in s["values"]) == ROUNDS * POINTS_PER_ROUND
        assert engine.stats()["compactions"] >= 1  # compaction really ran under the readers
    finally:
        engine.close()
