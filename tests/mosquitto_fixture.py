"""A real Mosquitto broker for tests: free loopback port, temp config and persistence dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.waiting import wait_until

MOSQUITTO = "/usr/sbin/mosquitto"


@dataclass
class Broker:
    host: str
    port: int
    directory: Path
    process: subprocess.Popen | None = None
    # Lines right after the `listener` line (e.g. cafile/certfile/keyfile, require_certificate,
    # password_file); allow_anonymous false: clients must log in.
    extra_config: str = ""
    allow_anonymous: bool = True

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, same port and persistence) and wait until it accepts TCP."""
        conf = self.directory / "mosquitto.conf"
        persist = self.directory / "persist"
        persist.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            + (self.extra_config.rstrip("\n") + "\n" if self.extra_config else "")
            + f"allow_anonymous {'true' if self.allow_anonymous else 'false'}\n"
            "persistence true\n"
            f"persistence_location {persist}/\n"
            "autosave_interval 1\n"
            "max_inflight_messages 20\n"
            "max_queued_messages 100000\n"
            "user root\n"
            f"log_dest file {self.directory / 'mosquitto.log'}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_until(self._listening, timeout, f"mosquitto to listen on {self.port}")
        except AssertionError:
            self.stop()
            raise

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {err}")
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """kill -9: no clean shutdown, no final persistence save."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def mosquitto_broker(directory: Path, start: bool = True, extra_config: str = "",
                     allow_anonymous: bool = True) -> Iterator[Broker]:
    """Yield a Broker on a free loopback port (started unless start=False); always stopped.
    `extra_config` lines follow the listener line (TLS files, password_file, ...)."""
    broker = Broker("127.0.0.1", free_port(), Path(directory), extra_config=extra_config,
                    allow_anonymous=allow_anonymous)
    try:
        if start:
            broker.start()
        yield broker
    finally:
        broker.stop()
