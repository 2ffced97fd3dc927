"""Benchmark datasets as line protocol: TSBS devops cpu-only and KubeEdge-like device telemetry.

Deterministic (seeded) and vectorised; both are also available as column arrays for codec benches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

TSBS_START_NS = 1_451_606_400_000_000_000  # 2016-01-01T00:00:00Z, as tsbs
CPU_FIELDS = ["usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
              "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"]
REGIONS = ["us-east-1", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1",
           "ap-southeast-2", "ap-northeast-1", "sa-east-1"]


@dataclass
class CpuData:
    """TSBS cpu-only: rows interleaved by host (for each timestamp, every host)."""

    host_tags: list[str]  # the ',k=v...' tag suffix per host
    hosts: int
    times: np.ndarray  # (T,) int64 ns
    values: np.ndarray  # (T, hosts, 10) int64 random walks in [0, 100]


def tsbs_cpu(hosts: int = 100, hours: float = 24, interval_s: int = 10, seed: int = 1,
             as_float: bool = False) -> CpuData:
    rng = np.random.default_rng(seed)
    steps = int(hours * 3600 / interval_s)
    times = TSBS_START_NS + np.arange(steps, dtype=np.int64) * interval_s * 1_000_000_000
    walk = np.empty((steps, hosts, 10), dtype=np.float64)
    cur = rng.uniform(0, 100, size=(hosts, 10))
    noise = rng.normal(0, 1, size=(steps, hosts, 10))
    for t in range(steps):
        cur = np.clip(cur + noise[t], 0, 100)
        walk[t] = cur
    values = walk if as_float else np.round(walk).astype(np.int64)
    tags = []
    for h in range(hosts):
        region = REGIONS[h % len(REGIONS)]
        tags.append(
            f",hostname=host_{h},region={region},datacenter={region}{'abc'[h % 3]},rack={rng.integers(0, 100)},"
            f"os=Ubuntu{['16.04LTS', '16.10', '15.10'][h % 3]},arch={['x64', 'x86'][h % 2]},team={['SF', 'NYC', 'LON', 'CHI'][h % 4]},"
            f"service={rng.integers(0, 20)},service_version={rng.integers(0, 2)},"
            f"service_environment={['production', 'staging', 'test'][h % 3]}"
        )
    return CpuData(tags, hosts, times, values)


def cpu_lines(data: CpuData, batch_lines: int = 5000) -> Iterator[bytes]:
    """Line-protocol bodies of `batch_lines` lines (ints as TSBS prints them: `58i`)."""
    is_float = data.values.dtype.kind == "f"
    lines: list[str] = []
    for t, ts in enumerate(data.times.tolist()):
        row = data.values[t]
        for h in range(data.hosts):
            vals = row[h].tolist()
            if is_float:
                fields = ",".join(f"{name}={v!r}" for name, v in zip(CPU_FIELDS, vals, strict=True))
            else:
                fields = ",".join(f"{name}={v}i" for name, v in zip(CPU_FIELDS, vals, strict=True))
            lines.append(f"cpu{data.host_tags[h]} {fields} {ts}")
            if len(lines) == batch_lines:
                yield ("\n".join(lines) + "\n").encode()
                lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode()


@dataclass
class DeviceData:
    devices: int
    times: np.ndarray  # (T, devices) int64 ns with sub-ms jitter
    temperature: np.ndarray  # 1 decimal
    humidity: np.ndarray  # 2 decimals
    energy: np.ndarray  # int64 counter
    door_open: np.ndarray  # bool
    status: np.ndarray  # small-vocabulary strings (indices into STATUSES)


STATUSES = ["ok", "ok", "ok", "warn", "idle"]


def device_telemetry(devices: int = 200, hours: float = 12, interval_s: int = 10, seed: int = 2) -> DeviceData:
    rng = np.random.default_rng(seed)
    steps = int(hours * 3600 / interval_s)
    base = TSBS_START_NS + np.arange(steps, dtype=np.int64)[:, None] * interval_s * 1_000_000_000
    jitter = rng.integers(0, 1_000_000, size=(steps, devices))  # sub-millisecond
    times = base + jitter
    temp = np.round(20 + np.cumsum(rng.normal(0, 0.05, size=(steps, devices)), axis=0), 1)
    hum = np.round(np.clip(50 + np.cumsum(rng.normal(0, 0.1, size=(steps, devices)), axis=0), 0, 100), 2)
    energy = np.cumsum(rng.integers(0, 5, size=(steps, devices)), axis=0).astype(np.int64)
    door = rng.random(size=(steps, devices)) < 0.05
    status = rng.integers(0, len(STATUSES), size=(steps, devices))
    return DeviceData(devices, times, temp, hum, energy, door, status)


def device_lines(data: DeviceData, batch_lines: int = 5000) -> Iterator[bytes]:
    lines: list[str] = []
    steps = data.times.shape[0]
    for t in range(steps):
        ts = data.times[t].tolist()
        temp, hum = data.temperature[t].tolist(), data.humidity[t].tolist()
        energy, door, status = data.energy[t].tolist(), data.door_open[t].tolist(), data.status[t].tolist()
        for d in range(data.devices):
            lines.append(
                f"telemetry,device=dev-{d:04d},namespace=default,model=thermo-v2 "
                f"temperature={temp[d]!r},humidity={hum[d]!r},energy={energy[d]}i,"
                f"door_open={'true' if door[d] else 'false'},status=\"{STATUSES[status[d]]}\" {ts[d]}"
            )
            if len(lines) == batch_lines:
                yield ("\n".join(lines) + "\n").encode()
                lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode()
