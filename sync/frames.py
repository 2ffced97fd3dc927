"""Wire frames of the edgets sync protocol (version 1): msgpack maps in WebSocket binary messages.

Owns the frame types, their encoding/decoding and validation; no I/O here. See docs/sync-protocol.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import crc32c
import msgpack
import zstandard

PROTOCOL_VERSION = 1
WS_PATH = "/sync/v1/stream"
NODE_HEADER = "X-Edgets-Node"

_NODE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_EPOCH_RE = re.compile(r"^[0-9a-f]{16,32}$")
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


class FrameError(ValueError):
    """A frame that cannot be decoded or fails validation (the connection is then closed)."""


def valid_node_id(node: str) -> bool:
    return bool(_NODE_RE.match(node))


def valid_epoch(epoch: str) -> bool:
    return bool(_EPOCH_RE.match(epoch))


@dataclass(frozen=True)
class Hello:
    """edge -> cloud, first frame: who I am and which incarnation of my state (epoch)."""

    node: str
    epoch: str


@dataclass(frozen=True)
class Partial:
    seq: int
    content_hash: str
    offset: int


@dataclass(frozen=True)
class Welcome:
    """cloud -> edge: committed watermark for (node, epoch), partial upload, initial credit."""

    watermark: int  # highest committed seq for (node, epoch); -1 if none
    rejected: tuple[int, ...]  # seqs of this epoch the cloud rejected (hash conflict)
    partial: Partial | None
    credit: int  # bytes the edge may send before more credit arrives
    max_chunk: int


@dataclass(frozen=True)
class Begin:
    """edge -> cloud: a segment starts (or resumes at `offset`)."""

    seq: int
    size: int
    content_hash: str
    offset: int
    min_time_ns: int
    max_time_ns: int
    rows: int
    database: str
    measurement: str


@dataclass(frozen=True)
class Chunk:
    """edge -> cloud: bytes [offset, offset+len(raw)) of segment `seq`; `payload` maybe zstd."""

    seq: int
    offset: int
    compressed: bool
    payload: bytes
    crc: int  # crc32c of the raw (uncompressed) bytes


@dataclass(frozen=True)
class End:
    seq: int


@dataclass(frozen=True)
class Credit:
    """cloud -> edge: `amount` more bytes may be sent (bytes are counted as payload on the wire)."""

    amount: int


@dataclass(frozen=True)
class Ack:
    """cloud -> edge: segment is durable and committed in the catalog."""

    seq: int
    content_hash: str
    duplicate: bool


@dataclass(frozen=True)
class Reject:
    """cloud -> edge: permanently refused (hash conflict); the edge dead-letters it."""

    seq: int
    reason: str


@dataclass(frozen=True)
class Restart:
    """cloud -> edge: the partial upload was not usable; send segment `seq` again from 0."""

    seq: int
    reason: str


@dataclass(frozen=True)
class Error:
    """Either side, before closing: a fatal protocol error with context."""

    reason: str


Frame = Hello | Welcome | Begin | Chunk | End | Credit | Ack | Reject | Restart | Error

_T_HELLO, _T_WELCOME, _T_BEGIN, _T_CHUNK, _T_END = 1, 2, 3, 4, 5
_T_CREDIT, _T_ACK, _T_REJECT, _T_RESTART, _T_ERROR = 6, 7, 8, 9, 10


def encode(frame: Frame) -> bytes:
    body: dict[str, Any]
    match frame:
        case Chunk():
            body = {"t": _T_CHUNK, "s": frame.seq, "o": frame.offset, "z": frame.compressed,
                    "d": frame.payload, "c": frame.crc}
        case Credit():
            body = {"t": _T_CREDIT, "n": frame.amount}
        case Ack():
            body = {"t": _T_ACK, "s": frame.seq, "h": frame.content_hash, "dup": frame.duplicate}
        case Hello():
            body = {"t": _T_HELLO, "node": frame.node, "epoch": frame.epoch}
        case Welcome():
            partial = None
            if frame.partial is not None:
                p = frame.partial
                partial = {"s": p.seq, "h": p.content_hash, "o": p.offset}
            body = {"t": _T_WELCOME, "wm": frame.watermark, "rej": list(frame.rejected),
                    "p": partial, "cr": frame.credit, "mc": frame.max_chunk}
        case Begin():
            body = {"t": _T_BEGIN, "s": frame.seq, "size": frame.size, "h": frame.content_hash,
                    "o": frame.offset, "tmin": frame.min_time_ns, "tmax": frame.max_time_ns,
                    "rows": frame.rows, "db": frame.database, "m": frame.measurement}
        case End():
            body = {"t": _T_END, "s": frame.seq}
        case Reject():
            body = {"t": _T_REJECT, "s": frame.seq, "r": frame.reason}
        case Restart():
            body = {"t": _T_RESTART, "s": frame.seq, "r": frame.reason}
        case Error():
            body = {"t": _T_ERROR, "r": frame.reason}
        case _:
            raise TypeError(f"not a sync frame: {frame!r}")
    body["v"] = PROTOCOL_VERSION
    return msgpack.packb(body, use_bin_type=True)


def _int(body: dict[str, Any], key: str, minimum: int = -1) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise FrameError(f"frame field {key!r} must be an int >= {minimum}, got {value!r}")
    return value


def _hash(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _HASH_RE.match(value):
        raise FrameError(f"frame field {key!r} must be a hex blake2b-256, got {value!r}")
    return value


def _str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise FrameError(f"frame field {key!r} must be a string, got {value!r}")
    return value


def decode(data: bytes) -> Frame:
    try:
        body = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError(f"undecodable frame ({len(data)} bytes): {exc}") from exc
    if not isinstance(body, dict):
        raise FrameError(f"frame is not a map: {type(body).__name__}")
    version = body.get("v")
    if version != PROTOCOL_VERSION:
        raise FrameError(f"unsupported frame version {version!r}, this side speaks {PROTOCOL_VERSION}")
    kind = body.get("t")
    if kind == _T_CHUNK:
        payload = body.get("d")
        if not isinstance(payload, bytes):
            raise FrameError("chunk frame without bytes payload")
        return Chunk(_int(body, "s", 0), _int(body, "o", 0), bool(body.get("z")), payload,
                     _int(body, "c", 0))
    if kind == _T_CREDIT:
        return Credit(_int(body, "n", 0))
    if kind == _T_ACK:
        return Ack(_int(body, "s", 0), _hash(body, "h"), bool(body.get("dup")))
    if kind == _T_HELLO:
        node, epoch = _str(body, "node"), _str(body, "epoch")
        if not valid_node_id(node) or not valid_epoch(epoch):
            raise FrameError(f"hello with invalid node {node!r} or epoch {epoch!r}")
        return Hello(node, epoch)
    if kind == _T_WELCOME:
        raw_partial = body.get("p")
        partial = None
        if raw_partial is not None:
            if not isinstance(raw_partial, dict):
                raise FrameError("welcome partial must be a map")
            partial = Partial(_int(raw_partial, "s", 0), _hash(raw_partial, "h"),
                              _int(raw_partial, "o", 0))
        rejected = body.get("rej") or []
        if not isinstance(rejected, list) or not all(isinstance(s, int) for s in rejected):
            raise FrameError("welcome rejected list must hold ints")
        return Welcome(_int(body, "wm", -1), tuple(rejected), partial, _int(body, "cr", 1),
                       _int(body, "mc", 1))
    if kind == _T_BEGIN:
        return Begin(_int(body, "s", 0), _int(body, "size", 0), _hash(body, "h"),
                     _int(body, "o", 0), _int(body, "tmin", -(1 << 63)),
                     _int(body, "tmax", -(1 << 63)), _int(body, "rows", 0), _str(body, "db"),
                     _str(body, "m"))
    if kind == _T_END:
        return End(_int(body, "s", 0))
    if kind == _T_REJECT:
        return Reject(_int(body, "s", 0), _str(body, "r"))
    if kind == _T_RESTART:
        return Restart(_int(body, "s", 0), _str(body, "r"))
    if kind == _T_ERROR:
        return Error(_str(body, "r"))
    raise FrameError(f"unknown frame type {kind!r}")


class ChunkCodec:
    """Compresses chunk payloads only where that pays: probes the first chunk of each segment
    and keeps sending raw when zstd saves less than `min_saving` (segments are already encoded)."""

    def __init__(self, level: int = 1, min_saving: float = 0.1) -> None:
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._min_saving = min_saving
        self._decompressor = zstandard.ZstdDecompressor()

    def pack(self, seq: int, offset: int, raw: bytes, try_compress: bool) -> tuple[Chunk, bool]:
        """Return the chunk and whether compression paid (the caller keeps probing only if so)."""
        crc = crc32c.crc32c(raw)
        if try_compress:
            packed = self._compressor.compress(raw)
            if len(packed) <= len(raw) * (1.0 - self._min_saving):
                return Chunk(seq, offset, True, packed, crc), True
        return Chunk(seq, offset, False, raw, crc), False

    def unpack(self, chunk: Chunk, max_size: int) -> bytes:
        """Raw bytes of a chunk; raises FrameError on a bad size or checksum."""
        if chunk.compressed:
            try:
                raw = self._decompressor.decompress(chunk.payload, max_output_size=max_size)
            except zstandard.ZstdError as exc:
                raise FrameError(f"chunk seq={chunk.seq} offset={chunk.offset}: zstd: {exc}") from exc
        else:
            raw = chunk.payload
        if len(raw) > max_size:
            raise FrameError(f"chunk seq={chunk.seq} offset={chunk.offset}: {len(raw)} bytes > {max_size}")
        if crc32c.crc32c(raw) != chunk.crc:
            raise FrameError(f"chunk seq={chunk.seq} offset={chunk.offset}: crc32c mismatch")
        return raw
