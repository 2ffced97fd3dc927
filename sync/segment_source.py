"""What the sync sender reads: the SealedSegment record, the SegmentSource protocol, and a
directory implementation (sealed files + sidecar JSON) used by tests until storage exposes its own."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from storage.fsio import fsync_dir, write_atomic

SEGMENT_SUFFIX = ".seg"
META_SUFFIX = ".json"
_NAME_RE = re.compile(r"^(\d{20})\.json$")


@dataclass(frozen=True)
class SealedSegment:
    """One immutable, sealed segment file as the sender sees it (opaque bytes + metadata)."""

    seq: int  # strictly increasing per edge store, assigned at seal
    path: Path
    size: int
    content_hash: str  # hex blake2b-256 (hashlib) of the whole file
    min_time_ns: int
    max_time_ns: int
    rows: int
    database: str
    measurement: str


class SegmentSource(Protocol):
    """Where sealed segments come from; the sender only reads, retention only deletes acked ones."""

    def sealed_after(self, seq: int, limit: int) -> list[SealedSegment]:
        """Sealed segments with seq > `seq`, in seq order, at most `limit`."""
        ...

    async def wait_for_new(self, timeout: float) -> bool:
        """Return True when a segment may have been sealed since the last call, False on timeout."""
        ...

    def delete(self, seq: int) -> None:
        """Remove a segment (retention; only called after the ledger durably says it is acked)."""
        ...


def content_hash_of(path: Path, block: int = 1 << 20) -> str:
    """Hex blake2b-256 of a whole file, read in blocks (never the whole file in memory)."""
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class DirectorySegmentSource:
    """Sealed segments in one directory: `<seq:020d>.seg` plus `<seq:020d>.json` metadata.

    A segment counts as sealed once its JSON sidecar exists (the sidecar is renamed in after
    the data file is durable). Metadata is cached by seq: sealed files never change.
    """

    def __init__(self, directory: Path, poll_interval: float = 0.1) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.poll_interval = poll_interval
        self._meta_cache: dict[int, SealedSegment] = {}
        self._last_seen_max = -1
        self._event: asyncio.Event | None = None

    def _seqs_on_disk(self) -> list[int]:
        seqs = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                match = _NAME_RE.match(entry.name)
                if match:
                    seqs.append(int(match.group(1)))
        seqs.sort()
        return seqs

    def _load(self, seq: int) -> SealedSegment | None:
        cached = self._meta_cache.get(seq)
        if cached is not None:
            return cached
        meta_path = self.directory / f"{seq:020d}{META_SUFFIX}"
        try:
            meta = json.loads(meta_path.read_bytes())
        except FileNotFoundError:
            return None  # deleted between scan and read
        except ValueError as exc:
            raise ValueError(f"segment sidecar {meta_path} is not valid JSON: {exc}") from exc
        segment = SealedSegment(
            seq=seq,
            path=self.directory / f"{seq:020d}{SEGMENT_SUFFIX}",
            size=int(meta["size"]),
            content_hash=str(meta["content_hash"]),
            min_time_ns=int(meta["min_time_ns"]),
            max_time_ns=int(meta["max_time_ns"]),
            rows=int(meta["rows"]),
            database=str(meta["database"]),
            measurement=str(meta["measurement"]),
        )
        self._meta_cache[seq] = segment
        return segment

    def sealed_after(self, seq: int, limit: int) -> list[SealedSegment]:
        out: list[SealedSegment] = []
        for candidate in self._seqs_on_disk():
            if candidate <= seq:
                continue
            segment = self._load(candidate)
            if segment is not None:
                out.append(segment)
                if len(out) >= limit:
                    break
        return out

    def all_sealed(self) -> list[SealedSegment]:
        return self.sealed_after(-1, 1 << 62)

    def notify(self) -> None:
        """In-process writers call this after sealing, to wake the sender without polling delay."""
        if self._event is not None:
            self._event.set()

    async def wait_for_new(self, timeout: float) -> bool:
        if self._event is None:
            self._event = asyncio.Event()
        deadline = time.monotonic() + timeout
        while True:
            seqs = await asyncio.to_thread(self._seqs_on_disk)
            newest = seqs[-1] if seqs else -1
            if newest > self._last_seen_max:
                self._last_seen_max = newest
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._event.wait(), min(self.poll_interval, remaining))
                self._event.clear()
            except TimeoutError:
                pass

    def delete(self, seq: int) -> None:
        """Un-seal first (sidecar), then the data file, then fsync the directory."""
        for suffix in (META_SUFFIX, SEGMENT_SUFFIX):
            try:
                os.unlink(self.directory / f"{seq:020d}{suffix}")
            except FileNotFoundError:
                pass
        fsync_dir(self.directory)
        self._meta_cache.pop(seq, None)


def write_sealed_segment(
    directory: Path,
    seq: int,
    data: bytes,
    *,
    min_time_ns: int = 0,
    max_time_ns: int = 0,
    rows: int = 0,
    database: str = "db",
    measurement: str = "m",
) -> SealedSegment:
    """Seal a segment the way the storage engine does: data .tmp/fsync/rename, then sidecar, then dir fsync."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{seq:020d}{SEGMENT_SUFFIX}"
    write_atomic(path, data)
    segment = SealedSegment(
        seq=seq,
        path=path,
        size=len(data),
        content_hash=hashlib.blake2b(data, digest_size=32).hexdigest(),
        min_time_ns=min_time_ns,
        max_time_ns=max_time_ns,
        rows=rows,
        database=database,
        measurement=measurement,
    )
    meta = asdict(segment)
    meta.pop("path")
    meta.pop("seq")
    write_atomic(directory / f"{seq:020d}{META_SUFFIX}", json.dumps(meta).encode())
    return segment
