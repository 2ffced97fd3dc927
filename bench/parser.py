"""Line-protocol parser benchmark: MB/s and lines/s of ingest.lineproto.parse_lines, warm,
on TSBS cpu-only lines and device telemetry; one thread, then two threads on two halves.

Usage: python bench/parser.py [--hours 6] [--devices 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.lineproto import parse_lines  # noqa: E402

CPU_FIELDS = ["usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
              "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"]
START_NS = 1_451_606_400_000_000_000


def tsbs_cpu_body(hosts: int, hours: float, seed: int = 1) -> bytes:
    """100 hosts every 10 s, ten random-walk integer fields, TSBS tag layout."""
    rng = np.random.default_rng(seed)
    steps = int(hours * 360)
    regions = ["us-east-1", "us-west-1", "eu-west-1", "eu-central-1", "ap-southeast-1"]
    prefixes = []
    for h in range(hosts):
        region = regions[h % len(regions)]
        prefixes.append(
            f"cpu,hostname=host_{h},region={region},datacenter={region}a,rack={rng.integers(100)},"
            f"os=Ubuntu16.04LTS,arch=x64,team=NYC,service={rng.integers(20)},service_version=1,"
            f"service_environment=production ")
    walk = np.clip(np.cumsum(rng.integers(-2, 3, size=(steps, hosts, 10)), axis=0) + 50, 0, 100)
    out: list[str] = []
    for t in range(steps):
        ts = START_NS + t * 10_000_000_000
        for h in range(hosts):
            vals = ",".join(f"{k}={v}i" for k, v in zip(CPU_FIELDS, walk[t, h].tolist(),
                                                          strict=True))
            out.append(f"{prefixes[h]}{vals} {ts}\n")
    return "".join(out).encode()


def device_body(devices: int, hours: float, seed: int = 2) -> bytes:
    """Device telemetry every 30 s: floats with 1-2 decimals, ints, bools, short strings."""
    rng = np.random.default_rng(seed)
    steps = int(hours * 120)
    states = ["ok", "idle", "warn", "alarm"]
    out: list[str] = []
    for t in range(steps):
        ts = START_NS + t * 30_000_000_000
        temp = np.round(rng.normal(40, 5, devices), 2)
        hum = np.round(rng.uniform(20, 80, devices), 1)
        rpm = rng.integers(0, 5000, devices)
        on = rng.integers(0, 2, devices)
        st = rng.integers(0, 4, devices)
        for d in range(devices):
            out.append(
                f"telemetry,device=dev-{d:04d},model=m{d % 7},site=plant{d % 3} "
                f"temperature={temp[d]},humidity={hum[d]},rpm={rpm[d]}i,"
                f"running={'true' if on[d] else 'false'},state=\"{states[st[d]]}\" {ts}\n")
    return "".join(out).encode()


def split_halves(body: bytes) -> tuple[bytes, bytes]:
    mid = body.index(b"\n", len(body) // 2) + 1
    return body[:mid], body[mid:]


def measure(name: str, body: bytes, repeat: int) -> None:
    lines = body.count(b"\n")
    result = parse_lines(body)
    assert not result.errors and result.points == lines, (name, result.errors[:3])
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        parse_lines(body)
        best = min(best, time.perf_counter() - start)
    print(f"{name:10s} 1 thread : {len(body) / best / 1e6:8.1f} MB/s  {lines / best / 1e6:6.3f} "
          f"M lines/s  ({len(body) / 1e6:.1f} MB, {lines} lines, best of {repeat})")
    halves = split_halves(body)
    best2 = float("inf")
    with ThreadPoolExecutor(2) as pool:
        for _ in range(repeat):
            start = time.perf_counter()
            list(pool.map(parse_lines, halves))
            best2 = min(best2, time.perf_counter() - start)
    print(f"{name:10s} 2 threads: {len(body) / best2 / 1e6:8.1f} MB/s  "
          f"{lines / best2 / 1e6:6.3f} M lines/s  (speed-up {best / best2:.2f}x)")


def gil_check(body: bytes) -> None:
    """Rate of a pure-Python loop while another thread parses, against the loop alone."""
    def spin(seconds: float) -> float:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            count += 1
        return count / seconds

    alone = spin(0.5)
    done = threading.Event()

    def work() -> None:
        for _ in range(3):
            parse_lines(body)
        done.set()

    worker = threading.Thread(target=work)
    count, start = 0, time.perf_counter()
    worker.start()
    while not done.is_set():
        count += 1
    worker.join()
    during = count / (time.perf_counter() - start)
    print(f"GIL check: a Python loop keeps {during / alone:.0%} of its speed while another "
          "thread parses (near 100% = the parse runs without the GIL)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hours", type=float, default=6.0, help="hours of TSBS cpu data (100 hosts)")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--device-hours", type=float, default=6.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    parse_lines(b"warm,up=1 v=1i,f=1.5,s=\"x\",b=t 1\n")  # compile or load the numba cache
    cpu = tsbs_cpu_body(100, args.hours)
    measure("tsbs-cpu", cpu, args.repeat)
    measure("device", device_body(args.devices, args.device_hours), args.repeat)
    gil_check(cpu)


if __name__ == "__main__":
    main()
