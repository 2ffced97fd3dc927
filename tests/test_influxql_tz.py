"""GROUP BY time() with tz() across daylight-saving changes, against a real InfluxDB 1.6.7.

Windows must start at local midnight (or the local multiple of the interval) on both sides of a
change; an hour that happens twice gives two windows, a skipped hour none.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.influxdb_process import InfluxDBProcess
from tests.server_process import ServerProcess
from tests.test_influxql_differential import http_query, http_write, run_statement, values_equal

pytestmark = pytest.mark.timeout(240)
DB = "tz"
# spring and autumn changes: Europe/Berlin 2018-03-25 / 2018-10-28, America/New_York 2018-03-11 /
# 2018-11-04; Asia/Kolkata never changes (+05:30)
SPANS = [(datetime(2018, 3, 9, tzinfo=UTC), 6), (datetime(2018, 3, 23, tzinfo=UTC), 5),
         (datetime(2018, 10, 26, tzinfo=UTC), 4), (datetime(2018, 11, 2, tzinfo=UTC), 4)]


def _lines() -> bytes:
    lines = []
    for span, (start, days) in enumerate(SPANS):
        base = int(start.timestamp())
        for i in range(days * 48):  # every 30 minutes
            for site in ("a", "b"):
                if (i + (site == "b")) % 5:  # some holes, different per site
                    lines.append(f"dst,site={site} v={span * 1000 + i}i,f={i * 0.25} {(base + i * 1800) * 10**9}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root: Path = tmp_path_factory.mktemp("tz")
    influx = InfluxDBProcess(root / "influx").start()
    edgets = ServerProcess(root / "edgets", "--set", "http.default_database=")
    try:
        edgets.start()
        body = _lines()
        for url in (influx.url, edgets.url):
            run_statement(url, f'CREATE DATABASE "{DB}"')
            http_write(url, DB, body)
        yield edgets.url, influx.url
    finally:
        if edgets.proc:
            edgets.stop()
        influx.stop()


def _queries() -> list[str]:
    out = []
    ranges = {"Europe/Berlin": [("2018-03-23T00:00:00Z", "2018-03-28T00:00:00Z"),
                                ("2018-10-26T00:00:00Z", "2018-10-30T00:00:00Z")],
              "America/New_York": [("2018-03-09T00:00:00Z", "2018-03-15T00:00:00Z"),
                                   ("2018-11-02T00:00:00Z", "2018-11-06T00:00:00Z")],
              "Asia/Kolkata": [("2018-03-23T00:00:00Z", "2018-03-26T00:00:00Z")]}
    for zone, spans in ranges.items():
        for lo, hi in spans:
            where = f"WHERE time >= '{lo}' AND time < '{hi}'"
            out += [
                f"SELECT count(v), sum(v), mean(f) FROM dst {where} GROUP BY time(1d) tz('{zone}')",
                f"SELECT max(v) FROM dst {where} GROUP BY time(1d), site fill(none) tz('{zone}')",
                f"SELECT count(v) FROM dst {where} GROUP BY time(12h, 3h) fill(0) tz('{zone}')",
                f"SELECT mean(f) FROM dst {where} GROUP BY time(1h) fill(previous) tz('{zone}')",
                f"SELECT sum(v) FROM dst {where} GROUP BY time(2h) fill(linear) tz('{zone}')",
                f"SELECT min(f) FROM dst {where} GROUP BY time(1d) ORDER BY time DESC tz('{zone}')",
                f"SELECT count(f) FROM dst {where} GROUP BY time(1d) LIMIT 2 OFFSET 1 tz('{zone}')",
                f"SELECT v FROM dst {where} AND site = 'a' LIMIT 5 tz('{zone}')",
                f"SELECT count(v) FROM dst {where} GROUP BY time(2h) fill(0) ORDER BY time DESC tz('{zone}')",
                f"SELECT count(v) FROM dst {where} GROUP BY time(12h, 3h), site ORDER BY time DESC tz('{zone}')",
            ]
        out.append(f"SELECT count(v) FROM dst WHERE time < '{spans[0][1]}' GROUP BY time(1d) tz('{zone}')")
    return out


@pytest.mark.parametrize("query", _queries())
@pytest.mark.parametrize("epoch", [None, "s"])
def test_tz_windows_match_influxdb(urls: tuple[str, str], query: str, epoch: str | None) -> None:
    ours_url, theirs_url = urls
    params = {"q": query, "db": DB, **({"epoch": epoch} if epoch else {})}
    ours, theirs = http_query(ours_url, params), http_query(theirs_url, params)
    assert theirs.status == 200 and "error" not in theirs.text, theirs.text[:500]
    diff = values_equal(ours.body, theirs.body)
    assert ours.status == 200 and diff is None, f"{query}\n{diff}\nedgets:   {ours.text[:3000]}\ninfluxdb: {theirs.text[:3000]}"
