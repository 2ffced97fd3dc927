"""bucket_aggregates (numba run kernels) against a brute-force per-(group, bucket) computation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from query.bucket_aggregates import (
    FOLD_FIRST,
    FOLD_LAST,
    FOLD_MAX,
    FOLD_MIN,
    BucketRuns,
    bucket_aggregates,
    fold_bucket_points,
    plain_rows,
    run_boundaries,
    run_extremes,
    run_sums,
)

FUNCTIONS = ["count", "sum", "mean", "min", "max"]


def brute_force(times: list[int], hosts: list[str | None], values: list[float | int | None], function: str,
                interval: int, offset: int) -> dict[tuple[str, ...], dict[int, object]]:
    cells: dict[tuple[str, ...], dict[int, list[float | int]]] = {}
    for t, h, v in zip(times, hosts, values, strict=True):
        bucket = (t - offset) // interval * interval + offset
        cell = cells.setdefault(("" if h is None else h,), {}).setdefault(bucket, [])
        if v is not None:
            cell.append(v)
    out: dict[tuple[str, ...], dict[int, object]] = {}
    for group, per_bucket in cells.items():
        for bucket, vals in per_bucket.items():
            if function == "count":
                result: object = len(vals)
            elif not vals:
                result = None
            elif function == "sum":
                result = sum(vals)
            elif function == "mean":
                result = sum(vals) / len(vals)
            else:
                result = max(vals) if function == "max" else min(vals)
            out.setdefault(group, {})[bucket] = result
    return out


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 60), is_int=st.booleans(), grouped=st.booleans(),
       interval=st.sampled_from([1, 7, 10, 60]), offset=st.integers(0, 9))
def test_every_function_matches_brute_force(data: st.DataObject, n: int, is_int: bool, grouped: bool,
                                            interval: int, offset: int) -> None:
    times = data.draw(st.lists(st.integers(-500, 500), min_size=n, max_size=n))
    hosts = data.draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
    number = st.integers(-10**6, 10**6) if is_int else st.floats(-1e6, 1e6, allow_nan=False)
    values = data.draw(st.lists(st.none() | number, min_size=n, max_size=n))
    table = pa.table({"time": pa.array(times, type=pa.int64()), "host": pa.array(hosts, type=pa.string()),
                      "v": pa.array(values, type=pa.int64() if is_int else pa.float64())})
    specs = [(f, "v") for f in FUNCTIONS]
    tags = ["host"] if grouped else []
    got = {group: runs.per_bucket() for group, runs in bucket_aggregates(table, tags, specs, interval, offset).items()}
    for runs in bucket_aggregates(table, tags, specs, interval, offset).values():
        assert runs.buckets == sorted(runs.buckets)
    for k, function in enumerate(FUNCTIONS):
        expected = brute_force(times, hosts if grouped else ["" for _ in hosts], values, function,
                               interval, offset)
        if not grouped:
            expected = {(): expected[("",)]}
        assert set(got) == set(expected)
        for group, per_bucket in expected.items():
            assert set(got[group]) == set(per_bucket)
            for bucket, want in per_bucket.items():
                cell = got[group][bucket]
                assert cell[len(FUNCTIONS) + k] == sum(v is not None for t, h, v in zip(
                    times, hosts, values, strict=True)
                    if (t - offset) // interval * interval + offset == bucket
                    and (not grouped or ("" if h is None else h,) == group))
                if want is None or function == "count" or is_int and function != "mean":
                    assert cell[k] == want
                else:
                    assert abs(cell[k] - want) <= 1e-9 * max(1.0, abs(want))


def test_integer_results_keep_their_type_and_mean_is_float() -> None:
    table = pa.table({"time": pa.array([0, 1, 2], type=pa.int64()), "v": pa.array([1, 2, 4], type=pa.int64())})
    (cell,) = bucket_aggregates(table, [], [("sum", "v"), ("max", "v"), ("mean", "v")], 10, 0)[()].per_bucket().values()
    assert cell[:3] == [7, 4, 7 / 3]
    assert isinstance(cell[0], int) and isinstance(cell[1], int) and isinstance(cell[2], float)


def test_kernels_on_permuted_rows() -> None:
    values = np.array([5.0, 1.0, 3.0, 2.0])
    valid = np.array([True, True, False, True])
    order = np.array([3, 0, 2, 1], dtype=np.int64)  # runs: rows {3, 0} and {2, 1}
    bounds = run_boundaries(np.array([0, 0, 1, 1], dtype=np.int64))
    assert bounds.tolist() == [0, 2, 4]
    sums, counts = run_sums(values, valid, order, bounds)
    assert sums.tolist() == [7.0, 1.0] and counts.tolist() == [2, 1]
    lows, _ = run_extremes(values, valid, order, bounds, False)
    highs, _ = run_extremes(values, valid, order, bounds, True)
    assert lows.tolist() == [2.0, 1.0] and highs.tolist() == [5.0, 1.0]


def test_plain_rows_fill_and_gaps() -> None:
    runs = BucketRuns([0, 20], [[1.5, None]], [[2, 0]])  # one spec: bucket 20 saw no value
    assert plain_rows(None, [0], runs, [0, 10, 20]) == [[0, 1.5]]
    assert plain_rows([None], [0], runs, [0, 10, 20]) == [[0, 1.5], [10, None], [20, None]]
    assert plain_rows([0], [0], BucketRuns([20], [[None]], [[0]]), [0, 10, 20]) == []
    assert plain_rows([-1], [0], runs, [10, 20]) == []  # the only value lies outside `buckets`


def _reference_selector(points: list[tuple[int, float]], kind: str) -> tuple[int, float]:
    """InfluxDB's reducers, point by point: first/last by time (equal times: the larger value),
    min/max by value (equal values: the earlier time)."""
    best = points[0]
    for t, v in points[1:]:
        bt, bv = best
        take = {"first": t < bt or (t == bt and v > bv), "last": t > bt or (t == bt and v > bv),
                "min": v < bv or (v == bv and t < bt), "max": v > bv or (v == bv and t < bt)}[kind]
        if take:
            best = (t, v)
    return best


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.integers(-3, 3), st.booleans()),
                min_size=1, max_size=60),
       st.sampled_from(["first", "last", "min", "max"]))
def test_fold_bucket_points_follows_influxdb_tie_rules(rows: list[tuple[int, int, int, bool]], kind: str) -> None:
    """Few distinct times and values, so equal times and equal values are common; 2 groups x 4
    buckets of 10; invalid rows are skipped."""
    times = np.array([r[0] for r in rows], dtype=np.int64)
    groups = np.array([r[1] % 2 for r in rows], dtype=np.int64)
    values = np.array([float(r[2]) for r in rows])
    valid = np.array([r[3] for r in rows], dtype=np.bool_)
    acc, acc_time, seen = np.zeros(8), np.zeros(8, dtype=np.int64), np.zeros(8, dtype=np.int64)
    kinds = {"first": FOLD_FIRST, "last": FOLD_LAST, "min": FOLD_MIN, "max": FOLD_MAX}
    fold_bucket_points(times, groups, values, valid, 0, 10, 4, kinds[kind], acc, acc_time, seen)
    cells: dict[int, list[tuple[int, float]]] = {}
    for t, g, v, ok in zip(times.tolist(), groups.tolist(), values.tolist(), valid.tolist(), strict=True):
        if ok and t < 40:  # t = 40 is past the last bucket: not folded
            cells.setdefault(g * 4 + t // 10, []).append((t, v))
    for cell in range(8):
        assert seen[cell] == len(cells.get(cell, []))
        if cell in cells:
            assert (int(acc_time[cell]), float(acc[cell])) == _reference_selector(cells[cell], kind), cell
