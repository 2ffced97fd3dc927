"""WAL framing round trip, rolling, torn-tail truncation, mid-file quarantine, release."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.fsio import CorruptFileError, pack_blob, unpack_blob, write_atomic
from storage.wal import (
    FILE_HEADER_BYTES,
    FLAG_ZSTD,
    RECORD_HEADER_BYTES,
    FsyncPolicy,
    RecordType,
    WalRecord,
    WalWriter,
    compress_payload,
    list_wal_files,
    recover,
    wal_file_name,
)


def _write(wal_dir: Path, payloads: list[bytes], file_bytes: int = 1 << 20, file_no: int = 1) -> WalWriter:
    wal_dir.mkdir(parents=True, exist_ok=True)
    writer = WalWriter(wal_dir, file_no, 1, file_bytes, {})
    writer.append([(RecordType.WRITE, 0, p) for p in payloads])
    writer.sync()
    writer.close()
    return writer


def _recover(tmp_path: Path) -> tuple[list[WalRecord], object]:
    seen: list[WalRecord] = []
    result = recover(tmp_path / "wal", tmp_path / "quarantine", seen.append)
    return seen, result


def _record_offsets(payloads: list[bytes]) -> list[int]:
    offs, off = [], FILE_HEADER_BYTES
    for p in payloads:
        offs.append(off)
        off += RECORD_HEADER_BYTES + len(p)
    return offs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=40), file_bytes=st.integers(64, 2000))
def test_round_trip_with_rolling(tmp_path_factory, payloads: list[bytes], file_bytes: int) -> None:
    root = tmp_path_factory.mktemp("wal")
    writer = _write(root / "wal", payloads, file_bytes)
    seen, result = _recover(root)
    assert [r.payload for r in seen] == payloads
    assert [r.seq for r in seen] == list(range(1, len(payloads) + 1))
    assert result.truncated_tail_bytes == 0 and result.quarantined == []
    assert result.next_seq == len(payloads) + 1
    files = list_wal_files(root / "wal")
    assert len(files) == writer.file_count()
    # every file but the last respects the size limit unless it holds a single oversized record
    for no, path in files[:-1]:
        in_file = [r for r in seen if r.file_no == no]
        assert path.stat().st_size <= file_bytes or len(in_file) == 1


def test_compressed_payload_round_trip(tmp_path: Path) -> None:
    raw = b"cpu,host=a usage=0.5 " * 2000
    packed, flags = compress_payload(raw)
    assert flags == FLAG_ZSTD and len(packed) < len(raw) // 4
    (tmp_path / "wal").mkdir()
    writer = WalWriter(tmp_path / "wal", 1, 1, 1 << 20, {})
    writer.append([(RecordType.DDL, flags, packed), (RecordType.WRITE, 0, b"small")])
    writer.close()
    seen, _ = _recover(tmp_path)
    assert [(r.rtype, r.payload) for r in seen] == [(RecordType.DDL, raw), (RecordType.WRITE, b"small")]


def test_incompressible_payload_stored_raw() -> None:
    noise = os.urandom(10000)
    assert compress_payload(noise) == (noise, 0)


def test_torn_tail_truncated(tmp_path: Path) -> None:
    payloads = [bytes([i]) * 100 for i in range(10)]
    _write(tmp_path / "wal", payloads)
    path = tmp_path / "wal" / wal_file_name(1)
    size = path.stat().st_size
    os.truncate(path, size - 37)  # incomplete last record
    seen, result = _recover(tmp_path)
    assert [r.payload for r in seen] == payloads[:-1]
    last_off = _record_offsets(payloads)[-1]
    assert result.truncated_tail_bytes == size - 37 - last_off
    assert path.stat().st_size == last_off
    assert result.quarantined == []


def test_bad_crc_in_last_record_is_torn_tail(tmp_path: Path) -> None:
    payloads = [bytes([i]) * 50 for i in range(5)]
    _write(tmp_path / "wal", payloads)
    path = tmp_path / "wal" / wal_file_name(1)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    seen, result = _recover(tmp_path)
    assert len(seen) == 4 and result.quarantined == []
    assert result.truncated_tail_bytes == RECORD_HEADER_BYTES + 50


def test_zero_filled_tail_is_torn(tmp_path: Path) -> None:
    payloads = [b"x" * 20] * 3
    _write(tmp_path / "wal", payloads)
    path = tmp_path / "wal" / wal_file_name(1)
    with open(path, "ab") as fh:
        fh.write(b"\0" * 4096)
    seen, result = _recover(tmp_path)
    assert len(seen) == 3 and result.truncated_tail_bytes == 4096 and result.quarantined == []


def test_mid_file_corruption_quarantines_whole_file(tmp_path: Path) -> None:
    payloads = [bytes([65 + i]) * 64 for i in range(10)]
    _write(tmp_path / "wal", payloads)
    path = tmp_path / "wal" / wal_file_name(1)
    bad_off = _record_offsets(payloads)[3]
    data = bytearray(path.read_bytes())
    data[bad_off + RECORD_HEADER_BYTES + 5] ^= 0x01  # payload bit flip in record 4 of 10
    path.write_bytes(bytes(data))
    seen, result = _recover(tmp_path)
    assert [r.payload for r in seen] == payloads[:3]  # the valid records before it are replayed
    assert len(result.quarantined) == 1
    assert str(path) in result.quarantined[0] and f"offset {bad_off}" in result.quarantined[0]
    assert path.stat().st_size == bad_off  # the valid prefix stays live
    moved = tmp_path / "quarantine" / wal_file_name(1)
    assert moved.read_bytes() == bytes(data)
    reason = (tmp_path / "quarantine" / (wal_file_name(1) + ".reason")).read_text()
    assert f"offset {bad_off}" in reason and "checksum" in reason
    assert result.next_seq == 4  # the engine raises this above its catalog checkpoint
    assert result.next_file_no == 2


def test_corrupt_length_mid_file_is_not_mistaken_for_tail(tmp_path: Path) -> None:
    payloads = [b"p" * 30 for _ in range(6)]
    _write(tmp_path / "wal", payloads)
    path = tmp_path / "wal" / wal_file_name(1)
    off = _record_offsets(payloads)[2]
    data = bytearray(path.read_bytes())
    data[off : off + 4] = (10**6).to_bytes(4, "little")  # length now runs past EOF
    path.write_bytes(bytes(data))
    seen, result = _recover(tmp_path)
    assert len(seen) == 2 and len(result.quarantined) == 1 and f"offset {off}" in result.quarantined[0]
    assert result.truncated_tail_bytes == 0


def test_bad_record_in_earlier_file_quarantines_it_and_later_files_replay(tmp_path: Path) -> None:
    payloads = [bytes([i]) * 200 for i in range(12)]
    _write(tmp_path / "wal", payloads, file_bytes=700)  # 3 records per file
    files = list_wal_files(tmp_path / "wal")
    assert len(files) == 4
    first = files[0][1]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0x55  # last record of a NON-last file: corruption, not a torn tail
    first.write_bytes(bytes(data))
    seen, result = _recover(tmp_path)
    assert [r.payload for r in seen] == payloads[:2] + payloads[3:]
    assert len(result.quarantined) == 1 and str(first) in result.quarantined[0]
    assert result.next_seq == 13


def test_bad_file_header_quarantined(tmp_path: Path) -> None:
    _write(tmp_path / "wal", [b"a"], file_no=1)
    _write(tmp_path / "wal2", [b"b"], file_no=2)
    os.replace(tmp_path / "wal2" / wal_file_name(2), tmp_path / "wal" / wal_file_name(2))
    path = tmp_path / "wal" / wal_file_name(1)
    data = bytearray(path.read_bytes())
    data[0] = ord("X")
    path.write_bytes(bytes(data))
    seen, result = _recover(tmp_path)
    assert [r.payload for r in seen] == [b"b"]
    assert "offset 0" in result.quarantined[0] and "magic" in result.quarantined[0]


def test_release_through_keeps_current_file(tmp_path: Path) -> None:
    (tmp_path / "wal").mkdir()
    writer = WalWriter(tmp_path / "wal", 1, 1, 300, {})
    writer.append([(RecordType.WRITE, 0, b"z" * 200) for _ in range(5)])
    numbers = [n for n, _ in list_wal_files(tmp_path / "wal")]
    assert numbers == [1, 2, 3, 4, 5]
    assert writer.release_through(3) == [1, 2, 3]
    assert [n for n, _ in list_wal_files(tmp_path / "wal")] == [4, 5]
    assert writer.release_through(99) == [4]  # 5 is being written
    writer.close()


def test_blob_checksum_detects_damage(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    write_atomic(path, pack_blob(b"TESTBLOB", 1, b"hello world"))
    assert unpack_blob(path.read_bytes(), b"TESTBLOB", 1, path) == (1, b"hello world")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    try:
        unpack_blob(bytes(data), b"TESTBLOB", 1, path)
    except CorruptFileError as exc:
        assert "checksum" in str(exc) and str(path) in str(exc)
    else:
        raise AssertionError("damaged blob accepted")
    assert not path.with_name("blob.tmp").exists()


def test_fsync_policy_parse() -> None:
    assert FsyncPolicy.parse("always").mode == "always"
    assert FsyncPolicy.parse("interval:250") == FsyncPolicy("interval", 0.25)
    for bad in ("interval:", "interval:x", "sometimes"):
        try:
            FsyncPolicy.parse(bad)
        except ValueError as exc:
            assert bad in str(exc)
        else:
            raise AssertionError(f"accepted {bad!r}")
