"""StorageEngine: the facade ingest/query/sync use. Validates writes against the catalog, logs them
through the group-commit WAL, buffers them, flushes them to segments, reads both; recovery on open()."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.batch import TIME_COLUMN, Batch, FieldType, TagSet, series_key
from storage.buffer import (
    FrozenMeasurement,
    WriteBuffer,
    assemble,
    assemble_runs,
    assemble_series,
    empty_table,
    select_numeric,
)
from storage.catalog import (
    Catalog,
    DatabaseEntry,
    MeasurementSchema,
    RetentionPolicy,
    default_shard_group_duration,
)
from storage.compaction import CompactionPolicy, Compactor, merge_tables
from storage.flusher import FlushPolicy, FlushThread, MaintenanceThread
from storage.fsio import CorruptFileError, quarantine, tree_bytes
from storage.last_values import LastValueCache
from storage.namespaces import (
    DEFAULT_RP,
    data_key,
    invalid_name,
    is_policy_key,
    keys_of_database,
    split_data_key,
)
from storage.retention import RetentionEnforcer, RetentionReport
from storage.segment_format import (
    DROP_SCOPE_DATABASE,
    DROP_SCOPE_MEASUREMENT,
    ORIGIN_DELETE,
    ORIGIN_DROP,
    FieldCondition,
    SegmentCorrupt,
    SegmentInfo,
    SegmentRows,
    condition_mask,
    output_schema,
    read_segment,
    series_order,
    time_array,
)
from storage.segment_store import SegmentStore
from storage.wal import (
    FILE_HEADER_BYTES,
    FsyncPolicy,
    GroupCommitter,
    PendingRecord,
    RecordType,
    WalClosed,
    WalRecord,
    WalWriter,
    compress_payload,
    recover,
    wal_file_name,
)

log = logging.getLogger("edgets.storage")

__all__ = [
    "DEFAULT_RP",
    "DatabaseNotFound",
    "FrozenMeasurement",
    "Overloaded",
    "RecoveryReport",
    "RetentionPolicy",
    "RetentionPolicyNotFound",
    "StorageConfig",
    "StorageEngine",
    "StorageError",
    "WriteOutcome",
]

CATALOG_FILE = "meta"
LOCK_FILE = "LOCK"
WRITE_PAYLOAD_VERSION = 1
_SID_COLUMN = "\x00sid"
_TIME_COLUMN = "\x00time"
_FS_RESERVE_FRACTION = 0.05  # stop accepting writes when less than 5 % of the filesystem is free
_DISK_CHECK_INTERVAL_S = 1.0
DAY_NS = 86_400 * 10**9
HOUR_NS = 3600 * 10**9
MIN_TIME = np.iinfo(np.int64).min
MAX_TIME = np.iinfo(np.int64).max
# logged DDL ops the catalog does not interpret (the engine replays them itself)
ENGINE_OPS = frozenset({"flush_begin", "delete"})


@dataclass
class StorageConfig:
    data_dir: Path
    fsync: str = "always"  # "always" | "interval:<ms>" | "never"
    wal_file_bytes: int = 64 * 2**20
    memory_budget_bytes: int = 256 * 2**20
    write_queue_bytes: int = 32 * 2**20
    disk_budget_bytes: int | None = None
    # flushing the buffer to segments (storage/flusher.py)
    flush_bytes: int = 16 * 2**20  # a measurement's unflushed rows above this go to a segment
    flush_age_s: float = 60.0  # ... or once its oldest unflushed row is this old
    flush_window_ns: int = DAY_NS  # one segment never spans two windows of this length
    flush_check_s: float = 1.0  # how often the flusher checks ages
    flush_on_close: bool = False  # close() flushes everything (else the WAL is replayed at open)
    deletes_need_guard: bool = False  # refuse segment deletes until set_segment_delete_guard (sync on)
    background: bool = True  # run the flush and maintenance threads
    # retention and compaction (maintenance thread)
    retention_check_s: float = 60.0
    unsynced_policy: str = "block"  # "block" | "drop_oldest": unsynced segments over the disk budget
    compaction_enabled: bool = True
    compaction_small_segment_bytes: int = 16 * 2**20
    compaction_max_input_bytes: int = 64 * 2**20
    compaction_max_input_rows: int = 8_000_000
    compaction_pause_s: float = 1.0
    compaction_idle_s: float = 30.0
    chunk_cache_bytes: int = 32 * 2**20  # decoded segment chunks kept for reads (0: none)


class StorageError(Exception):
    pass


class Overloaded(StorageError):
    """A budget (write queue, memory, disk) is full; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DatabaseNotFound(StorageError):
    def __init__(self, db: str) -> None:
        super().__init__(f'database not found: "{db}"')
        self.db = db


class RetentionPolicyNotFound(StorageError):
    def __init__(self, rp: str) -> None:
        super().__init__(f"retention policy not found: {rp}")
        self.rp = rp


@dataclass
class WriteOutcome:
    points_written: int
    dropped: int
    errors: list[str] = field(default_factory=list)


@dataclass
class RecoveryReport:
    replayed_records: int
    replayed_points: int
    truncated_tail_bytes: int
    quarantined: list[str]
    segment_notes: list[str] = field(default_factory=list)  # e.g. removed .tmp leftovers
    orphan_segments_removed: int = 0  # segments of a flush interrupted before its marker


# ---------------------------------------------------------------------------------------------
# WAL payload of a write: msgpack {v, db, rp, batches: [{m, series, ipc}]}, see docs/wal-format.md
# ---------------------------------------------------------------------------------------------
def encode_write(db: str, rp: str, batches: list[Batch]) -> bytes:
    items = []
    for b in batches:
        arrays = [
            pa.array(np.asarray(b.series_id, dtype=np.int32), type=pa.int32()),
            pa.array(np.asarray(b.time, dtype=np.int64), type=pa.int64()),
            *b.fields.values(),
        ]
        rb = pa.RecordBatch.from_arrays(arrays, names=[_SID_COLUMN, _TIME_COLUMN, *b.fields.keys()])
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, rb.schema) as writer:
            writer.write_batch(rb)
        series = [[x for kv in tags for x in kv] for tags in b.series]
        items.append({"m": b.measurement, "series": series, "ipc": sink.getvalue().to_pybytes()})
    return msgpack.packb({"v": WRITE_PAYLOAD_VERSION, "db": db, "rp": rp, "batches": items}, use_bin_type=True)


def decode_write(payload: bytes) -> tuple[str, str, list[Batch]]:
    doc = msgpack.unpackb(payload, raw=False)
    if doc.get("v") != WRITE_PAYLOAD_VERSION:
        raise ValueError(f"unsupported write payload version {doc.get('v')!r}")
    batches = []
    for item in doc["batches"]:
        rb = pa.ipc.open_stream(item["ipc"]).read_next_batch()
        names = rb.schema.names
        series: list[TagSet] = [tuple(zip(flat[::2], flat[1::2], strict=True)) for flat in item["series"]]
        batches.append(
            Batch(
                measurement=item["m"],
                series=series,
                series_id=rb.column(0).to_numpy(),
                time=rb.column(1).to_numpy(),
                fields={names[i]: rb.column(i) for i in range(2, rb.num_columns)},
            )
        )
    return doc["db"], doc["rp"], batches


def _batch_bytes(b: Batch) -> int:
    return int(b.time.nbytes * 2 + sum(a.get_total_buffer_size() for a in b.fields.values()))


def _type_conflict(name: str, measurement: str, got: FieldType, have: FieldType) -> str:
    return (
        f'field type conflict: input field "{name}" on measurement "{measurement}" '
        f"is type {got.influx_name}, already exists as type {have.influx_name}"
    )


class StorageEngine:
    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self._policy = FsyncPolicy.parse(config.fsync)
        self._data_dir = Path(config.data_dir)
        self._wal_dir = self._data_dir / "wal"
        self.recovery_report: RecoveryReport | None = None  # what open() found and repaired
        self._quarantine_dir = self._data_dir / "quarantine"
        self._catalog_path = self._data_dir / CATALOG_FILE
        self._lock = threading.RLock()  # live catalog + ordering of validation and enqueue
        self._live = Catalog()  # validation state (may run ahead of the WAL)
        self._durable = Catalog()  # exactly the effect of records applied so far (writer thread)
        self._catalog_dirty = False
        self._buffer = WriteBuffer()
        self._writer: WalWriter | None = None
        self._committer: GroupCommitter | None = None
        self._lock_fd = -1
        self._state = "new"
        self._replayed_points = 0
        self.points_written = 0
        self.points_dropped = 0
        self.overloaded = 0
        self.catalog_saves = 0
        self._disk_checked = -1e9
        self._fs_avail = 0
        self._fs_total = 0
        self._dir_bytes = 0
        self._wal_bytes_at_scan = 0
        self._segment_bytes_at_scan = 0
        # segments
        self._store = SegmentStore(self._data_dir, config.chunk_cache_bytes)
        if self.config.deletes_need_guard:  # the sync ledger is not attached yet: nothing is synced
            self._store.set_delete_guard(lambda info: False)
        self._flush_lock = threading.Lock()  # one flush at a time; DELETE/DROP exclude flushes
        self._segments_lock = threading.Lock()  # compaction/retention vs DELETE/DROP rewrites
        self._pending_intents: dict[tuple[str, str], int] = {}  # replay: (db, m) -> segment seq floor
        self._series_cache: dict[int, list[TagSet]] = {}
        self._last_values = LastValueCache()  # newest value per (db, measurement, series, field)
        self._flush_policy = FlushPolicy(config.flush_bytes, config.flush_age_s, config.memory_budget_bytes)
        self._compactor = Compactor(
            self._store,
            CompactionPolicy(
                window_ns=config.flush_window_ns,
                small_segment_bytes=config.compaction_small_segment_bytes,
                max_input_bytes=config.compaction_max_input_bytes,
                max_input_rows=config.compaction_max_input_rows,
                pause_s=config.compaction_pause_s,
                idle_s=config.compaction_idle_s,
            ),
        )
        self._retention = RetentionEnforcer(
            self._store,
            durations=self._retention_duration,
            unsynced_policy=config.unsynced_policy,  # type: ignore[arg-type]
        )
        self._flusher: FlushThread | None = None
        self._maintenance: MaintenanceThread | None = None
        self.flushes = 0
        self.flushed_rows = 0
        self.wal_files_released = 0

    # --- lifecycle ----------------------------------------------------------------------------
    def open(self) -> RecoveryReport:
        """Recover: load (or quarantine) the catalog, replay the WAL into the buffer, start the
        writer. Never refuses to start because of damaged files."""
        if self._state != "new":
            raise StorageError(f"engine for {self._data_dir} already {self._state}")
        for d in (self._data_dir, self._wal_dir, self._quarantine_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._take_dir_lock()
        quarantined: list[str] = []
        self._durable = self._load_catalog(quarantined)
        segment_notes: list[str] = []
        for problem in self._store.open():  # verifies every segment, quarantines damaged ones
            (quarantined if "quarantin" in problem else segment_notes).append(problem)
        self._replayed_points = 0
        self._pending_intents = {}
        recovery = recover(self._wal_dir, self._quarantine_dir, self._replay_record)
        quarantined.extend(recovery.quarantined)
        orphans = self._remove_orphan_flush_segments()
        self._buffer.compact()
        files = dict(recovery.files)
        for file_no, size in list(files.items()):
            if size <= FILE_HEADER_BYTES:  # no records: the new file's header carries next_seq
                (self._wal_dir / wal_file_name(file_no)).unlink(missing_ok=True)
                del files[file_no]
        # never reuse a sequence number the catalog checkpoint has seen (records may be quarantined)
        next_seq = max(recovery.next_seq, self._durable.applied_seq + 1)
        self._durable.applied_seq = next_seq - 1
        self._durable.save(self._catalog_path)
        self._live = self._durable.copy()
        self._writer = WalWriter(self._wal_dir, recovery.next_file_no, next_seq, self.config.wal_file_bytes, files)
        self._committer = GroupCommitter(self._writer, self._policy, self._apply_group, self._write_failed)
        self._committer.start()
        self._state = "open"
        if self.config.background:
            self._start_background()
        report = RecoveryReport(
            recovery.records, self._replayed_points, recovery.truncated_tail_bytes, quarantined, segment_notes, orphans
        )
        log.info("storage opened at %s: %s", self._data_dir, report)
        self.recovery_report = report
        return report

    def close(self) -> None:
        """Write and fsync everything queued, save the catalog, release the directory lock."""
        if self._state != "open":
            return
        for worker in (self._flusher, self._maintenance):
            if worker is not None:
                worker.stop()
        self._flusher = self._maintenance = None
        if self.config.flush_on_close:
            try:
                self.flush_all()
            except Exception:  # noqa: BLE001 - the rows stay in the WAL and are replayed at open
                log.exception("flush at close failed; the WAL keeps the rows")
        with self._lock:
            self._state = "closed"
        assert self._committer is not None
        self._committer.close()
        if self._catalog_dirty:
            self._durable.save(self._catalog_path)
        os.close(self._lock_fd)
        self._lock_fd = -1

    def __enter__(self) -> StorageEngine:
        if self._state == "new":
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_dir_lock(self) -> None:
        fd = os.open(self._data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"{self._data_dir} is in use by another edgets process") from exc
        self._lock_fd = fd

    def _load_catalog(self, quarantined: list[str]) -> Catalog:
        path = self._catalog_path
        if not path.exists():
            return Catalog()
        try:
            return Catalog.load(path)
        except (CorruptFileError, ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
            target = quarantine(path, self._quarantine_dir, f"catalog unreadable: {exc}")
            text = f"{path}: offset {getattr(exc, 'offset', 0)}: catalog unreadable: {exc} (moved to {target}; rebuilt from the WAL)"
            log.error("catalog quarantined: %s", text)
            quarantined.append(text)
            return Catalog()

    def _replay_record(self, rec: WalRecord) -> None:
        cat = self._durable
        if rec.rtype == RecordType.DDL:
            op = msgpack.unpackb(rec.payload, raw=False)
            kind = op["op"]
            if rec.seq > cat.applied_seq and kind not in ENGINE_OPS:
                cat.apply_ddl(op)
            self._apply_ddl_to_buffer(op)
            if kind == "flushed":  # rows replayed before the marker are in a segment
                self._buffer.discard_through(op["db"], op["measurement"], int(op["seq"]))
                self._pending_intents.pop((op["db"], op["measurement"]), None)
            elif kind == "flush_begin":  # supersedes an earlier unfinished flush of the measurement
                self._pending_intents[(op["db"], op["measurement"])] = int(op["floor"])
            elif kind in ("drop_db", "drop_rp", "drop_measurement", "delete"):
                self._replay_segment_effect(op)
            return
        db, rp, batches = decode_write(rec.payload)
        key = data_key(db, rp)
        newer = rec.seq > cat.applied_seq
        known = cat.databases.get(db)
        if key not in cat.databases or known is None or rp not in known.rps:
            if not newer:
                return  # its database or policy was dropped after this record (the checkpoint knows)
            entry = cat.ensure_database(db)  # rebuilding a lost catalog
            entry.rps.setdefault(rp, RetentionPolicy(rp, shard_group_duration_ns=default_shard_group_duration(0)))
            cat.ensure_database(key)
        for b in batches:
            if newer:
                cat.learn(key, b.measurement, b.field_types(), b.tag_keys())
            schema = cat.databases[key].measurements.get(b.measurement)
            if schema is None or rec.seq <= schema.flushed_seq:
                continue
            self._buffer.append(key, b, rec.seq, rec.file_no, merge=False)
            self._replayed_points += len(b)

    # --- writer-thread callbacks ----------------------------------------------------------------
    def _apply_group(self, group: list[PendingRecord]) -> None:
        flush_marker: PendingRecord | None = None  # its future reports how many WAL files went
        largest_active = 0
        for rec in group:
            if rec.rtype == RecordType.WRITE:
                key, kept, outcome = rec.context
                for b in kept:
                    largest_active = max(largest_active, self._buffer.append(key, b, rec.seq, rec.file_no))
                    self._last_values.apply(key, b)
                    if self._durable.learn(key, b.measurement, b.field_types(), b.tag_keys()):
                        self._catalog_dirty = True
                self.points_written += outcome.points_written
                rec.result = outcome
            else:
                op, frozen = rec.context
                if op["op"] not in ENGINE_OPS:
                    self._durable.apply_ddl(op)
                rec.result = self._apply_ddl_to_buffer(op)
                if frozen is not None:
                    self._buffer.release(frozen)
                    flush_marker = rec
                self._catalog_dirty = True
            self._durable.applied_seq = rec.seq
        if self._catalog_dirty:
            self._durable.save(self._catalog_path, sync=self._policy.mode != "never" or flush_marker is not None)
            self.catalog_saves += 1
            self._catalog_dirty = False
        if flush_marker is not None:
            assert self._writer is not None
            oldest = self._buffer.oldest_wal_file()
            through = (oldest if oldest is not None else self._writer.file_no) - 1
            deleted = self._writer.release_through(through)
            flush_marker.result = len(deleted)
        flusher = self._flusher
        if flusher is not None and (
            largest_active >= self.config.flush_bytes or self._flush_policy.under_pressure(self._buffer.bytes)
        ):
            flusher.wake()

    def _apply_ddl_to_buffer(self, op: dict[str, Any]) -> int:
        """Buffer effect of a logged DDL op (live and at replay, in WAL order); rows removed."""
        kind = op["op"]
        removed = 0
        for key in _op_namespaces(op):
            if kind in ("drop_db", "drop_rp"):
                self._last_values.invalidate(key)
                self._buffer.drop_database(key)
            elif kind == "drop_measurement":
                self._last_values.invalidate(key, op["measurement"])
                self._buffer.drop_measurement(key, op["measurement"])
            elif kind == "delete":
                self._last_values.invalidate(key, op["measurement"])
                tags = {k: set(v) for k, v in op["tags"].items()} or None
                removed += self._buffer.delete_rows(key, op["measurement"], op["start"], op["end"], tags)
        return removed

    def _write_failed(self, exc: BaseException) -> BaseException:
        return StorageError(f"WAL write failed in {self._wal_dir}: {exc}")

    # --- writes --------------------------------------------------------------------------------
    def _require_open(self) -> GroupCommitter:
        if self._state != "open" or self._committer is None:
            raise StorageError(f"storage engine for {self._data_dir} is not open ({self._state})")
        return self._committer

    def _db(self, db: str) -> DatabaseEntry:
        entry = None if is_policy_key(db) else self._live.databases.get(db)
        if entry is None:
            raise DatabaseNotFound(db)
        return entry

    def _namespace(self, key: str) -> dict[str, MeasurementSchema]:
        """The measurement schemas of namespace `key` ({} for a policy that holds no rows yet);
        DatabaseNotFound when its database does not exist. Caller holds self._lock."""
        entry = self._live.databases.get(key)
        if entry is None:
            self._db(split_data_key(key)[0])
            return {}
        return entry.measurements

    def _namespaces_of(self, db: str) -> list[str]:
        """Every key holding rows or schema of database db: catalog, buffer and segments."""
        known = {*self._live.databases, *self._buffer.databases(), *self._store.databases()}
        return sorted(keys_of_database(db, known))

    def data_keys(self, db: str) -> list[str]:
        """The data keys of every retention policy of db (DatabaseNotFound if it is missing)."""
        with self._lock:
            return [data_key(db, name) for name in self._db(db).rps]

    def data_key(self, db: str, rp: str | None = None) -> str:
        """The storage key of db's rows under policy rp (its default policy when None): what
        read(), measurements() etc. take. DatabaseNotFound / RetentionPolicyNotFound."""
        with self._lock:
            return data_key(db, self._retention_policy(self._db(db), rp).name)

    def submit(self, db: str, batches: list[Batch], rp: str | None = None) -> Future[WriteOutcome]:
        """Validate, log and apply a write. The future completes after the WAL record is written
        (and fsynced per policy) and the rows are visible to read()."""
        committer = self._require_open()
        estimate = sum(_batch_bytes(b) for b in batches)
        while True:
            with self._lock:
                self._check_capacity(estimate, estimate)
                entry = self._db(db)
                policy = self._retention_policy(entry, rp)
                key = data_key(db, policy.name)
                epoch = self._live.ddl_epoch
                kept, dropped, errors = self._validate(key, policy, batches)
            outcome = WriteOutcome(sum(len(b) for b in kept), dropped, errors)
            if not kept:
                self.points_dropped += dropped
                done: Future[WriteOutcome] = Future()
                done.set_result(outcome)
                return done
            payload, flags = compress_payload(encode_write(db, policy.name, kept))
            mem = sum(_batch_bytes(b) for b in kept)
            with self._lock:
                if self._live.ddl_epoch != epoch:
                    continue  # a DDL ran meanwhile: validate again
                self._check_capacity(len(payload), mem)
                rec = PendingRecord(RecordType.WRITE, payload, flags, len(payload), (key, kept, outcome))
                try:
                    committer.enqueue(rec)
                except WalClosed as exc:
                    raise StorageError(str(exc)) from exc
                self.points_dropped += dropped
                return rec.future

    def write(self, db: str, batches: list[Batch], rp: str | None = None) -> WriteOutcome:
        return self.submit(db, batches, rp).result()

    def _retention_policy(self, entry: DatabaseEntry, rp: str | None) -> RetentionPolicy:
        if rp:
            policy = entry.rps.get(rp)
            if policy is None:
                raise RetentionPolicyNotFound(rp)
            return policy
        policy = entry.default_rp()
        if policy is None:
            raise RetentionPolicyNotFound(entry.default_name)
        return policy

    def _validate(self, key: str, policy: RetentionPolicy, batches: list[Batch]) -> tuple[list[Batch], int, list[str]]:
        """Drop rows beyond the retention policy and rows carrying a field of the wrong type
        (InfluxDB partial write); assign types to new fields of namespace `key`. Vectorised."""
        kept: list[Batch] = []
        dropped = 0
        errors: list[str] = []
        for b in batches:
            n = len(b)
            if n == 0:
                continue
            keep: np.ndarray | None = None
            if policy.duration_ns > 0:
                old = np.asarray(b.time) < time.time_ns() - policy.duration_ns
                if old.any():
                    keep = ~old
                    if "points beyond retention policy" not in errors:
                        errors.append("points beyond retention policy")
            types = b.field_types()
            conflicts = self._live.assign_types(key, b.measurement, types)
            schema = self._live.databases[key].measurements[b.measurement]
            schema.tag_keys.update(b.tag_keys())
            for name in conflicts:
                has_value = b.fields[name].is_valid().to_numpy(zero_copy_only=False)
                if keep is not None:
                    has_value &= keep
                if has_value.any():
                    msg = _type_conflict(name, b.measurement, types[name], schema.fields[name])
                    if msg not in errors:
                        errors.append(msg)
                keep = ~has_value if keep is None else keep & ~has_value
            if keep is not None:
                n_keep = int(keep.sum())
                dropped += n - n_keep
                if n_keep == 0:
                    continue
                if n_keep < n:
                    b = b.take(np.flatnonzero(keep))
            if conflicts:
                fields = {k: v for k, v in b.fields.items() if k not in conflicts}
                b = Batch(b.measurement, b.series, b.series_id, b.time, fields, b.line)
            kept.append(b)
        return kept, dropped, errors

    def _check_capacity(self, payload_bytes: int, mem_bytes: int) -> None:
        assert self._committer is not None
        queued = self._committer.queued_bytes
        if queued > 0 and queued + payload_bytes > self.config.write_queue_bytes:
            self._overloaded(f"write queue full ({queued} of {self.config.write_queue_bytes} bytes waiting)", 1.0)
        used = self._buffer.bytes + queued
        if used > 0 and used + mem_bytes > self.config.memory_budget_bytes:
            if self._flusher is not None:
                self._flusher.wake()
            self._overloaded(f"write buffer full ({used} of {self.config.memory_budget_bytes} bytes)", 1.0)
        if self._retention.over_budget():
            if self._maintenance is not None:
                self._maintenance.wake()  # segments may have been synced since: retention can free them
            self._overloaded(
                f"disk budget full: {self._store.disk_bytes()} bytes of segments not yet synced "
                f"(unsynced_policy={self.config.unsynced_policy})",
                5.0,
            )
        reason = self._disk_problem(payload_bytes)
        if reason is not None:
            if self._maintenance is not None:
                self._maintenance.wake()  # retention may free segment space
            self._overloaded(reason, 5.0)

    def _overloaded(self, reason: str, retry_after: float) -> None:
        self.overloaded += 1
        raise Overloaded(f"storage overloaded: {reason}", retry_after)

    def _disk_problem(self, incoming: int) -> str | None:
        assert self._writer is not None
        now = time.monotonic()
        if now - self._disk_checked >= _DISK_CHECK_INTERVAL_S:
            st = os.statvfs(self._data_dir)
            self._fs_avail = st.f_bavail * st.f_frsize
            self._fs_total = st.f_blocks * st.f_frsize
            self._wal_bytes_at_scan = self._writer.total_bytes()
            self._segment_bytes_at_scan = self._store.disk_bytes()
            if self.config.disk_budget_bytes is not None:
                self._dir_bytes = tree_bytes(self._data_dir)
            self._disk_checked = now
        # what WAL and segments added since the scan (either may also shrink: flush, retention)
        grown = (self._writer.total_bytes() - self._wal_bytes_at_scan
                 + self._store.disk_bytes() - self._segment_bytes_at_scan + incoming)
        if self._fs_avail - grown < _FS_RESERVE_FRACTION * self._fs_total:
            return f"filesystem of {self._data_dir} is nearly full ({self._fs_avail - grown} bytes free)"
        budget = self.config.disk_budget_bytes
        used = self._dir_bytes + grown - incoming  # a write may overshoot by itself: retention keeps headroom
        if budget is not None and used >= budget:
            return f"disk budget of {budget} bytes for {self._data_dir} reached ({used} used)"
        return None

    # --- DDL -----------------------------------------------------------------------------------
    def _log_ddl(self, op: dict[str, Any], frozen: FrozenMeasurement | None = None) -> Any:
        """Apply op to the live catalog, log it (always fsynced) and wait until it is applied
        and the catalog saved. Caller holds self._lock and has validated op."""
        committer = self._require_open()
        if op["op"] not in ENGINE_OPS:
            self._live.apply_ddl(op)
        payload = msgpack.packb(op, use_bin_type=True)
        rec = PendingRecord(RecordType.DDL, payload, 0, len(payload), (op, frozen), force_sync=True)
        try:
            committer.enqueue(rec)
        except WalClosed as exc:
            raise StorageError(str(exc)) from exc
        return rec.future

    def create_database(self, name: str, *, rp_name: str | None = None, duration_ns: int | None = None,
                        replication: int | None = None, shard_group_duration_ns: int | None = None) -> None:
        """CREATE DATABASE: with the autogen policy, or (any rp_* argument given: CREATE DATABASE
        ... WITH) with that one policy as the default instead, as InfluxDB 1.x. Existing
        database: nothing to do, unless the WITH policy (unnamed options at their defaults)
        differs from its policy of that name or is not its default ("retention policy
        conflicts with an existing policy")."""
        if not name:
            raise StorageError("database name required")
        problem = invalid_name(name)
        if problem is not None:
            raise StorageError(problem)  # InfluxDB's text: "invalid name"
        spec = (rp_name, duration_ns, replication, shard_group_duration_ns)
        policy = None
        if any(v is not None for v in spec):
            policy = self._policy_of_spec(rp_name or DEFAULT_RP, duration_ns or 0, replication or 1,
                                          shard_group_duration_ns or 0, default=True)
        with self._lock:
            entry = self._live.databases.get(name)
            if entry is not None:
                if policy is not None:
                    have = entry.rps.get(policy.name)
                    if have != policy:  # policy is the default one: so must `have` be
                        raise StorageError("retention policy conflicts with an existing policy")
                return
            op: dict[str, Any] = {"op": "create_db", "db": name}
            if policy is not None:
                op["rp"] = policy.to_wire()
            fut = self._log_ddl(op)
        fut.result()

    @staticmethod
    def _policy_of_spec(name: str, duration_ns: int, replication: int, shard_group_duration_ns: int,
                        default: bool) -> RetentionPolicy:
        """A checked policy: a valid name, a duration of 0 (infinite) or at least 1h (InfluxDB's
        minimum), the shard group duration InfluxDB derives when none is given."""
        problem = invalid_name(name)
        if problem is not None:
            raise StorageError(problem)
        if 0 < duration_ns < HOUR_NS:
            raise StorageError("retention policy duration must be at least 1h0m0s")
        return RetentionPolicy(name, duration_ns, shard_group_duration_ns or default_shard_group_duration(duration_ns),
                               replication, default)

    def drop_database(self, name: str) -> None:
        """Buffered rows, segments and schema of every policy gone. The drop is logged (fsynced)
        before any segment is deleted; replay deletes the segments sealed before it again."""
        self._require_open()
        with self._flush_lock, self._segments_lock:
            with self._lock:
                keys = self._namespaces_of(name)
                if name not in self._live.databases and not any(self._has_rows(k, None) for k in keys):
                    return
                op = {"op": "drop_db", "db": name, "namespaces": keys or [name],
                      "segments_below": self._segment_floor(), "drop_below": self._store.next_seq()}
                fut = self._log_ddl(op)
            fut.result()
            self._drop_namespace_segments(op)

    def databases(self) -> list[str]:
        """Database names in creation order (as InfluxDB's SHOW DATABASES)."""
        with self._lock:
            return self._live.database_names()

    def has_database(self, name: str) -> bool:
        with self._lock:
            return not is_policy_key(name) and name in self._live.databases

    def retention_policies(self, db: str) -> list[RetentionPolicy]:
        with self._lock:
            return [RetentionPolicy(**vars(rp)) for rp in self._db(db).rps.values()]

    def create_retention_policy(
        self,
        db: str,
        name: str,
        duration_ns: int = 0,
        shard_group_duration_ns: int = 0,
        replication: int = 1,
        default: bool = False,
    ) -> None:
        rp = self._policy_of_spec(name, duration_ns, replication, shard_group_duration_ns, default)
        with self._lock:
            existing = self._db(db).rps.get(name)
            if existing is not None:
                if existing == rp or (existing.default and not default and existing == RetentionPolicy(**{**vars(rp), "default": True})):
                    return
                raise StorageError("retention policy already exists")
            fut = self._log_ddl({"op": "create_rp", "db": db, "rp": rp.to_wire()})
        fut.result()

    def alter_retention_policy(
        self,
        db: str,
        name: str,
        *,
        duration_ns: int | None = None,
        shard_group_duration_ns: int | None = None,
        replication: int | None = None,
        default: bool | None = None,
    ) -> None:
        if duration_ns is not None and 0 < duration_ns < HOUR_NS:
            raise StorageError("retention policy duration must be at least 1h0m0s")
        with self._lock:
            existing = self._db(db).rps.get(name)
            if existing is None:
                raise RetentionPolicyNotFound(name)
            rp = RetentionPolicy(
                name,
                existing.duration_ns if duration_ns is None else duration_ns,
                existing.shard_group_duration_ns if shard_group_duration_ns is None else shard_group_duration_ns,
                existing.replication if replication is None else replication,
                existing.default if default is None else default,
            )
            fut = self._log_ddl({"op": "alter_rp", "db": db, "rp": rp.to_wire()})
        fut.result()

    def drop_retention_policy(self, db: str, name: str) -> None:
        """The policy and every row it holds (buffer, segments, schema) gone, durably, as
        InfluxDB 1.x (its shards go). Idempotent: dropping an unknown policy is not an error."""
        self._require_open()
        with self._flush_lock, self._segments_lock:
            with self._lock:
                if name not in self._db(db).rps:
                    return
                key = data_key(db, name)
                held = key in self._namespaces_of(db)  # else it never held a row: no tombstone
                op = {"op": "drop_rp", "db": db, "rp_name": name, "namespaces": [key] if held else [],
                      "segments_below": self._segment_floor(), "drop_below": self._store.next_seq()}
                fut = self._log_ddl(op)
            fut.result()
            self._drop_namespace_segments(op)

    def drop_measurement(self, db: str, measurement: str) -> None:
        """The measurement's buffered rows, segments and schema gone from every retention
        policy (as InfluxDB 1.x), durably. Unknown measurement: no error."""
        self._require_open()
        with self._flush_lock, self._segments_lock:
            with self._lock:
                self._db(db)
                keys = [k for k in self._namespaces_of(db)
                        if measurement in self._namespace(k)
                        or measurement in self._buffer.measurements(k)
                        or self._has_rows(k, measurement)]
                if not keys:
                    return
                op = {"op": "drop_measurement", "db": db, "namespaces": keys, "measurement": measurement,
                      "segments_below": self._segment_floor(), "drop_below": self._store.next_seq()}
                fut = self._log_ddl(op)
            fut.result()
            self._drop_namespace_segments(op)

    def _drop_namespace_segments(self, op: dict[str, Any]) -> None:
        """Segment part of a logged drop_db / drop_rp / drop_measurement: delete the segments of
        each namespace in the op sealed before it, and seal the tombstone that carries the drop
        to the cloud (both idempotent, for replay)."""
        measurement = op.get("measurement")
        for key in _op_namespaces(op):
            self._drop_segments(key, measurement, int(op["segments_below"]))
            if "drop_below" in op:
                self._seal_drop_tombstone(key, measurement, int(op["drop_below"]))

    # --- flushing to segments ------------------------------------------------------------------
    def freeze(self, db: str, measurement: str) -> FrozenMeasurement | None:
        """Immutable snapshot of a measurement's buffered rows (still readable) + the WAL range
        it covers. Write it to a durable segment, then call mark_flushed(). Flush in order."""
        return self._buffer.freeze(db, measurement)

    def mark_flushed(self, frozen: FrozenMeasurement) -> int:
        """The frozen rows are durable elsewhere: record it in the catalog (replay skips WAL
        records <= frozen.seq_max for this measurement), drop them from the buffer, delete WAL
        files no buffered row needs. Returns the number of WAL files deleted."""
        with self._lock:
            op = {"op": "flushed", "db": frozen.db, "measurement": frozen.measurement, "seq": frozen.seq_max}
            fut = self._log_ddl(op, frozen)
        released = int(fut.result())
        self.wal_files_released += released
        return released

    def flush(self, db: str, measurement: str) -> list[SegmentInfo]:
        """Write the measurement's buffered rows to segments (one per flush window), durably,
        then release them from buffer and WAL. Returns the new segments ([] if nothing buffered).

        Protocol: log `flush_begin` (with a lower bound of the seqs the segments will get) ->
        seal -> log `flushed`. A crash between the two leaves segments whose rows are also
        replayed from the WAL: open() deletes them (see _remove_orphan_flush_segments)."""
        self._require_open()
        with self._flush_lock:
            return self._flush_locked(db, measurement)

    def flush_all(self) -> list[SegmentInfo]:
        """Flush every measurement with buffered rows (shutdown, tests)."""
        sealed: list[SegmentInfo] = []
        for db, measurement, _bytes, _since in self._buffer.flush_candidates():
            sealed.extend(self.flush(db, measurement))
        return sealed

    def _flush_locked(self, db: str, measurement: str) -> list[SegmentInfo]:
        frozen = self._buffer.freeze(db, measurement)
        if frozen is None:
            return []
        sealed: list[SegmentInfo] = []
        try:
            with self._lock:
                entry = self._live.databases.get(db)
                schema = entry.measurements.get(measurement) if entry else None
                types = dict(schema.fields) if schema else {}
                intent = {
                    "op": "flush_begin",
                    "db": db,
                    "measurement": measurement,
                    "seq": frozen.seq_max,
                    "floor": self._segment_floor(),
                }
                fut = self._log_ddl(intent)
            fut.result()
            tag_keys = frozen.tag_keys()
            fields = {f: types[f] for f in frozen.field_names() if f in types}
            table = frozen.to_table(fields, tag_keys)
            for part in split_by_window(table, self.config.flush_window_ns):
                sealed.append(self._store.seal(db, measurement, part, tag_keys=tag_keys))
            self.mark_flushed(frozen)
        except BaseException:
            for info in sealed:  # never acknowledged: the rows go back to the buffer
                try:
                    self._store.delete(info, "its flush failed", force=True)
                except OSError as exc:
                    log.error("could not remove segment %s of a failed flush: %s", info.path, exc)
            self._buffer.unfreeze(frozen)
            raise
        self.flushes += 1
        self.flushed_rows += sum(i.rows for i in sealed)
        log.debug("flushed %s.%s: %d rows into %d segments", db, measurement, table.num_rows, len(sealed))
        return sealed

    def _segment_floor(self) -> int:
        """A lower bound of every segment seq assigned from now on (seqs only grow)."""
        return max((i.seq for i in self._store.segments()), default=0) + 1

    def _remove_orphan_flush_segments(self) -> int:
        """After replay: segments sealed by a flush whose `flushed` marker never made it to the
        WAL hold rows that were just replayed into the buffer; delete them (exactly once)."""
        removed = 0
        for (db, measurement), floor in self._pending_intents.items():
            for info in self._store.segments(db, measurement):
                if info.seq >= floor and not info.replaces and info.rows:  # tombstones are no orphans
                    if self._store.delete(info, "orphan of an interrupted flush (rows replayed from the WAL)", force=True):
                        removed += 1
        self._pending_intents = {}
        return removed

    def _start_background(self) -> None:
        self._flusher = FlushThread(
            self._flush_policy,
            self._buffer.flush_candidates,
            lambda: self._buffer.bytes,
            self.flush,
            self.config.flush_check_s,
        )
        self._maintenance = MaintenanceThread(
            self.compact_once,
            self.enforce_retention,
            self.config.retention_check_s,
            self.config.compaction_pause_s,
            self.config.compaction_idle_s,
            self.config.compaction_enabled,
        )
        self._flusher.start()
        self._maintenance.start()

    # --- segments: drop, delete, retention, compaction -------------------------------------------
    @property
    def segment_store(self) -> SegmentStore:
        """The segment store (the sync adapter reads sealed segments from it)."""
        return self._store

    @property
    def retention(self) -> RetentionEnforcer:
        return self._retention

    def set_segment_delete_guard(self, guard: Callable[[SegmentInfo], bool]) -> None:
        """guard(info) -> True when a segment may be deleted (the sync ledger's is_acked)."""
        self._store.set_delete_guard(guard)

    def _drop_segments(self, db: str, measurement: str | None, below: int) -> int:
        """Delete the segments of db (one measurement or all) sealed before seq `below`, and any
        compaction inputs they hide, whatever the delete guard says (user intent)."""
        doomed: dict[int, SegmentInfo] = {}
        for info in self._store.segments(db, measurement):
            if info.seq < below:
                doomed[info.seq] = info
                for seq in info.replaces:
                    hidden = self._store.get(seq)
                    if hidden is not None:
                        doomed[seq] = hidden
        what = f"{db}.{measurement}" if measurement is not None else db
        for info in doomed.values():
            self._store.delete(info, f"drop {what}", force=True)
            self._series_cache.pop(info.seq, None)
        return len(doomed)

    def _has_rows(self, db: str, measurement: str | None) -> bool:
        """Does the store hold a segment with rows of db (one measurement or all)?"""
        return any(i.rows for i in self._store.segments(db, measurement))

    def _seal_drop_tombstone(self, db: str, measurement: str | None, drop_below: int) -> SegmentInfo | None:
        """Seal the zero-row DROP tombstone that carries a DROP MEASUREMENT (measurement given)
        or DROP DATABASE (measurement None: stored under measurement "") to the cloud: it hides
        the scope's segments with seq < drop_below there. Idempotent (replay): nothing is sealed
        when a present tombstone already covers it (same or wider scope, drop_below >= this)."""
        scope = DROP_SCOPE_DATABASE if measurement is None else DROP_SCOPE_MEASUREMENT
        name = "" if measurement is None else measurement
        for info in self._store.segments(db):
            if info.drop_below >= drop_below and (
                info.drop == DROP_SCOPE_DATABASE
                or (info.drop == scope == DROP_SCOPE_MEASUREMENT and info.measurement == name)
            ):
                return None
        now = time.time_ns()
        empty = pa.table({TIME_COLUMN: pa.array([], type=pa.timestamp("ns"))})
        return self._store.seal(db, name, empty, origin=ORIGIN_DROP, drop=scope, drop_below=drop_below,
                                tombstone_range=(now, now))

    def _replay_segment_effect(self, op: dict[str, Any]) -> None:
        """Segment part of a replayed drop/delete (idempotent: only segments sealed before the op).
        Failures are logged, not raised: the WAL record itself is fine."""
        if "segments_below" not in op:
            return
        try:
            if op["op"] == "delete":
                for key in _op_namespaces(op):
                    self._delete_from_segments(op, key)
            else:
                self._drop_namespace_segments(op)
            for key in _op_namespaces(op):
                if op["op"] in ("drop_db", "drop_rp"):
                    for intent in [k for k in self._pending_intents if k[0] == key]:
                        del self._pending_intents[intent]
                elif op["op"] == "drop_measurement":
                    self._pending_intents.pop((key, op["measurement"]), None)
        except (OSError, SegmentCorrupt, pa.ArrowException) as exc:
            log.error("replaying %s on segments failed: %s", op["op"], exc)

    def delete(
        self,
        db: str,
        measurement: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        tag_filter: dict[str, set[str]] | None = None,
    ) -> int:
        """InfluxQL DELETE: remove rows with start <= time < end whose tags match, in every
        retention policy (as InfluxDB 1.x), from the buffer and from every segment (rewritten
        without them: the new segment `replaces` the old one and keeps its precedence). Logged
        (fsynced) first; replay repeats it. Returns rows removed."""
        self._require_open()
        with self._flush_lock, self._segments_lock:
            with self._lock:
                self._db(db)
                op = {
                    "op": "delete",
                    "db": db,
                    "namespaces": self._namespaces_of(db),
                    "measurement": measurement,
                    "start": start_ns,
                    "end": end_ns,
                    "tags": {k: sorted(v) for k, v in (tag_filter or {}).items()},
                    "segments_below": self._segment_floor(),
                }
                fut = self._log_ddl(op)
            removed = int(fut.result())
            try:
                return removed + sum(self._delete_from_segments(op, key) for key in _op_namespaces(op))
            finally:  # a cache rebuilt before the segments were rewritten saw the deleted rows
                for key in _op_namespaces(op):
                    self._last_values.invalidate(key, measurement)

    def _delete_from_segments(self, op: dict[str, Any], key: str) -> int:
        """Rewrite namespace key's segments sealed before the logged DELETE op without its rows."""
        measurement, below = op["measurement"], int(op["segments_below"])
        start, end = op["start"], op["end"]
        tags = {k: set(v) for k, v in op["tags"].items()}
        removed = 0
        for info in self._store.segments(key, measurement):
            if info.seq >= below:
                continue
            if (start is not None and info.max_time_ns < start) or (end is not None and info.min_time_ns >= end):
                continue
            probe = read_segment(info.path, columns=[], start_ns=start, end_ns=end, tag_filter=tags or None)
            if probe.num_rows == 0:
                continue
            table = read_segment(info.path)
            hit = rows_matching(table, start, end, tags)
            keep = table.filter(pa.array(~hit))
            # every row removed: an empty tombstone still `replaces` the old segment, so the
            # deletion reaches the cloud (and open() finishes it after a crash)
            self._store.seal(
                key, info.measurement, keep, tag_keys=info.tag_keys if keep.num_rows else (),
                replaces=sorted({info.seq, *info.replaces}), precedence=info.precedence,
                origin=ORIGIN_DELETE, tombstone_range=(info.min_time_ns, info.max_time_ns),
            )
            self._store.delete(info, "DELETE rewrote it", force=True)
            self._series_cache.pop(info.seq, None)
            removed += table.num_rows - keep.num_rows
        return removed

    def _retention_duration(self, key: str) -> int:
        """Segments of namespace key older than this go: its policy's duration (0 = forever;
        also when the policy is unknown: nothing is deleted on a guess)."""
        db, rp = split_data_key(key)
        with self._lock:
            entry = self._live.databases.get(db)
            policy = entry.rps.get(rp) if entry is not None else None
        return policy.duration_ns if policy is not None else 0

    def enforce_retention(self) -> RetentionReport:
        """One retention pass: expired segments, then oldest segments beyond the disk budget
        (what the WAL, catalog etc. use is subtracted, minus 10 % headroom for the next flush)."""
        with self._segments_lock:
            budget = self.config.disk_budget_bytes
            if budget is not None:
                other = max(0, tree_bytes(self._data_dir) - self._store.disk_bytes())
                self._retention.disk_budget_bytes = max(0, budget - other - budget // 10)
            report = self._retention.enforce()
        for seq in report.dropped_expired + report.dropped_for_budget:
            self._series_cache.pop(seq, None)
        self._disk_checked = -1e9  # rescan the directory at the next write
        return report

    def compact_once(self) -> bool:
        """Run one compaction merge (if any is planned); True if segments were merged."""
        with self._segments_lock:
            return self._compactor.compact_once() is not None

    # --- reads ---------------------------------------------------------------------------------
    def read(
        self,
        db: str,
        measurement: str,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        columns: list[str] | None = None,
        tag_filter: dict[str, set[str]] | None = None,
        field_filter: list[FieldCondition] | None = None,
    ) -> pa.Table:
        """Rows with start <= time < end matching tag_filter, sorted by (series key, time), from
        the segments (pruned by time, series dictionary and row-group stats; only needed chunks
        decoded) and the buffer; on a duplicate (series, time) the newest non-null value wins per
        field (segments by precedence, the buffer newest of all).

        `field_filter`: (field, op, number) conditions (op > >= < <= = !=) that must all hold on
        the merged row (a null or missing field fails). When no two parts of the read can share a
        (series, time), segments evaluate them per row group before decoding other columns."""
        if not field_filter:
            return self._read(db, measurement, start_ns, end_ns, columns, tag_filter, None)
        wanted = columns
        if columns is not None:
            columns = [*columns, *(f for f, _op, _v in field_filter if f not in columns)]
        table = self._read(db, measurement, start_ns, end_ns, columns, tag_filter, None, field_filter)
        hit = np.ones(table.num_rows, dtype=np.bool_)
        for name, op, value in field_filter:
            if name in table.column_names:
                hit &= condition_mask(table.column(name), op, value)
            else:
                condition_mask(None, op, value)
                hit[:] = False
        if not hit.all():
            table = table.filter(pa.array(hit))
        if wanted is not None and len(columns or ()) != len(wanted):
            table = table.select([c for c in table.column_names if c == TIME_COLUMN or c in wanted])
        return table

    def read_columns(self, db: str, measurement: str, *, start_ns: int | None, end_ns: int | None,
                     fields: list[str], tag_filter: dict[str, set[str]] | None,
                     group_tags: Sequence[str] = ()) -> list[ColumnPart] | None:
        """The numeric `fields` of the rows read() would return (start <= time < end matching
        tag_filter) as numpy parts in no particular order, for aggregates that need no row
        order; with `group_tags`, each row's group (its values of those tags, "" when absent).
        None when two parts could hold the same (series, time): only read()'s merge can then
        say which value wins."""
        snap, in_order = self._buffer.snapshot_in_order(db, measurement)  # before the segments, as _read
        parts: list[ColumnPart] = []
        for _info, rows in self._store.read_rows(db, measurement, start_ns=start_ns, end_ns=end_ns,
                                                 fields=fields, tag_filter=tag_filter):
            if not rows.unique():
                return None
            group, keys = _segment_groups(rows, group_tags) if group_tags else (_NO_GROUPS, [])
            parts.append(ColumnPart(rows.time, {f: numeric_column(rows.fields[f])
                                                for f in fields if f in rows.fields}, group, keys))
        if snap is not None:
            types, all_tags, _infos = self._schema(db, measurement)  # only buffered rows need it
            chunks, index, n_series = snap
            wanted = [f for f in fields if f in types]
            if in_order:  # no (series, time) twice: the rows as they are, unsorted
                times, sid, columns = select_numeric(chunks, index, n_series, types, wanted, start_ns=start_ns,
                                                     end_ns=end_ns, tag_filter=tag_filter)
                if times.shape[0]:
                    group, keys = _series_groups(sid, index.tagsets, group_tags) if group_tags \
                        else (_NO_GROUPS, [])
                    parts.append(ColumnPart(times, columns, group, keys))
            else:
                table, sid, tagsets = assemble_series(
                    chunks, index, n_series, types, all_tags, start_ns=start_ns, end_ns=end_ns,
                    columns=wanted, tag_filter=tag_filter)
                if table.num_rows:  # assemble merged the buffer's own duplicates
                    group, keys = _local_groups(sid, lambda s: dict(tagsets[s]), group_tags) if group_tags \
                        else (_NO_GROUPS, [])
                    parts.append(ColumnPart(time_array(table), {f: numeric_column(table.column(f))
                                                                for f in fields if f in table.column_names},
                                            group, keys))
        if len(parts) > 1:
            spans = sorted((int(p.time.min()), int(p.time.max())) for p in parts)
            if any(b[0] <= a[1] for a, b in zip(spans, spans[1:], strict=False)):
                return None
        return parts

    def estimate_rows(self, db: str, measurement: str, *, start_ns: int | None = None,
                      end_ns: int | None = None, tag_filter: dict[str, set[str]] | None = None) -> int:
        """About how many rows read() with these bounds would decode: the segments' matching
        row groups (footers only) plus every buffered row of the measurement. A cost estimate
        for query scheduling, never used for results."""
        snap = self._buffer.snapshot(db, measurement)
        buffered = sum(c.rows for c in snap[0]) if snap is not None else 0
        return buffered + self._store.estimate_rows(db, measurement, start_ns, end_ns, tag_filter)

    def last_rows(
        self,
        db: str,
        measurement: str,
        *,
        n: int = 1,
        start_ns: int | None = None,
        end_ns: int | None = None,
        columns: list[str] | None = None,
        tag_filter: dict[str, set[str]] | None = None,
    ) -> pa.Table:
        """The newest `n` rows of every series (start <= time < end, tag_filter) among the rows
        where at least one requested field is non-null, in read() shape and order. Reads only
        the row groups holding each series' tail (InfluxQL lastpoint: ORDER BY time DESC LIMIT n)."""
        if n < 1:
            raise ValueError(f"last_rows needs n >= 1, got {n}")
        if n == 1:
            cached = self._newest_from_cache(db, measurement, start_ns, end_ns, columns, tag_filter)
            if cached is not None:
                return cached
        return self._read(db, measurement, start_ns, end_ns, columns, tag_filter, n)

    def _newest_from_cache(
        self,
        db: str,
        measurement: str,
        start_ns: int | None,
        end_ns: int | None,
        columns: list[str] | None,
        tag_filter: dict[str, set[str]] | None,
    ) -> pa.Table | None:
        """last_rows(n=1) from the latest-value cache (built on first use); None when it cannot
        answer (no field requested, or end_ns excludes some series' newest row)."""
        types, all_tags, _infos = self._schema(db, measurement)
        out_tags = [k for k in all_tags if columns is None or k in columns]
        out_fields = [f for f in sorted(types) if columns is None or f in columns]
        if not out_fields:
            return None
        arrow_types = [types[f].arrow_type for f in out_fields]
        for _attempt in range(2):
            epoch = self._store.removal_epoch(db, measurement)
            built, table = self._last_values.newest_rows(
                db, measurement, epoch, out_fields, arrow_types, out_tags, tag_filter, start_ns, end_ns)
            if built:
                return table
            self._build_last_values(db, measurement, epoch, types, all_tags)
        return None

    def _build_last_values(self, db: str, measurement: str, epoch: int, types: dict[str, FieldType],
                           all_tags: list[str]) -> None:
        """Fill the measurement's cache entry from a read of every series' newest row (then one
        read per field that row left null somewhere); writes applied meanwhile are folded in."""
        entry = self._last_values.build_begin(db, measurement, epoch)
        try:
            fields = sorted(types)
            newest = self._read(db, measurement, None, None, [*all_tags, *fields], None, 1)
            for name in entry.values.load(newest, all_tags, fields):
                alone = self._read(db, measurement, None, None, [*all_tags, name], None, 1)
                entry.values.load(alone, all_tags, [name])
        except BaseException:
            self._last_values.abandon(db, measurement, entry)
            raise
        self._last_values.build_end(db, measurement, entry)

    def _schema(self, db: str, measurement: str) -> tuple[dict[str, FieldType], list[str], list[SegmentInfo]]:
        """Field types and sorted tag keys of a measurement (catalog + segments), and its segments."""
        with self._lock:
            schema = self._namespace(db).get(measurement)
            types = dict(schema.fields) if schema else {}
            tag_keys = set(schema.tag_keys) if schema else set()
        infos = self._store.segments(db, measurement)
        for info in infos:  # a lost catalog (rebuilt from the WAL) may not know segment-only schema
            for name, ftype in info.field_types.items():
                types.setdefault(name, ftype)
            tag_keys.update(info.tag_keys)
        return types, sorted(tag_keys), infos

    def _read(
        self,
        db: str,
        measurement: str,
        start_ns: int | None,
        end_ns: int | None,
        columns: list[str] | None,
        tag_filter: dict[str, set[str]] | None,
        tail: int | None,
        field_filter: list[FieldCondition] | None = None,
    ) -> pa.Table:
        """`field_filter` is only pushed down to the segments (the caller filters the result)."""
        snap = self._buffer.snapshot(db, measurement)  # before the segments: a concurrent flush
        types, all_tags, infos = self._schema(db, measurement)  # then shows rows twice, never 0 times
        if field_filter and not _parts_disjoint(infos, snap, start_ns, end_ns):
            field_filter = None  # a filtered-out row could hide an older duplicate that passes
        out_tags = [k for k in all_tags if columns is None or k in columns]
        out_fields = [f for f in sorted(types) if columns is None or f in columns]
        parts: list[_ReadPart] = []
        if infos:
            found = self._store.read_rows(
                db, measurement, start_ns=start_ns, end_ns=end_ns, fields=out_fields,
                tag_filter=tag_filter, tail=tail, field_filter=field_filter or (),
            )
            parts.extend(_segment_part(rows) for _info, rows in found)
        if snap is not None:
            chunks, index, n_series = snap
            table, keys, offsets = assemble_runs(
                chunks, index, n_series, types, all_tags,
                start_ns=start_ns, end_ns=end_ns, columns=out_tags + out_fields, tag_filter=tag_filter,
            )
            if table.num_rows:
                if tail is not None:
                    table, keys, offsets = _tail_of_runs(table, keys, offsets, out_fields, tail)
                parts.append(_ReadPart(table, None, (keys, offsets), True))
        if not parts:
            return empty_table(types, all_tags, columns)
        names = [TIME_COLUMN, *out_tags, *out_fields]
        arrow_types = [pa.timestamp("ns")] + [pa.string()] * len(out_tags) + [types[f].arrow_type for f in out_fields]
        merged = None
        if tail is None or len(parts) == 1:  # tails of several parts need a tail of their merge
            merged = _merge_sorted_parts(parts, names, arrow_types)
        if merged is None:  # overlapping parts or duplicate rows: full merge on every tag
            full_names = [TIME_COLUMN, *all_tags, *out_fields]
            full_types = [pa.timestamp("ns")] + [pa.string()] * len(all_tags) + arrow_types[1 + len(out_tags):]
            tables = [conform(p.full_table(all_tags), full_names, full_types) for p in parts]
            if snap is not None and parts[-1].rows is None and set(out_tags) != set(all_tags):
                chunks, index, n_series = snap  # the buffer part lacks tags: assemble it again
                buffered = assemble(
                    chunks, index, n_series, types, all_tags,
                    start_ns=start_ns, end_ns=end_ns, columns=all_tags + out_fields, tag_filter=tag_filter,
                )
                tables[-1] = conform(buffered, full_names, full_types)
            merged = merge_tables(tables, measurement, all_tags)
            if tail is not None:
                merged = _tail_by_series(merged, measurement, all_tags, out_fields, tail)
            merged = merged.select(names)
        return merged

    def measurements(self, db: str) -> list[str]:
        """Measurements of namespace db holding rows (as InfluxDB's index: one whose every row
        was deleted, or whose every point a write rejected, is not listed; its schema stays)."""
        with self._lock:
            self._namespace(db)
        names = set(self._buffer.measurements_with_rows(db))
        names.update(i.measurement for i in self._store.segments(db) if i.rows)
        return sorted(names)

    def field_types(self, db: str, measurement: str) -> dict[str, FieldType]:
        with self._lock:
            schema = self._namespace(db).get(measurement)
            types = dict(schema.fields) if schema else {}
        for info in self._store.segments(db, measurement):
            for name, ftype in info.field_types.items():
                types.setdefault(name, ftype)
        return dict(sorted(types.items()))

    def tag_keys(self, db: str, measurement: str) -> list[str]:
        with self._lock:
            schema = self._namespace(db).get(measurement)
            keys = set(schema.tag_keys) if schema else set()
        for info in self._store.segments(db, measurement):
            keys.update(info.tag_keys)
        return sorted(keys)

    def series(self, db: str, measurement: str) -> list[TagSet]:
        """Tag sets of the measurement (buffer + segment dictionaries), in series-key order."""
        with self._lock:
            self._namespace(db)
        found = set(self._buffer.series(db, measurement))
        for info in self._store.segments(db, measurement):
            found.update(self._segment_series(info))
        return sorted(found, key=lambda tags: series_key(measurement, tags))

    def _segment_series(self, info: SegmentInfo) -> list[TagSet]:
        cached = self._series_cache.get(info.seq)
        if cached is not None:
            return cached
        try:
            footer = self._store.footer(info)
        except (FileNotFoundError, SegmentCorrupt) as exc:
            log.warning("series of segment %d unavailable: %s", info.seq, exc)
            return []
        out = [footer.series_tags_of(s) for s in range(footer.series_count)]
        self._series_cache[info.seq] = out
        return out

    def stats(self) -> dict[str, int | float]:
        writer, committer = self._writer, self._committer
        return {
            "wal_bytes": writer.total_bytes() if writer else 0,
            "wal_files": writer.file_count() if writer else 0,
            "wal_next_seq": writer.next_seq if writer else 0,
            "wal_records": committer.records_written if committer else 0,
            "group_commits": committer.group_commits if committer else 0,
            "fsyncs": writer.fsyncs if writer else 0,
            "write_errors": committer.write_errors if committer else 0,
            "queue_bytes": committer.queued_bytes if committer else 0,
            "buffer_bytes": self._buffer.bytes,
            "buffer_rows": self._buffer.rows,
            "buffer_chunks": self._buffer.chunk_count(),
            "points_written": self.points_written,
            "points_dropped": self.points_dropped,
            "overloaded": self.overloaded,
            "catalog_saves": self.catalog_saves,
            "replayed_points": self._replayed_points,
            "segments": len(self._store.segments()),
            "segment_bytes": self._store.disk_bytes(),
            "flushes": self.flushes,
            "flushed_rows": self.flushed_rows,
            "wal_files_released": self.wal_files_released,
            "compactions": self._compactor.merges,
            "retention_dropped_segments": self._retention.dropped_segments,
            "retention_blocked_unsynced": self._retention.blocked_unsynced,
            **self._store.chunk_cache.stats(),
        }


def _op_namespaces(op: dict[str, Any]) -> list[str]:
    """The namespace keys a logged drop/delete op applies to. Ops logged before retention
    policies had namespaces name only the database (its autogen rows); a drop_rp then left
    the rows alone."""
    return list(op.get("namespaces", [] if op["op"] == "drop_rp" else [op["db"]]))


def split_by_window(table: pa.Table, window_ns: int) -> list[pa.Table]:
    """The rows of `table` per time window floor(time / window_ns), order kept."""
    if table.num_rows == 0:
        return []
    window = time_array(table) // window_ns
    lo, hi = int(window.min()), int(window.max())
    if lo == hi:
        return [table]
    return [table.filter(pa.array(window == w)) for w in np.unique(window).tolist()]


def rows_matching(table: pa.Table, start_ns: int | None, end_ns: int | None, tags: dict[str, set[str]]) -> np.ndarray:
    """bool per row of a reader-shape table: start <= time < end and every tag value in its set
    (`""` in a set also matches rows without the tag, as the segment reader)."""
    times = time_array(table)
    hit = np.ones(table.num_rows, dtype=bool)
    if start_ns is not None:
        hit &= times >= start_ns
    if end_ns is not None:
        hit &= times < end_ns
    for key, values in tags.items():
        if key not in table.column_names:
            if "" not in values:
                hit[:] = False
            continue
        col = table.column(key).combine_chunks()
        match = pc.is_in(col, value_set=pa.array(sorted(values), type=pa.string()))
        if "" in values:
            match = pc.or_(match, col.is_null())
        hit &= np.asarray(match.to_numpy(zero_copy_only=False), dtype=bool)
    return hit


def conform(table: pa.Table, names: list[str], types: list[pa.DataType]) -> pa.Table:
    """`table` with exactly these columns and types (missing or uncastable columns: nulls)."""
    n = table.num_rows
    arrays: list[pa.Array | pa.ChunkedArray] = []
    present = set(table.column_names)
    for name, atype in zip(names, types, strict=True):
        if name not in present:
            arrays.append(pa.nulls(n, atype))
            continue
        col = table.column(name)
        if col.type != atype:
            try:
                col = col.cast(atype, safe=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                col = pa.chunked_array([pa.nulls(n, atype)])
        arrays.append(col)
    return pa.Table.from_arrays(arrays, names=names)


@dataclass(slots=True)
class ColumnPart:
    """One part of a read_columns(): int64 ns times and, per numeric field the part holds,
    (values, validity); validity is empty when every row has a value (nulls hold 0). With
    group tags: each row's group number and each group's tag values (else empty)."""

    time: np.ndarray
    fields: dict[str, tuple[np.ndarray, np.ndarray]]
    group: np.ndarray
    group_keys: list[tuple[str, ...]]


_ALL_VALID = np.empty(0, dtype=np.bool_)
_NO_GROUPS = np.empty(0, dtype=np.int64)


def _series_groups(sid: np.ndarray, tagsets: Sequence[TagSet],
                   group_tags: Sequence[str]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Group number per row from series ids in any order: one group per distinct combination of
    the group tags' values ("" where a series lacks one)."""
    present, inverse = np.unique(sid, return_inverse=True)
    numbers: dict[tuple[str, ...], int] = {}
    of_series = np.empty(present.shape[0], dtype=np.int64)
    for i, s in enumerate(present.tolist()):
        tags = dict(tagsets[s])
        of_series[i] = numbers.setdefault(tuple(tags.get(k, "") for k in group_tags), len(numbers))
    return of_series[inverse.reshape(-1)], list(numbers)


def _local_groups(sid: np.ndarray, tags_of: Callable[[int], dict[str, str]],
                  group_tags: Sequence[str]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Group number per row from series ids (each series' rows contiguous, as every part of a
    read keeps them): one group per distinct tag-value combination."""
    starts = np.flatnonzero(np.concatenate(([True], sid[1:] != sid[:-1])))
    numbers: dict[tuple[str, ...], int] = {}
    run_group = np.empty(len(starts), dtype=np.int64)
    for i, s in enumerate(sid[starts].tolist()):
        tags = tags_of(s)
        run_group[i] = numbers.setdefault(tuple(tags.get(t, "") for t in group_tags), len(numbers))
    return np.repeat(run_group, np.diff(np.append(starts, len(sid)))), list(numbers)


def _segment_groups(rows: SegmentRows, group_tags: Sequence[str]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    footer = rows.footer
    return _local_groups(rows.series_id, lambda s: dict(footer.series_tags_of(s)), group_tags)


def numeric_column(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls as 0, validity or an empty array when nothing is null) of a numeric column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count == 0:
        return column.to_numpy(zero_copy_only=False), _ALL_VALID
    valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    return column.fill_null(0).to_numpy(zero_copy_only=False), valid


@dataclass
class _ReadPart:
    """One sorted (series key, time) input of a read: a segment's rows or the buffer's table."""

    buffered: pa.Table | None  # the buffer's table (None: a segment part, see `rows`)
    rows: SegmentRows | None  # the segment rows (None: buffer part)
    buffered_runs: tuple[list[str], np.ndarray] | None  # buffer part: run keys and offsets
    unique: bool  # no duplicate (series, time) inside the part

    def runs(self) -> tuple[list[str], np.ndarray]:
        """Series key of each run of one series, and the run offsets (runs + 1); a segment
        part computes them on demand (only a merge of several parts needs them)."""
        if self.rows is not None:
            return self.rows.runs()
        assert self.buffered_runs is not None
        return self.buffered_runs

    def full_table(self, tag_keys: list[str]) -> pa.Table:
        """The part with every tag column (for the general merge)."""
        if self.rows is None:
            assert self.buffered is not None
            return self.buffered
        schema = output_schema(self.rows.footer, [*tag_keys, *self.rows.fields])
        return self.rows.to_table(schema)


def _segment_part(rows: SegmentRows) -> _ReadPart:
    return _ReadPart(None, rows, None, rows.unique())


def _part_table(part: _ReadPart, names: list[str], types: list[pa.DataType]) -> pa.Table:
    if part.rows is None:
        assert part.buffered is not None
        return conform(part.buffered, names, types)
    schema = output_schema(part.rows.footer, names[1:])
    return conform(part.rows.to_table(schema), names, types)


def _merge_sorted_parts(parts: list[_ReadPart], names: list[str], types: list[pa.DataType]) -> pa.Table | None:
    """Fast merge when no (series, time) can repeat: every part duplicate-free and the parts'
    time ranges disjoint. Rows are interleaved by series runs (no sort of rows, no dedupe, no
    take at all for a single part). None when the general merge is needed."""
    if not all(p.unique for p in parts):
        return None
    if len(parts) == 1:
        return _part_table(parts[0], names, types)
    spans = []
    for i, p in enumerate(parts):
        t = p.rows.time if p.rows is not None else time_array(p.buffered)
        spans.append((int(t.min()), int(t.max()), i))
    spans.sort()
    for (_lo_a, hi_a, _), (lo_b, _hi_b, _) in zip(spans, spans[1:], strict=False):
        if lo_b <= hi_a:
            return None
    ordered = [parts[i] for _, _, i in spans]
    runs = [p.runs() for p in ordered]
    all_keys = sorted({k for keys, _offsets in runs for k in keys})
    rank = {k: r for r, k in enumerate(all_keys)}
    key_rank: list[np.ndarray] = []
    part_pos: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    base = 0
    for pos, (run_keys, offs) in enumerate(runs):
        key_rank.append(np.array([rank[k] for k in run_keys], dtype=np.int64))
        part_pos.append(np.full(len(run_keys), pos, dtype=np.int64))
        starts.append(offs[:-1] + base)
        lengths.append(np.diff(offs))
        base += int(offs[-1])
    order = np.lexsort((np.concatenate(part_pos), np.concatenate(key_rank)))
    run_start = np.concatenate(starts)[order]
    run_len = np.concatenate(lengths)[order]
    table = pa.concat_tables([_part_table(p, names, types) for p in ordered])
    if bool(np.all(order[1:] > order[:-1])):
        return table  # parts already follow each other in series order
    out_start = np.cumsum(run_len) - run_len
    index = np.repeat(run_start - out_start, run_len) + np.arange(base, dtype=np.int64)
    return table.take(pa.array(index, type=pa.int64()))


def _parts_disjoint(infos: list[SegmentInfo], snap: tuple[list[Any], Any, int] | None,
                    start_ns: int | None, end_ns: int | None) -> bool:
    """Can no two parts of a read (segments overlapping [start, end), the buffer) hold the
    same time? From the segments' time ranges and the buffered times."""
    lo = MIN_TIME if start_ns is None else start_ns
    hi = MAX_TIME if end_ns is None else end_ns - 1
    spans = [(max(lo, i.min_time_ns), min(hi, i.max_time_ns)) for i in infos if i.rows]
    if snap is not None:
        times = [c.time for c in snap[0] if c.rows]
        if times:
            spans.append((max(lo, min(int(t.min()) for t in times)), min(hi, max(int(t.max()) for t in times))))
    spans = sorted((a, b) for a, b in spans if a <= b)
    return all(b[0] > a[1] for a, b in zip(spans, spans[1:], strict=False))


def _tail_of_runs(
    table: pa.Table, keys: list[str], offsets: np.ndarray, fields: list[str], n: int
) -> tuple[pa.Table, list[str], np.ndarray]:
    """The last n rows of each run (series) with at least one of `fields` non-null."""
    present = np.zeros(table.num_rows, dtype=np.bool_) if fields else np.ones(table.num_rows, dtype=np.bool_)
    for f in fields:
        present |= np.asarray(table.column(f).is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    run_of_row = np.repeat(np.arange(len(keys)), np.diff(offsets))
    idx = np.flatnonzero(present)
    runs = run_of_row[idx]
    from_end = (np.searchsorted(runs, runs, side="right") - 1) - np.arange(len(idx))
    kept = idx[from_end < n]
    kept_runs = run_of_row[kept]
    uniq, counts = np.unique(kept_runs, return_counts=True)
    new_offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return table.take(pa.array(kept, type=pa.int64())), [keys[r] for r in uniq.tolist()], new_offsets


def _tail_by_series(table: pa.Table, measurement: str, tag_keys: list[str], fields: list[str], n: int) -> pa.Table:
    """_tail_of_runs on a merged table sorted by (series key, time), series found from its tags."""
    if table.num_rows == 0:
        return table
    so = series_order(table, measurement, tag_keys, time_array(table))
    sid = so.series_id
    starts = np.flatnonzero(np.concatenate(([True], sid[1:] != sid[:-1])))
    offsets = np.append(starts, len(sid)).astype(np.int64)
    keys = [str(i) for i in range(len(starts))]
    return _tail_of_runs(table, keys, offsets, fields, n)[0]
