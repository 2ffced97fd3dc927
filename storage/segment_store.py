"""The directory of sealed segments: seq assignment, listing, pruned reads, quarantine, and
deletion guarded by a callback (the sync ledger's is_acked)."""

from __future__ import annotations

import logging
import re
import struct
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pyarrow as pa

from storage.batch import MAX_TIME_NS, MIN_TIME_NS
from storage.chunk_cache import ChunkCache
from storage.fsio import (
    CorruptFileError,
    fsync_dir,
    pack_blob,
    quarantine,
    unpack_blob,
    write_atomic,
)
from storage.segment_format import (
    ORIGIN_DELETE,
    ORIGIN_DROP,
    ORIGIN_FLUSH,
    FieldCondition,
    SegmentCorrupt,
    SegmentFooter,
    SegmentInfo,
    SegmentRows,
    read_footer,
    read_segment,
    read_segment_info,
    read_segment_rows,
    rows_to_decode,
    time_array,
    write_segment,
)

log = logging.getLogger("edgets.storage.segments")

SEGMENTS_DIR = "segments"
QUARANTINE_DIR = "quarantine"
NEXT_SEQ_FILE = "next_seq"
NEXT_SEQ_MAGIC = b"EDGTSSEQ"
SEGMENT_NAME = re.compile(r"^(\d{16})-(-?\d+)-(-?\d+)\.seg$")
_SAFE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_READ_ATTEMPTS = 3
_T = TypeVar("_T")


def encode_dir_name(name: str) -> str:
    """A database / measurement name as one safe path component (%XX for anything else)."""
    return "".join(ch if ch in _SAFE_NAME_CHARS else "".join(f"%{b:02X}" for b in ch.encode())
                   for ch in name) or "%"


def segment_file_name(seq: int, min_time_ns: int, max_time_ns: int) -> str:
    return f"{seq:016d}-{min_time_ns}-{max_time_ns}.seg"


class SegmentStore:
    """root/segments/<db>/<measurement>/<seq:016d>-<mintime>-<maxtime>.seg, plus root/next_seq.

    Thread-safe: an in-memory index (seq -> SegmentInfo) guarded by a lock; files are immutable.
    """

    def __init__(self, root: Path, chunk_cache_bytes: int = 0) -> None:
        self.root = Path(root)
        self.chunk_cache = ChunkCache(chunk_cache_bytes)  # decoded chunks of query reads
        self.segments_dir = self.root / SEGMENTS_DIR
        self.quarantine_dir = self.root / QUARANTINE_DIR
        self._lock = threading.RLock()
        self._seal_lock = threading.Lock()
        self._index: dict[int, SegmentInfo] = {}
        self._replaced: set[int] = set()
        self._visible_cache: list[SegmentInfo] | None = None  # seq order; rebuilt after a change
        self._by_measurement: dict[tuple[str, str], list[SegmentInfo]] = {}
        self._removals: dict[tuple[str, str], int] = {}  # see removal_epoch
        self._next_seq = 1
        self._guard: Callable[[SegmentInfo], bool] = lambda info: True
        self._listeners: list[Callable[[SegmentInfo], None]] = []
        self._footers: dict[int, SegmentFooter] = {}  # seq -> checked footer (files are immutable)
        self.quarantined = 0
        self.footer_parses = 0

    # ------------------------------------------------------------ open / recovery

    def open(self) -> list[str]:
        """Scan the directory: remove .tmp leftovers, quarantine corrupt files, finish interrupted
        compactions (inputs of a present merged segment are removed). Never raises."""
        problems: list[str] = []
        try:
            self.segments_dir.mkdir(parents=True, exist_ok=True)
            counter_tmp = self.root / (NEXT_SEQ_FILE + ".tmp")
            if counter_tmp.exists():
                problems.append(f"{counter_tmp}: removed unfinished seq counter update")
                self._unlink(counter_tmp)
            index: dict[int, SegmentInfo] = {}
            max_seq = 0
            for path in sorted(self.segments_dir.rglob("*")):
                if not path.is_file():
                    continue
                if path.name.endswith(".tmp"):
                    problems.append(f"{path}: removed unfinished temporary file")
                    self._unlink(path)
                    continue
                m = SEGMENT_NAME.match(path.name)
                if not m:
                    continue
                max_seq = max(max_seq, int(m.group(1)))
                try:
                    info = read_segment_info(path)
                    if info.seq != int(m.group(1)):
                        raise SegmentCorrupt(path, 0, f"footer seq {info.seq} != file name seq {m.group(1)}")
                except (SegmentCorrupt, OSError) as exc:
                    problems.append(self._quarantine(path, str(exc)))
                    continue
                if info.seq in index:
                    problems.append(self._quarantine(path, f"duplicate seq {info.seq} (also {index[info.seq].path})"))
                    continue
                index[info.seq] = info
            replaced = {s for info in index.values() for s in info.replaces}
            for seq in sorted(replaced & index.keys()):
                old = index.pop(seq)
                problems.append(f"{old.path}: removed, replaced by a compacted segment")
                self._unlink(old.path)
            with self._lock:
                self._index = index
                self._footers = {}
                self._replaced = set()
                self._index_changed()
                self._next_seq = max(max_seq + 1, self._load_next_seq(problems), 1)
        except Exception as exc:  # noqa: BLE001 - open() reports, never raises
            problems.append(f"{self.root}: segment store scan failed: {exc!r}")
        for p in problems:
            log.warning("segment store open: %s", p)
        return problems

    def _load_next_seq(self, problems: list[str]) -> int:
        path = self.root / NEXT_SEQ_FILE
        try:
            _, payload = unpack_blob(path.read_bytes(), NEXT_SEQ_MAGIC, 1, path)
            return int(struct.unpack("<Q", payload)[0])
        except FileNotFoundError:
            return 1
        except (CorruptFileError, struct.error) as exc:
            problems.append(f"{path}: unreadable seq counter, derived from files instead: {exc}")
            return 1

    def _store_next_seq(self, value: int) -> None:
        write_atomic(self.root / NEXT_SEQ_FILE, pack_blob(NEXT_SEQ_MAGIC, 1, struct.pack("<Q", value)))

    def _quarantine(self, path: Path, reason: str) -> str:
        try:
            target = quarantine(path, self.quarantine_dir, reason)
            self.quarantined += 1
            return f"{path}: quarantined to {target}: {reason}"
        except OSError as exc:
            return f"{path}: could not quarantine ({exc}): {reason}"

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink()
            fsync_dir(path.parent)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------ sealing

    def directory_of(self, database: str, measurement: str) -> Path:
        return self.segments_dir / encode_dir_name(database) / encode_dir_name(measurement)

    def seal(self, database: str, measurement: str, table: pa.Table, *,
             tag_keys: Sequence[str] | None = None, replaces: Sequence[int] = (),
             precedence: int | None = None, origin: str = ORIGIN_FLUSH, drop: str = "",
             drop_below: int = 0, tombstone_range: tuple[int, int] | None = None) -> SegmentInfo:
        """Write `table` as a new durable segment with the next store-wide seq (its precedence
        is that seq unless given: a merged segment keeps the highest precedence of its inputs).

        `origin` goes to the footer (why it was sealed). An empty `table` is sealed only as a
        tombstone: origin "delete" with `replaces` (a DELETE that removed every row; time range
        = that of the replaced segments still indexed, or `tombstone_range`), or origin "drop"
        with a `drop` scope, `drop_below` and `tombstone_range` (DROP MEASUREMENT / DATABASE)."""
        if table.num_rows == 0 or drop:
            tombstone_range = self._tombstone_range(database, measurement, table, replaces, origin,
                                                    drop, tombstone_range)
        else:
            tombstone_range = None  # rows present: the range is theirs
        with self._seal_lock:
            with self._lock:
                seq = self._next_seq
                self._next_seq += 1
            self._store_next_seq(seq + 1)  # durable before the seq is used: never reused
            directory = self.directory_of(database, measurement)
            if not directory.exists():
                directory.mkdir(parents=True, exist_ok=True)
                fsync_dir(directory.parent)
                fsync_dir(directory.parent.parent)
            if tombstone_range is not None:
                lo, hi = tombstone_range
            else:
                times = time_array(table)
                lo, hi = int(times.min()), int(times.max())
            final = directory / segment_file_name(seq, lo, hi)
            info = write_segment(final, database=database, measurement=measurement, seq=seq,
                                 table=table, tag_keys=tag_keys, replaces=replaces,
                                 precedence=precedence, origin=origin, drop=drop,
                                 drop_below=drop_below, tombstone_range=tombstone_range)
            with self._lock:
                self._index[seq] = info
                self._replaced.update(info.replaces)
                self._index_changed()
            for listener in list(self._listeners):
                listener(info)
        return info

    def _tombstone_range(self, database: str, measurement: str, table: pa.Table,
                         replaces: Sequence[int], origin: str, drop: str,
                         given: tuple[int, int] | None) -> tuple[int, int]:
        what = f"{database}.{measurement}"
        if table.num_rows:
            raise ValueError(f"a DROP tombstone of {what} holds no rows, got {table.num_rows}")
        if origin == ORIGIN_DELETE and replaces and not drop:
            if given is not None:
                return given
            with self._lock:
                hidden = [self._index[s] for s in replaces if s in self._index]
            if not hidden:
                raise ValueError(f"tombstone of {what}: none of the replaced seqs {list(replaces)} "
                                 f"is indexed and no time range was given")
            return min(i.min_time_ns for i in hidden), max(i.max_time_ns for i in hidden)
        if origin == ORIGIN_DROP and drop and given is not None:
            return given
        raise ValueError(f"refusing to seal an empty segment for {what}: only a tombstone "
                         f"(origin 'delete' with replaces, or origin 'drop' with a scope and "
                         f"time range) may be empty; got origin {origin!r}, replaces "
                         f"{list(replaces)}, drop {drop!r}")

    def next_seq(self) -> int:
        """The seq the next seal gets (every present or future segment sealed later is >= it)."""
        with self._lock:
            return self._next_seq

    def add_seal_listener(self, listener: Callable[[SegmentInfo], None]) -> None:
        """Called (in the sealing thread) after every seal, e.g. to wake the sync sender."""
        self._listeners.append(listener)

    # ------------------------------------------------------------ listing

    def _index_changed(self) -> None:
        """Forget the cached visible lists (caller holds the lock)."""
        self._visible_cache = None
        self._by_measurement = {}

    def _visible(self) -> list[SegmentInfo]:
        """The visible segments in seq order (a cached list: callers must not modify it)."""
        with self._lock:
            if self._visible_cache is None:
                self._visible_cache = [i for s, i in sorted(self._index.items()) if s not in self._replaced]
            return self._visible_cache

    def segments(self, database: str | None = None, measurement: str | None = None) -> list[SegmentInfo]:
        """Visible segments (hidden: those replaced by a present merged segment), in seq order."""
        if database is not None and measurement is not None:
            with self._lock:  # queries ask this several times each: cached per measurement
                found = self._by_measurement.get((database, measurement))
                if found is None:
                    found = self._by_measurement[(database, measurement)] = [
                        i for i in self._visible() if i.database == database and i.measurement == measurement]
                return list(found)
        return [i for i in self._visible()
                if (database is None or i.database == database)
                and (measurement is None or i.measurement == measurement)]

    def sealed_after(self, seq: int, limit: int) -> list[SegmentInfo]:
        """Visible segments with seq > `seq`, in seq order, at most `limit`."""
        return [i for i in self._visible() if i.seq > seq][:limit]

    def get(self, seq: int) -> SegmentInfo | None:
        with self._lock:
            return self._index.get(seq)

    def disk_bytes(self) -> int:
        with self._lock:
            return sum(i.size for i in self._index.values())

    def databases(self) -> list[str]:
        return sorted({i.database for i in self._visible()})

    # ------------------------------------------------------------ reading

    def footer(self, info: SegmentInfo) -> SegmentFooter:
        """The checked footer of a segment, parsed once per file (segments are immutable).
        Raises FileNotFoundError / SegmentCorrupt like read_footer."""
        with self._lock:
            cached = self._footers.get(info.seq)
        if cached is not None:
            return cached
        footer = read_footer(info.path)
        if footer.seq != info.seq:
            raise SegmentCorrupt(info.path, 0, f"footer seq {footer.seq} != indexed seq {info.seq}")
        with self._lock:
            self.footer_parses += 1
            if self._index.get(info.seq) is info:
                self._footers[info.seq] = footer
        return footer

    def read(self, database: str, measurement: str, *, start_ns: int | None = None,
             end_ns: int | None = None, columns: list[str] | None = None,
             tag_filter: dict[str, set[str]] | None = None) -> list[pa.Table]:
        """One non-empty table per segment holding matching rows, in precedence order: on a
        duplicate (series, time) a later table's non-null field value wins. Segments are pruned by the
        time range in the index, then by the series dictionary and row-group stats of the (cached)
        footer; a corrupt segment is quarantined, logged and skipped."""
        def one(info: SegmentInfo, footer: SegmentFooter) -> pa.Table:
            return read_segment(info.path, columns=columns, start_ns=start_ns, end_ns=end_ns,
                                tag_filter=tag_filter, footer=footer, cache=self._read_cache)
        return [t for _info, t in self._each(database, measurement, start_ns, end_ns, one) if t.num_rows]

    def read_rows(self, database: str, measurement: str, *, start_ns: int | None = None,
                  end_ns: int | None = None, fields: list[str] | None = None,
                  tag_filter: dict[str, set[str]] | None = None,
                  tail: int | None = None,
                  field_filter: Sequence[FieldCondition] = ()) -> list[tuple[SegmentInfo, SegmentRows]]:
        """As read(), but columnar SegmentRows (series ids kept) per segment with matching rows;
        `tail` keeps the last rows of each series, `field_filter` rows whose field conditions
        hold (see read_segment_rows)."""
        def one(info: SegmentInfo, footer: SegmentFooter) -> SegmentRows | None:
            return read_segment_rows(info.path, fields=fields, start_ns=start_ns, end_ns=end_ns,
                                     tag_filter=tag_filter, footer=footer, tail=tail,
                                     field_filter=field_filter, cache=self._read_cache)
        return [(i, r) for i, r in self._each(database, measurement, start_ns, end_ns, one) if r is not None]

    @property
    def _read_cache(self) -> ChunkCache | None:
        return self.chunk_cache if self.chunk_cache.max_bytes else None

    def _each(self, database: str, measurement: str, start_ns: int | None, end_ns: int | None,
              read_one: Callable[[SegmentInfo, SegmentFooter], _T]) -> list[tuple[SegmentInfo, _T]]:
        """read_one over the time-overlapping segments in precedence order, with the corrupt-file
        and vanished-file handling of read()."""
        out: list[tuple[SegmentInfo, _T]] = []
        for attempt in range(_READ_ATTEMPTS):
            out = []
            vanished = False
            for info in sorted(self.segments(database, measurement), key=lambda i: i.precedence):
                if start_ns is not None and info.max_time_ns < start_ns:
                    continue
                if end_ns is not None and info.min_time_ns >= end_ns:
                    continue
                try:
                    result = read_one(info, self.footer(info))
                except FileNotFoundError:
                    vanished = True  # deleted by compaction/retention meanwhile: list again
                    break
                except SegmentCorrupt as exc:
                    log.error("segment read failed, quarantining: %s", exc)
                    self._drop_corrupt(info, str(exc))
                    continue
                out.append((info, result))
            if not vanished:
                return out
            log.info("segment vanished during read of %s.%s (attempt %d), retrying",
                     database, measurement, attempt + 1)
        return out

    def _drop_corrupt(self, info: SegmentInfo, reason: str) -> None:
        with self._lock:
            if self._index.get(info.seq) is not info:
                return
            del self._index[info.seq]
            self._index_changed()
            self._footers.pop(info.seq, None)
            if info.seq not in self._replaced:
                self._bump_removals(info)
        if info.path.exists():
            log.error("%s", self._quarantine(info.path, reason))

    def estimate_rows(self, database: str, measurement: str, start_ns: int | None, end_ns: int | None,
                      tag_filter: dict[str, set[str]] | None) -> int:
        """Rows of the row groups a read with these bounds would decode (from the cached
        footers; nothing is decoded). A footer that cannot be read counts its segment's rows."""
        lo = MIN_TIME_NS if start_ns is None else start_ns
        hi = MAX_TIME_NS + 1 if end_ns is None else end_ns
        total = 0
        for info in self.segments(database, measurement):
            if info.max_time_ns < lo or info.min_time_ns >= hi or info.rows == 0:
                continue
            try:
                footer = self.footer(info)
            except (FileNotFoundError, SegmentCorrupt):
                total += info.rows
                continue
            total += rows_to_decode(footer, lo, hi, tag_filter)
        return total

    def removal_epoch(self, database: str, measurement: str) -> int:
        """Counts visible segments of (database, measurement) removed so far (rows gone: retention,
        drop, quarantine; not compaction inputs, whose rows live on in the merged segment)."""
        with self._lock:
            return self._removals.get((database, measurement), 0)

    def _bump_removals(self, info: SegmentInfo) -> None:
        key = (info.database, info.measurement)
        self._removals[key] = self._removals.get(key, 0) + 1

    # ------------------------------------------------------------ deleting

    def set_delete_guard(self, guard: Callable[[SegmentInfo], bool]) -> None:
        """guard(info) -> True when the segment may be deleted (e.g. the sync ledger acked it)."""
        self._guard = guard

    def may_delete(self, info: SegmentInfo) -> bool:
        return bool(self._guard(info))

    def delete(self, info: SegmentInfo, reason: str, *, force: bool = False) -> bool:
        """Remove a segment; False (nothing done) when the guard refuses and not `force`."""
        if not force and not self._guard(info):
            log.info("not deleting segment %d (%s): the delete guard refuses (not yet synced)",
                     info.seq, reason)
            return False
        with self._lock:
            if self._index.pop(info.seq, None) is not None and info.seq not in self._replaced:
                self._bump_removals(info)
            self._index_changed()
            self._footers.pop(info.seq, None)
        self._unlink(info.path)
        with self._lock:
            self._replaced.discard(info.seq)
            self._index_changed()
        log.info("deleted segment %d %s.%s (%d bytes): %s", info.seq, info.database,
                 info.measurement, info.size, reason)
        return True

    def drop_measurement(self, database: str, measurement: str) -> int:
        """DROP MEASUREMENT: remove all its segments (user intent: the guard is not asked)."""
        return self._drop([i for i in self._all() if i.database == database and i.measurement == measurement],
                          f"drop measurement {database}.{measurement}")

    def drop_database(self, database: str) -> int:
        """DROP DATABASE: remove all its segments (user intent: the guard is not asked)."""
        return self._drop([i for i in self._all() if i.database == database], f"drop database {database}")

    def _all(self) -> list[SegmentInfo]:
        with self._lock:
            return list(self._index.values())

    def _drop(self, infos: list[SegmentInfo], reason: str) -> int:
        for info in infos:
            self.delete(info, reason, force=True)
        return len(infos)
