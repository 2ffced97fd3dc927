"""MQTT ingestion of KubeEdge device data: persistent-session subscriber that PUBACKs a message
only after the storage write holding its points is durable.

Why paho directly (on its own network thread) and not aiomqtt: aiomqtt hides paho's manual
acknowledgements, and the whole point here is to withhold PUBACK until the write future
completes. paho 2.x gives `manual_ack_set(True)` + `ack(mid, qos)`, reconnects forever on its
loop thread (`loop_start` retries even the first connection), and its `ack` is thread-safe
(packets go through its locked out-queue). The decode runs on the network thread (tiny
payloads); writes are submitted by one writer thread so a blocked or slow storage never stalls
keep-alives. PUBACKs are sent by one acker thread that holds none of our locks: paho runs
on_message under its callback mutex, which `ack()` may take too, so acking under our lock
(or from a storage callback) could deadlock.

Flow control: MQTT v5 with `clean_start=False` + session expiry, and a Receive Maximum: the
broker sends at most that many un-acked QoS 1 messages. While storage is Overloaded we hold the
acks, so the broker stops delivering and keeps the rest queued in the session. PUBACKs are sent
in arrival order. A redelivery (DUP) of a message we are still writing, or acked just before a
disconnect, is not written twice.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.kubeedge_payloads import DecodeCounts, PayloadConfig, PayloadError, decode_mqtt
from storage.batch import Batch

log = logging.getLogger(__name__)

WriteFn = Callable[[str, list[Batch]], Future]


@dataclass(slots=True)
class TopicStats:
    received: int = 0
    stored: int = 0
    malformed: int = 0
    rejected: int = 0  # storage refused the data for good (ValueError/TypeError)
    duplicates: int = 0  # redeliveries recognised and not written again
    dropped: int = 0  # QoS 0 messages dropped because the queue was full
    bad_values: int = 0


@dataclass(slots=True)
class _Message:
    topic: str
    mid: int
    qos: int
    key: tuple[int, str, int]  # (mid, topic, crc32 of payload): recognises a redelivery
    batches: list[Batch]
    done: bool = False
    ack_needed: bool = True


@dataclass(slots=True)
class MqttIngestConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "edgets-ingest"  # fixed: the broker keeps our session under this id
    topics: tuple[str, ...] = ("$hw/events/device/+/+/twin/update",)
    database: str = "kubeedge"
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 100  # un-acked QoS 1 messages the broker may send us
    overload_retry_max_s: float = 1.0  # longest wait before re-trying a write storage refused
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_batch_messages: int = 256  # messages coalesced into one storage submit
    queue_limit: int = 10_000  # bounds QoS 0 backlog (QoS 1 is bounded by receive_maximum)
    transient_retry_s: float = 1.0  # retry delay after a non-Overloaded storage failure
    payloads: PayloadConfig = field(default_factory=PayloadConfig)
    decode: Callable[..., list[Batch]] = decode_mqtt  # (topic, payload, payloads, now_ns, counts)


class MqttIngest:
    """Subscribe, decode, write, then ack. start()/stop() are idempotent; stats() is cheap."""

    def __init__(self, config: MqttIngestConfig, write: WriteFn) -> None:
        self._config = config
        self._write = write
        self._lock = threading.Condition()
        self._stats: dict[str, TopicStats] = collections.defaultdict(TopicStats)
        self._queue: collections.deque[_Message] = collections.deque()  # decoded, not written
        self._order: collections.deque[_Message] = collections.deque()  # arrival order for acks
        self._acks: collections.deque[tuple[int, int]] = collections.deque()  # (mid, qos) to send
        self._in_flight: dict[tuple[int, str, int], _Message] = {}
        self._recent_acked: collections.OrderedDict[tuple[int, str, int], None] = (
            collections.OrderedDict()
        )
        self._connected = False
        self._last_error: str | None = None
        self._stopping = False
        self._accepting = True
        self._window_cap = max(2 * config.receive_maximum, 64)  # un-acked messages held here
        self._writer: threading.Thread | None = None
        self._acker: threading.Thread | None = None
        self._client = self._make_client()

    # -------------------------------------------------------------- lifecycle

    def _make_client(self) -> mqtt.Client:
        cfg = self._config
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5,
        )
        client.manual_ack_set(True)
        # Backoff doubles from min to max and resets after a CONNACK (floats work in paho 2.2).
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        return client

    def start(self) -> None:
        if self._writer is not None:
            return
        cfg = self._config
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = cfg.session_expiry_s
        props.ReceiveMaximum = cfg.receive_maximum
        self._client.connect_async(
            cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=False, properties=props
        )
        self._writer = threading.Thread(target=self._write_loop, name="mqtt-ingest-writer",
                                        daemon=True)
        self._writer.start()
        self._acker = threading.Thread(target=self._ack_loop, name="mqtt-ingest-acker",
                                       daemon=True)
        self._acker.start()
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking messages, give in-flight writes `timeout` s to complete and be acked,
        then disconnect. Anything not acked by then is redelivered by the broker later."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._accepting = False
            while (self._order or self._queue or self._acks) and self._connected:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            self._stopping = True
            self._lock.notify_all()
        if self._acker is not None:
            self._acker.join(max(0.0, deadline - time.monotonic()) + 1.0)
        self._client.disconnect()  # queued after the PUBACKs handed to paho: they go first
        self._client.loop_stop()
        if self._writer is not None:
            self._writer.join(max(0.0, deadline - time.monotonic()) + 1.0)

    def stats(self) -> dict:
        with self._lock:
            return {
                "connected": self._connected,
                "last_error": self._last_error,
                "queued": len(self._queue),
                "unacked": len(self._order),
                "topics": {t: _as_dict(s) for t, s in self._stats.items()},
            }

    # -------------------------------------------------------------- paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, _userdata: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, _props: Properties | None) -> None:
        if reason.is_failure:
            with self._lock:
                self._last_error = f"connect refused: {reason}"
            return
        with self._lock:
            self._connected = True
            if not flags.session_present:
                # The broker lost our session: it will not redeliver, old packet ids are void.
                for message in self._order:
                    message.ack_needed = False
                self._recent_acked.clear()
            self._lock.notify_all()
        client.subscribe([(t, 1) for t in self._config.topics])
        log.info("mqtt connected to %s:%d (session present: %s)", self._config.host,
                 self._config.port, flags.session_present)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object,
                       reason: mqtt.ReasonCode, _props: Properties | None) -> None:
        with self._lock:
            self._connected = False
            if reason.is_failure:
                self._last_error = f"disconnected: {reason}"
            self._lock.notify_all()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        with self._lock:
            self._last_error = f"cannot connect to {self._config.host}:{self._config.port}"

    def _on_message(self, client: mqtt.Client, _userdata: object,
                    msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        payload = msg.payload
        key = (msg.mid, topic, zlib.crc32(payload))
        with self._lock:
            # Hard bound on the un-acked window, whatever the broker does with Receive Maximum
            # (Mosquitto 2.0.11 was seen sending thousands): this network thread waits, paho
            # stops reading the socket, and TCP back-pressure keeps the rest at the broker.
            while (msg.qos > 0 and len(self._order) >= self._window_cap
                   and self._accepting and not self._stopping):
                self._lock.wait(0.5)
            if not self._accepting:
                return  # not acked: the broker redelivers to our next session
            stats = self._stats[topic]
            if msg.qos > 0 and msg.dup:
                if key in self._in_flight:
                    stats.duplicates += 1
                    return
                if key in self._recent_acked:  # our PUBACK was lost in a disconnect
                    stats.duplicates += 1
                    self._acks.append((msg.mid, msg.qos))
                    self._lock.notify_all()
                    return
            stats.received += 1
            if msg.qos == 0 and len(self._queue) >= self._config.queue_limit:
                stats.dropped += 1
                return
        counts = DecodeCounts()
        try:
            batches = self._config.decode(topic, payload, self._config.payloads, time.time_ns(),
                                          counts)
        except PayloadError as exc:
            log.warning("malformed payload on %s: %s; excerpt %r", topic, exc.reason,
                        exc.excerpt)
            batches = None
        except Exception as exc:  # a decoder bug must not stop ingestion of other topics
            log.exception("decoder failed on %s; excerpt %r", topic, payload[:200])
            batches = None
            with self._lock:
                self._last_error = f"decoder error on {topic}: {exc!r}"
        message = _Message(topic, msg.mid, msg.qos, key, batches or [])
        with self._lock:
            stats.bad_values += counts.bad_values
            self._order.append(message)
            if msg.qos > 0:
                self._in_flight[key] = message
            if batches is None:
                stats.malformed += 1
                self._finish_locked(message)
            elif not batches:  # nothing storable (STREAM only, expected-only twin)
                self._finish_locked(message)
            else:
                self._queue.append(message)
                self._lock.notify_all()

    # -------------------------------------------------------------- writer thread

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                group = [self._queue.popleft()
                         for _ in range(min(len(self._queue), self._config.max_batch_messages))]
            self._write_group(group)

    def _write_group(self, group: list[_Message]) -> None:
        batches = [b for m in group for b in m.batches]
        while True:
            try:
                future = self._write(self._config.database, batches)
            except Exception as exc:  # noqa: BLE001 - classified below
                if not self._retry_after(exc, group):
                    return
                continue
            future.add_done_callback(lambda f, g=group: self._write_done(f, g))
            return

    def _retry_after(self, exc: BaseException, group: list[_Message]) -> bool:
        """Wait before retrying `group`; False if the write is refused for good or stopping."""
        if isinstance(exc, ValueError | TypeError) and type(exc).__name__ != "Overloaded":
            log.error("storage rejected %d messages: %s", len(group), exc)
            with self._lock:
                self._last_error = f"storage rejected data: {exc}"
                for message in group:
                    self._stats[message.topic].rejected += 1
                    self._finish_locked(message)
            return False
        if type(exc).__name__ == "Overloaded":  # Retry-After is for remote clients; poll sooner
            delay = min(float(getattr(exc, "retry_after", 1.0) or 1.0), self._config.overload_retry_max_s)
        else:
            delay = self._config.transient_retry_s
            log.warning("storage write failed (%s), retrying in %.1fs", exc, delay)
        with self._lock:
            self._last_error = f"storage: {type(exc).__name__}: {exc}"
            end = time.monotonic() + delay
            while not self._stopping:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            return not self._stopping

    def _ack_loop(self) -> None:
        """Hand PUBACKs to paho in arrival order, outside our lock (see module docstring)."""
        while True:
            with self._lock:
                while not self._acks and not self._stopping:
                    self._lock.wait()
                if not self._acks:
                    return
                acks = list(self._acks)
                self._acks.clear()
            for mid, qos in acks:
                self._client.ack(mid, qos)
            with self._lock:
                self._lock.notify_all()

    def _write_done(self, future: Future, group: list[_Message]) -> None:
        exc = future.exception()
        if exc is None:
            with self._lock:
                for message in group:
                    self._stats[message.topic].stored += 1
                    self._finish_locked(message)
            return
        # Failed asynchronously: retry the group from a fresh thread (never block the
        # storage thread that completed the future).
        def retry() -> None:
            if self._retry_after(exc, group):
                self._write_group(group)
        threading.Thread(target=retry, name="mqtt-ingest-retry", daemon=True).start()

    def _finish_locked(self, message: _Message) -> None:
        """Mark done; send PUBACKs for the done prefix of the arrival order."""
        message.done = True
        while self._order and self._order[0].done:
            head = self._order.popleft()
            self._in_flight.pop(head.key, None)
            if head.qos > 0 and head.ack_needed:
                self._acks.append((head.mid, head.qos))
                self._recent_acked[head.key] = None
                if len(self._recent_acked) > 4 * self._config.receive_maximum:
                    self._recent_acked.popitem(last=False)
        self._lock.notify_all()


def _as_dict(stats: TopicStats) -> dict[str, int]:
    return {name: getattr(stats, name) for name in TopicStats.__slots__}


def topic_summary(stats: dict, names: Iterable[str] = ("received", "stored", "malformed")) -> dict:
    """Totals over all topics of a stats() result."""
    totals = dict.fromkeys(names, 0)
    for per_topic in stats["topics"].values():
        for name in names:
            totals[name] += per_topic[name]
    return totals
