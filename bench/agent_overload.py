"""The agent's MQTT window under overload: a flood arrives while a full disk budget blocks intake
(sync configured, cloud unreachable); prints the messages the agent holds un-acked each second.

Usage: python bench/agent_overload.py [--messages 4000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.influxdb_process import free_port  # noqa: E402
from tests.mosquitto_fixture import mosquitto_broker  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402
from tests.test_agent_e2e import Publisher, check, health, wait_subscribed  # noqa: E402


def agent_config(path: Path, broker_host: str, broker_port: int) -> Path:
    path.write_text("\n".join([
        "[storage]", 'disk_budget = "160KiB"', 'flush_size = "8KiB"', 'flush_age = "100ms"',
        "compaction = false", 'wal_file_size = "32KiB"',
        "[mqtt]", f'broker = "tcp://{broker_host}:{broker_port}"', 'client_id = "edgets-overload"',
        'lineprotocol_topics = ["lp/#"]', 'reconnect_max = "1s"', "receive_maximum = 20",
        "[kubeedge]", 'database = "edge"',
        "[sync]", f'url = "ws://127.0.0.1:{free_port()}"', 'node_id = "n"', 'token = "t"']) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--seconds", type=int, default=15)
    args = ap.parse_args()
    rng = np.random.default_rng(5)
    pads = [rng.bytes(100).hex() for _ in range(args.messages)]
    with tempfile.TemporaryDirectory() as tmp_name, mosquitto_broker(Path(tmp_name) / "broker") as broker:
        tmp = Path(tmp_name)
        conf = agent_config(tmp / "agent.toml", broker.host, broker.port)
        agent = ServerProcess(tmp / "data", "-c", str(conf), command="agent").start()
        try:
            pub = Publisher(broker, "overload-publisher")
            wait_subscribed(agent.url, pub)
            for i in range(args.messages):
                line = f'flood,device=d{i % 20} v={i}i,pad="{pads[i]}" {1714557600000000000 + i}'
                pub.publish("lp/flood", line.encode(), key=i)
            print("second  unacked  queued  stored  overloaded")
            for second in range(args.seconds):
                status = health(agent.url)
                mq, stats = check(status, "mqtt"), check(status, "storage")["stats"]
                print(f"{second:6d} {mq['unacked']:8d} {mq['queued']:7d} {mq['totals']['stored']:7d} "
                      f"{stats['overloaded']:11d}", flush=True)
                time.sleep(1)
            pub.close()
        finally:
            agent.stop()


if __name__ == "__main__":
    main()
