"""`edgets agent`: one process hosting the HTTP API, KubeEdge MQTT ingestion and HTTP push routes
(the sync daemon plugs in as one more component); per-input status in /health; summary line."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from edge_agent.config import Config
from edge_agent.edge_node import AppSetup, Component, EdgeNode, run_edge_node
from edge_agent.http_app import HEALTH_KEY
from edge_agent.mqtt_ingest import MqttIngest, MqttIngestConfig, broker_settings, topic_summary
from ingest.device_models import DeviceRegistry, load_device_dir, parse_property_type
from ingest.http_push import HttpPushReceiver, InfluxStringCoercion, influx_field_types
from ingest.http_write import ENGINE_KEY
from ingest.kubeedge_payloads import (
    DecodeCounts,
    HttpPath,
    PayloadConfig,
    PayloadError,
    TextTopic,
    decode_mqtt,
    topic_matches,
)
from ingest.lineproto import parse_lines
from storage.batch import Batch
from storage.engine import StorageEngine
from storage.fsio import tree_bytes

log = logging.getLogger("edgets.agent")


@dataclass
class AgentState:
    """What the agent's components share: the inputs (for /health and the summary line)."""

    config: Config
    payloads: PayloadConfig
    topics: tuple[str, ...]
    mqtt: MqttIngest | None = None
    push: HttpPushReceiver | None = None
    coercion: InfluxStringCoercion | None = None
    engine: StorageEngine | None = None
    started: float = field(default_factory=time.monotonic)


# ---------------------------------------------------------------------------- configuration


def load_registry(config: Config) -> DeviceRegistry | None:
    return load_device_dir(config.devices.dir) if config.devices.dir else None


def text_topic(topic: str, spec: str) -> TextTopic:
    """mqtt.text_topics entry `measurement.field` or `measurement.field:TYPE`."""
    target, _, type_name = spec.partition(":")
    measurement, dot, field_name = target.rpartition(".")
    if not dot or not measurement or not field_name:
        raise ValueError(f"mqtt.text_topics[{topic!r}] = {spec!r}: expected measurement.field[:TYPE]")
    ptype = parse_property_type(type_name) if type_name else None
    return TextTopic(measurement=measurement, field=field_name, type=ptype)


def payload_config(config: Config, registry: DeviceRegistry | None) -> PayloadConfig:
    """Decoder settings from [kubeedge], [mqtt] and the Device YAML (YAML adds topics/paths)."""
    ke = config.kubeedge
    if ke.twin_layout not in ("by_type", "value") or ke.on_bad_value not in ("raw", "reject"):
        raise ValueError("kubeedge.twin_layout must be by_type|value and on_bad_value raw|reject")
    text_topics: dict[str, TextTopic] = {}
    http_paths: dict[str, HttpPath] = {}
    if registry is not None:
        for topic, (device, prop) in registry.mqtt_topics().items():
            text_topics[topic] = TextTopic(
                measurement=ke.datamodel_measurement, field=prop.name, type=prop.type,
                namespace=device.namespace, device=device.name, property=prop.name)
        for path, (device, _prop) in registry.http_paths().items():
            http_paths[path] = HttpPath(device.name, device.namespace, ke.http_measurement)
    for topic, spec in config.mqtt.text_topics.items():
        text_topics[topic] = text_topic(topic, str(spec))
    for path, spec in config.kubeedge.http_paths.items():
        namespace, _, device = str(spec).rpartition("/")
        http_paths[path] = HttpPath(device, namespace or ke.default_namespace, ke.http_measurement)
    return PayloadConfig(
        timezone=ke.timezone, text_topics=text_topics, http_paths=http_paths,
        datamodel_topics=tuple(config.mqtt.datamodel_topics),
        datamodel_measurement=ke.datamodel_measurement, twin_measurement=ke.twin_measurement,
        twin_layout=ke.twin_layout,  # type: ignore[arg-type]
        on_bad_value=ke.on_bad_value,  # type: ignore[arg-type]
        default_namespace=ke.default_namespace, models=registry,
    )


def subscriptions(config: Config, payloads: PayloadConfig) -> tuple[str, ...]:
    """Twin topics, text topics (config + Device YAML), DataModel and line protocol filters."""
    topics = [*config.mqtt.twin_topics, *sorted(payloads.text_topics),
              *config.mqtt.datamodel_topics, *config.mqtt.lineprotocol_topics]
    return tuple(dict.fromkeys(t for t in topics if t))


def mqtt_decoder(lineprotocol_topics: list[str], precision: str) -> Callable[..., list[Batch]]:
    """decode_mqtt, plus InfluxDB line protocol on the configured topic filters."""
    filters = tuple(lineprotocol_topics)

    def decode(topic: str, payload: bytes, payloads: PayloadConfig, received_ns: int,
               counts: DecodeCounts | None = None) -> list[Batch]:
        if filters and any(topic_matches(f, topic) for f in filters):
            result = parse_lines(payload, precision, received_ns)
            if result.points == 0:
                reason = result.errors[0].message() if result.errors else "no line protocol points"
                raise PayloadError(topic, payload, reason)
            if counts is not None:
                counts.bad_values += len(result.errors)
                counts.points += result.points
            return list(result.batches.values())
        return decode_mqtt(topic, payload, payloads, received_ns, counts)

    return decode


def mqtt_ingest_config(config: Config, state: AgentState) -> MqttIngestConfig:
    m = config.mqtt
    host, port, security = broker_settings(m)
    return MqttIngestConfig(
        host=host, port=port, security=security, client_id=m.client_id, topics=state.topics,
        database=config.kubeedge.database, session_expiry_s=int(m.session_expiry),
        receive_maximum=m.receive_maximum, keepalive_s=max(1, int(m.keepalive)),
        reconnect_max_s=m.reconnect_max, max_batch_messages=m.max_batch_messages,
        payloads=state.payloads,
        decode=mqtt_decoder(list(m.lineprotocol_topics), m.lineprotocol_precision),
    )


# ---------------------------------------------------------------------------- components


def agent_app_setup(state: AgentState) -> AppSetup:
    """Before the server starts: the KubeEdge database, HTTP push routes, coercion, health."""

    def setup(app: web.Application, engine: StorageEngine) -> None:
        config = state.config
        state.engine = engine
        if not engine.has_database(config.kubeedge.database):
            engine.create_database(config.kubeedge.database)
        state.push = HttpPushReceiver(engine, state.payloads, config.kubeedge.database,
                                      config.http.max_body_size)
        state.push.add_routes(app)
        if config.kubeedge.coerce_influx_strings and config.devices.dir and state.payloads.models:
            types = influx_field_types(config.devices.dir, state.payloads.models)
            state.coercion = InfluxStringCoercion(engine, config.kubeedge.database, types,
                                                  config.kubeedge.on_bad_value)
            app[ENGINE_KEY] = state.coercion  # type: ignore[assignment]
        app[HEALTH_KEY].append(lambda: mqtt_health(state))
        app[HEALTH_KEY].append(lambda: push_health(state))

    return setup


def mqtt_component(state: AgentState) -> Component:
    async def start(node: EdgeNode) -> Callable[[], Awaitable[None]]:
        ingest = MqttIngest(mqtt_ingest_config(state.config, state), node.engine.submit)
        state.mqtt = ingest
        ingest.start()  # non-blocking: paho connects (and keeps retrying) on its own thread
        log.info("mqtt ingest: %s, %d subscriptions into database %r", state.config.mqtt.broker,
                 len(state.topics), state.config.kubeedge.database)

        async def stop() -> None:
            # Stop intake: no new messages are taken; in-flight writes finish and are acked.
            await asyncio.get_running_loop().run_in_executor(None, ingest.stop, 5.0)

        return stop

    return start


def summary_component(state: AgentState, interval_s: float,
                      emit: Callable[[str], None] = print) -> Component:
    async def start(node: EdgeNode) -> Callable[[], Awaitable[None]]:
        async def loop() -> None:
            previous = (time.monotonic(), int(node.engine.stats().get("points_written", 0)))
            while True:
                await asyncio.sleep(interval_s)
                line, previous = summary_line(state, node.engine, previous, node.app[HEALTH_KEY])
                emit(line)

        task = asyncio.create_task(loop())

        async def stop() -> None:
            task.cancel()

        return stop

    return start


# ---------------------------------------------------------------------------- status


def mqtt_health(state: AgentState) -> dict:
    if state.mqtt is None:
        enabled = state.config.mqtt.enabled
        return {"name": "mqtt", "status": "fail" if enabled else "pass",
                "message": "starting" if enabled else "disabled"}
    stats = state.mqtt.stats()
    return {
        "name": "mqtt", "status": "pass" if stats["connected"] else "fail",
        "broker": state.config.mqtt.broker, "connected": stats["connected"],
        "last_error": stats["last_error"], "connect_error": stats["connect_error"],
        "previous_connect_error": stats["previous_connect_error"],
        "connect_failures": stats["connect_failures"], "queued": stats["queued"], "unacked": stats["unacked"],
        "subscriptions": len(state.topics),
        "totals": topic_summary(stats, ("received", "stored", "malformed", "rejected",
                                        "duplicates", "dropped", "bad_values")),
        "topics": stats["topics"],
    }


def push_health(state: AgentState) -> dict:
    paths = state.push.snapshot() if state.push else {}
    totals: dict[str, int] = {}
    for per_path in paths.values():
        for name, value in per_path.items():
            totals[name] = totals.get(name, 0) + value
    body = {"name": "http_push", "status": "pass", "routes": len(state.payloads.http_paths),
            "totals": totals, "paths": paths}
    if state.coercion is not None:
        body["influx_coercion"] = {"fields": len(state.coercion.types),
                                   "bad_values": state.coercion.bad_values}
    return body


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def summary_line(state: AgentState, engine: StorageEngine, previous: tuple[float, int],
                 health_checks: Sequence[Callable[[], dict]] = ()) -> tuple[str, tuple[float, int]]:
    """One status line: points/s, stored bytes, WAL and backlog bytes, MQTT, push and sync lag."""
    stats = engine.stats()
    now = time.monotonic()
    written = int(stats.get("points_written", 0))
    rate = (written - previous[1]) / max(1e-6, now - previous[0])
    stored = tree_bytes(Path(state.config.storage.data_dir))
    parts = [f"[{now - state.started:6.0f}s] {rate:8.0f} points/s", f"{written} points",
             f"stored {_human(stored)}", f"WAL {_human(stats.get('wal_bytes', 0))}",
             f"backlog {_human(stats.get('queue_bytes', 0))}"]
    malformed = 0
    if state.mqtt is not None:
        m = state.mqtt.stats()
        totals = topic_summary(m)
        malformed += totals["malformed"]
        parts.append(f"mqtt {'up' if m['connected'] else 'DOWN'} {totals['stored']} msgs"
                     f" ({m['unacked']} unacked)")
    if state.push is not None and state.push.stats:
        snap = state.push.snapshot()
        malformed += sum(s["malformed"] for s in snap.values())
        parts.append(f"http push {sum(s['stored'] for s in snap.values())}")
    parts.append(f"malformed {malformed}")
    for result in (check() for check in health_checks):  # a few checks, every few seconds
        if result.get("name") == "sync" and "lag_bytes" in result:
            parts.append(f"sync {'up' if result['connected'] else 'DOWN'} lag {_human(result['lag_bytes'])}"
                         f" / {result['lag_segments']} segs / {result['lag_seconds']:.0f} s of data")
    return " | ".join(parts), (now, written)


# ---------------------------------------------------------------------------- entry point


def agent_state(config: Config) -> AgentState:
    registry = load_registry(config)
    payloads = payload_config(config, registry)
    topics = subscriptions(config, payloads) if config.mqtt.enabled else ()
    if config.mqtt.enabled:
        broker_settings(config.mqtt)  # fail at start on a bad address/TLS/password option
    return AgentState(config=config, payloads=payloads, topics=topics)


async def run_agent(config: Config, summary_interval_s: float = 0.0,
                    before: list[Component] | None = None, after: list[Component] | None = None,
                    stop_event: asyncio.Event | None = None,
                    state: AgentState | None = None) -> AgentState:
    """Serve HTTP + MQTT + push until SIGTERM/SIGINT. `before` components start ahead of the
    MQTT ingest (e.g. a broker), `after` ones behind it (simulator; the sync daemon goes here:
    `after=[sync_component(...)]`). Stop runs in reverse: intake first, then flush and close."""
    state = state or agent_state(config)
    components: list[Component] = list(before or [])
    if config.mqtt.enabled:
        components.append(mqtt_component(state))
    components.extend(after or [])
    if summary_interval_s > 0:
        components.append(summary_component(state, summary_interval_s))
    await run_edge_node(config, components, stop_event, app_setup=[agent_app_setup(state)])
    return state
