"""`edgets run` (what `make run` does): an edge agent on embedded defaults (data in ./data) fed by
the mapper simulator, through a child Mosquitto when installed, else over HTTP; live summary."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from edge_agent.agent import agent_state, run_agent
from edge_agent.config import Config
from edge_agent.edge_node import Component, EdgeNode, run_until_complete, split_bind
from edge_agent.simulator import DATAMODEL_TOPIC, SimulatorConfig, simulate, write_device_yaml

log = logging.getLogger("edgets.run")
MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    for path in MOSQUITTO_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("mosquitto")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


class ChildBroker:
    """Mosquitto as a child process on a free loopback port with a temporary config."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        conf = self.directory / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 "max_queued_messages 100000", "log_dest stderr", "log_type error"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, who cannot read our tmp dir
        conf.write_text("\n".join(lines) + "\n")
        # own session: Ctrl-C in the terminal reaches the agent only, which stops its intake
        # (PUBACKs for everything stored) before the demo stops the broker
        self.process = subprocess.Popen([self.executable, "-c", str(conf)], start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                threading.Event().wait(0.05)  # polling a child process we cannot get notified by
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout_s}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


def broker_component(broker: ChildBroker) -> Component:
    async def start(_node: EdgeNode) -> Callable[[], Awaitable[None]]:
        async def stop() -> None:
            await asyncio.get_running_loop().run_in_executor(None, broker.stop)

        return stop

    return start


def simulator_component(make_config: Callable[[EdgeNode], SimulatorConfig]) -> Component:
    """Runs the simulator on a thread until stopped (after the agent is up: it needs the URL)."""

    async def start(node: EdgeNode) -> Callable[[], Awaitable[None]]:
        stop_event = threading.Event()
        sim_config = make_config(node)

        def run() -> None:
            try:
                simulate(sim_config, stop_event)
            except Exception:  # the demo keeps serving; the summary shows the intake stopped
                log.exception("simulator stopped")

        thread = threading.Thread(target=run, name="simulator", daemon=True)
        thread.start()

        async def stop() -> None:
            stop_event.set()
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 35.0)

        return stop

    return start


def banner_component(config: Config, how: str) -> Component:
    async def start(node: EdgeNode) -> Callable[[], Awaitable[None]]:
        db = config.kubeedge.database
        q = "SELECT last(temperature), last(counter) FROM device_data GROUP BY device"
        print(f"edgets run: edge agent at {node.url} (data in {config.storage.data_dir}); {how}\n"
              f"  query:  .venv/bin/edgets query --url {node.url} --db {db} '{q}'\n"
              f"  curl:   curl -sG '{node.url}/query' --data-urlencode 'db={db}' "
              f"--data-urlencode 'q={q}'\n"
              f"  health: curl -s {node.url}/health\n"
              "  Ctrl-C stops everything.", flush=True)

        async def stop() -> None:
            return None

        return stop

    return start


def run_demo(config: Config, devices: int = 10, rate_hz: float = 1.0,
             summary_interval_s: float = 3.0, bind_given: bool = False) -> int:
    host, port = split_bind(config.http.bind)
    if port and not port_is_free(host, port):
        if bind_given:
            print(f"edgets run: {host}:{port} is in use", flush=True)
            return 1
        print(f"edgets run: {host}:{port} is in use, picking a free port", flush=True)
        config.http.bind = f"{host}:0"
    with tempfile.TemporaryDirectory(prefix="edgets-run-") as tmp:
        workdir = Path(tmp)
        before: list[Component] = []
        executable = find_mosquitto()
        broker: ChildBroker | None = None
        if executable:
            broker = ChildBroker(executable, workdir)
            try:
                broker.start()
            except (RuntimeError, OSError) as exc:
                print(f"edgets run: cannot start mosquitto ({exc}); feeding over HTTP", flush=True)
                broker = None
        if broker is not None:
            before.append(broker_component(broker))
            config.mqtt.enabled = True
            config.mqtt.broker = f"tcp://127.0.0.1:{broker.port}"
            config.mqtt.client_id = f"edgets-run-{os.getpid()}"
            datamodel_filter = DATAMODEL_TOPIC.split("{")[0] + "#"
            if datamodel_filter not in config.mqtt.datamodel_topics:
                config.mqtt.datamodel_topics = [*config.mqtt.datamodel_topics, datamodel_filter]
            formats: tuple[str, ...] = ("text", "json", "twin")
            how = (f"{devices} simulated devices publish through Mosquitto on "
                   f"127.0.0.1:{broker.port} (text, DataModel JSON, twin updates)")
        else:
            config.mqtt.enabled = False
            formats = ("http", "influx")
            how = f"{devices} simulated devices push over HTTP (form push + influxdb2 lines)"
        if not config.devices.dir:
            write_device_yaml(workdir / "devices", devices, mqtt_address=config.mqtt.broker)
            config.devices.dir = str(workdir / "devices")
        try:
            state = agent_state(config)
        except (ValueError, OSError) as exc:
            if broker is not None:
                broker.stop()
            print(f"edgets run: configuration error: {exc}", flush=True)
            return 2

        def sim_config(node: EdgeNode) -> SimulatorConfig:
            return SimulatorConfig(
                devices=devices, rate_hz=rate_hz, duration_s=None, formats=formats,
                mqtt_host="127.0.0.1", mqtt_port=broker.port if broker else 1883, qos=1,
                http_url=node.url, influx_bucket=config.kubeedge.database,
                seed=os.getpid())

        after = [simulator_component(sim_config), banner_component(config, how)]
        try:
            run_until_complete(run_agent(config, summary_interval_s, before=before, after=after,
                                         state=state))
        finally:
            if broker is not None:
                broker.stop()
    return 0
