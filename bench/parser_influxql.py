"""InfluxQL parser benchmark: µs per parse_query and tokens/s on TSBS and Grafana query shapes.

Usage: python bench/parser_influxql.py [--batches 30] [--batch-seconds 0.02]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from query.influxql_lexer import COMMENT, EOF, WS, Lexer  # noqa: E402
from query.influxql_parser import parse_query  # noqa: E402

WINDOW = "time >= '2016-01-01T05:00:00Z' and time < '2016-01-01T06:00:00Z'"
CPU_FIELDS = ["usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
              "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"]


def _hosts(count: int) -> str:
    return " or ".join(f"hostname = 'host_{i * 7 % 100}'" for i in range(count))


SHAPES: dict[str, str] = {
    "single-groupby-1-1-1": (
        f"SELECT max(usage_user) from cpu where ({_hosts(1)}) and {WINDOW} group by time(1m)"),
    "single-groupby-1-8-1": (
        f"SELECT max(usage_user) from cpu where ({_hosts(8)}) and {WINDOW} group by time(1m)"),
    "cpu-max-all-8": (
        "SELECT " + ", ".join(f"max({f})" for f in CPU_FIELDS)
        + f" from cpu where ({_hosts(8)}) and time >= '2016-01-01T00:00:00Z' and "
        "time < '2016-01-01T08:00:00Z' group by time(1h)"),
    "double-groupby-all": (
        "SELECT " + ", ".join(f"mean({f})" for f in CPU_FIELDS)
        + f" from cpu where {WINDOW} group by time(1h),hostname"),
    "lastpoint": 'SELECT * from cpu group by "hostname" order by time desc limit 1',
    "grafana": ('SELECT mean("value") FROM "m" WHERE ("host" =~ /^a$/) AND time >= now() - 6h '
                "GROUP BY time(10s) fill(null)"),
}


def token_count(text: str) -> int:
    """Non-whitespace, non-comment tokens of `text` (regexes count as their pieces)."""
    lex = Lexer(text)
    offset = 0
    count = 0
    while True:
        tok = lex.scan(offset)
        if tok.kind == EOF:
            return count
        if tok.kind not in (WS, COMMENT):
            count += 1
        offset = tok.end


def us_per_parse(text: str, batch_seconds: float, batches: int) -> float:
    """µs for one parse_query(text): the fastest of `batches` timed batches (robust to a busy box)."""
    loops = 1
    while True:  # size a batch to about batch_seconds
        t0 = time.perf_counter()
        for _ in range(loops):
            parse_query(text)
        if time.perf_counter() - t0 >= batch_seconds:
            break
        loops *= 2
    best = float("inf")
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(loops):
            parse_query(text)
        best = min(best, (time.perf_counter() - t0) / loops)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=30, help="timed batches per shape; the best is printed")
    ap.add_argument("--batch-seconds", type=float, default=0.02, help="length of one batch")
    args = ap.parse_args()
    print(f"{'shape':24s} {'chars':>6s} {'tokens':>6s} {'µs/parse':>9s} {'tokens/s':>11s}")
    for name, text in SHAPES.items():
        parse_query(text)  # warm
        best = us_per_parse(text, args.batch_seconds, args.batches)
        tokens = token_count(text)
        print(f"{name:24s} {len(text):6d} {tokens:6d} {best:9.1f} {tokens / best * 1e6:11,.0f}")


if __name__ == "__main__":
    main()
