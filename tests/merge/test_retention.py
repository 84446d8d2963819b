"""Retention: snapshots and their files outlive the window (time travel), tombstones expire; compaction; metrics."""

from __future__ import annotations

import datetime as dt

import pytest

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest import iceberg
from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from tests.merge.helpers import (
    Oracle,
    RawWriter,
    assert_matches,
    ev,
    key_only,
    live_partitions,
    load_table,
    order,
    table_rows,
    unreferenced_files,
)

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture
def duck(initialized: Clients, lake: Lake, registry: Registry, store: StateStore) -> MergeContext:
    return MergeContext(clients=initialized, lake=lake, registry=registry, store=store)


def test_snapshots_stay_readable_for_the_window_then_expire_with_their_files(duck: MergeContext,
                                                                            raw: RawWriter) -> None:
    """Time travel works within the window; past it old snapshots expire and files no snapshot names go."""
    raw.write("orders", [ev("c", 1, order(1)), ev("c", 2, order(2))])
    first = run_merge(duck, "orders", engine="duckdb")
    first_files = live_partitions(duck, "orders")["2026-01"]
    raw.write("orders", [ev("u", 3, order(1, status="x")), ev("d", 4, key_only("orders", order(2)))])
    second = run_merge(duck, "orders", engine="duckdb")
    assert second.stats["snapshots_expired"] == 0
    table = load_table(duck, "orders")
    assert first.snapshot_id is not None
    old = table.scan(snapshot_id=first.snapshot_id).to_arrow().to_pylist()  # time travel, within the window
    assert sorted((r["order_id"], r["status"]) for r in old) == [(1, "new"), (2, "new")]
    assert all(duck.lake.exists(iceberg.lake_rel(duck.lake, f)) for f in first_files)
    raw.write("orders", [ev("u", 5, order(1, status="y"))])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=30)  # the window (24 h) has passed for both
    third = run_merge(duck, "orders", engine="duckdb", now=later)
    assert third.stats["snapshots_expired"] == 2
    assert third.stats["files_deleted"] >= 2
    table = load_table(duck, "orders")
    assert [s.snapshot_id for s in table.snapshots()] == [third.snapshot_id]
    assert not any(duck.lake.exists(iceberg.lake_rel(duck.lake, f)) for f in first_files)
    assert unreferenced_files(duck, "orders") == set()
    assert table_rows(duck, "SELECT order_id, status FROM orders") == [{"order_id": 1, "status": "y"}]


class Killed(BaseException):
    """kill -9 between the write and the commit: no ``except Exception`` in the merge sees it."""


def test_files_of_a_killed_run_are_removed_once_past_the_window(duck: MergeContext, raw: RawWriter) -> None:
    raw.write("orders", [ev("c", 1, order(1))])
    run_merge(duck, "orders", engine="duckdb")
    raw.write("orders", [ev("u", 2, order(1, status="x")), ev("c", 3, order(3, day="2026-05-01"))])

    def kill(point: str) -> None:
        if point == "after_write":
            raise Killed(point)

    with pytest.raises(Killed):
        run_merge(duck, "orders", engine="duckdb", hook=kill)
    leftovers = unreferenced_files(duck, "orders")
    assert len(leftovers) == 2  # the killed run's two partitions, never committed
    run_merge(duck, "orders", engine="duckdb")  # within the window: they could be a running merge's
    assert leftovers <= unreferenced_files(duck, "orders")
    run_merge(duck, "orders", engine="duckdb", now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=30))
    assert unreferenced_files(duck, "orders") == set()


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
