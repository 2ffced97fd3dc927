"""Cloud side of edgets sync: the aiohttp WebSocket handler, durable per-node segment storage
(cloud_dir/nodes/<node>/<epoch>/<seq>.seg) and the SQLite catalog; `python -m sync.receiver` runs it."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import sqlite3
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import WSMsgType, web

from storage.fsio import fsync_dir
from sync.frames import (
    NODE_HEADER,
    WS_PATH,
    Ack,
    Begin,
    Chunk,
    ChunkCodec,
    Credit,
    End,
    Error,
    FrameError,
    Hello,
    Partial,
    Reject,
    Restart,
    Welcome,
    decode,
    encode,
    valid_node_id,
)

log = logging.getLogger(__name__)

_PART_RE = re.compile(r"^(\d+)-([0-9a-f]{64})\.part$")
RECEIVER_KEY: web.AppKey[CloudReceiver] = web.AppKey("edgets_sync_receiver")


@dataclass
class CloudConfig:
    """Cloud sync settings. `tokens` maps node id -> shared secret (anything else gets 401)."""

    cloud_dir: Path
    tokens: dict[str, str]
    credit_bytes: int = 4 << 20  # per-session window: bounds receiver memory per node
    max_chunk: int = 256 << 10
    max_segment_bytes: int = 1 << 34
    heartbeat: float = 10.0
    hello_timeout: float = 10.0
    partial_fsync_bytes: int = 8 << 20  # fsync a partial upload at least this often
    max_sessions: int = 10_000
    ssl_cert: str | None = None
    ssl_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CloudConfig:
        values = dict(raw)
        values["cloud_dir"] = Path(values["cloud_dir"])
        return cls(**values)


@dataclass(frozen=True)
class CommittedSegment:
    """A segment the cloud holds durably and has committed in its catalog (for the query layer)."""

    node: str
    epoch: str
    seq: int
    path: Path
    size: int
    content_hash: str
    min_time_ns: int
    max_time_ns: int
    rows: int
    database: str
    measurement: str
    committed_at_ns: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    node TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
    content_hash TEXT NOT NULL, size INTEGER NOT NULL, path TEXT NOT NULL,
    min_time_ns INTEGER NOT NULL, max_time_ns INTEGER NOT NULL, rows INTEGER NOT NULL,
    database TEXT NOT NULL, measurement TEXT NOT NULL, committed_at_ns INTEGER NOT NULL,
    PRIMARY KEY (node, epoch, seq)
);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at_ns INTEGER NOT NULL, kind TEXT NOT NULL,
    node TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
    committed_hash TEXT, offered_hash TEXT, kept_path TEXT, detail TEXT
);
CREATE TABLE IF NOT EXISTS epochs (
    node TEXT NOT NULL, epoch TEXT NOT NULL, first_seen_ns INTEGER NOT NULL,
    PRIMARY KEY (node, epoch)
);
"""


class Catalog:
    """SQLite catalog (WAL, synchronous=FULL). One connection, serialised by a lock; callers
    run its methods in a thread (asyncio.to_thread) so fsyncs never block the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def note_epoch(self, node: str, epoch: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO epochs VALUES (?, ?, ?)",
                               (node, epoch, time.time_ns()))

    def watermark(self, node: str, epoch: str) -> tuple[int, list[int]]:
        with self._lock:
            (top,) = self._conn.execute(
                "SELECT COALESCE(MAX(seq), -1) FROM segments WHERE node=? AND epoch=?",
                (node, epoch)).fetchone()
            rejected = [r[0] for r in self._conn.execute(
                "SELECT DISTINCT seq FROM alarms WHERE node=? AND epoch=? AND kind='hash_conflict'",
                (node, epoch))]
        return int(top), rejected

    def lookup_hash(self, node: str, epoch: str, seq: int) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT content_hash FROM segments WHERE node=? AND epoch=? AND seq=?",
                (node, epoch, seq)).fetchone()
        return None if row is None else str(row[0])

    def commit_segment(self, node: str, epoch: str, begin: Begin, path: Path) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO segments VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (node, epoch, begin.seq, begin.content_hash, begin.size, str(path),
                     begin.min_time_ns, begin.max_time_ns, begin.rows, begin.database,
                     begin.measurement, time.time_ns()))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def record_alarm(self, kind: str, node: str, epoch: str, seq: int, committed_hash: str | None,
                     offered_hash: str | None, kept_path: Path | None, detail: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO alarms (at_ns, kind, node, epoch, seq, committed_hash, offered_hash,"
                " kept_path, detail) VALUES (?,?,?,?,?,?,?,?,?)",
                (time.time_ns(), kind, node, epoch, seq, committed_hash, offered_hash,
                 None if kept_path is None else str(kept_path), detail))

    def alarms(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._conn.execute("SELECT * FROM alarms ORDER BY id")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur]

    def committed_segments(self, node: str | None = None) -> list[CommittedSegment]:
        query = "SELECT * FROM segments"
        args: tuple[str, ...] = ()
        if node is not None:
            query += " WHERE node=?"
            args = (node,)
        query += " ORDER BY node, epoch, seq"
        with self._lock:
            rows = self._conn.execute(query, args).fetchall()
        return [CommittedSegment(r[0], r[1], r[2], Path(r[5]), r[4], r[3], r[6], r[7], r[8], r[9],
                                 r[10], r[11]) for r in rows]


def committed_segments(cloud_dir: Path, node: str | None = None) -> list[CommittedSegment]:
    """Committed segments from the catalog under `cloud_dir` (any process; read only)."""
    conn = sqlite3.connect(f"file:{Path(cloud_dir) / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        query = "SELECT * FROM segments" + (" WHERE node=?" if node is not None else "")
        rows = conn.execute(query + " ORDER BY node, epoch, seq",
                            (node,) if node is not None else ()).fetchall()
    finally:
        conn.close()
    return [CommittedSegment(r[0], r[1], r[2], Path(r[5]), r[4], r[3], r[6], r[7], r[8], r[9],
                             r[10], r[11]) for r in rows]


class ProtocolViolation(RuntimeError):
    """The edge broke the protocol; the session answers Error and closes."""


@dataclass
class _Upload:
    begin: Begin
    part_path: Path
    fh: IO[bytes]
    written: int
    hasher: Any
    synced: int


@dataclass
class _Session:
    node: str
    transport: asyncio.Transport | None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class CloudReceiver:
    """Accepts many edge nodes at once; one live session per node (a reconnect takes over)."""

    def __init__(self, config: CloudConfig) -> None:
        self.config = config
        self.cloud_dir = Path(config.cloud_dir)
        self.counters: Counter[str] = Counter()
        self.catalog: Catalog | None = None
        self._sessions: dict[str, _Session] = {}
        self._node_locks: dict[str, asyncio.Lock] = {}
        self._unavailable_until = 0.0
        self._retry_after = 1
        self.refused_at: list[float] = []

    # lifecycle -------------------------------------------------------------------------
    async def start(self, _app: web.Application | None = None) -> None:
        (self.cloud_dir / "nodes").mkdir(parents=True, exist_ok=True)
        self.catalog = await asyncio.to_thread(Catalog, self.cloud_dir / "catalog.sqlite")

    async def stop(self, _app: web.Application | None = None) -> None:
        for session in list(self._sessions.values()):
            session.abort()
        for session in list(self._sessions.values()):
            await session.finished.wait()
        if self.catalog is not None:
            self.catalog.close()
            self.catalog = None

    def pause(self, retry_after_s: int) -> None:
        """Refuse new connections with 503 + Retry-After for `retry_after_s` (maintenance)."""
        self._retry_after = max(1, int(retry_after_s))
        self._unavailable_until = time.monotonic() + retry_after_s

    def committed_segments(self, node: str | None = None) -> list[CommittedSegment]:
        assert self.catalog is not None, "receiver not started"
        return self.catalog.committed_segments(node)

    # HTTP entry ------------------------------------------------------------------------
    async def handle_stream(self, request: web.Request) -> web.StreamResponse:
        node = request.headers.get(NODE_HEADER, "")
        auth = request.headers.get("Authorization", "")
        expected = self.config.tokens.get(node)
        offered = auth.removeprefix("Bearer ")
        if (expected is None or not valid_node_id(node) or not auth.startswith("Bearer ")
                or not hmac.compare_digest(offered.encode(), expected.encode())):
            self.counters["auth_failures"] += 1
            raise web.HTTPUnauthorized(text="unknown node or bad token")
        now = time.monotonic()
        if now < self._unavailable_until or len(self._sessions) >= self.config.max_sessions:
            self.counters["refused_busy"] += 1
            self.refused_at.append(now)
            raise web.HTTPServiceUnavailable(headers={"Retry-After": str(self._retry_after)},
                                             text="sync receiver busy")
        ws = web.WebSocketResponse(heartbeat=self.config.heartbeat, timeout=2.0,
                                   max_msg_size=self.config.max_chunk + (64 << 10))
        await ws.prepare(request)
        try:
            msg = await ws.receive(timeout=self.config.hello_timeout)
            if msg.type != WSMsgType.BINARY:
                raise ProtocolViolation(f"expected hello, got {msg.type.name}")
            hello = decode(msg.data)
            if not isinstance(hello, Hello) or hello.node != node:
                raise ProtocolViolation(f"first frame must be hello for node {node!r}: {hello!r}")
        except (FrameError, ProtocolViolation, TimeoutError) as exc:
            self.counters["protocol_errors"] += 1
            await self._send_error_and_close(ws, f"handshake from node {node!r}: {exc}")
            return ws

        lock = self._node_locks.setdefault(node, asyncio.Lock())
        async with lock:  # one live session per node: a reconnect takes over the old one
            old = self._sessions.get(node)
            if old is not None:
                self.counters["takeovers"] += 1
                old.abort()
                await old.finished.wait()
            session = _Session(node, request.transport)
            self._sessions[node] = session
        self.counters["sessions"] += 1
        try:
            await self._run_session(ws, hello)
        except (FrameError, ProtocolViolation) as exc:
            self.counters["protocol_errors"] += 1
            log.warning("sync session node=%s epoch=%s: %s", node, hello.epoch, exc)
            await self._send_error_and_close(ws, str(exc))
        except (ConnectionError, asyncio.CancelledError) as exc:
            log.info("sync session node=%s epoch=%s ended: %r", node, hello.epoch, exc)
        finally:
            if self._sessions.get(node) is session:
                del self._sessions[node]
            session.finished.set()
        return ws

    async def _send_error_and_close(self, ws: web.WebSocketResponse, reason: str) -> None:
        try:
            await ws.send_bytes(encode(Error(reason)))
            await ws.close()
        except (ConnectionError, RuntimeError):
            pass

    # session ---------------------------------------------------------------------------
    async def _run_session(self, ws: web.WebSocketResponse, hello: Hello) -> None:
        assert self.catalog is not None
        node, epoch = hello.node, hello.epoch
        epoch_dir = self.cloud_dir / "nodes" / node / epoch
        await asyncio.to_thread(self._prepare_epoch_dir, epoch_dir, node, epoch)
        watermark, rejected = await asyncio.to_thread(self.catalog.watermark, node, epoch)
        partial = await asyncio.to_thread(self._find_partial, epoch_dir, watermark)
        await ws.send_bytes(encode(Welcome(watermark, tuple(rejected), partial,
                                           self.config.credit_bytes, self.config.max_chunk)))
        codec = ChunkCodec()
        upload: _Upload | None = None
        credit_owed = 0
        credit_batch = max(1, min(self.config.credit_bytes // 4, 1 << 20))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    if msg.type in (WSMsgType.ERROR,):
                        raise ConnectionError(f"websocket error: {ws.exception()!r}")
                    continue
                frame = decode(msg.data)
                if isinstance(frame, Chunk):
                    if upload is None or frame.seq != upload.begin.seq:
                        raise ProtocolViolation(f"chunk for seq {frame.seq} outside its segment")
                    if frame.offset != upload.written:
                        raise ProtocolViolation(f"seq {frame.seq}: chunk at offset {frame.offset},"
                                                f" expected {upload.written}")
                    raw = codec.unpack(frame, self.config.max_chunk)
                    if upload.written + len(raw) > upload.begin.size:
                        raise ProtocolViolation(f"seq {frame.seq}: data beyond declared size "
                                                f"{upload.begin.size}")
                    await asyncio.to_thread(self._write_chunk, upload, raw)
                    self.counters["bytes_received"] += len(raw)
                    credit_owed += len(frame.payload)
                    if credit_owed >= credit_batch:
                        await ws.send_bytes(encode(Credit(credit_owed)))
                        credit_owed = 0
                elif isinstance(frame, Begin):
                    if upload is not None:
                        raise ProtocolViolation(f"begin seq {frame.seq} while seq "
                                                f"{upload.begin.seq} is open")
                    if frame.size > self.config.max_segment_bytes or frame.offset > frame.size:
                        raise ProtocolViolation(f"begin seq {frame.seq}: size {frame.size} / "
                                                f"offset {frame.offset} out of range")
                    upload = await asyncio.to_thread(self._open_upload, epoch_dir, frame)
                elif isinstance(frame, End):
                    if upload is None or frame.seq != upload.begin.seq:
                        raise ProtocolViolation(f"end for seq {frame.seq} without begin")
                    current, upload = upload, None
                    reply = await asyncio.to_thread(self._finish_upload, node, epoch, epoch_dir,
                                                    current)
                    if credit_owed:
                        await ws.send_bytes(encode(Credit(credit_owed)))
                        credit_owed = 0
                    await ws.send_bytes(encode(reply))
                    if isinstance(reply, Restart):
                        # nothing after this seq may be committed before it: end the session,
                        # the edge reconnects and resends it from offset 0
                        await ws.close()
                        return
                elif isinstance(frame, Error):
                    raise ConnectionError(f"edge reported: {frame.reason}")
                else:
                    raise ProtocolViolation(f"unexpected frame from edge: {type(frame).__name__}")
        finally:
            if upload is not None:  # keep the partial durably for resume
                await asyncio.to_thread(self._close_partial, upload)

    # blocking file + catalog work (run in threads) ---------------------------------------
    def _prepare_epoch_dir(self, epoch_dir: Path, node: str, epoch: str) -> None:
        assert self.catalog is not None
        if not epoch_dir.exists():
            epoch_dir.mkdir(parents=True)
            fsync_dir(epoch_dir.parent)
            fsync_dir(epoch_dir.parent.parent)
        self.catalog.note_epoch(node, epoch)

    def _find_partial(self, epoch_dir: Path, watermark: int) -> Partial | None:
        best: Partial | None = None
        for entry in os.scandir(epoch_dir):
            match = _PART_RE.match(entry.name)
            if not match:
                continue
            seq = int(match.group(1))
            if seq <= watermark:
                os.unlink(entry.path)  # stale: that seq is committed
                continue
            size = entry.stat().st_size
            if best is None or seq < best.seq:
                best = Partial(seq, match.group(2), size)
        return best

    def _open_upload(self, epoch_dir: Path, begin: Begin) -> _Upload:
        part_path = epoch_dir / f"{begin.seq}-{begin.content_hash}.part"
        for entry in os.scandir(epoch_dir):  # one partial per epoch: drop others
            if _PART_RE.match(entry.name) and entry.name != part_path.name:
                os.unlink(entry.path)
        hasher = hashlib.blake2b(digest_size=32)
        if begin.offset > 0:
            try:
                size = part_path.stat().st_size
            except FileNotFoundError:
                size = -1
            if size < begin.offset:
                raise ProtocolViolation(f"seq {begin.seq}: resume at {begin.offset} but partial "
                                        f"{part_path} holds {size} bytes")
            fh = open(part_path, "r+b")
            fh.truncate(begin.offset)
            remaining = begin.offset
            while remaining:
                block = fh.read(min(remaining, 1 << 20))
                if not block:
                    raise ProtocolViolation(f"{part_path}: short read at {begin.offset - remaining}")
                hasher.update(block)
                remaining -= len(block)
            fh.seek(begin.offset)
        else:
            fh = open(part_path, "wb")
        self.counters["resumes" if begin.offset else "begins"] += 1
        return _Upload(begin, part_path, fh, begin.offset, hasher, begin.offset)

    def _write_chunk(self, upload: _Upload, raw: bytes) -> None:
        upload.fh.write(raw)
        upload.hasher.update(raw)
        upload.written += len(raw)
        if upload.written - upload.synced >= self.config.partial_fsync_bytes:
            upload.fh.flush()
            os.fsync(upload.fh.fileno())
            upload.synced = upload.written

    def _close_partial(self, upload: _Upload) -> None:
        try:
            upload.fh.flush()
            os.fsync(upload.fh.fileno())
        finally:
            upload.fh.close()

    def _finish_upload(self, node: str, epoch: str, epoch_dir: Path, upload: _Upload
                       ) -> Ack | Reject | Restart:
        assert self.catalog is not None
        begin = upload.begin
        upload.fh.flush()
        os.fsync(upload.fh.fileno())
        upload.fh.close()
        digest = upload.hasher.hexdigest()
        if upload.written != begin.size or digest != begin.content_hash:
            os.unlink(upload.part_path)
            fsync_dir(epoch_dir)
            self.counters["restarts"] += 1
            log.warning("sync node=%s epoch=%s seq=%d: received %d/%d bytes, hash %s != %s; "
                        "partial dropped", node, epoch, begin.seq, upload.written, begin.size,
                        digest, begin.content_hash)
            return Restart(begin.seq, f"received {upload.written}/{begin.size} bytes with hash "
                                      f"{digest}, declared {begin.content_hash}")
        committed = self.catalog.lookup_hash(node, epoch, begin.seq)
        if committed == begin.content_hash:
            os.unlink(upload.part_path)
            self.counters["duplicates"] += 1
            return Ack(begin.seq, begin.content_hash, True)
        if committed is not None:
            conflicts = epoch_dir / "conflicts"
            conflicts.mkdir(exist_ok=True)
            kept = conflicts / f"{begin.seq}-{begin.content_hash}.seg"
            os.replace(upload.part_path, kept)
            fsync_dir(conflicts)
            fsync_dir(epoch_dir)
            detail = (f"node {node} epoch {epoch} seq {begin.seq}: committed hash {committed}, "
                      f"offered {begin.content_hash}; both files kept")
            self.catalog.record_alarm("hash_conflict", node, epoch, begin.seq, committed,
                                      begin.content_hash, kept, detail)
            self.counters["hash_conflicts"] += 1
            log.error("sync ALARM hash conflict: %s (offered copy at %s)", detail, kept)
            return Reject(begin.seq, detail)
        final = epoch_dir / f"{begin.seq}.seg"
        os.replace(upload.part_path, final)
        fsync_dir(epoch_dir)
        self.catalog.commit_segment(node, epoch, begin, final)
        self.counters["segments_committed"] += 1
        return Ack(begin.seq, begin.content_hash, False)


def make_server_ssl_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


def add_sync_routes(app: web.Application, config: CloudConfig) -> CloudReceiver:
    """Mount the sync endpoint on an existing app (e.g. next to /query)."""
    receiver = CloudReceiver(config)
    app[RECEIVER_KEY] = receiver
    app.router.add_get(WS_PATH, receiver.handle_stream)
    app.on_startup.append(receiver.start)
    app.on_shutdown.append(receiver.stop)
    return receiver


def create_cloud_app(config: CloudConfig) -> web.Application:
    app = web.Application()
    add_sync_routes(app, config)
    return app


async def serve(config: CloudConfig, port_file: Path | None = None) -> None:
    """Run the cloud app until cancelled; write the bound port to `port_file` (atomically)."""
    app = create_cloud_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    ssl_context = None
    if config.ssl_cert and config.ssl_key:
        ssl_context = make_server_ssl_context(config.ssl_cert, config.ssl_key)
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, port_file)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="edgets sync receiver (cloud side)")
    parser.add_argument("--config", required=True, type=Path, help="JSON CloudConfig")
    parser.add_argument("--port-file", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = CloudConfig.from_dict(json.loads(args.config.read_text()))
    try:
        asyncio.run(serve(config, args.port_file))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
