"""Configuration: TOML file, environment and flags in that order; clear errors; generated help."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.cli import build_parser
from edge_agent.config import ConfigError, load_config, parse_duration, parse_size


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "edgets.toml"
    path.write_text('[storage]\ndata_dir = "/srv/a"\nmemory_budget = "64MiB"\n'
                    '[http]\nbind = "0.0.0.0:9000"\nauth_enabled = true\ntokens = ["t1"]\n'
                    '[query]\ntimeout = "5s"\n')
    cfg = load_config(path, environ={})
    assert cfg.storage.data_dir == "/srv/a" and cfg.storage.memory_budget == 64 * 2**20
    assert cfg.http.auth_enabled is True and cfg.http.tokens == ["t1"]
    assert cfg.query.timeout == 5.0
    cfg = load_config(path, environ={"EDGETS_STORAGE_DATA_DIR": "/srv/b", "EDGETS_HTTP_AUTH_ENABLED": "false"})
    assert cfg.storage.data_dir == "/srv/b" and cfg.http.auth_enabled is False
    cfg = load_config(path, {"storage.data_dir": "/srv/c"}, environ={"EDGETS_STORAGE_DATA_DIR": "/srv/b"})
    assert cfg.storage.data_dir == "/srv/c"


def test_errors_name_the_option_and_source(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[storage]\nmemory_budget = "lots"\n')
    with pytest.raises(ConfigError, match=r"storage.memory_budget from .*bad.toml: not a size"):
        load_config(path, environ={})
    path.write_text('[http]\nbnd = "x"\n')
    with pytest.raises(ConfigError, match="unknown option http.bnd"):
        load_config(path, environ={})
    path.write_text('[htp]\nbind = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown section \[htp\]"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="storage.fsync must be"):
        load_config(None, {"storage.fsync": "sometimes"}, environ={})
    with pytest.raises(ConfigError, match=r"kubeedge.database = 'plant/a': not a database name"):
        load_config(None, {"kubeedge.database": "plant/a"}, environ={})
    with pytest.raises(ConfigError, match="EDGETS_HTTP_AUTH_ENABLED"):
        load_config(None, environ={"EDGETS_HTTP_AUTH_ENABLED": "maybe"})


def test_units() -> None:
    assert parse_size("25000000") == 25_000_000 and parse_size("1GB") == 10**9 and parse_size("2KiB") == 2048
    assert parse_duration("500ms") == 0.5 and parse_duration("7d") == 7 * 86400 and parse_duration(3) == 3.0


def test_help_lists_every_option() -> None:
    text = build_parser().format_help()
    for option in ("data_dir", "fsync", "memory_budget", "max_body_size", "auth_enabled", "EDGETS_QUERY_TIMEOUT"):
        assert option in text
