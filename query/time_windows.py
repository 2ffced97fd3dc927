"""GROUP BY time() windows in a tz() zone, as InfluxDB 1.x lays them out across DST changes.

A window starts at the local-time multiple of the interval; when a zone's UTC offset changes by
less than the interval, the windows after it shift with it (a day stays midnight to midnight).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

_SECOND = 1_000_000_000
_PROBE_S = 6 * 3600  # zones do not change their offset twice within six hours


def _offset_s(zone: ZoneInfo, seconds: int) -> int:
    moment = datetime.fromtimestamp(seconds, tz=UTC).astimezone(zone)
    offset = moment.utcoffset()
    return int(offset.total_seconds()) if offset else 0


class ZoneWindows:
    """Window starts of GROUP BY time(interval, offset) tz(zone) for instants in [lo, hi]."""

    def __init__(self, zone: str, interval: int, offset: int, lo: int, hi: int) -> None:
        self.interval = interval
        self.offset = offset
        self._zone = ZoneInfo(zone)
        margin = 2 * interval + 2 * 86_400 * _SECOND  # windows reach back from lo and past hi
        first = max(lo - margin, -(2**62)) // _SECOND
        last = min(hi + margin, 2**62) // _SECOND
        changes: list[int] = []  # first second of each new offset (ns)
        offsets = [_offset_s(self._zone, first)]
        probe = first
        while probe < last:
            step = min(_PROBE_S, last - probe)
            after = _offset_s(self._zone, probe + step)
            if after != offsets[-1]:
                a, b = probe, probe + step  # offset(a) is the old one, offset(b) the new one
                while b - a > 1:
                    mid = (a + b) // 2
                    if _offset_s(self._zone, mid) == offsets[-1]:
                        a = mid
                    else:
                        b = mid
                changes.append(b * _SECOND)
                offsets.append(after)
            probe += step
        self._changes = np.array(changes, dtype=np.int64)
        self._offsets = np.array(offsets, dtype=np.int64) * _SECOND

    def zone_offset(self, t: np.ndarray) -> np.ndarray:
        """UTC offset (ns) of the zone at each instant."""
        return self._offsets[np.searchsorted(self._changes, t, side="right")]

    def starts(self, t: np.ndarray) -> np.ndarray:
        """Window start of each instant (InfluxDB's IteratorOptions.Window)."""
        interval = self.interval
        shifted = t - self.offset
        zone = self.zone_offset(shifted)
        start = shifted - (shifted + zone) % interval
        moved = zone - self.zone_offset(start)  # the offset changed between start and t
        start += np.where((moved != 0) & (np.abs(moved) < interval), moved, 0)
        return start + self.offset

    def start_of(self, t: int) -> int:
        return int(self.starts(np.array([t], dtype=np.int64))[0])

    def _offset_at(self, t: int) -> int:
        return int(self._offsets[np.searchsorted(self._changes, t, side="right")])

    def window(self, t: int) -> tuple[int, int]:
        """(start, end) of the window of instant t (InfluxDB's Window): next to an offset change
        a window can be an hour longer (clocks go back) or shorter (clocks go forward)."""
        interval = self.interval
        shifted = t - self.offset
        zone = self._offset_at(shifted)
        dt = (shifted + zone) % interval
        start = shifted - dt
        moved = zone - self._offset_at(start)
        if moved and abs(moved) < interval:
            start += moved
        end = shifted + interval - dt
        end_zone = self._offset_at(end)
        moved = zone - end_zone
        if moved and abs(moved) < interval and (moved > 0 or self._offset_at(end + moved) == end_zone):
            end += moved
        return start + self.offset, end + self.offset

    def assign(self, times: np.ndarray, descending: bool = False) -> np.ndarray:
        """Window start of each instant of one series (any order), windows taken in query order
        as InfluxDB reduces them: a window is that of its first instant (the earliest; the
        latest with ORDER BY time DESC) and holds the following instants inside it. Without an
        offset change nearby this is starts(times)."""
        if len(times) == 0:
            return times.copy()
        lo, hi = int(times.min()), int(times.max())
        near = np.searchsorted(self._changes, [lo - 2 * self.interval, hi + 2 * self.interval])
        if near[0] == near[1]:
            return self.starts(times)
        order = np.argsort(times, kind="stable")
        ordered = times[order]
        out = np.empty(len(times), dtype=np.int64)
        if descending:
            i = len(ordered) - 1
            while i >= 0:
                start, _end = self.window(int(ordered[i]))
                j = min(int(np.searchsorted(ordered, start, side="left")), i)
                out[order[j:i + 1]] = start
                i = j - 1
            return out
        i = 0
        while i < len(ordered):
            start, end = self.window(int(ordered[i]))
            j = max(int(np.searchsorted(ordered, end, side="left")), i + 1)
            out[order[i:j]] = start
            i = j
        return out

    def fill_times(self, first: int, last: int | None, present: list[int], limit: int,
                   descending: bool = False) -> list[int]:
        """Window times of one series as InfluxDB's fill iterator emits them: the expected
        window steps from `first` through `last` by the interval (re-aligned when the zone's
        offset changes by less than the interval), and a window holding data (`present`, in
        query order) that is at or before the expected one is emitted in its place — so a data
        window off the stepped grid (next to an offset change) shows up besides the filled one.
        `descending` (ORDER BY time DESC) steps back from the newest window: `first` is then the
        newest, `last` the oldest (None: stop with the data) and the result descending.
        ValueError past `limit` windows."""
        sign = -1 if descending else 1
        out: list[int] = []
        at = first
        current = self._offset_at(at)
        i = 0
        while i < len(present) or (last is not None and sign * at <= sign * last):
            if i < len(present) and sign * present[i] <= sign * at:
                out.append(present[i])
                i += 1
            else:
                out.append(at)
            if len(out) > limit:
                raise ValueError(f"more than {limit} windows")
            at += sign * self.interval
            now = self._offset_at(at - 1)
            if now != current:
                diff = current - now
                if abs(diff) < self.interval:
                    at += diff
                current = now
        return out

    def assign_groups(self, times: np.ndarray, group: np.ndarray | None, descending: bool = False) -> np.ndarray:
        """assign() within each group of rows (group: a number per row, None: one group)."""
        lo, hi = (int(times.min()), int(times.max())) if len(times) else (0, 0)
        near = np.searchsorted(self._changes, [lo - 2 * self.interval, hi + 2 * self.interval])
        if group is None or near[0] == near[1]:
            return self.assign(times, descending)
        out = np.empty(len(times), dtype=np.int64)
        for g in np.unique(group).tolist():
            rows = np.flatnonzero(group == g)
            out[rows] = self.assign(times[rows], descending)
        return out
