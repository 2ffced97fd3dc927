"""Assembles the aiohttp application: InfluxDB headers, auth, /ping, /health and the routes.

Write routes come from ingest, query routes from query; this module only wires them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
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
        header = request.headers.get("Authorization", "")
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
        user, password = request.query.get("u"), request.query.get("p")
        if user is not None and password is not None:
            return self._user_ok(user, password)
        if password is not None:
            return self._token_ok(password)
        return False


def _is_v1(path: str) -> bool:
    return not path.startswith("/api/")


@web.middleware
async def influx_headers(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every answer carries InfluxDB's headers; non-2xx answers also X-Influxdb-Error."""
    request_id = str(uuid.uuid1())
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers["X-Influxdb-Version"] = INFLUX_VERSION
    response.headers["X-Influxdb-Build"] = BUILD
    response.headers["Request-Id"] = request_id
    response.headers["X-Request-Id"] = request_id
    if response.status >= 400 and isinstance(response, web.Response) and response.body is not None \
            and "X-Influxdb-Error" not in response.headers:
        try:
            body = json.loads(bytes(response.body))
            text = body.get("error") or body.get("message") or ""
        except (ValueError, TypeError, AttributeError):
            text = response.reason or ""
        if text:
            response.headers["X-Influxdb-Error"] = str(text).replace("\n", " ")[:1024]
    if isinstance(response, web.HTTPException):
        raise response
    return response


@web.middleware
async def require_auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """401 with InfluxDB's body when auth is on and the request carries no valid credential."""
    creds = request.app[AUTH_KEY]
    if (not creds.enabled or request.path in OPEN_PATHS
            or request.path in request.app.get(OPEN_PATHS_KEY, frozenset()) or creds.allows(request)):
        return await handler(request)
    if _is_v1(request.path):
        body = {"error": "authorization failed"}
    else:
        body = {"code": "unauthorized", "message": "unauthorized access"}
    return web.Response(status=401, text=json.dumps(body), content_type="application/json",
                        headers={"WWW-Authenticate": 'Basic realm="edgets"'})


async def handle_ping(request: web.Request) -> web.Response:
    if request.query.get("verbose", "").lower() in ("true", "1"):
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
        middlewares=[influx_headers, require_auth],
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
    app = web.Application(middlewares=[influx_headers, require_auth])
    app[AUTH_KEY] = Credentials(config.http.auth_enabled, list(config.http.tokens), dict(config.http.users))
    app[HEALTH_KEY] = []
    app[OPEN_PATHS_KEY] = frozenset(open_paths)
    app.router.add_route("GET", "/ping", handle_ping)
    app.router.add_route("HEAD", "/ping", handle_ping)
    app.router.add_get("/health", handle_health)
    return app
