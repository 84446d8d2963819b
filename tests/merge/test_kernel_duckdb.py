"""The DuckDB kernel's own choice: the per-key decision aggregated per input and joined, or over their union."""

from __future__ import annotations

import functools

import pytest

from glue_jobs.kernel_duckdb import DuckDBEngine
from glue_jobs.merge import MergeContext
from tests.merge.helpers import Oracle, RawWriter, assert_matches, ev, key_only, land_extract, merge, order


@pytest.fixture
def engine() -> str:
    """This module's scenarios run on the DuckDB kernel only (both plans)."""
    return "duckdb"


@pytest.mark.parametrize("apart", [True, False], ids=["aggregated-apart", "aggregated-over-the-union"])
def test_decisions_agree_however_the_per_key_records_are_aggregated(
        ctx: MergeContext, raw: RawWriter, engine: str, monkeypatch: pytest.MonkeyPatch, apart: bool) -> None:
    """DuckDB aggregates apart (``MergeSql.aggregate_apart``), Spark over the union; both must decide alike on
    what only the aggregate sees: several changes of a key, stale changes, tombstones with and without a change
    beside them, and a full extract's virtual deletes."""
    monkeypatch.setattr(DuckDBEngine, "__init__", functools.partialmethod(DuckDBEngine.__init__,
                                                                          aggregate_apart=apart))
    oracle = Oracle("orders", ("order_id",))
    runs = [
        [ev("c", 1, order(1)), ev("c", 2, order(2, day="2026-02-03")), ev("c", 3, order(3)), ev("c", 4, order(4))],
        [ev("u", 5, order(1, day="2026-03-01")), ev("d", 6, key_only("orders", order(2))),
         ev("u", 7, order(3, status="paid")), ev("u", 8, order(3, status="shipped")), ev("c", 9, order(5))],
        [ev("u", 4, order(2, status="late")), ev("u", 2, order(4, status="stale")), ev("u", 10, order(5))],
    ]
    for events in runs:
        raw.write("orders", events)
        oracle.stream(events)
        merge(ctx, "orders", engine)
        assert_matches(ctx, oracle)
    # keys 3 and 4 are absent from the extract: deleted at its seq; key 2 stays deleted
    snapshot = [order(1, status="x"), order(5, status="y")]
    land_extract(ctx.lake, ctx.registry, "orders", snapshot, as_of_seq=20, mode="full")
    oracle.full_extract(20, snapshot)
    stream = [ev("u", 15, order(3, status="below the floor")), ev("c", 21, order(6))]
    raw.write("orders", stream)
    oracle.stream(stream)
    result = merge(ctx, "orders", engine)
    assert (result.stats["full_extract_deletes"], result.stats["tombstones_after"]) == (2, 3)
    assert_matches(ctx, oracle)
    # tombstones of keys with no change in the run are kept
    events = [ev("c", 22, order(7))]
    raw.write("orders", events)
    oracle.stream(events)
    result = merge(ctx, "orders", engine)
    assert (result.stats["upserts"], result.stats["tombstones_after"]) == (1, 3)
    assert_matches(ctx, oracle)
