"""MQTT intake over TLS and with a password: a real Mosquitto with a throwaway CA (openssl CLI),
a mosquitto_passwd file and allow_anonymous false; the agent subprocess and MqttIngest."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge_agent.agent import agent_state
from edge_agent.config import MqttSection, describe_options, load_config
from edge_agent.mqtt_ingest import MqttIngest, broker_settings, topic_summary
from tests.mosquitto_fixture import Broker, mosquitto_broker
from tests.server_process import REPO, ServerProcess
from tests.test_agent_e2e import check, health
from tests.test_mqtt_ingest import FileSink, datamodel, ingest_config
from tests.test_mqtt_ingest import publish as publish_plain
from tests.waiting import wait_until

DEADLINE_S = 20.0
USER, PASSWORD = "edge-agent", "s3cret-pw"
MAPPER_USER, MAPPER_PASSWORD = "mapper", "mapper-pw"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path  # SAN IP:127.0.0.1, DNS:localhost
    server_key: Path
    misnamed_cert: Path  # SAN DNS:broker.invalid only: fails the host name check on 127.0.0.1
    misnamed_key: Path
    client_cert: Path  # CN edgets-agent, clientAuth
    client_key: Path
    other_ca: Path  # a CA the brokers' certificates are not signed by


def openssl(*args: str | Path) -> None:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))}: {done.stderr}"


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_leaf(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
    ext = directory / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\n"
                   f"authorityKeyIdentifier=keyid\n{extensions}\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "edgets-test-ca")
    server_usage = "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth"
    server = make_leaf(d, "broker", ca, f"{server_usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost")
    misnamed = make_leaf(d, "misnamed", ca, f"{server_usage}\nsubjectAltName=DNS:broker.invalid")
    client = make_leaf(d, "edgets-agent", ca,
                       "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth")
    other_ca, _ = make_ca(d, "other-ca")
    return Pki(ca[0], *server, *misnamed, *client, other_ca)


def password_file(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "passwd"
    path.touch()
    for user, password in ((USER, PASSWORD), (MAPPER_USER, MAPPER_PASSWORD)):
        subprocess.run(["/usr/bin/mosquitto_passwd", "-b", str(path), user, password], check=True,
                       capture_output=True)
    return path


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    """TLS listener, logins from a password file, no anonymous clients."""
    conf = (f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
            f"password_file {password_file(tmp_path / 'broker')}\n")
    with mosquitto_broker(tmp_path / "broker", extra_config=conf, allow_anonymous=False) as broker:
        yield broker


def publish(broker: Broker, pki: Pki, messages: list[tuple[str, bytes]], retain: bool = False,
            cert: tuple[Path, Path] | None = None, login: bool = True,
            insecure: bool = False) -> None:
    """A mapper publishing over TLS (QoS 1), logged in unless told; waits for every PUBACK."""
    def over_tls(client: mqtt.Client) -> None:
        client.tls_set(ca_certs=str(pki.ca), certfile=str(cert[0]) if cert else None,
                       keyfile=str(cert[1]) if cert else None)
        client.tls_insecure_set(insecure)
        if login:
            client.username_pw_set(MAPPER_USER, MAPPER_PASSWORD)

    publish_plain(broker, messages, retain=retain, configure=over_tls)


def agent_config(tmp: Path, broker: Broker, **mqtt_options: object) -> Path:
    lines = ["[storage]", 'fsync = "always"', "[mqtt]",
             f'broker = "ssl://{broker.host}:{broker.port}"', 'client_id = "edgets-tls-agent"',
             'twin_topics = []', 'lineprotocol_topics = ["lp/#"]', 'reconnect_max = "1s"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in mqtt_options.items()]
    lines += ["[kubeedge]", 'database = "edge"']
    path = tmp / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def mqtt_check(url: str) -> dict:
    return check(health(url), "mqtt")


def query_values(url: str, q: str) -> list[list]:
    encoded = urllib.parse.urlencode({"db": "edge", "q": q})
    with urllib.request.urlopen(f"{url}/query?{encoded}", timeout=30) as resp:
        result = json.loads(resp.read())["results"][0]
    return [row for series in result.get("series", []) for row in series["values"]]


def test_tls_and_password_agent_stores_a_qos1_publish(tmp_path: Path, pki: Pki,
                                                      tls_broker: Broker) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text(PASSWORD + "\n")  # as `echo pw > file` leaves it: the newline is ignored
    conf = agent_config(tmp_path, tls_broker, username=USER, password_file=str(secret),
                        tls_ca=str(pki.ca))
    # Retained: delivered when the agent subscribes, however the two race.
    publish(tls_broker, pki, [("lp/probe", b"tls_probe,host=a value=42i 1714557600000000000")],
            retain=True)
    with ServerProcess(tmp_path / "data", "-c", str(conf), command="agent") as agent:
        rows = wait_until(lambda: query_values(agent.url, "SELECT value FROM tls_probe"),
                          DEADLINE_S, "the retained TLS publish stored")
        assert [row[1] for row in rows] == [42]
        publish(tls_broker, pki, [("lp/probe", b"tls_probe,host=b value=7i 1714557601000000000")])
        wait_until(lambda: len(query_values(agent.url, "SELECT value FROM tls_probe")) == 2,
                   DEADLINE_S, "the live TLS publish stored")
        check = mqtt_check(agent.url)
        assert check["connected"] and check["status"] == "pass"
        assert check["connect_error"] is None and check["totals"]["stored"] >= 2
        assert agent.stop() == 0


def test_wrong_password_is_reported_and_the_agent_keeps_running(tmp_path: Path, pki: Pki,
                                                                tls_broker: Broker) -> None:
    conf = agent_config(tmp_path, tls_broker, username=USER, password="not-the-password",
                        tls_ca=str(pki.ca))
    publish(tls_broker, pki, [("lp/probe", b"refused,host=a value=1i 1714557600000000000")],
            retain=True)
    with ServerProcess(tmp_path / "data", "-c", str(conf), command="agent") as agent:
        check = wait_until(lambda: (c := mqtt_check(agent.url))["connect_failures"] >= 2 and c,
                           DEADLINE_S, "two refused connection attempts")
        address = f"ssl://{tls_broker.host}:{tls_broker.port}"
        assert check["status"] == "fail" and not check["connected"]
        assert address in check["connect_error"] and "Not authorized" in check["connect_error"]
        assert "mqtt.password" in check["connect_error"]
        assert check["totals"]["received"] == 0 and check["totals"]["stored"] == 0
        assert query_values(agent.url, "SELECT value FROM refused") == []
        assert agent.proc is not None and agent.proc.poll() is None  # retrying, not crashed
        assert any("refused the connection" in line and address in line for line in agent.output)
        assert "not-the-password" not in "".join(agent.output)
        assert agent.stop() == 0


@contextmanager
def running_ingest(broker: Broker, tmp: Path, name: str,
                   **options: object) -> Iterator[tuple[MqttIngest, FileSink]]:
    """MqttIngest set up the way the agent does it ([mqtt] options -> broker_settings), started;
    stopped on exit. Rows land in a durable JSON-lines sink."""
    section = MqttSection(broker=f"ssl://{broker.host}:{broker.port}", **options)  # type: ignore[arg-type]
    host, port, security = broker_settings(section)
    config = ingest_config(broker, client_id=f"edgets-tls-{name}", security=security,
                           reconnect_max_s=0.3)
    assert (config.host, config.port) == (host, port)
    sink = FileSink(tmp / f"rows-{name}.jsonl")
    ingest = MqttIngest(config, sink.submit)
    ingest.start()
    try:
        yield ingest, sink
    finally:
        ingest.stop(5)
        sink.close()


def test_client_certificate_listener(tmp_path: Path, pki: Pki) -> None:
    conf = (f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
            "require_certificate true\nuse_identity_as_username true\n")
    with mosquitto_broker(tmp_path / "broker", extra_config=conf, allow_anonymous=False) as broker:
        with running_ingest(broker, tmp_path, "no-cert", tls_ca=str(pki.ca)) as (without, _):
            wait_until(lambda: without.stats()["connect_failures"] >= 2, DEADLINE_S,
                       "connections without a client certificate refused")
            error = without.stats()["connect_error"]
            assert f"ssl://127.0.0.1:{broker.port}" in error
            assert "certificate required" in error.lower()
            assert topic_summary(without.stats())["received"] == 0
        with running_ingest(broker, tmp_path, "cert", tls_ca=str(pki.ca),
                            tls_cert=str(pki.client_cert),
                            tls_key=str(pki.client_key)) as (ingest, sink):
            wait_until(lambda: ingest.stats()["connected"], DEADLINE_S, "mutual TLS connection")
            publish(broker, pki, [datamodel(i) for i in range(5)],
                    cert=(pki.client_cert, pki.client_key), login=False)
            wait_until(lambda: len(sink.rows()) == 5, DEADLINE_S, "5 messages stored over mTLS")
            assert sorted(r["f"]["seq"] for r in sink.rows()) == list(range(5))
            assert ingest.stats()["connect_error"] is None


def test_untrusted_ca_and_host_name_mismatch(tmp_path: Path, pki: Pki) -> None:
    conf = f"cafile {pki.ca}\ncertfile {pki.misnamed_cert}\nkeyfile {pki.misnamed_key}\n"
    with mosquitto_broker(tmp_path / "broker", extra_config=conf) as broker:
        cases = [({"tls_ca": str(pki.other_ca)}, "certificate verify failed"),
                 ({"tls_ca": str(pki.other_ca), "tls_insecure": True}, "certificate verify failed"),
                 ({"tls_ca": str(pki.ca)}, "IP address mismatch")]
        for n, (options, expected) in enumerate(cases):
            with running_ingest(broker, tmp_path, f"fail-{n}", **options) as (ingest, _):
                wait_until(lambda: ingest.stats()["connect_failures"] >= 2,  # noqa: B023
                           DEADLINE_S, f"TLS failures with {options}")
                stats = ingest.stats()
                assert not stats["connected"]
                assert f"TLS handshake with ssl://127.0.0.1:{broker.port}" in stats["connect_error"]
                assert expected in stats["connect_error"], (options, stats["connect_error"])
        # tls_insecure skips only the host name check: with the right CA it connects.
        with running_ingest(broker, tmp_path, "insecure", tls_ca=str(pki.ca),
                            tls_insecure=True) as (ingest, sink):
            wait_until(lambda: ingest.stats()["connected"], DEADLINE_S, "tls_insecure connection")
            publish(broker, pki, [datamodel(i) for i in range(3)], login=False, insecure=True)
            wait_until(lambda: len(sink.rows()) == 3, DEADLINE_S, "3 messages stored")


def test_connection_options_parse(tmp_path: Path, pki: Pki) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\r\n")
    table = [
        ({"broker": "tcp://10.0.0.5"}, ("10.0.0.5", 1883, False)),
        ({"broker": "mqtt://broker:1884"}, ("broker", 1884, False)),
        ({"broker": "10.0.0.5:1999"}, ("10.0.0.5", 1999, False)),
        ({"broker": "ssl://broker.local"}, ("broker.local", 8883, True)),
        ({"broker": "mqtts://broker.local:9883"}, ("broker.local", 9883, True)),
    ]
    for options, expected in table:
        host, port, security = broker_settings(MqttSection(**options))  # type: ignore[arg-type]
        assert (host, port, security.tls) == expected, options
    _, _, security = broker_settings(MqttSection(broker="ssl://b", username="u", password_file=str(secret),
                                                 tls_ca=str(pki.ca), tls_cert=str(pki.client_cert),
                                                 tls_key=str(pki.client_key)))
    assert security.password == "from-file" and security.cert_file == str(pki.client_cert)
    assert "from-file" not in repr(security)
    help_text = describe_options()
    for name in ("username", "password_file", "tls_ca", "tls_cert", "tls_key", "tls_insecure"):
        assert f"    {name} = " in help_text and f"EDGETS_MQTT_{name.upper()}" in help_text


def test_configuration_errors_name_the_option(tmp_path: Path, pki: Pki) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    missing = str(tmp_path / "missing.pem")
    ssl_b = {"broker": "ssl://b"}
    table: list[tuple[dict[str, object], str]] = [
        ({"broker": "ws://b:1883"}, r"mqtt\.broker 'ws://b:1883': unknown scheme 'ws'"),
        ({"broker": "tcp://u:p@b"}, r"mqtt\.broker .*put credentials in mqtt\.username"),
        ({"broker": "tcp://b:99999"}, r"mqtt\.broker 'tcp://b:99999': Port out of range"),
        ({"broker": "tcp://b/topic"}, r"mqtt\.broker must be tcp://host:port"),
        ({"tls_ca": str(pki.ca)}, r"mqtt\.tls_ca is set but mqtt\.broker .* is not TLS"),
        ({"tls_insecure": True}, r"mqtt\.tls_insecure is set but mqtt\.broker"),
        ({**ssl_b, "tls_cert": str(pki.client_cert)}, r"mqtt\.tls_cert is set without mqtt\.tls_key"),
        ({**ssl_b, "tls_key": str(pki.client_key)}, r"mqtt\.tls_key is set without mqtt\.tls_cert"),
        ({**ssl_b, "tls_ca": missing}, r"mqtt\.tls_ca: cannot load CA bundle .*missing\.pem"),
        ({**ssl_b, "tls_ca": str(not_pem)}, r"mqtt\.tls_ca: cannot load CA bundle .*not\.pem"),
        ({**ssl_b, "tls_cert": missing, "tls_key": str(pki.client_key)},
         r"mqtt\.tls_cert: cannot read .*missing\.pem"),
        ({**ssl_b, "tls_cert": str(pki.client_cert), "tls_key": missing},
         r"mqtt\.tls_key: cannot read .*missing\.pem"),
        ({**ssl_b, "tls_cert": str(pki.client_cert), "tls_key": str(pki.server_key)},
         r"mqtt\.tls_cert/mqtt\.tls_key: .* is not a PEM certificate and its unencrypted"),
        ({"username": "u", "password": "p", "password_file": str(empty)},
         r"either mqtt\.password or mqtt\.password_file"),
        ({"password": "p"}, r"mqtt\.password / mqtt\.password_file is set but mqtt\.username is empty"),
        ({"username": "u", "password_file": missing}, r"mqtt\.password_file: cannot read .*missing"),
        ({"username": "u", "password_file": str(empty)}, r"mqtt\.password_file: .*empty is empty"),
    ]
    for options, pattern in table:
        overrides = {f"mqtt.{k}": v for k, v in options.items()}
        config = load_config(None, overrides, environ={})
        with pytest.raises(ValueError, match=pattern):
            agent_state(config)
    # The CLI reports it as a configuration error before starting anything.
    done = subprocess.run([sys.executable, "-m", "edge_agent.cli", "agent", "--data-dir",
                           str(tmp_path / "data"), "--set", "mqtt.broker=ssl://127.0.0.1:1",
                           "--set", f"mqtt.tls_cert={pki.client_cert}"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert re.search(r"edgets agent: configuration error: mqtt\.tls_cert is set without "
                     r"mqtt\.tls_key", done.stderr), done.stderr
    assert not (tmp_path / "data").exists()
