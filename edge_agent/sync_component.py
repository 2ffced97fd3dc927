"""Edge side of sync as an edge_node component: SyncSender over the engine's segment store, the
ledger as the store's delete guard, and sync status (lag, connection, last error) in /health."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edge_agent.config import Config
from edge_agent.edge_node import Component, EdgeNode
from edge_agent.http_app import HEALTH_KEY
from storage.segment_store import SegmentStore
from sync.frames import valid_node_id
from sync.ledger import AckLedger
from sync.sender import SenderConfig, SyncSender
from sync.store_source import StoreSegmentSource, ledger_delete_guard

log = logging.getLogger("edgets.sync")

LEDGER_SUBDIR = "sync"


def node_id_of(config: Config) -> str:
    """[sync] node_id, else the host name made into a valid node id."""
    node = config.sync.node_id or re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).lstrip(".-")
    if not valid_node_id(node):
        raise ValueError(f"sync.node_id {node!r} is not a valid node id (letters, digits, _ . -; "
                         "at most 128 characters, not starting with . or -)")
    return node


def sender_config(config: Config) -> SenderConfig:
    s = config.sync
    if not s.url.startswith(("ws://", "wss://")):
        raise ValueError(f"sync.url must start with ws:// or wss://, got {s.url!r}")
    return SenderConfig(
        url=s.url, node=node_id_of(config), token=s.token,
        ledger_dir=Path(config.storage.data_dir) / LEDGER_SUBDIR,
        chunk_bytes=s.chunk_size, bandwidth_bytes_per_s=float(s.bandwidth) or None,
        backoff_cap_s=s.backoff_cap, heartbeat_s=s.heartbeat, compress=s.compress,
        ca_file=s.ca_file or None,
    )


def segment_store_of(engine: Any) -> SegmentStore:
    store = getattr(engine, "segment_store", None)
    if not isinstance(store, SegmentStore):
        raise RuntimeError("sync needs the storage engine's segment store (engine.segment_store), "
                           f"got {type(store).__name__}")
    return store


def install_delete_guard(engine: Any, store: SegmentStore, ledger: AckLedger) -> None:
    """Only segments the persisted ledger says are synced may be deleted (retention, compaction)."""
    guard = ledger_delete_guard(ledger)
    setter = getattr(engine, "set_segment_delete_guard", None)
    if callable(setter):
        setter(guard)
    else:
        store.set_delete_guard(guard)


def sync_health(sender: SyncSender) -> Callable[[], dict]:
    """/health check: sync problems are reported, not fatal (data waits at the edge)."""

    def check() -> dict:
        try:
            status = sender.status()
        except Exception as exc:  # noqa: BLE001 - health must answer
            return {"name": "sync", "status": "pass", "error": f"status unavailable: {exc}"}
        return {"name": "sync", "status": "pass", **status}

    return check


def sync_component(config: Config) -> Component:
    """Start SyncSender for the node's engine; the returned stop function ends it."""
    settings = sender_config(config)  # fail at start on a bad [sync] section

    async def start(node: EdgeNode) -> Callable[[], Awaitable[None]]:
        store = segment_store_of(node.engine)
        ledger = await asyncio.to_thread(AckLedger.open, settings.ledger_dir)
        install_delete_guard(node.engine, store, ledger)
        source = StoreSegmentSource(store, ledger)
        sender = SyncSender(settings, source, ledger)
        node.app[HEALTH_KEY].append(sync_health(sender))
        task = asyncio.ensure_future(sender.run())
        log.info("sync to %s as node %s (epoch %s, acked through %d)", settings.url, settings.node,
                 ledger.epoch, ledger.acked_through)

        async def stop() -> None:
            sender.stop()
            await task

        return stop

    return start


def sync_components(config: Config) -> list[Component]:
    """[sync_component] when [sync] url is set, else nothing."""
    return [sync_component(config)] if config.sync.url else []
