"""Compaction: newest-wins merge, guard respected, replaced inputs hidden/recovered, kill -9 loop."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from storage.compaction import CompactionPolicy, Compactor, merge_tables
from storage.segment_format import SegmentInfo
from storage.segment_store import SegmentStore

REPO = Path(__file__).resolve().parent.parent
Model = dict[tuple[str, int], dict[str, object]]
FIELDS = ["a", "b", "s"]


def random_table(rng: np.random.Generator, n: int, t_lo: int, t_hi: int) -> pa.Table:
    hosts = rng.choice(["h1", "h2", "h3"], n)
    times = rng.integers(t_lo, t_hi, n)

    def sparse(values: list[object]) -> list[object]:
        return [None if rng.random() < 0.3 else v for v in values]

    return pa.table({
        "time": pa.array(times, type=pa.timestamp("ns")),
        "host": pa.array(hosts.tolist(), type=pa.string()),
        "a": pa.array(sparse(rng.normal(size=n).round(2).tolist()), type=pa.float64()),
        "b": pa.array(sparse(rng.integers(-5, 5, n).tolist()), type=pa.int64()),
        "s": pa.array(sparse([f"v{x}" for x in rng.integers(0, 4, n)]), type=pa.string()),
    })


def apply(model: Model, table: pa.Table) -> None:
    """Brute-force newest-wins-per-field: later rows (and later tables) overwrite non-null values."""
    t = table.set_column(0, "time", table.column("time").cast(pa.int64()))
    for row in t.to_pylist():
        point = model.setdefault((row["host"], row["time"]), {f: None for f in FIELDS})
        for f in FIELDS:
            if row.get(f) is not None:
                point[f] = row[f]


def resolved(store: SegmentStore) -> Model:
    model: Model = {}
    for table in store.read("db", "cpu"):
        apply(model, table)
    return model


def raw_rows(store: SegmentStore) -> int:
    return sum(t.num_rows for t in store.read("db", "cpu"))


def assert_no_replaced_visible(store: SegmentStore) -> None:
    visible = store.segments()
    replaced = {s for i in visible for s in i.replaces}
    assert not replaced & {i.seq for i in visible}


def test_merge_tables_newest_non_null_wins() -> None:
    old = pa.table({"time": pa.array([1, 2], pa.int64()), "host": ["x", "x"],
                    "a": pa.array([1.0, 2.0]), "b": pa.array([10, None], pa.int64())})
    new = pa.table({"time": pa.array([2, 3], pa.int64()), "host": ["x", "y"],
                    "a": pa.array([None, 3.0]), "b": pa.array([20, 30], pa.int64()),
                    "late": pa.array([True, None])})
    merged = merge_tables([old, new], "m", ["host"])
    rows = merged.set_column(0, "time", merged.column("time").cast(pa.int64())).to_pylist()
    assert rows == [
        {"time": 1, "host": "x", "a": 1.0, "b": 10, "late": None},
        {"time": 2, "host": "x", "a": 2.0, "b": 20, "late": True},
        {"time": 3, "host": "y", "a": 3.0, "b": 30, "late": None},
    ]


def test_compaction_preserves_data_and_respects_guard(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.open()
    rng = np.random.default_rng(3)
    model: Model = {}
    for _ in range(6):
        t = random_table(rng, 30, 0, 40)
        store.seal("db", "cpu", t, tag_keys=["host"])
        apply(model, t)
    synced: set[int] = {1, 2, 3, 4}

    def is_synced(info: SegmentInfo) -> bool:
        return info.seq in synced

    store.set_delete_guard(is_synced)
    compactor = Compactor(store, CompactionPolicy(pause_s=0))
    assert compactor.run_until_idle() == 1
    segs = store.segments()
    assert [i.seq for i in segs] == [5, 6, 7]  # 1-4 merged into 7; unsynced 5, 6 untouched
    assert segs[2].replaces == (1, 2, 3, 4) and segs[2].precedence == 4
    assert resolved(store) == model
    assert raw_rows(store) == sum(i.rows for i in segs)
    # A newer unsynced segment between candidates blocks merging across it (it overlaps in time).
    synced.update({7, 8})
    t = random_table(rng, 30, 0, 40)
    store.seal("db", "cpu", t, tag_keys=["host"])
    apply(model, t)
    assert compactor.run_until_idle() == 0
    assert resolved(store) == model
    synced.update({5, 6})
    assert compactor.run_until_idle() == 1
    assert len(store.segments()) == 1
    assert resolved(store) == model
    rows = raw_rows(store)
    assert rows == len(model)  # duplicates resolved inside the merged segment


def test_replaced_inputs_hidden_then_removed_on_open(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path)
    store.open()
    rng = np.random.default_rng(4)
    model: Model = {}
    inputs = []
    for _ in range(3):
        t = random_table(rng, 20, 0, 30)
        inputs.append(store.seal("db", "cpu", t, tag_keys=["host"]))
        apply(model, t)
    merged = merge_tables([pa.concat_tables(store.read("db", "cpu"), promote_options="default")], "cpu", ["host"])
    # "crash" after the merged segment is durable but before any input is deleted
    out = store.seal("db", "cpu", merged, tag_keys=["host"], replaces=[i.seq for i in inputs], precedence=3)
    assert store.segments() == [out]
    assert resolved(store) == model
    reopened = SegmentStore(tmp_path)
    problems = reopened.open()
    assert sum("replaced by a compacted segment" in p for p in problems) == 3
    assert not any(i.path.exists() for i in inputs)
    assert reopened.segments() == [out] and resolved(reopened) == model


CHILD = """
import sys
from pathlib import Path
from storage.compaction import CompactionPolicy, Compactor
from storage.segment_store import SegmentStore

class LoudStore(SegmentStore):
    def seal(self, *args, **kwargs):
        print("seal", flush=True)
        info = super().seal(*args, **kwargs)
        print("sealed", flush=True)
        return info

    def delete(self, info, reason, *, force=False):
        done = super().delete(info, reason, force=force)
        print("deleted", flush=True)
        return done

store = LoudStore(Path(sys.argv[1]))
store.open()
compactor = Compactor(store, CompactionPolicy(max_input_rows=int(sys.argv[2]), pause_s=0))
print("ready", flush=True)
while compactor.compact_once() is not None:
    pass
print("idle", flush=True)
sys.stdin.read()
"""


def read_line(proc: subprocess.Popen[bytes], deadline: float) -> str:
    assert proc.stdout is not None
    remaining = deadline - time.monotonic()
    ready, _, _ = select.select([proc.stdout], [], [], max(remaining, 0))
    assert ready, "compaction child printed nothing before the deadline"
    return proc.stdout.readline().decode().strip()


def test_compaction_survives_kill_9_loop(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = np.random.default_rng(5)
    chooser = random.Random(5)
    model: Model = {}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kill_points: list[str] = []
    for loop in range(10):
        store = SegmentStore(tmp_path)
        assert store.open() == [] or loop > 0
        for _ in range(4):
            t = random_table(rng, 25, loop * 10, loop * 10 + 40)
            store.seal("db", "cpu", t, tag_keys=["host"])
            apply(model, t)
        assert resolved(store) == model
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "60"], cwd=REPO, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            events = chooser.randint(1, 9)
            line = ""
            while events and line != "idle":
                line = read_line(proc, deadline)
                events -= 1
            kill_points.append(line)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        after = SegmentStore(tmp_path)
        after.open()
        assert not list(tmp_path.rglob("*.tmp"))
        assert_no_replaced_visible(after)
        assert resolved(after) == model, f"loop {loop}: data changed after kill at {line!r}"
    final = SegmentStore(tmp_path)
    final.open()
    Compactor(final, CompactionPolicy(pause_s=0)).run_until_idle()
    assert resolved(final) == model
    assert {"sealed", "deleted"} & set(kill_points)
    assert time.monotonic() - started < 40
