"""Column codec benchmark: bits/value and single-core encode/decode speed of each codec on
TSBS-style data, next to Gorilla and zstd-3 of the raw bytes. Run: python bench/codecs.py
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import codecs  # noqa: E402

SERIES = 100
POINTS = 8640  # one day at 10 s
INTERVAL_NS = 10_000_000_000
T0_NS = 1_700_000_000_000_000_000


def tsbs_int_walks(rng: np.random.Generator) -> list[np.ndarray]:
    """TSBS cpu fields: start U(0,100), steps N(0,1) rounded, clamped to [0, 100], int64."""
    out = []
    for _ in range(SERIES):
        steps = np.rint(rng.normal(0.0, 1.0, POINTS)).astype(np.int64)
        v = np.empty(POINTS, dtype=np.int64)
        cur = int(rng.uniform(0, 100))
        for i in range(POINTS):  # clamping makes the walk path-dependent; data setup only
            cur = min(100, max(0, cur + int(steps[i])))
            v[i] = cur
        out.append(v)
    return out


def float_walks(rng: np.random.Generator) -> list[np.ndarray]:
    """The same walk in full-precision float64 (unrounded N(0,1) steps, clamped)."""
    out = []
    for _ in range(SERIES):
        steps = rng.normal(0.0, 1.0, POINTS)
        v = np.empty(POINTS, dtype=np.float64)
        cur = rng.uniform(0, 100)
        for i in range(POINTS):
            cur = min(100.0, max(0.0, cur + steps[i]))
            v[i] = cur
        out.append(v)
    return out


def telemetry_floats(rng: np.random.Generator) -> list[np.ndarray]:
    """Device telemetry: slow drifting sensors written with 1 or 2 decimals."""
    out = []
    for s in range(SERIES):
        decimals = 1 + s % 2
        base = rng.uniform(-10, 60)
        drift = np.cumsum(rng.normal(0.0, 0.05, POINTS))
        out.append(np.round(base + drift + rng.normal(0.0, 0.02, POINTS), decimals))
    return out


def timestamps(rng: np.random.Generator, jitter: bool) -> list[np.ndarray]:
    out = []
    for _ in range(SERIES):
        t = T0_NS + np.arange(POINTS, dtype=np.int64) * INTERVAL_NS
        if jitter:
            t = t + rng.integers(0, 1_000_000, POINTS)  # sub-millisecond jitter
        out.append(t)
    return out


def series_counter(rng: np.random.Generator) -> list[np.ndarray]:
    """Energy-like counter per series (increments U{0..4}), each starting near 0."""
    return [np.cumsum(rng.integers(0, 5, POINTS)).astype(np.int64) for _ in range(SERIES)]


def skewed_bools(rng: np.random.Generator) -> list[np.ndarray]:
    """Door-open flags: True with probability 0.05 (entropy 0.29 bits/value)."""
    return [rng.random(POINTS) < 0.05 for _ in range(SERIES)]


def measure(chunks: list[np.ndarray], encode: Callable[[np.ndarray], bytes],
            decode: Callable[[bytes], np.ndarray], repeat: int) -> tuple[float, float, float, str]:
    """(bits/value, encode M values/s, decode M values/s, codec names) over all chunks."""
    n = sum(len(c) for c in chunks)
    encoded = [encode(c) for c in chunks]  # warm-up (numba cache load, first calls)
    for c, e in zip(chunks, encoded, strict=True):
        back = decode(e)
        same = (np.array_equal(back, c) if c.dtype == np.bool_ else
                np.array_equal(np.asarray(back).view(np.uint64), c.view(np.uint64)))
        if not same:
            raise SystemExit(f"round trip failed for {encode.__name__}")
    best_enc = best_dec = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for c in chunks:
            encode(c)
        best_enc = min(best_enc, time.perf_counter() - t)
        t = time.perf_counter()
        for e in encoded:
            decode(e)
        best_dec = min(best_dec, time.perf_counter() - t)
    size = sum(len(e) for e in encoded)
    names = sorted({codecs.codec_of(e).name for e in encoded})
    return size * 8 / n, n / best_enc / 1e6, n / best_dec / 1e6, "+".join(names)


def zstd_raw(chunks: list[np.ndarray], repeat: int) -> tuple[float, float, float, str]:
    comp = zstandard.ZstdCompressor(level=3)
    dec = zstandard.ZstdDecompressor()
    dtype = chunks[0].dtype

    def enc(c: np.ndarray) -> bytes:
        return comp.compress(c.tobytes())

    def de(b: bytes) -> np.ndarray:
        return np.frombuffer(dec.decompress(b), dtype=dtype)

    n = sum(len(c) for c in chunks)
    encoded = [enc(c) for c in chunks]
    best_enc = best_dec = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for c in chunks:
            enc(c)
        best_enc = min(best_enc, time.perf_counter() - t)
        t = time.perf_counter()
        for e in encoded:
            de(e)
        best_dec = min(best_dec, time.perf_counter() - t)
    return sum(len(e) for e in encoded) * 8 / n, n / best_enc / 1e6, n / best_dec / 1e6, "zstd-3"


def gorilla_of(chunks: list[np.ndarray]) -> list[np.ndarray]:
    return [c.astype(np.float64) for c in chunks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(42)
    ints = tsbs_int_walks(rng)
    walks = float_walks(rng)
    tele = telemetry_floats(rng)
    ts_jit = timestamps(rng, jitter=True)
    ts_exact = timestamps(rng, jitter=False)
    counters = series_counter(rng)
    flags = skewed_bools(rng)

    rows: list[tuple[str, str, tuple[float, float, float, str]]] = []

    def run(dataset: str, label: str, chunks: list[np.ndarray], enc: Callable, dec: Callable) -> None:
        for layout, data in (("8640", chunks), ("864k", [np.concatenate(chunks)])):
            rows.append((f"{dataset} [{layout}]", label, measure(data, enc, dec, args.repeat)))
        rows.append((f"{dataset} [8640]", "zstd-3 raw", zstd_raw(chunks, args.repeat)))

    run("(a) TSBS int walk", "ints", ints, codecs.encode_ints, codecs.decode_ints)
    for layout, data in (("8640", gorilla_of(ints)), ("864k", [np.concatenate(gorilla_of(ints))])):
        rows.append((f"(a) TSBS int walk [{layout}]", "gorilla (as f64)",
                     measure(data, codecs.encode_floats_gorilla, codecs.decode_floats, args.repeat)))
    for name, data in (("(b) f64 walk", walks), ("(c) telemetry 1-2 dec", tele)):
        run(name, "floats (ALP/RD)", data, codecs.encode_floats, codecs.decode_floats)
        for layout, d in (("8640", data), ("864k", [np.concatenate(data)])):
            rows.append((f"{name} [{layout}]", "gorilla",
                         measure(d, codecs.encode_floats_gorilla, codecs.decode_floats, args.repeat)))
    run("(d) ts 10s + jitter", "timestamps", ts_jit, codecs.encode_timestamps, codecs.decode_timestamps)
    run("(d) ts 10s exact", "timestamps", ts_exact, codecs.encode_timestamps, codecs.decode_timestamps)
    run("(e) counter U{0..4}", "ints", counters, codecs.encode_ints, codecs.decode_ints)
    run("(f) bool p=0.05", "bools", flags, codecs.encode_bools, codecs.decode_bools)

    print(f"{'dataset [chunk]':30} {'codec':18} {'bits/val':>9} {'enc M/s':>9} {'dec M/s':>9}  chosen")
    for dataset, label, (bits, enc, dec, names) in rows:
        print(f"{dataset:30} {label:18} {bits:9.2f} {enc:9.1f} {dec:9.1f}  {names}")


if __name__ == "__main__":
    main()
