"""Flush benchmark: write ~10 M TSBS cpu values into a StorageEngine, flush them to segments, report
WAL bytes released, segment bytes and read throughput from segments. Run: .venv/bin/python bench/flush.py"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.datasets import CPU_FIELDS, tsbs_cpu  # noqa: E402
from storage.batch import Batch, TagSet  # noqa: E402
from storage.engine import StorageConfig, StorageEngine  # noqa: E402


def host_tagsets(suffixes: list[str]) -> list[TagSet]:
    out = []
    for suffix in suffixes:
        pairs = [kv.split("=", 1) for kv in suffix.strip(",").split(",")]
        out.append(tuple(sorted((k, v) for k, v in pairs)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--steps", type=int, default=10_000, help="timestamps per host (10 s apart)")
    ap.add_argument("--batch-steps", type=int, default=100)
    args = ap.parse_args()
    data = tsbs_cpu(hosts=args.hosts, hours=args.steps * 10 / 3600)
    series = host_tagsets(data.host_tags)
    steps = len(data.times)
    rows = steps * args.hosts
    values = rows * len(CPU_FIELDS)
    print(f"dataset: TSBS cpu-only, {args.hosts} hosts x {steps} steps = {rows:,} rows, {values:,} values")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = StorageConfig(data_dir=Path(tmp), fsync="never", background=False,
                            memory_budget_bytes=4 * 2**30, write_queue_bytes=2**30, wal_file_bytes=2**20)
        eng = StorageEngine(cfg)
        eng.open()
        eng.create_database("bench")
        sid_block = np.tile(np.arange(args.hosts, dtype=np.int32), args.batch_steps)
        t0 = time.perf_counter()
        futures = []
        for s in range(0, steps, args.batch_steps):
            e = min(steps, s + args.batch_steps)
            n = (e - s) * args.hosts
            times = np.repeat(data.times[s:e], args.hosts)
            block = data.values[s:e].reshape(n, len(CPU_FIELDS))
            fields = {f: pa.array(block[:, i]) for i, f in enumerate(CPU_FIELDS)}
            futures.append(eng.submit("bench", [Batch("cpu", series, sid_block[:n], times, fields)]))
            if len(futures) > 8:
                futures.pop(0).result()
        for f in futures:
            f.result()
        t_write = time.perf_counter() - t0
        before = eng.stats()
        t0 = time.perf_counter()
        sealed = eng.flush_all()
        t_flush = time.perf_counter() - t0
        after = eng.stats()
        seg_bytes = after["segment_bytes"]
        print(f"write (fsync=never):  {t_write:6.2f} s  {values / t_write / 1e6:6.2f} M values/s")
        print(f"flush:                {t_flush:6.2f} s  {values / t_flush / 1e6:6.2f} M values/s into {len(sealed)} segments")
        print(f"WAL before flush:     {before['wal_bytes']:>12,} bytes in {before['wal_files']} files")
        print(f"WAL after flush:      {after['wal_bytes']:>12,} bytes in {after['wal_files']} files "
              f"({after['wal_files_released']} files, {before['wal_bytes'] - after['wal_bytes']:,} bytes released)")
        print(f"segments:             {seg_bytes:>12,} bytes = {seg_bytes / values:.2f} bytes/value "
              f"(WAL {before['wal_bytes'] / values:.2f} bytes/value)")

        def timed(label: str, **kw: object) -> None:
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                table = eng.read("bench", "cpu", **kw)  # type: ignore[arg-type]
                best = min(best, time.perf_counter() - t)
            n_vals = table.num_rows * sum(1 for c in table.column_names if c in CPU_FIELDS)
            print(f"read {label:<28} {table.num_rows:>9,} rows {best * 1e3:8.1f} ms  "
                  f"{n_vals / best / 1e6:7.2f} M values/s")

        timed("all columns")
        timed("1 field", columns=["usage_user"])
        timed("1 host (tag filter)", tag_filter={"hostname": {"host_7"}})
        hour = 3600 * 10**9
        start = int(data.times[steps // 2])
        timed("1 hour, all hosts", start_ns=start, end_ns=start + hour)
        eng.close()


if __name__ == "__main__":
    main()
