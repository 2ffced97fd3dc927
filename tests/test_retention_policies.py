"""Retention policies keep their rows apart (storage/namespaces.py): writes, reads, schema,
durations, DROP RETENTION POLICY / MEASUREMENT / DATABASE and DELETE, across restart, a lost
catalog (full WAL replay), kill -9 and flushed segments."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from storage.batch import Batch, FieldType
from storage.engine import (
    DatabaseNotFound,
    RetentionPolicyNotFound,
    StorageConfig,
    StorageEngine,
    StorageError,
)
from storage.namespaces import data_key, split_data_key
from storage.segment_format import DROP_SCOPE_DATABASE

ROOT = Path(__file__).resolve().parent.parent
HOUR_NS = 3600 * 10**9


def points(measurement: str, host: str, values: list[float | int | str], start_ns: int) -> Batch:
    n = len(values)
    return Batch(measurement, [(("host", host),)], np.zeros(n, np.int32),
                 start_ns + np.arange(n, dtype=np.int64) * 10**9, {"v": pa.array(values)})


def values(eng: StorageEngine, key: str, measurement: str = "m") -> list:
    return eng.read(key, measurement).column("v").to_pylist() if measurement in eng.measurements(key) else []


@pytest.fixture
def now_ns() -> int:
    return time.time_ns() // 10**9 * 10**9


def open_engine(path: Path) -> StorageEngine:
    eng = StorageEngine(StorageConfig(data_dir=path, background=False))
    eng.open()
    return eng


def test_data_key_is_the_database_for_autogen_and_round_trips() -> None:
    assert data_key("db", "autogen") == "db"
    assert data_key("db", "short") == "db/short"
    assert split_data_key("db/short") == ("db", "short")
    assert split_data_key("db") == ("db", "autogen")


def test_policies_keep_rows_and_schema_apart(tmp_path: Path, now_ns: int) -> None:
    eng = open_engine(tmp_path)
    try:
        eng.create_database("db")
        eng.create_retention_policy("db", "short", duration_ns=48 * HOUR_NS)
        eng.write("db", [points("m", "a", [1.0, 2.0], now_ns)])
        eng.write("db", [points("m", "s", ["x"], now_ns)], rp="short")  # another type: another namespace
        short = eng.data_key("db", "short")
        assert eng.data_key("db") == "db"
        assert values(eng, "db") == [1.0, 2.0]
        assert values(eng, short) == ["x"]
        assert eng.field_types("db", "m") == {"v": FieldType.FLOAT}
        assert eng.field_types(short, "m") == {"v": FieldType.STRING}
        assert eng.databases() == ["db"]
        assert not eng.has_database(short)
        with pytest.raises(RetentionPolicyNotFound, match="retention policy not found: nope"):
            eng.data_key("db", "nope")
        with pytest.raises(DatabaseNotFound):
            eng.data_key("other")
        eng.create_retention_policy("db", "empty")
        assert eng.measurements(eng.data_key("db", "empty")) == []
        # a new default policy takes the writes that name none
        eng.create_retention_policy("db", "long", duration_ns=0, default=True)
        eng.write("db", [points("m", "l", [7], now_ns)])
        assert eng.data_key("db") == "db/long"
        assert values(eng, "db/long") == [7]
        assert values(eng, "db") == [1.0, 2.0]
    finally:
        eng.close()


def test_names_with_a_slash_are_refused(tmp_path: Path) -> None:
    eng = open_engine(tmp_path)
    try:
        with pytest.raises(StorageError, match="invalid name"):
            eng.create_database("a/b")
        eng.create_database("db")
        for bad in ("x/y", "x\\y", ".."):
            with pytest.raises(StorageError, match="invalid name"):
                eng.create_retention_policy("db", bad)
    finally:
        eng.close()


def test_points_beyond_their_policy_are_dropped_per_policy(tmp_path: Path, now_ns: int) -> None:
    eng = open_engine(tmp_path)
    try:
        eng.create_database("db")
        eng.create_retention_policy("db", "short", duration_ns=HOUR_NS)
        old = now_ns - 2 * HOUR_NS
        outcome = eng.write("db", [points("m", "a", [1, 2], old)], rp="short")
        assert (outcome.points_written, outcome.dropped) == (0, 2)
        assert outcome.errors == ["points beyond retention policy"]
        assert eng.write("db", [points("m", "a", [1, 2], old)]).points_written == 2  # autogen: forever
    finally:
        eng.close()


def test_retention_enforces_each_policy_duration_on_its_own_segments(tmp_path: Path, now_ns: int) -> None:
    eng = open_engine(tmp_path)
    try:
        eng.create_database("db")
        eng.create_retention_policy("db", "short", duration_ns=5 * HOUR_NS)
        two_hours_ago = now_ns - 2 * HOUR_NS
        eng.write("db", [points("m", "a", [1], two_hours_ago)], rp="short")
        eng.write("db", [points("m", "a", [2], two_hours_ago)])
        eng.flush_all()
        eng.alter_retention_policy("db", "short", duration_ns=HOUR_NS)
        report = eng.enforce_retention()
        assert len(report.dropped_expired) == 1
        assert values(eng, "db/short") == []
        assert values(eng, "db") == [2]
    finally:
        eng.close()


def test_drop_retention_policy_drops_its_rows_durably(tmp_path: Path, now_ns: int) -> None:
    eng = open_engine(tmp_path)
    eng.create_database("db")
    eng.create_retention_policy("db", "short", duration_ns=48 * HOUR_NS)
    eng.write("db", [points("m", "s", [1, 2], now_ns)], rp="short")
    eng.flush_all()  # some rows in a segment ...
    eng.write("db", [points("m", "s", [3], now_ns + 10 * 10**9)], rp="short")  # ... some buffered
    eng.write("db", [points("m", "a", [9], now_ns)])
    eng.drop_retention_policy("db", "short")
    tombstones = [i for i in eng.segment_store.segments("db/short") if i.drop == DROP_SCOPE_DATABASE]
    assert len(tombstones) == 1 and not [i for i in eng.segment_store.segments("db/short") if i.rows]
    eng.create_retention_policy("db", "short", duration_ns=48 * HOUR_NS)
    assert eng.measurements("db/short") == []
    eng.write("db", [points("m", "s", [4], now_ns)], rp="short")
    eng.close()
    for _ in range(2):  # the catalog checkpoint, then a full replay of the WAL, agree
        eng = open_engine(tmp_path)
        assert values(eng, "db/short") == [4]
        assert values(eng, "db") == [9]
        eng.close()
        (tmp_path / "meta").unlink()


def test_drop_measurement_delete_and_drop_database_reach_every_policy(tmp_path: Path, now_ns: int) -> None:
    eng = open_engine(tmp_path)
    try:
        eng.create_database("db")
        eng.create_retention_policy("db", "short", duration_ns=48 * HOUR_NS)
        for rp in (None, "short"):
            eng.write("db", [points("m", "a", [1, 2], now_ns), points("m", "b", [3], now_ns),
                             points("n", "a", [5], now_ns)], rp=rp)
        eng.flush("db/short", "m")  # the short policy's m in a segment, the rest buffered
        assert eng.delete("db", "m", tag_filter={"host": {"b"}}) == 2
        assert values(eng, "db") == [1, 2] and values(eng, "db/short") == [1, 2]
        eng.drop_measurement("db", "n")
        assert eng.measurements("db") == ["m"] and eng.measurements("db/short") == ["m"]
        eng.drop_database("db")
        assert eng.databases() == []
        eng.create_database("db")
        eng.create_retention_policy("db", "short", duration_ns=48 * HOUR_NS)
        assert eng.measurements("db") == [] and eng.measurements("db/short") == []
    finally:
        eng.close()


CRASHING_WRITER = textwrap.dedent(
    """
    import signal, sys
    from pathlib import Path
    import numpy as np, pyarrow as pa
    from storage.batch import Batch
    from storage.engine import StorageConfig, StorageEngine
    eng = StorageEngine(StorageConfig(data_dir=Path(sys.argv[1]), background=False))
    eng.open()
    now = int(sys.argv[2])
    def batch(host, v):
        return Batch("m", [(("host", host),)], np.zeros(1, np.int32), np.array([now], np.int64), {"v": pa.array([v])})
    eng.create_database("db")
    eng.create_retention_policy("db", "short", duration_ns=48 * 3600 * 10**9)
    eng.create_retention_policy("db", "keep", duration_ns=48 * 3600 * 10**9)
    eng.write("db", [batch("s", 1)], rp="short")
    eng.write("db", [batch("k", 2)], rp="keep")
    eng.flush("db/keep", "m")
    eng.drop_retention_policy("db", "short")
    eng.write("db", [batch("a", 3)])
    print("acknowledged", flush=True)
    signal.pause()  # until the test kills it
    """
)


def test_kill_9_after_drop_retention_policy_keeps_the_drop_and_the_other_policies(tmp_path: Path,
                                                                                  now_ns: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_WRITER, str(tmp_path), str(now_ns)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "acknowledged"
    finally:
        proc.kill()
        proc.wait()
    eng = open_engine(tmp_path)
    try:
        assert sorted(p.name for p in eng.retention_policies("db")) == ["autogen", "keep"]
        assert values(eng, "db/keep") == [2]
        assert values(eng, "db") == [3]
        assert eng.measurements("db/short") == []
        with pytest.raises(RetentionPolicyNotFound):
            eng.data_key("db", "short")
    finally:
        eng.close()


def test_create_database_with_a_policy_has_that_default_instead_of_autogen(tmp_path: Path, now_ns: int) -> None:
    eng = open_engine(tmp_path)
    eng.create_database("db", rp_name="fast", duration_ns=72 * HOUR_NS, shard_group_duration_ns=HOUR_NS)
    eng.create_database("db", rp_name="fast", duration_ns=72 * HOUR_NS, shard_group_duration_ns=HOUR_NS)  # same: no-op
    for conflicting in ({"rp_name": "fast"}, {"rp_name": "other"}, {"duration_ns": 0}):
        with pytest.raises(StorageError, match="retention policy conflicts with an existing policy"):
            eng.create_database("db", **conflicting)
    with pytest.raises(StorageError, match="retention policy duration must be at least 1h0m0s"):
        eng.create_database("db2", duration_ns=HOUR_NS // 2)
    eng.write("db", [points("m", "a", [1.5], now_ns)])
    eng.close()
    for _ in range(2):  # the catalog checkpoint, then a full replay of the WAL, agree
        eng = open_engine(tmp_path)
        [policy] = eng.retention_policies("db")
        assert (policy.name, policy.duration_ns, policy.shard_group_duration_ns, policy.default) == (
            "fast", 72 * HOUR_NS, HOUR_NS, True)
        assert values(eng, eng.data_key("db")) == [1.5] and eng.data_key("db") == "db/fast"
        eng.close()
        (tmp_path / "meta").unlink()
