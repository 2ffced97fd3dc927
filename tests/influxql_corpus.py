"""The InfluxQL differential corpus as data: a deterministic dataset (line protocol) and the queries.

Used by tests/test_influxql_differential.py (edgets vs a real InfluxDB 1.6.7); see docs/influxql-differential.md.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.datasets import cpu_lines, tsbs_cpu

DB = "diff"
TSBS_DB = "tsbs"
T0_S = 1_514_764_800  # 2018-01-01T00:00:00Z
T0_NS = T0_S * 1_000_000_000
SPAN_S = 3 * 3600
START = "2018-01-01T00:00:00Z"
END = "2018-01-01T03:00:00Z"
W = f"time >= '{START}' AND time < '{END}'"  # the whole diff dataset
TSBS_START = "2016-01-01T00:00:00Z"
TSBS_HOSTS = 5
TSBS_HOURS = 2

FieldValue = float | int | bool | str
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # (measurement, sorted tag pairs)


# ---------------------------------------------------------------- dataset

@dataclass
class Dataset:
    """The diff database's points after overwrites: (measurement, tags) -> time_ns -> fields."""

    lines: list[str]
    points: dict[SeriesKey, dict[int, dict[str, FieldValue]]]

    def rows(self, measurement: str) -> list[tuple[dict[str, str], int, dict[str, FieldValue]]]:
        """(tags, time_ns, fields) of one measurement ordered by series key, then time."""
        out = []
        for (name, tags), by_time in sorted(self.points.items()):
            if name == measurement:
                out.extend((dict(tags), t, by_time[t]) for t in sorted(by_time))
        return out


def _escape_tag(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field_text(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _line(measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], t_ns: int) -> str:
    tag_text = "".join(f",{k}={_escape_tag(v)}" for k, v in sorted(tags.items()))
    field_text = ",".join(f"{k}={_field_text(v)}" for k, v in fields.items())
    return f"{measurement}{tag_text} {field_text} {t_ns}"


NOTES = ["all good", "fan, noisy", 'say "hi"', "idle", "back\\slash"]
LOCATIONS = ["new york", "san,francisco", "berlin"]


def build_dataset(seed: int = 7) -> Dataset:
    """Three measurements with awkward tags, every field type, a late field, irregular times, overwrites."""
    rng = random.Random(seed)
    lines: list[str] = []
    points: dict[SeriesKey, dict[int, dict[str, FieldValue]]] = {}

    def emit(measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], t_ns: int) -> None:
        lines.append(_line(measurement, tags, fields, t_ns))
        key = (measurement, tuple(sorted(tags.items())))
        points.setdefault(key, {}).setdefault(t_ns, {}).update(fields)

    for loc in LOCATIONS:
        for sensor in ("s1", "s2"):
            tags = {"location": loc, "sensor": sensor}
            if loc == "berlin":
                tags["kind"] = "indoor" if sensor == "s1" else "outdoor"
            t = T0_NS + rng.randint(0, 300) * 1_000_000_000
            while t < T0_NS + SPAN_S * 1_000_000_000:
                fields: dict[str, FieldValue] = {
                    "temp": round(rng.uniform(-5, 30), 1),
                    "humidity": rng.randint(20, 95),
                    "raining": rng.random() < 0.3,
                    "note": rng.choice(NOTES),
                }
                if t >= T0_NS + 5400 * 1_000_000_000:  # a field that appears later
                    fields["pressure"] = round(rng.uniform(990, 1030), 1)
                emit("weather", tags, fields, t)
                t += rng.randint(120, 900) * 1_000_000_000
                if rng.random() < 0.3:
                    t += rng.randint(1, 999) * 1_000_000  # sub-second parts
    for site in ("a", "b c"):
        for phase in ("L1", "L2"):
            tags = {"site": site, "phase": phase}
            counter = rng.randint(0, 1000)
            for step in range(36):
                t = T0_NS + (step * 300 + rng.randint(0, 40)) * 1_000_000_000
                counter += rng.randint(0, 50)
                if site == "a" and phase == "L2" and step == 20:
                    counter = 3  # a counter reset
                emit("power", tags, {"watts": round(rng.uniform(100, 900), 2), "counter": counter,
                                     "state": rng.choice(["on", "off"])}, t)
    for i, offset_s in enumerate([0, 450, 1337, 3600, 3601, 5000, 7200, 10799]):
        emit("events", {}, {"code": 100 + (i * 37) % 7, "msg": f"event {i}", "ok": i % 3 != 0},
             T0_NS + offset_s * 1_000_000_000)
    for step in range(6):  # series sharing timestamps, values repeating: the selectors' tie rules
        for host, bump in (("h1", 0), ("h2", 1), ("h3", 1)):
            emit("ties", {"host": host}, {"f": float((step * 7 + bump) % 5), "i": (step * 3 + bump) % 4,
                                          "s": f"v{(step + bump) % 3}", "b": (step + bump) % 2 == 0},
                 T0_NS + step * 600 * 1_000_000_000)
    # overwrites: a whole point again (newer values win), a partial point (fields merge), a duplicate
    berlin_s1 = {"location": "berlin", "kind": "indoor", "sensor": "s1"}
    first = sorted(points[("weather", tuple(sorted(berlin_s1.items())))])
    emit("weather", berlin_s1,
         {"temp": 31.5, "humidity": 99, "raining": False, "note": "overwritten"}, first[2])
    emit("weather", {"location": "new york", "sensor": "s2"}, {"humidity": 11},
         sorted(points[("weather", (("location", "new york"), ("sensor", "s2")))])[4])
    lines.append(lines[5])
    return Dataset(lines, points)


def tsbs_lines() -> list[bytes]:
    """A slice of TSBS cpu-only: 5 hosts x 2 hours at 10 s (2016-01-01T00:00Z onwards)."""
    return list(cpu_lines(tsbs_cpu(hosts=TSBS_HOSTS, hours=TSBS_HOURS), batch_lines=5000))


# ---------------------------------------------------------------- independent expectations (plain Python)

def _result(*series: dict[str, Any]) -> dict[str, Any]:
    return {"results": [{"statement_id": 0, "series": list(series)} if series else {"statement_id": 0}]}


def expect_offset_only(data: Dataset) -> dict[str, Any]:
    """SELECT code FROM events OFFSET 6 (epoch=ns): every row from the 7th on."""
    rows = [[t, fields["code"]] for _, t, fields in data.rows("events") if "code" in fields]
    return _result({"name": "events", "columns": ["time", "code"], "values": rows[6:]})


def expect_group_by_star_slimit(data: Dataset) -> dict[str, Any]:
    """SELECT temp FROM weather GROUP BY * LIMIT 1 SLIMIT 3 (epoch=ns): the first 3 series in output order."""
    keys = sorted({k for tags, _, _ in data.rows("weather") for k in tags})
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    for tags, t, fields in data.rows("weather"):
        if "temp" in fields:
            groups.setdefault(tuple(tags.get(k, "") for k in keys), []).append([t, fields["temp"]])
    series = [{"name": "weather", "tags": dict(zip(keys, group, strict=True)), "columns": ["time", "temp"],
               "values": sorted(rows)[:1]} for group, rows in sorted(groups.items())[:3]]
    return _result(*series)


def expect_integral(measurement: str, field_name: str, by: list[str], unit_s: float) -> Expected:
    """integral(field, unit) GROUP BY tags over all time: trapezoids between time-ordered points per group."""
    def compute(data: Dataset) -> dict[str, Any]:
        groups: dict[tuple[str, ...], list[tuple[int, float]]] = {}
        for tags, t, fields in data.rows(measurement):
            if field_name in fields:
                groups.setdefault(tuple(tags.get(k, "") for k in by), []).append((t, float(fields[field_name])))
        series = []
        for group, points in sorted(groups.items()):
            points.sort(key=lambda p: p[0])
            area, (prev_t, prev_v) = 0.0, points[0]
            for t, v in points[1:]:
                if t != prev_t:
                    area += 0.5 * (v + prev_v) * (t - prev_t) / (unit_s * 1e9)
                prev_t, prev_v = t, v
            series.append({"name": measurement, "tags": dict(zip(by, group, strict=True)),
                           "columns": ["time", "integral"], "values": [["1970-01-01T00:00:00Z", area]]})
        return _result(*series)
    return compute


def expect_stop_after_error(data: Dataset) -> dict[str, Any]:
    """Statement 0 runs, statement 1 fails with its own error, statement 2 is 'not executed'."""
    events = sum(1 for _, _, f in data.rows("events") if "code" in f)
    return {"results": [
        {"statement_id": 0, "series": [{"name": "events", "columns": ["time", "count"],
                                        "values": [["1970-01-01T00:00:00Z", events]]}]},
        {"statement_id": 1, "error": "database not found: nosuchdb"},
        {"statement_id": 2, "error": "not executed"}]}


# ---------------------------------------------------------------- corpus

Expected = Callable[[Dataset], dict[str, Any]]


@dataclass(frozen=True)
class CorpusEntry:
    """One /query request. `deviation` says why InfluxDB 1.6.7 is not the oracle; then `expected` is."""

    id: str
    query: str
    db: str | None = DB
    epoch: str | None = None
    deviation: str | None = None
    expected: Expected | None = None
    shape_only: bool = False  # random results (sample): compare series, columns and row counts
    expect_error: bool = False  # a parse error (400) or a statement error is the point of the entry
    method: str = "GET"
    extra: dict[str, str] = field(default_factory=dict)

    def params(self) -> dict[str, str]:
        out = {"q": self.query, **self.extra}
        if self.db is not None:
            out["db"] = self.db
        if self.epoch is not None:
            out["epoch"] = self.epoch
        return out


CORPUS: list[CorpusEntry] = []


def q(id: str, query: str, **kw: Any) -> None:
    CORPUS.append(CorpusEntry(id, query, **kw))


# --- raw selects: fields, *, tags, casts, arithmetic, aliases
q("select-star", "SELECT * FROM weather")
q("select-star-ns", "SELECT * FROM weather", epoch="ns")
q("select-star-power", "SELECT * FROM power", epoch="ms")
q("select-star-events", "SELECT * FROM events")
q("select-field", "SELECT temp FROM weather", epoch="ns")
q("select-two-fields", "SELECT temp, humidity FROM weather")
q("select-quoted", 'SELECT "temp", "location" FROM "weather"')
q("select-field-and-tags", "SELECT temp, location, sensor, kind FROM weather", epoch="s")
q("select-cast-field-tag", "SELECT temp::field, location::tag FROM weather")
q("select-cast-integer", "SELECT humidity::integer FROM weather", epoch="ns")
q("select-cast-float", "SELECT humidity::float FROM weather", epoch="ns")
q("select-cast-float-to-integer", "SELECT temp::integer, humidity FROM weather", epoch="ns")
q("select-cast-other-family", "SELECT note::float, temp::string, raining::boolean FROM weather", epoch="ns")
q("select-cast-string-only", "SELECT temp::string FROM weather", epoch="ns")
q("select-star-field", "SELECT *::field FROM weather", epoch="ns")
q("select-star-tag-and-field", "SELECT *::tag, temp FROM weather", epoch="ns")
q("select-arith-mul-add", "SELECT temp * 2 + 1 FROM weather", epoch="ns")
q("select-arith-alias", "SELECT temp * 2 + 1 AS t2 FROM weather", epoch="ns")
q("select-arith-float-int", "SELECT temp - humidity FROM weather", epoch="ns")
q("select-arith-int-div", "SELECT humidity / 3 FROM weather", epoch="ns")
q("select-arith-mod", "SELECT humidity % 7 FROM weather", epoch="ns")
q("select-arith-parens", "SELECT (temp + 5) * (humidity - 10) AS x FROM weather", epoch="ns")
q("select-arith-two-cols", "SELECT watts / 1000 AS kw, counter * 2 FROM power", epoch="ns")
q("select-alias", 'SELECT temp AS "t", humidity AS h FROM weather', epoch="ns")
q("select-late-field", "SELECT pressure FROM weather", epoch="ns")
q("select-late-and-early", "SELECT temp, pressure FROM weather", epoch="ns")
q("select-string", "SELECT note FROM weather")
q("select-bool", "SELECT raining FROM weather", epoch="ns")
q("select-missing-field", "SELECT nosuchfield FROM weather")
q("select-missing-measurement", "SELECT * FROM nosuchmeasurement")
q("select-fq-name", 'SELECT watts FROM "diff"."autogen"."power"', epoch="ns")
q("select-rp-name", "SELECT watts FROM autogen.power", epoch="ns")
q("select-db-qualified-no-db", 'SELECT code FROM "diff".."events"', db=None, epoch="ns")
q("select-regex-measurement", "SELECT * FROM /^we/", epoch="ns")
q("select-regex-measurement-all", "SELECT * FROM /.*/", epoch="ns")
q("select-two-measurements", "SELECT * FROM weather, power", epoch="ns")
q("select-two-measurements-field", "SELECT temp, watts FROM weather, power", epoch="ns")
q("select-group-by-tag", "SELECT temp FROM weather GROUP BY location", epoch="ns")
q("select-group-by-two-tags", "SELECT temp, note FROM weather GROUP BY location, sensor")
q("select-group-by-star", "SELECT temp FROM weather GROUP BY *", epoch="ns")
q("select-group-by-missing-tag", "SELECT temp FROM weather GROUP BY kind", epoch="ns")
q("select-group-by-regex-tag", "SELECT watts FROM power GROUP BY /s.*/", epoch="ns")
q("select-post", "SELECT code, msg FROM events", method="POST", epoch="ns")

# --- WHERE on time, tags and fields
q("where-time-rfc3339", "SELECT temp FROM weather WHERE time > '2018-01-01T01:00:00Z'", epoch="ns")
q("where-time-range", f"SELECT temp FROM weather WHERE {W}", epoch="ns")
q("where-time-range-rfc-out", "SELECT humidity FROM weather WHERE time >= '2018-01-01T00:30:00Z' "
  "AND time <= '2018-01-01T01:30:00Z'")
q("where-time-fraction", "SELECT * FROM weather WHERE time >= '2018-01-01T00:00:00.5Z' AND "
  "time < '2018-01-01T01:00:00.25Z'", epoch="ns")
q("where-time-date-only", "SELECT code FROM events WHERE time >= '2018-01-01'", epoch="ns")
q("where-time-epoch-ms", "SELECT temp FROM weather WHERE time >= 1514768400000ms", epoch="ms")
q("where-time-epoch-s", "SELECT temp FROM weather WHERE time >= 1514768400s AND time < 1514772000s", epoch="ns")
q("where-time-epoch-ns", "SELECT code FROM events WHERE time >= 1514768400000000000 AND "
  "time <= 1514768401000000000", epoch="ns")
q("where-time-epoch-u", "SELECT code FROM events WHERE time > 1514764800000000u", epoch="u")
q("where-time-now-all", "SELECT code FROM events WHERE time > now() - 3650d", epoch="ns")
q("where-time-now-lt", "SELECT code FROM events WHERE time < now()", epoch="ns")
q("where-time-now-weeks", "SELECT code FROM events WHERE time > now() - 1000w AND time < now() + 1h", epoch="s")
q("where-time-equal", "SELECT * FROM events WHERE time = '2018-01-01T01:00:00Z'", epoch="ns")
q("where-time-arith", "SELECT code FROM events WHERE time >= '2018-01-01T00:00:00Z' + 1h", epoch="ns")
q("where-time-empty", "SELECT code FROM events WHERE time > '2030-01-01T00:00:00Z'")
q("where-tag-eq", "SELECT temp FROM weather WHERE location = 'berlin'", epoch="ns")
q("where-tag-eq-dq", "SELECT temp FROM weather WHERE \"location\" = 'new york'", epoch="ns")
q("where-tag-comma", "SELECT * FROM weather WHERE location = 'san,francisco'", epoch="ns")
q("where-tag-space", "SELECT * FROM power WHERE site = 'b c'", epoch="ns")
q("where-tag-neq", "SELECT temp FROM weather WHERE location != 'berlin'", epoch="ns")
q("where-tag-neq-ltgt", "SELECT temp FROM weather WHERE location <> 'berlin'", epoch="ns")
q("where-tag-regex", "SELECT temp FROM weather WHERE location =~ /^san/", epoch="ns")
q("where-tag-not-regex", "SELECT temp FROM weather WHERE location !~ /york/", epoch="ns")
q("where-tag-regex-ci", "SELECT temp FROM weather WHERE location =~ /(?i)BERLIN/", epoch="ns")
q("where-tag-partial", "SELECT temp FROM weather WHERE kind = 'indoor'", epoch="ns")
q("where-tag-empty", "SELECT temp FROM weather WHERE kind = ''", epoch="ns")
q("where-tag-nonexistent", "SELECT temp FROM weather WHERE location = 'paris'")
q("where-field-gt", "SELECT temp FROM weather WHERE temp > 10", epoch="ns")
q("where-field-int", "SELECT humidity FROM weather WHERE humidity <= 40", epoch="ns")
q("where-field-int-float-literal", "SELECT humidity FROM weather WHERE humidity > 50.5", epoch="ns")
q("where-field-and", "SELECT temp, humidity FROM weather WHERE temp > 10 AND humidity < 60", epoch="ns")
q("where-field-or", "SELECT humidity, raining FROM weather WHERE humidity >= 80 OR raining = true", epoch="ns")
q("where-field-string", "SELECT note FROM weather WHERE note = 'all good'", epoch="ns")
q("where-field-string-regex", "SELECT note FROM weather WHERE note =~ /noisy/", epoch="ns")
q("where-field-bool", "SELECT temp FROM weather WHERE raining = true", epoch="ns")
q("where-field-bool-false", "SELECT temp FROM weather WHERE raining = false", epoch="ns")
q("where-field-arith", "SELECT temp FROM weather WHERE temp * 2 > 40", epoch="ns")
q("where-field-neq", "SELECT state FROM power WHERE state != 'on'", epoch="ns")
q("where-parens", "SELECT temp FROM weather WHERE (location = 'berlin' OR location = 'new york') "
  "AND temp < 15", epoch="ns")
q("where-parens-or-field", "SELECT temp FROM weather WHERE location = 'berlin' AND (temp < 0 OR temp > 25)",
  epoch="ns")
q("where-tag-or-time", f"SELECT watts FROM power WHERE (site = 'a' OR phase = 'L2') AND {W}", epoch="ns")
q("where-all-kinds", "SELECT temp FROM weather WHERE sensor = 's1' AND temp > 0 AND "
  "time >= '2018-01-01T00:20:00Z' AND time < '2018-01-01T02:40:00Z'", epoch="ns")

# --- LIMIT / OFFSET / SLIMIT / SOFFSET / ORDER BY
q("limit", "SELECT * FROM weather LIMIT 5", epoch="ns")
q("limit-offset", "SELECT * FROM weather LIMIT 3 OFFSET 2", epoch="ns")
q("offset-only", "SELECT code FROM events OFFSET 6", epoch="ns", expected=expect_offset_only,
  deviation="InfluxDB 1.6.7 returns a single row for OFFSET without LIMIT")
q("order-desc", "SELECT code FROM events ORDER BY time DESC", epoch="ns")
q("order-desc-limit", "SELECT * FROM weather ORDER BY time DESC LIMIT 4", epoch="ns")
q("order-asc", "SELECT code FROM events ORDER BY time ASC", epoch="ns")
q("limit-per-series", "SELECT temp FROM weather GROUP BY location LIMIT 2", epoch="ns")
q("limit-per-series-desc", "SELECT temp FROM weather GROUP BY location ORDER BY time DESC LIMIT 2", epoch="ns")
q("slimit", "SELECT temp FROM weather GROUP BY location SLIMIT 2", epoch="ns")
q("slimit-soffset", "SELECT temp FROM weather GROUP BY location SLIMIT 1 SOFFSET 1", epoch="ns")
q("slimit-limit", "SELECT temp FROM weather GROUP BY * LIMIT 1 SLIMIT 3", epoch="ns",
  expected=expect_group_by_star_slimit,
  deviation="InfluxDB 1.6.7 picks the SLIMIT series in index (series key) order, then sorts them by group")
q("soffset-past-end", "SELECT temp FROM weather GROUP BY location SLIMIT 2 SOFFSET 10")

# --- aggregates (whole range, no GROUP BY time)
for fn, fld in [("count", "temp"), ("count", "note"), ("count", "raining"), ("count", "pressure"),
                ("mean", "temp"), ("mean", "humidity"), ("median", "temp"), ("median", "humidity"),
                ("mode", "humidity"), ("mode", "note"), ("mode", "raining"), ("spread", "temp"),
                ("spread", "humidity"), ("stddev", "temp"), ("stddev", "humidity"), ("sum", "temp"),
                ("sum", "humidity"), ("first", "temp"), ("last", "temp"), ("min", "temp"), ("max", "temp"),
                ("first", "note"), ("last", "raining"), ("min", "humidity"), ("max", "humidity")]:
    q(f"agg-{fn}-{fld}", f"SELECT {fn}({fld}) FROM weather")
q("agg-count-star", "SELECT count(*) FROM weather")
q("agg-mean-star", "SELECT mean(*) FROM weather")
q("agg-max-star", "SELECT max(*) FROM power", epoch="ns")
q("agg-count-regex-field", "SELECT count(/^(temp|humidity)$/) FROM weather")
q("agg-count-time-range", f"SELECT count(temp) FROM weather WHERE {W}")
q("agg-mean-time-range-ns", f"SELECT mean(temp) FROM weather WHERE {W}", epoch="ns")
q("agg-several", "SELECT mean(temp), max(temp), min(temp), count(temp) FROM weather")
q("agg-several-alias", "SELECT mean(temp) AS avg, spread(humidity) AS sp FROM weather")
q("agg-arith", "SELECT mean(temp) * 2 + 1 FROM weather")
q("agg-arith-two", "SELECT max(temp) - min(temp) AS range FROM weather")
q("agg-group-tag", "SELECT count(temp), mean(temp) FROM weather GROUP BY location")
q("agg-group-two-tags", "SELECT sum(humidity) FROM weather GROUP BY location, sensor")
q("agg-group-star", "SELECT mean(watts) FROM power GROUP BY *")
q("agg-where-tag", "SELECT mean(watts), sum(counter) FROM power WHERE site = 'b c'")
q("agg-where-field", "SELECT count(temp) FROM weather WHERE humidity > 50")
q("agg-distinct-string", "SELECT distinct(note) FROM weather")
q("agg-distinct-int", "SELECT distinct(humidity) FROM weather WHERE location = 'berlin'")
q("agg-distinct-group", "SELECT distinct(state) FROM power GROUP BY site")
q("agg-count-distinct", "SELECT count(distinct(note)) FROM weather")
q("agg-integral", "SELECT integral(temp) FROM weather")
INTEGRAL_ORDER = "InfluxDB 1.6.7 emits integral() series of a GROUP BY in descending tag order"
q("agg-integral-unit", "SELECT integral(temp, 1m) FROM weather GROUP BY location",
  expected=expect_integral("weather", "temp", ["location"], 60), deviation=INTEGRAL_ORDER)
q("agg-integral-watts-h", "SELECT integral(watts, 1h) FROM power GROUP BY site, phase",
  expected=expect_integral("power", "watts", ["phase", "site"], 3600), deviation=INTEGRAL_ORDER)
q("agg-integral-int", "SELECT integral(counter, 1h) FROM power WHERE site = 'a'")
q("agg-median-group", "SELECT median(watts) FROM power GROUP BY phase")
q("agg-stddev-group", "SELECT stddev(watts) FROM power GROUP BY site")
q("agg-mode-group", "SELECT mode(state) FROM power GROUP BY site, phase")

# --- selectors
q("sel-max-with-time", "SELECT max(temp) FROM weather", epoch="ns")
q("sel-min-with-field", "SELECT min(temp), humidity FROM weather", epoch="ns")
q("sel-max-with-tag", "SELECT max(temp), location FROM weather", epoch="ns")
q("sel-first-group", "SELECT first(temp) FROM weather GROUP BY location", epoch="ns")
q("sel-last-group", "SELECT last(note) FROM weather GROUP BY location, sensor", epoch="ns")
q("sel-max-group", "SELECT max(watts) FROM power GROUP BY site", epoch="ns")
q("sel-last-star", "SELECT last(*) FROM power", epoch="ns")
q("sel-percentile-50", "SELECT percentile(temp, 50) FROM weather", epoch="ns")
q("sel-percentile-90", "SELECT percentile(humidity, 90) FROM weather", epoch="ns")
q("sel-percentile-0", "SELECT percentile(temp, 0) FROM weather", epoch="ns")
q("sel-percentile-100", "SELECT percentile(temp, 100) FROM weather", epoch="ns")
q("sel-percentile-frac", "SELECT percentile(watts, 33.3) FROM power GROUP BY site", epoch="ns")
q("sel-top", "SELECT top(temp, 3) FROM weather", epoch="ns")
q("sel-bottom", "SELECT bottom(temp, 3) FROM weather", epoch="ns")
q("sel-top-int", "SELECT top(humidity, 5) FROM weather", epoch="ns")
q("sel-top-tag", "SELECT top(temp, location, 2) FROM weather", epoch="ns")
q("sel-bottom-tag-field", "SELECT bottom(watts, site, 2), phase FROM power", epoch="ns")
q("sel-top-group", "SELECT top(watts, 2) FROM power GROUP BY site", epoch="ns")
q("sel-top-with-fields", "SELECT top(temp, 2), humidity, note FROM weather", epoch="ns")
q("sel-sample", "SELECT sample(temp, 3) FROM weather", shape_only=True)
q("sel-sample-group", "SELECT sample(watts, 2) FROM power GROUP BY site", shape_only=True)
q("sel-sample-big", "SELECT sample(code, 100) FROM events", epoch="ns")

# --- GROUP BY time, fill
GT = f"FROM weather WHERE {W}"
q("gbt-mean-30m", f"SELECT mean(temp) {GT} GROUP BY time(30m)")
q("gbt-mean-30m-ns", f"SELECT mean(temp) {GT} GROUP BY time(30m)", epoch="ns")
q("gbt-offset", f"SELECT mean(temp) {GT} GROUP BY time(30m, 15m)")
q("gbt-neg-offset", f"SELECT count(temp) {GT} GROUP BY time(1h, -10m)")
q("gbt-tag", f"SELECT mean(temp) {GT} GROUP BY time(1h), location")
q("gbt-tag-first", f"SELECT mean(temp) {GT} GROUP BY location, time(1h)")
q("gbt-star", f"SELECT max(humidity) {GT} GROUP BY time(1h), *")
q("gbt-count-10m", f"SELECT count(temp) {GT} GROUP BY time(10m)")
q("gbt-count-fill-0", f"SELECT count(temp) FROM weather WHERE location = 'berlin' AND {W} GROUP BY time(10m) fill(0)")
q("gbt-fill-null", f"SELECT mean(temp) FROM weather WHERE sensor = 's1' AND {W} GROUP BY time(5m) fill(null)")
q("gbt-fill-none", f"SELECT mean(temp) FROM weather WHERE sensor = 's1' AND {W} GROUP BY time(5m) fill(none)")
q("gbt-fill-number", f"SELECT mean(temp) FROM weather WHERE sensor = 's1' AND {W} GROUP BY time(5m) fill(-1.5)")
q("gbt-fill-int", f"SELECT max(humidity) FROM weather WHERE sensor = 's1' AND {W} GROUP BY time(5m) fill(7)")
q("gbt-fill-previous", f"SELECT mean(temp) FROM weather WHERE sensor = 's1' AND {W} GROUP BY time(5m) "
  "fill(previous)")
q("gbt-fill-linear", f"SELECT mean(temp) FROM weather WHERE sensor = 's1' AND {W} GROUP BY time(5m) fill(linear)")
q("gbt-fill-linear-tag", f"SELECT mean(humidity) {GT} GROUP BY time(10m), location fill(linear)")
q("gbt-fill-previous-tag", f"SELECT last(pressure) {GT} GROUP BY time(15m), sensor fill(previous)")
q("gbt-late-field", f"SELECT mean(pressure) {GT} GROUP BY time(30m)")
q("gbt-max-selector", f"SELECT max(temp) {GT} GROUP BY time(30m)", epoch="ns")
q("gbt-first-last", f"SELECT first(temp), last(temp) {GT} GROUP BY time(1h)")
# selector ties (equal times across series, equal values over time), every field type
for _fn in ("first", "last"):
    for _field in ("f", "i", "s", "b"):
        q(f"ties-{_fn}-{_field}", f"SELECT {_fn}({_field}) FROM ties", epoch="ns")
q("ties-max-min", "SELECT max(f) FROM ties; SELECT min(i) FROM ties", epoch="ns")
q("ties-two-selectors", "SELECT first(f), last(s) FROM ties", epoch="ns")
q("ties-gbt", f"SELECT first(f), last(i), max(f), min(i), first(b) FROM ties WHERE {W} GROUP BY time(30m)")
q("ties-group-host", "SELECT first(f), last(b) FROM ties GROUP BY host", epoch="ns")
q("gbt-multi-agg", f"SELECT mean(temp), median(temp), spread(temp), stddev(temp) {GT} GROUP BY time(1h)")
q("gbt-sum-int", f"SELECT sum(humidity) {GT} GROUP BY time(45m)")
q("gbt-percentile", f"SELECT percentile(temp, 75) {GT} GROUP BY time(1h)", epoch="ns")
q("gbt-mode", f"SELECT mode(note) {GT} GROUP BY time(1h)")
q("gbt-count-distinct", f"SELECT count(distinct(note)) {GT} GROUP BY time(1h)")
q("gbt-distinct", f"SELECT distinct(note) FROM weather WHERE location = 'berlin' AND {W} GROUP BY time(1h)")
q("gbt-integral", f"SELECT integral(temp, 1m) {GT} GROUP BY time(1h)")
q("gbt-top", f"SELECT top(temp, 2) {GT} GROUP BY time(1h)", epoch="ns")
q("gbt-bottom-tag", f"SELECT bottom(humidity, 1) {GT} GROUP BY time(1h), location", epoch="ns")
q("gbt-desc", f"SELECT mean(temp) {GT} GROUP BY time(30m) ORDER BY time DESC")
q("gbt-limit", f"SELECT mean(temp) {GT} GROUP BY time(10m), location LIMIT 2")
q("gbt-limit-offset", f"SELECT mean(temp) {GT} GROUP BY time(10m) LIMIT 3 OFFSET 4")
q("gbt-slimit", f"SELECT mean(temp) {GT} GROUP BY time(1h), location SLIMIT 2 SOFFSET 1")
q("gbt-desc-limit", f"SELECT count(temp) {GT} GROUP BY time(10m) fill(0) ORDER BY time DESC LIMIT 3")
q("gbt-partial-range", "SELECT mean(temp) FROM weather WHERE time >= '2018-01-01T00:17:00Z' AND "
  "time <= '2018-01-01T01:43:00Z' GROUP BY time(20m)")
q("gbt-1d-tz", "SELECT count(code) FROM events WHERE time >= '2017-12-31T00:00:00Z' AND "
  "time < '2018-01-03T00:00:00Z' GROUP BY time(1d) tz('America/New_York')")
q("gbt-1h-tz", f"SELECT count(temp) {GT} GROUP BY time(1h) tz('Asia/Kolkata')")
q("gbt-tz-raw", "SELECT code FROM events tz('Europe/Berlin')")
q("gbt-tz-agg", f"SELECT mean(temp) {GT} GROUP BY time(30m) tz('Europe/Berlin')", epoch="ms")
q("gbt-now-relative", "SELECT count(code) FROM events WHERE time > now() - 3650d GROUP BY time(1d) fill(none)")
q("gbt-1w", "SELECT count(code) FROM events WHERE time >= '2017-12-01T00:00:00Z' AND "
  "time < '2018-01-15T00:00:00Z' GROUP BY time(1w)")
q("gbt-power-tags", f"SELECT mean(watts) FROM power WHERE {W} GROUP BY time(1h), site, phase")
q("gbt-power-where-tag", f"SELECT max(counter) FROM power WHERE site = 'b c' AND {W} GROUP BY time(30m), phase")
q("gbt-arith", f"SELECT mean(temp) + max(humidity) {GT} GROUP BY time(1h)")
q("gbt-where-field", f"SELECT count(temp) {GT} AND temp > 10 GROUP BY time(30m)")

# --- transformations
q("tr-derivative", "SELECT derivative(temp) FROM weather WHERE location = 'berlin' AND sensor = 's1'", epoch="ns")
q("tr-derivative-1m", "SELECT derivative(temp, 1m) FROM weather GROUP BY location, sensor", epoch="ns")
q("tr-derivative-agg", f"SELECT derivative(mean(temp), 10m) {GT} GROUP BY time(30m)")
q("tr-nnd", "SELECT non_negative_derivative(counter) FROM power GROUP BY site, phase", epoch="ns")
q("tr-nnd-1m", "SELECT non_negative_derivative(counter, 1m) FROM power WHERE site = 'a' GROUP BY phase", epoch="ns")
q("tr-nnd-agg", f"SELECT non_negative_derivative(max(counter), 1m) FROM power WHERE {W} GROUP BY time(15m), phase")
q("tr-difference", "SELECT difference(humidity) FROM weather GROUP BY location, sensor", epoch="ns")
q("tr-difference-float", "SELECT difference(watts) FROM power WHERE site = 'a' AND phase = 'L1'", epoch="ns")
q("tr-difference-agg", f"SELECT difference(mean(watts)) FROM power WHERE {W} GROUP BY time(30m)")
q("tr-nn-difference", "SELECT non_negative_difference(counter) FROM power GROUP BY site, phase", epoch="ns")
q("tr-nn-difference-agg", f"SELECT non_negative_difference(last(counter)) FROM power WHERE {W} "
  "GROUP BY time(30m), phase")
q("tr-moving-average", "SELECT moving_average(temp, 3) FROM weather GROUP BY location, sensor", epoch="ns")
q("tr-moving-average-agg", f"SELECT moving_average(mean(temp), 2) {GT} GROUP BY time(30m)")
q("tr-cumsum", "SELECT cumulative_sum(humidity) FROM weather GROUP BY location, sensor", epoch="ns")
q("tr-cumsum-float", "SELECT cumulative_sum(watts) FROM power WHERE site = 'b c' AND phase = 'L2'", epoch="ns")
q("tr-cumsum-agg", f"SELECT cumulative_sum(sum(watts)) FROM power WHERE {W} GROUP BY time(30m)")
q("tr-elapsed", "SELECT elapsed(code) FROM events", epoch="ns")
q("tr-elapsed-1s", "SELECT elapsed(temp, 1s) FROM weather WHERE location = 'berlin' GROUP BY sensor", epoch="ns")
q("tr-elapsed-1m", "SELECT elapsed(watts, 1m) FROM power GROUP BY site, phase", epoch="ns")
q("tr-elapsed-string", "SELECT elapsed(msg, 1ms) FROM events", epoch="ns")
q("tr-derivative-desc", "SELECT derivative(code, 1s) FROM events ORDER BY time DESC", epoch="ns")
q("tr-difference-limit", "SELECT difference(code) FROM events LIMIT 3", epoch="ns")
q("tr-mixed", "SELECT derivative(watts, 1m), difference(watts) FROM power WHERE site = 'a' AND phase = 'L1'",
  epoch="ns")

# --- subqueries
q("sub-mean-of-max", f"SELECT mean(max) FROM (SELECT max(temp) {GT} GROUP BY time(30m), location)")
q("sub-max-of-mean", "SELECT max(mean) FROM (SELECT mean(temp) FROM weather GROUP BY location)")
q("sub-sum-filter", "SELECT sum(watts) FROM (SELECT watts FROM power WHERE phase = 'L1')")
q("sub-group-outer", "SELECT mean(d) FROM (SELECT non_negative_derivative(counter, 1m) AS d FROM power "
  "GROUP BY site, phase) GROUP BY site")
q("sub-raw-where", "SELECT * FROM (SELECT temp, humidity FROM weather WHERE temp > 20)", epoch="ns")
q("sub-count-buckets", f"SELECT count(m) FROM (SELECT mean(temp) AS m {GT} GROUP BY time(10m) fill(none))")
q("sub-outer-where", "SELECT temp FROM (SELECT temp, location FROM weather) WHERE location = 'berlin'", epoch="ns")
q("sub-outer-gbt", f"SELECT max(c) FROM (SELECT count(temp) AS c {GT} GROUP BY time(10m), location) "
  f"WHERE {W} GROUP BY time(1h)")
q("sub-arith", "SELECT a * 10 FROM (SELECT mean(humidity) AS a FROM weather GROUP BY sensor) GROUP BY sensor")

# --- several statements in one request
q("multi-two-selects", "SELECT count(temp) FROM weather; SELECT count(watts) FROM power")
q("multi-select-show", "SELECT last(code) FROM events; SHOW MEASUREMENTS; SHOW TAG KEYS FROM power", epoch="ns")
q("multi-with-error", "SELECT count(code) FROM events; SELECT count(x) FROM nosuchdb.autogen.m; "
  "SELECT count(watts) FROM power", expected=expect_stop_after_error,
  deviation="InfluxDB 1.6.7 reports the failing statement as 'not executed' and drops the next one "
  "(its executor reuses the failing statement id); edgets follows the intended shape")
q("multi-trailing-semicolon", "SELECT count(code) FROM events;")

# --- SHOW
q("show-databases", "SHOW DATABASES", db=None)
q("show-measurements", "SHOW MEASUREMENTS")
q("show-measurements-limit", "SHOW MEASUREMENTS LIMIT 2")
q("show-measurements-offset", "SHOW MEASUREMENTS LIMIT 2 OFFSET 1")
q("show-measurements-with-regex", "SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)W/ LIMIT 100")
q("show-measurements-with-eq", "SHOW MEASUREMENTS WITH MEASUREMENT = weather")
q("show-measurements-where", "SHOW MEASUREMENTS WHERE site = 'b c'")
q("show-measurements-on", "SHOW MEASUREMENTS ON tsbs", db=None)
q("show-tag-keys", "SHOW TAG KEYS")
q("show-tag-keys-from", "SHOW TAG KEYS FROM weather")
q("show-tag-keys-from-quoted", 'SHOW TAG KEYS FROM "power"')
q("show-tag-keys-limit", "SHOW TAG KEYS LIMIT 1")
q("show-tag-keys-on", "SHOW TAG KEYS ON tsbs FROM cpu", db=None)
q("show-tag-keys-where", "SHOW TAG KEYS FROM weather WHERE location = 'berlin'")
q("show-tag-values", 'SHOW TAG VALUES WITH KEY = "location"')
q("show-tag-values-from", 'SHOW TAG VALUES FROM weather WITH KEY = "location"')
q("show-tag-values-in", 'SHOW TAG VALUES FROM weather WITH KEY IN ("location", "kind")')
q("show-tag-values-regex-key", "SHOW TAG VALUES FROM power WITH KEY =~ /s.*/")
q("show-tag-values-neq-key", "SHOW TAG VALUES FROM weather WITH KEY != location")
q("show-tag-values-where", "SHOW TAG VALUES FROM weather WITH KEY = sensor WHERE location = 'berlin'")
q("show-tag-values-where-regex", "SHOW TAG VALUES FROM weather WITH KEY = location WHERE location =~ /o/")
q("show-tag-values-limit", "SHOW TAG VALUES FROM weather WITH KEY = location LIMIT 2")
q("show-tag-values-limit-offset", "SHOW TAG VALUES FROM weather WITH KEY = location LIMIT 1 OFFSET 1")
q("show-tag-values-on", "SHOW TAG VALUES ON tsbs FROM cpu WITH KEY = hostname", db=None)
q("show-field-keys", "SHOW FIELD KEYS")
q("show-field-keys-from", "SHOW FIELD KEYS FROM weather")
q("show-field-keys-rp", 'SHOW FIELD KEYS FROM "autogen"."power"')
q("show-field-keys-regex", "SHOW FIELD KEYS FROM /^e/")
q("show-series", "SHOW SERIES")
q("show-series-from", "SHOW SERIES FROM power")
q("show-series-where", "SHOW SERIES FROM weather WHERE location = 'berlin'")
q("show-series-limit", "SHOW SERIES LIMIT 3")
q("show-series-limit-offset", "SHOW SERIES FROM weather LIMIT 2 OFFSET 1")
q("show-retention-policies", "SHOW RETENTION POLICIES")
q("show-retention-policies-on", 'SHOW RETENTION POLICIES ON "diff"', db=None)
q("show-retention-policies-on-tsbs", "SHOW RETENTION POLICIES ON tsbs", db=None)
q("show-continuous-queries", "SHOW CONTINUOUS QUERIES", db=None)
q("show-continuous-queries-on-error", "SHOW CONTINUOUS QUERIES ON diff", expect_error=True)
q("show-continuous-error", "SHOW CONTINUOUS", expect_error=True)
q("multi-group-by-star-raw", f"SELECT * FROM weather, events WHERE {W} GROUP BY *", epoch="ns")
q("multi-group-by-star-agg", f"SELECT max(*) FROM weather, power WHERE {W} GROUP BY *")
q("multi-group-by-star-time", f"SELECT count(*) FROM /.*/ WHERE {W} GROUP BY time(1h), *")
q("multi-group-by-missing-tag", f"SELECT count(temp) FROM weather, events WHERE {W} GROUP BY kind")
q("card-series-estimate", "SHOW SERIES CARDINALITY")
q("card-series-estimate-on", "SHOW SERIES CARDINALITY ON tsbs", db=None)
q("card-series-estimate-missing-db", "SHOW SERIES CARDINALITY ON nosuchdb", db=None)
q("card-series-exact", "SHOW SERIES EXACT CARDINALITY")
q("card-series-from", "SHOW SERIES CARDINALITY FROM weather, power")
q("card-series-where", "SHOW SERIES EXACT CARDINALITY WHERE location = 'berlin' OR site = 'a'")
q("card-series-where-field", "SHOW SERIES EXACT CARDINALITY WHERE temp > 1")
q("card-series-group-by", "SHOW SERIES EXACT CARDINALITY FROM weather GROUP BY location")
q("card-series-group-by-star", "SHOW SERIES EXACT CARDINALITY GROUP BY *")
q("card-series-limit", "SHOW SERIES EXACT CARDINALITY LIMIT 1")
q("card-series-offset", "SHOW SERIES EXACT CARDINALITY OFFSET 1")
q("card-series-time-error", "SHOW SERIES EXACT CARDINALITY WHERE time > 0", expect_error=True)
q("card-series-missing-db", "SHOW SERIES EXACT CARDINALITY ON nosuchdb", db=None, expect_error=True)
q("card-measurement-estimate", "SHOW MEASUREMENT CARDINALITY")
q("card-measurement-exact", "SHOW MEASUREMENT EXACT CARDINALITY")
q("card-measurement-regex", "SHOW MEASUREMENT EXACT CARDINALITY FROM /e/")
q("card-measurement-where", "SHOW MEASUREMENT CARDINALITY WHERE location =~ /o/")
q("card-measurement-group-by", "SHOW MEASUREMENT EXACT CARDINALITY GROUP BY site")
q("card-tag-key", "SHOW TAG KEY CARDINALITY")
q("card-tag-key-exact-where", "SHOW TAG KEY EXACT CARDINALITY FROM weather WHERE sensor = 's2'")
q("card-tag-key-group-by", "SHOW TAG KEY EXACT CARDINALITY FROM weather GROUP BY sensor")
q("card-tag-key-time-error", "SHOW TAG KEY CARDINALITY WHERE time > 0", expect_error=True)
q("card-tag-values", 'SHOW TAG VALUES CARDINALITY WITH KEY = "location"')
q("card-tag-values-in", 'SHOW TAG VALUES EXACT CARDINALITY FROM weather WITH KEY IN ("location", "kind")')
q("card-tag-values-regex", "SHOW TAG VALUES EXACT CARDINALITY WITH KEY =~ /s/ WHERE phase != 'L1'")
q("card-tag-values-absent-tag", "SHOW TAG VALUES EXACT CARDINALITY WITH KEY = location WHERE kind !~ /x/")
q("card-series-absent-tag", "SHOW SERIES EXACT CARDINALITY WHERE kind != 'indoor'")
q("card-tag-values-neq", "SHOW TAG VALUES EXACT CARDINALITY WITH KEY != location GROUP BY location")
q("card-tag-values-time", "SHOW TAG VALUES EXACT CARDINALITY WITH KEY = site WHERE time > 0")
q("card-field-key", "SHOW FIELD KEY CARDINALITY")
q("card-field-key-exact-from", "SHOW FIELD KEY EXACT CARDINALITY FROM /^[pe]/")
q("card-field-key-where", "SHOW FIELD KEY CARDINALITY WHERE site = 'a'")
q("card-field-key-group-by", "SHOW FIELD KEY EXACT CARDINALITY GROUP BY sensor")
q("card-field-key-time-error", "SHOW FIELD KEY CARDINALITY WHERE time > 0", expect_error=True)
q("card-on-tsbs", "SHOW TAG VALUES EXACT CARDINALITY ON tsbs WITH KEY = hostname", db=None)
q("card-parse-error", "SHOW TAG VALUES CARDINALITY", expect_error=True)
q("into-parse-error-backref", "SELECT temp INTO diff..:MEASUREMENT_x FROM weather", expect_error=True)
q("card-parse-error-measurement", "SHOW MEASUREMENT", expect_error=True)
q("card-parse-error-exact", "SHOW FIELD KEY EXACT LIMIT 1", expect_error=True)
q("card-series-estimate-limit", "SHOW SERIES CARDINALITY LIMIT 1")
q("card-measurement-on", "SHOW MEASUREMENT CARDINALITY ON tsbs", db=None)
q("card-measurement-exact-offset", "SHOW MEASUREMENT EXACT CARDINALITY LIMIT 2 OFFSET 1")

# --- Grafana
GRAFANA_TF = "time >= 1514764800000ms and time <= 1514775599000ms"
q("grafana-mean", f'SELECT mean("temp") FROM "weather" WHERE {GRAFANA_TF} GROUP BY time(1m) fill(null)', epoch="ms")
q("grafana-mean-5m", f'SELECT mean("temp") FROM "weather" WHERE {GRAFANA_TF} GROUP BY time(5m) fill(null)',
  epoch="ms")
q("grafana-tag-filter", f'SELECT mean("watts") FROM "power" WHERE ("site" = \'b c\') AND {GRAFANA_TF} '
  "GROUP BY time(10m) fill(null)", epoch="ms")
q("grafana-tag-regex", f'SELECT mean("temp") FROM "weather" WHERE ("location" =~ /^(berlin|new york)$/) '
  f"AND {GRAFANA_TF} GROUP BY time(15m), \"location\" fill(none)", epoch="ms")
q("grafana-autogen", f'SELECT max("humidity") FROM "autogen"."weather" WHERE {GRAFANA_TF} '
  "GROUP BY time(30m) fill(previous)", epoch="ms")
q("grafana-now-rel", 'SELECT last("code") FROM "events" WHERE time > now() - 3650d', epoch="ms")
q("grafana-raw", f'SELECT "watts" FROM "power" WHERE "phase" = \'L1\' AND {GRAFANA_TF}', epoch="ms")
q("grafana-nnd", f'SELECT non_negative_derivative(mean("counter"), 1s) FROM "power" WHERE {GRAFANA_TF} '
  'GROUP BY time(10m), "site" fill(null)', epoch="ms")
q("grafana-meta-measurements", "SHOW MEASUREMENTS LIMIT 100", epoch="ms")
q("grafana-meta-measurements-filter", "SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)pow/ LIMIT 100", epoch="ms")
q("grafana-meta-tag-keys", 'SHOW TAG KEYS FROM "weather"', epoch="ms")
q("grafana-meta-tag-values", 'SHOW TAG VALUES FROM "weather" WITH KEY = "location"', epoch="ms")
q("grafana-meta-tag-values-where", 'SHOW TAG VALUES FROM "power" WITH KEY = "phase" WHERE "site" = \'a\'',
  epoch="ms")
q("grafana-meta-field-keys", 'SHOW FIELD KEYS FROM "autogen"."weather"', epoch="ms")
q("grafana-meta-rps", 'SHOW RETENTION POLICIES on "diff"', epoch="ms")
q("grafana-meta-databases", "SHOW DATABASES", db=None, epoch="ms")
q("grafana-post-form", f'SELECT mean("temp") FROM "weather" WHERE {GRAFANA_TF} GROUP BY time(30m) fill(null)',
  epoch="ms", method="POST")

# --- TSBS devops shapes (on the 5-host, 2-hour cpu slice)
TS = "time >= '2016-01-01T00:30:00Z' and time < '2016-01-01T01:30:00Z'"
T = {"db": TSBS_DB}
q("tsbs-single-groupby-1-1-1", f"SELECT max(usage_user) from cpu where (hostname = 'host_1') and {TS} "
  "group by time(1m)", **T)
q("tsbs-single-groupby-5-1-1", "SELECT max(usage_user), max(usage_system), max(usage_idle), max(usage_nice), "
  f"max(usage_iowait) from cpu where (hostname = 'host_3') and {TS} group by time(1m)", **T)
q("tsbs-single-groupby-1-4-1", "SELECT max(usage_user) from cpu where (hostname = 'host_0' or hostname = 'host_2' "
  f"or hostname = 'host_3' or hostname = 'host_4') and {TS} group by time(1m)", **T)
q("tsbs-cpu-max-all-1", "SELECT max(usage_user),max(usage_system),max(usage_idle),max(usage_nice),"
  "max(usage_iowait),max(usage_irq),max(usage_softirq),max(usage_steal),max(usage_guest),max(usage_guest_nice) "
  "from cpu where (hostname = 'host_2') and time >= '2016-01-01T00:00:00Z' and time < '2016-01-01T02:00:00Z' "
  "group by time(1h)", **T)
q("tsbs-double-groupby-1", "SELECT mean(usage_user) from cpu where time >= '2016-01-01T00:00:00Z' and "
  "time < '2016-01-01T02:00:00Z' group by time(1h),hostname", **T)
q("tsbs-double-groupby-5", "SELECT mean(usage_user), mean(usage_system), mean(usage_idle), mean(usage_nice), "
  "mean(usage_iowait) from cpu where time >= '2016-01-01T00:00:00Z' and time < '2016-01-01T02:00:00Z' "
  "group by time(1h),hostname", **T)
q("tsbs-high-cpu-all", "SELECT * from cpu where usage_user > 90.0  and time >= '2016-01-01T00:00:00Z' and "
  "time < '2016-01-01T02:00:00Z'", epoch="ns", **T)
q("tsbs-high-cpu-1", "SELECT * from cpu where usage_user > 50.0 and (hostname = 'host_4') and "
  "time >= '2016-01-01T00:00:00Z' and time < '2016-01-01T02:00:00Z'", epoch="ns", **T)
q("tsbs-lastpoint", 'SELECT * from cpu group by "hostname" order by time desc limit 1', epoch="ns", **T)
q("tsbs-groupby-orderby-limit", "SELECT max(usage_user) from cpu WHERE time < '2016-01-01T01:10:00Z' "
  "group by time(1m) limit 5", **T)
q("tsbs-count", "SELECT count(usage_user) FROM cpu GROUP BY hostname", **T)
q("tsbs-show-tag-values-rack", "SHOW TAG VALUES FROM cpu WITH KEY = rack", **T)

# --- errors: parse errors (400, same text) and statement errors (200 with an error inside)
for i, text in enumerate(["SELECT", "SELECT FROM weather", "SELEC * FROM weather", "SELECT * FROM weather WHERE",
                          "SELECT mean(temp) FROM weather GROUP BY time(", "SHOW TAG VALUES FROM weather",
                          "SELECT * FROM weather WHERE location = 'berlin", "SELECT * FROM weather LIMIT -1",
                          "SELECT * FROM weather WHERE location =~ /(/", "SHOW FOO", "SELECT * FROM",
                          "SELECT * FROM weather ORDER BY temp"]):
    q(f"err-parse-{i}", text, expect_error=True)
q("err-db-not-found", "SELECT * FROM weather", db="nosuchdb", expect_error=True)
for i, literal in enumerate(["2018-02-30T00:00:00Z", "2018-01-01T24:00:00Z", "2018-01-01T00:00:00", "2018-01-32",
                             "0000-01-01T00:00:00Z", "1000-01-01 00:00:00", "3000-01-01T00:00:00Z",
                             "2262-04-11T23:47:16.854775807Z", "2018-1-1", "yesterday"]):
    q(f"err-time-literal-{i}", f"SELECT max(temp) FROM weather WHERE time >= '{literal}' GROUP BY time(1m)",
      expect_error=True)
q("err-db-required", "SELECT * FROM weather", db=None, expect_error=True)
q("err-mixing", "SELECT temp, mean(temp) FROM weather", expect_error=True)
q("select-tags-only", "SELECT location FROM weather")
q("fill-without-group-by", "SELECT code FROM events fill(3)", epoch="ns")
q("err-mean-string", "SELECT mean(note) FROM weather", expect_error=True)
q("err-gbt-zero", "SELECT temp FROM weather GROUP BY time(0s)", expected=lambda data: {"results": [
    {"statement_id": 0, "error": "group by interval must be positive"}]},
  deviation="InfluxDB 1.6.7 silently ignores GROUP BY time(0s) on a raw query; edgets rejects it")
q("err-derivative-needs-agg", f"SELECT derivative(temp, 1m) {GT} GROUP BY time(5m)", expect_error=True)
q("err-gbt-needs-agg", f"SELECT temp {GT} GROUP BY time(5m)", expect_error=True)
q("err-percentile-args", "SELECT percentile(temp) FROM weather", expect_error=True)
q("err-top-args", "SELECT top(temp) FROM weather", expect_error=True)
q("err-unknown-function", "SELECT foo(temp) FROM weather", expect_error=True)
q("err-show-tag-values-no-db", 'SHOW TAG VALUES WITH KEY = "location"', db=None, expect_error=True)


# ---------------------------------------------------------------- DDL, applied in order to both servers

DDL_DB = "ddl"
DDL_SHOWS: list[dict[str, str]] = [  # /query parameters (db=DDL_DB, epoch=ns added) asked after each step
    {"q": f"SHOW RETENTION POLICIES ON {DDL_DB}"}, {"q": "SHOW DATABASES"}, {"q": "SHOW MEASUREMENTS"},
    {"q": "SHOW SERIES"}, {"q": "SHOW TAG KEYS"}, {"q": 'SHOW TAG VALUES WITH KEY = "host"'},
    {"q": "SHOW FIELD KEYS"}, {"q": "SHOW FIELD KEYS FROM short.m3"}, {"q": "SHOW FIELD KEYS", "rp": "long"},
    {"q": "SHOW SERIES FROM short.m1"}, {"q": "SHOW SERIES EXACT CARDINALITY"},
    {"q": "SELECT count(*) FROM m1"}, {"q": "SELECT count(*) FROM short.m1"},
    {"q": f"SELECT count(*) FROM {DDL_DB}.long.m1"}, {"q": f"SELECT count(*) FROM {DDL_DB}.autogen.m1"},
    {"q": f"SELECT count(*) FROM {DDL_DB}..m1"}, {"q": "SELECT count(*) FROM m1", "rp": "short"},
    {"q": "SELECT * FROM short./.*/ GROUP BY *"}, {"q": "SELECT * FROM /.*/", "rp": "long"},
    {"q": "SELECT v FROM nope.m1"}, {"q": "SHOW RETENTION POLICIES ON ddlw"},
    {"q": "SHOW RETENTION POLICIES ON ddlx"},
]


# InfluxDB 1.6.7's in-memory index keeps what these answers read from after the step named
# (docs/influxql.md, Deviations): the tag values of dropped series, and the measurements, tag keys
# and series of a dropped retention policy. edgets answers from the data; from that step on
# these answers are not compared.
DDL_STALE_INDEX_FROM: dict[str, str] = {
    'SHOW TAG VALUES WITH KEY = "host"': "DROP SERIES FROM m1 WHERE host = 'c'",
    **{q: f"DROP RETENTION POLICY short ON {DDL_DB}"
       for q in ("SHOW MEASUREMENTS", "SHOW TAG KEYS", "SHOW SERIES", "SELECT * FROM /.*/")},
}
# InfluxDB 1.6.7 answers a write to a missing policy with 500; edgets with 404 (same body):
# the request is wrong, retrying it cannot help (docs/influxql.md, Deviations).
DDL_WRITE_STATUS_DEVIATION = {500: 404}


@dataclass(frozen=True)
class DdlWrite:
    """A /write of `lines` (made from now(), see ddl_recent_lines) with rp=`rp` ("": none)."""

    rp: str
    lines: str


# Steps applied in order to both servers (each a statement or a write), every DDL_SHOWS answer
# compared after each. Writes go to policies whose durations reject old points: their lines are
# {recent} templates filled with times of the last hour (the same bytes to both servers).
DDL_STEPS: list[str | DdlWrite] = [
    f"CREATE DATABASE {DDL_DB}",
    f"CREATE RETENTION POLICY short ON {DDL_DB} DURATION 2d REPLICATION 1",
    DdlWrite("short", "m1,host=s v={i}i {t}\nm3,host=s,zone=z q={i}.25 {t}"),
    DdlWrite("nope", "m1,host=n v={i}i {t}"),
    f'CREATE RETENTION POLICY "long" ON {DDL_DB} DURATION 52w REPLICATION 1 SHARD DURATION 1d DEFAULT',
    DdlWrite("", "m1,host=l v={i}i {t}\nm4 flag=true {t}"),
    f"ALTER RETENTION POLICY short ON {DDL_DB} DURATION 3d",
    f"ALTER RETENTION POLICY autogen ON {DDL_DB} DEFAULT",
    "DELETE FROM m1 WHERE host = 'b'",
    "DROP SERIES FROM m1 WHERE host = 'c'",
    "DELETE FROM m1 WHERE time < '2018-01-01T00:02:00Z'",
    "DROP MEASUREMENT m2",
    "DELETE FROM m3 WHERE zone = 'z'",
    DdlWrite("short", "m3,host=s,zone=y q={i}.5 {t}"),
    f"DROP RETENTION POLICY short ON {DDL_DB}",
    f"CREATE RETENTION POLICY short ON {DDL_DB} DURATION 2d REPLICATION 1",
    "DROP MEASUREMENT m1",
    f"DROP RETENTION POLICY autogen ON {DDL_DB}",
    # CREATE DATABASE ... WITH: that policy instead of autogen; conflicts; InfluxDB's minimum duration
    "CREATE DATABASE ddlw WITH DURATION 3d REPLICATION 1 SHARD DURATION 1h NAME fast",
    "CREATE DATABASE ddlw WITH NAME fast",
    "CREATE DATABASE ddlw WITH DURATION 4d NAME fast",
    "CREATE DATABASE ddlw WITH NAME other",
    "CREATE DATABASE ddlw",
    "CREATE DATABASE ddlx WITH DURATION 2d",
    f"CREATE RETENTION POLICY tiny ON {DDL_DB} DURATION 30m REPLICATION 1",
    f"ALTER RETENTION POLICY long ON {DDL_DB} DURATION 30m",
    'CREATE DATABASE "a/b"',
    f'CREATE RETENTION POLICY "x/y" ON {DDL_DB} DURATION 1d REPLICATION 1',
    "DROP DATABASE ddlw",
    "DROP DATABASE ddlx",
    f"DROP DATABASE {DDL_DB}",
]
DDL_LINES = "\n".join(
    [f"m1,host={h} v={i}i {T0_NS + i * 60_000_000_000}" for h in "abc" for i in range(5)]
    + [f"m2,host=a w={i}.5 {T0_NS + i * 60_000_000_000}" for i in range(3)]) + "\n"


def ddl_recent_lines(template: str, now_ns: int, points: int = 3) -> str:
    """`template` (lines with {i} and {t}) for points minutes before now_ns (whole minutes)."""
    minute = 60_000_000_000
    base = now_ns // minute * minute
    return "".join(template.format(i=i, t=base - (points - i) * minute) + "\n" for i in range(points))


# ---------------------------------------------------------------- SELECT INTO
INTO_DB = "intodb"
# run in order with db=diff (POST); each answer and then every INTO_SHOWS answer compared
INTO_STEPS: list[str] = [
    f"SELECT mean(temp) INTO {INTO_DB}..w_mean FROM weather WHERE {W} GROUP BY time(30m), location",
    f"SELECT * INTO {INTO_DB}..ev_raw FROM events WHERE {W}",
    f"SELECT * INTO {INTO_DB}..w_raw FROM weather WHERE {W} GROUP BY *",
    f"SELECT temp, location, raining INTO {INTO_DB}..w_cols FROM weather WHERE {W}",
    f"SELECT last(*) INTO {INTO_DB}..:MEASUREMENT FROM /^(power|weather)$/ WHERE {W} GROUP BY time(1h), *",
    f"SELECT count(watts) INTO {INTO_DB}.autogen.p_count FROM power WHERE {W} GROUP BY time(20m) fill(0)",
    f"SELECT mean(watts) INTO {INTO_DB}..p_fill FROM power WHERE {W} GROUP BY time(20m), site fill(0)",
    f"SELECT max(temp) INTO {INTO_DB}..w_max FROM weather WHERE {W}",
    f"SELECT count(code) INTO {INTO_DB}..ev_count FROM events",
    f"SELECT temp INTO {INTO_DB}..w_none FROM weather WHERE temp > 1000 AND {W}",
    f"SELECT humidity::float INTO {INTO_DB}..w_raw FROM weather WHERE {W} GROUP BY *",
    f"SELECT mean(temp) INTO {INTO_DB}..w_mean FROM weather WHERE {W} GROUP BY time(30m), location",
    f"SELECT temp INTO nosuchdb..x FROM weather WHERE {W}",
    f"SELECT temp INTO nosuchrp.x FROM weather WHERE {W}",
]
INTO_SHOWS: list[str] = [
    "SHOW MEASUREMENTS", "SHOW FIELD KEYS", "SHOW TAG KEYS", "SHOW SERIES",
    "SELECT * FROM /.*/ GROUP BY *",
]
