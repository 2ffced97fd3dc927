"""End-to-end sync over loopback with real aiohttp servers: delivery, resume, outage, new epoch,
hash conflicts, auth/Retry-After and TLS."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import aiohttp
from aiohttp import web

from sync.fault_proxy import FaultProxy
from sync.frames import (
    NODE_HEADER,
    WS_PATH,
    Ack,
    Begin,
    ChunkCodec,
    End,
    Hello,
    Reject,
    decode,
    encode,
)
from sync.ledger import AckLedger
from sync.receiver import CloudConfig, CloudReceiver, add_sync_routes, committed_segments
from sync.segment_source import DirectorySegmentSource, SealedSegment, write_sealed_segment
from sync.sender import SenderConfig, SyncSender
from tests.waiting import wait_until_async as wait_until

TOKENS = {"edge-a": "secret-a", "edge-b": "secret-b"}


async def start_cloud(cloud_dir: Path, port: int = 0, ssl_context: object = None,
                      **overrides: object) -> tuple[web.AppRunner, CloudReceiver, int]:
    app = web.Application()
    receiver = add_sync_routes(app, CloudConfig(cloud_dir=cloud_dir, tokens=TOKENS, **overrides))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context, reuse_address=True)
    await site.start()
    return runner, receiver, runner.addresses[0][1]


def make_segments(directory: Path, count: int, first_seq: int = 0, salt: bytes = b"",
                  big_every: int = 4) -> list[SealedSegment]:
    """Mixed segments: random (incompressible), repetitive (compressible), empty, multi-chunk."""
    segments = []
    for i in range(count):
        seq = first_seq + i
        if i % big_every == 1:
            data = os.urandom(700_000 + i)  # several chunks
        elif i % 3 == 0:
            data = (b"cpu,host=h%d usage=%d\n" % (i, i) + salt) * (2000 + i)
        elif i == 2:
            data = b""
        else:
            data = os.urandom(10_000 + i) + salt
        base = 1_700_000_000_000_000_000 + seq * 10_000_000_000
        segments.append(write_sealed_segment(directory, seq, data, min_time_ns=base,
                                             max_time_ns=base + 9_000_000_000, rows=100 + i,
                                             database="telegraf", measurement=f"m{i % 2}"))
    return segments


def sender_config(tmp: Path, port: int, node: str = "edge-a", scheme: str = "ws",
                  **overrides: object) -> SenderConfig:
    values: dict[str, object] = dict(url=f"{scheme}://127.0.0.1:{port}", node=node,
                                     token=TOKENS[node], ledger_dir=tmp / f"{node}-ledger",
                                     chunk_bytes=64 << 10, backoff_base_s=0.05,
                                     backoff_cap_s=0.5, heartbeat_s=1.0)
    values.update(overrides)
    return SenderConfig(**values)  # type: ignore[arg-type]


def assert_cloud_holds(cloud_dir: Path, node: str, epoch: str,
                       segments: list[SealedSegment]) -> None:
    rows = {(c.epoch, c.seq): c for c in committed_segments(cloud_dir, node)}
    for seg in segments:
        row = rows[(epoch, seg.seq)]
        assert row.content_hash == seg.content_hash
        assert (row.size, row.rows, row.min_time_ns, row.max_time_ns) == (
            seg.size, seg.rows, seg.min_time_ns, seg.max_time_ns)
        assert (row.database, row.measurement) == (seg.database, seg.measurement)
        assert row.path == cloud_dir / "nodes" / node / epoch / f"{seg.seq}.seg"
        assert hashlib.blake2b(row.path.read_bytes(), digest_size=32).hexdigest() == seg.content_hash


async def run_sender(sender: SyncSender) -> asyncio.Task[None]:
    return asyncio.ensure_future(sender.run())


async def stop_sender(sender: SyncSender, task: asyncio.Task[None]) -> None:
    sender.stop()
    await asyncio.wait_for(task, 10)


def test_end_to_end_byte_identical_and_ledger_advanced(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner, receiver, port = await start_cloud(tmp_path / "cloud", credit_bytes=96 << 10)
        source = DirectorySegmentSource(tmp_path / "segs")
        segments = make_segments(tmp_path / "segs", 10)
        sender = SyncSender(sender_config(tmp_path, port), source)
        task = await run_sender(sender)
        last = segments[-1].seq
        await wait_until(lambda: sender.ledger.acked_through == last, 20, "initial backlog acked")
        # live: segments sealed while connected are picked up
        more = make_segments(tmp_path / "segs", 3, first_seq=last + 1, salt=b"live")
        source.notify()
        await wait_until(lambda: sender.ledger.acked_through == more[-1].seq, 20, "live segments")
        status = sender.status()
        assert status["connected"] is True
        assert (status["lag_segments"], status["lag_bytes"], status["lag_seconds"]) == (0, 0, 0.0)
        assert status["segments_acked"] == len(segments) + len(more)
        total = sum(s.size for s in segments + more)
        assert receiver.counters["bytes_received"] == total  # nothing sent twice
        # small credit forced the edge to wait for grants; compression paid on text segments
        assert sender.bytes_sent < total
        assert sender.waits.get("credit", 0) > 0
        await stop_sender(sender, task)
        await runner.cleanup()
        reopened = AckLedger.open(tmp_path / "edge-a-ledger")
        assert reopened.acked_through == more[-1].seq and reopened.epoch == sender.ledger.epoch
        assert_cloud_holds(tmp_path / "cloud", "edge-a", reopened.epoch, segments + more)
        assert len(committed_segments(tmp_path / "cloud")) == len(segments) + len(more)

    asyncio.run(scenario())


def test_status_reports_lag_before_sync(tmp_path: Path) -> None:
    source = DirectorySegmentSource(tmp_path / "segs")
    segments = make_segments(tmp_path / "segs", 5)
    sender = SyncSender(sender_config(tmp_path, 1), source)
    status = sender.status()
    assert status["lag_segments"] == 5
    assert status["lag_bytes"] == sum(s.size for s in segments)
    assert status["lag_seconds"] == (segments[-1].max_time_ns - segments[0].min_time_ns) / 1e9
    assert status["connected"] is False


def test_resume_mid_segment_from_cloud_offset(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner, receiver, port = await start_cloud(tmp_path / "cloud")
        proxy = await FaultProxy("127.0.0.1", port).start()
        source = DirectorySegmentSource(tmp_path / "segs")
        data = os.urandom(3_000_000)
        seg = write_sealed_segment(tmp_path / "segs", 0, data, rows=1)
        sender = SyncSender(sender_config(tmp_path, proxy.port, chunk_bytes=64 << 10), source)
        proxy.reset_after(1_200_000)  # mid-segment, ~18 chunks in
        task = await run_sender(sender)
        await wait_until(lambda: sender.ledger.acked_through == 0, 20, "segment acked")
        assert proxy.resets == 1 and proxy.connections_total >= 2
        assert receiver.counters["resumes"] == 1
        # resumed from the cloud's durable offset: no byte was written twice
        assert receiver.counters["bytes_received"] == seg.size
        assert sender.bytes_sent < seg.size + 200_000
        await stop_sender(sender, task)
        await proxy.close()
        await runner.cleanup()
        assert_cloud_holds(tmp_path / "cloud", "edge-a", sender.ledger.epoch, [seg])

    asyncio.run(scenario())


def test_cloud_down_during_backlog_then_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner, _receiver, port = await start_cloud(tmp_path / "cloud")
        await runner.cleanup()  # the cloud is down; its port is known
        source = DirectorySegmentSource(tmp_path / "segs")
        segments = make_segments(tmp_path / "segs", 8)
        sender = SyncSender(sender_config(tmp_path, port, delete_acked=True), source)
        task = await run_sender(sender)
        await wait_until(lambda: sender.retries >= 3, 10, "sender retrying while cloud down")
        status = sender.status()
        assert status["connected"] is False and status["lag_segments"] == 8
        assert "Error" in (status["last_error"] or "")
        assert len(source.all_sealed()) == 8  # nothing deleted while unacked
        runner, _receiver, _ = await start_cloud(tmp_path / "cloud", port=port)
        await wait_until(lambda: sender.ledger.acked_through == segments[-1].seq, 20, "drained")
        await wait_until(lambda: not source.all_sealed(), 10, "retention deleted acked segments")
        await stop_sender(sender, task)
        await runner.cleanup()
        assert_cloud_holds(tmp_path / "cloud", "edge-a", sender.ledger.epoch, segments)

    asyncio.run(scenario())


def test_wiped_edge_state_starts_new_epoch_and_cloud_keeps_old(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner, _receiver, port = await start_cloud(tmp_path / "cloud")
        source = DirectorySegmentSource(tmp_path / "segs")
        old = make_segments(tmp_path / "segs", 5)
        sender = SyncSender(sender_config(tmp_path, port), source)
        task = await run_sender(sender)
        await wait_until(lambda: sender.ledger.acked_through == old[-1].seq, 20, "old epoch")
        await stop_sender(sender, task)
        old_epoch = sender.ledger.epoch
        shutil.rmtree(tmp_path / "segs")
        shutil.rmtree(tmp_path / "edge-a-ledger")  # the edge lost its state
        source = DirectorySegmentSource(tmp_path / "segs")
        new = make_segments(tmp_path / "segs", 4, salt=b"new-life")  # seqs restart at 0
        sender = SyncSender(sender_config(tmp_path, port), source)
        assert sender.ledger.created_new_epoch and sender.ledger.epoch != old_epoch
        task = await run_sender(sender)
        await wait_until(lambda: sender.ledger.acked_through == new[-1].seq, 20, "new epoch")
        await stop_sender(sender, task)
        await runner.cleanup()
        assert_cloud_holds(tmp_path / "cloud", "edge-a", old_epoch, old)
        assert_cloud_holds(tmp_path / "cloud", "edge-a", sender.ledger.epoch, new)
        assert len(committed_segments(tmp_path / "cloud", "edge-a")) == len(old) + len(new)

    asyncio.run(scenario())


async def _upload_raw(port: int, epoch: str, seq: int, data: bytes) -> object:
    """Speak the protocol directly (a misbehaving edge): hello, begin, one chunk, end."""
    digest = hashlib.blake2b(data, digest_size=32).hexdigest()
    headers = {NODE_HEADER: "edge-b", "Authorization": "Bearer secret-b"}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"ws://127.0.0.1:{port}{WS_PATH}", headers=headers) as ws:
            await ws.send_bytes(encode(Hello("edge-b", epoch)))
            decode((await ws.receive(timeout=5)).data)
            await ws.send_bytes(encode(Begin(seq, len(data), digest, 0, 0, 1, 1, "db", "m")))
            chunk, _ = ChunkCodec().pack(seq, 0, data, False)
            await ws.send_bytes(encode(chunk))
            await ws.send_bytes(encode(End(seq)))
            while True:
                frame = decode((await ws.receive(timeout=5)).data)
                if isinstance(frame, Ack | Reject):
                    return frame


def test_same_seq_different_hash_rejected_alarm_and_both_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner, receiver, port = await start_cloud(tmp_path / "cloud")
        epoch = "00112233aabbccdd"
        first, second = b"original bytes" * 100, b"different bytes" * 100
        answer = await _upload_raw(port, epoch, 7, first)
        assert isinstance(answer, Ack) and not answer.duplicate
        again = await _upload_raw(port, epoch, 7, first)
        assert isinstance(again, Ack) and again.duplicate  # same hash: ack again
        clash = await _upload_raw(port, epoch, 7, second)
        assert isinstance(clash, Reject) and "both files kept" in clash.reason
        assert receiver.counters["hash_conflicts"] == 1 and receiver.counters["duplicates"] == 1
        assert receiver.catalog is not None
        alarms = receiver.catalog.alarms()
        assert [(a["kind"], a["seq"], a["node"]) for a in alarms] == [("hash_conflict", 7, "edge-b")]
        kept = Path(alarms[0]["kept_path"])
        await runner.cleanup()
        [row] = committed_segments(tmp_path / "cloud", "edge-b")
        assert row.path.read_bytes() == first and kept.read_bytes() == second

    asyncio.run(scenario())


def test_bad_token_401_and_retry_after_honoured(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner, receiver, port = await start_cloud(tmp_path / "cloud")
        source = DirectorySegmentSource(tmp_path / "segs")
        make_segments(tmp_path / "segs", 2)
        bad = SyncSender(sender_config(tmp_path, port, token="wrong"), source)
        task = await run_sender(bad)
        await wait_until(lambda: bad.retries >= 2, 10, "401 retries")
        await stop_sender(bad, task)
        assert "401" in (bad.last_error or "") and receiver.counters["auth_failures"] >= 2
        receiver.pause(1)
        sender = SyncSender(sender_config(tmp_path, port), source)
        task = await run_sender(sender)
        await wait_until(lambda: sender.ledger.acked_through == 1, 20, "sync after pause")
        await stop_sender(sender, task)
        await runner.cleanup()
        assert sender.last_retry_after == 1.0 and receiver.counters["refused_busy"] >= 1
        # the attempt after the 503 waited at least Retry-After, not the 0.05 s backoff base
        assert sender.connect_attempts[1] - sender.connect_attempts[0] >= 1.0

    asyncio.run(scenario())


def test_tls_with_self_signed_certificate(tmp_path: Path) -> None:
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)

    async def scenario() -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        runner, _receiver, port = await start_cloud(tmp_path / "cloud", ssl_context=context)
        source = DirectorySegmentSource(tmp_path / "segs")
        segments = make_segments(tmp_path / "segs", 3)
        untrusted = SyncSender(sender_config(tmp_path, port, scheme="wss"), source)
        task = await run_sender(untrusted)
        await wait_until(lambda: untrusted.retries >= 1, 10, "untrusted cert refused")
        await stop_sender(untrusted, task)
        assert "certificate" in (untrusted.last_error or "").lower()
        sender = SyncSender(sender_config(tmp_path, port, scheme="wss", ca_file=str(cert)), source)
        task = await run_sender(sender)
        await wait_until(lambda: sender.ledger.acked_through == segments[-1].seq, 20, "TLS sync")
        await stop_sender(sender, task)
        await runner.cleanup()
        assert_cloud_holds(tmp_path / "cloud", "edge-a", sender.ledger.epoch, segments)

    asyncio.run(scenario())
