"""Compaction: merge small segments of one (database, measurement, time window) into one, newest
data winning per field on duplicate (series, time); bounded, crash-safe, in a background thread."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from storage.batch import TIME_COLUMN
from storage.segment_format import (
    ORIGIN_COMPACTION,
    SegmentCorrupt,
    SegmentInfo,
    read_segment,
    series_order,
    time_array,
)
from storage.segment_store import SegmentStore

log = logging.getLogger("edgets.storage.compaction")

DAY_NS = 86_400 * 10**9


@dataclass
class CompactionPolicy:
    window_ns: int = DAY_NS  # segments are grouped by floor(min_time / window)
    small_segment_bytes: int = 16 << 20  # only segments smaller than this are merged
    max_input_bytes: int = 64 << 20  # file bytes read per merge (bounds memory)
    max_input_rows: int = 8_000_000  # decoded rows per merge (bounds memory)
    min_inputs: int = 2
    pause_s: float = 1.0  # pause between merges in the background thread (bounds CPU)
    idle_s: float = 30.0  # pause when there was nothing to merge


def merge_tables(tables: list[pa.Table], measurement: str, tag_keys: list[str]) -> pa.Table:
    """Concatenate reader-shape tables given in precedence order (oldest first) and resolve duplicate (series, time)
    rows: per field the newest non-null value wins. Result sorted by (series key, time)."""
    merged = pa.concat_tables(tables, promote_options="default").combine_chunks()
    times = time_array(merged)
    so = series_order(merged, measurement, tag_keys, times)
    order = so.order  # stable: older rows first inside a (series, time) group
    st, ss = times[order], so.series_id[order]
    n = len(order)
    if n == 0:
        return merged
    new_group = np.ones(n, dtype=np.bool_)
    new_group[1:] = (st[1:] != st[:-1]) | (ss[1:] != ss[:-1])
    starts = np.flatnonzero(new_group)
    first_rows = pa.array(order[starts], type=pa.int64())
    if len(starts) == n:
        if bool(np.all(order[1:] > order[:-1])):
            return merged  # already sorted and duplicate-free (e.g. one segment): no take
        return merged.take(pa.array(order, type=pa.int64()))
    arrays: list[pa.Array] = []
    for name in merged.column_names:
        col = merged.column(name)
        if name == TIME_COLUMN or name in tag_keys:
            arrays.append(col.take(first_rows).combine_chunks())
            continue
        col = col.take(pa.array(order, type=pa.int64())).combine_chunks()
        valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
        pos = np.where(valid, np.arange(n, dtype=np.int64), -1)
        last = np.maximum.reduceat(pos, starts)
        arrays.append(col.take(pa.array(last, mask=last < 0, type=pa.int64())))
    return pa.Table.from_arrays(arrays, names=merged.column_names)


class Compactor:
    """Plans and runs merges on a SegmentStore; only segments the delete guard allows deleting
    (already synced) are merged, so no unsynced segment ever disappears into a merge."""

    def __init__(self, store: SegmentStore, policy: CompactionPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or CompactionPolicy()
        self.merges = 0
        self.merged_inputs = 0
        self._skip: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def plan(self) -> list[list[SegmentInfo]]:
        """Merges to run: each a run of small, deletable segments of one (db, measurement,
        window), consecutive in precedence except for segments that overlap none of them in
        time (so "newest wins" between the merged data and any other segment is unchanged).
        Zero-row tombstones are never merged (they leave by retention once synced)."""
        p = self.policy
        by_measurement: dict[tuple[str, str], list[SegmentInfo]] = {}
        for info in self.store.segments():
            if info.rows == 0:
                continue  # tombstones: nothing to merge, and no row they could be ordered against
            by_measurement.setdefault((info.database, info.measurement), []).append(info)
        plans: list[list[SegmentInfo]] = []
        for infos in by_measurement.values():
            infos.sort(key=lambda i: i.precedence)
            windows: dict[int, list[SegmentInfo]] = {}
            for info in infos:
                if (info.size < p.small_segment_bytes and info.seq not in self._skip
                        and self.store.may_delete(info)):
                    windows.setdefault(info.min_time_ns // p.window_ns, []).append(info)
            for members in windows.values():
                plans.extend(self._runs(members, infos))
        return plans

    def _runs(self, members: list[SegmentInfo], everything: list[SegmentInfo]) -> list[list[SegmentInfo]]:
        p = self.policy
        runs: list[list[SegmentInfo]] = []
        run: list[SegmentInfo] = []
        size = rows = 0
        for info in members:
            if run:
                lo = min(min(i.min_time_ns for i in run), info.min_time_ns)
                hi = max(max(i.max_time_ns for i in run), info.max_time_ns)
                in_run = {i.seq for i in run}
                blocked = any(o.seq not in in_run and run[0].precedence < o.precedence < info.precedence
                              and o.min_time_ns <= hi and o.max_time_ns >= lo for o in everything)
                if blocked or size + info.size > p.max_input_bytes or rows + info.rows > p.max_input_rows:
                    if len(run) >= p.min_inputs:
                        runs.append(run)
                    run, size, rows = [], 0, 0
            run.append(info)
            size += info.size
            rows += info.rows
        if len(run) >= p.min_inputs:
            runs.append(run)
        return runs

    def compact(self, inputs: list[SegmentInfo]) -> SegmentInfo | None:
        """Merge `inputs` (one db/measurement) into a new segment, then delete the inputs.

        Crash-safe: the merged segment (footer `replaces` = input seqs, transitively) is durable
        before any input is deleted; SegmentStore hides replaced inputs and removes them on open.
        """
        inputs = sorted(inputs, key=lambda i: i.precedence)
        db, measurement = inputs[0].database, inputs[0].measurement
        try:
            tables = [read_segment(i.path) for i in inputs]
        except (SegmentCorrupt, FileNotFoundError) as exc:
            log.error("compaction of %s.%s skipped: %s", db, measurement, exc)
            self._skip.update(i.seq for i in inputs)
            return None
        tag_keys = sorted({k for i in inputs for k in i.tag_keys})
        try:
            merged = merge_tables(tables, measurement, tag_keys)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            log.error("compaction of %s.%s seqs %s skipped (incompatible schemas): %s",
                      db, measurement, [i.seq for i in inputs], exc)
            self._skip.update(i.seq for i in inputs)
            return None
        replaces = sorted({i.seq for i in inputs} | {s for i in inputs for s in i.replaces})
        info = self.store.seal(db, measurement, merged, tag_keys=tag_keys, replaces=replaces,
                               precedence=max(i.precedence for i in inputs), origin=ORIGIN_COMPACTION)
        for old in inputs:
            self.store.delete(old, f"compacted into segment {info.seq}")
        self.merges += 1
        self.merged_inputs += len(inputs)
        log.info("compacted %d segments of %s.%s (%d bytes) into segment %d (%d bytes, %d rows)",
                 len(inputs), db, measurement, sum(i.size for i in inputs), info.seq, info.size, info.rows)
        return info

    def compact_once(self) -> SegmentInfo | None:
        """Run the first planned merge; None when there is nothing to merge."""
        for inputs in self.plan():
            info = self.compact(inputs)
            if info is not None:
                return info
        return None

    def run_until_idle(self) -> int:
        """Merge until the plan is empty (no pauses); returns the number of merges."""
        done = 0
        while self.compact_once() is not None:
            done += 1
        return done

    # ------------------------------------------------------------ background thread

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edgets-compaction", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                merged = self.compact_once()
            except Exception:  # noqa: BLE001 - keep the server running; the next pass retries
                log.exception("compaction pass failed")
                merged = None
            self._stop.wait(self.policy.pause_s if merged is not None else self.policy.idle_s)
