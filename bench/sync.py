"""Sync benchmark with real segments: TSBS cpu data written into a StorageEngine and flushed, drained
by the real sender (StoreSegmentSource) to an `edgets cloud` process; wire bytes vs Telegraf, cap, RSS."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.datasets import CPU_FIELDS, CpuData, cpu_lines, tsbs_cpu  # noqa: E402
from storage.batch import Batch, TagSet  # noqa: E402
from storage.engine import StorageConfig, StorageEngine  # noqa: E402
from storage.segment_format import read_segment  # noqa: E402
from storage.segment_store import SegmentStore  # noqa: E402
from sync.fault_proxy import FaultProxy  # noqa: E402

DB = "benchmark"
NODE, TOKEN = "bench", "t"


def host_tagsets(data: CpuData) -> list[TagSet]:
    """The ',k=v,...' suffixes of bench.datasets as sorted tag tuples."""
    out: list[TagSet] = []
    for suffix in data.host_tags:
        pairs = [kv.split("=", 1) for kv in suffix.lstrip(",").split(",")]
        out.append(tuple(sorted((k, v) for k, v in pairs)))
    return out


def build_edge(edge_dir: Path, data: CpuData, flush_steps: int) -> dict[str, float]:
    """Write the data into a real engine in 5000-point-ish batches, flushing every
    `flush_steps` timestamps (a flush_size-sized segment per measurement window)."""
    engine = StorageEngine(StorageConfig(edge_dir, fsync="never", background=False,
                                         memory_budget_bytes=1 << 30))
    engine.open()
    started = time.perf_counter()
    try:
        engine.create_database(DB)
        series = host_tagsets(data)
        steps, hosts = data.values.shape[0], data.hosts
        per_batch = max(1, 5000 // hosts)
        for t0 in range(0, steps, per_batch):
            t1 = min(steps, t0 + per_batch)
            block = data.values[t0:t1].reshape(-1, len(CPU_FIELDS))
            batch = Batch("cpu", series, np.tile(np.arange(hosts, dtype=np.int32), t1 - t0),
                          np.repeat(data.times[t0:t1], hosts),
                          {name: pa.array(block[:, i]) for i, name in enumerate(CPU_FIELDS)})
            engine.write(DB, [batch])
            if t1 % flush_steps < per_batch or t1 == steps:
                engine.flush_all()
        infos = engine.segment_store.segments()
    finally:
        engine.close()
    return {"segments": len(infos), "rows": sum(i.rows for i in infos),
            "values": sum(i.field_values for i in infos), "bytes": sum(i.size for i in infos),
            "build_s": time.perf_counter() - started}


def replicate(edge_dir: Path, copies: int) -> dict[str, float]:
    """The same segments sealed again (copies-1 times) under new seqs: a copies-x backlog."""
    store = SegmentStore(edge_dir)
    store.open()
    originals = store.segments()
    for _ in range(copies - 1):
        for info in originals:
            store.seal(info.database, info.measurement, read_segment(info.path),
                       tag_keys=info.tag_keys)
    infos = store.segments()
    return {"segments": len(infos), "rows": sum(i.rows for i in infos),
            "values": sum(i.field_values for i in infos), "bytes": sum(i.size for i in infos)}


def subset_edge(src: Path, dst: Path, max_bytes: int) -> dict[str, float]:
    """A copy of the first segments of `src` up to `max_bytes` (for the capped run)."""
    store = SegmentStore(src)
    store.open()
    picked, total = [], 0
    for info in store.segments():
        if picked and total + info.size > max_bytes:
            break
        picked.append(info)
        total += info.size
    for info in picked:
        target = dst / info.path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(info.path, target)
    return {"segments": len(picked), "rows": sum(i.rows for i in picked),
            "values": sum(i.field_values for i in picked), "bytes": total}


def telegraf_bytes(data: CpuData) -> tuple[int, int]:
    """(raw, gzip-6) bytes of the same points as Telegraf sends them: 5000-line batches."""
    raw = packed = 0
    for body in cpu_lines(data, 5000):
        raw += len(body)
        packed += len(gzip.compress(body, compresslevel=6))
    return raw, packed


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


# ------------------------------------------------------------------ the sender child process
async def sender_child(edge_dir: Path, url: str, cap: float | None, result: Path) -> None:
    from sync.ledger import AckLedger
    from sync.sender import SenderConfig, SyncSender
    from sync.store_source import StoreSegmentSource

    store = SegmentStore(edge_dir)
    store.open()
    ledger = AckLedger.open(edge_dir / "sync")
    sender = SyncSender(SenderConfig(url=url, node=NODE, token=TOKEN, ledger_dir=ledger.directory,
                                     bandwidth_bytes_per_s=cap),
                        StoreSegmentSource(store, ledger), ledger)
    started = time.monotonic()
    task = asyncio.ensure_future(sender.run())
    connected_at = None
    while sender.status()["lag_segments"] > 0:
        if connected_at is None and sender.connected:
            connected_at = time.monotonic()
        if task.done():
            task.result()
        await asyncio.sleep(0.01)  # sampling the status, not synchronisation
    done = time.monotonic()
    sender.stop()
    await task
    result.write_text(json.dumps({
        "wall_s": done - started, "active_s": done - (connected_at or started),
        "payload_bytes": sender.bytes_sent, "acked": sender.segments_acked,
        "hwm_kib": vm_hwm_kib(os.getpid())}))


# ------------------------------------------------------------------ orchestration
def start_cloud(cloud_dir: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "cloud", "--data-dir",
                             str(cloud_dir), "--bind", "127.0.0.1:0", "--log-level", "WARNING",
                             "--set", f"cloud.tokens={NODE}:{TOKEN}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on " in line:
            return proc, int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])
    raise RuntimeError(f"edgets cloud did not start (exit {proc.wait()})")


async def drain(work: Path, edge_dir: Path, cap: float | None) -> dict[str, float]:
    cloud_dir = work / f"cloud-{time.monotonic_ns()}"
    cloud, port = start_cloud(cloud_dir)
    proxy = await FaultProxy("127.0.0.1", port, read_size=256 << 10).start()
    result = work / "sender-result.json"
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--sender-child", str(edge_dir),
            "--url", f"ws://127.0.0.1:{proxy.port}", "--cap", str(cap or 0),
            "--result", str(result), cwd=REPO)
        if await child.wait() != 0:
            raise RuntimeError("sender child failed")
        out = json.loads(result.read_text())
        out["cloud_hwm_kib"] = vm_hwm_kib(cloud.pid)
        out["wire_up"], out["wire_down"] = proxy.bytes_up, proxy.bytes_down
    finally:
        await proxy.close()
        cloud.send_signal(signal.SIGTERM)
        cloud.wait(30)
        shutil.rmtree(cloud_dir, ignore_errors=True)
    shutil.rmtree(edge_dir / "sync", ignore_errors=True)  # a later run starts unsynced again
    return out


def report(label: str, backlog: dict[str, float], run: dict[str, float]) -> None:
    wire = run["wire_up"] + run["wire_down"]
    print(f"{label:>8}: {backlog['segments']:5.0f} segs {backlog['rows']:10.0f} points "
          f"{backlog['bytes'] / 1e6:8.2f} MB  drained in {run['active_s']:7.2f} s: "
          f"{backlog['rows'] / run['active_s']:11,.0f} points/s "
          f"{backlog['values'] / run['active_s']:12,.0f} values/s "
          f"{wire / run['active_s'] / 1e6:7.2f} MB/s; wire {wire / backlog['rows']:.3f} B/point; "
          f"peak RSS sender {run['hwm_kib'] / 1024:.1f} MiB, cloud {run['cloud_hwm_kib'] / 1024:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="2 hours of data instead of 24, capped run over 3 MB")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--flush-hours", type=float, default=2.0,
                        help="data hours per flushed segment (flush_size-sized segments)")
    parser.add_argument("--cap-mb", type=float, default=1.0, help="bandwidth cap, MB/s")
    parser.add_argument("--cap-mbytes", type=float, default=30.0,
                        help="segment MB drained under the cap (subset of the N x backlog)")
    parser.add_argument("--copies", type=int, default=10, help="the large backlog is N x 1 day")
    parser.add_argument("--sender-child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--cap", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender_child is not None:
        asyncio.run(sender_child(args.sender_child, args.url, args.cap or None, args.result))
        return
    hours = 2.0 if args.quick else args.hours
    if args.quick:
        args.cap_mbytes, args.flush_hours = 3.0, 0.25
    copies = 10 if args.quick else args.copies
    work = Path(tempfile.mkdtemp(prefix="edgets-bench-sync-"))
    try:
        data = tsbs_cpu(hosts=args.hosts, hours=hours)
        edge = work / "edge"
        backlog = build_edge(edge, data, max(1, int(args.flush_hours * 360)))
        raw, gz = telegraf_bytes(data)
        print(f"data: TSBS cpu-only, {args.hosts} hosts x {hours:g} h at 10 s = "
              f"{backlog['rows']:.0f} points, {backlog['values']:.0f} int field values; written "
              f"through StorageEngine in {backlog['build_s']:.1f} s, flushed to "
              f"{backlog['segments']:.0f} segments of {args.flush_hours:g} h "
              f"({backlog['bytes'] / 1e6:.2f} MB)")
        results: dict[str, dict[str, float]] = {}
        results["1x"] = asyncio.run(drain(work, edge, None))
        report("1x", backlog, results["1x"])
        one = results["1x"]
        wire = one["wire_up"] + one["wire_down"]
        print(f"wire bytes/point {wire / backlog['rows']:.3f} (up {one['wire_up']}, down "
              f"{one['wire_down']}); Telegraf line protocol {raw / backlog['rows']:.1f} B/point raw, "
              f"gzip-6 in 5000-line batches {gz / backlog['rows']:.3f} B/point; "
              f"ratio edgets/Telegraf-gzip = 1/{gz / wire:.1f}")
        big = replicate(edge, copies)
        results[f"{copies}x"] = asyncio.run(drain(work, edge, None))
        report(f"{copies}x", big, results[f"{copies}x"])
        print(f"peak RSS {copies}x vs 1x backlog: sender "
              f"{results[f'{copies}x']['hwm_kib'] / 1024:.1f} vs {one['hwm_kib'] / 1024:.1f} MiB, "
              f"cloud {results[f'{copies}x']['cloud_hwm_kib'] / 1024:.1f} vs "
              f"{one['cloud_hwm_kib'] / 1024:.1f} MiB")
        capped_dir = work / "capped"
        capped = subset_edge(edge, capped_dir, int(args.cap_mbytes * 1e6))
        cap = args.cap_mb * 1e6
        results["capped"] = asyncio.run(drain(work, capped_dir, cap))
        c = results["capped"]
        report("capped", capped, c)
        print(f"cap {args.cap_mb:g} MB/s (sender token bucket): link utilisation "
              f"{100 * (c['wire_up'] + c['wire_down']) / c['active_s'] / cap:.1f}% over "
              f"{c['active_s']:.1f} s connected (wire bytes both directions); "
              f"{100 * (c['wire_up'] + c['wire_down']) / c['wall_s'] / cap:.1f}% over "
              f"{c['wall_s']:.1f} s incl. connect")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
