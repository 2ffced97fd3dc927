"""Decoded segment chunks kept for reuse: a byte-bounded LRU keyed by (file, offset, CRC).

Segments are immutable, so a decoded chunk stays right for as long as its file exists; entries
of deleted files simply age out. Dashboards re-reading recent windows skip read, CRC and decode.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class ChunkCache:
    """Thread-safe LRU of decoded chunks holding at most `max_bytes` of array data (0: off)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"chunk cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Keep `value` (its arrays must never be modified again); evicts least recently used
        entries to stay within max_bytes. A value larger than the whole budget is not kept."""
        if nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._entries[key] = (value, nbytes)
            self.bytes += nbytes
            while self.bytes > self.max_bytes:
                _key, (_value, size) = self._entries.popitem(last=False)
                self.bytes -= size

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"chunk_cache_bytes": self.bytes, "chunk_cache_entries": len(self._entries),
                    "chunk_cache_hits": self.hits, "chunk_cache_misses": self.misses}
