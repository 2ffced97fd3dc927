"""Plain count/sum/mean/min/max per (tag group, time bucket) without DuckDB: numba kernels.

Used by the InfluxQL executor when storage already applied every WHERE term (the fast path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from numba import njit

from storage.engine import ColumnPart, numeric_column

BUCKET_AGGREGATES = frozenset(("count", "sum", "mean", "min", "max"))
DENSE_FOLDS = BUCKET_AGGREGATES | {"first", "last"}
"""Functions dense_bucket_columns folds."""

@dataclass(slots=True)
class BucketRuns:
    """One group's time buckets holding rows (ascending) and, per spec, each bucket's aggregate
    and how many values it saw (columnar: one list per spec)."""

    buckets: list[int]
    aggregates: list[list[Any]]
    counts: list[list[int]]

    def per_bucket(self) -> dict[int, list[Any]]:
        """{bucket: [aggregate per spec..., count per spec...]}: the executor's generic shape."""
        columns = [*self.aggregates, *self.counts]
        return {b: [col[r] for col in columns] for r, b in enumerate(self.buckets)}


@njit(cache=True, nogil=True)
def run_boundaries(key: np.ndarray) -> np.ndarray:
    """Start index of every run of equal values in `key` (sorted), plus len(key) at the end."""
    n = key.shape[0]
    starts = np.empty(n + 1, dtype=np.int64)
    runs = 0
    for i in range(n):
        if i == 0 or key[i] != key[i - 1]:
            starts[runs] = i
            runs += 1
    starts[runs] = n
    return starts[: runs + 1]


@njit(cache=True, nogil=True)
def is_sorted(key: np.ndarray) -> bool:
    for i in range(1, key.shape[0]):
        if key[i] < key[i - 1]:
            return False
    return True


@njit(cache=True, nogil=True)
def run_sums(values: np.ndarray, valid: np.ndarray, order: np.ndarray,
             bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per run [bounds[r], bounds[r+1]) of rows order[...] (identity when order is empty): the
    sum of the valid values (in the values' dtype) and how many there were."""
    runs = bounds.shape[0] - 1
    sums = np.zeros(runs, dtype=values.dtype)
    counts = np.zeros(runs, dtype=np.int64)
    permuted = order.shape[0] > 0
    for r in range(runs):
        total = sums[r]
        seen = 0
        for j in range(bounds[r], bounds[r + 1]):
            i = order[j] if permuted else j
            if valid[i]:
                total += values[i]
                seen += 1
        sums[r] = total
        counts[r] = seen
    return sums, counts


@njit(cache=True, nogil=True)
def run_extremes(values: np.ndarray, valid: np.ndarray, order: np.ndarray, bounds: np.ndarray,
                 want_max: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per run (as run_sums): the max (or min) of the valid values and how many there were; a
    run without values gets 0 and count 0 (the caller turns it into null). NaN propagates as in
    numpy's maximum/minimum."""
    runs = bounds.shape[0] - 1
    best = np.zeros(runs, dtype=values.dtype)
    counts = np.zeros(runs, dtype=np.int64)
    permuted = order.shape[0] > 0
    for r in range(runs):
        seen = 0
        current = values[0]
        for j in range(bounds[r], bounds[r + 1]):
            i = order[j] if permuted else j
            if not valid[i]:
                continue
            v = values[i]
            if seen == 0 or v != v:
                current = v
            elif current == current and ((v > current) if want_max else (v < current)):
                current = v
            seen += 1
        if seen:
            best[r] = current
        counts[r] = seen
    return best, counts


def _valid_values(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls as 0, validity) of a numeric column as numpy arrays."""
    values, valid = numeric_column(column)
    return values, (valid if valid.shape[0] else np.ones(len(values), dtype=np.bool_))


def group_ids(table: pa.Table, group_tags: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray], list[list[str]]]:
    """Dense group id per row for the tag combination, each tag's codes and dictionary."""
    n = table.num_rows
    group_id = np.zeros(n, dtype=np.int64)
    tag_codes: list[np.ndarray] = []
    dictionaries: list[list[str]] = []
    for tag in group_tags:
        if tag in table.column_names:
            encoded = table.column(tag).combine_chunks().fill_null("").dictionary_encode()
            codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            values = encoded.dictionary.to_pylist()
        else:
            codes, values = np.zeros(n, dtype=np.int64), [""]
        group_id = np.unique(group_id * len(values) + codes, return_inverse=True)[1].astype(np.int64)
        tag_codes.append(codes)
        dictionaries.append(values)
    return group_id, tag_codes, dictionaries


def bucket_aggregates(table: pa.Table, group_tags: Sequence[str], specs: Sequence[tuple[str, str]],
                      interval: int, offset: int) -> dict[tuple[str, ...], BucketRuns]:
    """The aggregates `specs` ((function, field) pairs, functions from BUCKET_AGGREGATES, fields
    numeric columns of `table`) of every (group of `group_tags` values, bucket of `interval`
    ns aligned to `offset`) holding rows. Mean is float; sum, min and max keep the field's type;
    a bucket without values of a field gets None (count: 0)."""
    n = table.num_rows
    if n == 0:
        return {}
    times = table.column("time").to_numpy()
    if times.dtype != np.int64:
        times = times.astype("datetime64[ns]").view(np.int64)
    buckets = (times - offset) // interval * interval + offset
    group_id, tag_codes, dictionaries = group_ids(table, group_tags)
    bucket_rank = (buckets - buckets.min()) // interval
    key = group_id * (int(bucket_rank.max()) + 1) + bucket_rank if group_tags else bucket_rank
    order = np.empty(0, dtype=np.int64)
    if not is_sorted(key):
        order = np.argsort(key, kind="stable")
        key = key[order]
    bounds = run_boundaries(key)
    first = bounds[:-1] if order.shape[0] == 0 else order[bounds[:-1]]
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    aggregates: list[list[Any]] = []
    counts: list[list[int]] = []
    for function, field_name in specs:
        if field_name not in columns:
            columns[field_name] = _valid_values(table.column(field_name))
        values, valid = columns[field_name]
        if function in ("min", "max"):
            result, count = run_extremes(values, valid, order, bounds, function == "max")
        else:
            result, count = run_sums(values, valid, order, bounds)
            if function == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    result = result.astype(np.float64) / count
            elif function == "count":
                result = count
        out = result.tolist()
        if function != "count":
            for i in np.flatnonzero(count == 0).tolist():
                out[i] = None
        aggregates.append(out)
        counts.append(count.tolist())
    run_buckets = buckets[first].tolist()
    if not group_tags:
        return {(): BucketRuns(run_buckets, aggregates, counts)}
    run_group = group_id[first]
    cuts = np.flatnonzero(np.diff(run_group)) + 1
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), len(run_buckets)]
    groups: dict[tuple[str, ...], BucketRuns] = {}
    for a, b in zip(starts, ends, strict=True):
        row = int(first[a])
        group = tuple(values[int(codes[row])] for codes, values in zip(tag_codes, dictionaries, strict=True))
        groups[group] = BucketRuns(run_buckets[a:b], [agg[a:b] for agg in aggregates],
                                   [cnt[a:b] for cnt in counts])
    return groups


def plain_rows(gaps: list[Any] | None, column_specs: list[int], runs: BucketRuns,
               buckets: list[int]) -> list[list[Any]]:
    """Result rows [bucket, value per column] of one group when every column is one plain
    aggregate (column_specs[k]: its spec's index in runs). `gaps`: each column's value in a
    bucket of `buckets` without values (None: fill(none), the bucket is left out); [] when no
    bucket of `buckets` holds a value."""
    values = [runs.aggregates[i] for i in column_specs]
    seen = [runs.counts[i] for i in column_specs]
    if gaps is None:
        wanted = set(buckets)
        rows = []
        for r, bucket in enumerate(runs.buckets):
            if bucket in wanted and any(c[r] for c in seen):
                rows.append([bucket, *[v[r] if c[r] else None for v, c in zip(values, seen, strict=True)]])
        return rows
    rows = [[bucket, *gaps] for bucket in buckets]
    position = {bucket: i for i, bucket in enumerate(buckets)}
    present = False
    for r, bucket in enumerate(runs.buckets):
        i = position.get(bucket)
        if i is None:
            continue
        row = rows[i]
        for k, (v, c) in enumerate(zip(values, seen, strict=True)):
            if c[r]:
                row[k + 1] = v[r]
                present = True
    return rows if present else []


# ---- dense buckets: every (group, bucket) cell at once, rows in any order --------------------------
FOLD_SUM, FOLD_MIN, FOLD_MAX, FOLD_FIRST, FOLD_LAST = 0, 1, 2, 3, 4
_FOLD_KIND = {"count": FOLD_SUM, "sum": FOLD_SUM, "mean": FOLD_SUM, "min": FOLD_MIN, "max": FOLD_MAX,
              "first": FOLD_FIRST, "last": FOLD_LAST}


@njit(cache=True, nogil=True)
def fold_buckets(times: np.ndarray, groups: np.ndarray, values: np.ndarray, valid: np.ndarray, origin: int,
                 interval: int, buckets: int, kind: int, acc: np.ndarray, seen: np.ndarray) -> None:
    """Folds each valid value (valid empty: every value) into the cell groups[i] * buckets +
    (time - origin) // interval of acc (groups empty: group 0) by `kind` (FOLD_SUM, FOLD_MIN,
    FOLD_MAX) and counts it in seen; rows outside the buckets are skipped. Min/max: NaN
    propagates as in run_extremes."""
    check = valid.shape[0] > 0
    grouped = groups.shape[0] > 0
    for i in range(times.shape[0]):
        if check and not valid[i]:
            continue
        b = (times[i] - origin) // interval
        if b < 0 or b >= buckets:
            continue
        if grouped:
            b += groups[i] * buckets
        v = values[i]
        if seen[b] == 0 or (kind != FOLD_SUM and v != v):
            acc[b] = v
        elif kind == FOLD_SUM:
            acc[b] += v
        elif acc[b] == acc[b] and ((v > acc[b]) if kind == FOLD_MAX else (v < acc[b])):
            acc[b] = v
        seen[b] += 1


@njit(cache=True, nogil=True)
def fold_bucket_points(times: np.ndarray, groups: np.ndarray, values: np.ndarray, valid: np.ndarray,
                       origin: int, interval: int, buckets: int, kind: int, acc: np.ndarray,
                       acc_time: np.ndarray, seen: np.ndarray) -> None:
    """fold_buckets for selectors, keeping the chosen point's time in acc_time. As InfluxDB's
    reducers: FOLD_FIRST / FOLD_LAST take the earliest / latest time, the larger value on equal
    times; FOLD_MIN / FOLD_MAX the smallest / largest value, the earlier time on equal values.
    Min/max: NaN propagates as in fold_buckets."""
    check = valid.shape[0] > 0
    grouped = groups.shape[0] > 0
    for i in range(times.shape[0]):
        if check and not valid[i]:
            continue
        t = times[i]
        b = (t - origin) // interval
        if b < 0 or b >= buckets:
            continue
        if grouped:
            b += groups[i] * buckets
        v = values[i]
        if seen[b] == 0:
            take = True
        elif kind == FOLD_LAST:
            take = t > acc_time[b] or (t == acc_time[b] and v > acc[b])
        elif kind == FOLD_FIRST:
            take = t < acc_time[b] or (t == acc_time[b] and v > acc[b])
        elif v != v:
            take = acc[b] == acc[b]  # the first NaN wins and stays
        elif acc[b] != acc[b]:
            take = False
        elif kind == FOLD_MAX:
            take = v > acc[b] or (v == acc[b] and t < acc_time[b])
        else:
            take = v < acc[b] or (v == acc[b] and t < acc_time[b])
        if take:
            acc[b] = v
            acc_time[b] = t
        seen[b] += 1


def dense_bucket_columns(parts: Sequence[ColumnPart], groups: Sequence[np.ndarray],
                         specs: Sequence[tuple[str, str, np.dtype]], origin: int, interval: int,
                         cells: int, buckets: int, point_times: bool = False,
                         ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray | None]]:
    """Per spec (function from DENSE_FOLDS, field, the field's numpy dtype): the aggregate
    of every cell group * buckets + k (bucket [origin + k * interval, + interval)) over all
    parts (groups[i]: the group of each row of parts[i], empty for one group), how many
    values each cell saw, and for selectors the time of the point each cell chose (first and
    last always, min and max when `point_times`; None otherwise). Mean is float; sum, min,
    max, first and last keep the field's dtype; count is the count. Cells without values
    hold 0 (the caller fills them)."""
    folded: dict[tuple[int, str], tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    results: list[np.ndarray] = []
    seens: list[np.ndarray] = []
    chosen: list[np.ndarray | None] = []
    for function, field_name, dtype in specs:
        kind = _FOLD_KIND[function]
        got = folded.get((kind, field_name))
        if got is None:
            acc = np.zeros(cells, dtype=dtype)
            seen = np.zeros(cells, dtype=np.int64)
            with_times = kind in (FOLD_FIRST, FOLD_LAST) or (point_times and kind != FOLD_SUM)
            acc_time = np.zeros(cells, dtype=np.int64) if with_times else None
            for part, group in zip(parts, groups, strict=True):
                column = part.fields.get(field_name)
                if column is not None:
                    values, valid = column
                    if values.dtype != dtype:
                        values = values.astype(dtype)
                    if acc_time is None:
                        fold_buckets(part.time, group, values, valid, origin, interval, buckets, kind, acc, seen)
                    else:
                        fold_bucket_points(part.time, group, values, valid, origin, interval, buckets, kind,
                                           acc, acc_time, seen)
            got = folded[(kind, field_name)] = (acc, seen, acc_time)
        acc, seen, acc_time = got
        if function == "count":
            results.append(seen)
        elif function == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                results.append(acc.astype(np.float64) / seen)
        else:
            results.append(acc)
        seens.append(seen)
        chosen.append(acc_time)
    return results, seens, chosen


def filled_values(values: np.ndarray, seen: np.ndarray, keep: np.ndarray | None, gap: Any) -> list[Any]:
    """JSON-ready list of `values` at rows `keep` (None: all) with `gap` where seen == 0."""
    if keep is not None:
        values, seen = values[keep], seen[keep]
    out = values.tolist()
    for i in np.flatnonzero(seen == 0).tolist():
        out[i] = gap
    return out
