"""KubeEdge mapper HTTP intake: the `pushMethod: http` receiver (POST requestPath -> form decode ->
submit; 204/400/413/503 + Retry-After) and the `dbMethod: influxdb2` string -> model type coercion."""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from aiohttp import web

from ingest.device_models import DEFAULT_NAMESPACE, DeviceRegistry, PropertyType, coerce_value
from ingest.http_write import BadRequest, BodyTooLarge, read_body
from ingest.kubeedge_payloads import DecodeCounts, PayloadConfig, PayloadError, decode_http_form
from storage.batch import Batch, FieldType
from storage.engine import Overloaded, StorageEngine, StorageError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PathStats:
    received: int = 0
    stored: int = 0
    malformed: int = 0
    rejected: int = 0  # storage refused some values (type conflict, retention)
    overloaded: int = 0  # answered 503 + Retry-After
    bad_values: int = 0


class HttpPushReceiver:
    """Handles mapper HTTP pushes for the paths in `payloads.http_paths` into `database`."""

    def __init__(self, engine: StorageEngine, payloads: PayloadConfig, database: str,
                 max_body_size: int = 1 << 20) -> None:
        self.engine = engine
        self.payloads = payloads
        self.database = database
        self.max_body_size = max_body_size
        self.stats: dict[str, PathStats] = collections.defaultdict(PathStats)

    def add_routes(self, app: web.Application) -> list[str]:
        """Register a POST route per requestPath; returns the paths skipped (taken by the API)."""
        taken = {r.resource.canonical for r in app.router.routes() if r.method == "POST"
                 and r.resource is not None}
        skipped = []
        for path in sorted(self.payloads.http_paths):
            if path in taken or not path.startswith("/"):
                log.error("HTTP push requestPath %r is not usable (taken by the API or not "
                          "absolute); skipped", path)
                skipped.append(path)
                continue
            app.router.add_post(path, functools.partial(self.handle, path))
        return skipped

    async def handle(self, path: str, request: web.Request) -> web.Response:
        stats = self.stats[path]
        stats.received += 1
        try:
            body = await read_body(request, self.max_body_size)
        except BodyTooLarge:
            stats.malformed += 1
            return _answer(413, f"body exceeds {self.max_body_size} bytes")
        except BadRequest as exc:
            stats.malformed += 1
            return _answer(400, str(exc))
        counts = DecodeCounts()
        try:
            batches = decode_http_form(path, body, self.payloads, time.time_ns(), counts)
        except PayloadError as exc:
            stats.malformed += 1
            log.warning("malformed HTTP push on %s: %s; excerpt %r", path, exc.reason, exc.excerpt)
            return _answer(400, f"malformed push body: {exc.reason}")
        stats.bad_values += counts.bad_values
        if not batches:
            stats.stored += 1
            return web.Response(status=204)
        try:
            outcome = await asyncio.wrap_future(self.engine.submit(self.database, batches))
        except Overloaded as exc:
            stats.overloaded += 1
            retry = str(max(1, int(round(exc.retry_after))))
            return _answer(503, f"storage overloaded, retry later ({exc})", {"Retry-After": retry})
        except StorageError as exc:
            stats.rejected += 1
            return _answer(503, f"storage error: {exc}", {"Retry-After": "1"})
        if outcome.errors:
            stats.rejected += 1
            return _answer(400, "partial write: " + "; ".join(outcome.errors[:10]))
        stats.stored += 1
        return web.Response(status=204)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {path: {name: getattr(s, name) for name in PathStats.__slots__}
                for path, s in self.stats.items()}


def _answer(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": message}),
                        content_type="application/json", headers=headers)


# ---------------------------------------------------------------------------- dbMethod influxdb2


def influx_field_types(device_dir: str | Path, registry: DeviceRegistry) -> dict[tuple[str, str], PropertyType]:
    """(measurement, fieldKey) of every property's `pushMethod.dbMethod.influxdb2` in the Device
    YAML of `device_dir` -> the property's Device Model type (from `registry`)."""
    types: dict[tuple[str, str], PropertyType] = {}
    for path in sorted(Path(device_dir).iterdir()):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(doc, dict) or doc.get("kind") != "Device":
                continue
            meta = doc.get("metadata") or {}
            namespace = meta.get("namespace") or DEFAULT_NAMESPACE
            for prop in (doc.get("spec") or {}).get("properties") or []:
                influx = (((prop.get("pushMethod") or {}).get("dbMethod") or {})
                          .get("influxdb2") or {})
                data = influx.get("influxdb2DataConfig") or {}
                if not data.get("measurement") or not data.get("fieldKey"):
                    continue
                ptype = registry.property_type(namespace, str(meta.get("name")), prop.get("name"))
                if ptype is not None:
                    types[(data["measurement"], data["fieldKey"])] = ptype
    return types


class InfluxStringCoercion:
    """Wraps the engine for the HTTP write routes: string field values of the mapper's
    `dbMethod: influxdb2` lines (`stat beta1test="25"`) in `database` become the Device Model type.
    Values that do not convert go to string field `<field>_raw` (or are dropped: 'reject')."""

    def __init__(self, engine: StorageEngine, database: str,
                 types: dict[tuple[str, str], PropertyType], on_bad_value: str = "raw") -> None:
        self._engine = engine
        self.database = database
        self.types = types
        self.on_bad_value = on_bad_value
        self.bad_values = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def submit(self, db: str, batches: list[Batch], rp: str | None = None) -> Future:
        if db == self.database and self.types:
            batches = [self.coerce(b) for b in batches]
        return self._engine.submit(db, batches, rp=rp)

    def coerce(self, batch: Batch) -> Batch:
        fields = dict(batch.fields)
        changed = False
        for name, array in batch.fields.items():
            ptype = self.types.get((batch.measurement, name))
            target = None if ptype is None else ptype.field_type
            if target is None or target is FieldType.STRING or not pa.types.is_string(array.type):
                continue
            try:
                fields[name] = pc.cast(array, target.arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                fields[name], raw = self._coerce_slowly(array, ptype)
                if raw is not None and self.on_bad_value == "raw":
                    fields[name + "_raw"] = raw
            changed = True
        if not changed:
            return batch
        return Batch(batch.measurement, batch.series, batch.series_id, batch.time, fields, batch.line)

    def _coerce_slowly(self, array: pa.Array, ptype: PropertyType) -> tuple[pa.Array, pa.Array | None]:
        """Per value (only when the vectorised cast met a value it cannot convert)."""
        good: list[object] = []
        raw: list[str | None] = []
        for value in array.to_pylist():
            typed = None
            if value is not None:
                try:
                    typed = coerce_value(value, ptype)
                except ValueError:
                    self.bad_values += 1
            good.append(None if typed is None else typed[1])
            raw.append(value if typed is None else None)
        ftype = ptype.field_type
        assert ftype is not None
        has_raw = any(v is not None for v in raw)
        return pa.array(good, ftype.arrow_type), (pa.array(raw, pa.string()) if has_raw else None)
