"""Cost of a Parquet partition rewrite after an edge DELETE: one node, one day of ~100k rows.
Run: .venv/bin/python bench/parquet_rewrite.py"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sync.parquet_export import ExportConfig, ParquetExporter  # noqa: E402
from tests.test_cloud_parquet_deletes import DAY, HOUR, T0, open_edge, rfc3339, sync  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        edge = open_edge(tmp, "na")
        hosts = [f"h{i}" for i in range(10)]
        edge.write("cpu", hosts, T0, 10_000, DAY // 10_000)  # 100k rows in one day
        edge.write("cpu", hosts, T0 + DAY, 10_000, DAY // 10_000)  # a second day, untouched
        cloud, root = tmp / "cloud", tmp / "parquet"
        sync(cloud, [edge])
        exporter = ParquetExporter(ExportConfig(cloud, str(root)))
        t = time.perf_counter()
        first = exporter.export_once()
        print(f"initial export: {first.rows} rows, {len(first.files)} files, "
              f"{(time.perf_counter() - t) * 1e3:.0f} ms")
        for run in range(3):
            lo = T0 + (run + 1) * HOUR
            edge.influxql(f"DELETE FROM cpu WHERE host = 'h{run}' AND time >= '{rfc3339(lo)}' "
                          f"AND time < '{rfc3339(lo + HOUR)}'")
            sync(cloud, [edge])
            t = time.perf_counter()
            report = exporter.export_once()
            ms = (time.perf_counter() - t) * 1e3
            size = sum(p.stat().st_size for p in root.rglob("*.parquet") if "2023-11-14" in str(p))
            print(f"rewrite {run}: {report.deletions_applied} deletion, {report.rewritten_partitions} "
                  f"partition, {ms:.0f} ms, day file {size / 1e6:.2f} MB")
        exporter.close()
        edge.engine.close()


if __name__ == "__main__":
    main()
