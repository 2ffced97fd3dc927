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

Connection security: `broker_settings` turns the [mqtt] options (broker URL scheme, username,
password/password_file, tls_*) into a checked `BrokerSecurity` at agent start (ValueError naming
the option). A refused CONNACK or a TLS failure is logged, kept in stats()["connect_error"] and
retried with the same backoff; it never stops the agent.
"""

from __future__ import annotations

import collections
import logging
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.kubeedge_payloads import DecodeCounts, PayloadConfig, PayloadError, decode_mqtt
from storage.batch import Batch

if TYPE_CHECKING:
    from edge_agent.config import MqttSection

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


PLAIN_SCHEMES = {"tcp": 1883, "mqtt": 1883}  # scheme -> default port
TLS_SCHEMES = {"ssl": 8883, "mqtts": 8883}
AUTH_REASON_CODES = {4, 5, 134, 135}  # MQTT 3.1.1 CONNACK 4/5, MQTT 5 0x86/0x87


@dataclass(frozen=True, slots=True)
class BrokerSecurity:
    """TLS and credentials for the broker connection; empty strings mean 'not used'."""

    tls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""  # with tls and empty: the system CA store
    cert_file: str = ""  # client certificate (with key_file)
    key_file: str = ""
    insecure: bool = False  # skip the host name check (the chain is still verified)


def parse_broker(address: str) -> tuple[str, int, bool]:
    """`tcp://`, `mqtt://` (plain, port 1883), `ssl://`, `mqtts://` (TLS, 8883) or bare
    `host:port` (plain) -> (host, port, tls). ValueError naming mqtt.broker otherwise."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    schemes = {**PLAIN_SCHEMES, **TLS_SCHEMES}
    if parts.scheme not in schemes:
        raise ValueError(f"mqtt.broker {address!r}: unknown scheme {parts.scheme!r} "
                         f"(use {', '.join(s + '://' for s in schemes)})")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"mqtt.broker {parts.scheme}://...@{parts.hostname}: put credentials in "
                         "mqtt.username and mqtt.password / mqtt.password_file, not in the address")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"mqtt.broker must be {parts.scheme}://host:port, got {address!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"mqtt.broker {address!r}: {exc}") from exc
    return parts.hostname, port or schemes[parts.scheme], parts.scheme in TLS_SCHEMES


def read_password_file(path: str) -> str:
    """The file's content without its trailing newline; ValueError naming mqtt.password_file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"mqtt.password_file: cannot read {path}: {exc}") from exc
    password = text.rstrip("\r\n")
    if not password:
        raise ValueError(f"mqtt.password_file: {path} is empty")
    return password


def broker_settings(section: MqttSection) -> tuple[str, int, BrokerSecurity]:
    """Check the [mqtt] connection options together -> (host, port, security). Files are read
    and the TLS material loaded once here so a mistake fails at start, naming the option."""
    host, port, tls = parse_broker(section.broker)
    if section.password and section.password_file:
        raise ValueError("set either mqtt.password or mqtt.password_file, not both")
    password = read_password_file(section.password_file) if section.password_file else section.password
    if password and not section.username:
        raise ValueError("mqtt.password / mqtt.password_file is set but mqtt.username is empty")
    tls_options = {"tls_ca": section.tls_ca, "tls_cert": section.tls_cert,
                   "tls_key": section.tls_key, "tls_insecure": section.tls_insecure}
    given = [name for name, value in tls_options.items() if value]
    if given and not tls:
        raise ValueError(f"mqtt.{given[0]} is set but mqtt.broker {section.broker!r} is not TLS "
                         "(use ssl://host:port or mqtts://host:port)")
    if bool(section.tls_cert) != bool(section.tls_key):
        have, missing = ("tls_cert", "tls_key") if section.tls_cert else ("tls_key", "tls_cert")
        raise ValueError(f"mqtt.{have} is set without mqtt.{missing}: a client certificate "
                         "needs both")
    if tls:
        _check_tls_files(section.tls_ca, section.tls_cert, section.tls_key)
    security = BrokerSecurity(tls=tls, username=section.username, password=password,
                              ca_file=section.tls_ca, cert_file=section.tls_cert,
                              key_file=section.tls_key, insecure=section.tls_insecure)
    return host, port, security


def _check_tls_files(ca_file: str, cert_file: str, key_file: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ValueError(f"mqtt.tls_ca: cannot load CA bundle {ca_file}: {exc}") from exc
    if cert_file:
        for option, path in (("tls_cert", cert_file), ("tls_key", key_file)):
            try:
                Path(path).read_bytes()
            except OSError as exc:
                raise ValueError(f"mqtt.{option}: cannot read {path}: {exc}") from exc
        try:
            context.load_cert_chain(cert_file, key_file, password=_refuse_key_password)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"mqtt.tls_cert/mqtt.tls_key: {cert_file} with {key_file} is not a "
                             f"PEM certificate and its unencrypted private key: {exc}") from exc


def _refuse_key_password() -> str:
    raise ValueError("the private key is encrypted (not supported: store it unencrypted, "
                     "readable by the agent only)")


@dataclass(slots=True)
class MqttIngestConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    security: BrokerSecurity = field(default_factory=BrokerSecurity)
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
        self._connect_error: str | None = None  # the current connection problem (None once up)
        self._previous_connect_error: str | None = None
        self._connect_failures = 0
        self._refused = False  # this attempt got a refusing CONNACK (its disconnect says less)
        self._socket_error: str | None = None  # paho's last socket/TLS error log line
        scheme = "ssl" if config.security.tls else "tcp"
        self._address = f"{scheme}://{config.host}:{config.port}"
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
        security = cfg.security
        if security.username:
            client.username_pw_set(security.username, security.password or None)
        if security.tls:
            try:
                client.tls_set(ca_certs=security.ca_file or None,
                               certfile=security.cert_file or None,
                               keyfile=security.key_file or None)
            except (OSError, ValueError) as exc:
                raise ValueError(f"mqtt TLS setup for {self._address} failed (tls_ca "
                                 f"{security.ca_file!r}, tls_cert {security.cert_file!r}): {exc}") from exc
            client.tls_insecure_set(security.insecure)
        # Backoff doubles from min to max and resets after a CONNACK (floats work in paho 2.2).
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        client.on_log = self._on_log
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
                "connect_error": self._connect_error,
                "previous_connect_error": self._previous_connect_error,
                "connect_failures": self._connect_failures,
                "queued": len(self._queue),
                "unacked": len(self._order),
                "topics": {t: _as_dict(s) for t, s in self._stats.items()},
            }

    # -------------------------------------------------------------- paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, _userdata: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, _props: Properties | None) -> None:
        if reason.is_failure:
            hint = ""
            if reason.value in AUTH_REASON_CODES:
                hint = "; check mqtt.username and mqtt.password / mqtt.password_file"
            self._connect_failed(f"{self._address} refused the connection: {reason} "
                                 f"(reason code {reason.value}){hint}", refused=True)
            return
        with self._lock:
            self._connected = True
            if self._connect_error is not None:
                self._previous_connect_error = self._connect_error
                self._connect_error = None
            self._socket_error = None
            if not flags.session_present:
                # The broker lost our session: it will not redeliver, old packet ids are void.
                for message in self._order:
                    message.ack_needed = False
                self._recent_acked.clear()
            self._lock.notify_all()
        client.subscribe([(t, 1) for t in self._config.topics])
        log.info("mqtt connected to %s (session present: %s)", self._address,
                 flags.session_present)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object,
                       reason: mqtt.ReasonCode, _props: Properties | None) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
            refused, self._refused = self._refused, False
            detail = self._socket_error or str(reason)
            self._socket_error = None
            if was_connected and reason.is_failure:
                self._last_error = f"disconnected from {self._address}: {detail}"
            self._lock.notify_all()
        if was_connected and reason.is_failure:
            if self._stopping:  # our own shutdown: not a problem worth a warning
                log.info("mqtt connection to %s closed at shutdown: %s", self._address, detail)
            else:
                log.warning("mqtt connection to %s lost: %s", self._address, detail)
        elif not was_connected and not refused and not self._stopping:
            # Closed before a CONNACK: e.g. the broker wanted a client certificate (TLS 1.3
            # reports that after the handshake) or dropped us on a protocol error.
            self._connect_failed(f"{self._address} closed the connection before accepting "
                                 f"it: {detail}")

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        # paho calls this inside its `except OSError` around the connect: the error is current.
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError):
            what = f"TLS handshake with {self._address} failed: {exc}"
        elif exc is not None:
            what = f"cannot connect to {self._address}: {exc}"
        else:
            what = f"cannot connect to {self._address}"
        self._connect_failed(what)

    def _on_log(self, _client: mqtt.Client, _userdata: object, level: int, text: str) -> None:
        """Keep paho's socket-level error text (e.g. a TLS alert) for the disconnect report."""
        if level == mqtt.MQTT_LOG_ERR and text.startswith("failed to"):
            with self._lock:
                self._socket_error = text

    def _connect_failed(self, what: str, refused: bool = False) -> None:
        """Record a failed connection attempt; paho retries it with the reconnect backoff."""
        with self._lock:
            repeated = what == self._connect_error
            self._connect_error = self._last_error = what
            self._connect_failures += 1
            self._refused = refused
            failures = self._connect_failures
        if repeated:
            log.debug("mqtt: %s (attempt %d, retrying)", what, failures)
        else:
            log.error("mqtt: %s; retrying (backoff up to %gs)", what,
                      self._config.reconnect_max_s)

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
