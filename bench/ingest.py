"""End-to-end HTTP ingest benchmark: edgets vs InfluxDB 1.6.7 on the same data, same run.

Prints fields/s for each server and dataset, the ratio, and parser-only MB/s and lines/s.
Usage: python bench/ingest.py [--hours 24] [--connections 4] [--fsync always]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.datasets import cpu_lines, device_lines, device_telemetry, tsbs_cpu  # noqa: E402
from tests.influxdb_process import InfluxDBProcess, influxd_available  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402


async def load(url: str, db: str, bodies: list[bytes], connections: int) -> float:
    """POST every body to url/write?db=db with `connections` concurrent clients; returns seconds."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                async with session.post(f"{url}/write", params={"db": db}, data=body) as resp:
                    if resp.status == 204:
                        break
                    if resp.status in (429, 503):
                        await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                        continue
                    raise RuntimeError(f"write failed: {resp.status} {await resp.text()}")

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        async with session.post(f"{url}/query", data={"q": f"CREATE DATABASE {db}"}) as resp:
            resp.raise_for_status()
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        return time.perf_counter() - start


def count_fields(bodies: list[bytes], per_line: int) -> int:
    return sum(b.count(b"\n") for b in bodies) * per_line


def parser_only(bodies: list[bytes]) -> tuple[float, float]:
    from ingest.lineproto import parse_lines

    parse_lines(bodies[0])  # compile / load the numba cache
    total = sum(len(b) for b in bodies)
    lines = sum(b.count(b"\n") for b in bodies)
    start = time.perf_counter()
    for body in bodies:
        parse_lines(body)
    elapsed = time.perf_counter() - start
    return total / elapsed / 1e6, lines / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hours", type=float, default=24.0, help="hours of TSBS data (100 hosts, 10 s)")
    ap.add_argument("--device-hours", type=float, default=12.0, help="hours of device telemetry (200 devices)")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--fsync", default="always")
    args = ap.parse_args()

    print(f"# bench/ingest.py  {time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()} "
          f"{platform.processor() or ''} cores={__import__('os').cpu_count()} python={platform.python_version()}")
    datasets = {
        "tsbs-cpu": (list(cpu_lines(tsbs_cpu(hours=args.hours))), 10),
        "device": (list(device_lines(device_telemetry(hours=args.device_hours))), 5),
    }
    for name, (bodies, per_line) in datasets.items():
        mb = sum(len(b) for b in bodies) / 1e6
        fields = count_fields(bodies, per_line)
        mbs, lps = parser_only(bodies)
        print(f"{name}: {fields:,} field values, {mb:.1f} MB line protocol")
        print(f"  parser only (1 thread): {mbs:.1f} MB/s, {lps:,.0f} lines/s")
        with tempfile.TemporaryDirectory() as tmp:
            server = ServerProcess(Path(tmp) / "edgets", "--fsync", args.fsync,
                                   "--set", "storage.memory_budget=4GiB").start()
            try:
                secs = asyncio.run(load(server.url, "bench", bodies, args.connections))
            finally:
                server.stop()
            ours = fields / secs
            print(f"  edgets (fsync={args.fsync}): {ours:,.0f} fields/s ({secs:.1f} s)")
            if influxd_available():
                with InfluxDBProcess(Path(tmp) / "influx") as influx:
                    secs_i = asyncio.run(load(influx.url, "bench", bodies, args.connections))
                theirs = fields / secs_i
                print(f"  influxdb 1.6.7: {theirs:,.0f} fields/s ({secs_i:.1f} s)")
                print(f"  ratio edgets/influxdb: {ours / theirs:.2f}")
            else:
                print("  influxdb 1.6.7 not installed: no anchor (apt-get install influxdb)")


if __name__ == "__main__":
    main()
