"""Start-up cost of `edgets serve`: cold (empty numba cache) vs warm, to the first acknowledged write.

Measures spawn -> 'listening on' and spawn -> first 204 for a write (which runs the parser and
the WAL path). Usage: python bench/startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.server_process import ServerProcess  # noqa: E402

BODY = b"cpu,host=a usage=1.5,count=3i,ok=true,state=\"x\" 1700000000000000000\n"


def one_start(data_dir: Path, cache_dir: Path) -> tuple[float, float]:
    start = time.perf_counter()
    server = ServerProcess(data_dir, env={"NUMBA_CACHE_DIR": str(cache_dir)}).start(timeout=300)
    listening = time.perf_counter() - start
    try:
        req = urllib.request.Request(f"{server.url}/write?db=edge", data=BODY, method="POST")
        with urllib.request.urlopen(req, timeout=300) as resp:
            assert resp.status == 204
        first_write = time.perf_counter() - start
    finally:
        server.stop()
    return listening, first_write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"# bench/startup.py  {time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()} cores={os.cpu_count()}")
    cold: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "numba-cache"
            cold.append(one_start(Path(tmp) / "d1", cache))
            warm.append(one_start(Path(tmp) / "d2", cache))
    for name, runs in (("cold (empty numba cache)", cold), ("warm (cached machine code)", warm)):
        listen = statistics.median(r[0] for r in runs)
        write = statistics.median(r[1] for r in runs)
        print(f"{name:28s} listening after {listen:6.2f} s, first write acknowledged after {write:6.2f} s")


if __name__ == "__main__":
    main()
