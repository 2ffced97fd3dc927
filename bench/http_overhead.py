"""Fixed per-request HTTP overhead: edgets vs InfluxDB 1.6.7 on /ping, SHOW DATABASES and a tiny SELECT.

Three servers on temp dirs: edgets, edgets with the /query fast lane off (the anchor for the lane)
and InfluxDB; requests rotate between them, new connection (urllib) and keep-alive modes.
Usage: python bench/http_overhead.py [-n 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.query import wait_idle  # noqa: E402
from tests.influxdb_process import InfluxDBProcess  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

DB = "httpbench"
POINTS = "\n".join(f"m,host=h{i % 2} value={i}.5,count={i}i {1_600_000_000_000_000_000 + i * 1_000_000_000}"
                   for i in range(5))
TARGETS = {
    "ping": "/ping",
    "show-databases": "/query?" + urllib.parse.urlencode({"q": "SHOW DATABASES"}),
    "tiny-select": "/query?" + urllib.parse.urlencode({"db": DB, "q": "SELECT value FROM m WHERE host = 'h1'"}),
}


def post(url: str, path: str, body: bytes) -> int:
    req = urllib.request.Request(url + path, data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
        return resp.status


def load_points(url: str) -> None:
    post(url, "/query?" + urllib.parse.urlencode({"q": f"CREATE DATABASE {DB}"}), b"")
    status = post(url, f"/write?db={DB}&precision=ns", POINTS.encode())
    if status != 204:
        raise SystemExit(f"write to {url} answered {status}")


def new_connection_request(url: str) -> Callable[[str], float]:
    def timed(path: str) -> float:
        start = time.perf_counter()
        with urllib.request.urlopen(url + path, timeout=30) as resp:
            resp.read()
        return time.perf_counter() - start
    return timed


def keep_alive_request(url: str) -> Callable[[str], float]:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=30)

    def timed(path: str) -> float:
        start = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        elapsed = time.perf_counter() - start
        if resp.status >= 300:
            raise SystemExit(f"{url}{path} answered {resp.status}")
        return elapsed
    return timed


def cpu_ns(pid: int) -> int:
    """CPU time (ns) used so far by the live threads of process `pid` (scheduler accounting, ns resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # thread ended meanwhile
            pass
    return total


def measure(clients: list[Callable[[str], float]], path: str, n: int) -> list[list[float]]:
    """n requests to each server, rotating who goes first (noise from other work hits all alike)."""
    for _ in range(20):  # warm-up
        for client in clients:
            client(path)
    times: list[list[float]] = [[] for _ in clients]
    for k in range(n):
        for j in range(len(clients)):
            who = (k + j) % len(clients)
            times[who].append(clients[who](path))
    return times


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=400, help="requests per server, target, mode and round")
    ap.add_argument("--rounds", type=int, default=3, help="repeat everything; medians over all rounds")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="http-overhead-") as tmp:
        servers = {
            "edgets": ServerProcess(Path(tmp) / "edgets", "--fsync", "never").start(),
            "no-lane": ServerProcess(Path(tmp) / "no-lane", "--fsync", "never", "--set", "http.fast_lane=false").start(),
            "influxdb": InfluxDBProcess(Path(tmp) / "influxdb").start(),
        }
        try:
            for name, server in servers.items():
                load_points(server.url)
                print(f"# {name} idle after {wait_idle(server.proc.pid):.1f} s", flush=True)  # type: ignore[union-attr]
            modes = {"new-conn": new_connection_request, "keep-alive": keep_alive_request}
            pids = [server.proc.pid for server in servers.values()]  # type: ignore[union-attr]
            samples: dict[tuple[str, str], list[list[float]]] = {}
            cpu: dict[tuple[str, str], list[int]] = {}
            for _ in range(args.rounds):
                for mode, make in modes.items():
                    for name, path in TARGETS.items():
                        # a connection per target: after a /ping edgets' fast lane hands the
                        # connection to aiohttp, so later /query requests on it would not use the lane
                        clients = [make(server.url) for server in servers.values()]
                        cpu_before = [cpu_ns(pid) for pid in pids]
                        times = measure(clients, path, args.n)
                        used = cpu.setdefault((mode, name), [0] * len(pids))
                        for k, pid in enumerate(pids):
                            used[k] += cpu_ns(pid) - cpu_before[k]
                        acc = samples.setdefault((mode, name), [[] for _ in pids])
                        for k, server_times in enumerate(times):
                            acc[k].extend(server_times)
            print("# ms per request: latency median / p90 / server CPU (incl. background threads); edgets = fast")
            print("# lane on (default), no-lane = [http] fast_lane=false, the aiohttp path; ratios of medians")
            print(f"{'mode':<11}{'request':<16}" + "".join(f"{name + ' med/p90/cpu':>26}" for name in servers)
                  + f"{'e/influx':>10}{'e/no-lane':>11}")
            for (mode, name), per_server in samples.items():
                requests = len(per_server[0]) + 20 * args.rounds
                cells = []
                for k, times in enumerate(per_server):
                    cells.append(f"{statistics.median(times) * 1e3:.3f}/{p90(times) * 1e3:.3f}/"
                                 f"{cpu[(mode, name)][k] / requests / 1e6:.3f}")
                medians = [statistics.median(times) for times in per_server]
                print(f"{mode:<11}{name:<16}" + "".join(f"{cell:>26}" for cell in cells)
                      + f"{medians[0] / medians[2]:>10.2f}{medians[0] / medians[1]:>11.2f}")
            print(f"# {args.n} x {args.rounds} requests per cell and server, rotating between servers")
        finally:
            for server in servers.values():
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
