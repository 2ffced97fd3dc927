"""kill -9 of `edgets agent` while a mapper publishes QoS 1: every message the broker accepted is
stored exactly once (PUBACK only after the WAL fsync; redeliveries land on the same point)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.mosquitto_fixture import mosquitto_broker
from tests.server_process import ServerProcess
from tests.test_agent_e2e import (
    Publisher,
    check,
    health,
    read_tables,
    wait_subscribed,
    write_agent_config,
)
from tests.waiting import wait_until

KILLS = 10
BASE_NS = 1_714_557_600 * 1_000_000_000


def stored_so_far(url: str) -> int:
    try:
        return int(check(health(url), "mqtt")["topics"].get("lp/kill9", {}).get("stored", 0))
    except OSError:
        return 0


def stored_count(url: str) -> int:
    query = urllib.parse.urlencode({"db": "edge", "q": "SELECT count(seq) FROM k9"})
    with urllib.request.urlopen(f"{url}/query?{query}", timeout=30) as resp:
        series = json.loads(resp.read())["results"][0].get("series") or [{"values": [[0, 0]]}]
    return int(series[0]["values"][0][1])


def test_kill9_during_qos1_stream_stores_every_acked_message_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with mosquitto_broker(tmp_path / "broker") as broker:
        conf = write_agent_config(tmp_path, broker, client_id="edgets-kill9",
                                  receive_maximum=50)
        data = tmp_path / "data"
        agent = ServerProcess(data, "-c", str(conf), command="agent").start()
        pub = Publisher(broker, "kill9-publisher")
        wait_subscribed(agent.url, pub)
        stop = threading.Event()
        published: list[int] = []

        def stream() -> None:
            i = 0
            while not stop.is_set():
                pub.publish("lp/kill9", f"k9,src=pub seq={i}i {BASE_NS + i}".encode(), key=i)
                published.append(i)
                i += 1
                stop.wait(0.002)

        thread = threading.Thread(target=stream)
        thread.start()
        try:
            for _ in range(KILLS):
                # Kill while messages are in flight: after this run stored some.
                wait_until(lambda url=agent.url: stored_so_far(url) >= 20, 30,
                           "the agent storing messages")
                agent.kill()
                agent = ServerProcess(data, "-c", str(conf), command="agent").start()
            stop.set()
            thread.join(10)
            wait_until(lambda: pub.acked_count() == len(published), 30, "PUBACKs for every message")
            acked = set(pub.acked)

            try:
                wait_until(lambda: stored_count(agent.url) >= len(acked), 30,
                           "the broker's queue for the agent drained into storage")
            except AssertionError as exc:
                mq = check(health(agent.url), "mqtt")
                raise AssertionError(f"{exc}: {stored_count(agent.url)} stored, {len(acked)} "
                                     f"acked; agent mqtt status {mq}") from None
        finally:
            stop.set()
            thread.join(10)
            pub.close()
            assert agent.stop() == 0
    seqs = [r["seq"] for r in read_tables(data)["k9"].to_pylist()]
    assert len(seqs) == len(set(seqs)), "a message was stored twice"
    assert acked <= set(seqs), f"lost {len(acked - set(seqs))} acked messages"
    assert set(seqs) <= set(published)
    assert len(acked) > KILLS * 20
    assert time.monotonic() - started < 90
