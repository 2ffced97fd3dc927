"""The catalog: databases, retention policies, field types and tag keys per policy namespace.

A checkpoint of the WAL's DDL/schema effects up to `applied_seq`, persisted by write-tmp/fsync/rename.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from storage.batch import FieldType
from storage.fsio import pack_blob, unpack_blob, write_atomic
from storage.namespaces import DEFAULT_RP, data_key, is_policy_key, keys_of_database

CATALOG_MAGIC = b"EDGTSCAT"
CATALOG_VERSION = 1
HOUR_NS = 3600 * 10**9
DAY_NS = 24 * HOUR_NS


def default_shard_group_duration(duration_ns: int) -> int:
    """InfluxDB 1.x rule: infinite or >= 6 months -> 7d, >= 2d -> 1d, else 1h."""
    if duration_ns == 0 or duration_ns >= 180 * DAY_NS:
        return 7 * DAY_NS
    if duration_ns >= 2 * DAY_NS:
        return DAY_NS
    return HOUR_NS


@dataclass
class RetentionPolicy:
    name: str
    duration_ns: int = 0  # 0 = infinite
    shard_group_duration_ns: int = 7 * DAY_NS
    replication: int = 1
    default: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "duration_ns": self.duration_ns,
            "shard_group_duration_ns": self.shard_group_duration_ns,
            "replication": self.replication,
            "default": self.default,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> RetentionPolicy:
        return cls(
            name=d["name"],
            duration_ns=int(d["duration_ns"]),
            shard_group_duration_ns=int(d["shard_group_duration_ns"]),
            replication=int(d["replication"]),
            default=bool(d["default"]),
        )


@dataclass
class MeasurementSchema:
    fields: dict[str, FieldType] = field(default_factory=dict)
    tag_keys: set[str] = field(default_factory=set)
    flushed_seq: int = 0  # WAL records <= this seq are durable in segments (segment layer sets it)


@dataclass
class DatabaseEntry:
    """A database (its policies, and the schema of its autogen namespace) or, under a
    "<db>/<rp>" key, the schema of another policy's namespace (no policies of its own)."""

    rps: dict[str, RetentionPolicy] = field(default_factory=dict)
    measurements: dict[str, MeasurementSchema] = field(default_factory=dict)
    default_name: str = DEFAULT_RP  # the default policy's name, kept when it is dropped (InfluxDB's
    # "retention policy not found: <it>" for writes and reads that name no policy)

    def default_rp(self) -> RetentionPolicy | None:
        for rp in self.rps.values():
            if rp.default:
                return rp
        return None


class Catalog:
    """In-memory catalog state; not thread-safe (the engine holds a lock around it)."""

    def __init__(self) -> None:
        self.applied_seq = 0
        self.databases: dict[str, DatabaseEntry] = {}
        self.ddl_epoch = 0  # bumped on every DDL (not persisted): submit() re-validates if it moved

    def copy(self) -> Catalog:
        other = Catalog()
        other.applied_seq = self.applied_seq
        other.databases = copy.deepcopy(self.databases)
        other.ddl_epoch = self.ddl_epoch
        return other

    # --- DDL (the same op dicts are stored in WAL DDL records) -------------------------------
    def apply_ddl(self, op: dict[str, Any]) -> None:
        """Apply one DDL op. Ops are validated by the engine before they are logged, so replay
        of a valid op never fails; unknown targets are ignored (idempotent replay)."""
        self.ddl_epoch += 1
        kind = op["op"]
        db = op["db"]
        if kind == "create_db":  # with "rp": that policy is the database's only one, its default
            entry = self.ensure_database(db, with_autogen="rp" not in op)
            if "rp" in op:
                rp = RetentionPolicy.from_wire(op["rp"])
                entry.rps[rp.name] = rp
                entry.default_name = rp.name
        elif kind == "drop_db":
            for key in keys_of_database(db, list(self.databases)):
                del self.databases[key]
        elif kind == "drop_measurement":
            for key in op.get("namespaces", [db]):
                entry = self.databases.get(key)
                if entry is not None:
                    entry.measurements.pop(op["measurement"], None)
        elif kind in ("create_rp", "alter_rp"):
            entry = self.ensure_database(db)
            rp = RetentionPolicy.from_wire(op["rp"])
            if rp.default:
                for other in entry.rps.values():
                    other.default = False
                entry.default_name = rp.name
            entry.rps[rp.name] = rp
        elif kind == "drop_rp":  # the policy, and every row it held (ops with "namespaces")
            entry = self.databases.get(db)
            if entry is not None:
                entry.rps.pop(op["rp_name"], None)
            if "namespaces" in op:
                if op["rp_name"] == DEFAULT_RP:
                    if entry is not None:
                        entry.measurements.clear()
                else:
                    self.databases.pop(data_key(db, op["rp_name"]), None)
        elif kind == "flushed":
            entry = self.databases.get(db)
            if entry is not None and op["measurement"] in entry.measurements:
                schema = entry.measurements[op["measurement"]]
                schema.flushed_seq = max(schema.flushed_seq, int(op["seq"]))
        else:
            raise ValueError(f"unknown catalog op {kind!r}")

    def ensure_database(self, key: str, with_autogen: bool = True) -> DatabaseEntry:
        """The entry of a database (created with the autogen policy unless told otherwise) or
        of a policy namespace."""
        entry = self.databases.get(key)
        if entry is None:
            entry = DatabaseEntry()
            if with_autogen and not is_policy_key(key):
                entry.rps[DEFAULT_RP] = RetentionPolicy(DEFAULT_RP, 0, 7 * DAY_NS, 1, True)
            self.databases[key] = entry
        return entry

    def database_names(self) -> list[str]:
        """Databases in creation order (policy namespaces left out)."""
        return [k for k in self.databases if not is_policy_key(k)]

    # --- schema --------------------------------------------------------------------------------
    def assign_types(self, key: str, measurement: str, types: dict[str, FieldType]) -> list[str]:
        """Assign types to new fields of a namespace; return the names whose type conflicts
        (not assigned)."""
        schema = self.ensure_database(key).measurements.setdefault(measurement, MeasurementSchema())
        conflicts = []
        for name, ftype in types.items():
            have = schema.fields.get(name)
            if have is None:
                schema.fields[name] = ftype
            elif have != ftype:
                conflicts.append(name)
        return conflicts

    def learn(self, key: str, measurement: str, types: dict[str, FieldType], tag_keys: list[str]) -> bool:
        """Record the schema a logged write to namespace `key` carries (replay and the durable
        mirror). The record is the truth at its point in history, so its types override.
        Returns True if changed."""
        entry = self.ensure_database(key)
        schema = entry.measurements.get(measurement)
        if schema is None:
            schema = entry.measurements[measurement] = MeasurementSchema()
            changed = True
        else:
            changed = False
        for name, ftype in types.items():
            if schema.fields.get(name) != ftype:
                schema.fields[name] = ftype
                changed = True
        new_tags = set(tag_keys) - schema.tag_keys
        if new_tags:
            schema.tag_keys |= new_tags
            changed = True
        return changed

    # --- persistence ---------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        doc = {
            "applied_seq": self.applied_seq,
            "databases": {
                name: {
                    "rps": [rp.to_wire() for rp in entry.rps.values()],
                    "default_name": entry.default_name,
                    "measurements": {
                        m: {
                            "fields": {f: int(t) for f, t in s.fields.items()},
                            "tag_keys": sorted(s.tag_keys),
                            "flushed_seq": s.flushed_seq,
                        }
                        for m, s in entry.measurements.items()
                    },
                }
                for name, entry in self.databases.items()
            },
        }
        return pack_blob(CATALOG_MAGIC, CATALOG_VERSION, msgpack.packb(doc, use_bin_type=True))

    @classmethod
    def from_bytes(cls, data: bytes, path: Path) -> Catalog:
        """Parse a catalog file; raises CorruptFileError (or ValueError/KeyError on a bad doc)."""
        _version, payload = unpack_blob(data, CATALOG_MAGIC, CATALOG_VERSION, path)
        doc = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        cat = cls()
        cat.applied_seq = int(doc["applied_seq"])
        for name, d in doc["databases"].items():
            entry = DatabaseEntry()
            for rp in d["rps"]:
                entry.rps[rp["name"]] = RetentionPolicy.from_wire(rp)
            entry.default_name = d.get("default_name", DEFAULT_RP)
            for m, s in d["measurements"].items():
                entry.measurements[m] = MeasurementSchema(
                    fields={f: FieldType(t) for f, t in s["fields"].items()},
                    tag_keys=set(s["tag_keys"]),
                    flushed_seq=int(s["flushed_seq"]),
                )
            cat.databases[name] = entry
        return cat

    def save(self, path: Path, *, sync: bool = True) -> None:
        write_atomic(path, self.to_bytes(), sync=sync)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        return cls.from_bytes(path.read_bytes(), path)
