"""Fixed per-request HTTP overhead: edgets vs InfluxDB 1.6.7 on /ping, SHOW DATABASES and a tiny SELECT.

Both servers run on temp dirs; requests alternate between them, new connection (urllib) and keep-alive modes.
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


def measure(edgets: Callable[[str], float], influx: Callable[[str], float], path: str,
            n: int) -> tuple[list[float], list[float]]:
    """n requests to each server, alternating (noise from the other engineers hits both alike)."""
    for _ in range(20):  # warm-up
        edgets(path)
        influx(path)
    e_times: list[float] = []
    i_times: list[float] = []
    for k in range(n):
        if k % 2:
            e_times.append(edgets(path))
            i_times.append(influx(path))
        else:
            i_times.append(influx(path))
            e_times.append(edgets(path))
    return e_times, i_times


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=400, help="requests per server, target, mode and round")
    ap.add_argument("--rounds", type=int, default=3, help="repeat everything; medians over all rounds")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="http-overhead-") as tmp:
        influx = InfluxDBProcess(Path(tmp) / "influxdb").start()
        server = ServerProcess(Path(tmp) / "edgets", "--fsync", "never").start()
        try:
            load_points(influx.url)
            load_points(server.url)
            print(f"# edgets idle after {wait_idle(server.proc.pid):.1f} s, "  # type: ignore[union-attr]
                  f"influxd idle after {wait_idle(influx.proc.pid):.1f} s", flush=True)  # type: ignore[union-attr]
            modes = {"new-conn": new_connection_request, "keep-alive": keep_alive_request}
            pids = (server.proc.pid, influx.proc.pid)  # type: ignore[union-attr]
            samples: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
            cpu: dict[tuple[str, str], list[int]] = {}
            for _ in range(args.rounds):
                for mode, make in modes.items():
                    e_req, i_req = make(server.url), make(influx.url)
                    for name, path in TARGETS.items():
                        cpu_before = [cpu_ns(pid) for pid in pids]
                        e, i = measure(e_req, i_req, path, args.n)
                        used = cpu.setdefault((mode, name), [0, 0])
                        for k, pid in enumerate(pids):
                            used[k] += cpu_ns(pid) - cpu_before[k]
                        acc = samples.setdefault((mode, name), ([], []))
                        acc[0].extend(e)
                        acc[1].extend(i)
            print(f"{'mode':<11}{'request':<16}{'edgets med':>11}{'p90':>8}{'cpu':>7}{'influx med':>12}{'p90':>8}"
                  f"{'cpu':>7}{'ratio med':>11}{'ratio p90':>11}")
            for (mode, name), (e, i) in samples.items():
                em, ep, im, ip = statistics.median(e) * 1e3, p90(e) * 1e3, statistics.median(i) * 1e3, p90(i) * 1e3
                requests = len(e) + 20 * args.rounds
                ec, ic = (used_ns / requests / 1e6 for used_ns in cpu[(mode, name)])
                print(f"{mode:<11}{name:<16}{em:>11.3f}{ep:>8.3f}{ec:>7.3f}{im:>12.3f}{ip:>8.3f}{ic:>7.3f}"
                      f"{em / im:>11.2f}{ep / ip:>11.2f}")
            print(f"# ms per request (latency median/p90, server CPU per request incl. its background threads); "
                  f"{args.n} x {args.rounds} requests per cell, alternating between servers")
        finally:
            server.stop()
            influx.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
