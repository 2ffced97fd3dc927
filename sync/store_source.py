"""The sync sender's SegmentSource over storage's SegmentStore, and the store's delete guard
built from the ack ledger (a segment is deletable only once the persisted ledger says synced)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from storage.segment_format import ORIGIN_COMPACTION, SegmentInfo
from storage.segment_store import SegmentStore
from sync.ledger import AckLedger
from sync.segment_source import SealedSegment

log = logging.getLogger(__name__)


def sealed_segment_of(info: SegmentInfo) -> SealedSegment:
    """The sender's view of a store segment (opaque file + the footer summary)."""
    return SealedSegment(seq=info.seq, path=info.path, size=info.size,
                         content_hash=info.content_hash, min_time_ns=info.min_time_ns,
                         max_time_ns=info.max_time_ns, rows=info.rows, database=info.database,
                         measurement=info.measurement)


def segment_origin(info: SegmentInfo) -> str:
    """Why the segment was sealed: "flush", "compaction", "delete" (a DELETE rewrite or
    tombstone), "drop" (a DROP tombstone), or "" for files written before the footer had
    `origin` (see docs/sync-protocol.md "Rewrites")."""
    return info.origin


def is_synced_compaction(info: SegmentInfo, ledger: AckLedger) -> bool:
    """A compaction output (same rows as its inputs) whose every input the cloud committed."""
    return (bool(info.replaces) and segment_origin(info) == ORIGIN_COMPACTION
            and all(ledger.is_acked(s) for s in info.replaces))


def already_synced(info: SegmentInfo, ledger: AckLedger) -> bool:
    """True when every row AND every removal in `info` is in the cloud per the persisted ledger:
    the segment was acked itself, or it is a compaction output whose every input was acked.

    A DELETE rewrite (or a rewrite of unknown origin) holds FEWER rows than its inputs: the
    cloud learns of the deletion only by committing the rewrite, so it is synced only once it
    was acked itself (never deleted by retention before that)."""
    return ledger.is_acked(info.seq) or is_synced_compaction(info, ledger)


def ledger_delete_guard(ledger: AckLedger) -> Callable[[SegmentInfo], bool]:
    """The SegmentStore delete guard: only segments the persisted ledger says are synced.
    AckLedger changes its in-memory view only after the new state is durable, so this guard
    enforces "persist the ledger, then delete"."""

    def may_delete(info: SegmentInfo) -> bool:
        return already_synced(info, ledger)

    return may_delete


class StoreSegmentSource:
    """SegmentSource over a SegmentStore.

    A compaction output whose inputs were all acked holds only data the cloud already has: it
    is not offered to the sender (it would only be a duplicate upload). Every other rewrite --
    a DELETE rewrite (rows removed), a compaction of unsynced inputs, or a rewrite whose footer
    does not say its origin -- is sent like a fresh segment, and the cloud hides the inputs a
    committed segment `replaces` (that is how a DELETE at the edge reaches the cloud).
    """

    def __init__(self, store: SegmentStore, ledger: AckLedger, poll_interval: float = 1.0) -> None:
        self.store = store
        self.ledger = ledger
        self.poll_interval = poll_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._sealed_since_wait = threading.Event()
        self._last_seen_max = -1
        store.add_seal_listener(self._on_seal)

    def _on_seal(self, _info: SegmentInfo) -> None:
        """Runs in the sealing thread: wake the sender's event loop without polling delay."""
        self._sealed_since_wait.set()
        loop, event = self._loop, self._event
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop closed between the check and the call
                pass

    def _wanted(self, info: SegmentInfo) -> bool:
        return not is_synced_compaction(info, self.ledger)

    def sealed_after(self, seq: int, limit: int) -> list[SealedSegment]:
        out: list[SealedSegment] = []
        cursor = seq
        while len(out) < limit:
            batch = self.store.sealed_after(cursor, max(limit, 64))
            if not batch:
                break
            for info in batch:
                if self._wanted(info):
                    out.append(sealed_segment_of(info))
                    if len(out) >= limit:
                        break
            cursor = batch[-1].seq
        return out

    def _newest_seq(self) -> int:
        newest = self.store.sealed_after(self._last_seen_max, 1 << 30)
        return newest[-1].seq if newest else -1

    async def wait_for_new(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        if self._event is None or self._loop is not loop:  # (re)bind to the running loop
            self._loop = loop
            self._event = asyncio.Event()
        deadline = time.monotonic() + timeout
        while True:
            self._sealed_since_wait.clear()
            newest = self._newest_seq()
            if newest > self._last_seen_max:
                self._last_seen_max = newest
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._event.clear()
            if self._sealed_since_wait.is_set():  # sealed between the scan and the clear
                continue
            try:
                await asyncio.wait_for(self._event.wait(), min(self.poll_interval, remaining))
            except TimeoutError:
                pass

    def delete(self, seq: int) -> None:
        """Delete through the store, so its delete guard (the ledger) has the last word."""
        info = self.store.get(seq)
        if info is None:
            return
        if not self.store.delete(info, "synced to the cloud (ledger acked)"):
            log.warning("segment %d not deleted: the store's delete guard refuses", seq)
