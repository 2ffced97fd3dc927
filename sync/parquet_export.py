"""Cloud Parquet export: committed node segments -> Hive Parquet (measurement=/day=/part-<node>-<n>) on a
local dir or S3, tracked in the catalog; partitions with rows a later edge DELETE/DROP hid are rewritten."""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from storage.batch import TIME_COLUMN
from storage.compaction import merge_tables
from storage.fsio import fsync_dir
from storage.namespaces import split_data_key
from storage.segment_format import ORIGIN_COMPACTION, SegmentCorrupt, read_segment, time_array
from storage.segment_store import encode_dir_name
from sync.cloud_store import NODE_TAG, CloudSegment, CloudTableSource, _overlapping, conform
from sync.receiver import CommittedSegment

log = logging.getLogger(__name__)

DAY_NS = 86_400 * 10**9
_ABSENT_TAG = "\x00"  # stands for "series has no such tag" in (series, time) keys
_ROW_INDEX = "\x00row"
DATABASE_COLUMN = "database"
RETENTION_POLICY_COLUMN = "retention_policy"
LOCK_NAME = "parquet_export.lock"
MIGRATION = "parquet_export_v1"
MIGRATION_DELETES = "parquet_export_v2_deletes"
_MIGRATION_SQL = """
CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS parquet_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, database TEXT NOT NULL,
    measurement TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('writing', 'done')),
    files TEXT NOT NULL, rows INTEGER NOT NULL, started_ns INTEGER NOT NULL, finished_ns INTEGER
);
CREATE TABLE IF NOT EXISTS parquet_exported (
    node TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
    batch_id INTEGER NOT NULL REFERENCES parquet_batches(id),
    PRIMARY KEY (node, epoch, seq)
);
"""
_MIGRATION_DELETES_SQL = """
CREATE TABLE IF NOT EXISTS parquet_rewrites (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL CHECK (state IN ('writing', 'committed')),
    batch_ids TEXT NOT NULL, old_files TEXT NOT NULL, deletions TEXT NOT NULL,
    started_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS parquet_applied_deletions (
    node TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL, applied_ns INTEGER NOT NULL,
    PRIMARY KEY (node, epoch, seq)
);
"""
CrashHook = Callable[[str], None]
"""Called at each export stage: fault injection for tests. Batches: 'planned', 'written', 'moved';
partition rewrites: see REWRITE_STAGES."""
REWRITE_STAGES = ("rewrite-planned", "rewrite-written", "rewrite-moved", "rewrite-committed",
                  "rewrite-deleting", "rewrite-cleaned")
Key = tuple[str, str, int]
"""(node, epoch, seq) of a committed segment."""
Partition = tuple[str, str, str, int]
"""(node, database, measurement, day number): one node's files of one day partition."""


class ExportError(RuntimeError):
    """An export step failed (context: which batch, which file)."""


@dataclass
class ExportConfig:
    cloud_dir: Path
    root_uri: str  # local directory, file:///dir or s3://bucket/prefix?endpoint_override=...
    max_batch_bytes: int = 64 << 20  # segment bytes merged into one batch (bounds memory)
    max_batch_segments: int = 256
    compression: str = "zstd"


@dataclass
class ExportReport:
    batches: int = 0
    segments: int = 0
    rows: int = 0
    files: list[str] = field(default_factory=list)
    recovered_batches: int = 0
    skipped_segments: int = 0
    deletions_applied: int = 0
    rewritten_partitions: int = 0
    removed_files: list[str] = field(default_factory=list)


@dataclass
class CatalogSnapshot:
    """One export pass's fixed view of the cloud catalog: batches and rewrites of the pass use
    only these segments (a segment committed meanwhile waits for the next pass)."""

    segments: dict[Key, CloudSegment]  # every readable committed segment
    visible: list[CloudSegment]  # the query view
    hiders: dict[Key, list[CloudSegment]]  # hidden segment -> segments hiding it


def is_deletion(s: CloudSegment) -> bool:
    """A segment that removes rows from the view: DELETE rewrite / tombstone (a rewrite not
    from compaction; no origin recorded counts too) or DROP tombstone."""
    return bool(s.footer.drop) or (bool(s.footer.replaces) and s.footer.origin != ORIGIN_COMPACTION)


def key_of(s: CloudSegment) -> Key:
    return (s.node, s.committed.epoch, s.committed.seq)


def open_root(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem + base path for a root URI (plain paths are local directories)."""
    if "://" not in uri:
        uri = str(Path(uri).resolve())
        Path(uri).mkdir(parents=True, exist_ok=True)
    filesystem, base = pafs.FileSystem.from_uri(uri)
    return filesystem, base.rstrip("/")


def day_of(day_number: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day_number))).isoformat()


def with_namespace_columns(rows: pa.Table, key: str) -> pa.Table:
    """rows plus the `database` and `retention_policy` their namespace key (storage/namespaces.py) names."""
    database, policy = split_data_key(key)
    rows = rows.append_column(DATABASE_COLUMN, pa.array([database] * rows.num_rows, type=pa.string()))
    return rows.append_column(RETENTION_POLICY_COLUMN, pa.array([policy] * rows.num_rows, type=pa.string()))


def partition_dir(measurement: str, day: str) -> str:
    return f"measurement={encode_dir_name(measurement)}/day={day}"


def day_number_of(rel: str) -> int:
    """Day number of an exported file's relative path (measurement=../day=YYYY-MM-DD/..)."""
    part = rel.split("/")[1]
    if not part.startswith("day="):
        raise ExportError(f"exported file {rel!r} is not under a day= partition")
    return (dt.date.fromisoformat(part[4:]) - dt.date(1970, 1, 1)).days


def _segments_schema(segments: list[CloudSegment]) -> tuple[pa.Schema, list[str]]:
    """Reader-shape schema over these segments (time, their tags but `node`, their fields) and
    its tag keys."""
    types = CloudTableSource._field_types(segments)
    tags = sorted({k for s in segments for k in s.footer.tag_keys} - {NODE_TAG})
    schema = pa.schema([pa.field(TIME_COLUMN, pa.timestamp("ns"), nullable=False)]
                       + [pa.field(k, pa.string()) for k in tags]
                       + [pa.field(f, t.arrow_type) for f, t in types.items()])
    return schema, tags


class ParquetExporter:
    """One exporter per cloud_dir (an exclusive lock file). Crash-safe protocol per batch:
    1. catalog: batch row 'writing' with the final file names (committed before any write);
    2. each file written under a hidden `.tmp` name, then moved to its final name;
    3. catalog, one transaction: segments -> parquet_exported, batch -> 'done'.
    A batch found 'writing' at the next run is rolled back (its files deleted, row removed) and
    its segments exported again: nothing is lost, nothing stays exported twice.

    After the batches, committed deletions (DELETE rewrites / tombstones, DROP tombstones) that
    hide exported rows are applied: the (node, database, measurement, day) partitions holding
    rows they removed are rewritten from the cloud view (see `apply_deletions`)."""

    def __init__(self, config: ExportConfig, crash_hook: CrashHook | None = None) -> None:
        self.config = config
        self.cloud_dir = Path(config.cloud_dir)
        self.source = CloudTableSource(self.cloud_dir)
        self.fs, self.base = open_root(config.root_uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.crash_hook = crash_hook
        self.counters: dict[str, int] = {"runs": 0, "batches": 0, "segments": 0, "rows": 0,
                                         "files": 0, "recovered_batches": 0, "errors": 0,
                                         "duplicate_rows_skipped": 0, "deletions_applied": 0,
                                         "rewritten_partitions": 0, "rewrite_files_removed": 0,
                                         "recovered_rewrites": 0}
        self.last_error: str | None = None
        self.last_run_ns = 0
        self._conn: sqlite3.Connection | None = None
        self._lock_fd = -1
        self._snapshot: CatalogSnapshot | None = None

    # ------------------------------------------------------------ catalog
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            path = self.cloud_dir / "catalog.sqlite"
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_MIGRATION_SQL)  # idempotent (IF NOT EXISTS), then recorded
            conn.execute("INSERT OR IGNORE INTO migrations VALUES (?, ?)", (MIGRATION, time.time_ns()))
            conn.executescript(_MIGRATION_DELETES_SQL)
            conn.execute("INSERT OR IGNORE INTO migrations VALUES (?, ?)",
                         (MIGRATION_DELETES, time.time_ns()))
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _take_lock(self) -> None:
        if self._lock_fd >= 0:
            return
        fd = os.open(self.cloud_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise ExportError(f"{self.cloud_dir}: another Parquet exporter is running") from exc
        self._lock_fd = fd

    def exported_keys(self) -> set[tuple[str, str, int]]:
        rows = self._db().execute("SELECT node, epoch, seq FROM parquet_exported").fetchall()
        return {(str(n), str(e), int(s)) for n, e, s in rows}

    def applied_keys(self) -> set[Key]:
        """Deletions whose effect on Parquet is committed."""
        rows = self._db().execute("SELECT node, epoch, seq FROM parquet_applied_deletions").fetchall()
        return {(str(n), str(e), int(s)) for n, e, s in rows}

    def take_snapshot(self) -> CatalogSnapshot:
        committed = self.source.committed()
        return CatalogSnapshot(self.source.described(committed), self.source.view(committed),
                               self.source.hidden_by(committed))

    def _snap(self) -> CatalogSnapshot:
        if self._snapshot is None:
            self._snapshot = self.take_snapshot()
        return self._snapshot

    def _in_parquet(self, key: Key, exported: set[Key], applied: set[Key]) -> bool:
        """Do Parquet files hold this segment's rows (those the view still shows)? Exported, and
        not hidden by a deletion already applied (its surviving rows are in a visible segment)."""
        return key in exported and not any(
            is_deletion(h) and key_of(h) in applied for h in self._snap().hiders.get(key, ()))

    def done_files(self) -> list[str]:
        """Final paths (relative to the root) of every committed batch's files."""
        out: list[str] = []
        for (files,) in self._db().execute("SELECT files FROM parquet_batches WHERE state='done'"):
            out.extend(json.loads(files))
        return sorted(out)

    # ------------------------------------------------------------ files
    def _full(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    @staticmethod
    def _tmp_of(rel: str) -> str:
        head, _, name = rel.rpartition("/")
        return f"{head}/.{name}.tmp"

    def _delete_file(self, rel: str) -> bool:
        """Delete a file and its `.tmp` if present; True if the file itself existed."""
        existed = False
        for candidate in (rel, self._tmp_of(rel)):
            full = self._full(candidate)
            if self.fs.get_file_info(full).type == pafs.FileType.File:
                existed = existed or candidate == rel
                self.fs.delete_file(full)
                if self.local:
                    fsync_dir(Path(full).parent)
        return existed

    def _write_file(self, rel: str, table: pa.Table) -> None:
        final, tmp = self._full(rel), self._full(self._tmp_of(rel))
        directory = final.rpartition("/")[0]
        self.fs.create_dir(directory, recursive=True)
        try:
            with self.fs.open_output_stream(tmp) as out:
                pq.write_table(table, out, compression=self.config.compression)
            if self.local:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except (OSError, pa.ArrowException) as exc:
            raise ExportError(f"writing Parquet file {tmp} failed: {exc}") from exc

    def _move_file(self, rel: str) -> None:
        final, tmp = self._full(rel), self._full(self._tmp_of(rel))
        try:
            self.fs.move(tmp, final)
        except (OSError, pa.ArrowException) as exc:
            raise ExportError(f"moving {tmp} to {final} failed: {exc}") from exc
        if self.local:
            directory = Path(final).parent
            fsync_dir(directory)
            fsync_dir(directory.parent)  # new day=/measurement= directories
            fsync_dir(directory.parent.parent)

    # ------------------------------------------------------------ export
    def recover(self) -> int:
        """Finish rewrites a crash left 'committed' (delete the superseded files), roll back
        batches left in 'writing' (delete their files, then the row) and rewrites left in
        'writing' (their batches are among those)."""
        db = self._db()
        for rewrite_id, old_files in db.execute(
                "SELECT id, old_files FROM parquet_rewrites WHERE state='committed'").fetchall():
            log.warning("parquet export: finishing committed rewrite %d (superseded files %s)",
                        rewrite_id, old_files)
            self._finish_rewrite(int(rewrite_id), json.loads(old_files))
            self.counters["recovered_rewrites"] += 1
        pending = db.execute("SELECT id, files FROM parquet_batches WHERE state='writing'").fetchall()
        for batch_id, files in pending:
            for rel in json.loads(files):
                self._delete_file(rel)
            db.execute("DELETE FROM parquet_batches WHERE id=? AND state='writing'", (batch_id,))
            log.warning("parquet export: rolled back unfinished batch %d (%s)", batch_id, files)
        rolled = db.execute("DELETE FROM parquet_rewrites WHERE state='writing'").rowcount
        if rolled:
            log.warning("parquet export: rolled back %d unfinished partition rewrite(s)", rolled)
            self.counters["recovered_rewrites"] += rolled
        self.counters["recovered_batches"] += len(pending)
        return len(pending)

    def plan(self) -> tuple[list[list[CloudSegment]], list[CloudSegment]]:
        """Batches of unexported visible segments (one node, database, measurement each), and the
        compaction outputs whose inputs were all exported already (recorded, not re-exported)."""
        exported = self.exported_keys()
        groups: dict[tuple[str, str, str], list[CloudSegment]] = {}
        already: list[CloudSegment] = []
        for s in self._snap().visible:
            c = s.committed
            if (c.node, c.epoch, c.seq) in exported:
                continue
            if s.footer.replaces and all((c.node, c.epoch, r) in exported for r in s.footer.replaces):
                already.append(s)
                continue
            groups.setdefault((c.node, c.database, c.measurement), []).append(s)
        batches: list[list[CloudSegment]] = []
        for members in groups.values():
            members.sort(key=lambda s: s.order)
            batch: list[CloudSegment] = []
            size = 0
            for s in members:
                if batch and (size + s.committed.size > self.config.max_batch_bytes
                              or len(batch) >= self.config.max_batch_segments):
                    batches.append(batch)
                    batch, size = [], 0
                batch.append(s)
                size += s.committed.size
            if batch:
                batches.append(batch)
        return batches, already

    def _rows_of(self, batch: list[CloudSegment]) -> pa.Table | None:
        first = batch[0].committed
        schema, tags = _segments_schema(batch)
        tables = []
        for s in batch:
            try:
                tables.append(conform(read_segment(s.committed.path), schema))
            except (SegmentCorrupt, OSError) as exc:
                raise ExportError(f"segment node={s.node} seq={s.committed.seq} "
                                  f"({s.committed.path}) unreadable: {exc}") from exc
        if len(tables) > 1 and _overlapping(batch):
            rows = merge_tables(tables, first.measurement, tags)
        else:
            rows = pa.concat_tables(tables).combine_chunks()
        rows = self._drop_already_exported(batch, rows, tags)
        if rows.num_rows == 0:
            return None
        rows = rows.append_column(NODE_TAG, pa.array([first.node] * rows.num_rows, type=pa.string()))
        return with_namespace_columns(rows, first.database)

    def _exported_overlapping(self, batch: list[CloudSegment]) -> list[CommittedSegment]:
        """Segments of the batch's node, database and measurement whose rows Parquet holds
        (exported; visible, or hidden by a compaction or a deletion not applied yet) and whose
        time range meets the batch's."""
        first = batch[0].committed
        lo = min(s.committed.min_time_ns for s in batch)
        hi = max(s.committed.max_time_ns for s in batch)
        exported, applied = self.exported_keys(), self.applied_keys()
        return [s.committed for key, s in self._snap().segments.items()
                if s.node == first.node and s.committed.database == first.database
                and s.committed.measurement == first.measurement and s.committed.min_time_ns <= hi
                and s.committed.max_time_ns >= lo and self._in_parquet(key, exported, applied)]

    def _drop_already_exported(self, batch: list[CloudSegment], rows: pa.Table,
                               tags: list[str]) -> pa.Table:
        """Rows whose (series, time) an earlier batch of the same node exported are left out:
        an edge re-flushing rows it already shipped under another seq (orphan segments of an
        interrupted flush are deleted at the edge and their rows sealed again), or a compaction
        output some of whose inputs were exported, never puts a point into Parquet twice."""
        if rows.num_rows == 0:
            return rows
        earlier = self._exported_overlapping(batch)
        if not earlier:
            return rows
        lo, hi = int(time_array(rows).min()), int(time_array(rows).max())
        seen: list[pa.Table] = []
        for c in earlier:
            try:
                table = read_segment(c.path, columns=tags, start_ns=lo, end_ns=hi + 1)
            except (SegmentCorrupt, OSError) as exc:
                raise ExportError(f"exported segment node={c.node} seq={c.seq} ({c.path}) "
                                  f"unreadable while checking for duplicates: {exc}") from exc
            if table.num_rows:
                seen.append(_series_time_keys(table, tags))
        if not seen:
            return rows
        keys = _series_time_keys(rows, tags)
        keys = keys.append_column(_ROW_INDEX, pa.array(np.arange(rows.num_rows, dtype=np.int64)))
        fresh = keys.join(pa.concat_tables(seen).group_by(keys.column_names[:-1]).aggregate([]),
                          keys=keys.column_names[:-1], join_type="left anti")
        keep = np.sort(fresh.column(_ROW_INDEX).to_numpy())
        dropped = rows.num_rows - len(keep)
        if dropped:
            log.info("parquet export node=%s %s.%s: %d rows already exported under other seqs "
                     "left out", batch[0].node, batch[0].committed.database,
                     batch[0].committed.measurement, dropped)
            self.counters["duplicate_rows_skipped"] += dropped
        return rows.take(pa.array(keep, type=pa.int64()))

    def _crash_point(self, stage: str) -> None:
        if self.crash_hook is not None:
            self.crash_hook(stage)

    def export_batch(self, batch: list[CloudSegment]) -> tuple[int, list[str]]:
        """Export one batch (see the class doc); returns (rows, files written)."""
        db = self._db()
        first = batch[0].committed
        rows = self._rows_of(batch)
        days: list[tuple[str, pa.Table]] = []
        if rows is not None:
            day_numbers = time_array(rows) // DAY_NS
            for day in np.unique(day_numbers):
                mask = pa.array(day_numbers == day)
                days.append((day_of(int(day)), rows.filter(mask)))
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute("INSERT INTO parquet_batches (node, database, measurement, state, files,"
                             " rows, started_ns) VALUES (?, ?, ?, 'writing', '[]', ?, ?)",
                             (first.node, first.database, first.measurement,
                              0 if rows is None else rows.num_rows, time.time_ns()))
            batch_id = int(cur.lastrowid or 0)
            files = [f"{partition_dir(first.measurement, day)}/part-{first.node}-{batch_id}.parquet"
                     for day, _ in days]
            db.execute("UPDATE parquet_batches SET files=? WHERE id=?", (json.dumps(files), batch_id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._crash_point("planned")
        for rel, (_, table) in zip(files, days, strict=True):
            self._write_file(rel, table)
        self._crash_point("written")
        for rel in files:
            self._move_file(rel)
        self._crash_point("moved")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO parquet_exported VALUES (?, ?, ?, ?)",
                           [(s.node, s.committed.epoch, s.committed.seq, batch_id) for s in batch])
            db.execute("UPDATE parquet_batches SET state='done', finished_ns=? WHERE id=?",
                       (time.time_ns(), batch_id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return (0 if rows is None else rows.num_rows), files

    def export_once(self) -> ExportReport:
        """Roll back unfinished batches, then export every committed, unexported segment."""
        self._take_lock()
        report = ExportReport()
        self.counters["runs"] += 1
        try:
            report.recovered_batches = self.recover()
            self._snapshot = self.take_snapshot()
            batches, already = self.plan()
            if already:
                self._record_covered(already)
                report.skipped_segments = len(already)
            for batch in batches:
                rows, files = self.export_batch(batch)
                report.batches += 1
                report.segments += len(batch)
                report.rows += rows
                report.files.extend(files)
            self.apply_deletions(report)
            self.last_error = None
        except Exception as exc:
            self.counters["errors"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._snapshot = None
            self.last_run_ns = time.time_ns()
            for key, value in (("batches", report.batches), ("segments", report.segments),
                               ("rows", report.rows), ("files", len(report.files))):
                self.counters[key] += value
        return report

    def _record_covered(self, segments: list[CloudSegment]) -> None:
        """Compaction outputs whose every input is exported: mark them exported (batch of 0 files)."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            for s in segments:
                cur = db.execute("INSERT INTO parquet_batches (node, database, measurement, state,"
                                 " files, rows, started_ns, finished_ns) VALUES (?, ?, ?, 'done',"
                                 " '[]', 0, ?, ?)", (s.node, s.committed.database,
                                                     s.committed.measurement, time.time_ns(),
                                                     time.time_ns()))
                db.execute("INSERT INTO parquet_exported VALUES (?, ?, ?, ?)",
                           (s.node, s.committed.epoch, s.committed.seq, int(cur.lastrowid or 0)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------ deletions
    def pending_deletions(self) -> list[CloudSegment]:
        """Deletion segments of the snapshot whose effect on Parquet is not committed. Visible or
        not: a DELETE rewrite compacted before it was exported hides rows only through itself."""
        applied = self.applied_keys()
        return [s for key, s in self._snap().segments.items() if is_deletion(s) and key not in applied]

    def affected_partitions(self, deletions: list[CloudSegment]) -> set[Partition]:
        """(node, database, measurement, day) partitions with exported files that hold rows
        these deletions removed: days of the rows of in-Parquet segments they hide, minus (for
        a DELETE rewrite) the rows it kept."""
        snap = self._snap()
        exported, applied = self.exported_keys(), self.applied_keys()
        hides: dict[Key, list[CloudSegment]] = {}
        for key, hiders in snap.hiders.items():
            for h in hiders:
                if key in snap.segments:  # a replaced seq the cloud never received: nothing
                    hides.setdefault(key_of(h), []).append(snap.segments[key])
        file_days = set(self._files_by_partition())
        out: set[Partition] = set()
        for d in deletions:
            hidden = [s for s in hides.get(key_of(d), [])
                      if s.committed.rows and self._in_parquet(key_of(s), exported, applied)]
            by_scope: dict[tuple[str, str], list[CloudSegment]] = {}
            for s in hidden:
                by_scope.setdefault((s.committed.database, s.committed.measurement), []).append(s)
            for (database, measurement), members in by_scope.items():
                kept = d if d.committed.rows and d.committed.measurement == measurement else None
                for day in self._removed_days(members, kept):
                    part = (d.node, database, measurement, day)
                    if part in file_days:
                        out.add(part)
        return out

    def _removed_days(self, hidden: list[CloudSegment], kept: CloudSegment | None) -> set[int]:
        """Days of the rows of `hidden` that are not in `kept` (a DELETE rewrite; None: all)."""
        lo = min(s.committed.min_time_ns for s in hidden) // DAY_NS
        hi = max(s.committed.max_time_ns for s in hidden) // DAY_NS
        if lo == hi:  # one day: no need to read (a rewrite removed at least one row)
            return {int(lo)}
        tags = sorted({k for s in [*hidden, *([kept] if kept else [])] for k in s.footer.tag_keys})
        keys: list[pa.Table] = []
        for s in hidden:
            try:
                table = read_segment(s.committed.path, columns=tags if kept else [])
            except (SegmentCorrupt, OSError) as exc:
                raise ExportError(f"segment node={s.node} seq={s.committed.seq} "
                                  f"({s.committed.path}) unreadable while applying a deletion: "
                                  f"{exc}") from exc
            if kept is None:
                keys.append(pa.table({"\x00time": pa.array(time_array(table), type=pa.int64())}))
            else:
                keys.append(_series_time_keys(table, tags))
        removed = pa.concat_tables(keys)
        if kept is not None:
            try:
                kept_keys = _series_time_keys(read_segment(kept.committed.path, columns=tags), tags)
            except (SegmentCorrupt, OSError) as exc:
                raise ExportError(f"DELETE rewrite node={kept.node} seq={kept.committed.seq} "
                                  f"({kept.committed.path}) unreadable: {exc}") from exc
            removed = removed.join(kept_keys.group_by(kept_keys.column_names).aggregate([]),
                                   keys=removed.column_names, join_type="left anti")
        times = removed.column("\x00time").to_numpy()
        return {int(day) for day in np.unique(times // DAY_NS)}

    def _files_by_partition(self) -> dict[Partition, list[str]]:
        """Every committed exported file, by (node, database, measurement, day)."""
        out: dict[Partition, list[str]] = {}
        for node, database, measurement, files in self._db().execute(
                "SELECT node, database, measurement, files FROM parquet_batches WHERE state='done'"):
            for rel in json.loads(files):
                out.setdefault((node, database, measurement, day_number_of(rel)), []).append(rel)
        return out

    def apply_deletions(self, report: ExportReport | None = None) -> int:
        """Apply every pending deletion: rewrite the partitions it touched from the cloud view
        (this pass's snapshot; every visible segment of it is exported by now). Crash-safe order:
        1. catalog: rewrite row 'writing' + one 'writing' batch per (node, db, measurement) with
           the new file names (a crash from here to 4 rolls the new files back: `recover`);
        2. new files written under `.tmp` names, fsynced; 3. moved to their final names;
        4. catalog, one transaction: new batches 'done', superseded files dropped from their
           batches, deletions marked applied, rewrite 'committed';
        5. superseded files deleted, empty partition directories removed (a crash here: `recover`
           deletes them again); 6. rewrite row deleted. Returns the deletions applied."""
        report = report if report is not None else ExportReport()
        deletions = self.pending_deletions()
        if not deletions:
            return 0
        partitions = self.affected_partitions(deletions)
        if not partitions:
            self._mark_applied(deletions)
        else:
            self._rewrite(sorted(partitions), deletions, report)
        self.counters["deletions_applied"] += len(deletions)
        report.deletions_applied += len(deletions)
        return len(deletions)

    def _mark_applied(self, deletions: list[CloudSegment]) -> None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR IGNORE INTO parquet_applied_deletions VALUES (?, ?, ?, ?)",
                           [(*key_of(d), time.time_ns()) for d in deletions])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _rewrite(self, partitions: list[Partition], deletions: list[CloudSegment],
                 report: ExportReport) -> None:
        db = self._db()
        current = self._files_by_partition()
        old_files = sorted(rel for p in partitions for rel in current.get(p, []))
        groups: dict[tuple[str, str, str], list[int]] = {}
        for node, database, measurement, day in partitions:
            groups.setdefault((node, database, measurement), []).append(day)
        planned: dict[tuple[str, str, str], tuple[int, list[tuple[int, str]]]] = {}
        db.execute("BEGIN IMMEDIATE")
        try:
            for (node, database, measurement), days in groups.items():
                cur = db.execute("INSERT INTO parquet_batches (node, database, measurement, state,"
                                 " files, rows, started_ns) VALUES (?, ?, ?, 'writing', '[]', 0, ?)",
                                 (node, database, measurement, time.time_ns()))
                batch_id = int(cur.lastrowid or 0)
                names = [(day, f"{partition_dir(measurement, day_of(day))}/part-{node}-{batch_id}.parquet")
                         for day in days]
                db.execute("UPDATE parquet_batches SET files=? WHERE id=?",
                           (json.dumps([rel for _d, rel in names]), batch_id))
                planned[(node, database, measurement)] = (batch_id, names)
            cur = db.execute("INSERT INTO parquet_rewrites (state, batch_ids, old_files, deletions,"
                             " started_ns) VALUES ('writing', ?, ?, ?, ?)",
                             (json.dumps(sorted(b for b, _n in planned.values())),
                              json.dumps(old_files), json.dumps([key_of(d) for d in deletions]),
                              time.time_ns()))
            rewrite_id = int(cur.lastrowid or 0)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._crash_point("rewrite-planned")
        exported = self.exported_keys()
        written: dict[int, tuple[list[str], int]] = {}
        for (node, database, measurement), (batch_id, names) in planned.items():
            members = sorted((s for s in self._snap().visible
                              if s.node == node and s.committed.database == database
                              and s.committed.measurement == measurement and key_of(s) in exported),
                             key=lambda s: s.order)
            files, rows = [], 0
            for day, rel in names:
                table = self._view_rows(members, day * DAY_NS, (day + 1) * DAY_NS)
                if table is not None:
                    self._write_file(rel, table)
                    files.append(rel)
                    rows += table.num_rows
            written[batch_id] = (files, rows)
        self._crash_point("rewrite-written")
        for files, _rows in written.values():
            for rel in files:
                self._move_file(rel)
        self._crash_point("rewrite-moved")
        superseded = set(old_files)
        db.execute("BEGIN IMMEDIATE")
        try:
            for batch_id, (files, rows) in written.items():
                db.execute("UPDATE parquet_batches SET files=?, rows=?, state='done', finished_ns=?"
                           " WHERE id=?", (json.dumps(files), rows, time.time_ns(), batch_id))
            for batch_id, files in db.execute(
                    "SELECT id, files FROM parquet_batches WHERE state='done'").fetchall():
                names_now = json.loads(files)
                kept = [rel for rel in names_now if rel not in superseded]
                if len(kept) != len(names_now):
                    db.execute("UPDATE parquet_batches SET files=? WHERE id=?",
                               (json.dumps(kept), batch_id))
            db.executemany("INSERT OR IGNORE INTO parquet_applied_deletions VALUES (?, ?, ?, ?)",
                           [(*key_of(d), time.time_ns()) for d in deletions])
            db.execute("UPDATE parquet_rewrites SET state='committed' WHERE id=?", (rewrite_id,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._crash_point("rewrite-committed")
        self._finish_rewrite(rewrite_id, old_files)
        log.info("parquet export: %d deletion(s) applied, %d partition(s) rewritten (%d files "
                 "replaced by %d)", len(deletions), len(partitions), len(old_files),
                 sum(len(files) for files, _rows in written.values()))
        report.rewritten_partitions += len(partitions)
        report.removed_files.extend(old_files)
        report.files.extend(rel for files, _rows in written.values() for rel in files)
        self.counters["rewritten_partitions"] += len(partitions)

    def _finish_rewrite(self, rewrite_id: int, old_files: list[str]) -> None:
        """Delete a committed rewrite's superseded files (idempotent), drop partition
        directories left empty, then the rewrite row."""
        for i, rel in enumerate(old_files):
            self.counters["rewrite_files_removed"] += self._delete_file(rel)
            if i == 0:
                self._crash_point("rewrite-deleting")
        for directory in sorted({rel.rpartition("/")[0] for rel in old_files}):
            self._remove_if_empty(directory)
            self._remove_if_empty(directory.rpartition("/")[0])
        self._crash_point("rewrite-cleaned")
        db = self._db()
        db.execute("DELETE FROM parquet_rewrites WHERE id=?", (rewrite_id,))

    def _remove_if_empty(self, rel_dir: str) -> None:
        full = self._full(rel_dir)
        try:
            if self.fs.get_file_info(full).type != pafs.FileType.Directory:
                return
            if self.fs.get_file_info(pafs.FileSelector(full, allow_not_found=True)):
                return
            self.fs.delete_dir(full)
        except (OSError, pa.ArrowException) as exc:
            raise ExportError(f"removing empty partition directory {full} failed: {exc}") from exc
        if self.local:
            fsync_dir(Path(full).parent)

    def _view_rows(self, members: list[CloudSegment], start_ns: int, end_ns: int) -> pa.Table | None:
        """Rows of one node's visible segments (precedence order) in [start_ns, end_ns), as the
        cloud view merges them, in export shape (+ node, database); None when there are none."""
        members = [s for s in members
                   if s.committed.max_time_ns >= start_ns and s.committed.min_time_ns < end_ns]
        if not members:
            return None
        first = members[0].committed
        schema, tags = _segments_schema(members)
        tables: list[pa.Table] = []
        read: list[CloudSegment] = []
        for s in members:
            try:
                table = read_segment(s.committed.path, start_ns=start_ns, end_ns=end_ns)
            except (SegmentCorrupt, OSError) as exc:
                raise ExportError(f"segment node={s.node} seq={s.committed.seq} "
                                  f"({s.committed.path}) unreadable while rewriting: {exc}") from exc
            if table.num_rows:
                tables.append(conform(table, schema))
                read.append(s)
        if not tables:
            return None
        if len(tables) > 1 and _overlapping(read):
            rows = merge_tables(tables, first.measurement, tags)
        else:
            rows = pa.concat_tables(tables).combine_chunks()
        rows = rows.append_column(NODE_TAG, pa.array([first.node] * rows.num_rows, type=pa.string()))
        return with_namespace_columns(rows, first.database)

    def status(self) -> dict[str, Any]:
        return {"root": self.config.root_uri, **self.counters, "last_error": self.last_error,
                "last_run_ns": self.last_run_ns}


def _series_time_keys(table: pa.Table, tags: list[str]) -> pa.Table:
    """(time as int64, every tag with absent = _ABSENT_TAG): a join key for one series point."""
    columns = {"\x00time": pa.array(time_array(table), type=pa.int64())}
    for i, key in enumerate(tags):
        if key in table.column_names:
            col = table.column(key).combine_chunks().cast(pa.string()).fill_null(_ABSENT_TAG)
        else:
            col = pa.nulls(table.num_rows, pa.string()).fill_null(_ABSENT_TAG)
        columns[f"\x00tag{i}"] = col
    return pa.table(columns)


def _kill_self_at(stage_wanted: str) -> CrashHook:
    def hook(stage: str) -> None:
        if stage == stage_wanted:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export committed cloud segments to Parquet once.")
    parser.add_argument("--cloud-dir", required=True, type=Path)
    parser.add_argument("--root", required=True, help="Parquet root: directory or URI (s3://...).")
    parser.add_argument("--max-batch-segments", type=int, default=256)
    parser.add_argument("--kill-self-at", choices=["planned", "written", "moved", *REWRITE_STAGES],
                        default=None, help="Fault injection: SIGKILL this process at that stage of "
                        "the first batch or partition rewrite.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    exporter = ParquetExporter(
        ExportConfig(args.cloud_dir, args.root, max_batch_segments=args.max_batch_segments),
        crash_hook=_kill_self_at(args.kill_self_at) if args.kill_self_at else None)
    try:
        report = exporter.export_once()
    finally:
        exporter.close()
    print(json.dumps({"batches": report.batches, "segments": report.segments, "rows": report.rows,
                      "files": report.files, "recovered_batches": report.recovered_batches,
                      "deletions_applied": report.deletions_applied,
                      "rewritten_partitions": report.rewritten_partitions,
                      "removed_files": report.removed_files}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
