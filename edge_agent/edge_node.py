"""Lifecycle of an edge node process: open storage, serve HTTP, stop cleanly on SIGTERM/SIGINT.

Extra components (MQTT ingestion, sync, simulator) plug in through start/stop callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from edge_agent.config import Config
from edge_agent.gc_freeze import freeze_start_up_objects, gc_health
from edge_agent.heap_reserve import reserve_heap
from edge_agent.http_app import HEALTH_KEY, build_app
from edge_agent.http_fast_lane import FastLaneSite
from edge_agent.warmup import warm_up
from storage.engine import StorageConfig, StorageEngine

log = logging.getLogger("edgets")
T = TypeVar("T")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when the package is installed (less CPU per HTTP request and per
    thread handoff than asyncio's), else None: asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


HEAP_HEADROOM = 16 * 2**20  # transient decode buffers next to the chunk cache (heap_reserve)


def run_until_complete(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on the fastest available event loop (see event_loop_factory)."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(main)


def storage_config(config: Config) -> StorageConfig:
    s = config.storage
    return StorageConfig(
        data_dir=Path(s.data_dir),
        fsync=s.fsync,
        wal_file_bytes=s.wal_file_size,
        memory_budget_bytes=s.memory_budget,
        write_queue_bytes=s.write_queue,
        disk_budget_bytes=s.disk_budget or None,
        flush_bytes=s.flush_size,
        flush_age_s=s.flush_age,
        flush_window_ns=int(s.segment_window * 1e9),
        unsynced_policy=s.unsynced_policy,
        compaction_enabled=s.compaction,
        chunk_cache_bytes=config.query.chunk_cache,
        flush_on_close=True,  # a graceful stop leaves an empty WAL behind
        deletes_need_guard=bool(config.sync.url),  # retention waits for the sync ledger's guard
    )


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"http.bind must be host:port, got {bind!r}")
    return host.strip("[]"), int(port)


def tls_context(config: Config) -> ssl.SSLContext | None:
    if not (config.http.tls_cert and config.http.tls_key):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(config.http.tls_cert, config.http.tls_key)
    return ctx


Component = Callable[["EdgeNode"], Awaitable[Callable[[], Awaitable[None]]]]
"""Started after the HTTP server is up; returns its async stop function."""

AppSetup = Callable[[web.Application, StorageEngine], None]
"""Called before the HTTP server starts (routes and health checks can still be added)."""


@dataclass
class EdgeNode:
    config: Config
    engine: StorageEngine
    app: web.Application
    url: str = ""
    stops: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def open_engine(config: Config) -> StorageEngine:
    engine = StorageEngine(storage_config(config))
    report = engine.open()
    for item in report.quarantined:
        log.error("storage recovery quarantined %s", item)
    log.info(
        "storage recovered: %d WAL records, %d points replayed, %d torn-tail bytes truncated, %d files quarantined",
        report.replayed_records, report.replayed_points, report.truncated_tail_bytes, len(report.quarantined),
    )
    if config.http.default_database and not engine.has_database(config.http.default_database):
        engine.create_database(config.http.default_database)
    return engine


def http_site(runner: web.AppRunner, config: Config, host: str, port: int,
              ctx: ssl.SSLContext | None) -> web.TCPSite:
    """The listening site: with the /query fast lane unless [http] fast_lane is off."""
    if not config.http.fast_lane:
        return web.TCPSite(runner, host, port, ssl_context=ctx, reuse_address=True)
    site = FastLaneSite(runner, host, port, idle_timeout=config.http.idle_timeout, ssl_context=ctx,
                        reuse_address=True)
    if HEALTH_KEY in runner.app:
        runner.app[HEALTH_KEY].append(lambda: fast_lane_health(site))
    return site


def fast_lane_health(site: FastLaneSite) -> dict:
    lane = site.lane
    stats = {"served": lane.served, "handed_off": lane.handed_off, "open": len(lane.connections)} if lane else {}
    return {"name": "http_fast_lane", "status": "pass", "stats": stats}


def add_query_routes(app: web.Application, engine: StorageEngine, config: Config) -> None:
    from query.http_query import QUERY_COUNTS_KEY  # query layer is optional at import time
    from query.http_query import add_query_routes as add_routes

    add_routes(app, engine, timeout_s=config.query.timeout, max_memory_bytes=config.query.max_memory,
               inline_max_values=config.query.inline_max_values, writer=engine.write)
    counts = app[QUERY_COUNTS_KEY]
    app[HEALTH_KEY].append(lambda: {"name": "query", "status": "pass", "stats": dict(counts)})


async def run_edge_node(config: Config, components: list[Component] | None = None,
                        stop_event: asyncio.Event | None = None,
                        app_setup: list[AppSetup] | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or stop_event); then stop intake, flush and close."""
    loop = asyncio.get_running_loop()
    warming = loop.run_in_executor(None, warm_up)  # compile/load numba kernels while storage opens
    if config.query.chunk_cache > 0:  # on the loop thread, once start-up allocations are done
        warming.add_done_callback(lambda _: reserve_heap(config.query.chunk_cache + HEAP_HEADROOM))
    engine = await loop.run_in_executor(None, open_engine, config)
    app = build_app(config, engine)
    add_query_routes(app, engine, config)
    for setup in app_setup or []:
        setup(app, engine)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=config.http.idle_timeout)
    await runner.setup()
    host, port = split_bind(config.http.bind)
    ctx = tls_context(config)
    site = http_site(runner, config, host, port, ctx)
    await site.start()
    warming.add_done_callback(lambda _: freeze_start_up_objects())  # the engine and app exist by now
    app[HEALTH_KEY].append(gc_health)
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
    bound = sockets[0].getsockname()[1] if sockets else port
    scheme = "https" if ctx else "http"
    node = EdgeNode(config=config, engine=engine, app=app, url=f"{scheme}://{host}:{bound}")
    print(f"edgets: listening on {node.url} (data in {config.storage.data_dir})", flush=True)

    stop = stop_event or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        for component in components or []:
            node.stops.append(await component(node))
        await stop.wait()
        log.info("shutting down: stopping intake")
    finally:
        for stop_component in reversed(node.stops):
            try:
                await stop_component()
            except Exception:  # a failing component must not keep the others from stopping
                log.exception("component stop failed")
        await runner.cleanup()
        await warming
        await loop.run_in_executor(None, engine.close)
        print("edgets: stopped cleanly", flush=True)
