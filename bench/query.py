"""TSBS devops query benchmark: edgets vs InfluxDB 1.6.7 on the same cpu data (100 hosts, 1 day), same run.

Prints the median latency per query type over seeded random instances and the edgets/InfluxDB ratio.
Usage: python bench/query.py [--instances 20] [--hours 24] [--hosts 100] [--out bench/out] [--types a,b]
                             [--new-connections]
Requests go over one kept-alive connection per server, as TSBS's query runner does (a Go
http.Client per worker); --new-connections opens one per request instead. Before each query
type both servers are left to go idle (as separate TSBS runs per type would be).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import random
import statistics
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.datasets import CPU_FIELDS, TSBS_START_NS, cpu_lines, tsbs_cpu  # noqa: E402
from bench.ingest import load  # noqa: E402
from storage.segment_format import (  # noqa: E402
    HEADER,
    SEGMENT_FORMAT_VERSION,
    read_footer,
    read_segment,
    write_segment,
)
from tests.influxdb_process import InfluxDBProcess  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

DB = "benchmark"
HOUR_S = 3600


@dataclass
class Workload:
    hosts: int
    hours: float

    @property
    def start_s(self) -> int:
        return TSBS_START_NS // 1_000_000_000

    @property
    def end_s(self) -> int:
        return self.start_s + int(self.hours * HOUR_S)


def rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_window(rng: random.Random, w: Workload, duration_s: int) -> tuple[str, str]:
    """As TSBS RandWindow: a window of `duration_s` starting uniformly inside the data's time range."""
    start = rng.randint(w.start_s, max(w.start_s, w.end_s - duration_s))
    return rfc3339(start), rfc3339(start + duration_s)


def host_clause(rng: random.Random, w: Workload, n: int) -> str:
    hosts = rng.sample(range(w.hosts), n)
    return "(" + " or ".join(f"hostname = 'host_{h}'" for h in hosts) + ")"


def single_groupby(metrics: int, hosts: int, hours: int) -> Callable[[random.Random, Workload], str]:
    def make(rng: random.Random, w: Workload) -> str:
        start, end = random_window(rng, w, hours * HOUR_S)
        selects = ", ".join(f"max({m})" for m in CPU_FIELDS[:metrics])
        return (f"SELECT {selects} from cpu where {host_clause(rng, w, hosts)} and time >= '{start}' "
                f"and time < '{end}' group by time(1m)")
    return make


def cpu_max_all(hosts: int) -> Callable[[random.Random, Workload], str]:
    def make(rng: random.Random, w: Workload) -> str:
        start, end = random_window(rng, w, 8 * HOUR_S)
        selects = ",".join(f"max({m})" for m in CPU_FIELDS)
        return (f"SELECT {selects} from cpu where {host_clause(rng, w, hosts)} and time >= '{start}' "
                f"and time < '{end}' group by time(1h)")
    return make


def double_groupby(metrics: int) -> Callable[[random.Random, Workload], str]:
    def make(rng: random.Random, w: Workload) -> str:
        start, end = random_window(rng, w, 12 * HOUR_S)
        selects = ", ".join(f"mean({m})" for m in CPU_FIELDS[:metrics])
        return f"SELECT {selects} from cpu where time >= '{start}' and time < '{end}' group by time(1h),hostname"
    return make


def high_cpu(hosts: int) -> Callable[[random.Random, Workload], str]:
    def make(rng: random.Random, w: Workload) -> str:
        start, end = random_window(rng, w, 12 * HOUR_S)
        where_hosts = f"and {host_clause(rng, w, hosts)}" if hosts else ""
        return f"SELECT * from cpu where usage_user > 90.0 {where_hosts} and time >= '{start}' and time < '{end}'"
    return make


def lastpoint(rng: random.Random, w: Workload) -> str:
    return 'SELECT * from cpu group by "hostname" order by time desc limit 1'


def groupby_orderby_limit(rng: random.Random, w: Workload) -> str:
    _, end = random_window(rng, w, HOUR_S)
    return f"SELECT max(usage_user) from cpu WHERE time < '{end}' group by time(1m) limit 5"


QUERY_TYPES: dict[str, Callable[[random.Random, Workload], str]] = {
    "single-groupby-1-1-1": single_groupby(1, 1, 1),
    "single-groupby-1-1-12": single_groupby(1, 1, 12),
    "single-groupby-1-8-1": single_groupby(1, 8, 1),
    "single-groupby-5-1-1": single_groupby(5, 1, 1),
    "single-groupby-5-1-12": single_groupby(5, 1, 12),
    "single-groupby-5-8-1": single_groupby(5, 8, 1),
    "cpu-max-all-1": cpu_max_all(1),
    "cpu-max-all-8": cpu_max_all(8),
    "double-groupby-1": double_groupby(1),
    "double-groupby-5": double_groupby(5),
    "double-groupby-all": double_groupby(10),
    "high-cpu-all": high_cpu(0),
    "high-cpu-1": high_cpu(1),
    "lastpoint": lastpoint,
    "groupby-orderby-limit": groupby_orderby_limit,
}


class QueryClient:
    """GET /query on one server, timed. keep_alive=True reuses one connection, as TSBS's runner
    (a Go http.Client per worker, body read to EOF: net/http keeps the connection); False opens
    a new connection per request (the worst case for a server's per-connection set-up)."""

    def __init__(self, url: str, keep_alive: bool) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.url, self.host, self.port, self.keep_alive = url, parsed.hostname or "127.0.0.1", parsed.port, keep_alive
        self._conn: http.client.HTTPConnection | None = None

    def _get(self, path: str) -> bytes:
        if not self.keep_alive:
            with urllib.request.urlopen(self.url + path, timeout=600) as response:
                return response.read()
        for attempt in (0, 1):  # a kept connection the server closed meanwhile is reopened once
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
            try:
                self._conn.request("GET", path)
                response = self._conn.getresponse()
                body = response.read()
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
                continue
            if response.status != 200:
                raise RuntimeError(f"{self.url}{path[:200]}: HTTP {response.status} {body[:200]!r}")
            return body
        raise AssertionError("unreachable")

    def timed_query(self, q: str) -> tuple[float, int, str]:
        """(seconds incl. reading the body, result rows, error text or '')."""
        path = f"/query?{urllib.parse.urlencode({'db': DB, 'q': q})}"
        start = time.perf_counter()
        raw = self._get(path)
        elapsed = time.perf_counter() - start
        body = json.loads(raw)
        errors = [r["error"] for r in body.get("results", []) if "error" in r]
        rows = sum(len(s.get("values", [])) for r in body.get("results", []) for s in r.get("series", []))
        return elapsed, rows, "; ".join(errors)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def upgrade_segments(data_dir: Path) -> int:
    """Rewrite cached segments of an older format version in the current one (same file name,
    seq, precedence, replaces), so the bench measures today's read path; returns files rewritten."""
    rewritten = 0
    for path in sorted((data_dir / "segments").rglob("*.seg")):
        with open(path, "rb") as fh:
            _magic, version, _flags, _reserved = HEADER.unpack(fh.read(HEADER.size))
        if version >= SEGMENT_FORMAT_VERSION:
            continue
        footer = read_footer(path)
        table = read_segment(path, footer=footer)
        write_segment(path, database=footer.database, measurement=footer.measurement, seq=footer.seq,
                      table=table, tag_keys=footer.tag_keys, replaces=footer.replaces,
                      precedence=footer.precedence)
        rewritten += 1
    return rewritten


def wait_idle(pid: int, timeout_s: float = 60.0, interval_s: float = 0.5) -> float:
    """Wait (up to a deadline) until process `pid` uses < 5% of a core over two intervals in a row:
    start-up work (numba warm-up, WAL replay, first compaction) is over before anything is timed.
    Returns the seconds waited."""
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu_s() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    start = time.monotonic()
    quiet = 0
    before = cpu_s()
    while quiet < 2 and time.monotonic() - start < timeout_s:
        time.sleep(interval_s)
        now = cpu_s()
        quiet = quiet + 1 if now - before < 0.05 * interval_s else 0
        before = now
    return time.monotonic() - start


def load_cached(out: Path, w: Workload, connections: int) -> tuple[InfluxDBProcess, ServerProcess]:
    """Start both servers on data dirs under `out`; load the dataset only when the marker does not match."""
    marker = out / "query-dataset.json"
    wanted = {"hosts": w.hosts, "hours": w.hours, "seed": 1, "db": DB}
    cached = marker.exists() and json.loads(marker.read_text()) == wanted
    if not cached:
        for name in ("query-influxdb", "query-edgets"):
            if (out / name).exists():
                raise SystemExit(f"{out / name} holds other data: remove it (or pass another --out)")
    out.mkdir(parents=True, exist_ok=True)
    if cached and (upgraded := upgrade_segments(out / "query-edgets")):
        print(f"# rewrote {upgraded} cached edgets segment(s) in format v{SEGMENT_FORMAT_VERSION}")
    influx = InfluxDBProcess(out / "query-influxdb").start()
    edgets = ServerProcess(out / "query-edgets", "--set", "http.default_database=", "--fsync", "never").start()
    if cached:
        print(f"# reusing the loaded data in {out} ({marker.name})")
        return influx, edgets
    print(f"# generating TSBS cpu: {w.hosts} hosts x {w.hours} h ...", flush=True)
    bodies = list(cpu_lines(tsbs_cpu(hosts=w.hosts, hours=w.hours), batch_lines=5000))
    for name, url in (("influxdb", influx.url), ("edgets", edgets.url)):
        seconds = asyncio.run(load(url, DB, bodies, connections))
        print(f"# loaded {name} in {seconds:.1f} s", flush=True)
    marker.write_text(json.dumps(wanted))
    return influx, edgets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--instances", type=int, default=20, help="random instances per query type (median taken)")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--connections", type=int, default=4, help="concurrent writers while loading")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out"), help="cached data dirs")
    ap.add_argument("--types", default="", help="comma-separated subset of query types")
    ap.add_argument("--new-connections", action="store_true",
                    help="a new connection per request (default: one kept-alive connection per server, as TSBS)")
    args = ap.parse_args()
    w = Workload(args.hosts, args.hours)
    types = [t for t in args.types.split(",") if t] or list(QUERY_TYPES)
    print(f"# bench/query.py  {time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()} cores={os.cpu_count()} "
          f"python={platform.python_version()}  instances={args.instances} seed={args.seed}  "
          f"{'new connection per request' if args.new_connections else 'keep-alive connections'}")
    influx, edgets = load_cached(Path(args.out), w, args.connections)
    clients = {"e": QueryClient(edgets.url, not args.new_connections),
               "i": QueryClient(influx.url, not args.new_connections)}
    try:
        for label, server in (("edgets", edgets), ("influxdb", influx)):
            if server.proc is not None:
                print(f"# {label} idle after {wait_idle(server.proc.pid):.1f} s", flush=True)
        print(f"{'query type':<24}{'edgets ms':>11}{'influx ms':>11}{'ratio':>8}  rows(e/i)  notes")
        ratios: list[float] = []
        workload: dict[str, list[str]] = {}
        for name in types:
            rng = random.Random(f"{args.seed}:{name}")
            workload[name] = [QUERY_TYPES[name](rng, w) for _ in range(args.instances + 1)]
        for _round in range(2):  # warm-up, untimed, every type on both servers before any timing:
            for name in types:  # numba, file handles; the first type gets no cold start. The
                # warm-up instance is never timed: no timed query finds its own chunks cached
                clients["e"].timed_query(workload[name][-1])
                clients["i"].timed_query(workload[name][-1])
        for name in types:
            for server in (edgets, influx):  # both quiet first: no GC or compaction left over from
                if server.proc is not None:  # the previous type competes for the two cores
                    wait_idle(server.proc.pid, timeout_s=10.0)
            queries = workload[name][:-1]
            ours: list[float] = []
            theirs: list[float] = []
            notes: set[str] = set()
            rows_e = rows_i = 0
            for i, q in enumerate(queries):  # alternate who goes first
                for who in ("e", "i") if i % 2 == 0 else ("i", "e"):
                    seconds, rows, error = clients[who].timed_query(q)
                    if error:
                        notes.add(f"{who}: {error[:80]}")
                    if who == "e":
                        ours.append(seconds)
                        rows_e += rows
                    else:
                        theirs.append(seconds)
                        rows_i += rows
            if rows_e != rows_i:
                notes.add("ROW COUNTS DIFFER")
            med_e, med_i = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
            ratios.append(med_e / med_i)
            print(f"{name:<24}{med_e:>11.1f}{med_i:>11.1f}{med_e / med_i:>8.2f}  {rows_e}/{rows_i}  "
                  f"{' | '.join(sorted(notes))}", flush=True)
        print(f"# geometric mean ratio edgets/influxdb: {statistics.geometric_mean(ratios):.2f} "
              "(< 1: edgets faster)")
    finally:
        for client in clients.values():
            client.close()
        edgets.stop()
        influx.stop()


if __name__ == "__main__":
    main()
