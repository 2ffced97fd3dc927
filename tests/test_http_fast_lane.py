"""The /query fast lane of a real server: the same answers as the aiohttp path (compared with a
server that has it off), pipelining, hand-off to aiohttp, auth, TLS, idle timeout and shutdown."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.http_fast_lane import parse_lane_request
from tests.server_process import ServerProcess
from tests.test_http_write import http
from tests.test_mqtt_tls_auth import make_ca, make_leaf

BASE_NS = 1_700_000_000_000_000_000
LINES = "\n".join(f"cpu,host=h{i % 3} v={i * 0.25},n={i}i {BASE_NS + i * 10**9}" for i in range(30))
BIG_LINES = "\n".join(f"big,host=h{i % 4} v={i * 1.5} {BASE_NS + i * 10**9}" for i in range(4000))
UNCOMPARED = {"date", "server", "request-id", "x-request-id"}


class RawConnection:
    """A kept-alive HTTP/1.1 connection on a plain socket: requests can be pipelined or split."""

    def __init__(self, url: str, tls: ssl.SSLContext | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        sock = socket.create_connection((parsed.hostname, parsed.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def read_response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"connection closed before a response head: {self.buffer[:200]!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "connection closed inside a response body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split(" ")[1]), headers, body

    def at_eof(self) -> bool:
        """Blocks until the server sends more or closes; True when it closed."""
        return not self.buffer and not self._fill()

    def close(self) -> None:
        self.sock.close()


def get(target: str, *headers: str) -> bytes:
    return ("\r\n".join([f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *headers]) + "\r\n\r\n").encode()


def post(target: str, form: dict[str, str], *headers: str,
         content_type: str = "application/x-www-form-urlencoded") -> bytes:
    body = urllib.parse.urlencode(form).encode()
    return ("\r\n".join([f"POST {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
                          f"Content-Length: {len(body)}", *headers]) + "\r\n\r\n").encode() + body


def post_json(target: str, doc: dict[str, str]) -> bytes:
    body = json.dumps(doc).encode()
    return (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def query_target(**params: str) -> str:
    return "/query?" + urllib.parse.urlencode(params)


def health_stats(server: ServerProcess, name: str) -> dict:
    status, _, body = http("GET", server.url + "/health")
    assert status == 200
    return next(c for c in json.loads(body)["checks"] if c["name"] == name)["stats"]


def start_with_data(directory: Path, *args: str) -> ServerProcess:
    server = ServerProcess(directory, "--fsync", "never", *args).start()
    for lines in (LINES, BIG_LINES):
        assert http("POST", f"{server.url}/write?db=edge", lines.encode())[0] == 204
    return server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    """'lane': default; 'threaded': fast lane, every query on a worker thread; 'plain': lane off."""
    base = tmp_path_factory.mktemp("lane")
    started = {
        "lane": start_with_data(base / "lane"),
        "threaded": start_with_data(base / "threaded", "--set", "query.inline_max_values=0"),
        "plain": start_with_data(base / "plain", "--set", "http.fast_lane=false"),
    }
    yield started
    for server in started.values():
        server.stop()


REQUESTS = [
    get(query_target(db="edge", q="SELECT v, n FROM cpu WHERE host = 'h1'")),
    get(query_target(db="edge", q="SELECT mean(v) FROM cpu GROUP BY time(10s), host fill(none)", epoch="s")),
    get(query_target(db="edge", q="SELECT v FROM cpu LIMIT 4", pretty="true")),
    get(query_target(db="edge", q="SELECT v FROM cpu", chunked="true", chunk_size="7")),
    get(query_target(db="edge", q="SELECT v FROM cpu LIMIT 5", chunked="true", chunk_size="many")),
    get(query_target(db="edge", q="SELECT n FROM cpu WHERE host = $h", params=json.dumps({"h": "h2"}))),
    get(query_target(db="edge", q="SELECT v FROM cpu LIMIT 3"), "Accept: application/csv"),
    get(query_target(db="edge", q="SHOW MEASUREMENTS; SHOW TAG VALUES WITH KEY = host; SELECT count(v) FROM cpu")),
    get(query_target(db="nope", q="SELECT v FROM cpu")),
    get(query_target(db="edge", q="SELECT FROM WHERE")),
    get(query_target(db="edge")),
    get(query_target(db="edge", q="SELECT v FROM cpu", params="{not json")),
    get("/query?db=edge&q=SELECT+%22v%22+FROM+cpu+WHERE+host%3D%27h0%27+LIMIT+2&db=other", "Connection: keep-alive"),
    get(query_target(db="edge", q="SELECT * FROM big WHERE host = 'h3'")),
    get("/ping"),
    b"HEAD /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    post("/query", {"db": "edge", "q": "SELECT v FROM cpu WHERE host = 'h2' LIMIT 3"}),
    post("/query?db=nope&epoch=s", {"db": "edge", "q": "SELECT count(v) FROM cpu", "epoch": "ms"}),
    post("/query?q=SHOW+DATABASES", {}),
    post("/query", {"db": "edge", "q": "SELECT n FROM cpu WHERE host = $h", "params": json.dumps({"h": "h0"})},
         content_type="application/x-www-form-urlencoded; charset=utf-8"),
    post("/query", {"db": "edge", "q": "SELECT FROM"}),
]
IN_LANE = len(REQUESTS)
REQUESTS += [  # served by aiohttp after a hand-off: the same answers all the same
    post("/query", {"db": "edge", "q": "SELECT v FROM cpu LIMIT 2"}, content_type="text/plain"),
    post_json("/query", {"db": "edge", "q": "SELECT v FROM cpu LIMIT 2"}),
]


def answers(server: ServerProcess, requests: list[bytes]) -> list[tuple[int, dict[str, str], bytes]]:
    connection = RawConnection(server.url)
    try:
        out = []
        for request in requests:
            connection.send(request)
            out.append(connection.read_response())
        return out
    finally:
        connection.close()


@pytest.mark.parametrize("lane", ["lane", "threaded"])
def test_answers_equal_the_aiohttp_path(servers: dict[str, ServerProcess], lane: str) -> None:
    before = health_stats(servers[lane], "http_fast_lane")["served"]
    ours = answers(servers[lane], REQUESTS)
    theirs = answers(servers["plain"], REQUESTS)
    for request, (status, headers, body), (status_p, headers_p, body_p) in zip(REQUESTS, ours, theirs, strict=True):
        assert (status, body) == (status_p, body_p), request
        assert {k: v for k, v in headers.items() if k not in UNCOMPARED} == \
               {k: v for k, v in headers_p.items() if k not in UNCOMPARED}, request
        assert headers["request-id"] == headers["x-request-id"] and headers["date"].endswith(" GMT")
    assert {status for status, _, _ in ours} == {200, 204, 400}
    assert len(json.loads(ours[0][2])["results"][0]["series"][0]["values"]) == 10
    assert health_stats(servers[lane], "http_fast_lane")["served"] == before + IN_LANE


def test_inline_and_threaded_counts(servers: dict[str, ServerProcess]) -> None:
    for name, grows in (("lane", "inline"), ("threaded", "threaded")):
        before = health_stats(servers[name], "query")
        answers(servers[name], [get(query_target(db="edge", q="SELECT count(v) FROM cpu"))] * 3)
        after = health_stats(servers[name], "query")
        assert after[grows] == before[grows] + 3, name


@pytest.mark.parametrize("lane", ["lane", "threaded"])
def test_pipelined_requests_are_answered_in_order_across_a_hand_off(servers: dict[str, ServerProcess],
                                                                    lane: str) -> None:
    server = servers[lane]
    handed_off = health_stats(server, "http_fast_lane")["handed_off"]
    count = get(query_target(db="edge", q="SELECT count(v) FROM cpu"))
    hosts = get(query_target(db="edge", q="SHOW TAG VALUES FROM cpu WITH KEY = host"))
    connection = RawConnection(server.url)
    try:
        connection.send(count + hosts + get("/ping") + count + get("/ping?verbose=true") + count)
        responses = [connection.read_response() for _ in range(6)]
    finally:
        connection.close()
    assert [status for status, _, _ in responses] == [200, 200, 204, 200, 200, 200]
    assert json.loads(responses[0][2])["results"][0]["series"][0]["values"][0][1] == 30
    assert [v[1] for v in json.loads(responses[1][2])["results"][0]["series"][0]["values"]] == ["h0", "h1", "h2"]
    assert responses[3][2] == responses[0][2]
    assert json.loads(responses[4][2])["product"] == "edgets"  # verbose /ping: aiohttp from here on
    assert responses[5][2] == responses[0][2]
    # this connection and the /health request reading the figure (urllib sends Connection: close)
    assert health_stats(server, "http_fast_lane")["handed_off"] == handed_off + 2


def test_many_large_pipelined_answers_arrive_whole(servers: dict[str, ServerProcess]) -> None:
    """50 answers of ~100 KiB each, sent before any is read: the lane pauses on a full socket."""
    request = get(query_target(db="edge", q="SELECT * FROM big"))
    connection = RawConnection(servers["lane"].url)
    try:
        connection.send(request * 50)
        responses = [connection.read_response() for _ in range(50)]
    finally:
        connection.close()
    assert len(responses[0][2]) > 100_000
    assert len(json.loads(responses[0][2])["results"][0]["series"][0]["values"]) == 4000
    assert all(status == 200 and body == responses[0][2] for status, _, body in responses)


def test_megabytes_pipelined_behind_a_threaded_query_are_all_answered(servers: dict[str, ServerProcess]) -> None:
    """A query on a worker thread first, then ~3 MiB of pipelined requests sent before any answer is
    read: the lane stops reading above its buffer limit and the client's writes wait; nothing is
    lost or reordered, and a final /health (handed to aiohttp) still gets through."""
    padding = "X-Pad: " + "p" * 6000
    slow = get(query_target(db="edge", q="SELECT * FROM big"))
    small = get(query_target(db="edge", q="SELECT count(v) FROM cpu"), padding)
    count = 500  # ~3 MiB of requests
    connection = RawConnection(servers["threaded"].url)
    try:
        sender = threading.Thread(target=connection.send, args=(slow + small * count + get("/health"),))
        sender.start()
        first = connection.read_response()
        rest = [connection.read_response() for _ in range(count)]
        health = connection.read_response()
        sender.join(timeout=60)
        assert not sender.is_alive()
    finally:
        connection.close()
    assert first[0] == 200 and len(json.loads(first[2])["results"][0]["series"][0]["values"]) == 4000
    assert all(status == 200 and json.loads(body)["results"][0]["series"][0]["values"][0][1] == 30
               for status, _, body in rest)
    assert health[0] == 200 and json.loads(health[2])["status"] == "pass"


def test_a_request_split_into_single_bytes(servers: dict[str, ServerProcess]) -> None:
    request = get(query_target(db="edge", q="SELECT count(n) FROM cpu"))
    connection = RawConnection(servers["lane"].url)
    try:
        for i in range(len(request)):
            connection.send(request[i:i + 1])
        first = connection.read_response()
        half = len(request) // 2
        connection.send(request[:half])
        connection.send(request[half:] + request)
        rest = [connection.read_response() for _ in range(2)]
    finally:
        connection.close()
    assert first[0] == 200 and json.loads(first[2])["results"][0]["series"][0]["values"][0][1] == 30
    assert [r[2] for r in rest] == [first[2], first[2]]
    form = post("/query", {"db": "edge", "q": "SELECT count(n) FROM cpu"})
    served = health_stats(servers["lane"], "http_fast_lane")["served"]
    connection = RawConnection(servers["lane"].url)
    try:
        for i in range(len(form)):  # the head, then the form body a byte at a time
            connection.send(form[i:i + 1])
        posted = connection.read_response()
    finally:
        connection.close()
    assert posted[2] == first[2]
    assert health_stats(servers["lane"], "http_fast_lane")["served"] == served + 1


@pytest.mark.parametrize("request_bytes", [
    b"GET /query?q=SHOW+DATABASES HTTP/1.1\r\nBad Header: x\r\n\r\n",
    b"GET /query?q=SHOW+DATABASES HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
    b"GET /query?q=SHOW+DATABASES HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"GET /query?q=" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n",
    b"GET /query?q=SHOW+DATABASES HTTP/1.1\r\nX-Long: " + b"y" * 9000 + b"\r\n\r\n",
])
def test_malformed_requests_get_the_aiohttp_answer(servers: dict[str, ServerProcess], request_bytes: bytes) -> None:
    statuses = []
    for name in ("lane", "plain"):
        connection = RawConnection(servers[name].url)
        try:
            connection.send(request_bytes)
            statuses.append(connection.read_response()[0])
        finally:
            connection.close()
    assert statuses[0] == statuses[1] and statuses[0] >= 400


@pytest.mark.parametrize("lane", ["lane", "threaded"])
def test_connection_close_and_http_1_0_are_answered_then_closed(servers: dict[str, ServerProcess],
                                                                lane: str) -> None:
    """Connection: close is answered in the lane (pipelined bytes after it are ignored, as by
    aiohttp); HTTP/1.0 goes to aiohttp. Each connection ends after its answer."""
    target = query_target(db="edge", q="SELECT count(v) FROM cpu")
    for request, in_lane in ((get(target, "Connection: close") + get(target), True),
                             (f"GET {target} HTTP/1.0\r\n\r\n".encode(), False)):
        before = health_stats(servers[lane], "http_fast_lane")
        connection = RawConnection(servers[lane].url)
        try:
            connection.send(request)
            status, _, body = connection.read_response()
            assert status == 200 and json.loads(body)["results"][0]["series"][0]["values"][0][1] == 30
            assert connection.at_eof()
        finally:
            connection.close()
        after = health_stats(servers[lane], "http_fast_lane")
        assert after["served"] == before["served"] + in_lane


def test_parse_lane_request_accepts_only_plain_keep_alive_gets() -> None:
    ok = parse_lane_request(b"GET /query?q=x&db=y HTTP/1.1\r\nHost: a\r\nAuthorization: Token t\r\n"
                         b"Accept: application/csv\r\nConnection: Keep-Alive\r\nContent-Length: 0")
    assert ok is not None and (ok.query_string, ok.authorization, ok.accept, ok.close) == (
        "q=x&db=y", "Token t", "application/csv", False)
    closing = parse_lane_request(b"GET /query?q=x HTTP/1.1\r\nConnection: close")
    assert closing is not None and closing.close
    ping = parse_lane_request(b"HEAD /ping HTTP/1.1\r\nHost: a")
    assert ping is not None and (ping.path, ping.query_string) == ("/ping", "")
    form = parse_lane_request(b"POST /query HTTP/1.1\r\nContent-Type: Application/X-WWW-Form-Urlencoded; "
                              b"charset=UTF-8\r\nContent-Length: 17")
    assert form is not None and (form.path, form.form_length) == ("/query", 17)
    for head in (b"POST /query?q=x HTTP/1.1", b"GET /query?q=x HTTP/1.0", b"GET /ping?verbose=true HTTP/1.1",
                 b"POST /query HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2",
                 b"POST /query HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded; charset=latin-1",
                 b"POST /query HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                 b"Content-Length: 9999999", b"POST /query HTTP/1.1\r\nContent-Length: 3",
                 b"POST /query HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: -1",
                 b"POST /ping HTTP/1.1", b"GET /health HTTP/1.1", b"HEAD /query?q=x HTTP/1.1",
                 b"GET /query/x?q=1 HTTP/1.1", b"GET /query?q=x#f HTTP/1.1", b"GET  /query?q=x HTTP/1.1",
                 b"GET /query?q=\xc3\xa9 HTTP/1.1", b"GET /query?q=x HTTP/1.1\r\nContent-Length: 2",
                 b"GET /query?q=x HTTP/1.1\r\nTransfer-Encoding: chunked", b"GET /query?q=x HTTP/1.1\r\nExpect: x",
                 b"GET /query?q=x HTTP/1.1\r\nUpgrade: websocket", b"GET /query?q=x HTTP/1.1\r\nConnection: TE",
                 b"GET /query?q=x HTTP/1.1\r\nAccept: a\r\naccept: b", b"GET /query?q=x HTTP/1.1\r\nNo colon",
                 b"GET /query?q=x HTTP/1.1\r\nX: a\x01b", b"GET /query?q=x HTTP/1.1\r\n X: folded"):
        assert parse_lane_request(head) is None, head


def test_auth_is_checked_in_the_lane(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "d", "--fsync", "never", "--set", "http.auth_enabled=true",
                       "--set", "http.tokens=s3cret", "--set", "http.users=admin:pw") as server:
        target = query_target(db="edge", q="SHOW DATABASES")
        for headers, user_params, expected in (
            ((), {}, 401), (("Authorization: Token wrong",), {}, 401), (("Authorization: Token s3cret",), {}, 200),
            (("Authorization: Basic YWRtaW46cHc=",), {}, 200), ((), {"u": "admin", "p": "pw"}, 200),
            ((), {"u": "admin", "p": "nope"}, 401),
        ):
            served = health_stats(server, "http_fast_lane")["served"]
            connection = RawConnection(server.url)
            try:
                connection.send(get(target + ("&" + urllib.parse.urlencode(user_params) if user_params else ""),
                                    *headers))
                status, response_headers, body = connection.read_response()
            finally:
                connection.close()
            assert status == expected, (headers, user_params)
            if expected == 401:
                assert json.loads(body) == {"error": "authorization failed"}
                assert response_headers["x-influxdb-error"] == "authorization failed"
            else:
                assert ["edge"] in json.loads(body)["results"][0]["series"][0]["values"]
            assert health_stats(server, "http_fast_lane")["served"] == served + (expected == 200)
        for request, expected in ((post("/query", {"q": "SHOW DATABASES", "u": "admin", "p": "pw"}), 401),
                                  (post("/query?u=admin&p=pw", {"q": "SHOW DATABASES"}), 200)):
            connection = RawConnection(server.url)  # u/p count from the URL only, as in InfluxDB
            try:
                connection.send(request)
                assert connection.read_response()[0] == expected
            finally:
                connection.close()


def test_idle_connections_are_closed_after_idle_timeout(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "d", "--fsync", "never", "--set", "http.idle_timeout=0.3") as server:
        used, unused = RawConnection(server.url), RawConnection(server.url)
        try:
            used.send(get(query_target(q="SHOW DATABASES")))
            assert used.read_response()[0] == 200
            started = time.monotonic()
            assert used.at_eof() and unused.at_eof()  # recv blocks until the server closes (30 s limit)
            assert time.monotonic() - started < 20
        finally:
            used.close()
            unused.close()


def test_stop_closes_kept_alive_connections_and_exits_cleanly(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "d", "--fsync", "never").start()
    connection = RawConnection(server.url)
    try:
        connection.send(get(query_target(q="SHOW DATABASES")))
        assert connection.read_response()[0] == 200
        assert server.stop() == 0
        assert connection.at_eof()
        assert any("stopped cleanly" in line for line in server.output)
    finally:
        connection.close()


def test_https_queries_go_through_the_lane(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "http-ca")
    cert, key = make_leaf(tmp_path, "edgets-http", ca, "keyUsage=critical,digitalSignature\n"
                          "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost")
    with ServerProcess(tmp_path / "d", "--fsync", "never", "--set", f"http.tls_cert={cert}",
                       "--set", f"http.tls_key={key}") as server:
        assert server.url.startswith("https://")
        tls = ssl.create_default_context(cafile=str(ca[0]))
        connection = RawConnection(server.url, tls)
        try:
            for _ in range(3):
                connection.send(get(query_target(q="SHOW DATABASES")))
                status, _, body = connection.read_response()
                assert status == 200 and ["edge"] in json.loads(body)["results"][0]["series"][0]["values"]
            connection.send(get("/health"))
            status, _, body = connection.read_response()
        finally:
            connection.close()
        assert status == 200
        lane = next(c for c in json.loads(body)["checks"] if c["name"] == "http_fast_lane")["stats"]
        assert lane["served"] == 3 and lane["handed_off"] == 1
