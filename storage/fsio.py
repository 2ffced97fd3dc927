"""Durable file primitives: atomic replace (tmp + fsync + rename + dir fsync), checksummed
blobs with magic + version, and moving damaged files to quarantine with a reason."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import crc32c

# Checksummed blob: magic(8) version(u16) reserved(u16) payload_len(u64) crc32c(u32) payload.
# The CRC covers the 20 header bytes before it and the payload.
_BLOB_HEADER = struct.Struct("<8sHHQ")
_CRC = struct.Struct("<I")
BLOB_HEADER_BYTES = _BLOB_HEADER.size + _CRC.size


class CorruptFileError(Exception):
    """A file failed its magic, version, length or checksum check."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


def checksum(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C (Castagnoli) of data, continuing from `value`."""
    return crc32c.crc32c(data, value=value)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a create/rename/unlink in it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace `path` with `data`: write path.tmp, fsync, rename over path, fsync the directory.

    A crash leaves either the old or the new content, never a mix.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


def pack_blob(magic: bytes, version: int, payload: bytes) -> bytes:
    """Frame a whole-file payload: magic, version, length, CRC32C, payload."""
    if len(magic) != 8:
        raise ValueError(f"magic must be 8 bytes, got {magic!r}")
    header = _BLOB_HEADER.pack(magic, version, 0, len(payload))
    crc = checksum(payload, checksum(header))
    return header + _CRC.pack(crc) + payload


def unpack_blob(data: bytes, magic: bytes, max_version: int, path: Path) -> tuple[int, bytes]:
    """Check a blob made by pack_blob; return (version, payload) or raise CorruptFileError."""
    if len(data) < BLOB_HEADER_BYTES:
        raise CorruptFileError(path, 0, f"file is {len(data)} bytes, shorter than its header")
    got_magic, version, _reserved, length = _BLOB_HEADER.unpack_from(data, 0)
    if got_magic != magic:
        raise CorruptFileError(path, 0, f"bad magic {got_magic!r}, expected {magic!r}")
    if version < 1 or version > max_version:
        raise CorruptFileError(path, 8, f"unsupported version {version} (this build reads <= {max_version})")
    end = BLOB_HEADER_BYTES + length
    if end != len(data):
        raise CorruptFileError(path, 12, f"payload length {length} does not match file size {len(data)}")
    (crc,) = _CRC.unpack_from(data, _BLOB_HEADER.size)
    payload = data[BLOB_HEADER_BYTES:]
    expected = checksum(payload, checksum(data[: _BLOB_HEADER.size]))
    if crc != expected:
        raise CorruptFileError(path, _BLOB_HEADER.size, f"checksum mismatch: stored {crc:#010x}, computed {expected:#010x}")
    return version, payload


def quarantine(path: Path, quarantine_dir: Path, reason: str, *, keep_original: bool = False) -> Path:
    """Move (or, with keep_original, copy) a damaged file into quarantine_dir (same name; a
    numeric suffix if taken) and write `<name>.reason` next to it. Returns the new path."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = quarantine_dir / path.name
    n = 1
    while target.exists():
        target = quarantine_dir / f"{path.name}.{n}"
        n += 1
    if keep_original:
        write_atomic(target, path.read_bytes())
    else:
        os.replace(path, target)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_atomic(target.with_name(target.name + ".reason"), f"{stamp} {path}: {reason}\n".encode())
    fsync_dir(path.parent)
    return target


def tree_bytes(root: Path) -> int:
    """Bytes of every file below root (files vanishing during the walk are skipped)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total
