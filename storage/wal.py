"""Write-ahead log: numbered append-only files of CRC32C-framed records, the group-commit writer
thread (one write + one fsync per group), recovery scanning, and release of covered files."""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import zstandard

from storage.fsio import checksum, fsync_dir, quarantine

log = logging.getLogger("edgets.storage.wal")

WAL_MAGIC = b"EDGTSWAL"
WAL_VERSION = 1
# file header: magic(8) version(u16) reserved(u16) file_no(u32) first_seq(u64) crc32c(u32)
FILE_HEADER = struct.Struct("<8sHHIQ")
FILE_HEADER_BYTES = FILE_HEADER.size + 4
# record header: payload_len(u32) crc32c(u32) seq(u64) type(u8) flags(u8) reserved(u16)
RECORD_HEADER = struct.Struct("<IIQBBH")
RECORD_HEADER_BYTES = RECORD_HEADER.size
MAX_RECORD_BYTES = 1 << 30
FLAG_ZSTD = 1
_COMPRESS_MIN_BYTES = 4096
_RESYNC_SEQS = 8


class RecordType(IntEnum):
    WRITE = 1  # msgpack {db, rp, batches}; see docs/wal-format.md
    DDL = 2  # msgpack catalog op {op, db, ...}


def wal_file_name(file_no: int) -> str:
    return f"{file_no:08d}.wal"


def parse_wal_file_name(name: str) -> int | None:
    stem, dot, ext = name.partition(".")
    if ext != "wal" or not dot or not stem.isdigit():
        return None
    return int(stem)


def file_header(file_no: int, first_seq: int) -> bytes:
    head = FILE_HEADER.pack(WAL_MAGIC, WAL_VERSION, 0, file_no, first_seq)
    return head + struct.pack("<I", checksum(head))


def frame_record(seq: int, rtype: int, flags: int, payload: bytes) -> bytes:
    """One record: header + payload; the CRC covers length, seq, type, flags and payload."""
    head = RECORD_HEADER.pack(len(payload), 0, seq, rtype, flags, 0)
    crc = checksum(payload, checksum(head[8:], checksum(head[:4])))
    return RECORD_HEADER.pack(len(payload), crc, seq, rtype, flags, 0) + payload


_zstd_local = threading.local()


def compress_payload(payload: bytes) -> tuple[bytes, int]:
    """zstd level 1 if the payload is >= 4 KiB and shrinks by >= 20 %; returns (bytes, flags)."""
    if len(payload) < _COMPRESS_MIN_BYTES:
        return payload, 0
    comp = getattr(_zstd_local, "c", None)
    if comp is None:
        comp = _zstd_local.c = zstandard.ZstdCompressor(level=1)
    packed = comp.compress(payload)
    if len(packed) <= 0.8 * len(payload):
        return packed, FLAG_ZSTD
    return payload, 0


def decompress_payload(data: bytes, flags: int) -> bytes:
    if flags & FLAG_ZSTD:
        dec = getattr(_zstd_local, "d", None)
        if dec is None:
            dec = _zstd_local.d = zstandard.ZstdDecompressor()
        return dec.decompress(data)
    return data


@dataclass(frozen=True, slots=True)
class FsyncPolicy:
    mode: str  # "always" | "interval" | "never"
    interval_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> FsyncPolicy:
        if text in ("always", "never"):
            return cls(text)
        if text.startswith("interval:"):
            ms = text.partition(":")[2]
            if ms.isdigit() and int(ms) > 0:
                return cls("interval", int(ms) / 1000.0)
        raise ValueError(f"fsync policy must be 'always', 'interval:<ms>' or 'never', got {text!r}")


# --------------------------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class WalRecord:
    file_no: int
    offset: int
    seq: int
    rtype: int
    payload: bytes  # decompressed


@dataclass
class WalRecovery:
    records: int = 0
    truncated_tail_bytes: int = 0
    quarantined: list[str] = field(default_factory=list)
    next_seq: int = 1
    next_file_no: int = 1
    files: dict[int, int] = field(default_factory=dict)  # surviving file_no -> size


def list_wal_files(wal_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for p in wal_dir.iterdir():
        no = parse_wal_file_name(p.name)
        if no is not None and p.is_file():
            out.append((no, p))
    return sorted(out)


def _valid_record_at(data: bytes, off: int) -> bool:
    if off < FILE_HEADER_BYTES or off + RECORD_HEADER_BYTES > len(data):
        return False
    length, crc = struct.unpack_from("<II", data, off)
    end = off + RECORD_HEADER_BYTES + length
    if length > MAX_RECORD_BYTES or end > len(data):
        return False
    body = memoryview(data)[off:end]
    return crc == checksum(body[RECORD_HEADER_BYTES:], checksum(body[8:RECORD_HEADER_BYTES], checksum(body[:4])))


def _valid_record_after(data: bytes, bad_off: int, last_seq: int) -> int | None:
    """Offset of a valid record after bad_off (searching by the next few sequence numbers)."""
    for seq in range(last_seq + 1, last_seq + 1 + _RESYNC_SEQS):
        needle = struct.pack("<Q", seq)
        pos = data.find(needle, bad_off + 1)
        while pos >= 0:
            cand = pos - 8
            if cand > bad_off and _valid_record_at(data, cand):
                return cand
            pos = data.find(needle, pos + 1)
    return None


def recover(
    wal_dir: Path,
    quarantine_dir: Path,
    apply: Callable[[WalRecord], None],
) -> WalRecovery:
    """Replay every WAL file in order through `apply`.

    Torn tail of the last file (incomplete record, bad CRC with no valid record after it,
    zero fill) -> truncated and counted. A bad record followed by valid ones, any bad record in
    an earlier file, or a record `apply` rejects -> the whole file is copied to quarantine with a
    .reason file, and the live file is cut at the bad record: the records before it were valid
    and replayed, so they must survive the next restart too. A bad file header -> the file is
    moved to quarantine (nothing in it can be trusted).
    """
    result = WalRecovery()
    files = list_wal_files(wal_dir)
    max_seq = 0
    max_file_no = 0
    for index, (file_no, path) in enumerate(files):
        max_file_no = max(max_file_no, file_no)
        is_last = index == len(files) - 1
        data = path.read_bytes()
        problem = _check_header(data, file_no)
        if problem is not None:
            if is_last and (len(data) < FILE_HEADER_BYTES or not any(data)):
                # crash while creating the file: nothing in it was ever acknowledged
                result.truncated_tail_bytes += len(data)
                path.unlink()
                fsync_dir(wal_dir)
                continue
            _quarantine(result, path, quarantine_dir, 0, problem)
            continue
        first_seq = FILE_HEADER.unpack_from(data, 0)[4]
        max_seq = max(max_seq, first_seq - 1)
        off = FILE_HEADER_BYTES
        failure: tuple[int, str] | None = None
        while off < len(data):
            reason = _record_problem(data, off)
            if reason is not None:
                failure = (off, reason)
                break
            length, _crc, seq, rtype, flags, _ = RECORD_HEADER.unpack_from(data, off)
            start = off + RECORD_HEADER_BYTES
            try:
                payload = decompress_payload(data[start : start + length], flags)
                apply(WalRecord(file_no, off, seq, rtype, payload))
            except Exception as exc:  # noqa: BLE001 - any undecodable record quarantines the file
                failure = (off, f"record seq {seq} could not be replayed: {type(exc).__name__}: {exc}")
                break
            result.records += 1
            max_seq = max(max_seq, seq)
            off = start + length
        if failure is None:
            result.files[file_no] = len(data)
            continue
        bad_off, reason = failure
        torn = (
            is_last
            and "could not be replayed" not in reason
            and _valid_record_after(data, bad_off, max_seq) is None
        )
        if torn:
            result.truncated_tail_bytes += len(data) - bad_off
            log.warning("WAL %s: torn tail at offset %d (%s): truncated %d bytes", path, bad_off, reason, len(data) - bad_off)
            with open(path, "r+b") as fh:
                fh.truncate(bad_off)
                os.fsync(fh.fileno())
            result.files[file_no] = bad_off
        else:
            # the whole file goes to quarantine as evidence; the valid records before the damage
            # were replayed, so they stay in the live WAL (the file is cut at the bad record)
            _quarantine(result, path, quarantine_dir, bad_off, reason, keep_prefix=True)
            result.files[file_no] = bad_off
    result.next_seq = max_seq + 1
    result.next_file_no = max_file_no + 1
    return result


def _check_header(data: bytes, file_no: int) -> str | None:
    if len(data) < FILE_HEADER_BYTES:
        return f"file is {len(data)} bytes, shorter than the {FILE_HEADER_BYTES}-byte header"
    magic, version, _r, hdr_file_no, _first = FILE_HEADER.unpack_from(data, 0)
    (crc,) = struct.unpack_from("<I", data, FILE_HEADER.size)
    if magic != WAL_MAGIC:
        return f"bad magic {magic!r}"
    if crc != checksum(data[: FILE_HEADER.size]):
        return "file header checksum mismatch"
    if version != WAL_VERSION:
        return f"unsupported WAL version {version}"
    if hdr_file_no != file_no:
        return f"header says file {hdr_file_no}, name says {file_no}"
    return None


def _record_problem(data: bytes, off: int) -> str | None:
    if off + RECORD_HEADER_BYTES > len(data):
        return f"incomplete record header ({len(data) - off} of {RECORD_HEADER_BYTES} bytes)"
    length, crc, seq, rtype, _flags, _r = RECORD_HEADER.unpack_from(data, off)
    end = off + RECORD_HEADER_BYTES + length
    if length > MAX_RECORD_BYTES or end > len(data):
        return f"record length {length} runs past end of file ({len(data)} bytes)"
    if not _valid_record_at(data, off):
        return f"record checksum mismatch (stored {crc:#010x}, seq {seq})"
    if rtype not in (RecordType.WRITE, RecordType.DDL):
        return f"unknown record type {rtype}"
    return None


def _quarantine(
    result: WalRecovery, path: Path, quarantine_dir: Path, offset: int, reason: str, *, keep_prefix: bool = False
) -> None:
    target = quarantine(path, quarantine_dir, f"offset {offset}: {reason}", keep_original=keep_prefix)
    if keep_prefix:
        with open(path, "r+b") as fh:
            fh.truncate(offset)
            os.fsync(fh.fileno())
        text = f"{path}: offset {offset}: {reason} (file copied to {target}; live WAL cut at offset {offset})"
    else:
        text = f"{path}: offset {offset}: {reason} (moved to {target})"
    log.error("WAL quarantined: %s", text)
    result.quarantined.append(text)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
class WalWriter:
    """Appends framed records to the current numbered file, rolling past `file_bytes`.
    Used by one thread at a time (the group-commit thread)."""

    def __init__(self, wal_dir: Path, file_no: int, next_seq: int, file_bytes: int, existing: dict[int, int]) -> None:
        self.wal_dir = wal_dir
        self.file_bytes = file_bytes
        self.next_seq = next_seq
        self.files: dict[int, int] = dict(existing)  # file_no -> size
        self.fsyncs = 0
        self._lock = threading.Lock()  # guards self.files against release_through from other threads
        self._fd = -1
        self.file_no = 0
        self._open_new(file_no)

    def _open_new(self, file_no: int) -> None:
        path = self.wal_dir / wal_file_name(file_no)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        header = file_header(file_no, self.next_seq)
        try:
            _write_all(fd, header)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        fsync_dir(self.wal_dir)
        self._fd = fd
        self.file_no = file_no
        with self._lock:
            self.files[file_no] = len(header)

    def append(self, records: list[tuple[int, int, bytes]]) -> list[tuple[int, int]]:
        """Write (type, flags, payload) records; return (seq, file_no) for each. On an OSError
        the current file is cut back to its last complete record and the error re-raised."""
        out: list[tuple[int, int]] = []
        parts: list[bytes] = []
        size = self.files[self.file_no]
        pending = 0
        try:
            for rtype, flags, payload in records:
                framed_len = RECORD_HEADER_BYTES + len(payload)
                if size + pending > FILE_HEADER_BYTES and size + pending + framed_len > self.file_bytes:
                    self._write_parts(parts)
                    size += pending
                    parts, pending = [], 0
                    self._roll()
                    size = self.files[self.file_no]
                parts.append(frame_record(self.next_seq, rtype, flags, payload))
                pending += framed_len
                out.append((self.next_seq, self.file_no))
                self.next_seq += 1
            self._write_parts(parts)
        except OSError:
            self._cut_back()
            raise
        return out

    def _write_parts(self, parts: list[bytes]) -> None:
        if not parts:
            return
        data = b"".join(parts)
        _write_all(self._fd, data)
        with self._lock:
            self.files[self.file_no] += len(data)

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self._fd, self.files[self.file_no])
        except OSError as exc:
            log.error("WAL %s: could not truncate after failed write: %s", wal_file_name(self.file_no), exc)

    def _roll(self) -> None:
        os.fdatasync(self._fd)  # always: earlier files are complete before a later one exists
        self.fsyncs += 1
        os.close(self._fd)
        self._fd = -1
        self._open_new(self.file_no + 1)

    def sync(self) -> None:
        os.fdatasync(self._fd)
        self.fsyncs += 1

    def roll_after_error(self) -> None:
        """Start a fresh file (after an fsync error the old file's page-cache state is unknown)."""
        try:
            os.close(self._fd)
        except OSError:
            pass
        self._fd = -1
        self._open_new(self.file_no + 1)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def total_bytes(self) -> int:
        with self._lock:
            return sum(self.files.values())

    def file_count(self) -> int:
        with self._lock:
            return len(self.files)

    def release_through(self, file_no: int) -> list[int]:
        """Delete WAL files numbered <= file_no (never the one being written). The caller
        guarantees their records are durable elsewhere (segments + catalog). Returns deleted."""
        with self._lock:
            doomed = [n for n in sorted(self.files) if n <= file_no and n != self.file_no]
        for n in doomed:
            (self.wal_dir / wal_file_name(n)).unlink(missing_ok=True)
            with self._lock:
                del self.files[n]
        if doomed:
            fsync_dir(self.wal_dir)
        return doomed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# --------------------------------------------------------------------------------------------
# Group commit
# --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class PendingRecord:
    """One submission waiting for the WAL. `context` is the caller's data for `apply`;
    `apply` stores the future's value in `result`."""

    rtype: int
    payload: bytes
    flags: int
    queue_bytes: int
    context: Any
    force_sync: bool = False
    future: Future = field(default_factory=Future)
    seq: int = 0
    file_no: int = 0
    result: Any = None


class WalClosed(Exception):
    pass


class GroupCommitter:
    """The one WAL writer thread: takes every waiting record, writes them in one go, fsyncs once
    (per policy), calls `apply(group)` (makes them visible), then completes their futures."""

    def __init__(
        self,
        writer: WalWriter,
        policy: FsyncPolicy,
        apply: Callable[[list[PendingRecord]], None],
        on_write_error: Callable[[BaseException], BaseException],
        max_group_bytes: int = 16 * 2**20,
    ) -> None:
        self.writer = writer
        self.policy = policy
        self._apply = apply
        self._on_write_error = on_write_error
        self._max_group_bytes = max_group_bytes
        self._cond = threading.Condition()
        self._queue: deque[PendingRecord] = deque()
        self.queued_bytes = 0
        self._closing = False
        self._dirty = False
        self._last_sync = time.monotonic()
        self.group_commits = 0
        self.records_written = 0
        self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name="edgets-wal-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def enqueue(self, rec: PendingRecord) -> None:
        with self._cond:
            if self._closing:
                raise WalClosed("storage engine is closed")
            self._queue.append(rec)
            self.queued_bytes += rec.queue_bytes
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()
        self.writer.close()

    def _take_group(self) -> list[PendingRecord] | None:
        """Block until records are waiting (None = closing and drained); run interval fsyncs."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                timeout = None
                if self._dirty and self.policy.mode == "interval":
                    timeout = self._last_sync + self.policy.interval_s - time.monotonic()
                    if timeout <= 0:
                        return []
                self._cond.wait(timeout)
            group, size = [], 0
            while self._queue and (not group or size + self._queue[0].queue_bytes <= self._max_group_bytes):
                rec = self._queue.popleft()
                group.append(rec)
                size += rec.queue_bytes
            return group

    def _run(self) -> None:
        while True:
            group = self._take_group()
            if group is None:
                break
            if not group:
                self._sync_quietly()
                continue
            self._commit(group)
        if self._dirty:
            self._sync_quietly()

    def _sync_quietly(self) -> None:
        try:
            self.writer.sync()
            self._dirty = False
            self._last_sync = time.monotonic()
        except OSError as exc:
            log.error("WAL fsync failed: %s", exc)

    def _commit(self, group: list[PendingRecord]) -> None:
        try:
            placed = self.writer.append([(r.rtype, r.flags, r.payload) for r in group])
            for rec, (seq, file_no) in zip(group, placed, strict=True):
                rec.seq, rec.file_no = seq, file_no
            must_sync = self.policy.mode == "always" or any(r.force_sync for r in group)
            if self.policy.mode == "interval" and time.monotonic() - self._last_sync >= self.policy.interval_s:
                must_sync = True
            if must_sync:
                try:
                    self.writer.sync()
                except OSError:
                    self.writer.roll_after_error()
                    raise
                self._dirty = False
                self._last_sync = time.monotonic()
            elif self.policy.mode != "never":
                self._dirty = True
        except Exception as exc:  # noqa: BLE001 - the writer thread must survive (e.g. ENOSPC)
            self.write_errors += 1
            log.error("WAL write of %d records failed: %s", len(group), exc)
            self._finish(group, self._on_write_error(exc))
            return
        self.group_commits += 1
        self.records_written += len(group)
        try:
            self._apply(group)
        except Exception as exc:  # noqa: BLE001
            log.exception("applying WAL records to the buffer failed")
            self._finish(group, exc)
            return
        self._finish(group, None)

    def _finish(self, group: list[PendingRecord], exc: BaseException | None) -> None:
        with self._cond:
            self.queued_bytes -= sum(r.queue_bytes for r in group)
        for rec in group:
            if exc is None:
                rec.future.set_result(rec.result)
            else:
                rec.future.set_exception(exc)
