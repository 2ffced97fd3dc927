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


@dataclass
class QuerySection:
    timeout: float = opt(30.0, "Longest a query may run before it is cancelled with an error.", "duration")
    max_memory: int = opt(1024**3, "Memory a single query may use in DuckDB.", "size")


@dataclass
class Config:
    storage: StorageSection = field(default_factory=StorageSection)
    http: HttpSection = field(default_factory=HttpSection)
    query: QuerySection = field(default_factory=QuerySection)
    extra: dict = field(default_factory=dict)  # sections owned by other components (mqtt, sync, cloud)

    @property
    def data_path(self) -> Path:
        return Path(self.storage.data_dir)


SECTIONS = {"storage": StorageSection, "http": HttpSection, "query": QuerySection}


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
        config.extra.setdefault(section, {})[name] = value
        return
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
    return config


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
