"""Retention policies across sync: an edge's policies arrive in the cloud as their own namespaces
(queried with FROM rp.m or rp=), are exported to Parquet with a retention_policy column, and a
DROP RETENTION POLICY at the edge removes that policy's rows from the cloud view and Parquet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from query.influxql_exec import QueryExecutor
from storage.batch import Batch
from sync.cloud_store import CloudTableSource
from tests.test_cloud_parquet_deletes import DB, HOUR, T0, Edge, export, open_edge, sync


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    e = open_edge(tmp_path, "na")
    try:
        yield e
    finally:
        e.engine.close()


def points(measurement: str, host: str, n: int) -> Batch:
    return Batch(measurement, [(("host", host),)], np.zeros(n, np.int32),
                 T0 + np.arange(n, dtype=np.int64) * HOUR, {"value": pa.array(np.arange(n, dtype=np.float64))})


def counts(cloud_dir: Path, text: str, rp: str | None = None) -> list[object]:
    """Per statement: the count of the first series, 0 when none, or the error text."""
    out: list[object] = []
    for result in QueryExecutor(CloudTableSource(cloud_dir)).execute(text, DB, rp=rp):
        if "error" in result:
            out.append(result["error"])
        else:
            out.append(result["series"][0]["values"][0][1] if result.get("series") else 0)
    return out


def parquet_policies(root: Path) -> dict[str, int]:
    """retention_policy -> rows in the exported Parquet files."""
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table(columns=["database", "retention_policy"])
    assert set(table.column("database").to_pylist()) <= {DB}
    found = pc.value_counts(table.column("retention_policy")).to_pylist()
    return {item["values"]: item["counts"] for item in found}


def test_policies_reach_the_cloud_apart_and_their_drop_follows(edge: Edge, tmp_path: Path) -> None:
    cloud_dir, root = tmp_path / "cloud", tmp_path / "parquet"
    edge.influxql(f"CREATE RETENTION POLICY week ON {DB} DURATION INF REPLICATION 1")
    edge.write("cpu", ["h1", "h2"], T0, 10, HOUR)  # autogen: 20 rows
    edge.engine.write(DB, [points("cpu", "w1", 7)], rp="week")
    edge.engine.flush_all()
    sync(cloud_dir, [edge])
    source = CloudTableSource(cloud_dir)
    assert source.databases() == [DB]
    assert [p.name for p in source.retention_policies(DB)] == ["autogen", "week"]
    assert counts(cloud_dir, "SELECT count(value) FROM cpu; SELECT count(value) FROM week.cpu; "
                             f"SELECT count(value) FROM {DB}.autogen.cpu") == [20, 7, 20]
    assert counts(cloud_dir, "SELECT count(value) FROM cpu", rp="week") == [7]
    assert counts(cloud_dir, "SELECT count(value) FROM nope.cpu") == ["retention policy not found: nope"]
    export(cloud_dir, root)
    assert parquet_policies(root) == {"autogen": 20, "week": 7}

    edge.influxql(f"DROP RETENTION POLICY week ON {DB}")
    sync(cloud_dir, [edge])
    assert [p.name for p in CloudTableSource(cloud_dir).retention_policies(DB)] == ["autogen"]
    assert counts(cloud_dir, "SELECT count(value) FROM week.cpu") == ["retention policy not found: week"]
    assert counts(cloud_dir, "SELECT count(value) FROM cpu") == [20]
    export(cloud_dir, root)
    assert parquet_policies(root) == {"autogen": 20}

