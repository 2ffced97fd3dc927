"""Dashboard panels over recent data: edgets vs InfluxDB 1.6.7 on points still in edgets' write buffer.

A Grafana dashboard on an edge node mostly reads the last minutes, which edgets holds in its write
buffer (until flush_size / flush_age), not in segments. 100 hosts x 10 minutes at 10 s are written
to both servers at "now" (edgets with flush_age 1h, so nothing is flushed while measuring), then
each panel query runs for every host, alternating between the servers over kept-alive connections.
Usage: python bench/dashboard.py [--hosts 100] [--rounds 2]
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.query import wait_idle  # noqa: E402
from tests.influxdb_process import InfluxDBProcess  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

DB = "dashboard"
PANELS = {
    "last value (stat panel)": "SELECT last(usage_system) FROM cpu WHERE hostname = '{host}'",
    "mean 10s over 5m": "SELECT mean(usage_user) FROM cpu WHERE hostname = '{host}' AND time > now() - 5m "
                        "GROUP BY time(10s) fill(null)",
    "raw 5m": "SELECT usage_user FROM cpu WHERE hostname = '{host}' AND time > now() - 5m",
    "max 1m over 10m, all hosts": "SELECT max(usage_user) FROM cpu WHERE time > now() - 10m GROUP BY time(1m)",
}


def recent_lines(hosts: int, now_ns: int) -> bytes:
    rng = random.Random(1)
    lines = [f"cpu,hostname=host_{h},region=r{h % 3} usage_user={rng.uniform(0, 100):.3f},"
             f"usage_system={rng.uniform(0, 100):.3f} {now_ns - (600 - k * 10) * 10**9}"
             for h in range(hosts) for k in range(60)]
    return "\n".join(lines).encode()


def post(url: str, path: str, body: bytes) -> None:
    with urllib.request.urlopen(urllib.request.Request(url + path, data=body, method="POST"), timeout=60) as resp:
        if resp.status not in (200, 204):
            raise SystemExit(f"{url}{path}: HTTP {resp.status}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2, help="passes over every host per panel")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-") as tmp:
        servers = {
            "edgets": ServerProcess(Path(tmp) / "edgets", "--fsync", "never", "--set", "storage.flush_age=1h").start(),
            "influxdb": InfluxDBProcess(Path(tmp) / "influxdb").start(),
        }
        try:
            body = recent_lines(args.hosts, time.time_ns())
            for server in servers.values():
                post(server.url, "/query?" + urllib.parse.urlencode({"q": f"CREATE DATABASE {DB}"}), b"")
                post(server.url, f"/write?db={DB}", body)
            for name, server in servers.items():
                print(f"# {name} idle after {wait_idle(server.proc.pid):.1f} s", flush=True)  # type: ignore[union-attr]
            connections = []
            for server in servers.values():
                parsed = urllib.parse.urlsplit(server.url)
                connections.append(http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=60))
            print(f"{'panel':<30}{'edgets ms':>11}{'influx ms':>11}{'ratio':>8}")
            for panel, template in PANELS.items():
                times: list[list[float]] = [[], []]
                for n in range(args.rounds * args.hosts + 10):
                    path = "/query?" + urllib.parse.urlencode({"db": DB, "q": template.format(host=f"host_{n % args.hosts}")})
                    for k in ((0, 1) if n % 2 else (1, 0)):
                        start = time.perf_counter()
                        connections[k].request("GET", path)
                        response = connections[k].getresponse()
                        answer = response.read()
                        if response.status != 200 or b'"error"' in answer:
                            raise SystemExit(f"{panel}: HTTP {response.status} {answer[:200]!r}")
                        if n >= 10:  # the first ten are warm-up
                            times[k].append(time.perf_counter() - start)
                ours, theirs = (statistics.median(t) * 1e3 for t in times)
                print(f"{panel:<30}{ours:>11.3f}{theirs:>11.3f}{ours / theirs:>8.2f}", flush=True)
            print(f"# medians of {args.rounds * args.hosts} requests per panel and server, alternating; "
                  f"{args.hosts} hosts x 60 points in edgets' write buffer")
        finally:
            for server in servers.values():
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
