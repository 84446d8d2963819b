"""The Spark kernel: session handling (materialised relations computed once and released) and its size-driven
choices."""

from __future__ import annotations

from typing import Any

import pytest

from glue_jobs import kernel_spark
from glue_jobs.kernel_spark import SESSION_CONF, SparkEngine
from glue_jobs.merge import MergeContext
from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from tests.merge.helpers import Oracle, RawWriter, assert_matches, ev, key_only, merge, order


@pytest.mark.spark
def test_materialised_relations_are_computed_once_and_released(spark: Any) -> None:
    def persistent() -> int:
        return int(spark.sparkContext._jsc.sc().getPersistentRDDs().size())

    held = persistent()
    before = {key: spark.conf.get(key, None) for key in SESSION_CONF}
    engine = SparkEngine(spark)
    try:
        engine.define("numbers", "SELECT id FROM range(10)", True)
        assert persistent() == held + 1  # eager: stored before anything reads it
        assert engine.fetch("SELECT count(*) FROM numbers") == [(10,)]
    finally:
        engine.close()
    assert persistent() == held
    assert {key: spark.conf.get(key, None) for key in SESSION_CONF} == before


@pytest.mark.spark
@pytest.mark.parametrize("narrow", [True, False], ids=["stored-keys-narrowed", "all-stored-keys"])
@pytest.mark.parametrize("plan", ["keys_first", "one_pass"])
def test_decisions_agree_whether_or_not_the_stored_keys_are_narrowed(
        initialized: Clients, lake: Lake, registry: Registry, store: StateStore, spark: Any,
        monkeypatch: pytest.MonkeyPatch, narrow: bool, plan: str) -> None:
    """Whether the stored keys are narrowed is chosen by the run's sizes (``NARROW_STORED_RATIO``); both
    choices must decide alike, whatever the sizes of a scenario would pick."""
    monkeypatch.setattr(kernel_spark, "NARROW_STORED_RATIO", 0 if narrow else 10**9)
    ctx = MergeContext(clients=initialized, lake=lake, registry=registry, store=store, spark=spark, plan=plan)
    raw, oracle = RawWriter(lake, registry), Oracle("orders", ("order_id",))
    batches = [
        [ev("c", 1, order(1)), ev("c", 2, order(2, day="2026-02-03")), ev("c", 3, order(3)), ev("c", 4, order(4))],
        # a move, a delete, several changes of one key, a change of a key never seen
        [ev("u", 5, order(1, day="2026-03-01")), ev("d", 6, key_only("orders", order(2))),
         ev("u", 7, order(3, status="paid")), ev("u", 8, order(3, status="shipped")), ev("c", 9, order(5))],
        # late and stale changes: below the tombstone, below the stored row
        [ev("u", 4, order(2, status="late")), ev("u", 2, order(4, status="stale")),
         ev("u", 3, order(3, status="stale")), ev("u", 10, order(5, status="paid"))],
    ]
    for batch in batches:
        raw.write("orders", batch)
        oracle.stream(batch)
        merge(ctx, "orders", "spark")
        assert_matches(ctx, oracle)
