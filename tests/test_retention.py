"""Retention: by duration, by disk budget (oldest first), and the unsynced guard's two policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from storage.retention import RetentionEnforcer
from storage.segment_format import SegmentInfo
from storage.segment_store import SegmentStore

HOUR = 3600 * 10**9


def hour_table(hour: int, rows: int = 50) -> pa.Table:
    times = hour * HOUR + np.arange(rows, dtype=np.int64) * 10**9
    return pa.table({"time": pa.array(times, type=pa.timestamp("ns")), "host": ["h"] * rows,
                     "v": pa.array(np.arange(rows, dtype=np.float64) * hour)})


def filled_store(tmp_path: Path, hours: list[int], db: str = "db") -> tuple[SegmentStore, list[SegmentInfo]]:
    store = SegmentStore(tmp_path)
    store.open()
    return store, [store.seal(db, "cpu", hour_table(h), tag_keys=["host"]) for h in hours]


def test_drop_by_duration_per_database(tmp_path: Path) -> None:
    store, infos = filled_store(tmp_path, [0, 1, 2, 3])
    keep = store.seal("forever", "cpu", hour_table(0), tag_keys=["host"])
    enforcer = RetentionEnforcer(store, durations={"db": 2 * HOUR, "forever": 0})
    now = 4 * HOUR
    report = enforcer.enforce(now)
    # max_time of hour h is h*HOUR + 49 s: hours 0 and 1 end before now - 2h
    assert report.dropped_expired == [infos[0].seq, infos[1].seq]
    assert [i.seq for i in store.segments()] == [infos[2].seq, infos[3].seq, keep.seq]
    assert not infos[0].path.exists()
    assert enforcer.dropped_segments == 2 and enforcer.dropped_bytes == infos[0].size + infos[1].size
    assert enforcer.enforce(now).dropped_expired == []


def test_disk_budget_drops_oldest_first(tmp_path: Path) -> None:
    store, infos = filled_store(tmp_path, [5, 1, 3, 2])
    budget = infos[0].size + infos[2].size + 1  # room for about two segments
    enforcer = RetentionEnforcer(store, disk_budget_bytes=budget)
    report = enforcer.enforce(10 * HOUR)
    assert report.dropped_for_budget == [infos[1].seq, infos[3].seq]  # hours 1 and 2
    assert store.disk_bytes() <= budget
    assert not enforcer.over_budget() and not report.over_budget


def test_unsynced_block_policy_reports_budget_full(tmp_path: Path) -> None:
    store, infos = filled_store(tmp_path, [0, 1, 2])
    acked = {infos[1].seq}

    def is_acked(info: SegmentInfo) -> bool:
        return info.seq in acked

    store.set_delete_guard(is_acked)
    enforcer = RetentionEnforcer(store, disk_budget_bytes=infos[0].size, unsynced_policy="block",
                                 durations={"db": HOUR})
    report = enforcer.enforce(3 * HOUR)
    assert infos[1].seq in report.dropped_for_budget + report.dropped_expired
    assert infos[0].seq in report.blocked_unsynced and infos[0].path.exists()
    assert report.dropped_unsynced == [] and enforcer.dropped_unsynced == 0
    assert report.over_budget and enforcer.over_budget()
    acked.update({infos[0].seq, infos[2].seq})  # sync caught up
    report = enforcer.enforce(3 * HOUR)
    assert not enforcer.over_budget() and store.disk_bytes() <= infos[0].size


def test_unsynced_drop_oldest_policy_counts(tmp_path: Path) -> None:
    store, infos = filled_store(tmp_path, [0, 1, 2])

    def never_acked(info: SegmentInfo) -> bool:
        return False

    store.set_delete_guard(never_acked)
    enforcer = RetentionEnforcer(store, disk_budget_bytes=infos[2].size, unsynced_policy="drop_oldest")
    report = enforcer.enforce(3 * HOUR)
    assert report.dropped_unsynced == [infos[0].seq, infos[1].seq]
    assert enforcer.dropped_unsynced == 2 and not enforcer.over_budget()
    assert [i.seq for i in store.segments()] == [infos[2].seq]
    assert not store.delete(infos[2], "plain delete still honours the guard")
