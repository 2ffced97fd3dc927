"""kill -9 a process that writes while flushing (tiny thresholds), compacting and releasing WAL
files: after each restart every acknowledged point is present exactly once, on disk too."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from storage.engine import StorageConfig, StorageEngine

BASE_NS = 1_700_000_000_000_000_000
BATCH = 50

CHILD = r"""
import sys
from pathlib import Path
import numpy as np
import pyarrow as pa
from storage.batch import Batch
from storage.engine import Overloaded, StorageConfig, StorageEngine

data_dir, next_id = Path(sys.argv[1]), int(sys.argv[2])
BATCH, BASE_NS = int(sys.argv[3]), int(sys.argv[4])
eng = StorageEngine(StorageConfig(
    data_dir=data_dir, flush_bytes=3000, flush_age_s=0.02, flush_check_s=0.005, wal_file_bytes=6000,
    flush_window_ns=2_000_000, compaction_pause_s=0.0, compaction_idle_s=0.02,
    compaction_small_segment_bytes=1 << 20))
eng.open()
eng.create_database("db")
series = [(("host", "h0"),), (("host", "h1"),), (("host", "h2"),)]
while True:
    ids = np.arange(next_id, next_id + BATCH, dtype=np.int64)
    b = Batch("m", series, (ids % 3).astype(np.int32), BASE_NS + ids * 1000, {"id": pa.array(ids, pa.int64())})
    try:
        eng.write("db", [b])
    except Overloaded:
        continue
    print(next_id, flush=True)
    next_id += BATCH
"""


def test_kill_9_during_flushes_keeps_every_acked_point_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(7)
    data_dir = tmp_path / "data"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    acked: set[int] = set()
    started = time.monotonic()
    loops = 0
    flushed_any = False
    while loops < 12:
        first = (loops + 1) * 10_000_000
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), str(first), str(BATCH), str(BASE_NS)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root, env=env)
        assert proc.stdout is not None
        target = rng.randint(30, 400)
        got: list[int] = []
        for line in proc.stdout:  # acknowledged batches, as they happen
            got.append(int(line))
            if len(got) >= target:
                break
        assert got, f"loop {loops}: writer died early: {proc.stderr.read() if proc.stderr else ''}"
        threading.Event().wait(rng.random() * 0.03)  # land the kill at a random point of the work
        proc.kill()
        rest, _err = proc.communicate()
        got.extend(int(x) for x in rest.split())
        for start in got:
            acked.update(range(start, start + BATCH))
        eng = StorageEngine(StorageConfig(data_dir=data_dir, background=False))
        report = eng.open()
        try:
            assert report.quarantined == [], f"loop {loops}: {report.quarantined}"
            ids = eng.read("db", "m").column("id").to_pylist()
            segment_rows = sum(i.rows for i in eng.segment_store.segments())
            buffer_rows = eng.stats()["buffer_rows"]
            flushed_any = flushed_any or segment_rows > 0
        finally:
            eng.close()
        assert len(ids) == len(set(ids)), f"loop {loops}: duplicated points"
        missing = acked - set(ids)
        assert not missing, f"loop {loops}: {len(missing)} acknowledged points lost, e.g. {sorted(missing)[:3]}"
        assert segment_rows + buffer_rows == len(ids), f"loop {loops}: rows stored twice ({report})"
        loops += 1
    assert flushed_any and loops >= 10
    assert time.monotonic() - started < 60
