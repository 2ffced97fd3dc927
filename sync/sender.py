"""Edge sync daemon: streams sealed segments in seq order to the cloud over one WebSocket, within
the cloud's credit, persists acks in the ledger, retries forever; `python -m sync.sender` runs it."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import signal
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from sync.frames import (
    NODE_HEADER,
    WS_PATH,
    Ack,
    Begin,
    ChunkCodec,
    Credit,
    End,
    Error,
    FrameError,
    Hello,
    Reject,
    Restart,
    Welcome,
    decode,
    encode,
)
from sync.ledger import AckLedger, prune_acked
from sync.segment_source import DirectorySegmentSource, SealedSegment, SegmentSource

log = logging.getLogger(__name__)


@dataclass
class SenderConfig:
    url: str  # base URL of the cloud, e.g. ws://host:port or wss://host:port
    node: str
    token: str
    ledger_dir: Path
    chunk_bytes: int = 256 << 10
    bandwidth_bytes_per_s: float | None = None  # token-bucket cap on payload bytes
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 30.0
    heartbeat_s: float = 5.0
    handshake_timeout_s: float = 10.0
    progress_timeout_s: float = 30.0  # no credit/ack for this long while waiting -> reconnect
    max_inflight_segments: int = 32
    compress: bool = True
    delete_acked: bool = False  # run prune_acked after each ledger persist (until storage does)
    ca_file: str | None = None
    segment_dir: Path | None = None  # for the CLI runner (DirectorySegmentSource)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SenderConfig:
        values = dict(raw)
        values["ledger_dir"] = Path(values["ledger_dir"])
        if values.get("segment_dir") is not None:
            values["segment_dir"] = Path(values["segment_dir"])
        return cls(**values)


class RetryLater(ConnectionError):
    """The cloud answered 429/503 on connect, with an optional Retry-After in seconds."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"cloud answered HTTP {status} (Retry-After: {retry_after})")
        self.status = status
        self.retry_after = retry_after


class SegmentCorrupt(RuntimeError):
    """A local segment's bytes do not match its sealed hash/size: it is dead-lettered."""


class TokenBucket:
    """Bytes/s cap: `take(n)` waits until n tokens are available (bursts up to `burst`)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = time.monotonic()

    async def take(self, amount: int) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            need = min(float(amount), self.burst)
            if self.tokens >= need:
                self.tokens -= amount  # may go negative for amount > burst: repaid by waiting
                return
            await asyncio.sleep((need - self.tokens) / self.rate)  # pacing, not synchronisation


def full_jitter_backoff(attempt: int, base: float, cap: float) -> float:
    return random.uniform(0.0, min(cap, base * (2 ** min(attempt, 30))))


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


@dataclass
class _SessionState:
    credit: int
    max_chunk: int
    pending: deque[int] = field(default_factory=deque)  # seqs whose End was sent, unacked
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_progress: float = field(default_factory=time.monotonic)


class SyncSender:
    """The edge daemon. `await run()` until `stop()`; `status()` any time."""

    def __init__(self, config: SenderConfig, source: SegmentSource,
                 ledger: AckLedger | None = None) -> None:
        self.config = config
        self.source = source
        self.ledger = ledger if ledger is not None else AckLedger.open(config.ledger_dir)
        self._stop = asyncio.Event()
        self._bucket = (TokenBucket(config.bandwidth_bytes_per_s,
                                    max(float(config.chunk_bytes), config.bandwidth_bytes_per_s / 10))
                        if config.bandwidth_bytes_per_s else None)
        self._ssl: ssl.SSLContext | bool = True
        if config.ca_file:
            self._ssl = ssl.create_default_context(cafile=config.ca_file)
        self.connected = False
        self.last_error: str | None = None  # the current problem; None once a session is up again
        self.last_error_at: float | None = None  # wall time of the latest error (kept as history)
        self.previous_error: str | None = None  # the latest error, kept after it was cleared
        self.errors_total = 0  # session-ending errors so far
        self.recent_errors: deque[str] = deque(maxlen=32)  # the latest of them, oldest first
        self.retries = 0
        self.sessions = 0
        self.bytes_sent = 0
        self.segments_acked = 0
        self.duplicates = 0
        self.rejected_count = 0
        self.corrupt_count = 0
        self.last_retry_after: float | None = None
        self.connect_attempts: list[float] = []
        self.waits: dict[str, int] = {}  # how often sending paused for credit / the ack window

    def stop(self) -> None:
        self._stop.set()

    # ---------------------------------------------------------------------------------------
    async def run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self.connect_attempts.append(time.monotonic())
            acked_before = self.segments_acked
            retry_after: float | None = None
            session = asyncio.ensure_future(self._session())
            stopper = asyncio.ensure_future(self._stop.wait())
            try:
                done, _ = await asyncio.wait({session, stopper},
                                             return_when=asyncio.FIRST_COMPLETED)
                if session in done:
                    session.result()
                else:
                    session.cancel()
                    await asyncio.gather(session, return_exceptions=True)
                    return
            except RetryLater as exc:
                retry_after = exc.retry_after
                self.last_retry_after = retry_after
                self._note_error(str(exc))
            except (aiohttp.ClientError, OSError, TimeoutError, FrameError, ConnectionError,
                    SegmentCorrupt, RuntimeError) as exc:
                self._note_error(f"{type(exc).__name__}: {exc}")
                log.warning("sync node=%s: session ended: %s", self.config.node, self.last_error)
            finally:
                stopper.cancel()
                self.connected = False
            if self.segments_acked > acked_before:
                attempt = 0  # progress: start backoff again from the base
            self.retries += 1
            delay = full_jitter_backoff(attempt, self.config.backoff_base_s,
                                        self.config.backoff_cap_s)
            if retry_after is not None:
                delay = retry_after + random.uniform(0.0, self.config.backoff_base_s)
            attempt += 1
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass

    def _note_error(self, text: str) -> None:
        self.last_error = text
        self.previous_error = text
        self.last_error_at = time.time()
        self.errors_total += 1
        self.recent_errors.append(text)

    def errors_since(self, count: int) -> list[str]:
        """The errors noted after the first `count` (errors_total earlier), oldest first; at
        most the 32 latest."""
        new = self.errors_total - count
        return list(self.recent_errors)[-new:] if new > 0 else []

    async def _session(self) -> None:
        cfg = self.config
        headers = {NODE_HEADER: cfg.node, "Authorization": f"Bearer {cfg.token}"}
        timeout = aiohttp.ClientTimeout(total=None, connect=cfg.handshake_timeout_s,
                                        sock_connect=cfg.handshake_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            try:
                ws = await http.ws_connect(cfg.url.rstrip("/") + WS_PATH, headers=headers,
                                           heartbeat=cfg.heartbeat_s, ssl=self._ssl,
                                           max_msg_size=1 << 20, autoping=True)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status in (429, 503):
                    value = exc.headers.get("Retry-After") if exc.headers else None
                    raise RetryLater(exc.status, _parse_retry_after(value)) from exc
                raise
            async with ws:
                await ws.send_bytes(encode(Hello(cfg.node, self.ledger.epoch)))
                msg = await ws.receive(timeout=cfg.handshake_timeout_s)
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise ConnectionError(f"handshake: expected welcome, got {msg.type.name}")
                welcome = decode(msg.data)
                if isinstance(welcome, Error):
                    raise ConnectionError(f"cloud refused handshake: {welcome.reason}")
                if not isinstance(welcome, Welcome):
                    raise FrameError(f"handshake: expected welcome, got {welcome!r}")
                await self._apply_welcome(welcome)
                self.connected = True
                self.last_error = None  # reconnected: the old error is history (previous_error)
                self.sessions += 1
                state = _SessionState(welcome.credit, min(welcome.max_chunk, cfg.chunk_bytes))
                reader = asyncio.ensure_future(self._read_loop(ws, state))
                writer = asyncio.ensure_future(self._write_loop(ws, state, welcome))
                try:
                    done, _ = await asyncio.wait({reader, writer},
                                                 return_when=asyncio.FIRST_EXCEPTION)
                finally:  # also on cancellation (stop): never leave the pair running
                    for task in (reader, writer):
                        task.cancel()
                    await asyncio.gather(reader, writer, return_exceptions=True)
                for task in done:
                    task.result()
                raise ConnectionError("cloud closed the sync stream")

    async def _apply_welcome(self, welcome: Welcome) -> None:
        if welcome.watermark < self.ledger.acked_through:
            log.warning("sync node=%s epoch=%s: cloud watermark %d behind ledger %d (cloud lost "
                        "data?); acked segments are not re-sent", self.config.node,
                        self.ledger.epoch, welcome.watermark, self.ledger.acked_through)
        changed = await asyncio.to_thread(self.ledger.record, welcome.watermark, welcome.rejected)
        if changed:
            await self._after_ledger_persist()

    async def _after_ledger_persist(self) -> None:
        if self.config.delete_acked:
            await asyncio.to_thread(prune_acked, self.source, self.ledger)

    # ---------------------------------------------------------------------------------------
    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse, state: _SessionState) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            frame = decode(msg.data)
            state.last_progress = time.monotonic()
            if isinstance(frame, Credit):
                state.credit += frame.amount
            elif isinstance(frame, Ack | Reject):
                if not state.pending or state.pending[0] != frame.seq:
                    raise FrameError(f"cloud answered seq {frame.seq}, expected "
                                     f"{state.pending[0] if state.pending else None}")
                state.pending.popleft()
                if isinstance(frame, Ack):
                    await asyncio.to_thread(self.ledger.record, frame.seq)
                    self.segments_acked += 1
                    self.duplicates += int(frame.duplicate)
                else:
                    log.error("sync node=%s: cloud rejected seq %d (kept locally as dead "
                              "letter): %s", self.config.node, frame.seq, frame.reason)
                    await asyncio.to_thread(self.ledger.record, frame.seq, (frame.seq,))
                    self.rejected_count += 1
                await self._after_ledger_persist()
            elif isinstance(frame, Restart):
                raise ConnectionError(f"cloud dropped partial seq {frame.seq}: {frame.reason}")
            elif isinstance(frame, Error):
                raise ConnectionError(f"cloud error: {frame.reason}")
            else:
                raise FrameError(f"unexpected frame from cloud: {type(frame).__name__}")
            state.changed.set()
        raise ConnectionError(f"sync stream closed (close code {ws.close_code}, "
                              f"{ws.exception()!r})")

    async def _wait_for(self, state: _SessionState, ready: Any, what: str) -> None:
        if not ready():
            self.waits[what] = self.waits.get(what, 0) + 1
        while not ready():
            state.changed.clear()
            remaining = state.last_progress + self.config.progress_timeout_s - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no progress from cloud for {self.config.progress_timeout_s}s"
                                   f" while waiting for {what}")
            try:
                await asyncio.wait_for(state.changed.wait(), remaining)
            except TimeoutError:
                pass

    async def _write_loop(self, ws: aiohttp.ClientWebSocketResponse, state: _SessionState,
                          welcome: Welcome) -> None:
        sent_through = self.ledger.acked_through
        partial = welcome.partial
        codec = ChunkCodec()
        while True:
            batch = await asyncio.to_thread(self.source.sealed_after, sent_through, 64)
            if not batch:
                await self.source.wait_for_new(1.0)
                continue
            for segment in batch:
                if segment.seq in self.ledger.rejected:
                    sent_through = segment.seq
                    continue
                await self._wait_for(
                    state, lambda: len(state.pending) < self.config.max_inflight_segments,
                    "acks (in-flight segment window full)")
                offset = 0
                if (partial is not None and partial.seq == segment.seq
                        and partial.content_hash == segment.content_hash
                        and partial.offset <= segment.size):
                    offset = partial.offset
                partial = None
                try:
                    await self._send_segment(ws, state, codec, segment, offset)
                except SegmentCorrupt as exc:
                    log.error("sync node=%s: %s; dead-lettered", self.config.node, exc)
                    self.corrupt_count += 1
                    # dead-letter without advancing the watermark: earlier seqs may be unacked
                    await asyncio.to_thread(self.ledger.record, None, (segment.seq,))
                    raise
                state.pending.append(segment.seq)
                sent_through = segment.seq

    async def _send_segment(self, ws: aiohttp.ClientWebSocketResponse, state: _SessionState,
                            codec: ChunkCodec, segment: SealedSegment, offset: int) -> None:
        await ws.send_bytes(encode(Begin(segment.seq, segment.size, segment.content_hash, offset,
                                         segment.min_time_ns, segment.max_time_ns, segment.rows,
                                         segment.database, segment.measurement)))
        try:
            fh: IO[bytes] = await asyncio.to_thread(open, segment.path, "rb")
        except FileNotFoundError as exc:
            raise SegmentCorrupt(f"sealed segment seq {segment.seq} missing: {segment.path}") from exc
        hasher = hashlib.blake2b(digest_size=32) if offset == 0 else None
        try:
            position = offset
            try_compress = self.config.compress
            chunk_size = state.max_chunk
            await asyncio.to_thread(fh.seek, offset)
            while position < segment.size:
                want = min(chunk_size, segment.size - position)
                raw = await asyncio.to_thread(fh.read, want)
                if len(raw) != want:
                    raise SegmentCorrupt(f"segment {segment.path}: short read at offset "
                                         f"{position} ({len(raw)}/{want} bytes)")
                if hasher is not None:
                    hasher.update(raw)
                chunk, paid = await asyncio.to_thread(codec.pack, segment.seq, position, raw,
                                                      try_compress)
                try_compress = try_compress and paid  # probe: stop trying when it doesn't pay
                size = len(chunk.payload)
                await self._wait_for(state, lambda n=size: state.credit >= n, "credit")
                if self._bucket is not None:
                    await self._bucket.take(size)
                state.credit -= size
                await asyncio.wait_for(ws.send_bytes(encode(chunk)),
                                       self.config.progress_timeout_s)
                self.bytes_sent += size
                position += want
            if hasher is not None and hasher.hexdigest() != segment.content_hash:
                raise SegmentCorrupt(f"segment {segment.path} seq {segment.seq}: content hash "
                                     f"{hasher.hexdigest()} != sealed {segment.content_hash}")
        finally:
            await asyncio.to_thread(fh.close)
        await ws.send_bytes(encode(End(segment.seq)))

    # ---------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Lag (bytes, segments, seconds of data not yet in the cloud), connection, errors."""
        unsynced = [s for s in self.source.sealed_after(self.ledger.acked_through, 1 << 62)]
        lag_seconds = 0.0
        oldest_age = 0.0
        if unsynced:
            lag_seconds = (max(s.max_time_ns for s in unsynced)
                           - min(s.min_time_ns for s in unsynced)) / 1e9
            oldest_age = max(0.0, time.time() - min(s.min_time_ns for s in unsynced) / 1e9)
        return {
            "node": self.config.node,
            "epoch": self.ledger.epoch,
            "connected": self.connected,
            "acked_through": self.ledger.acked_through,
            "lag_segments": len(unsynced),
            "lag_bytes": sum(s.size for s in unsynced),
            "lag_seconds": lag_seconds,
            "oldest_unsynced_age_s": oldest_age,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "previous_error": self.previous_error,
            "retries": self.retries,
            "sessions": self.sessions,
            "bytes_sent": self.bytes_sent,
            "segments_acked": self.segments_acked,
            "duplicates": self.duplicates,
            "rejected": self.rejected_count,
            "corrupt": self.corrupt_count,
            "last_retry_after_s": self.last_retry_after,
        }


async def _run_cli(config: SenderConfig, status_file: Path | None) -> None:
    if config.segment_dir is None:
        raise SystemExit("sender config needs segment_dir for the CLI runner")
    sender = SyncSender(config, DirectorySegmentSource(config.segment_dir))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, sender.stop)
    task = asyncio.ensure_future(sender.run())
    while not task.done():
        if status_file is not None:
            tmp = status_file.with_name(status_file.name + ".tmp")
            tmp.write_text(json.dumps(sender.status()))
            tmp.replace(status_file)
        await asyncio.wait({task}, timeout=0.5)
    task.result()


def main() -> None:
    parser = argparse.ArgumentParser(description="edgets sync sender (edge side)")
    parser.add_argument("--config", required=True, type=Path, help="JSON SenderConfig")
    parser.add_argument("--status-file", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = SenderConfig.from_dict(json.loads(args.config.read_text()))
    asyncio.run(_run_cli(config, args.status_file))


if __name__ == "__main__":
    main()
