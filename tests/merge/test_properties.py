"""Property tests: any delivery order, duplication and batching gives the oracle's table, on both kernels."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glue_jobs.merge import MergeContext
from hybrid_ingest.aws import Clients
from hybrid_ingest.bootstrap import init
from hybrid_ingest.config import Settings
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from tests.conftest import SCHEMAS, reset_moto
from tests.merge.helpers import (
    SHARDS,
    Event,
    Oracle,
    RawWriter,
    assert_matches,
    ev,
    key_only,
    merge,
    order,
    table_rows,
)

DAYS = ("2026-01-10", "2026-02-10", "2026-03-10")


Case = tuple[list[Event], list[list[Event]], list[str]]


@st.composite
def deliveries(draw: st.DrawFn) -> Case:
    """A source history (seq strictly increasing) and how it was delivered: shuffled, duplicated, batched.

    Each batch's run also draws its kernel plan: a table written by either plan is read by both.
    """
    n_keys = draw(st.integers(1, 5))
    history: list[Event] = []
    seq = 0
    for _ in range(draw(st.integers(1, 16))):
        key = draw(st.integers(1, n_keys))
        seq += draw(st.integers(1, 3))
        op = draw(st.sampled_from(["c", "u", "d"]))
        row = order(key, day=draw(st.sampled_from(DAYS)), status=f"s{seq}",
                    notes=draw(st.sampled_from([None, "n"])))
        history.append(ev(op, seq, key_only("orders", row) if op == "d" else row))
    delivered = draw(st.permutations(history))
    delivered += draw(st.lists(st.sampled_from(history), max_size=4))
    cuts = sorted(draw(st.lists(st.integers(0, len(delivered)), max_size=3)))
    batches, start = [], 0
    for cut in [*cuts, len(delivered)]:
        batches.append(delivered[start:cut])
        start = cut
    batches = [b for b in batches if b]
    return history, batches, [draw(st.sampled_from(["keys_first", "one_pass"])) for _ in batches]


def fresh_context(endpoint: str, spark: Any) -> MergeContext:
    reset_moto(endpoint)
    root = Path(tempfile.mkdtemp(prefix="merge-prop-"))
    config = Settings(home=root, lake_uri=(root / "lake").as_uri(), endpoint_url=endpoint)
    clients = Clients(config)
    lake = Lake.from_uri(config.lake_uri)
    init(clients, lake, [SCHEMAS])
    names = config.names
    return MergeContext(clients, lake, Registry(clients.dynamodb, names.registry_table),
                        StateStore(clients.dynamodb, names.state_table, names.runs_table), spark=spark)


def deliver(ctx: MergeContext, engine: str, batches: list[list[Event]], plans: list[str]) -> None:
    raw = RawWriter(ctx.lake, ctx.registry)
    for batch, plan in zip(batches, plans, strict=True):
        ctx.plan = plan
        for shard_no, shard in enumerate(SHARDS):
            mine = [e for e in batch if e["row"]["order_id"] % 2 == shard_no]  # one key, one shard
            if mine:
                raw.write("orders", mine, shard=shard)
        merge(ctx, "orders", engine)


def check_duckdb(endpoint: str, case: Case) -> None:
    history, batches, plans = case
    ctx = fresh_context(endpoint, None)
    deliver(ctx, "duckdb", batches, plans)
    oracle = Oracle("orders", ("order_id",))
    oracle.stream(history)
    assert_matches(ctx, oracle)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
def test_duckdb_matches_the_oracle_for_any_delivery(moto_endpoint: str, case: Case) -> None:
    check_duckdb(moto_endpoint, case)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
def test_duckdb_matches_the_oracle_many_deliveries(moto_endpoint: str, case: Case) -> None:
    check_duckdb(moto_endpoint, case)


def _without_merge_time(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(repr(sorted((k, v) for k, v in r.items() if k != "_merged_at")) for r in rows)


def check_agreement(endpoint: str, spark: Any, case: Case) -> None:
    history, batches, plans = case
    results = []
    for engine in ("duckdb", "spark"):
        ctx = fresh_context(endpoint, spark)
        deliver(ctx, engine, batches, plans)
        oracle = Oracle("orders", ("order_id",))
        oracle.stream(history)
        assert_matches(ctx, oracle)
        results.append(_without_merge_time(table_rows(ctx, "SELECT * FROM orders")))
    assert results[0] == results[1]


@pytest.mark.spark
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
def test_both_kernels_agree_row_for_row(moto_endpoint: str, spark: Any,
                                        case: Case) -> None:
    check_agreement(moto_endpoint, spark, case)


@pytest.mark.slow
@pytest.mark.spark
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
def test_both_kernels_agree_on_many_deliveries(moto_endpoint: str, spark: Any,
                                               case: Case) -> None:
    check_agreement(moto_endpoint, spark, case)
