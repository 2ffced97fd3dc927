"""Configuration of every edgets process: defaults, TOML file, EDGETS_* environment, flags.

Each option is declared once (with its help text); the CLI's --help is generated from it.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from storage.namespaces import invalid_name

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class ConfigError(ValueError):
    """An option that does not parse; the message names the option and where it came from."""


def parse_size(text: str | int) -> int:
    """'256MiB' -> 268435456; plain integers are bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 25000000, 64MiB, 1GB)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_duration(text: str | int | float) -> float:
    """'30s' -> 30.0 seconds; '0' -> 0; plain numbers are seconds."""
    if isinstance(text, int | float):
        return float(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (examples: 500ms, 30s, 7d)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


def opt(default: Any, help: str, kind: str = "") -> Any:
    """Declare an option: default value, help text, and kind ('size', 'duration', '' = by type)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, "kind": kind})
    return field(default=default, metadata={"help": help, "kind": kind})


@dataclass
class StorageSection:
    data_dir: str = opt("./data", "Directory for the WAL, segments, catalog and quarantine.")
    fsync: str = opt(
        "always",
        "When a write is fsynced before it is acknowledged: 'always' (every acknowledged write "
        "survives power loss; group commit keeps it cheap), 'interval:<ms>' (acknowledge at once, "
        "fsync every <ms>: a power cut loses up to <ms>), 'never' (the OS decides; kill -9 safe, "
        "power loss is not).",
    )
    memory_budget: int = opt(256 * 2**20, "Memory for the in-memory write buffer; writes get 503/429 when full.", "size")
    write_queue: int = opt(32 * 2**20, "Bytes of writes waiting for the WAL's group commit before back-pressure.", "size")
    wal_file_size: int = opt(64 * 2**20, "A WAL file is closed and a new one started past this size.", "size")
    disk_budget: int = opt(0, "Total bytes the data directory may use (0 = until the disk is 95% full).", "size")
    flush_size: int = opt(16 * 2**20, "A measurement's buffered rows are written to a segment past this size.", "size")
    flush_age: float = opt(60.0, "... or once its oldest buffered row is this old.", "duration")
    segment_window: float = opt(86400.0, "Time span of one segment (rows are split by this window).", "duration")
    unsynced_policy: str = opt(
        "block",
        "When the disk budget is full and the oldest segments are not yet in the cloud: 'block' "
        "(refuse writes with 503/429 until sync catches up) or 'drop_oldest' (drop them, counted and logged).",
    )
    compaction: bool = opt(True, "Merge small segments of a measurement and window in the background.")


@dataclass
class HttpSection:
    bind: str = opt("127.0.0.1:8086", "host:port the HTTP API listens on (port 0 picks a free port).")
    max_body_size: int = opt(25_000_000, "Largest accepted write body (after gzip decoding); larger gets 413.", "size")
    auth_enabled: bool = opt(False, "Require a token or user/password on writes and queries.")
    tokens: list = opt([], "Accepted API tokens (Authorization: Token <t>, or as password with u/p or Basic).")
    users: dict = opt({}, "user -> password pairs accepted with u/p, Basic auth or 'Token user:pass'.")
    auto_create_databases: bool = opt(False, "Create a database on first write instead of answering 404.")
    default_database: str = opt("edge", "Database created at start (empty: none).")
    tls_cert: str = opt("", "PEM certificate file: serve HTTPS when set together with tls_key.")
    tls_key: str = opt("", "PEM private key file for tls_cert.")
    fast_lane: bool = opt(True, "Answer /query (GET, form POST) and a plain /ping straight from the socket (~0.1 ms "
                          "less per query than the general aiohttp path; same answers). A connection whose "
                          "request is of any other kind is served by aiohttp from then on.")
    idle_timeout: float = opt(300.0, "A kept-alive HTTP connection idle this long is closed.", "duration")


@dataclass
class QuerySection:
    timeout: float = opt(30.0, "Longest a query may run before it is cancelled with an error.", "duration")
    max_memory: int = opt(1024**3, "Memory a single query may use in DuckDB.", "size")
    inline_max_values: int = opt(
        200_000, "A /query estimated (from segment footers) to decode at most this many values runs on "
        "the event loop instead of a worker thread: ~0.5 ms faster, blocks other requests for ~1-3 ms "
        "at most (0: never).")
    chunk_cache: int = opt(
        32 * 2**20, "Decoded segment chunks kept in memory for reuse by later queries (LRU; dashboards "
        "re-reading recent windows skip read, checksum and decode). Once start-up is done, this size plus "
        "16 MiB of the event loop's heap is touched and kept resident (glibc), so filling the cache "
        "costs no page faults. 0 = off (and nothing reserved).", "size")


TWIN_TOPICS = ["$hw/events/device/+/+/twin/update", "$hw/events/device/+/twin/update"]


@dataclass
class MqttSection:
    enabled: bool = opt(True, "Subscribe to the MQTT broker (`edgets agent`); false: HTTP intake only.")
    broker: str = opt("tcp://127.0.0.1:1883", "Broker address tcp://host:port (plain, default port 1883) "
                      "or ssl://host:port / mqtts://host:port (TLS, default port 8883); down at start: "
                      "retried forever.")
    client_id: str = opt("edgets-agent", "Fixed client id: the broker keeps our persistent session under it.")
    username: str = opt("", "User name sent to the broker (empty: none).")
    password: str = opt("", "Password for username (empty: none); prefer password_file or "
                        "EDGETS_MQTT_PASSWORD over the TOML file.")
    password_file: str = opt("", "File whose content is the password (trailing newline ignored), "
                             "e.g. a mounted Kubernetes Secret; excludes password.")
    tls_ca: str = opt("", "PEM CA bundle the broker's certificate is verified with (ssl:// only; "
                      "empty: the system CA store).")
    tls_cert: str = opt("", "PEM client certificate for brokers that require one (with tls_key).")
    tls_key: str = opt("", "PEM private key (unencrypted) of tls_cert.")
    tls_insecure: bool = opt(False, "Skip the check that the broker's certificate names the broker "
                             "host (the CA chain is still verified). Testing only.")
    twin_topics: list = opt(list(TWIN_TOPICS), "EdgeCore twin update topic filters (decoded as twin updates).")
    text_topics: dict = opt({}, "Mapper plain-text topics: topic -> 'measurement.field' or "
                            "'measurement.field:TYPE' (INT FLOAT DOUBLE STRING BOOLEAN BYTES); "
                            "Device YAML pushMethod.mqtt topics are added automatically.")
    datamodel_topics: list = opt([], "Topic filters carrying mapper DataModel JSON.")
    lineprotocol_topics: list = opt([], "Topic filters carrying InfluxDB line protocol.")
    lineprotocol_precision: str = opt("ns", "Timestamp precision of line protocol on MQTT: ns, us, ms, s.")
    session_expiry: float = opt(7 * 86400.0, "How long the broker keeps our session (and queues "
                                "messages) while the agent is down.", "duration")
    receive_maximum: int = opt(100, "Un-acknowledged QoS 1 messages the broker may send us at once.")
    keepalive: float = opt(30.0, "MQTT keep-alive interval.", "duration")
    reconnect_max: float = opt(30.0, "Longest pause between reconnection attempts.", "duration")
    max_batch_messages: int = opt(256, "Messages coalesced into one storage write.")


@dataclass
class KubeedgeSection:
    database: str = opt("edge", "Database KubeEdge device data (MQTT and HTTP push) is written to.")
    timezone: str = opt("UTC", "The mappers' local time zone (text and HTTP push carry local time).")
    http_paths: dict = opt({}, "Mapper HTTP push requestPath -> 'namespace/device' (Device YAML "
                           "pushMethod.http paths are added automatically).")
    http_measurement: str = opt("device_data", "Measurement of HTTP push readings.")
    datamodel_measurement: str = opt("device_data", "Measurement of DataModel JSON readings.")
    twin_measurement: str = opt("device_twin", "Measurement of twin update readings.")
    twin_layout: str = opt("by_type", "'by_type' (value, value_int, value_bool, value_str) or 'value'.")
    on_bad_value: str = opt("raw", "A value not matching its Device Model type: 'raw' (kept as "
                            "string field <field>_raw) or 'reject' (dropped).")
    default_namespace: str = opt("default", "Namespace of devices published without one.")
    coerce_influx_strings: bool = opt(False, "Line protocol writes into `database` whose "
                                      "(measurement, field) matches a Device's dbMethod influxdb2 "
                                      "config: convert the mapper's string value to the Device "
                                      "Model type.")


@dataclass
class DevicesSection:
    dir: str = opt("", "Directory of KubeEdge Device/DeviceModel YAML (v1beta1): types every "
                   "property and adds its MQTT topics and HTTP push paths.")


@dataclass
class SyncSection:
    url: str = opt("", "Cloud to stream sealed segments to, ws://host:port or wss://host:port "
                   "(empty: sync off; data stays at the edge).")
    node_id: str = opt("", "This edge node's id in the cloud (letters, digits, _ . -); empty: the host name.")
    token: str = opt("", "Shared secret for this node, as listed in the cloud's [cloud] tokens.")
    ca_file: str = opt("", "PEM CA bundle to verify the cloud's TLS certificate (wss://).")
    bandwidth: int = opt(0, "Upload cap in bytes per second (0 = unlimited).", "size")
    chunk_size: int = opt(256 << 10, "Bytes per upload chunk (the cloud may lower it).", "size")
    backoff_cap: float = opt(30.0, "Longest pause between reconnection attempts (retries never give up).", "duration")
    heartbeat: float = opt(5.0, "WebSocket ping interval: a dead connection is noticed within ~1.5x this.", "duration")
    compress: bool = opt(True, "zstd-compress chunks when it saves at least 10%.")


@dataclass
class CloudSection:
    cloud_dir: str = opt("./cloud", "Directory of the cloud's received segments and SQLite catalog.")
    bind: str = opt("127.0.0.1:8087", "host:port of the cloud's HTTP API and sync endpoint (port 0: any free port).")
    tokens: dict = opt({}, "Edge node id -> sync token (TOML table, or node:token,node:token); "
                       "other nodes get 401.")
    tls_cert: str = opt("", "PEM certificate file: serve HTTPS/wss when set together with tls_key.")
    tls_key: str = opt("", "PEM private key file for tls_cert.")
    parquet_root: str = opt("", "Export committed segments as Hive-partitioned Parquet under this "
                            "directory or URI (s3://bucket/prefix?endpoint_override=...); empty: off.")
    export_interval: float = opt(300.0, "Pause between Parquet export runs.", "duration")


@dataclass
class Config:
    storage: StorageSection = field(default_factory=StorageSection)
    http: HttpSection = field(default_factory=HttpSection)
    query: QuerySection = field(default_factory=QuerySection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    kubeedge: KubeedgeSection = field(default_factory=KubeedgeSection)
    devices: DevicesSection = field(default_factory=DevicesSection)
    sync: SyncSection = field(default_factory=SyncSection)
    cloud: CloudSection = field(default_factory=CloudSection)

    @property
    def data_path(self) -> Path:
        return Path(self.storage.data_dir)


SECTIONS = {"storage": StorageSection, "http": HttpSection, "query": QuerySection,
            "mqtt": MqttSection, "kubeedge": KubeedgeSection, "devices": DevicesSection,
            "sync": SyncSection, "cloud": CloudSection}


def _coerce(section: str, name: str, value: Any, source: str) -> Any:
    cls = SECTIONS[section]
    spec = {f.name: f for f in fields(cls)}[name]
    kind = spec.metadata.get("kind", "")
    try:
        if kind == "size":
            return parse_size(value)
        if kind == "duration":
            return parse_duration(value)
        default = getattr(cls(), name)
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if isinstance(default, list):
            return value if isinstance(value, list) else [v for v in str(value).split(",") if v]
        if isinstance(default, dict):
            if isinstance(value, dict):
                return value
            pairs = [p.split(":", 1) for p in str(value).split(",") if p]
            return {k: v for k, v in pairs}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"option {section}.{name} from {source}: {exc}") from exc


def _apply(config: Config, section: str, name: str, value: Any, source: str) -> None:
    if section not in SECTIONS:
        raise ConfigError(f"unknown section [{section}] in {source}; known: {', '.join(SECTIONS)}")
    known = {f.name for f in fields(SECTIONS[section])}
    if name not in known:
        raise ConfigError(f"unknown option {section}.{name} in {source}; known: {', '.join(sorted(known))}")
    setattr(getattr(config, section), name, _coerce(section, name, value, source))


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Defaults, then the TOML file, then EDGETS_<SECTION>_<OPTION> variables, then overrides."""
    config = Config()
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {p}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p}: {exc}") from exc
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config file {p}: top-level key {section!r} must be a [section]")
            for name, value in values.items():
                _apply(config, section, name, value, str(p))
    env = os.environ if environ is None else environ
    for key, value in env.items():
        if not key.startswith("EDGETS_") or key.count("_") < 2:
            continue
        section, name = key[len("EDGETS_"):].lower().split("_", 1)
        if section in SECTIONS:
            _apply(config, section, name, value, f"environment {key}")
    for dotted, value in (overrides or {}).items():
        section, name = dotted.split(".", 1)
        _apply(config, section, name, value, f"flag {dotted}")
    _check_choices(config)
    return config


def _check_choices(config: Config) -> None:
    s = config.storage
    if s.unsynced_policy not in ("block", "drop_oldest"):
        raise ConfigError(f"option storage.unsynced_policy must be 'block' or 'drop_oldest', got {s.unsynced_policy!r}")
    if not re.fullmatch(r"always|never|interval:\d+", s.fsync):
        raise ConfigError(f"option storage.fsync must be always, never or interval:<ms>, got {s.fsync!r}")
    for option, name in (("http.default_database", config.http.default_database),
                         ("kubeedge.database", config.kubeedge.database)):
        if name and invalid_name(name):
            raise ConfigError(f"option {option} = {name!r}: not a database name (no '/', '\\', '.' or '..')")


def describe_options() -> str:
    """Every option with its default, environment variable and help: the --help epilog."""
    lines = ["configuration options (TOML [section] key, env EDGETS_SECTION_KEY, or --set section.key=value):"]
    for section, cls in SECTIONS.items():
        lines.append(f"  [{section}]")
        for f in fields(cls):
            default = getattr(cls(), f.name)
            env = f"EDGETS_{section.upper()}_{f.name.upper()}"
            lines.append(f"    {f.name} = {default!r}    ({env})")
            lines.append(f"        {f.metadata['help']}")
    return "\n".join(lines)
