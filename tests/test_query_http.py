"""The query HTTP surface of a real server: /query encodings and errors, v3 SQL/InfluxQL, the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.server_process import REPO, ServerProcess
from tests.test_http_write import http

BASE_NS = 1_700_000_000_000_000_000
ROWS = [(f"h{i % 2}", i * 0.5, BASE_NS + i * 1_000_000_000) for i in range(10)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = ServerProcess(tmp_path_factory.mktemp("q") / "data").start()
    body = "\n".join(f"cpu,host={h} v={v} {t}" for h, v, t in ROWS).encode()
    assert http("POST", f"{srv.url}/write?db=edge", body)[0] == 204
    yield srv
    srv.stop()


def query(server: ServerProcess, method: str = "GET", headers: dict[str, str] | None = None,
          **params: str) -> tuple[int, dict[str, str], bytes]:
    encoded = urllib.parse.urlencode(params)
    if method == "GET":
        return http("GET", f"{server.url}/query?{encoded}", None, headers)
    return http("POST", f"{server.url}/query", encoded.encode(),
                {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})


def test_json_shape_epoch_and_post(server: ServerProcess) -> None:
    status, _, body = query(server, q="SELECT v FROM cpu WHERE host = 'h1'", db="edge", epoch="s")
    assert status == 200
    series = json.loads(body)["results"][0]["series"][0]
    assert series["name"] == "cpu" and series["columns"] == ["time", "v"]
    expected = [[t // 10**9, v] for h, v, t in ROWS if h == "h1"]
    assert series["values"] == expected
    status, _, body = query(server, "POST", q="SELECT count(v) FROM cpu GROUP BY host", db="edge")
    results = json.loads(body)["results"][0]["series"]
    assert [(s["tags"]["host"], s["values"][0][1]) for s in results] == [("h0", 5), ("h1", 5)]
    assert results[0]["values"][0][0] == "1970-01-01T00:00:00Z"


def test_params_pretty_and_multiple_statements(server: ServerProcess) -> None:
    status, _, body = query(server, q="SELECT v FROM cpu WHERE host = $h LIMIT 1; SHOW MEASUREMENTS",
                            db="edge", params=json.dumps({"h": "h0"}), pretty="true")
    assert status == 200 and b"\n    " in body
    results = json.loads(body)["results"]
    assert results[0]["series"][0]["values"][0][1] == 0.0
    assert results[1]["series"][0]["values"] == [["cpu"]]


def test_large_unchunked_series_is_not_marked_partial(server: ServerProcess) -> None:
    """InfluxDB 1.6.7 leaves "partial": true on a non-chunked series of more than 10,000 rows (it
    merges internal 10,000-row chunks and keeps the first one's flag); the series is complete,
    so edgets does not mark it (docs/influxql.md, deviations)."""
    lines = "\n".join(f"big1,host=h v={i}i {BASE_NS + i * 1_000_000_000}" for i in range(10_050))
    assert http("POST", f"{server.url}/write?db=edge", lines.encode())[0] == 204
    status, _, body = query(server, q="SELECT v FROM big1", db="edge", epoch="s")
    assert status == 200 and b"partial" not in body
    values = json.loads(body)["results"][0]["series"][0]["values"]
    assert [v[1] for v in values] == list(range(10_050))


def test_chunked_documents(server: ServerProcess) -> None:
    status, _, body = query(server, q="SELECT v FROM cpu", db="edge", chunked="true", chunk_size="4")
    docs = [json.loads(line) for line in body.decode().splitlines()]
    assert status == 200 and len(docs) == 3
    values = [v for d in docs for v in d["results"][0]["series"][0]["values"]]
    assert [v[1] for v in values] == [v for _, v, _ in sorted(ROWS, key=lambda r: r[2])]
    assert all(d["results"][0].get("partial") for d in docs[:-1]) and "partial" not in docs[-1]["results"][0]


def test_csv(server: ServerProcess) -> None:
    status, headers, body = query(server, headers={"Accept": "application/csv"},
                                  q="SELECT v FROM cpu GROUP BY host LIMIT 1", db="edge", epoch="ns")
    lines = body.decode().splitlines()
    assert status == 200 and headers["Content-Type"].startswith("application/csv")
    assert lines == ["name,tags,time,v", f"cpu,host=h0,{BASE_NS},0.0", f"cpu,host=h1,{BASE_NS + 10**9},0.5"]


def test_errors(server: ServerProcess) -> None:
    status, headers, body = query(server, q="SELECT", db="edge")
    assert status == 400 and json.loads(body)["error"].startswith("error parsing query: ")
    assert headers["X-Influxdb-Error"].startswith("error parsing query")
    status, _, body = query(server, db="edge")
    assert status == 400 and "q" in json.loads(body)["error"]
    status, _, body = query(server, q="SELECT v FROM cpu", db="nope")
    assert status == 200 and json.loads(body) == {"results": [{"statement_id": 0, "error": "database not found: nope"}]}


def test_v3_sql_formats(server: ServerProcess) -> None:
    sql = "SELECT host, count(*) AS n, sum(v) AS s FROM cpu GROUP BY host ORDER BY host"
    body = json.dumps({"db": "edge", "q": sql, "format": "json"}).encode()
    status, _, out = http("POST", f"{server.url}/api/v3/query_sql", body, {"Content-Type": "application/json"})
    assert status == 200
    assert json.loads(out) == [{"host": "h0", "n": 5, "s": 10.0}, {"host": "h1", "n": 5, "s": 12.5}]
    url = f"{server.url}/api/v3/query_sql?" + urllib.parse.urlencode({"db": "edge", "q": sql, "format": "parquet"})
    table = pq.read_table(io.BytesIO(http("GET", url)[2]))
    assert table.column("n").to_pylist() == [5, 5]
    url = url.replace("format=parquet", "format=arrow")
    table = pa.ipc.open_stream(http("GET", url)[2]).read_all()
    assert table.column("host").to_pylist() == ["h0", "h1"]
    url = url.replace("format=arrow", "format=jsonl")
    assert [json.loads(line)["n"] for line in http("GET", url)[2].decode().splitlines()] == [5, 5]
    url = url.replace("format=jsonl", "format=csv")
    assert http("GET", url)[2].decode().splitlines()[0].replace('"', "") == "host,n,s"
    status, _, out = http("GET", f"{server.url}/api/v3/query_sql?" + urllib.parse.urlencode(
        {"db": "edge", "q": "COPY (SELECT 1) TO '/tmp/edgets-x.csv'"}))
    assert status == 403 and "read-only" in json.loads(out)["error"]
    status, _, out = http("GET", f"{server.url}/api/v3/query_influxql?" + urllib.parse.urlencode(
        {"db": "edge", "q": "SELECT max(v) FROM cpu GROUP BY host"}))
    rows = json.loads(out)
    assert status == 200 and [(r["host"], r["max"]) for r in rows] == [("h0", 4.0), ("h1", 4.5)]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.cli", "query", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_query_cli(server: ServerProcess, tmp_path: Path) -> None:
    out = run_cli("--url", server.url, "--db", "edge", "SELECT max(v) FROM cpu GROUP BY host")
    assert out.returncode == 0, out.stderr
    assert "cpu [host=h0]" in out.stdout and "4.5" in out.stdout
    out = run_cli("--url", server.url, "--sql", "--format", "csv", "SELECT count(*) AS n FROM cpu")
    assert out.returncode == 0 and out.stdout.splitlines() == ["series,n", ",10"]
    out = run_cli("--url", server.url, "--format", "json", "SHOW DATABASES")
    assert json.loads(out.stdout)["results"][0]["series"][0]["values"] == [["edge"]]
    out = run_cli("--url", server.url, "SELECT FROM")
    assert out.returncode != 0 and "error parsing query" in out.stderr


def test_retention_policy_parameter_everywhere(server: ServerProcess) -> None:
    """rp= on /write, /query, /api/v3/query_sql and query_influxql, and `edgets query --rp`
    read and write the policy's own rows; autogen's are not mixed in."""
    status, _, body = query(server, "POST", q="CREATE RETENTION POLICY keep ON edge DURATION INF REPLICATION 1")
    assert status == 200 and "error" not in json.loads(body)["results"][0]
    lines = "\n".join(f"rpm,host=k v={i}i {BASE_NS + i * 10**9}" for i in range(3)).encode()
    assert http("POST", f"{server.url}/write?db=edge&rp=keep", lines)[0] == 204
    status, _, body = query(server, q="SELECT count(v) FROM rpm", db="edge", rp="keep")
    assert json.loads(body)["results"][0]["series"][0]["values"][0][1] == 3
    status, _, body = query(server, q="SELECT count(v) FROM rpm", db="edge")
    assert json.loads(body)["results"][0] == {"statement_id": 0}  # autogen holds no rpm
    status, _, body = query(server, q="SELECT count(v) FROM rpm", db="edge", rp="nope")
    assert json.loads(body)["results"][0]["error"] == "retention policy not found: nope"
    for language in ("sql", "influxql"):
        q = "SELECT count(*) AS n FROM rpm" if language == "sql" else "SELECT count(v) FROM rpm"
        request = {"db": "edge", "q": q, "format": "json", "rp": "keep"}
        status, _, out = http("POST", f"{server.url}/api/v3/query_{language}", json.dumps(request).encode(),
                              {"Content-Type": "application/json"})
        assert status == 200 and 3 in json.loads(out)[0].values(), out
    status, _, out = http("POST", f"{server.url}/api/v3/query_sql",
                          json.dumps({"db": "edge", "q": "SELECT 1", "rp": "nope"}).encode(),
                          {"Content-Type": "application/json"})
    assert status == 404 and json.loads(out)["error"] == "retention policy not found: nope"
    out = run_cli("--url", server.url, "--db", "edge", "--rp", "keep", "--format", "csv", "SELECT sum(v) FROM rpm")
    assert out.returncode == 0 and out.stdout.splitlines()[1].endswith(",3"), out.stdout + out.stderr
    out = run_cli("--url", server.url, "--db", "edge", "--rp", "keep", "--sql", "--format", "csv",
                  "SELECT count(*) AS n FROM rpm")
    assert out.returncode == 0 and out.stdout.splitlines() == ["series,n", ",3"], out.stdout + out.stderr
