"""Background work of the storage engine: the flush policy (size / age / memory pressure) with its
thread, and the maintenance thread that runs compaction and retention passes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("edgets.storage.flusher")

FlushCandidate = tuple[str, str, int, float]  # db, measurement, active bytes, oldest arrival (monotonic)


@dataclass(frozen=True)
class FlushPolicy:
    """When a measurement's buffered rows go to a segment.

    * size: its unfrozen rows take more than `flush_bytes`;
    * age: its oldest unfrozen row arrived more than `flush_age_s` ago;
    * memory: the whole buffer uses more than `pressure_fraction` of the memory budget; then the
      largest measurements are flushed until the estimate falls below `target_fraction`.
    """

    flush_bytes: int
    flush_age_s: float
    memory_budget_bytes: int
    pressure_fraction: float = 0.5
    target_fraction: float = 0.25

    def under_pressure(self, buffer_bytes: int) -> bool:
        return buffer_bytes > self.pressure_fraction * self.memory_budget_bytes

    def due(self, candidates: list[FlushCandidate], buffer_bytes: int, now: float) -> list[tuple[str, str]]:
        """Measurements to flush now, most urgent (largest) first."""
        chosen: dict[tuple[str, str], None] = {}
        by_size = sorted(candidates, key=lambda c: c[2], reverse=True)
        for db, m, nbytes, since in by_size:
            if nbytes >= self.flush_bytes or (since > 0 and now - since >= self.flush_age_s):
                chosen[(db, m)] = None
        if self.under_pressure(buffer_bytes):
            projected = buffer_bytes - sum(c[2] for c in by_size if (c[0], c[1]) in chosen)
            for db, m, nbytes, _since in by_size:
                if projected <= self.target_fraction * self.memory_budget_bytes:
                    break
                if (db, m) not in chosen:
                    chosen[(db, m)] = None
                    projected -= nbytes
        return list(chosen)


class _BackgroundLoop:
    """A daemon thread running `_run` until stop(); wake() cuts its current wait short."""

    def __init__(self, name: str) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()


class FlushThread(_BackgroundLoop):
    """Checks the policy every `check_s` seconds or when woken, and flushes what is due.
    A failing flush is logged and retried on a later pass (its rows stay in buffer and WAL)."""

    def __init__(
        self,
        policy: FlushPolicy,
        candidates: Callable[[], list[FlushCandidate]],
        buffer_bytes: Callable[[], int],
        flush: Callable[[str, str], object],
        check_s: float,
    ) -> None:
        self.policy = policy
        self._candidates = candidates
        self._buffer_bytes = buffer_bytes
        self._flush = flush
        self._check_s = check_s
        super().__init__("edgets-flusher")
        self.passes = 0
        self.failures = 0

    def _run(self) -> None:
        failed_at = 0.0
        while not self._stop.is_set():
            self._wake.wait(self._check_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic()
            if failed_at and now - failed_at < max(self._check_s, 1.0):
                continue  # back off after a failure (e.g. disk full) instead of spinning
            failed_at = 0.0
            for db, m in self.policy.due(self._candidates(), self._buffer_bytes(), now):
                if self._stop.is_set():
                    break
                try:
                    self._flush(db, m)
                except Exception:  # noqa: BLE001 - the thread must survive; rows stay in the WAL
                    self.failures += 1
                    failed_at = time.monotonic()
                    log.exception("flush of %s.%s failed; retrying later", db, m)
                    break
            self.passes += 1


_MIN_WOKEN_RETENTION_GAP_S = 0.2


class MaintenanceThread(_BackgroundLoop):
    """Runs compaction merges (pausing `compaction_pause_s` after a merge, `compaction_idle_s`
    when there was nothing to merge) and a retention pass every `retention_check_s` seconds
    or when woken (e.g. a write hit the disk budget)."""

    def __init__(
        self,
        compact_once: Callable[[], bool],
        enforce_retention: Callable[[], object],
        retention_check_s: float,
        compaction_pause_s: float,
        compaction_idle_s: float,
        compaction_enabled: bool = True,
    ) -> None:
        self._compact_once = compact_once
        self._enforce = enforce_retention
        self._retention_check_s = retention_check_s
        self._pause_s = compaction_pause_s
        self._idle_s = compaction_idle_s
        self._compaction_enabled = compaction_enabled
        super().__init__("edgets-maintenance")

    def _run(self) -> None:
        next_retention = time.monotonic()
        next_compaction = time.monotonic()
        last_retention = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self._wake.is_set() and now - last_retention < _MIN_WOKEN_RETENTION_GAP_S:
                # refused writes wake us often while the disk is full: at most a pass per gap
                self._stop.wait(_MIN_WOKEN_RETENTION_GAP_S - (now - last_retention))
                continue
            if now >= next_retention or self._wake.is_set():
                self._wake.clear()
                last_retention = now
                try:
                    self._enforce()
                except Exception:  # noqa: BLE001 - keep running; the next pass retries
                    log.exception("retention pass failed")
                next_retention = time.monotonic() + self._retention_check_s
            if self._compaction_enabled and now >= next_compaction:
                try:
                    merged = self._compact_once()
                except Exception:  # noqa: BLE001
                    log.exception("compaction pass failed")
                    merged = False
                next_compaction = time.monotonic() + (self._pause_s if merged else self._idle_s)
            deadline = next_retention
            if self._compaction_enabled:
                deadline = min(deadline, next_compaction)
            self._wake.wait(max(0.0, deadline - time.monotonic()))
