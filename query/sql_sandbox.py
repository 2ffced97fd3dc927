"""Read-only, sandboxed SQL over the stored measurements (one table per measurement) in DuckDB.

Owns the sandbox (no file or network access, locked configuration, SELECT only) and its limits.
"""

from __future__ import annotations

import threading
from typing import Protocol

import duckdb
import pyarrow as pa

from storage.engine import StorageError

ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class MeasurementSource(Protocol):
    def has_database(self, name: str) -> bool: ...
    def data_key(self, db: str, rp: str | None = None) -> str: ...
    def measurements(self, db: str) -> list[str]: ...
    def read(self, db: str, measurement: str) -> pa.Table: ...


class SqlError(Exception):
    """A query the user must fix; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def sandboxed_connection(memory_limit_bytes: int, threads: int = 2) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with external access off and its configuration locked."""
    con = duckdb.connect(config={"enable_external_access": False, "autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    con.execute(f"SET memory_limit='{int(memory_limit_bytes)}B'")
    con.execute(f"SET threads={int(threads)}")
    con.execute("SET lock_configuration=true")
    return con


def check_read_only(sql: str) -> None:
    """Refuse anything but SELECT/EXPLAIN statements (writes, PRAGMA, SET, COPY, ATTACH, ...)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(f"error parsing SQL: {exc}") from exc
    if not statements:
        raise SqlError("empty SQL query")
    for stmt in statements:
        if stmt.type not in ALLOWED:
            kind = str(stmt.type).rsplit(".", 1)[-1]
            raise SqlError(f"only read-only SELECT queries are allowed; refused a {kind} statement", 403)
    if len(statements) > 1:
        raise SqlError("one SQL statement per request")


def run_sql(source: MeasurementSource, db: str, sql: str, *, memory_limit_bytes: int = 1024**3,
            timeout_s: float = 30.0, rp: str | None = None) -> pa.Table:
    """Execute one read-only SELECT over the measurements of db's retention policy rp (None:
    its default policy); SqlError for anything refused."""
    check_read_only(sql)
    if not source.has_database(db):
        raise SqlError(f"database not found: {db}", 404)
    try:
        key = source.data_key(db, rp)
    except StorageError as exc:  # RetentionPolicyNotFound (the database exists)
        raise SqlError(f"retention policy not found: {rp}", 404) from exc
    con = sandboxed_connection(memory_limit_bytes)
    try:
        try:
            referenced = con.get_table_names(sql)
        except duckdb.Error as exc:
            raise SqlError(f"error parsing SQL: {exc}") from exc
        known = set(source.measurements(key))
        for name in referenced:
            if name in known:
                con.register(name, source.read(key, name))
        timer = threading.Timer(timeout_s, con.interrupt)
        timer.start()
        try:
            return con.sql(sql).to_arrow_table()
        except duckdb.InterruptException as exc:
            raise SqlError(f"query exceeded the time limit of {timeout_s:g}s and was cancelled", 408) from exc
        except duckdb.PermissionException as exc:
            raise SqlError(f"refused: {exc}", 403) from exc
        except duckdb.OutOfMemoryException as exc:
            raise SqlError(f"query exceeded the memory limit: {exc}", 413) from exc
        except duckdb.Error as exc:
            raise SqlError(str(exc)) from exc
        finally:
            timer.cancel()
    finally:
        con.close()
