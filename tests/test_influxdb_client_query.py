"""The `influxdb` python client (v1) and Grafana's metadata query sequence against a real edgets server.

Expected results are computed in plain Python from the corpus dataset (tests/influxql_corpus.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError

from tests.influxql_corpus import DB, T0_NS, Dataset, build_dataset
from tests.server_process import ServerProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxDBClient, Dataset]]:
    root: Path = tmp_path_factory.mktemp("client")
    with ServerProcess(root / "edgets", "--set", "http.default_database=") as server:
        client = InfluxDBClient(host="127.0.0.1", port=server.port, database=DB, timeout=30)
        dataset = build_dataset()
        client.create_database(DB)
        assert client.write_points(dataset.lines, protocol="line", time_precision="n")
        rows = sum(len(by_time) for (name, _), by_time in dataset.points.items() if name == "power")
        wait_until(lambda: len(list(client.query("SELECT watts FROM power").get_points())) == rows, 30,
                   "edgets to answer with every power row")
        yield client, dataset
        client.close()


def iso_ns(t_ns: int) -> str:
    """RFC3339 with the fraction trimmed, as InfluxDB prints times."""
    seconds, frac = divmod(t_ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def test_ping_reports_a_version(loaded: tuple[InfluxDBClient, Dataset]) -> None:
    client, _ = loaded
    assert client.ping()


def test_get_points_raw_rows_with_rfc3339_times(loaded: tuple[InfluxDBClient, Dataset]) -> None:
    client, data = loaded
    result = client.query("SELECT watts, counter, state FROM power WHERE site = 'b c' AND phase = 'L1'")
    expected = [{"time": iso_ns(t), "watts": f["watts"], "counter": f["counter"], "state": f["state"]}
                for tags, t, f in data.rows("power") if tags == {"site": "b c", "phase": "L1"}]
    assert list(result.get_points()) == expected
    assert list(result.get_points(measurement="power")) == expected
    assert list(result.get_points(measurement="weather")) == []


def test_get_points_by_tags_and_epoch(loaded: tuple[InfluxDBClient, Dataset]) -> None:
    client, data = loaded
    result = client.query("SELECT mean(temp) FROM weather GROUP BY location", epoch="ns")
    for location in ("new york", "san,francisco", "berlin"):
        temps = [f["temp"] for tags, _, f in data.rows("weather") if tags["location"] == location]
        points = list(result.get_points(tags={"location": location}))
        assert len(points) == 1 and points[0]["time"] == 0
        assert points[0]["mean"] == pytest.approx(statistics.fmean(temps), rel=1e-9)
    assert result.keys() == [("weather", {"location": loc}) for loc in ("berlin", "new york", "san,francisco")]


def test_group_by_time_with_epoch_ms(loaded: tuple[InfluxDBClient, Dataset]) -> None:
    client, data = loaded
    start_ms, end_ms = T0_NS // 1_000_000, T0_NS // 1_000_000 + 3 * 3_600_000
    result = client.query(f'SELECT count("humidity") FROM "weather" WHERE time >= {start_ms}ms and '
                          f"time < {end_ms}ms GROUP BY time(30m) fill(0)", epoch="ms")
    counts = [0] * 6
    for _, t, f in data.rows("weather"):
        if "humidity" in f:
            counts[(t // 1_000_000 - start_ms) // 1_800_000] += 1
    assert [(p["time"], p["count"]) for p in result.get_points()] == [
        (start_ms + i * 1_800_000, c) for i, c in enumerate(counts)]


def test_several_statements_give_a_list_of_result_sets(loaded: tuple[InfluxDBClient, Dataset]) -> None:
    client, data = loaded
    results = client.query("SELECT count(code) FROM events; SELECT count(watts) FROM power")
    assert isinstance(results, list) and len(results) == 2
    assert list(results[0].get_points())[0]["count"] == len(data.rows("events"))
    assert list(results[1].get_points())[0]["count"] == len(data.rows("power"))


def test_bind_params_and_post(loaded: tuple[InfluxDBClient, Dataset]) -> None:
    client, data = loaded
    result = client.query("SELECT code FROM events WHERE code = $code", bind_params={"code": 100},
                          method="POST", epoch="ns")
    expected = [{"time": t, "code": 100} for _, t, f in data.rows("events") if f["code"] == 100]
    assert expected and list(result.get_points()) == expected


def test_statement_error_raises_with_the_message(loaded: tuple[InfluxDBClient, Dataset]) -> None:
    client, _ = loaded
    with pytest.raises(InfluxDBClientError, match="database not found"):
        client.query("SELECT * FROM weather", database="nosuchdb")
    with pytest.raises(InfluxDBClientError, match="error parsing query"):
        client.query("SELECT FROM weather")


def test_client_metadata_helpers(loaded: tuple[InfluxDBClient, Dataset]) -> None:
    client, data = loaded
    assert {"name": DB} in client.get_list_database()
    assert client.get_list_measurements() == [{"name": m} for m in sorted({name for name, _ in data.points})]
    assert [p["name"] for p in client.get_list_retention_policies(DB)] == ["autogen"]
    series = client.get_list_series(DB, measurement="power")
    assert sorted(series) == sorted(f"power,phase={p},site={s.replace(' ', chr(92) + ' ')}"
                                    for s in ("a", "b c") for p in ("L1", "L2"))


def test_grafana_metadata_sequence(loaded: tuple[InfluxDBClient, Dataset]) -> None:
    """What Grafana's InfluxQL editor sends, in order, with epoch=ms, each checked against the data."""
    client, data = loaded
    tag_keys = sorted({k for tags, _, _ in data.rows("weather") for k in tags})
    steps: list[tuple[str, list[dict]]] = [
        ("SHOW MEASUREMENTS LIMIT 1", [{"name": "events"}]),
        ("SHOW RETENTION POLICIES on \"diff\"", [{"name": "autogen", "duration": "0s",
                                                 "shardGroupDuration": "168h0m0s", "replicaN": 1, "default": True}]),
        ("SHOW MEASUREMENTS LIMIT 100", [{"name": m} for m in sorted({name for name, _ in data.points})]),
        ("SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)WEA/ LIMIT 100", [{"name": "weather"}]),
        ('SHOW FIELD KEYS FROM "autogen"."weather"', [
            {"fieldKey": k, "fieldType": t} for k, t in sorted(
                {"humidity": "integer", "note": "string", "pressure": "float", "raining": "boolean",
                 "temp": "float"}.items())]),
        ('SHOW TAG KEYS FROM "weather"', [{"tagKey": k} for k in tag_keys]),
        ('SHOW TAG VALUES FROM "weather" WITH KEY = "location"',
         [{"key": "location", "value": v} for v in sorted({t["location"] for t, _, _ in data.rows("weather")})]),
        ('SHOW TAG VALUES FROM "weather" WITH KEY = "sensor" WHERE "location" =~ /^berlin$/',
         [{"key": "sensor", "value": v} for v in ("s1", "s2")]),
    ]
    for statement, expected in steps:
        got = list(client.query(statement, epoch="ms").get_points())
        assert got == expected, f"{statement}: {got}"
    # then the panel query Grafana builds from those choices
    start_ms = T0_NS // 1_000_000
    result = client.query(f'SELECT mean("temp") FROM "weather" WHERE ("location" = \'berlin\') AND '
                          f"time >= {start_ms}ms and time <= {start_ms + 3 * 3_600_000 - 1}ms "
                          "GROUP BY time(1h) fill(null)", epoch="ms")
    buckets: list[list[float]] = [[], [], []]
    for tags, t, f in data.rows("weather"):
        if tags["location"] == "berlin":
            buckets[(t - T0_NS) // 3_600_000_000_000].append(float(f["temp"]))
    points = list(result.get_points())
    assert [p["time"] for p in points] == [start_ms + i * 3_600_000 for i in range(3)]
    assert [p["mean"] for p in points] == pytest.approx([statistics.fmean(b) for b in buckets], rel=1e-9)
