"""The write API against a real server subprocess: real InfluxDB clients, exact status codes and bodies."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from influxdb import InfluxDBClient
from influxdb_client import InfluxDBClient as InfluxDB2Client
from influxdb_client import Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from storage.engine import StorageConfig, StorageEngine
from tests.server_process import ServerProcess


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def read_back(data_dir: Path, db: str, measurement: str):
    engine = StorageEngine(StorageConfig(data_dir=data_dir))
    engine.open()
    try:
        return engine.read(db, measurement)
    finally:
        engine.close()


@pytest.fixture
def server(tmp_path: Path):
    proc = ServerProcess(tmp_path / "data", "--set", "http.max_body_size=200000").start()
    yield proc
    proc.stop()


def test_v1_client_ping_create_write_read_back(server: ServerProcess, tmp_path: Path) -> None:
    client = InfluxDBClient(host="127.0.0.1", port=server.port, database="telemetry")
    assert client.ping() == "1.8.10"
    client.create_database("telemetry")
    assert {"name": "telemetry"} in client.get_list_database()
    points = [
        {"measurement": "cpu", "tags": {"host": "a b", "region": "eu,west"},
         "time": 1_600_000_000_000_000_000 + i * 10_000_000_000,
         "fields": {"usage": 0.5 + i, "count": i, "ok": i % 2 == 0, "state": f'say "hi" {i}'}}
        for i in range(50)
    ]
    assert client.write_points(points, time_precision="n", batch_size=20)
    assert server.stop() == 0
    table = read_back(server.data_dir, "telemetry", "cpu")
    assert table.num_rows == 50
    assert table.column("host").to_pylist() == ["a b"] * 50
    assert table.column("region").to_pylist() == ["eu,west"] * 50
    assert table.column("usage").to_pylist() == [0.5 + i for i in range(50)]
    assert table.column("count").to_pylist() == list(range(50))
    assert table.column("ok").to_pylist() == [i % 2 == 0 for i in range(50)]
    assert table.column("state").to_pylist() == [f'say "hi" {i}' for i in range(50)]
    times = table.column("time").cast("int64").to_numpy()
    assert np.array_equal(times, 1_600_000_000_000_000_000 + np.arange(50) * 10_000_000_000)


def test_v2_client_synchronous_write_read_back(server: ServerProcess) -> None:
    http("POST", f"{server.url}/query", b"q=CREATE+DATABASE+iot",
         {"Content-Type": "application/x-www-form-urlencoded"})
    with InfluxDB2Client(url=server.url, token="ignored", org="my-org") as client:
        write_api = client.write_api(write_options=SYNCHRONOUS)
        points = [Point("env").tag("device", "d1").field("temp", 20.0 + i / 10).field("rssi", -40 - i)
                  .time(1_700_000_000_000 + i, WritePrecision.MS) for i in range(30)]
        write_api.write(bucket="iot", record=points, write_precision=WritePrecision.MS)
        write_api.write(bucket="iot/autogen", record="env,device=d2 temp=1.5 1700000000000",
                        write_precision=WritePrecision.MS)
    assert server.stop() == 0
    table = read_back(server.data_dir, "iot", "env")
    rows = table.to_pylist()
    d1 = [r for r in rows if r["device"] == "d1"]
    assert [r["temp"] for r in d1] == [20.0 + i / 10 for i in range(30)]
    assert [r["rssi"] for r in d1] == [-40 - i for i in range(30)]
    assert [r for r in rows if r["device"] == "d2"][0]["temp"] == 1.5


def test_status_codes_and_bodies(server: ServerProcess) -> None:
    url = server.url
    status, headers, body = http("POST", f"{url}/write", b"m v=1")
    assert (status, json.loads(body)) == (400, {"error": "database is required"})
    assert headers["X-Influxdb-Error"] == "database is required"
    status, headers, body = http("POST", f"{url}/write?db=nope", b"m v=1")
    assert (status, json.loads(body)) == (404, {"error": 'database not found: "nope"'})
    assert "Request-Id" in headers and headers["X-Influxdb-Version"] == "1.8.10"
    http("POST", f"{url}/query?q=CREATE%20DATABASE%20db1")
    status, _, body = http("POST", f"{url}/write?db=db1", b"m v=1\nm v= 11\nm v=3")
    assert status == 400
    assert json.loads(body)["error"].startswith(
        "partial write: unable to parse 'm v= 11': missing field value (line 2)")
    assert json.loads(body)["error"].endswith("dropped=0")
    status, _, body = http("POST", f"{url}/write?db=db1", b"m v=1i")
    assert status == 400
    assert json.loads(body) == {"error": 'partial write: field type conflict: input field "v" on '
                                         'measurement "m" is type integer, already exists as type float dropped=1'}
    status, _, body = http("POST", f"{url}/write?db=db1", b"m v=\nx")
    assert status == 400 and json.loads(body)["error"].startswith("unable to parse 'm v=': missing field value")
    status, _, body = http("POST", f"{url}/write?db=db1", b"m v=1 " + b"x" * 300_000)
    assert (status, json.loads(body)) == (413, {"error": "Request Entity Too Large"})
    status, _, _ = http("POST", f"{url}/write?db=db1&precision=s", gzip.compress(b"g v=2 1700000000"),
                        {"Content-Encoding": "gzip"})
    assert status == 204
    status, _, body = http("POST", f"{url}/api/v2/write?bucket=db1&org=o", b"m v=1\nm,t= v=2")
    assert status == 400 and json.loads(body)["code"] == "invalid" and json.loads(body)["line"] == 2
    status, _, body = http("POST", f"{url}/api/v2/write?bucket=nope&org=o", b"m v=1")
    assert status == 404 and json.loads(body)["code"] == "not found"
    status, _, body = http("POST", f"{url}/api/v2/write?bucket=db1&org=o", b"m v=\"s\"")
    assert status == 422 and "dropped=1" in json.loads(body)["message"]
    status, _, body = http("POST", f"{url}/api/v3/write_lp?db=db1&accept_partial=false", b"m v=1\nm v=")
    assert status == 400 and json.loads(body)["data"][0]["line_number"] == 2
    status, _, _ = http("POST", f"{url}/api/v3/write_lp?db=db1", b"auto v=1 1700000000")
    assert status == 204
    status, headers, body = http("GET", f"{url}/ping")
    assert status == 204 and body == b"" and headers["X-Influxdb-Build"] == "OSS"
    status, _, body = http("GET", f"{url}/health")
    assert status == 200 and json.loads(body)["status"] == "pass"
    assert server.stop() == 0
    engine = StorageEngine(StorageConfig(data_dir=server.data_dir))
    engine.open()
    try:
        # lines without a timestamp share the server time of their request: same point, last wins
        assert sorted(engine.read("db1", "m").column("v").to_pylist()) == [1.0, 3.0]
        g = engine.read("db1", "g")
        assert g.column("time").cast("int64").to_pylist() == [1_700_000_000 * 10**9]
        a = engine.read("db1", "auto")
        assert a.column("time").cast("int64").to_pylist() == [1_700_000_000 * 10**9]
    finally:
        engine.close()


def test_auth_required_when_enabled(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "d", "--set", "http.auth_enabled=true", "--set", "http.tokens=s3cret",
                       "--set", "http.users=admin:pw") as srv:
        url = srv.url
        status, _, body = http("POST", f"{url}/write?db=edge", b"m v=1")
        assert (status, json.loads(body)) == (401, {"error": "authorization failed"})
        status, _, body = http("POST", f"{url}/api/v2/write?bucket=edge", b"m v=1")
        assert status == 401 and json.loads(body)["code"] == "unauthorized"
        assert http("POST", f"{url}/write?db=edge", b"m v=1", {"Authorization": "Token s3cret"})[0] == 204
        assert http("POST", f"{url}/write?db=edge", b"m v=1", {"Authorization": "Token admin:pw"})[0] == 204
        assert http("POST", f"{url}/write?db=edge&u=admin&p=pw", b"m v=1")[0] == 204
        assert http("POST", f"{url}/write?db=edge&u=admin&p=bad", b"m v=1")[0] == 401
        assert http("POST", f"{url}/write?db=edge", b"m v=1", {"Authorization": "Basic YWRtaW46cHc="})[0] == 204
        assert http("GET", f"{url}/ping")[0] == 204


def test_auto_created_databases_and_policies_by_name(tmp_path: Path) -> None:
    """http.auto_create_databases: a write creates its database (autogen); a name InfluxDB
    refuses ('/' in it) is a 400 naming the problem; rp= of a missing policy stays a 404."""
    with ServerProcess(tmp_path / "data", "--set", "http.auto_create_databases=true") as proc:
        assert http("POST", f"{proc.url}/write?db=fresh", b"m v=1 1700000000000000000")[0] == 204
        status, _, body = http("POST", f"{proc.url}/query?" + urllib.parse.urlencode(
            {"db": "fresh", "q": "SELECT v FROM autogen.m", "epoch": "ns"}))
        assert json.loads(body)["results"][0]["series"][0]["values"] == [[1700000000000000000, 1]]
        status, _, body = http("POST", f"{proc.url}/write?db=" + urllib.parse.quote("a/b"), b"m v=1")
        assert status == 400 and json.loads(body)["error"] == "cannot create database 'a/b': invalid name"
        status, _, body = http("POST", f"{proc.url}/write?db=fresh&rp=nope", b"m v=1")
        assert status == 404 and json.loads(body)["error"] == "retention policy not found: nope"
