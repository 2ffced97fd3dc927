"""The HTTP write endpoints: InfluxDB v1 /write, v2 /api/v2/write, v3 /api/v3/write_lp.

Owns request decoding (gzip, body limit, precision), partial-write answers and overload replies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from aiohttp import web

from ingest.lineproto import LineError, ParseResult, parse_lines
from storage.batch import Batch
from storage.engine import (
    DatabaseNotFound,
    Overloaded,
    RetentionPolicyNotFound,
    StorageEngine,
    StorageError,
    WriteOutcome,
)

log = logging.getLogger(__name__)

Dialect = Literal["v1", "v2", "v3"]
V1_PRECISIONS = {"n", "ns", "u", "us", "ms", "s", "m", "h"}
V2_PRECISIONS = {"ns": "ns", "us": "us", "ms": "ms", "s": "s"}
V3_PRECISIONS = {
    "nanosecond": "ns", "microsecond": "us", "millisecond": "ms", "second": "s",
    "ns": "ns", "us": "us", "ms": "ms", "s": "s",
}
GZIP_MAGIC = b"\x1f\x8b"
ENGINE_KEY: web.AppKey[StorageEngine] = web.AppKey("storage_engine", StorageEngine)


@dataclass
class WriteSettings:
    max_body_size: int = 25_000_000
    auto_create_databases: bool = False


SETTINGS_KEY: web.AppKey[WriteSettings] = web.AppKey("write_settings", WriteSettings)
PARSE_POOL_KEY: web.AppKey[Executor] = web.AppKey("parse_pool", Executor)


class BodyTooLarge(Exception):
    pass


class BadRequest(Exception):
    pass


def _json(status: int, body: dict, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body, separators=(",", ":")),
                        content_type="application/json", headers=headers)


def _error(dialect: Dialect, status: int, message: str, code: str = "invalid", **extra: object) -> web.Response:
    if dialect == "v1":
        return _json(status, {"error": message})
    if dialect == "v3":
        return _json(status, {"error": message, **extra})
    return _json(status, {"code": code, "message": message, **extra})


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, gunzipped when Content-Encoding says so; BodyTooLarge past `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    raw = b"".join(chunks)
    if request.headers.get("Content-Encoding", "").lower() != "gzip" or not raw.startswith(GZIP_MAGIC):
        return raw  # not gzip, or already inflated by aiohttp's payload parser (size was counted above)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"invalid gzip body: {exc}") from exc
    if len(body) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge()
    return body


def scale_auto_precision(batches: dict[str, Batch]) -> None:
    """InfluxDB 3 'auto' precision: guess each timestamp's unit from its magnitude (in place)."""
    for batch in batches.values():
        t = batch.time
        magnitude = np.abs(t)
        scale = np.where(magnitude < 5_000_000_000, 1_000_000_000,
                         np.where(magnitude < 5_000_000_000_000, 1_000_000,
                                  np.where(magnitude < 5_000_000_000_000_000, 1_000, 1)))
        batch.time = t * scale


async def _parse(request: web.Request, body: bytes, precision: str) -> ParseResult:
    pool = request.app[PARSE_POOL_KEY]
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, parse_lines, body, precision)


def _line_errors_text(errors: list[LineError], limit: int = 10) -> str:
    shown = [f"{e.message()} (line {e.line})" for e in errors[:limit]]  # InfluxDB's text, then the line
    if len(errors) > limit:
        shown.append(f"... and {len(errors) - limit} more bad lines")
    return "\n".join(shown)


async def _write(request: web.Request, dialect: Dialect, db: str, rp: str | None, precision: str,
                 accept_partial: bool = True) -> web.Response:
    engine = request.app[ENGINE_KEY]
    settings = request.app[SETTINGS_KEY]
    if not engine.has_database(db):
        if settings.auto_create_databases:
            try:
                await asyncio.get_running_loop().run_in_executor(None, engine.create_database, db)
            except StorageError as exc:  # e.g. "invalid name" (a '/' in it)
                return _error(dialect, 400, f"cannot create database {db!r}: {exc}")
        else:
            what = f'database not found: "{db}"' if dialect == "v1" else f'bucket "{db}" not found'
            if dialect == "v3":
                what = f"database not found: {db}"
            return _error(dialect, 404, what, code="not found")
    try:
        body = await read_body(request, settings.max_body_size)
    except BodyTooLarge:
        if dialect == "v1":
            return _error("v1", 413, "Request Entity Too Large")
        return _error(dialect, 413, f"request body exceeds {settings.max_body_size} bytes",
                      code="request too large")
    except BadRequest as exc:
        return _error(dialect, 400, str(exc))

    result = await _parse(request, body, "ns" if precision == "auto" else precision)
    if precision == "auto":
        scale_auto_precision(result.batches)
    errors = result.errors
    if errors and dialect == "v3" and not accept_partial:
        return _v3_line_errors(errors, partial=False)
    parse_dropped = sum(1 for e in errors if e.dropped)  # parsed, but refused as InfluxDB's engine would
    if errors and result.points == 0 and parse_dropped < len(errors):
        first = errors[0]
        if dialect == "v1":
            return _error("v1", 400, _line_errors_text(errors))
        if dialect == "v3":
            return _v3_line_errors(errors, partial=False)
        return _error("v2", 400, _line_errors_text(errors), line=first.line)
    if result.points == 0 and not errors:
        return web.Response(status=204)

    try:
        # submit() validates and encodes the batch: keep that CPU work off the event loop
        if result.points:
            future = await asyncio.get_running_loop().run_in_executor(
                request.app[PARSE_POOL_KEY], lambda: engine.submit(db, list(result.batches.values()), rp=rp))
            outcome = await asyncio.wrap_future(future)
        else:
            outcome = WriteOutcome(points_written=0, dropped=0, errors=[])
    except Overloaded as exc:
        retry = str(max(1, int(round(exc.retry_after))))
        return _overloaded(dialect, 503 if dialect == "v1" else 429, str(exc), retry)
    except RetentionPolicyNotFound as exc:
        return _error(dialect, 404, str(exc), code="not found")
    except DatabaseNotFound as exc:
        return _error(dialect, 404, str(exc), code="not found")

    if not errors and not outcome.errors:
        return web.Response(status=204)
    reasons = [_line_errors_text(errors)] if errors else []
    reasons += outcome.errors[:10]
    message = f"partial write: {'; '.join(reasons)} dropped={outcome.dropped + parse_dropped}"
    if dialect == "v1":
        return _error("v1", 400, message)
    if dialect == "v3":
        return _v3_line_errors(errors, partial=True, extra=outcome.errors)
    if errors:
        return _error("v2", 400, message, line=errors[0].line)
    return _error("v2", 422, f"failure writing points to database: {message}",
                  code="unprocessable entity")


def _overloaded(dialect: Dialect, status: int, reason: str, retry_after: str) -> web.Response:
    message = f"write buffer full, retry later ({reason})"
    if dialect in ("v1", "v3"):
        body = {"error": message}
    else:
        body = {"code": "too many requests" if status == 429 else "unavailable", "message": message}
    return _json(status, body, headers={"Retry-After": retry_after})


def _v3_line_errors(errors: list[LineError], partial: bool, extra: list[str] | None = None) -> web.Response:
    data = [{"original_line": e.text, "line_number": e.line, "error_message": e.reason} for e in errors[:100]]
    data += [{"original_line": "", "line_number": 0, "error_message": m} for m in (extra or [])[:100]]
    message = "partial write of line protocol occurred" if partial else "parsing failed for write_lp endpoint"
    return _json(400, {"error": message, "data": data})


async def handle_v1_write(request: web.Request) -> web.Response:
    q = request.query
    db = q.get("db", "")
    if not db:
        return _error("v1", 400, "database is required")
    precision = q.get("precision", "ns") or "ns"
    if precision not in V1_PRECISIONS:
        precision = "ns"  # InfluxDB 1.x treats an unknown precision as nanoseconds
    return await _write(request, "v1", db, q.get("rp") or None, precision)


def split_bucket(bucket: str) -> tuple[str, str | None]:
    """InfluxDB 1.8 compatibility: bucket 'db/rp' or 'db'."""
    db, _, rp = bucket.partition("/")
    return db, rp or None


async def handle_v2_write(request: web.Request) -> web.Response:
    q = request.query
    bucket = q.get("bucket", "")
    if not bucket:
        return _error("v2", 400, "bucket is required", code="invalid")
    precision = q.get("precision", "ns") or "ns"
    if precision not in V2_PRECISIONS:
        return _error("v2", 400, f"invalid precision {precision!r}: use ns, us, ms or s")
    db, rp = split_bucket(bucket)
    return await _write(request, "v2", db, rp, V2_PRECISIONS[precision])


async def handle_v3_write(request: web.Request) -> web.Response:
    q = request.query
    db = q.get("db", "")
    if not db:
        return _error("v3", 400, "db is required")
    precision = q.get("precision", "auto") or "auto"
    if precision != "auto" and precision not in V3_PRECISIONS:
        return _error("v3", 400, f"invalid precision {precision!r}")
    accept_partial = q.get("accept_partial", "true").lower() != "false"
    return await _write(request, "v3", db, None,
                        "auto" if precision == "auto" else V3_PRECISIONS[precision], accept_partial)


def add_write_routes(app: web.Application) -> None:
    app.router.add_post("/write", handle_v1_write)
    app.router.add_post("/api/v2/write", handle_v2_write)
    app.router.add_post("/api/v3/write_lp", handle_v3_write)
