"""Retention: old versions outlive the queries that may read them, tombstones expire; compaction; metrics."""

from __future__ import annotations

import datetime as dt

import pytest

from glue_jobs import catalog
from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from tests.merge.helpers import Oracle, RawWriter, assert_matches, ev, key_only, order

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture
def duck(initialized: Clients, lake: Lake, registry: Registry, store: StateStore) -> MergeContext:
    return MergeContext(clients=initialized, lake=lake, registry=registry, store=store)


def test_replaced_versions_are_kept_for_the_retention_window(duck: MergeContext, raw: RawWriter) -> None:
    raw.write("orders", [ev("c", 1, order(1))])
    run_merge(duck, "orders", engine="duckdb", now=T0)
    first = catalog.read_table(duck.clients.glue, duck.lake, duck.database, "orders").partitions["2026-01"]
    raw.write("orders", [ev("u", 2, order(1, status="x"))])
    run_merge(duck, "orders", engine="duckdb", now=T0 + dt.timedelta(hours=1))
    assert duck.lake.exists(first)  # a query planned before the switch can still read it
    raw.write("orders", [ev("u", 3, order(1, status="y"))])
    third = run_merge(duck, "orders", engine="duckdb", now=T0 + dt.timedelta(hours=30))
    assert not duck.lake.exists(first)
    assert third.stats["versions_deleted"] >= 1
    live = catalog.read_table(duck.clients.glue, duck.lake, duck.database, "orders").partitions["2026-01"]
    assert duck.lake.exists(live)


def test_tombstones_expire_after_their_retention(duck: MergeContext, raw: RawWriter) -> None:
    duck.store.put_settings({"tombstone_retention_hours": 10})
    raw.write("orders", [ev("c", 1, order(1)), ev("d", 2, key_only("orders", order(1)))])
    first = run_merge(duck, "orders", engine="duckdb", now=T0)
    assert first.stats["tombstones_after"] == 1
    raw.write("orders", [ev("c", 3, order(5))])
    later = run_merge(duck, "orders", engine="duckdb", now=T0 + dt.timedelta(hours=11))
    assert (later.stats["tombstones_before"], later.stats["tombstones_after"]) == (1, 0)


def test_small_raw_files_are_compacted_into_one_partition_file(duck: MergeContext, raw: RawWriter) -> None:
    oracle = Oracle("orders", ("order_id",))
    for seq in range(1, 4):  # three small raw files become one curated file
        batch = [ev("c", seq * 10 + i, order(seq * 10 + i)) for i in range(3)]
        raw.write("orders", batch)
        oracle.stream(batch)
    result = run_merge(duck, "orders", engine="duckdb")
    assert result.stats["files_written"] == 1
    assert_matches(duck, oracle)


def test_metrics_are_emitted_per_run(duck: MergeContext, raw: RawWriter) -> None:
    lines: list[str] = []
    duck.metrics = Metrics("HybridIngest", sink=lines.append, cloudwatch=duck.clients.cloudwatch)
    raw.write("orders", [ev("c", 1, order(1))])
    run_merge(duck, "orders", engine="duckdb")
    assert len(lines) == 1
    assert '"upserts": 1.0' in lines[0]
    assert '"Table": "orders"' in lines[0]
