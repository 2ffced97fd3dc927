"""StorageEngine: the facade ingest/query/sync use. Validates writes against the catalog, logs them
through the group-commit WAL, applies them to the buffer, answers reads; recovery on open()."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pyarrow as pa

from storage.batch import Batch, FieldType, TagSet
from storage.buffer import FrozenMeasurement, WriteBuffer, assemble, empty_table
from storage.catalog import (
    DEFAULT_RP,
    Catalog,
    DatabaseEntry,
    RetentionPolicy,
    default_shard_group_duration,
)
from storage.fsio import CorruptFileError, quarantine
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


@dataclass
class StorageConfig:
    data_dir: Path
    fsync: str = "always"  # "always" | "interval:<ms>" | "never"
    wal_file_bytes: int = 64 * 2**20
    memory_budget_bytes: int = 256 * 2**20
    write_queue_bytes: int = 32 * 2**20
    disk_budget_bytes: int | None = None


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
        self._replayed_points = 0
        recovery = recover(self._wal_dir, self._quarantine_dir, self._replay_record)
        quarantined.extend(recovery.quarantined)
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
        report = RecoveryReport(recovery.records, self._replayed_points, recovery.truncated_tail_bytes, quarantined)
        log.info("storage opened at %s: %s", self._data_dir, report)
        return report

    def close(self) -> None:
        """Write and fsync everything queued, save the catalog, release the directory lock."""
        if self._state != "open":
            return
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
            if rec.seq > cat.applied_seq:
                cat.apply_ddl(op)
            self._apply_ddl_to_buffer(op)
            if op["op"] == "flushed":  # rows replayed before the marker are in a segment
                self._buffer.discard_through(op["db"], op["measurement"], int(op["seq"]))
            return
        db, _rp, batches = decode_write(rec.payload)
        newer = rec.seq > cat.applied_seq
        if db not in cat.databases:
            if not newer:
                return  # dropped after this record (the checkpoint knows)
            cat.ensure_database(db)  # rebuilding a lost catalog
        for b in batches:
            if newer:
                cat.learn(db, b.measurement, b.field_types(), b.tag_keys())
            schema = cat.databases[db].measurements.get(b.measurement)
            if schema is None or rec.seq <= schema.flushed_seq:
                continue
            self._buffer.append(db, b, rec.seq, rec.file_no, merge=False)
            self._replayed_points += len(b)

    # --- writer-thread callbacks ----------------------------------------------------------------
    def _apply_group(self, group: list[PendingRecord]) -> None:
        release_wal = False
        for rec in group:
            if rec.rtype == RecordType.WRITE:
                db, kept, outcome = rec.context
                for b in kept:
                    self._buffer.append(db, b, rec.seq, rec.file_no)
                    if self._durable.learn(db, b.measurement, b.field_types(), b.tag_keys()):
                        self._catalog_dirty = True
                self.points_written += outcome.points_written
                rec.result = outcome
            else:
                op, frozen = rec.context
                self._durable.apply_ddl(op)
                self._apply_ddl_to_buffer(op)
                if frozen is not None:
                    self._buffer.release(frozen)
                    release_wal = True
                self._catalog_dirty = True
                rec.result = 0
            self._durable.applied_seq = rec.seq
        if self._catalog_dirty:
            self._durable.save(self._catalog_path, sync=self._policy.mode != "never" or release_wal)
            self.catalog_saves += 1
            self._catalog_dirty = False
        if release_wal:
            assert self._writer is not None
            oldest = self._buffer.oldest_wal_file()
            through = (oldest if oldest is not None else self._writer.file_no) - 1
            deleted = self._writer.release_through(through)
            group[-1].result = len(deleted)

    def _apply_ddl_to_buffer(self, op: dict[str, Any]) -> None:
        if op["op"] == "drop_db":
            self._buffer.drop_database(op["db"])
        elif op["op"] == "drop_measurement":
            self._buffer.drop_measurement(op["db"], op["measurement"])

    def _write_failed(self, exc: BaseException) -> BaseException:
        return StorageError(f"WAL write failed in {self._wal_dir}: {exc}")

    # --- writes --------------------------------------------------------------------------------
    def _require_open(self) -> GroupCommitter:
        if self._state != "open" or self._committer is None:
            raise StorageError(f"storage engine for {self._data_dir} is not open ({self._state})")
        return self._committer

    def _db(self, db: str) -> DatabaseEntry:
        entry = self._live.databases.get(db)
        if entry is None:
            raise DatabaseNotFound(db)
        return entry

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
                epoch = self._live.ddl_epoch
                kept, dropped, errors = self._validate(db, policy, batches)
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
                rec = PendingRecord(RecordType.WRITE, payload, flags, len(payload), (db, kept, outcome))
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
            raise RetentionPolicyNotFound("(default)")
        return policy

    def _validate(self, db: str, policy: RetentionPolicy, batches: list[Batch]) -> tuple[list[Batch], int, list[str]]:
        """Drop rows beyond the retention policy and rows carrying a field of the wrong type
        (InfluxDB partial write); assign types to new fields. Vectorised per column."""
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
            conflicts = self._live.assign_types(db, b.measurement, types)
            schema = self._live.databases[db].measurements[b.measurement]
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
            self._overloaded(f"write buffer full ({used} of {self.config.memory_budget_bytes} bytes)", 1.0)
        reason = self._disk_problem(payload_bytes)
        if reason is not None:
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
            if self.config.disk_budget_bytes is not None:
                self._dir_bytes = _tree_bytes(self._data_dir)
            self._disk_checked = now
        grown = max(0, self._writer.total_bytes() - self._wal_bytes_at_scan) + incoming
        if self._fs_avail - grown < _FS_RESERVE_FRACTION * self._fs_total:
            return f"filesystem of {self._data_dir} is nearly full ({self._fs_avail - grown} bytes free)"
        budget = self.config.disk_budget_bytes
        if budget is not None and self._dir_bytes + grown > budget:
            return f"disk budget of {budget} bytes for {self._data_dir} reached ({self._dir_bytes + grown} used)"
        return None

    # --- DDL -----------------------------------------------------------------------------------
    def _log_ddl(self, op: dict[str, Any], frozen: FrozenMeasurement | None = None) -> Any:
        """Apply op to the live catalog, log it (always fsynced) and wait until it is applied
        and the catalog saved. Caller holds self._lock and has validated op."""
        committer = self._require_open()
        self._live.apply_ddl(op)
        payload = msgpack.packb(op, use_bin_type=True)
        rec = PendingRecord(RecordType.DDL, payload, 0, len(payload), (op, frozen), force_sync=True)
        try:
            committer.enqueue(rec)
        except WalClosed as exc:
            raise StorageError(str(exc)) from exc
        return rec.future

    def create_database(self, name: str) -> None:
        if not name:
            raise StorageError("database name required")
        with self._lock:
            if name in self._live.databases:
                return
            fut = self._log_ddl({"op": "create_db", "db": name})
        fut.result()

    def drop_database(self, name: str) -> None:
        with self._lock:
            if name not in self._live.databases:
                return
            fut = self._log_ddl({"op": "drop_db", "db": name})
        fut.result()

    def databases(self) -> list[str]:
        with self._lock:
            return sorted(self._live.databases)

    def has_database(self, name: str) -> bool:
        with self._lock:
            return name in self._live.databases

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
        rp = RetentionPolicy(name, duration_ns, shard_group_duration_ns or default_shard_group_duration(duration_ns), replication, default)
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
        """Idempotent, as InfluxDB 1.x (dropping an unknown policy is not an error)."""
        with self._lock:
            if name not in self._db(db).rps:
                return
            fut = self._log_ddl({"op": "drop_rp", "db": db, "rp_name": name})
        fut.result()

    def drop_measurement(self, db: str, measurement: str) -> None:
        """Buffered rows and schema gone, durably. Unknown measurement: no error."""
        with self._lock:
            entry = self._db(db)
            if measurement not in entry.measurements and measurement not in self._buffer.measurements(db):
                return
            fut = self._log_ddl({"op": "drop_measurement", "db": db, "measurement": measurement})
        fut.result()

    # --- flush hooks for the segment layer -------------------------------------------------------
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
        return int(fut.result())

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
    ) -> pa.Table:
        with self._lock:
            schema = self._db(db).measurements.get(measurement)
            types = dict(schema.fields) if schema else {}
            tag_keys = sorted(schema.tag_keys) if schema else []
        snap = self._buffer.snapshot(db, measurement)
        if snap is None:
            return empty_table(types, tag_keys, columns)
        chunks, index, n_series = snap
        return assemble(
            chunks, index, n_series, types, tag_keys,
            start_ns=start_ns, end_ns=end_ns, columns=columns, tag_filter=tag_filter,
        )

    def measurements(self, db: str) -> list[str]:
        with self._lock:
            return sorted(self._db(db).measurements)

    def field_types(self, db: str, measurement: str) -> dict[str, FieldType]:
        with self._lock:
            schema = self._db(db).measurements.get(measurement)
            return dict(sorted(schema.fields.items())) if schema else {}

    def tag_keys(self, db: str, measurement: str) -> list[str]:
        with self._lock:
            schema = self._db(db).measurements.get(measurement)
            return sorted(schema.tag_keys) if schema else []

    def series(self, db: str, measurement: str) -> list[TagSet]:
        with self._lock:
            self._db(db)
        return self._buffer.series(db, measurement)

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
        }


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total
