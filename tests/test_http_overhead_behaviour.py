"""What the lean request plumbing must keep: unique UUID-shaped request ids, InfluxDB headers on every
status, auth rules on /query, unchanged query answers, and queries run off the event loop thread."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.edge_node import EdgeNode, event_loop_factory, run_edge_node, run_until_complete
from edge_agent.http_app import INFLUX_VERSION, RequestIds
from query.http_query import QueryThreads
from tests.server_process import ServerProcess
from tests.test_http_write import http
from tests.waiting import wait_until_async

BASE_NS = 1_700_000_000_000_000_000
ROWS = [(f"h{i % 3}", i * 1.25, BASE_NS + i * 1_000_000_000) for i in range(12)]
UUID_EPOCH_100NS = 0x01B21DD213814000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = ServerProcess(tmp_path_factory.mktemp("overhead") / "data", "--fsync", "never").start()
    body = "\n".join(f"cpu,host={h} v={v} {t}" for h, v, t in ROWS).encode()
    assert http("POST", f"{srv.url}/write?db=edge", body)[0] == 204
    yield srv
    srv.stop()


def query_path(**params: str) -> str:
    return "/query?" + urllib.parse.urlencode(params)


def assert_influx_headers(headers: dict[str, str]) -> str:
    assert headers["X-Influxdb-Version"] == INFLUX_VERSION and headers["X-Influxdb-Build"] == "OSS"
    assert headers["Request-Id"] == headers["X-Request-Id"]
    parsed = uuid.UUID(headers["Request-Id"])
    assert str(parsed) == headers["Request-Id"] and parsed.version == 1 and parsed.variant == uuid.RFC_4122
    return headers["Request-Id"]


def test_request_ids_unique_uuid1_and_current(server: ServerProcess) -> None:
    url = urllib.parse.urlsplit(server.url)
    conn = HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    paths = ["/ping", query_path(q="SHOW DATABASES"), "/no-such-path", query_path(q="")]
    ids: list[str] = []
    before_100ns = time.time_ns() // 100 + UUID_EPOCH_100NS
    for k in range(400):
        conn.request("GET", paths[k % len(paths)])
        resp = conn.getresponse()
        resp.read()
        ids.append(assert_influx_headers(dict(resp.getheaders())))
    after_100ns = time.time_ns() // 100 + UUID_EPOCH_100NS
    conn.close()
    assert len(set(ids)) == len(ids)
    stamps = [uuid.UUID(i).time for i in ids]
    assert all(before_100ns - 10_000_000 <= s <= after_100ns + 10_000_000 for s in stamps)  # within 1 s
    assert len({uuid.UUID(i).node for i in ids}) == 1  # one process, one node field


def test_request_ids_unique_across_threads_and_generators() -> None:
    first, second = RequestIds(), RequestIds()
    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = list(pool.map(lambda _: [first.next_id() for _ in range(5000)], range(4)))
    ids = [i for batch in batches for i in batch] + [second.next_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert uuid.UUID(ids[0]).node != uuid.UUID(ids[-1]).node


@pytest.mark.parametrize(("method", "path", "status", "error"), [
    ("GET", "/ping", 204, None),
    ("HEAD", "/ping", 204, None),
    ("GET", query_path(q="SHOW DATABASES"), 200, None),
    ("GET", "/query", 400, 'missing required parameter "q"'),
    ("GET", query_path(q="SELEC v FROM cpu", db="edge"), 400, "error parsing query"),
    ("POST", "/write", 400, "database is required"),
    ("GET", "/no-such-path", 404, "Not Found"),
    ("DELETE", "/ping", 405, "Method Not Allowed"),
])
def test_headers_on_every_status(server: ServerProcess, method: str, path: str, status: int,
                                 error: str | None) -> None:
    got, headers, _ = http(method, server.url + path, b"m v=1" if method == "POST" else None)
    assert got == status
    assert_influx_headers(headers)
    if error is None:
        assert "X-Influxdb-Error" not in headers
    else:
        assert headers["X-Influxdb-Error"].startswith(error)


def test_query_answers(server: ServerProcess) -> None:
    status, headers, body = http("GET", server.url + query_path(q="SHOW DATABASES"))
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert ["edge"] in json.loads(body)["results"][0]["series"][0]["values"]
    for host in ("h0", "h2"):
        status, _, body = http("GET", server.url + query_path(q=f"SELECT v FROM cpu WHERE host = '{host}'",
                                                               db="edge", epoch="ns"))
        assert status == 200
        expected = [[t, v] for h, v, t in ROWS if h == host]
        assert json.loads(body)["results"][0]["series"][0]["values"] == expected
    status, _, body = http("GET", server.url + query_path(q="SELECT v FROM cpu", db="nodb"))
    assert status == 200 and json.loads(body) == {"results": [{"statement_id": 0,
                                                               "error": "database not found: nodb"}]}


def test_concurrent_queries_each_get_their_answer(server: ServerProcess) -> None:
    def ask(k: int) -> tuple[int, float]:
        host = f"h{k % 3}"
        _, _, body = http("GET", server.url + query_path(q=f"SELECT sum(v) FROM cpu WHERE host = '{host}'",
                                                         db="edge"))
        return k, json.loads(body)["results"][0]["series"][0]["values"][0][1]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(24)))
    for k, total in answers:
        assert total == pytest.approx(sum(v for h, v, _ in ROWS if h == f"h{k % 3}"))


def test_auth_rules_on_query(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "d", "--fsync", "never", "--set", "http.auth_enabled=true",
                       "--set", "http.tokens=s3cret", "--set", "http.users=admin:pw") as srv:
        show = query_path(q="SHOW DATABASES")
        status, headers, body = http("GET", srv.url + show)
        assert (status, json.loads(body)) == (401, {"error": "authorization failed"})
        assert headers["WWW-Authenticate"] == 'Basic realm="edgets"'
        assert headers["X-Influxdb-Error"] == "authorization failed"
        assert_influx_headers(headers)
        status, headers, body = http("GET", srv.url + "/api/v3/query_sql?db=edge&q=SELECT+1")
        assert status == 401 and json.loads(body)["message"] == "unauthorized access"
        assert headers["X-Influxdb-Error"] == "unauthorized access"
        assert http("GET", srv.url + "/no-such-path")[0] == 401  # auth is checked before routing
        assert http("GET", srv.url + "/ping")[0] == 204
        assert http("GET", srv.url + "/health")[0] == 200
        allowed = [
            (show + "&u=admin&p=pw", {}),
            (show + "&p=s3cret", {}),
            (show, {"Authorization": "Token s3cret"}),
            (show, {"Authorization": "Bearer admin:pw"}),
            (show, {"Authorization": "Basic YWRtaW46cHc="}),
        ]
        for path, headers_sent in allowed:
            assert http("GET", srv.url + path, None, headers_sent)[0] == 200, (path, headers_sent)
        for path, headers_sent in [(show + "&u=admin&p=bad", {}), (show, {"Authorization": "Basic !!!"}),
                                   (show, {"Authorization": "Token wrong"})]:
            assert http("GET", srv.url + path, None, headers_sent)[0] == 401, (path, headers_sent)


def test_query_threads_keep_the_loop_free_and_pass_errors() -> None:
    async def scenario() -> None:
        threads = QueryThreads(2, "query-test")
        started, release = threading.Event(), threading.Event()

        def long_query() -> str:
            started.set()
            release.wait(30)
            return threading.current_thread().name

        slow = asyncio.create_task(threads.run(long_query))
        # the loop keeps serving while the long query runs: this await only returns if it does
        assert await threads.run(lambda: started.wait(30)) is True
        assert await threads.run(lambda: 6 * 7) == 42
        with pytest.raises(ZeroDivisionError):
            await threads.run(lambda: 1 / 0)
        assert not slow.done()
        release.set()
        assert (await slow).startswith("query-test_")
        threads.shutdown()

    asyncio.run(scenario())


def test_query_threads_shutdown_cancels_queued_jobs() -> None:
    async def scenario() -> None:
        threads = QueryThreads(1, "query-test")
        started, release = threading.Event(), threading.Event()
        running = asyncio.create_task(threads.run(lambda: (started.set(), release.wait(30))[1]))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
        queued = asyncio.create_task(threads.run(lambda: "never"))
        await wait_until_async(lambda: threads.queued == 1, 10, "the second job queued")
        threads.shutdown()
        release.set()
        assert await running is True
        with pytest.raises(asyncio.CancelledError):
            await queued
        with pytest.raises(RuntimeError):
            await threads.run(lambda: None)

    asyncio.run(scenario())


def test_edge_node_serves_on_the_chosen_event_loop(tmp_path: Path) -> None:
    """run_until_complete runs a real edge node on event_loop_factory()'s loop (uvloop when installed):
    ping, write and query answer as on asyncio's loop, and the node stops cleanly."""
    config = load_config(None, {"storage.data_dir": str(tmp_path / "edge"), "http.bind": "127.0.0.1:0",
                                "storage.fsync": "never"}, environ={})
    factory = event_loop_factory()

    async def serve_and_probe() -> tuple[type, list[tuple[int, dict[str, str], bytes]]]:
        stop = asyncio.Event()
        nodes: list[EdgeNode] = []

        async def capture(node: EdgeNode) -> Callable[[], Awaitable[None]]:
            nodes.append(node)

            async def nothing() -> None:
                return None
            return nothing

        server = asyncio.ensure_future(run_edge_node(config, [capture], stop))
        await wait_until_async(lambda: bool(nodes) or server.done(), 60, "edge node up")
        url = nodes[0].url
        answers = [await asyncio.to_thread(http, "GET", url + "/ping"),
                   await asyncio.to_thread(http, "POST", url + "/write?db=edge", b"m v=2.5 1000000000"),
                   await asyncio.to_thread(http, "GET", url + query_path(q="SELECT v FROM m", db="edge",
                                                                          epoch="s"))]
        stop.set()
        await server
        return type(asyncio.get_running_loop()), answers

    loop_type, answers = run_until_complete(serve_and_probe())
    expected = asyncio.SelectorEventLoop
    if factory is not None:
        probe = factory()
        expected = type(probe)
        probe.close()
    assert loop_type is expected
    assert [a[0] for a in answers] == [204, 204, 200]
    for _, headers, _ in answers:
        assert_influx_headers(headers)
    assert json.loads(answers[2][2])["results"][0]["series"][0]["values"] == [[1, 2.5]]
