"""End to end: edge segment stores (real SegmentStore + SyncSender) and sender processes stream
to a real `edgets cloud` process; the cloud's /query shows every row once, tagged with its node."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pyarrow as pa
import pytest

from storage.compaction import CompactionPolicy, Compactor
from storage.segment_format import write_segment
from storage.segment_store import SegmentStore
from sync.frames import NODE_HEADER, WS_PATH
from sync.ledger import AckLedger
from sync.sender import SenderConfig, SyncSender
from sync.store_source import StoreSegmentSource, ledger_delete_guard, segment_origin
from tests.server_process import REPO, ServerProcess
from tests.waiting import wait_until, wait_until_async

DB = "plant"
TOKENS = {"edge-a": "secret-a", "edge-b": "secret-b", "edge-k": "secret-k"}


def make_table(rng: np.random.Generator, rows: int, t0: int, hosts: list[str]) -> pa.Table:
    times = t0 + np.sort(rng.choice(10**9, size=rows, replace=False)).astype(np.int64)
    return pa.table({
        "time": pa.array(times, type=pa.timestamp("ns")),
        "host": pa.array([hosts[i % len(hosts)] for i in range(rows)], type=pa.string()),
        "value": pa.array(rng.normal(size=rows), type=pa.float64()),
    })


def expected_rows(node: str, tables: list[pa.Table]) -> set[tuple[Any, ...]]:
    out = set()
    for t in tables:
        for time_ns, host, value in zip(t.column("time").cast(pa.int64()).to_pylist(),
                                        t.column("host").to_pylist(), t.column("value").to_pylist(),
                                        strict=True):
            out.add((node, host, time_ns, value))
    return out


def query(url: str, q: str, db: str = DB) -> dict[str, Any]:
    params = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ns"})
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=30) as resp:
        return json.loads(resp.read())


def cloud_rows(url: str, measurement: str = "cpu") -> list[tuple[Any, ...]]:
    """Every row of the measurement as (node, host, time, value); a list, so duplicates show."""
    result = query(url, f'SELECT * FROM "{measurement}"')["results"][0]
    rows: list[tuple[Any, ...]] = []
    for series in result.get("series", []):
        cols = series["columns"]
        for values in series["values"]:
            row = dict(zip(cols, values, strict=True))
            rows.append((row["node"], row["host"], row["time"], row["value"]))
    return rows


@pytest.fixture
def cloud(tmp_path: Path) -> Any:
    tokens = ",".join(f"{k}:{v}" for k, v in TOKENS.items())
    with ServerProcess(tmp_path / "cloud", "--set", f"cloud.tokens={tokens}", command="cloud") as proc:
        yield proc


def sender_for(url: str, node: str, token: str, ledger_dir: Path) -> SenderConfig:
    return SenderConfig(url=url.replace("http://", "ws://"), node=node, token=token,
                        ledger_dir=ledger_dir, backoff_base_s=0.05, backoff_cap_s=0.5,
                        heartbeat_s=2.0)


async def poll(predicate: Any, timeout: float, what: str) -> Any:
    """Async wait on a condition with a deadline (the cloud is another process)."""
    return await wait_until_async(predicate, timeout, what, interval=0.05, blocking=True)


def test_two_store_nodes_stream_into_one_cloud(cloud: ServerProcess, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    t0 = 1_700_000_000 * 10**9
    stores: dict[str, SegmentStore] = {}
    sealed: dict[str, list[pa.Table]] = {}
    ledgers: dict[str, AckLedger] = {}
    for node in ("edge-a", "edge-b"):
        store = SegmentStore(tmp_path / node / "store")
        store.open()
        ledger = AckLedger.open(tmp_path / node / "sync")
        store.set_delete_guard(ledger_delete_guard(ledger))
        stores[node], ledgers[node] = store, ledger
        sealed[node] = []
        for i in range(3):
            table = make_table(rng, 200, t0 + i * 10**9, [f"{node}-h1", "shared"])
            stores[node].seal(DB, "cpu", table, tag_keys=["host"])
            sealed[node].append(table)
    first = stores["edge-a"].segments()[0]
    assert not stores["edge-a"].delete(first, "test: not synced yet")  # guard refuses
    assert first.path.exists()

    async def run() -> dict[str, SyncSender]:
        senders = {node: SyncSender(sender_for(cloud.url, node, TOKENS[node], tmp_path / node / "sync"),
                                    StoreSegmentSource(stores[node], ledgers[node]), ledgers[node])
                   for node in stores}
        tasks = [asyncio.ensure_future(s.run()) for s in senders.values()]
        want = expected_rows("edge-a", sealed["edge-a"]) | expected_rows("edge-b", sealed["edge-b"])
        await poll(lambda: set(cloud_rows(cloud.url)) == want, 60, "both nodes' first rows")
        # a segment sealed while the sender waits is picked up through the seal listener
        late = make_table(rng, 50, t0 + 9 * 10**9, ["late"])
        stores["edge-b"].seal(DB, "cpu", late, tag_keys=["host"])
        sealed["edge-b"].append(late)
        want |= expected_rows("edge-b", [late])
        await poll(lambda: set(cloud_rows(cloud.url)) == want, 60, "the late segment")
        await poll(lambda: all(s.status()["lag_segments"] == 0 for s in senders.values()), 30,
                   "zero lag")
        for s in senders.values():
            s.stop()
        await asyncio.gather(*tasks)
        return senders

    senders = asyncio.run(run())
    rows = cloud_rows(cloud.url)
    assert len(rows) == len(set(rows)) == sum(t.num_rows for ts in sealed.values() for t in ts)
    assert {r[0] for r in rows} == {"edge-a", "edge-b"}
    assert senders["edge-b"].status()["acked_through"] == stores["edge-b"].segments()[-1].seq
    # node filter and tag listing go through the cloud view
    only_a = query(cloud.url, "SELECT count(value) FROM cpu WHERE node = 'edge-a'")
    assert only_a["results"][0]["series"][0]["values"][0][1] == sum(t.num_rows for t in sealed["edge-a"])
    tag_keys = query(cloud.url, "SHOW TAG KEYS FROM cpu")["results"][0]["series"][0]["values"]
    assert ["node"] in tag_keys and ["host"] in tag_keys
    # acked: the guard now allows deletion through the source (ledger persisted first)
    assert stores["edge-a"].delete(first, "test: synced")
    assert not first.path.exists()


def test_compaction_output_of_synced_segments_is_not_uploaded_again(cloud: ServerProcess, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    t0 = 1_700_100_000 * 10**9
    store = SegmentStore(tmp_path / "store")
    store.open()
    ledger = AckLedger.open(tmp_path / "sync")
    store.set_delete_guard(ledger_delete_guard(ledger))
    tables = [make_table(rng, 100, t0 + i * 10**9, ["h"]) for i in range(3)]
    for t in tables:
        store.seal(DB, "cpu", t, tag_keys=["host"])
    source = StoreSegmentSource(store, ledger)

    async def sync_until_idle() -> SyncSender:
        sender = SyncSender(sender_for(cloud.url, "edge-k", TOKENS["edge-k"], tmp_path / "sync"),
                            source, ledger)
        task = asyncio.ensure_future(sender.run())
        await poll(lambda: sender.status()["lag_segments"] == 0 and sender.segments_acked > 0, 60,
                   "sync idle")
        sender.stop()
        await task
        return sender

    first = asyncio.run(sync_until_idle())
    assert first.segments_acked == 3
    merged = Compactor(store, CompactionPolicy(min_inputs=2)).compact_once()
    assert merged is not None and len(merged.replaces) == 3
    # the footer says "compaction" and every input is acked: the output holds only data the
    # cloud has, so it is neither offered to the sender nor kept from deletion
    assert segment_origin(merged) == "compaction"
    assert source.sealed_after(ledger.acked_through, 100) == []
    assert ledger_delete_guard(ledger)(merged)
    store.seal(DB, "cpu", make_table(rng, 10, t0 + 20 * 10**9, ["h"]), tag_keys=["host"])
    second = asyncio.run(sync_until_idle())
    assert second.segments_acked == 1  # only the fresh segment, not the compaction output
    rows = cloud_rows(cloud.url)  # the cloud serves the 3 inputs once and the fresh segment
    assert len(rows) == len(set(rows)) == 3 * 100 + 10


def test_wrong_token_and_unknown_node_are_refused(cloud: ServerProcess, tmp_path: Path) -> None:
    async def attempt(node: str, token: str) -> int:
        async with aiohttp.ClientSession() as http:
            try:
                ws = await http.ws_connect(cloud.url + WS_PATH, headers={
                    NODE_HEADER: node, "Authorization": f"Bearer {token}"})
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
            await ws.close()
            return 101

    assert asyncio.run(attempt("edge-a", "secret-b")) == 401  # another node's token
    assert asyncio.run(attempt("edge-zz", "secret-a")) == 401  # unknown node
    assert asyncio.run(attempt("edge-a", "secret-a")) == 101

    store = SegmentStore(tmp_path / "store")
    store.open()
    store.seal(DB, "cpu", make_table(np.random.default_rng(1), 10, 10**18, ["h"]), tag_keys=["host"])
    ledger = AckLedger.open(tmp_path / "sync")

    async def bad_sender() -> SyncSender:
        sender = SyncSender(sender_for(cloud.url, "edge-a", "wrong", tmp_path / "sync"),
                            StoreSegmentSource(store, ledger), ledger)
        task = asyncio.ensure_future(sender.run())
        await poll(lambda: sender.retries >= 2, 30, "refused connection attempts")
        sender.stop()
        await task
        return sender

    sender = asyncio.run(bad_sender())
    assert "401" in str(sender.last_error) and sender.segments_acked == 0
    assert ledger.acked_through == -1
    health = json.loads(urllib.request.urlopen(cloud.url + "/health", timeout=10).read())
    counters = health["checks"][0]["counters"]
    assert counters["auth_failures"] >= 4 and counters.get("segments_committed", 0) == 0


# ------------------------------------------------------------------ system-level kill -9 loop
def write_dir_segment(directory: Path, seq: int, table: pa.Table) -> None:
    """A real segment file + the DirectorySegmentSource sidecar (sealed when the sidecar lands)."""
    from storage.fsio import write_atomic

    path = directory / f"{seq:020d}.seg"
    info = write_segment(path, database=DB, measurement="cpu", seq=seq, table=table, tag_keys=["host"])
    meta = {"size": info.size, "content_hash": info.content_hash, "min_time_ns": info.min_time_ns,
            "max_time_ns": info.max_time_ns, "rows": info.rows, "database": DB, "measurement": "cpu"}
    write_atomic(directory / f"{seq:020d}.json", json.dumps(meta).encode())


def test_kill9_loop_sender_and_cloud_processes(tmp_path: Path) -> None:
    """kill -9 the sender process and the cloud process at moments chosen by a seeded RNG;
    invariant: every segment ends up in the cloud exactly once (rows counted without dedup)."""
    rng = np.random.default_rng(2024)
    seg_dir = tmp_path / "segments"
    seg_dir.mkdir()
    tables = []
    for seq in range(24):
        table = make_table(rng, 1500, 1_700_200_000 * 10**9 + seq * 10**9, ["h1", "h2"])
        write_dir_segment(seg_dir, seq, table)
        tables.append(table)
    want = expected_rows("edge-k", tables)
    cloud_dir = tmp_path / "cloud"
    tokens = f"cloud.tokens=edge-k:{TOKENS['edge-k']}"
    cloud = ServerProcess(cloud_dir, "--set", tokens, command="cloud").start()
    fixed_bind = f"127.0.0.1:{cloud.port}"
    config_path = tmp_path / "sender.json"
    config_path.write_text(json.dumps({
        "url": cloud.url.replace("http://", "ws://"), "node": "edge-k", "token": TOKENS["edge-k"],
        "ledger_dir": str(tmp_path / "ledger"), "segment_dir": str(seg_dir),
        "chunk_bytes": 4096, "backoff_base_s": 0.05, "backoff_cap_s": 0.3,
        "bandwidth_bytes_per_s": 150_000}))
    status_file = tmp_path / "status.json"

    def start_sender() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "sync.sender", "--config", str(config_path),
                                 "--status-file", str(status_file)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def committed_count() -> int:
        from sync.receiver import committed_segments
        try:
            return len(committed_segments(cloud_dir, "edge-k"))
        except Exception:  # noqa: BLE001 - catalog not created yet
            return 0

    sender = start_sender()
    killed_with_backlog = 0
    try:
        for round_no in range(6):
            target = min(24, committed_count() + int(rng.integers(1, 4)))
            wait_until(lambda t=target: committed_count() >= t, 60, f"round {round_no}: {target} commits")
            killed_with_backlog += committed_count() < 24
            if round_no % 2 == 0:
                os.kill(sender.pid, signal.SIGKILL)
                sender.wait(timeout=30)
                sender = start_sender()
            else:
                cloud.kill()
                cloud = ServerProcess(cloud_dir, "--set", tokens, command="cloud")
                cloud.args[cloud.args.index("--bind") + 1] = fixed_bind
                cloud.start()
        wait_until(lambda: committed_count() == 24, 120, "all 24 segments committed")
        rows = cloud_rows(cloud.url)
        assert len(rows) == len(want) and set(rows) == want
        assert killed_with_backlog >= 4  # the kills really hit a sync in progress
    finally:
        if sender.poll() is None:
            sender.send_signal(signal.SIGTERM)
            sender.wait(timeout=30)
        cloud.stop()


# ------------------------------------------------------------------ a real edge node (HTTP writes)
def test_edge_node_http_writes_reach_the_cloud_tagged_with_node(cloud: ServerProcess,
                                                                tmp_path: Path) -> None:
    """run_edge_node with the sync component: line protocol over HTTP -> engine flush -> segment
    store -> cloud /query (tag node), and the sync status is in the edge's /health."""
    from edge_agent.config import load_config
    from edge_agent.edge_node import EdgeNode, run_edge_node
    from edge_agent.sync_component import sync_component

    config = load_config(None, {
        "storage.data_dir": str(tmp_path / "edge"), "http.bind": "127.0.0.1:0",
        "http.default_database": DB, "sync.url": cloud.url.replace("http://", "ws://"),
        "sync.node_id": "edge-b", "sync.token": TOKENS["edge-b"], "sync.heartbeat": "2s"})
    lines = "\n".join(f"cpu,host=h{i % 3} value={i}.5 {1_700_300_000 * 10**9 + i}" for i in range(500))

    async def run() -> dict[str, Any]:
        stop = asyncio.Event()
        nodes: list[EdgeNode] = []

        async def capture(node: EdgeNode) -> Any:
            nodes.append(node)

            async def nothing() -> None:
                return None
            return nothing

        server = asyncio.ensure_future(run_edge_node(config, [sync_component(config), capture], stop))
        await poll(lambda: bool(nodes) or server.done(), 60, "edge node up")
        node = nodes[0]
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{node.url}/write?db={DB}", data=lines) as resp:
                assert resp.status == 204, await resp.text()
            sealed = await asyncio.to_thread(node.engine.flush_all)
            assert sum(s.rows for s in sealed) == 500
            await poll(lambda: len(cloud_rows(cloud.url)) == 500, 60, "rows in the cloud")

        def synced_health() -> dict[str, Any] | None:
            health = json.loads(urllib.request.urlopen(node.url + "/health", timeout=10).read())
            check = next(c for c in health["checks"] if c["name"] == "sync")
            return health if check["lag_segments"] == 0 else None

        # the cloud commits before it acks: wait for the ack to reach the edge's ledger
        health = await poll(synced_health, 30, "edge /health reporting zero sync lag")
        stop.set()
        await server
        return health

    health = asyncio.run(run())
    rows = cloud_rows(cloud.url)
    assert {r[0] for r in rows} == {"edge-b"}
    assert sorted(r[3] for r in rows) == sorted(i + 0.5 for i in range(500))
    sync_check = next(c for c in health["checks"] if c["name"] == "sync")
    assert sync_check["node"] == "edge-b" and sync_check["lag_segments"] == 0
    assert sync_check["connected"] is True and sync_check["last_error"] is None
