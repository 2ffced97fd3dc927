"""HTTP query endpoints: InfluxDB /query (JSON, CSV, chunked) and v3 /api/v3/query_sql, query_influxql.

Owns request parameters, query worker threads, response encodings; execution: influxql_exec, sql_sandbox.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from aiohttp import web

from query.influxql_exec import PreparedQuery, QueryExecutor
from query.influxql_parser import InfluxQLParseError
from query.select_into import PointsWriter
from query.sql_sandbox import SqlError, run_sql

EXECUTOR_KEY: web.AppKey[QueryExecutor] = web.AppKey("influxql_executor", QueryExecutor)
SQL_SOURCE_KEY: web.AppKey[Any] = web.AppKey("sql_source")
LIMITS_KEY: web.AppKey[dict] = web.AppKey("query_limits", dict)
V3_FORMATS = {"json", "jsonl", "csv", "parquet", "arrow", "pretty"}
INLINE_MAX_VALUES = 200_000  # ~1-3 ms of decoding and aggregation: see docs/architecture.md
QUERY_COUNTS_KEY: web.AppKey[dict[str, int]] = web.AppKey("query_counts", dict)
"""/query requests answered on the event loop ("inline") and on worker threads ("threaded")."""
T = TypeVar("T")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class QueryThreads:
    """Worker threads that run queries off the event loop (a long query never blocks writes).

    A leaner handoff than loop.run_in_executor(ThreadPoolExecutor): one SimpleQueue put there and one
    call_soon_threadsafe back, no concurrent.futures.Future chained to an asyncio one (~10-20 us less).
    """

    def __init__(self, threads: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]]
                                      | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
                         for i in range(threads)]
        self._started = False
        self._closed = False

    async def run(self, job: Callable[[], T]) -> T:
        """job() on a worker thread; its result or exception comes back to the awaiting task."""
        if self._closed:
            raise RuntimeError("query threads are shut down")
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, job))
        return await future

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            loop, future, job = item
            if future.cancelled():  # the request went away while queued
                continue
            try:
                result, error = job(), None
            except BaseException as exc:  # handed to the awaiting task, which re-raises it
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # loop closed meanwhile: nobody waits for the answer
                pass

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker thread."""
        return self._jobs.qsize()

    def shutdown(self) -> None:
        """Queued jobs are cancelled, running ones finish in the background (threads are daemons)."""
        self._closed = True
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].call_soon_threadsafe(item[1].cancel)
        for _ in self._threads:
            self._jobs.put(None)


POOL_KEY: web.AppKey[QueryThreads] = web.AppKey("query_threads", QueryThreads)
DEFAULT_CHUNK_SIZE = 10_000


async def _params(request: web.Request) -> dict[str, str]:
    """Query-string parameters, overlaid with a form or JSON body on POST."""
    params = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except json.JSONDecodeError as exc:
                raise web.HTTPBadRequest(text=json.dumps({"error": f"invalid JSON body: {exc}"}),
                                         content_type="application/json") from exc
            params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()})
        else:
            form = await request.post()
            params.update({k: str(v) for k, v in form.items()})
    return params


def _json_default(value: Any) -> Any:
    return str(value)


def _dump_bytes(obj: Any, pretty: bool) -> bytes:
    """_dump as UTF-8; compact bodies go through orjson (NaN/Inf -> null as well)."""
    if not pretty:
        try:
            return orjson.dumps(obj, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError:  # e.g. integers beyond 64 bits: the json module copes
            pass
    return _dump(obj, pretty).encode()


def _dump(obj: Any, pretty: bool) -> str:
    """JSON as InfluxDB writes it: NaN/Inf (which JSON lacks) become null."""
    indent = 4 if pretty else None
    try:  # fast path: results are normally NaN/Inf free already
        return json.dumps(obj, indent=indent, default=_json_default, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), indent=indent, default=_json_default)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def results_to_csv(results: list[dict]) -> str:
    """InfluxDB's CSV: name,tags,<columns...> per series, a blank line between differing headers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    last_header: list[str] | None = None
    for result in results:
        for series in result.get("series", []):
            header = ["name", "tags", *series["columns"]]
            if header != last_header:
                if last_header is not None:
                    out.write("\n")
                writer.writerow(header)
                last_header = header
            tags = ",".join(f"{k}={v}" for k, v in sorted(series.get("tags", {}).items()))
            for row in series.get("values", []):
                writer.writerow([series["name"], tags, *("" if v is None else v for v in row)])
    return out.getvalue()


def chunk_results(results: list[dict], chunk_size: int) -> list[dict]:
    """Split series into documents of at most chunk_size rows, marking 'partial' like InfluxDB."""
    docs: list[dict] = []
    for result in results:
        series_list = result.get("series")
        if not series_list:
            docs.append({"results": [result]})
            continue
        pieces: list[dict] = []
        for series in series_list:
            values = series.get("values", [])
            for start in range(0, max(len(values), 1), chunk_size):
                piece = {**series, "values": values[start:start + chunk_size]}
                if start + chunk_size < len(values):
                    piece["partial"] = True
                pieces.append(piece)
        for i, piece in enumerate(pieces):
            doc: dict[str, Any] = {"statement_id": result["statement_id"], "series": [piece]}
            if i < len(pieces) - 1:
                doc["partial"] = True
            docs.append({"results": [doc]})
    return docs


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    """A /query answer, independent of the HTTP server that sends it (aiohttp or the fast lane)."""

    status: int
    body: bytes
    content_type: str
    error: str = ""
    """The error text of a non-200 answer (sent as X-Influxdb-Error)."""


def error_answer(status: int, text: str) -> QueryAnswer:
    """InfluxDB's error body: compact JSON ending in a newline (Go's json.Encoder)."""
    body = json.dumps({"error": text}, separators=(",", ":")).encode() + b"\n"
    return QueryAnswer(status, body, "application/json; charset=utf-8", text)


@dataclass(slots=True)
class PendingQuery:
    """A prepared /query that runs on a worker thread: run() there, QueryEndpoint.encode() after."""

    executor: QueryExecutor
    prepared: PreparedQuery
    db: str | None
    epoch: str | None
    params: Mapping[str, str]
    accept: str
    rp: str | None = None

    def run(self) -> list[dict]:
        return self.executor.execute_prepared(self.prepared, self.db, self.epoch, self.rp)


class QueryEndpoint:
    """InfluxDB's /query from parameters to answer: small queries answered on the calling (event
    loop) thread, others handed to the worker threads. Shared by handle_query and the fast lane."""

    def __init__(self, executor: QueryExecutor, pool: QueryThreads, inline_max_values: int,
                 counts: dict[str, int]) -> None:
        self.executor, self.pool, self.inline_max_values, self.counts = executor, pool, inline_max_values, counts

    def begin(self, params: Mapping[str, str], accept: str) -> QueryAnswer | PendingQuery:
        """The answer when it is ready now (a bad request, a parse error, a small query), else the
        query to finish on a worker thread."""
        q = params.get("q", "")
        if not q.strip():
            return error_answer(400, 'missing required parameter "q"')
        bind: dict | None = None
        if params.get("params"):
            try:
                bind = json.loads(params["params"])
            except json.JSONDecodeError as exc:
                return error_answer(400, f"error parsing query parameters: {exc}")
        db = params.get("db") or None
        rp = params.get("rp") or None
        try:
            prepared = self.executor.prepare(q, db, bind, rp=rp)
        except InfluxQLParseError as exc:
            return error_answer(400, str(exc))
        pending = PendingQuery(self.executor, prepared, db, params.get("epoch") or None, params, accept, rp)
        budget = self.inline_max_values
        if prepared.cost is not None and budget > 0 and prepared.cost <= budget:
            # small enough to answer on the event loop: a thread handoff would cost more (~0.5 ms)
            self.counts["inline"] += 1
            return self.encode(pending, pending.run())
        self.counts["threaded"] += 1
        return pending

    @staticmethod
    def encode(pending: PendingQuery, results: list[dict]) -> QueryAnswer:
        """The 200 answer for `results`: CSV on Accept: application/csv, chunked or (pretty) JSON."""
        params, accept = pending.params, pending.accept
        if "application/csv" in accept or "text/csv" in accept:
            return QueryAnswer(200, results_to_csv(results).encode(), "application/csv; charset=utf-8")
        if params.get("chunked", "").lower() == "true":
            size = params.get("chunk_size", "")
            chunk_size = int(size) if size.isdigit() and int(size) > 0 else DEFAULT_CHUNK_SIZE  # as InfluxDB
            body = b"".join(_dump_bytes(doc, False) + b"\n" for doc in chunk_results(results, chunk_size))
            return QueryAnswer(200, body, "application/json")
        pretty = params.get("pretty", "").lower() == "true"
        # ends in a newline as InfluxDB's (Go's json.Encoder), so a terminal prompt starts on its own line
        return QueryAnswer(200, _dump_bytes({"results": results}, pretty) + b"\n", "application/json")

    async def answer(self, params: Mapping[str, str], accept: str) -> QueryAnswer:
        started = self.begin(params, accept)
        if isinstance(started, QueryAnswer):
            return started
        return self.encode(started, await self.pool.run(started.run))


QUERY_ENDPOINT_KEY: web.AppKey[QueryEndpoint] = web.AppKey("query_endpoint", QueryEndpoint)


async def handle_query(request: web.Request) -> web.StreamResponse:
    answer = await request.app[QUERY_ENDPOINT_KEY].answer(await _params(request), request.headers.get("Accept", ""))
    return web.Response(status=answer.status, body=answer.body, headers={"Content-Type": answer.content_type})


def encode_table(table: pa.Table, fmt: str) -> tuple[bytes, str]:
    """A result table as json | jsonl | csv | parquet | arrow (IPC stream) | pretty."""
    if fmt == "parquet":
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue(), "application/vnd.apache.parquet"
    if fmt == "arrow":
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes(), "application/vnd.apache.arrow.stream"
    if fmt == "csv":
        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        return sink.getvalue(), "text/csv"
    rows = _finite([{k: _plain(v) for k, v in row.items()} for row in table.to_pylist()])
    if fmt == "jsonl":
        return "".join(json.dumps(r, default=str) + "\n" for r in rows).encode(), "application/jsonl"
    if fmt == "pretty":
        return _pretty(table.column_names, rows).encode(), "text/plain"
    return json.dumps(rows, default=str).encode(), "application/json"


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _pretty(columns: list[str], rows: list[dict]) -> str:
    cells = [[("" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |", line]
    out += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |" for row in cells]
    out.append(line)
    return "\n".join(out) + "\n"


def influxql_results_table(results: list[dict]) -> pa.Table:
    """Flatten InfluxQL results to one table: iox::measurement, tags, then the columns."""
    rows: list[dict] = []
    for result in results:
        if "error" in result:
            raise SqlError(result["error"])
        for series in result.get("series", []):
            for values in series.get("values", []):
                row = {"iox::measurement": series["name"], **series.get("tags", {})}
                row.update(zip(series["columns"], values, strict=True))
                rows.append(row)
    return pa.Table.from_pylist(rows) if rows else pa.table({})


async def handle_v3(request: web.Request, language: str) -> web.Response:
    params = await _params(request)
    db, q = params.get("db", ""), params.get("q", "")
    fmt = (params.get("format") or "json").lower()
    if not db or not q:
        return web.json_response({"error": "parameters db and q are required"}, status=400)
    if fmt not in V3_FORMATS:
        return web.json_response({"error": f"unknown format {fmt!r}; use one of {sorted(V3_FORMATS)}"}, status=400)
    limits = request.app[LIMITS_KEY]

    def execute() -> pa.Table:
        rp = params.get("rp") or None
        if language == "sql":
            return run_sql(request.app[SQL_SOURCE_KEY], db, q, memory_limit_bytes=limits["max_memory"],
                           timeout_s=limits["timeout"], rp=rp)
        return influxql_results_table(request.app[EXECUTOR_KEY].execute(q, db, None, "ns", rp=rp))

    try:
        table = await request.app[POOL_KEY].run(execute)
    except SqlError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    except InfluxQLParseError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    body, ctype = encode_table(table, fmt)
    return web.Response(body=body, content_type=ctype)


async def handle_query_sql(request: web.Request) -> web.Response:
    return await handle_v3(request, "sql")


async def handle_query_influxql(request: web.Request) -> web.Response:
    return await handle_v3(request, "influxql")


def add_query_routes(app: web.Application, source: Any, *, timeout_s: float = 30.0,
                     max_memory_bytes: int = 1024**3, threads: int = 2,
                     inline_max_values: int = INLINE_MAX_VALUES, writer: PointsWriter | None = None) -> None:
    """Mount /query and the v3 query endpoints over `source` (a storage engine or cloud view).
    `inline_max_values`: a /query whose reads are estimated to decode at most this many values
    runs on the event loop thread (0: every query runs on a worker thread). `writer`: where
    SELECT INTO writes (None: SELECT INTO answers an error)."""
    app[EXECUTOR_KEY] = QueryExecutor(source, max_memory=f"{max_memory_bytes}B", timeout_s=timeout_s,
                                      writer=writer)
    app[QUERY_COUNTS_KEY] = {"inline": 0, "threaded": 0}
    app[SQL_SOURCE_KEY] = source
    app[LIMITS_KEY] = {"timeout": timeout_s, "max_memory": max_memory_bytes}
    pool = QueryThreads(threads, "query")
    app[POOL_KEY] = pool
    app[QUERY_ENDPOINT_KEY] = QueryEndpoint(app[EXECUTOR_KEY], pool, inline_max_values, app[QUERY_COUNTS_KEY])

    async def stop_pool(_: web.Application) -> None:
        pool.shutdown()

    app.on_cleanup.append(stop_pool)
    for method in ("GET", "POST"):
        app.router.add_route(method, "/query", handle_query)
        app.router.add_route(method, "/api/v3/query_sql", handle_query_sql)
        app.router.add_route(method, "/api/v3/query_influxql", handle_query_influxql)
