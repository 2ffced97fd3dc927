"""Differential InfluxQL tests: the same data and queries through /query on edgets and a real InfluxDB 1.6.7.

Each corpus entry (tests/influxql_corpus.py) is one test case; a failure prints both JSON bodies.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.influxdb_process import InfluxDBProcess
from tests.influxql_corpus import (
    CORPUS,
    DB,
    DDL_DB,
    DDL_LINES,
    DDL_SHOWS,
    DDL_STALE_INDEX_FROM,
    DDL_STEPS,
    DDL_WRITE_STATUS_DEVIATION,
    INTO_DB,
    INTO_SHOWS,
    INTO_STEPS,
    TSBS_DB,
    CorpusEntry,
    Dataset,
    DdlWrite,
    build_dataset,
    ddl_recent_lines,
    tsbs_lines,
)
from tests.server_process import ServerProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(240)
REL_TOL = 1e-9


@dataclass
class Reply:
    status: int
    body: Any  # parsed JSON, or the raw text when the body is not JSON
    text: str


def http_query(base_url: str, params: dict[str, str], method: str = "GET") -> Reply:
    """One /query request; GET puts the parameters in the URL, POST sends them as a form."""
    encoded = urllib.parse.urlencode(params)
    if method == "GET":
        request = urllib.request.Request(f"{base_url}/query?{encoded}")
    else:
        request = urllib.request.Request(f"{base_url}/query", data=encoded.encode(), method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode()
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = text
    return Reply(status, body, text)


def http_write(base_url: str, db: str, body: bytes) -> None:
    request = urllib.request.Request(f"{base_url}/write?db={db}&precision=ns", data=body, method="POST",
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 204, f"write to {base_url} db={db}: status {response.status}"
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"write to {base_url} db={db} failed: {exc.code} {exc.read()[:500]!r}") from exc


def run_statement(base_url: str, statement: str, db: str | None = None) -> Reply:
    params = {"q": statement} if db is None else {"q": statement, "db": db}
    reply = http_query(base_url, params, "POST")
    assert reply.status == 200, f"{statement!r} on {base_url}: {reply.status} {reply.text[:500]}"
    return reply


def values_equal(ours: Any, theirs: Any, path: str = "$") -> str | None:
    """None when equal (numbers to REL_TOL relative); else the JSON path of the first difference."""
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return None if ours is theirs else path
    if isinstance(ours, int | float) and isinstance(theirs, int | float):
        return None if math.isclose(ours, theirs, rel_tol=REL_TOL, abs_tol=1e-12) else path
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if set(ours) != set(theirs):
            return f"{path} keys {sorted(ours)} != {sorted(theirs)}"
        for key in ours:
            diff = values_equal(ours[key], theirs[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return f"{path} length {len(ours)} != {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            diff = values_equal(a, b, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if ours == theirs else path


def ties_as_multisets(body: Any) -> Any:
    """Rows sharing a timestamp within one series, sorted: InfluxDB orders such ties by its index order."""
    if not isinstance(body, dict):
        return body
    out = json.loads(json.dumps(body))
    for result in out.get("results", []):
        for series in result.get("series", []):
            values, start = series.get("values", []), 0
            for i in range(1, len(values) + 1):
                if i == len(values) or values[i][0] != values[start][0]:
                    values[start:i] = sorted(values[start:i], key=lambda row: json.dumps(row))
                    start = i
    return out


def tie_order_matters(query: str) -> bool:
    """Functions whose rows share a time and whose order InfluxDB defines (distinct: ascending, top/bottom)."""
    return any(f"{name}(" in query.lower() for name in ("distinct", "top", "bottom"))


def shape(body: Any) -> Any:
    """What a random result (sample) must agree on: statements, series names/tags/columns, row counts."""
    return [[(s["name"], s.get("tags"), s["columns"], len(s["values"])) for s in r.get("series", [])]
            for r in body["results"]]


def has_statement_error(body: Any) -> bool:
    return isinstance(body, dict) and any("error" in r for r in body.get("results", []))


@dataclass
class Servers:
    edgets: ServerProcess
    influx: InfluxDBProcess
    dataset: Dataset


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root: Path = tmp_path_factory.mktemp("differential")
    influx = InfluxDBProcess(root / "influx").start()
    edgets = ServerProcess(root / "edgets", "--set", "http.default_database=")
    try:
        edgets.start()
        dataset = build_dataset()
        lines = ("\n".join(dataset.lines) + "\n").encode()
        cpu = tsbs_lines()
        for url in (influx.url, edgets.url):
            run_statement(url, f'CREATE DATABASE "{DB}"')
            run_statement(url, f'CREATE DATABASE "{TSBS_DB}"')
            http_write(url, DB, lines)
            for body in cpu:
                http_write(url, TSBS_DB, body)
        expected_points = sum(len(by_time) for by_time in dataset.points.values())
        for url in (influx.url, edgets.url):
            wait_until(lambda u=url: _point_count(u) == expected_points, 30, f"{expected_points} points on {url}")
        yield Servers(edgets, influx, dataset)
    finally:
        if edgets.proc:
            edgets.stop()
        influx.stop()


def _point_count(url: str) -> int:
    """Rows of the diff database, counted as distinct (series, time) through raw selects."""
    reply = http_query(url, {"q": "SELECT * FROM weather, power, events, ties", "db": DB, "epoch": "ns"})
    if reply.status != 200 or has_statement_error(reply.body):
        return -1
    return sum(len(s["values"]) for r in reply.body["results"] for s in r.get("series", []))


def report(entry: CorpusEntry, ours: Reply, theirs_label: str, theirs: Any, diff: str | None) -> str:
    return (f"\n{entry.id}: {entry.query!r} params={entry.params()}\nfirst difference: {diff}\n"
            f"edgets ({ours.status}): {ours.text[:6000]}\n{theirs_label}: {json.dumps(theirs)[:6000]}")


@pytest.mark.parametrize("entry", CORPUS, ids=[e.id for e in CORPUS])
def test_query_matches_influxdb(servers: Servers, entry: CorpusEntry) -> None:
    ours = http_query(servers.edgets.url, entry.params(), entry.method)
    if entry.expected is not None:
        expected = entry.expected(servers.dataset)
        theirs = http_query(servers.influx.url, entry.params(), entry.method)
        assert values_equal(theirs.body, expected) is not None, (
            f"{entry.id}: InfluxDB now agrees with the computed result; drop the deviation note {entry.deviation!r}")
        diff = values_equal(ours.body, expected)
        assert ours.status == 200 and diff is None, report(entry, ours, "expected (computed)", expected, diff)
        return
    theirs = http_query(servers.influx.url, entry.params(), entry.method)
    influx_failed = theirs.status != 200 or has_statement_error(theirs.body)
    assert influx_failed == entry.expect_error, (
        f"corpus entry {entry.id}: InfluxDB 1.6.7 answered {theirs.status} {theirs.text[:2000]}")
    if entry.shape_only:
        assert ours.status == theirs.status == 200, report(entry, ours, "influxdb", theirs.body, "status")
        assert shape(ours.body) == shape(theirs.body), report(entry, ours, "influxdb", theirs.body, "shape")
        return
    diff = None if ours.status == theirs.status else f"status {ours.status} != {theirs.status}"
    if tie_order_matters(entry.query):
        diff = diff or values_equal(ours.body, theirs.body)
    else:
        diff = diff or values_equal(ties_as_multisets(ours.body), ties_as_multisets(theirs.body))
    assert diff is None, report(entry, ours, f"influxdb ({theirs.status})", theirs.body, diff)


def write_reply(base_url: str, db: str, rp: str, body: bytes) -> Reply:
    """One /write (rp when given); the status and body, whatever they are."""
    query = urllib.parse.urlencode({"db": db, "precision": "ns", **({"rp": rp} if rp else {})})
    request = urllib.request.Request(f"{base_url}/write?{query}", data=body, method="POST",
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(response.status, None, response.read().decode())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
        return Reply(exc.code, json.loads(text) if text.startswith("{") else text, text)


def test_ddl_sequence_matches_influxdb(servers: Servers) -> None:
    """Retention policies keep their data apart, as InfluxDB's: writes to named and default
    policies, CREATE/ALTER/DROP RETENTION POLICY (DEFAULT moves where unqualified reads and
    writes go; a dropped policy's data is gone), DELETE, DROP SERIES/MEASUREMENT/DATABASE (every
    policy). After each step every DDL_SHOWS answer (policy-qualified FROM, rp=, SHOW FIELD KEYS
    per policy, SHOW TAG KEYS/VALUES over all) must equal InfluxDB's, but for the answers
    InfluxDB reads from its stale index (DDL_STALE_INDEX_FROM)."""
    urls = {"edgets": servers.edgets.url, "influxdb": servers.influx.url}
    for url in urls.values():
        run_statement(url, f"CREATE DATABASE {DDL_DB}")
        http_write(url, DDL_DB, DDL_LINES.encode())
    now_ns = int(time.time() * 1e9)
    failures: list[str] = []
    compared = 0
    stale: set[str] = set()
    for step in DDL_STEPS:
        if isinstance(step, DdlWrite):
            body = ddl_recent_lines(step.lines, now_ns).encode()
            replies = {name: write_reply(url, DDL_DB, step.rp, body) for name, url in urls.items()}
            label = f"write rp={step.rp!r}"
            influx_status = replies["influxdb"].status
            replies["influxdb"].status = DDL_WRITE_STATUS_DEVIATION.get(influx_status, influx_status)
        else:
            replies = {name: http_query(url, {"q": step, "db": DDL_DB}, "POST") for name, url in urls.items()}
            label = step
            stale.update(q for q, first in DDL_STALE_INDEX_FROM.items() if first == step)
        if replies["edgets"].status != replies["influxdb"].status or (
                replies["influxdb"].body is not None and values_equal(replies["edgets"].body, replies["influxdb"].body)):
            failures.append(f"{label}: edgets {replies['edgets'].status} {replies['edgets'].text}"
                            f" / influxdb {replies['influxdb'].status} {replies['influxdb'].text}")
        for show in DDL_SHOWS:
            if show["q"] in stale:
                continue
            params = {"db": DDL_DB, "epoch": "ns", **show}
            answers = {name: http_query(url, params) for name, url in urls.items()}
            diff = values_equal(answers["edgets"].body, answers["influxdb"].body)
            compared += 1
            if diff:
                failures.append(f"after {label}, {show} differs at {diff}:\n  edgets   {answers['edgets'].text}"
                                f"\n  influxdb {answers['influxdb'].text}")
    assert not failures, "\n".join(failures)
    assert stale == set(DDL_STALE_INDEX_FROM), "a DDL_STALE_INDEX_FROM step is not in DDL_STEPS"
    assert compared > 0.8 * len(DDL_STEPS) * len(DDL_SHOWS)


def test_select_into_matches_influxdb(servers: Servers) -> None:
    """SELECT INTO: the answer of each statement (points written, or the error) and then what the
    target database holds (measurements, field types, tags, series, every point) as InfluxDB."""
    urls = {"edgets": servers.edgets.url, "influxdb": servers.influx.url}
    for url in urls.values():
        run_statement(url, f"CREATE DATABASE {INTO_DB}")
    failures: list[str] = []
    written = 0
    try:
        for step in INTO_STEPS:
            replies = {name: http_query(url, {"q": step, "db": DB}, "POST") for name, url in urls.items()}
            diff = values_equal(replies["edgets"].body, replies["influxdb"].body)
            if diff or replies["edgets"].status != replies["influxdb"].status:
                failures.append(f"{step}\n  edgets   {replies['edgets'].text}\n  influxdb {replies['influxdb'].text}")
            for result in replies["influxdb"].body.get("results", []):
                for series in result.get("series", []):
                    written += series["values"][0][1]
        for show in INTO_SHOWS:
            answers = {name: http_query(url, {"q": show, "db": INTO_DB, "epoch": "ns"}) for name, url in urls.items()}
            diff = values_equal(ties_as_multisets(answers["edgets"].body), ties_as_multisets(answers["influxdb"].body))
            if diff:
                failures.append(f"{show!r} differs at {diff}:\n  edgets   {answers['edgets'].text[:3000]}"
                                f"\n  influxdb {answers['influxdb'].text[:3000]}")
    finally:
        for url in urls.values():
            run_statement(url, f"DROP DATABASE {INTO_DB}")
    assert not failures, "\n".join(failures)
    assert written > 100, f"the INTO statements wrote only {written} points on InfluxDB"


@pytest.mark.parametrize("params", [
    {"q": "SHOW DATABASES"},
    {"q": "SHOW MEASUREMENTS", "db": DB, "pretty": "true"},
    {"q": "SELECT count(code) FROM events", "db": DB, "epoch": "s"},
    {"q": "SELECT FROM events", "db": DB},
    {"db": DB},
    {"q": "SELECT * FROM x", "db": "nosuchdb"},
    {"q": "SHOW MEASUREMENTS", "db": DB, "chunked": "true"},
], ids=["show", "pretty", "select", "parse-error", "missing-q", "no-database", "chunked"])
def test_body_bytes_equal_influxdb(servers: Servers, params: dict[str, str]) -> None:
    """Answers without values where Go's JSON escaping could differ: byte for byte as InfluxDB's
    (compact or indented JSON, the trailing newline, error bodies)."""
    raws = []
    for url in (servers.edgets.url, servers.influx.url):
        request = urllib.request.Request(f"{url}/query?{urllib.parse.urlencode(params)}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raws.append((response.status, response.read()))
        except urllib.error.HTTPError as exc:
            raws.append((exc.code, exc.read()))
    assert raws[0] == raws[1]
