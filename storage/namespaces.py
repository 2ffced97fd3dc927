"""Data namespaces: where the rows of one (database, retention policy) live in storage.

The default policy `autogen` keeps the plain database name as its key; any other policy's rows
live under "<db>/<rp>". Names may not contain "/" (InfluxDB's meta.ValidName), so keys are unique.
"""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_RP = "autogen"
SEPARATOR = "/"
_FORBIDDEN = ("/", "\\")


def data_key(db: str, rp: str) -> str:
    """The storage key of the rows of database `db` under retention policy `rp`."""
    return db if rp == DEFAULT_RP else f"{db}{SEPARATOR}{rp}"


def split_data_key(key: str) -> tuple[str, str]:
    """(database, retention policy) of a storage key (inverse of data_key)."""
    db, sep, rp = key.partition(SEPARATOR)
    return (db, rp) if sep else (db, DEFAULT_RP)


def is_policy_key(key: str) -> bool:
    """True for the key of a non-default-named policy ("<db>/<rp>"), never a database name."""
    return SEPARATOR in key


def keys_of_database(db: str, keys: Iterable[str]) -> list[str]:
    """The keys among `keys` (an iterable of storage keys) that belong to database `db`."""
    prefix = db + SEPARATOR
    return [k for k in keys if k == db or k.startswith(prefix)]


def invalid_name(name: str) -> str | None:
    """Why `name` cannot be a database or retention policy name (None if it can), as
    InfluxDB's meta.ValidName: not empty, not "." or "..", printable, no "/" or "\\"."""
    if name in ("", ".", "..") or any(c in name for c in _FORBIDDEN) or not name.isprintable():
        return "invalid name"
    return None
