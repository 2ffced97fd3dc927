"""Starts a real InfluxDB 1.6.7 (Debian's influxd) on free loopback ports in a temp directory.

Used by the differential query tests and by the benchmarks as the anchor to compare against.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

from tests.waiting import wait_until

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def influxd_available() -> bool:
    return Path(INFLUXD).exists()


class InfluxDBProcess:
    def __init__(self, root: Path, compact_fast: bool = False) -> None:
        self.root = root
        self.http_port = free_port()
        self.bind_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.compact_fast = compact_fast

    def _config(self) -> str:
        r = self.root
        extra = ""
        if self.compact_fast:
            extra = 'cache-snapshot-write-cold-duration = "5s"\ncompact-full-write-cold-duration = "10s"\n'
        return f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.bind_port}"
[meta]
  dir = "{r}/meta"
[data]
  dir = "{r}/data"
  wal-dir = "{r}/wal"
  query-log-enabled = false
  {extra}
[coordinator]
  query-timeout = "0s"
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.http_port}"
  log-enabled = false
  max-body-size = 0
[logging]
  level = "error"
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
"""

    def start(self, timeout: float = 60.0) -> InfluxDBProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "influxdb.conf"
        conf.write_text(self._config())
        self.proc = subprocess.Popen([INFLUXD, "-config", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "influxd.log", "wb"))
        try:
            wait_until(self._answers_ping, timeout, "influxd to answer /ping")
        except AssertionError:
            self.stop()
            raise
        return self

    def _answers_ping(self) -> bool:
        assert self.proc
        if self.proc.poll() is not None:
            raise RuntimeError(f"influxd exited: {(self.root / 'influxd.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
                return resp.status == 204
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def data_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.root / "data").rglob("*.tsm"))

    def __enter__(self) -> InfluxDBProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
