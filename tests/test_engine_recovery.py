"""Engine recovery: exact replay after restart and after kill -9, torn tails, mid-file WAL
corruption, catalog corruption, drops that must not resurrect, fsync policies."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa

from storage.batch import Batch, FieldType
from storage.engine import StorageConfig, StorageEngine
from storage.wal import FILE_HEADER_BYTES, RECORD_HEADER_BYTES, list_wal_files
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def batch(k: int, rows: int = 10) -> Batch:
    """Write number k: rows points with unique times k*1000 + i, field v = k."""
    return Batch(
        "m",
        [(("host", f"h{k % 3}"),)],
        np.zeros(rows, np.int32),
        np.arange(k * 1000, k * 1000 + rows, dtype=np.int64),
        {"v": pa.array(np.full(rows, k, dtype=np.int64)), "s": pa.array([f"{k}"] * rows)},
    )


def open_engine(path: Path, **kw) -> tuple[StorageEngine, object]:
    eng = StorageEngine(StorageConfig(data_dir=path, **kw))
    return eng, eng.open()


def written_keys(eng: StorageEngine) -> list[tuple[str, int]]:
    t = eng.read("db", "m")
    return list(zip(t.column("host").to_pylist(), t.column("time").cast(pa.int64()).to_pylist(), strict=True))


def test_restart_replays_exactly(tmp_path: Path) -> None:
    eng, _ = open_engine(tmp_path)
    eng.create_database("db")
    futures = [eng.submit("db", [batch(k)]) for k in range(40)]
    assert sum(f.result().points_written for f in futures) == 400
    before = eng.read("db", "m")
    eng.close()
    eng, report = open_engine(tmp_path)
    assert report.replayed_points == 400 and report.quarantined == [] and report.truncated_tail_bytes == 0
    after = eng.read("db", "m")
    assert after.equals(before)
    assert len(set(written_keys(eng))) == after.num_rows == 400
    # appending after a restart continues the sequence; a second restart still replays exactly
    eng.write("db", [batch(99)])
    eng.close()
    eng, report = open_engine(tmp_path)
    assert eng.read("db", "m").num_rows == 410 and report.replayed_points == 410
    eng.close()


def test_torn_tail_is_truncated_and_engine_keeps_writing(tmp_path: Path) -> None:
    eng, _ = open_engine(tmp_path)
    eng.create_database("db")
    for k in range(5):
        eng.write("db", [batch(k)])
    eng.close()
    _no, path = list_wal_files(tmp_path / "wal")[-1]
    with open(path, "ab") as fh:
        fh.write(b"\x99" * 33)  # a half-written record
    eng, report = open_engine(tmp_path)
    assert report.truncated_tail_bytes == 33 and report.quarantined == []
    assert eng.read("db", "m").num_rows == 50
    eng.write("db", [batch(7)])
    eng.close()
    eng, report = open_engine(tmp_path)
    assert eng.read("db", "m").num_rows == 60 and report.truncated_tail_bytes == 0
    eng.close()


def test_mid_file_corruption_quarantined_and_engine_starts(tmp_path: Path) -> None:
    eng, _ = open_engine(tmp_path)
    eng.create_database("db")
    for k in range(6):
        eng.write("db", [batch(k)])
    eng.close()
    _no, path = list_wal_files(tmp_path / "wal")[-1]
    data = bytearray(path.read_bytes())
    # walk the frames to the 4th record (record 1 is the CREATE DATABASE)
    off = FILE_HEADER_BYTES
    for _ in range(3):
        off += RECORD_HEADER_BYTES + int.from_bytes(data[off : off + 4], "little")
    data[off + RECORD_HEADER_BYTES + 10] ^= 0x40
    path.write_bytes(bytes(data))
    eng, report = open_engine(tmp_path)
    assert len(report.quarantined) == 1
    assert str(path) in report.quarantined[0] and f"offset {off}" in report.quarantined[0]
    assert (tmp_path / "quarantine" / path.name).exists()
    assert (tmp_path / "quarantine" / (path.name + ".reason")).exists()
    t = eng.read("db", "m")
    assert sorted(set(t.column("v").to_pylist())) == [0, 1]  # records before the damage
    assert eng.write("db", [batch(50)]).points_written == 10
    eng.close()
    eng, report = open_engine(tmp_path)
    assert report.quarantined == [] and eng.read("db", "m").num_rows == 30
    eng.close()


def test_corrupt_catalog_rebuilt_from_wal(tmp_path: Path) -> None:
    eng, _ = open_engine(tmp_path)
    eng.create_database("db")
    eng.create_database("other")
    eng.write("db", [batch(1)])
    eng.close()
    meta = tmp_path / "meta"
    data = bytearray(meta.read_bytes())
    data[len(data) // 2] ^= 0xFF
    meta.write_bytes(bytes(data))
    eng, report = open_engine(tmp_path)
    assert len(report.quarantined) == 1 and "catalog" in report.quarantined[0] and str(meta) in report.quarantined[0]
    assert (tmp_path / "quarantine" / "meta").exists()
    assert eng.databases() == ["db", "other"]
    assert eng.field_types("db", "m") == {"s": FieldType.STRING, "v": FieldType.INTEGER}
    assert eng.read("db", "m").num_rows == 10
    eng.close()


def test_database_mentioned_only_in_writes_is_recreated(tmp_path: Path) -> None:
    eng, _ = open_engine(tmp_path)
    eng.create_database("db")
    eng.write("db", [batch(1)])
    eng.close()
    # lose the catalog AND the file holding CREATE DATABASE: only the write record remains
    (tmp_path / "meta").write_bytes(b"garbage")
    _no, path = list_wal_files(tmp_path / "wal")[-1]
    data = path.read_bytes()
    first_len = int.from_bytes(data[FILE_HEADER_BYTES : FILE_HEADER_BYTES + 4], "little")
    cut = FILE_HEADER_BYTES + RECORD_HEADER_BYTES + first_len
    path.write_bytes(data[:FILE_HEADER_BYTES] + data[cut:])
    eng, report = open_engine(tmp_path)
    assert eng.databases() == ["db"] and eng.read("db", "m").num_rows == 10
    eng.close()


def test_dropped_data_does_not_resurrect(tmp_path: Path) -> None:
    eng, _ = open_engine(tmp_path)
    eng.create_database("db")
    eng.write("db", [batch(1)])
    eng.drop_database("db")
    eng.create_database("db")
    eng.write("db", [batch(2)])
    eng.drop_measurement("db", "m")
    eng.write("db", [Batch("m", [()], np.zeros(1, np.int32), np.array([5], np.int64), {"v": pa.array(["str"])})])
    eng.create_retention_policy("db", "week", duration_ns=7 * 86400 * 10**9)
    eng.close()
    for _ in range(2):  # the catalog checkpoint and a full replay agree
        eng, _ = open_engine(tmp_path)
        assert eng.read("db", "m").column("v").to_pylist() == ["str"]
        assert eng.field_types("db", "m") == {"v": FieldType.STRING}
        assert sorted(r.name for r in eng.retention_policies("db")) == ["autogen", "week"]
        eng.close()
        (tmp_path / "meta").unlink()


def test_interval_and_never_policies_survive_clean_close(tmp_path: Path) -> None:
    for policy in ("interval:20", "never"):
        d = tmp_path / policy.replace(":", "_")
        eng, _ = open_engine(d, fsync=policy)
        eng.create_database("db")
        fsyncs_after_ddl = eng.stats()["fsyncs"]
        for k in range(5):
            eng.write("db", [batch(k)])
        if policy.startswith("interval"):
            wait_until(lambda e=eng, n=fsyncs_after_ddl: e.stats()["fsyncs"] > n, 5, "an interval fsync")
        else:
            assert eng.stats()["fsyncs"] == fsyncs_after_ddl
        eng.close()
        eng, report = open_engine(d)
        assert report.replayed_points == 50
        eng.close()


CRASH_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from tests.test_engine_recovery import batch
    from storage.engine import StorageConfig, StorageEngine
    eng = StorageEngine(StorageConfig(data_dir=Path(sys.argv[1]), wal_file_bytes=20000))
    eng.open()
    eng.create_database("db")
    k = int(sys.argv[3])
    while True:
        futures = [eng.submit("db", [batch(k + j)]) for j in range(4)]
        for j, f in enumerate(futures):
            f.result()
            print(k + j, flush=True)
        k += 4
    """
)


def test_kill_9_loop_keeps_every_acknowledged_point_once(tmp_path: Path) -> None:
    acked: set[int] = set()
    next_k = 0
    for _round in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASH_WRITER, str(tmp_path), str(ROOT), str(next_k)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        got = 0
        for line in proc.stdout:
            acked.add(int(line))
            got += 1
            if got >= 60:
                break
        os.kill(proc.pid, 9)
        proc.wait()
        next_k = max(acked) + 1000  # unique k per round
        eng, report = open_engine(tmp_path)
        t = eng.read("db", "m")
        present = set(t.column("v").to_pylist())
        assert acked <= present, f"lost acknowledged writes {sorted(acked - present)[:5]} ({report})"
        keys = written_keys(eng)
        assert len(keys) == len(set(keys))  # exactly once
        counts = np.bincount(np.asarray(t.column("v").to_pylist()))
        assert set(counts[counts > 0].tolist()) == {10}  # every replayed write complete
        eng.close()


def test_flushed_marker_replayed_from_wal_discards_covered_rows(tmp_path: Path) -> None:
    eng, _ = open_engine(tmp_path)
    eng.create_database("db")
    for k in range(3):
        eng.write("db", [batch(k)])
    old_catalog = (tmp_path / "meta").read_bytes()  # checkpoint from before the flush
    frozen = eng.freeze("db", "m")
    assert frozen is not None
    eng.write("db", [batch(5)])  # arrives between freeze and mark_flushed
    eng.mark_flushed(frozen)
    eng.close()
    (tmp_path / "meta").write_bytes(old_catalog)  # crash before the catalog save
    eng, report = open_engine(tmp_path)
    assert sorted(set(eng.read("db", "m").column("v").to_pylist())) == [5]
    assert eng.stats()["buffer_chunks"] == 1 and eng.stats()["buffer_rows"] == 10
    eng.close()
