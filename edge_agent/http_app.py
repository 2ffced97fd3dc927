"""Assembles the aiohttp application: InfluxDB headers, auth, /ping, /health and the routes.

Write routes come from ingest, query routes from query; this module only wires them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from edge_agent.config import Config
from ingest.http_write import (
    ENGINE_KEY,
    PARSE_POOL_KEY,
    SETTINGS_KEY,
    WriteSettings,
    add_write_routes,
)
from storage.engine import StorageEngine

INFLUX_VERSION = "1.8.10"
BUILD = "OSS"
PRODUCT = "edgets"
OPEN_PATHS = {"/ping", "/health", "/metrics"}

HealthCheck = Callable[[], dict]
HEALTH_KEY: web.AppKey[list[HealthCheck]] = web.AppKey("health_checks", list)
AUTH_KEY: web.AppKey[Credentials] = web.AppKey("credentials")
OPEN_PATHS_KEY: web.AppKey[frozenset[str]] = web.AppKey("open_paths", frozenset)
"""Extra paths of an app that do their own authentication (the cloud's sync endpoint)."""


class Credentials:
    """The tokens and user/password pairs accepted when auth is on."""

    def __init__(self, enabled: bool, tokens: list[str], users: dict[str, str]) -> None:
        self.enabled = enabled
        self.tokens = [t.encode() for t in tokens]
        self.users = {u: p.encode() for u, p in users.items()}

    def _token_ok(self, token: str) -> bool:
        given = token.encode()
        if any(hmac.compare_digest(given, t) for t in self.tokens):
            return True
        user, sep, password = token.partition(":")
        return bool(sep) and self._user_ok(user, password)

    def _user_ok(self, user: str, password: str) -> bool:
        expected = self.users.get(user)
        if expected is not None and hmac.compare_digest(expected, password.encode()):
            return True
        return any(hmac.compare_digest(password.encode(), t) for t in self.tokens)

    def allows(self, request: web.Request) -> bool:
        return self.allows_parts(request.headers.get("Authorization", ""), request.query)

    def allows_parts(self, header: str, query: Mapping[str, str]) -> bool:
        """Whether an Authorization header value or the u/p query parameters carry a valid credential."""
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme in ("token", "bearer") and value:
            return self._token_ok(value.strip())
        if scheme == "basic" and value:
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return self._user_ok(user, password)
        user, password = query.get("u"), query.get("p")
        if user is not None and password is not None:
            return self._user_ok(user, password)
        if password is not None:
            return self._token_ok(password)
        return False


def _is_v1(path: str) -> bool:
    return not path.startswith("/api/")


class RequestIds:
    """Unique request ids in UUID version 1 layout, ~15x cheaper than str(uuid.uuid1()).

    Time field: now in 100 ns steps since 1582-10-15, as uuid1. Clock-sequence field: a per-process
    counter (14 bits), so two ids of this process differ unless 16384 requests share one 100 ns tick.
    Node field: random per process with the multicast bit set (RFC 4122 4.5), so processes differ too.
    """

    GREGORIAN_OFFSET = 0x01B21DD213814000  # 100 ns intervals from 1582-10-15 to 1970-01-01

    def __init__(self) -> None:
        self._counter = itertools.count(secrets.randbits(14))
        self._node = f"{secrets.randbits(48) | (1 << 40):012x}"

    def next_id(self) -> str:
        stamp = time.time_ns() // 100 + self.GREGORIAN_OFFSET
        sequence = next(self._counter) & 0x3FFF  # next() on a count is atomic under the GIL
        return (f"{stamp & 0xFFFFFFFF:08x}-{(stamp >> 32) & 0xFFFF:04x}-{0x1000 | (stamp >> 48) & 0x0FFF:04x}-"
                f"{0x8000 | sequence:04x}-{self._node}")


REQUEST_IDS = RequestIds()
UNAUTHORIZED_V1 = json.dumps({"error": "authorization failed"})
UNAUTHORIZED_V2 = json.dumps({"code": "unauthorized", "message": "unauthorized access"})


def unauthorized(request: web.Request) -> web.Response | None:
    """InfluxDB's 401 when auth is on and the request carries no valid credential; None when allowed."""
    creds = request.app[AUTH_KEY]
    if not creds.enabled:
        return None
    path = request.path
    if path in OPEN_PATHS or path in request.app.get(OPEN_PATHS_KEY, frozenset()) or creds.allows(request):
        return None
    return web.Response(status=401, text=UNAUTHORIZED_V1 if _is_v1(path) else UNAUTHORIZED_V2,
                        content_type="application/json", headers={"WWW-Authenticate": 'Basic realm="edgets"'})


def error_header(text: str) -> str:
    """An error text as an X-Influxdb-Error value: one line, at most 1 KiB."""
    return text.replace("\r", " ").replace("\n", " ")[:1024]


def _error_text(response: web.Response) -> str:
    """X-Influxdb-Error for a non-2xx answer: the body's error/message, else the reason phrase."""
    try:
        body = json.loads(bytes(response.body))  # type: ignore[arg-type]
        text = body.get("error") or body.get("message") or ""
    except (ValueError, TypeError, AttributeError):
        text = response.reason or ""
    return error_header(str(text)) if text else ""


@web.middleware
async def influx_headers_and_auth(request: web.Request,
                                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                  ) -> web.StreamResponse:
    """Auth check (401 with InfluxDB's body), then InfluxDB's headers on every answer; non-2xx
    answers also carry X-Influxdb-Error. One middleware: each layer costs a coroutine per request."""
    request_id = REQUEST_IDS.next_id()
    try:
        response = unauthorized(request) or await handler(request)
    except web.HTTPException as exc:
        response = exc
    headers = response.headers
    headers["X-Influxdb-Version"] = INFLUX_VERSION
    headers["X-Influxdb-Build"] = BUILD
    headers["Request-Id"] = request_id
    headers["X-Request-Id"] = request_id
    if response.status >= 400 and isinstance(response, web.Response) and response.body is not None \
            and "X-Influxdb-Error" not in headers and (text := _error_text(response)):
        headers["X-Influxdb-Error"] = text
    if isinstance(response, web.HTTPException):
        raise response
    return response


async def handle_ping(request: web.Request) -> web.Response:
    if request.query_string and request.query.get("verbose", "").lower() in ("true", "1"):
        return web.json_response({"version": INFLUX_VERSION, "product": PRODUCT})
    return web.Response(status=204)


async def handle_health(request: web.Request) -> web.Response:
    checks = [check() for check in request.app[HEALTH_KEY]]
    ok = all(c.get("status") == "pass" for c in checks)
    body = {
        "name": PRODUCT,
        "message": "ready for queries and writes" if ok else "not ready",
        "status": "pass" if ok else "fail",
        "checks": checks,
        "version": INFLUX_VERSION,
    }
    return web.json_response(body, status=200 if ok else 503)


def storage_health(engine: StorageEngine) -> HealthCheck:
    def check() -> dict:
        report = getattr(engine, "recovery_report", None)
        quarantined = list(report.quarantined) if report else []
        result = {"name": "storage", "status": "pass", "stats": engine.stats(), "quarantined": quarantined}
        if quarantined:
            result["message"] = f"{len(quarantined)} corrupt file(s) moved to quarantine/ at start-up"
        return result

    return check


def build_app(config: Config, engine: StorageEngine, parse_threads: int = 2) -> web.Application:
    """The HTTP API of an edge node (writes, ping, health); query routes are added by the caller."""
    app = web.Application(
        middlewares=[influx_headers_and_auth],
        client_max_size=config.http.max_body_size + 1024,
    )
    app[ENGINE_KEY] = engine
    app[SETTINGS_KEY] = WriteSettings(
        max_body_size=config.http.max_body_size,
        auto_create_databases=config.http.auto_create_databases,
    )
    pool = ThreadPoolExecutor(max_workers=parse_threads, thread_name_prefix="lp-parse")
    app[PARSE_POOL_KEY] = pool
    app[AUTH_KEY] = Credentials(config.http.auth_enabled, list(config.http.tokens), dict(config.http.users))
    app[HEALTH_KEY] = [storage_health(engine)]

    async def stop_pool(_: web.Application) -> None:
        pool.shutdown(wait=True)

    app.on_cleanup.append(stop_pool)
    app.router.add_route("GET", "/ping", handle_ping)
    app.router.add_route("HEAD", "/ping", handle_ping)
    app.router.add_get("/health", handle_health)
    add_write_routes(app)
    return app


def build_service_app(config: Config, open_paths: frozenset[str] = frozenset()) -> web.Application:
    """InfluxDB headers, auth ([http] settings), /ping and /health without a storage engine
    (the cloud process); `open_paths` skip the auth check because they authenticate themselves."""
    app = web.Application(middlewares=[influx_headers_and_auth])
    app[AUTH_KEY] = Credentials(config.http.auth_enabled, list(config.http.tokens), dict(config.http.users))
    app[HEALTH_KEY] = []
    app[OPEN_PATHS_KEY] = frozenset(open_paths)
    app.router.add_route("GET", "/ping", handle_ping)
    app.router.add_route("HEAD", "/ping", handle_ping)
    app.router.add_get("/health", handle_health)
    return app
