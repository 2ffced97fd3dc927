"""Sync benchmark: drain a backlog of segment files edge -> cloud over loopback, sender and receiver
in separate processes; prints bytes/s, link utilisation under a cap, and peak RSS (VmHWM) of both."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sync.segment_source import write_sealed_segment  # noqa: E402

FIELDS = ["usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait", "usage_irq",
          "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"]


def tsbs_cpu_segment(rng: np.random.Generator, rows: int, start_ns: int) -> bytes:
    """TSBS-like `cpu` rows (100 hosts, 10 s interval, 10 float fields) as zstd Arrow IPC."""
    hosts = 100
    series = np.tile(np.arange(hosts, dtype=np.int32), rows // hosts + 1)[:rows]
    times = start_ns + (np.arange(rows, dtype=np.int64) // hosts) * 10_000_000_000
    columns: dict[str, pa.Array] = {"series_id": pa.array(series), "time": pa.array(times)}
    for name in FIELDS:
        walk = np.clip(50 + np.cumsum(rng.normal(0, 1, rows)), 0, 100)
        columns[name] = pa.array(np.round(walk, 2))
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def make_backlog(directory: Path, segments: int, unique: list[bytes]) -> int:
    total = 0
    for seq in range(segments):
        data = unique[seq % len(unique)]
        write_sealed_segment(directory, seq, data, min_time_ns=seq * 10**12,
                             max_time_ns=seq * 10**12 + 10**12 - 1, rows=1, database="benchmark",
                             measurement="cpu")
        total += len(data)
    return total


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def committed(cloud_dir: Path) -> tuple[int, int, int]:
    """(count, first committed_at_ns, last committed_at_ns) from the cloud catalog."""
    db = cloud_dir / "catalog.sqlite"
    if not db.exists():
        return 0, 0, 0
    conn = sqlite3.connect(db, timeout=5)
    try:
        row = conn.execute("SELECT COUNT(*), MIN(committed_at_ns), MAX(committed_at_ns) "
                           "FROM segments").fetchone()
    except sqlite3.OperationalError:
        return 0, 0, 0
    finally:
        conn.close()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


def drain(work: Path, backlog_dir: Path, segments: int, cap: float | None) -> dict[str, float]:
    run = Path(tempfile.mkdtemp(dir=work))
    segs = run / "segs"
    shutil.copytree(backlog_dir, segs)
    cloud_dir = run / "cloud"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    (run / "cloud.json").write_text(json.dumps({"cloud_dir": str(cloud_dir),
                                                "tokens": {"bench": "t"}}))
    port_file = run / "port"
    cloud = subprocess.Popen([sys.executable, "-m", "sync.receiver", "--config",
                              str(run / "cloud.json"), "--port-file", str(port_file)], env=env)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("receiver did not start")
        time.sleep(0.02)
    sender_cfg = {"url": f"ws://127.0.0.1:{port_file.read_text()}", "node": "bench", "token": "t",
                  "ledger_dir": str(run / "ledger"), "segment_dir": str(segs),
                  "bandwidth_bytes_per_s": cap}
    (run / "sender.json").write_text(json.dumps(sender_cfg))
    started = time.monotonic()
    sender = subprocess.Popen([sys.executable, "-m", "sync.sender", "--config",
                               str(run / "sender.json")], env=env)
    try:
        while True:
            count, first_ns, last_ns = committed(cloud_dir)
            if count >= segments:
                break
            if time.monotonic() - started > 600:
                raise RuntimeError(f"drain timed out at {count}/{segments}")
            time.sleep(0.05)
        wall = time.monotonic() - started
        sender_hwm, cloud_hwm = vm_hwm_kib(sender.pid), vm_hwm_kib(cloud.pid)
    finally:
        for proc in (sender, cloud):
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    total = sum(p.stat().st_size for p in segs.glob("*.seg"))
    first_size = next(iter(sorted(segs.glob("*.seg")))).stat().st_size
    steady = (total - first_size) / max((last_ns - first_ns) / 1e9, 1e-9)
    shutil.rmtree(run)
    return {"bytes": total, "wall_s": wall, "wall_rate": total / wall, "steady_rate": steady,
            "sender_hwm_mib": sender_hwm / 1024, "cloud_hwm_mib": cloud_hwm / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--segments", type=int, default=16, help="1x backlog in segments")
    parser.add_argument("--rows", type=int, default=150_000, help="rows per segment")
    parser.add_argument("--cap-mb", type=float, default=1.0, help="bandwidth cap, MB/s")
    parser.add_argument("--cap-seconds", type=float, default=6.0, help="capped run length")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgets-bench-sync-"))
    try:
        rng = np.random.default_rng(42)
        unique = [tsbs_cpu_segment(rng, args.rows, i * 10**12) for i in range(8)]
        seg_size = sum(map(len, unique)) / len(unique)
        print("backlog: zstd-compressed Arrow IPC of TSBS-like cpu data (stand-in until the "
              f"storage segment writer exists); {args.rows} rows/segment, "
              f"{seg_size / 1e6:.2f} MB/segment avg, 8 distinct contents reused")
        results = {}
        for label, count in (("1x", args.segments), ("10x", args.segments * 10)):
            backlog = work / f"backlog-{label}"
            make_backlog(backlog, count, unique)
            results[label] = drain(work, backlog, count, None)
            shutil.rmtree(backlog)
        capped_count = max(2, int(args.cap_mb * 1e6 * args.cap_seconds / seg_size))
        backlog = work / "backlog-capped"
        make_backlog(backlog, capped_count, unique)
        cap = args.cap_mb * 1e6
        results["capped"] = drain(work, backlog, capped_count, cap)
        for label, r in results.items():
            print(f"{label:>7}: {r['bytes'] / 1e6:8.1f} MB in {r['wall_s']:6.2f} s wall "
                  f"(incl. process start) = {r['wall_rate'] / 1e6:7.2f} MB/s; steady "
                  f"{r['steady_rate'] / 1e6:7.2f} MB/s; peak RSS sender "
                  f"{r['sender_hwm_mib']:.1f} MiB, receiver {r['cloud_hwm_mib']:.1f} MiB")
        capped = results["capped"]
        print(f"cap {args.cap_mb:.1f} MB/s: link utilisation {100 * capped['steady_rate'] / cap:.1f}% "
              f"(steady), {100 * capped['wall_rate'] / cap:.1f}% (wall incl. start/handshake)")
        print(f"RSS 10x vs 1x backlog: sender {results['10x']['sender_hwm_mib']:.1f} vs "
              f"{results['1x']['sender_hwm_mib']:.1f} MiB, receiver "
              f"{results['10x']['cloud_hwm_mib']:.1f} vs {results['1x']['cloud_hwm_mib']:.1f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
