"""Corrupt files on disk: the server still starts, quarantines them, reports them, keeps the rest."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from storage.engine import StorageConfig, StorageEngine
from tests.server_process import ServerProcess

BASE_NS = 1_700_000_000_000_000_000


def write(url: str, first: int, count: int) -> None:
    body = "\n".join(f"m,host=h{i % 3} id={i}i {BASE_NS + i}" for i in range(first, first + count)).encode()
    req = urllib.request.Request(f"{url}/write?db=edge", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 204


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=30) as resp:
        return json.loads(resp.read())


def stored_ids(data_dir: Path) -> set[int]:
    engine = StorageEngine(StorageConfig(data_dir=data_dir, background=False))
    engine.open()
    try:
        return set(engine.read("edge", "m").column("id").to_pylist())
    finally:
        engine.close()


def test_flipped_bytes_in_a_wal_file_quarantine_it_and_keep_the_rest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, "--set", "storage.wal_file_size=8KiB").start()
    for batch in range(12):  # ~12 records over several small WAL files
        write(server.url, batch * 100, 100)
    server.kill()  # kill -9: everything stays in the WAL (a clean stop would flush it)
    wal_files = sorted((data / "wal").iterdir())
    assert len(wal_files) >= 3
    victim = wal_files[1]
    raw = bytearray(victim.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 16] = bytes(b ^ 0xFF for b in raw[middle:middle + 16])
    victim.write_bytes(bytes(raw))

    server = ServerProcess(data).start()
    try:
        storage = next(c for c in health(server.url)["checks"] if c["name"] == "storage")
        assert storage["status"] == "pass"
        assert len(storage["quarantined"]) == 1 and victim.name in storage["quarantined"][0]
        assert "offset" in storage["quarantined"][0]
        write(server.url, 5000, 10)  # the server keeps accepting writes
    finally:
        server.kill()
    assert (data / "quarantine" / victim.name).exists()
    ids = stored_ids(data)
    assert set(range(5000, 5010)) <= ids
    lost = set(range(1200)) - ids
    assert 0 < len(lost) < 1200 // 2, "only records at and after the corruption in that one file are lost"


def test_flipped_byte_in_a_segment_quarantines_that_segment(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data).start()
    write(server.url, 0, 300)
    assert server.stop() == 0  # a clean stop flushes the buffer to a segment
    segments = sorted((data / "segments").rglob("*.seg"))
    assert len(segments) == 1
    raw = bytearray(segments[0].read_bytes())
    raw[64] ^= 0xFF  # inside the first column chunk
    segments[0].write_bytes(bytes(raw))

    server = ServerProcess(data).start()
    try:
        storage = next(c for c in health(server.url)["checks"] if c["name"] == "storage")
        assert any(segments[0].name in q for q in storage["quarantined"]), storage["quarantined"]
        write(server.url, 1000, 5)
    finally:
        assert server.stop() == 0
    assert any(p.name == segments[0].name for p in (data / "quarantine").rglob("*"))
    assert stored_ids(data) == set(range(1000, 1005))
