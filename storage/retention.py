"""Retention: drop segments past their database's duration and, oldest first, beyond a disk
budget; unsynced segments are blocked ("disk budget full") or dropped and counted, by policy."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from storage.segment_format import SegmentInfo
from storage.segment_store import SegmentStore

log = logging.getLogger("edgets.storage.retention")

UnsyncedPolicy = Literal["block", "drop_oldest"]


@dataclass
class RetentionReport:
    """What one enforce() pass did."""

    dropped_expired: list[int] = field(default_factory=list)
    dropped_for_budget: list[int] = field(default_factory=list)
    dropped_unsynced: list[int] = field(default_factory=list)
    blocked_unsynced: list[int] = field(default_factory=list)
    freed_bytes: int = 0
    disk_bytes: int = 0
    over_budget: bool = False


class RetentionEnforcer:
    """Applies per-database durations (0 = keep forever) and an optional store-wide disk budget.

    A segment the store's delete guard refuses (not yet synced) is never dropped silently:
    `unsynced_policy="block"` keeps it and, when that leaves the store over budget, over_budget()
    turns True (the engine refuses writes); `"drop_oldest"` drops it anyway, logged and counted in
    `dropped_unsynced`.
    """

    def __init__(self, store: SegmentStore, *,
                 durations: Mapping[str, int] | Callable[[str], int] | None = None,
                 disk_budget_bytes: int | None = None, unsynced_policy: UnsyncedPolicy = "block",
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        if unsynced_policy not in ("block", "drop_oldest"):
            raise ValueError(f"unsynced_policy must be 'block' or 'drop_oldest', got {unsynced_policy!r}")
        self.store = store
        self.durations = durations if durations is not None else {}
        self.disk_budget_bytes = disk_budget_bytes
        self.unsynced_policy: UnsyncedPolicy = unsynced_policy
        self.clock_ns = clock_ns
        self.dropped_segments = 0
        self.dropped_bytes = 0
        self.dropped_unsynced = 0
        self.blocked_unsynced = 0
        self._blocked = False

    def duration_ns(self, database: str) -> int:
        if callable(self.durations):
            return int(self.durations(database))
        return int(self.durations.get(database, 0))

    def over_budget(self) -> bool:
        """True while the store exceeds the disk budget and the last enforce() could not free
        enough because the remaining segments are not yet synced ("disk budget full")."""
        if self.disk_budget_bytes is None:
            return False
        return self._blocked and self.store.disk_bytes() > self.disk_budget_bytes

    def _drop(self, info: SegmentInfo, why: str, report: RetentionReport, bucket: list[int]) -> bool:
        synced = self.store.may_delete(info)
        if not synced and self.unsynced_policy == "block":
            log.warning("retention: keeping unsynced segment %d %s.%s (%s): unsynced_policy=block",
                        info.seq, info.database, info.measurement, why)
            report.blocked_unsynced.append(info.seq)
            self.blocked_unsynced += 1
            return False
        if not self.store.delete(info, f"retention: {why}", force=not synced):
            return False
        if not synced:
            log.warning("retention: DROPPED UNSYNCED segment %d %s.%s (%d bytes, %d rows): %s",
                        info.seq, info.database, info.measurement, info.size, info.rows, why)
            report.dropped_unsynced.append(info.seq)
            self.dropped_unsynced += 1
        else:
            log.info("retention: dropped segment %d %s.%s (%d bytes): %s",
                     info.seq, info.database, info.measurement, info.size, why)
        bucket.append(info.seq)
        report.freed_bytes += info.size
        self.dropped_segments += 1
        self.dropped_bytes += info.size
        return True

    def enforce(self, now_ns: int | None = None) -> RetentionReport:
        """One pass: expired segments first, then oldest (by max_time, then seq) over budget."""
        now = self.clock_ns() if now_ns is None else now_ns
        report = RetentionReport()
        for info in self.store.segments():
            duration = self.duration_ns(info.database)
            if duration > 0 and info.max_time_ns < now - duration:
                self._drop(info, f"older than the {duration} ns retention of {info.database!r}",
                           report, report.dropped_expired)
        blocked = False
        if self.disk_budget_bytes is not None:
            used = self.store.disk_bytes()
            for info in sorted(self.store.segments(), key=lambda i: (i.max_time_ns, i.seq)):
                if used <= self.disk_budget_bytes:
                    break
                if self._drop(info, f"disk budget {self.disk_budget_bytes} bytes exceeded ({used} used)",
                              report, report.dropped_for_budget):
                    used -= info.size
            blocked = used > self.disk_budget_bytes
        self._blocked = blocked
        report.disk_bytes = self.store.disk_bytes()
        report.over_budget = self.over_budget()
        if report.over_budget:
            log.error("retention: disk budget full: %d bytes used, budget %d, remaining segments "
                      "are not yet synced (unsynced_policy=block)", report.disk_bytes, self.disk_budget_bytes)
        return report
