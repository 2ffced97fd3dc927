"""Edge ack ledger: the durable record of which sealed segments the cloud has committed (and the
epoch of this edge's state); retention may delete a segment only when the persisted ledger says so."""

from __future__ import annotations

import logging
import os
import secrets
import struct
import time
from collections.abc import Iterable
from pathlib import Path

import crc32c
import msgpack

from storage.fsio import fsync_dir
from sync.segment_source import SegmentSource

log = logging.getLogger(__name__)

LEDGER_MAGIC = b"EDGL"
LEDGER_VERSION = 1
LEDGER_NAME = "ledger"
_HEADER = struct.Struct("<4sHI")  # magic, version, crc32c(body)


class LedgerError(RuntimeError):
    """The ledger could not be read or persisted (context: which file, what failed)."""


def new_epoch() -> str:
    """A random 64-bit epoch, hex: identifies one incarnation of the edge's sync state."""
    return secrets.token_hex(8)


class AckLedger:
    """Persisted `acked_through` watermark + the set of cloud-rejected seqs, for one epoch.

    The in-memory view is updated only AFTER the new state is durable (tmp, fsync, rename,
    fsync dir), so `is_acked` never answers from state a crash could lose.
    """

    def __init__(self, directory: Path, epoch: str, acked_through: int, rejected: frozenset[int],
                 *, created_new_epoch: bool, quarantined: Path | None) -> None:
        self.directory = directory
        self.path = directory / LEDGER_NAME
        self.epoch = epoch
        self.acked_through = acked_through
        self.rejected = rejected
        self.created_new_epoch = created_new_epoch
        self.quarantined = quarantined
        self.persist_count = 0

    @classmethod
    def open(cls, directory: Path) -> AckLedger:
        """Load the ledger; create a new epoch if there is none. A corrupt ledger is quarantined
        and replaced by a new epoch (the cloud keeps the old epoch's data; nothing is deleted)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LEDGER_NAME
        tmp = path.with_name(LEDGER_NAME + ".tmp")
        if tmp.exists():
            tmp.unlink()  # a crash during persist: the renamed file (if any) is the truth
        quarantined: Path | None = None
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            blob = None
        if blob is not None:
            try:
                epoch, acked_through, rejected = _decode(blob, path)
                return cls(directory, epoch, acked_through, rejected, created_new_epoch=False,
                           quarantined=None)
            except LedgerError as exc:
                quarantined = path.with_name(f"{LEDGER_NAME}.corrupt-{time.time_ns()}")
                os.replace(path, quarantined)
                log.error("sync ledger corrupt, quarantined to %s, starting a new epoch: %s",
                          quarantined, exc)
        ledger = cls(directory, new_epoch(), -1, frozenset(), created_new_epoch=True,
                     quarantined=quarantined)
        ledger._persist(ledger.acked_through, ledger.rejected)
        return ledger

    def is_acked(self, seq: int) -> bool:
        """True when the cloud durably committed `seq` (per the persisted ledger): safe to delete."""
        return seq <= self.acked_through and seq not in self.rejected

    def is_resolved(self, seq: int) -> bool:
        """True when the sender is done with `seq` (committed or permanently rejected)."""
        return seq <= self.acked_through

    def record(self, acked_through: int | None = None, rejected: Iterable[int] = ()) -> bool:
        """Advance the watermark and/or add rejected seqs; persist first, then update memory.
        Returns False when nothing changed (no write)."""
        new_through = self.acked_through if acked_through is None else max(self.acked_through,
                                                                            acked_through)
        new_rejected = self.rejected | frozenset(rejected)
        if new_through == self.acked_through and new_rejected == self.rejected:
            return False
        self._persist(new_through, new_rejected)
        self.acked_through = new_through
        self.rejected = new_rejected
        return True

    def _persist(self, acked_through: int, rejected: frozenset[int]) -> None:
        body = msgpack.packb({"epoch": self.epoch, "acked_through": acked_through,
                              "rejected": sorted(rejected)}, use_bin_type=True)
        blob = _HEADER.pack(LEDGER_MAGIC, LEDGER_VERSION, crc32c.crc32c(body)) + body
        tmp = self.path.with_name(LEDGER_NAME + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            fsync_dir(self.directory)
        except OSError as exc:
            raise LedgerError(f"persisting sync ledger {self.path} failed: {exc}") from exc
        self.persist_count += 1


def _decode(blob: bytes, path: Path) -> tuple[str, int, frozenset[int]]:
    if len(blob) < _HEADER.size:
        raise LedgerError(f"{path}: {len(blob)} bytes, shorter than the header")
    magic, version, crc = _HEADER.unpack_from(blob)
    if magic != LEDGER_MAGIC:
        raise LedgerError(f"{path}: bad magic {magic!r}")
    if version != LEDGER_VERSION:
        raise LedgerError(f"{path}: unsupported ledger version {version}")
    body = blob[_HEADER.size:]
    if crc32c.crc32c(body) != crc:
        raise LedgerError(f"{path}: crc32c mismatch over {len(body)} body bytes")
    try:
        state = msgpack.unpackb(body, raw=False)
        epoch = str(state["epoch"])
        acked_through = int(state["acked_through"])
        rejected = frozenset(int(s) for s in state["rejected"])
    except Exception as exc:
        raise LedgerError(f"{path}: undecodable body: {exc}") from exc
    return epoch, acked_through, rejected


def prune_acked(source: SegmentSource, ledger: AckLedger, limit: int = 1024) -> list[int]:
    """Retention for synced data: delete segments the persisted ledger says are acked.
    Rejected (dead-lettered) and unacked segments are never deleted here."""
    deleted: list[int] = []
    for segment in source.sealed_after(-1, limit):
        if segment.seq > ledger.acked_through:
            break
        if ledger.is_acked(segment.seq):
            source.delete(segment.seq)
            deleted.append(segment.seq)
    return deleted
