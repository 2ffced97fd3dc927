"""Starts and stops a real `edgets` server subprocess on a free loopback port for tests.

Waits on the server's own 'listening on' line (with a deadline), never on a fixed sleep.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class ServerProcess:
    def __init__(self, data_dir: Path, *extra_args: str, command: str = "serve",
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.args = [sys.executable, "-m", "edge_agent.cli", command, "--data-dir", str(data_dir),
                     "--bind", "127.0.0.1:0", "--log-level", "WARNING", *extra_args]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
                return self
            if self.proc.poll() is not None and self.lines.empty():
                break
        self.kill()
        raise RuntimeError("edgets server did not start:\n" + "".join(self.output[-50:]))

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        """kill -9: no chance to flush or close anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start() if not self.proc else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
