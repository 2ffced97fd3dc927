"""kill -9 the server while clients write: every acknowledged point survives, exactly once."""

from __future__ import annotations

import random
import threading
import urllib.error
import urllib.request
from pathlib import Path

from storage.engine import StorageConfig, StorageEngine
from tests.server_process import ServerProcess

BASE_NS = 1_700_000_000_000_000_000


def writer(url: str, first_id: int, acked: list[int], attempted: list[int], stop: threading.Event,
           progress: threading.Condition) -> None:
    """Writes batches of 50 points with unique ids until the server dies or stop is set."""
    point_id = first_id
    while not stop.is_set():
        ids = list(range(point_id, point_id + 50))
        point_id += 50
        body = "\n".join(f"crash,writer=w{first_id} id={i}i,v={i * 0.5} {BASE_NS + i}" for i in ids).encode()
        attempted.extend(ids)
        req = urllib.request.Request(f"{url}/write?db=edge", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                if resp.status == 204:
                    with progress:
                        acked.extend(ids)
                        progress.notify_all()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            with progress:
                progress.notify_all()
            return


def test_kill_9_loop_keeps_every_acknowledged_point(tmp_path: Path) -> None:
    rng = random.Random(1234)
    data_dir = tmp_path / "data"
    acked: list[int] = []
    attempted: list[int] = []
    next_id = 0
    for loop in range(20):
        server = ServerProcess(data_dir).start()
        stop = threading.Event()
        progress = threading.Condition()
        threads = []
        for _ in range(2):
            t = threading.Thread(target=writer, args=(server.url, next_id, acked, attempted, stop, progress))
            next_id += 10_000_000
            t.start()
            threads.append(t)
        target = len(acked) + rng.randint(50, 1500)
        def kill_moment(target: int = target, threads: list[threading.Thread] = threads) -> bool:
            return len(acked) >= target or not all(t.is_alive() for t in threads)

        with progress:  # kill after a random number of acknowledged points
            progress.wait_for(kill_moment, timeout=60)
        server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        engine = StorageEngine(StorageConfig(data_dir=data_dir))
        report = engine.open()
        try:
            assert not report.quarantined, f"loop {loop}: {report.quarantined}"
            table = engine.read("edge", "crash")
        finally:
            engine.close()
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids)), f"loop {loop}: duplicated points"
        missing = set(acked) - set(ids)
        assert not missing, f"loop {loop}: {len(missing)} acknowledged points lost"
        assert set(ids) <= set(attempted), f"loop {loop}: points nobody wrote"
        values = dict(zip(ids, table.column("v").to_pylist(), strict=True))
        assert all(values[i] == i * 0.5 for i in acked)
    assert len(acked) > 20 * 50
