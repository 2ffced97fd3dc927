"""The `edgets cloud` process: sync receiver for many edge nodes, InfluxDB-compatible queries over
their committed segments (tag `node`), /ping, /health and the periodic Parquet export."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from edge_agent.config import Config
from edge_agent.edge_node import http_site, split_bind
from edge_agent.gc_freeze import freeze_start_up_objects, gc_health
from edge_agent.http_app import HEALTH_KEY, build_service_app
from query.http_query import add_query_routes
from sync.cloud_store import CloudTableSource
from sync.frames import WS_PATH, valid_node_id
from sync.parquet_export import ExportConfig, ParquetExporter
from sync.receiver import CloudConfig, CloudReceiver, add_sync_routes

log = logging.getLogger("edgets.cloud")


def cloud_receiver_config(config: Config) -> CloudConfig:
    c = config.cloud
    bad = [node for node in c.tokens if not valid_node_id(str(node))]
    if bad:
        raise ValueError(f"cloud.tokens: invalid node ids {bad} (letters, digits, _ . -)")
    return CloudConfig(cloud_dir=Path(c.cloud_dir), tokens={str(k): str(v) for k, v in c.tokens.items()})


def cloud_tls_context(config: Config) -> ssl.SSLContext | None:
    if not (config.cloud.tls_cert and config.cloud.tls_key):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(config.cloud.tls_cert, config.cloud.tls_key)
    return ctx


def receiver_health(receiver: CloudReceiver) -> Callable[[], dict]:
    def check() -> dict:
        ready = receiver.catalog is not None
        return {"name": "sync-receiver", "status": "pass" if ready else "fail",
                "counters": dict(receiver.counters)}

    return check


def exporter_health(exporter: ParquetExporter) -> Callable[[], dict]:
    def check() -> dict:
        # an export failure is reported, but the cloud keeps serving queries and sync
        return {"name": "parquet-export", "status": "pass", **exporter.status()}

    return check


def build_cloud_app(config: Config) -> tuple[web.Application, CloudReceiver, CloudTableSource]:
    """The cloud's aiohttp app: sync endpoint (own per-node auth), query endpoints, ping, health."""
    app = build_service_app(config, open_paths=frozenset({WS_PATH}))
    receiver = add_sync_routes(app, cloud_receiver_config(config))
    source = CloudTableSource(Path(config.cloud.cloud_dir))
    add_query_routes(app, source, timeout_s=config.query.timeout,
                     max_memory_bytes=config.query.max_memory)
    app[HEALTH_KEY].append(receiver_health(receiver))
    return app, receiver, source


async def export_periodically(exporter: ParquetExporter, interval_s: float,
                              stop: asyncio.Event) -> None:
    """Run an export, then wait `interval_s` (or until stop); errors are logged and retried."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            report = await asyncio.to_thread(exporter.export_once)
            if report.batches or report.recovered_batches:
                log.info("parquet export: %d segments, %d rows, %d files (%d batches rolled back)",
                         report.segments, report.rows, len(report.files), report.recovered_batches)
        except Exception:  # noqa: BLE001 - keep exporting on the next interval
            log.exception("parquet export failed")
        remaining = interval_s - (time.monotonic() - started)
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, remaining))
        except TimeoutError:
            pass


async def run_cloud(config: Config, stop_event: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or stop_event); prints 'edgets: listening on <url>'."""
    cloud_dir = Path(config.cloud.cloud_dir)
    cloud_dir.mkdir(parents=True, exist_ok=True)
    app, _receiver, _source = build_cloud_app(config)
    exporter: ParquetExporter | None = None
    if config.cloud.parquet_root:
        exporter = ParquetExporter(ExportConfig(cloud_dir, config.cloud.parquet_root))
        app[HEALTH_KEY].append(exporter_health(exporter))
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=config.http.idle_timeout)
    await runner.setup()
    host, port = split_bind(config.cloud.bind)
    ctx = cloud_tls_context(config)
    site = http_site(runner, config, host, port, ctx)
    await site.start()
    freeze_start_up_objects()
    app[HEALTH_KEY].append(gc_health)
    bound = runner.addresses[0][1] if runner.addresses else port
    scheme = "https" if ctx else "http"
    print(f"edgets: listening on {scheme}://{host}:{bound} (cloud data in {cloud_dir})", flush=True)
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    export_task = None
    if exporter is not None:
        export_task = asyncio.ensure_future(
            export_periodically(exporter, config.cloud.export_interval, stop))
    try:
        await stop.wait()
    finally:
        if export_task is not None:
            await export_task  # finishes the running export (a thread cannot be cancelled)
        await runner.cleanup()
        if exporter is not None:
            exporter.close()
        print("edgets: cloud stopped cleanly", flush=True)
