"""The HTTP fast lane: GET|POST /query (and a plain /ping) answered straight from the socket.

Owns the listening site; a connection's first request of any other kind hands it to aiohttp for good.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qsl

from aiohttp import web
from yarl import URL

from edge_agent.http_app import (
    AUTH_KEY,
    BUILD,
    INFLUX_VERSION,
    REQUEST_IDS,
    Credentials,
    error_header,
)
from query.http_query import (
    QUERY_ENDPOINT_KEY,
    PendingQuery,
    QueryAnswer,
    QueryEndpoint,
    error_answer,
)

log = logging.getLogger(__name__)

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 8190
"""Longer heads (or a buffer this long without a complete head) go to aiohttp, which applies its limits."""
MAX_BUFFERED_BYTES = 1 << 20
"""Pipelined request bytes held while a query runs or the client does not read: reading pauses above."""
MAX_FORM_BYTES = 256 << 10
"""Largest POST /query form body the lane takes (larger ones go to aiohttp)."""
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 1000  # aiohttp's client_max_fields
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}


PING_ANSWER = QueryAnswer(204, b"", "")


@dataclass(frozen=True, slots=True)
class LaneRequest:
    """What the fast lane needs of a request it answers."""

    path: str
    """/query or /ping"""
    query_string: str
    authorization: str
    accept: str
    close: bool = False
    """Connection: close: the connection ends after this answer."""
    form_length: int = 0
    """POST: bytes of the url-encoded form body that follows the head."""


def parse_lane_request(head: bytes) -> LaneRequest | None:
    """A request head (without its blank line) the fast lane answers: `GET /query?... HTTP/1.1`,
    `POST /query` with an url-encoded form (Content-Length, at most MAX_FORM_BYTES) or
    `GET|HEAD /ping HTTP/1.1` without parameters; well-formed ASCII headers, no other body, no
    Expect/Upgrade, Connection keep-alive or close, no repeated header. None for anything else:
    aiohttp serves (or refuses) it."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    request_line, *header_lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[2] != "HTTP/1.1":
        return None
    method, target = parts[0], parts[1]
    path, _, query_string = target.partition("?")
    if "#" in target or not target.isprintable():
        return None
    if not ((path == "/query" and method in ("GET", "POST")) or (target == "/ping" and method in ("GET", "HEAD"))):
        return None
    authorization = accept = content_type = ""
    close = False
    length = 0
    seen: set[str] = set()
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not _HEADER_NAME.fullmatch(name) or _BAD_VALUE_CHAR.search(value):
            return None
        key = name.lower()
        if key in seen:
            return None
        seen.add(key)
        value = value.strip(" \t")
        if key == "authorization":
            authorization = value
        elif key == "accept":
            accept = value
        elif key == "content-length":
            if not value.isdigit() or len(value) > 9:
                return None
            length = int(value)
        elif key == "content-type":
            content_type = value
        elif key == "connection":
            option = value.lower()
            if option not in ("keep-alive", "close"):
                return None
            close = option == "close"
        elif key in ("transfer-encoding", "expect", "upgrade"):
            return None
    if method == "POST":
        mime, _, options = content_type.partition(";")
        if mime.strip().lower() != FORM_TYPE or options.strip().lower() not in ("", "charset=utf-8") \
                or length > MAX_FORM_BYTES:
            return None
    elif length:
        return None
    return LaneRequest(path, query_string, authorization, accept, close, length)


class HttpDate:
    """The Date header value, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._value = second, email.utils.formatdate(second, usegmt=True)
        return self._value


class FastLane:
    """The fast lane of one listening site: its open connections, their running queries, and
    where a connection goes when the lane does not serve it (aiohttp's protocol factory)."""

    def __init__(self, endpoint: QueryEndpoint, credentials: Credentials, aiohttp_server: web.Server,
                 idle_timeout: float) -> None:
        self.endpoint, self.credentials, self.aiohttp_server = endpoint, credentials, aiohttp_server
        self.idle_timeout = idle_timeout
        self.connections: set[FastLaneConnection] = set()
        self.running: set[asyncio.Task[None]] = set()
        self.served = 0
        """Requests answered by the lane (health stats)."""
        self.handed_off = 0
        """Connections handed to aiohttp."""
        self.closing = False
        self._drained: asyncio.Event | None = None
        self._date = HttpDate()

    def connection(self) -> FastLaneConnection:
        """Protocol factory for loop.create_server."""
        return FastLaneConnection(self)

    def allows(self, request: LaneRequest, params: dict[str, str]) -> bool:
        return not self.credentials.enabled or self.credentials.allows_parts(request.authorization, params)

    def response(self, answer: QueryAnswer) -> bytes:
        """Status line and headers as the aiohttp app sends them (InfluxDB's headers included)."""
        request_id = REQUEST_IDS.next_id()
        error = f"X-Influxdb-Error: {error_header(answer.error)}\r\n" if answer.error else ""
        head = f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, '')}\r\n"
        if answer.status == 204:  # no content: no Content-Type or Content-Length (as aiohttp)
            return (f"{head}X-Influxdb-Version: {INFLUX_VERSION}\r\nX-Influxdb-Build: {BUILD}\r\n"
                    f"Request-Id: {request_id}\r\nX-Request-Id: {request_id}\r\n"
                    f"Date: {self._date.now()}\r\n\r\n").encode()
        return (f"{head}Content-Type: {answer.content_type}\r\nX-Influxdb-Version: {INFLUX_VERSION}\r\n"
                f"X-Influxdb-Build: {BUILD}\r\nRequest-Id: {request_id}\r\nX-Request-Id: {request_id}\r\n{error}"
                f"Date: {self._date.now()}\r\nContent-Length: {len(answer.body)}\r\n\r\n").encode()

    async def close(self, timeout: float) -> None:
        """Close idle connections now, busy ones once their answer is sent; waits up to `timeout`
        for running queries and unsent answers, then aborts what is left."""
        self.closing = True
        deadline = asyncio.get_running_loop().time() + timeout
        for connection in list(self.connections):
            connection.close_when_idle()
        if self.running:
            await asyncio.wait(list(self.running), timeout=timeout)
        if self.connections:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except TimeoutError:
                pass
        for connection in list(self.connections):
            connection.abort()

    def forget(self, connection: FastLaneConnection) -> None:
        self.connections.discard(connection)
        if self._drained is not None and not self.connections:
            self._drained.set()


class FastLaneConnection(asyncio.Protocol):
    """One client connection while in the fast lane: requests are answered in order, one at a
    time; a query that needs a worker thread holds the following (pipelined) requests back."""

    def __init__(self, lane: FastLane) -> None:
        self._lane = lane
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._busy = False
        self._write_paused = False
        self._reading_paused = False
        self._close_when_idle = False
        self._last_active = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        sock = self._transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._lane.connections.add(self)
        self._idle_timer = self._loop.call_at(self._last_active + self._lane.idle_timeout, self._check_idle)
        if self._lane.closing:
            self.close_when_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._last_active = self._loop.time()
        self._serve()
        self._update_reading()

    def eof_received(self) -> bool:
        return False  # the client is done sending: close (an answer still being computed is dropped)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._loop.call_soon(self._serve_more)

    def _serve_more(self) -> None:
        self._serve()
        self._update_reading()

    def _update_reading(self) -> None:
        """Read only while answers flow out and the held pipelined bytes stay under the limit."""
        pause = self._write_paused or len(self._buffer) > MAX_BUFFERED_BYTES
        if self._transport is None or pause == self._reading_paused:
            return
        self._reading_paused = pause
        if pause:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    def close_when_idle(self) -> None:
        self._close_when_idle = True
        if not self._busy and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _forget(self) -> None:
        self._transport = None
        self._lane.forget(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _check_idle(self) -> None:
        if self._transport is None:
            return
        deadline = self._last_active + self._lane.idle_timeout
        if not self._busy and self._loop.time() >= deadline:
            if self._write_paused:  # nothing read for the whole timeout: the unsent answer is dropped
                self._transport.abort()
            else:
                self._transport.close()
            return
        self._idle_timer = self._loop.call_at(max(deadline, self._loop.time() + 1.0), self._check_idle)

    def _serve(self) -> None:
        """Answer the complete requests in the buffer, in order, until one must wait."""
        while self._transport is not None and not (self._busy or self._write_paused or self._close_when_idle):
            end = self._buffer.find(HEAD_END)
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    self._hand_off()
                return
            request = parse_lane_request(bytes(self._buffer[:end])) if end <= MAX_HEAD_BYTES else None
            if request is None:
                self._hand_off()
                return
            body_end = end + len(HEAD_END) + request.form_length
            if len(self._buffer) < body_end:
                return  # the form body is still on its way
            try:
                params = dict(URL.build(query_string=request.query_string, encoded=True).query)
                if request.path == "/query" and not self._lane.allows(request, params):
                    self._hand_off()  # aiohttp answers the 401 (u/p count from the URL only, as there)
                    return
                if request.form_length:  # the form overlays the URL's parameters, as in _params()
                    form = bytes(self._buffer[end + len(HEAD_END):body_end]).rstrip().decode("utf-8")
                    params.update(parse_qsl(form, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
            except (ValueError, UnicodeError):
                self._hand_off()  # aiohttp decides what such a request gets
                return
            del self._buffer[:body_end]
            if request.close:
                self._close_when_idle = True  # _send closes after this answer; later bytes are ignored
            if request.path == "/ping":  # open, as in InfluxDB
                self._send(PING_ANSWER)
                continue
            try:
                started = self._lane.endpoint.begin(params, request.accept)
            except Exception as exc:  # a bug must not take the connection's later requests with it
                log.exception("/query failed")
                started = error_answer(500, f"internal error: {exc}")
            if isinstance(started, QueryAnswer):
                self._send(started)
            else:
                self._busy = True
                task = self._loop.create_task(self._finish(started))
                self._lane.running.add(task)
                task.add_done_callback(self._lane.running.discard)

    async def _finish(self, pending: PendingQuery) -> None:
        endpoint = self._lane.endpoint
        try:
            answer = endpoint.encode(pending, await endpoint.pool.run(pending.run))
        except asyncio.CancelledError:  # the query threads shut down: no answer will come
            if self._transport is not None:
                self._transport.abort()
            raise
        except Exception as exc:
            log.exception("/query failed")
            answer = error_answer(500, f"internal error: {exc}")
        self._busy = False
        self._send(answer)
        self._serve_more()

    def _send(self, answer: QueryAnswer) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._lane.served += 1
        head = self._lane.response(answer)
        if len(answer.body) < 65536:
            transport.write(head + answer.body)
        else:
            transport.writelines((head, answer.body))
        self._last_active = self._loop.time()
        if self._close_when_idle:
            transport.close()

    def _hand_off(self) -> None:
        """From now on aiohttp serves this connection, starting with what is buffered."""
        transport = self._transport
        assert transport is not None
        self._forget()
        self._lane.handed_off += 1
        if self._reading_paused:  # aiohttp applies its own flow control from here on
            transport.resume_reading()
        handler = self._lane.aiohttp_server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._buffer:
            handler.data_received(bytes(self._buffer))
            self._buffer.clear()


class FastLaneSite(web.TCPSite):
    """A TCPSite whose connections start in the fast lane when the app serves /query. Keeps its
    own copy of the listening parameters; of aiohttp's site it uses what BaseSite documents
    (start() registers the site, stop() closes `_server`, which the runner lists addresses of)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, idle_timeout: float,
                 ssl_context: ssl.SSLContext | None = None, reuse_address: bool | None = None,
                 shutdown_timeout: float = 60.0) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, reuse_address=reuse_address)
        self._app = runner.app
        self._listen = (host, port, ssl_context, reuse_address)
        self._idle_timeout = idle_timeout
        self._stop_timeout = shutdown_timeout
        self.lane: FastLane | None = None

    async def start(self) -> None:
        endpoint = self._app.get(QUERY_ENDPOINT_KEY)
        server = self._runner.server
        if endpoint is None or server is None:
            await super().start()
            return
        await web.BaseSite.start(self)  # registers the site with its runner
        self.lane = FastLane(endpoint, self._app[AUTH_KEY], server, self._idle_timeout)
        host, port, ssl_context, reuse_address = self._listen
        self._server = await asyncio.get_running_loop().create_server(
            self.lane.connection, host, port, ssl=ssl_context, reuse_address=reuse_address)

    @property
    def port(self) -> int:
        """The bound port (the requested one before start)."""
        sockets = self._server.sockets if self._server is not None else ()
        return sockets[0].getsockname()[1] if sockets else self._listen[1]

    async def stop(self) -> None:
        await super().stop()
        if self.lane is not None:
            await self.lane.close(self._stop_timeout)
