"""Storage benchmark: all-in bytes/value of segment files vs Parquet zstd-3, Gorilla and InfluxDB
1.6 TSM, plus per-codec encode/decode throughput. Run: .venv/bin/python bench/storage.py"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.datasets import (  # noqa: E402
    CPU_FIELDS,
    STATUSES,
    cpu_lines,
    device_lines,
    device_telemetry,
    tsbs_cpu,
)
from storage.batch import FieldType  # noqa: E402
from storage.codecs import (  # noqa: E402
    CodecId,
    decode_bools,
    decode_floats,
    decode_ints,
    decode_strings,
    decode_timestamps,
    decode_uints,
    decode_validity,
    encode_bools,
    encode_floats,
    encode_floats_gorilla,
    encode_ints,
    encode_strings,
    encode_timestamps,
    encode_uints,
    encode_validity,
)
from storage.segment_format import read_footer, read_segment, write_segment  # noqa: E402

DAY_NS = 86_400 * 10**9
TARGET_CPU_BYTES_PER_VALUE = 0.35
TARGET_DEVICE_VS_PARQUET = 0.5
TARGET_DECODE_MVALUES = 200.0


def cpu_table(hosts: int, hours: float, as_float: bool) -> tuple[pa.Table, list[str], Callable[[], Iterator[bytes]]]:
    data = tsbs_cpu(hosts=hosts, hours=hours, as_float=as_float)
    steps = len(data.times)
    tag_rows = [dict(kv.split("=", 1) for kv in tags.split(",")[1:]) for tags in data.host_tags]
    keys = sorted(tag_rows[0])
    host_idx = pa.array(np.tile(np.arange(hosts, dtype=np.int32), steps))
    cols: dict[str, pa.Array] = {"time": pa.array(np.repeat(data.times, hosts), type=pa.timestamp("ns"))}
    for key in keys:
        cols[key] = pa.array([r[key] for r in tag_rows], type=pa.string()).take(host_idx)
    flat = data.values.reshape(steps * hosts, len(CPU_FIELDS))
    for j, name in enumerate(CPU_FIELDS):
        cols[name] = pa.array(np.ascontiguousarray(flat[:, j]))
    return pa.table(cols), keys, lambda: cpu_lines(data)


def device_table(devices: int, hours: float) -> tuple[pa.Table, list[str], Callable[[], Iterator[bytes]]]:
    data = device_telemetry(devices=devices, hours=hours)
    steps = data.times.shape[0]
    dev = pa.array([f"dev-{d:04d}" for d in range(devices)]).take(pa.array(np.tile(np.arange(devices), steps)))
    n = steps * devices
    status = pa.array(STATUSES).take(pa.array(data.status.reshape(n)))
    table = pa.table({
        "time": pa.array(data.times.reshape(n), type=pa.timestamp("ns")),
        "device": dev, "model": pa.array(["thermo-v2"] * n), "namespace": pa.array(["default"] * n),
        "door_open": pa.array(data.door_open.reshape(n)), "energy": pa.array(data.energy.reshape(n)),
        "humidity": pa.array(data.humidity.reshape(n)), "status": status,
        "temperature": pa.array(data.temperature.reshape(n)),
    })
    return table, ["device", "model", "namespace"], lambda: device_lines(data)


def best_time(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


CODEC_FUNCS: dict[str, tuple[Callable, Callable]] = {
    "time": (encode_timestamps, decode_timestamps),
    "series_id": (encode_ints, decode_ints),
    "validity": (encode_validity, decode_validity),
    FieldType.FLOAT.name: (encode_floats, decode_floats),
    FieldType.INTEGER.name: (encode_ints, decode_ints),
    FieldType.UNSIGNED.name: (encode_uints, decode_uints),
    FieldType.BOOLEAN.name: (encode_bools, decode_bools),
    FieldType.STRING.name: (encode_strings, decode_strings),
}


def codec_rows(path: Path, sorted_table: pa.Table) -> list[tuple[str, str, int, int, float, float]]:
    """(column, codec, values, bytes, encode M values/s, decode M values/s) per chunk."""
    footer = read_footer(path)
    sorted_times = sorted_table.column("time").cast(pa.int64()).to_numpy()
    rows = []
    for c in footer.chunks:
        if c.role == "time":
            values: object = sorted_times
            kind = "time"
        elif c.role == "series_id":
            sid = np.repeat(np.arange(footer.series_count), np.diff(footer.series_rows.astype(np.int64)))
            values, kind = sid, "series_id"
        elif c.role == "validity":
            values, kind = sorted_table.column(c.column).is_valid().to_numpy(zero_copy_only=False), "validity"
        else:
            ftype = footer.fields[c.column]
            col = sorted_table.column(c.column).combine_chunks().drop_null()
            values = col if ftype == FieldType.STRING else col.to_numpy(zero_copy_only=False)
            kind = ftype.name
        if c.role == "validity" and c.null_count == 0:
            continue
        enc, dec = CODEC_FUNCS[kind]
        data = enc(values)
        n = len(values)  # type: ignore[arg-type]
        t_enc = best_time(lambda enc=enc, values=values: enc(values))
        t_dec = best_time(lambda dec=dec, data=data: dec(data))
        rows.append((f"{c.column}/{c.role}", CodecId(c.codec).name, n, c.length, n / t_enc / 1e6, n / t_dec / 1e6))
    return rows


def gorilla_bytes(sorted_table: pa.Table, fields: list[str]) -> int:
    total = 0
    for name in fields:
        col = sorted_table.column(name).combine_chunks().drop_null().to_numpy(zero_copy_only=False)
        total += len(encode_floats_gorilla(col.astype(np.float64)))
    return total


def influx_bytes(lines: Callable[[], Iterator[bytes]], db: str, work: Path) -> int | None:
    from tests.influxdb_process import InfluxDBProcess, influxd_available

    if not influxd_available():
        return None
    with InfluxDBProcess(work / f"influx-{db}", compact_fast=True) as influx:
        urllib.request.urlopen(urllib.request.Request(f"{influx.url}/query", data=f"q=CREATE DATABASE {db}".encode(),
                                                      method="POST"), timeout=30).read()
        for body in lines():
            req = urllib.request.Request(f"{influx.url}/write?db={db}&precision=ns", data=body, method="POST")
            with urllib.request.urlopen(req, timeout=120) as resp:
                assert resp.status == 204, resp.read()
        # wait for the full compaction: TSM size stable for 20 s (deadline 240 s)
        deadline = time.monotonic() + 240
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            size = influx.data_bytes()
            if size != last:
                last, stable_since = size, time.monotonic()
            elif size > 0 and time.monotonic() - stable_since >= 20:
                break
            time.sleep(1)
        return last


def run_dataset(name: str, table: pa.Table, tag_keys: list[str], lines: Callable[[], Iterator[bytes]],
                work: Path, with_influx: bool) -> dict[str, float]:
    t0 = int(table.column("time").cast(pa.int64()).to_numpy().min())
    days = (table.column("time").cast(pa.int64()).to_numpy() - t0) // DAY_NS
    seg_bytes = 0
    fields = [c for c in table.column_names if c != "time" and c not in tag_keys]
    values = sum(len(table.column(f)) - table.column(f).null_count for f in fields)
    t_write = time.perf_counter()
    paths = []
    for day in np.unique(days):
        part = table.filter(pa.array(days == day))
        path = work / f"{name}-{day}.seg"
        info = write_segment(path, database="bench", measurement=name, seq=int(day) + 1, table=part, tag_keys=tag_keys)
        seg_bytes += info.size
        paths.append(path)
    t_write = time.perf_counter() - t_write
    t_read = best_time(lambda: [read_segment(p) for p in paths], repeat=2)
    sorted_table = read_segment(paths[0])
    pq_path = work / f"{name}.parquet"
    pq.write_table(pa.concat_tables([read_segment(p) for p in paths]), pq_path, compression="zstd",
                   compression_level=3)
    parquet = pq_path.stat().st_size
    float_fields = [f for f in fields if table.schema.field(f).type in (pa.float64(), pa.int64())]
    ours_fields = sum(c.length for c in read_footer(paths[0]).chunks if c.role == "values" and c.column in float_fields)
    gorilla = gorilla_bytes(sorted_table, float_fields)
    fvals = sum(len(sorted_table.column(f)) - sorted_table.column(f).null_count for f in float_fields)
    influx = influx_bytes(lines, name.replace("-", "_"), work) if with_influx else None
    print(f"\n=== {name}: {table.num_rows:,} rows, {values:,} field values, {len(paths)} segment(s)")
    print(f"{'format':34} {'bytes':>12} {'bytes/value':>12} {'vs parquet':>10}")
    for label, size in [("edgets segment (all-in)", seg_bytes), ("parquet zstd-3 (same order)", parquet),
                        ("influxdb 1.6.7 TSM", influx)]:
        if size is None:
            print(f"{label:34} {'n/a':>12}")
            continue
        print(f"{label:34} {size:>12,} {size / values:>12.3f} {size / parquet:>10.2f}")
    if fvals:
        print(f"numeric field chunks only: ours {ours_fields / fvals:.3f} B/value, "
              f"gorilla {gorilla / fvals:.3f} B/value (on the same {fvals:,} values as float64)")
    print(f"write {table.num_rows / t_write / 1e6:.2f} M rows/s, full read {table.num_rows * len(paths) / len(paths) / t_read / 1e6:.2f} M rows/s")
    print(f"\n{'chunk':34} {'codec':18} {'values':>10} {'bytes':>10} {'bits/val':>8} {'enc Mv/s':>9} {'dec Mv/s':>9}")
    for col, codec, n, size, enc, dec in codec_rows(paths[0], sorted_table):
        print(f"{col:34} {codec:18} {n:>10,} {size:>10,} {8 * size / max(n, 1):>8.2f} {enc:>9.1f} {dec:>9.1f}")
    return {"bytes_per_value": seg_bytes / values, "vs_parquet": seg_bytes / parquet}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--device-hours", type=float, default=12)
    parser.add_argument("--no-influx", action="store_true", help="skip the InfluxDB TSM comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgets-bench-") as tmp:
        work = Path(tmp)
        results = {}
        for name, (table, keys, lines) in [
            ("cpu", cpu_table(args.hosts, args.hours, as_float=False)),
            ("cpu-float", cpu_table(args.hosts, args.hours, as_float=True)),
            ("telemetry", device_table(args.devices, args.device_hours)),
        ]:
            results[name] = run_dataset(name, table, keys, lines, work, not args.no_influx)
        print("\n=== targets")
        cpu = results["cpu"]["bytes_per_value"]
        dev = results["telemetry"]["vs_parquet"]
        print(f"TSBS cpu-only all-in {cpu:.3f} B/value (target <= {TARGET_CPU_BYTES_PER_VALUE}): "
              f"{'MET' if cpu <= TARGET_CPU_BYTES_PER_VALUE else 'MISSED'}")
        print(f"device telemetry {dev:.2f}x parquet zstd-3 (target <= {TARGET_DEVICE_VS_PARQUET}x): "
              f"{'MET' if dev <= TARGET_DEVICE_VS_PARQUET else 'MISSED'}")
        print(f"decode target >= {TARGET_DECODE_MVALUES:.0f} M values/s for ints and ALP floats: see the "
              f"'dec Mv/s' column of the INTEGER (FOR/DELTA/DOD) and ALP chunks above")


if __name__ == "__main__":
    main()
