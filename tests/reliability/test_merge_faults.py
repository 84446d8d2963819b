"""Merges killed or beaten at their commit boundaries, then re-run: curated == oracle, no leftovers.

The merge exposes two crash points (``glue_jobs.merge.CRASH_POINTS``):
``after_write`` (new data files written, nothing committed) and ``after_commit``
(the Iceberg snapshot committed, the watermark not yet: the last moment before
the watermark's conditional write; the next run repairs it from the snapshot's
summary). A third fault is a concurrent run committing the table's watermark
first, so the run's DynamoDB conditional write loses. A held lease from a killed
run is the fourth. A killed run's files are named by no snapshot; retention
removes them once they are older than its window.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glue_jobs.merge import CRASH_POINTS, MergeContext, run_merge
from hybrid_ingest import iceberg
from hybrid_ingest.aws import Clients
from hybrid_ingest.errors import LeaseHeldError
from hybrid_ingest.state import StateStore
from tests.merge.helpers import unreferenced_files
from tests.reliability import tally
from tests.reliability.contexts import fresh_context
from tests.reliability.driver import Fault, check_curated, replay
from tests.reliability.history import Scenario, scenarios
from tests.reliability.landing import land, register_evolution, register_tables


def leftovers(ctx: MergeContext, table: str) -> set[str]:
    """Files no snapshot references once retention ran past its window: a crash's leftovers that stayed."""
    run_merge(ctx, table, engine="duckdb", now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=48))
    return unreferenced_files(ctx, table)


@st.composite
def faulty(draw: Any) -> tuple[Scenario, dict[tuple[int, str], tuple[str, str]]]:
    scenario = draw(scenarios(max_steps=16, max_runs=3))
    faults: dict[tuple[int, str], tuple[str, str]] = {}
    for run in range(scenario.runs):
        for table in scenario.tables:
            if draw(st.integers(0, 2)) == 0:
                kind = draw(st.sampled_from(["crash", "crash", "concurrent-commit"]))
                point = draw(st.sampled_from(CRASH_POINTS)) if kind == "crash" else "after_commit"
                faults[(run, table)] = (kind, point)
    return scenario, faults


Case = tuple[Scenario, dict[tuple[int, str], tuple[str, str]]]
QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


def run_faulty(case: Case, stack: Clients) -> None:
    scenario, faults = case
    ctx = fresh_context(stack)

    def fault_for(run: int, table: str) -> Fault | None:
        if (run, table) not in faults:
            return None
        kind, point = faults[(run, table)]
        return Fault(point, kind, ctx.store, table)

    done = replay(ctx, scenario, "duckdb", fault_for)
    assert done.crashes == len(faults)
    for table in scenario.tables:
        assert leftovers(ctx, table) == set(), f"{table}: a dead attempt's files survived retention"
    tally.add("examples_faults")


@settings(max_examples=10, deadline=None, suppress_health_check=QUIET)
@given(case=faulty())
def test_killed_merges_rerun_to_the_oracle(case: Case, stack: Clients) -> None:
    run_faulty(case, stack)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=QUIET)
@given(case=faulty())
def test_killed_merges_rerun_to_the_oracle_soak(case: Case, stack: Clients) -> None:
    run_faulty(case, stack)


@pytest.mark.slow  # the crash points sit after the kernel, so the DuckDB runs above cover them by default
@pytest.mark.spark
@settings(max_examples=5, deadline=None, suppress_health_check=QUIET)
@given(case=faulty())
def test_killed_spark_merges_rerun_to_the_oracle(case: Case, stack: Clients, spark: Any) -> None:
    scenario, faults = case
    ctx = fresh_context(stack, spark)

    def fault_for(run: int, table: str) -> Fault | None:
        kind, point = faults.get((run, table), ("", ""))
        return Fault(point, kind, ctx.store, table) if kind else None

    replay(ctx, scenario, "spark", fault_for)
    for table in scenario.tables:
        assert leftovers(ctx, table) == set()
    tally.add("examples_spark_faults")


@settings(max_examples=3, deadline=None, suppress_health_check=QUIET)
@given(scenario=scenarios(max_steps=12, max_runs=1))
def test_lease_of_a_killed_run_blocks_until_it_expires(scenario: Scenario, stack: Clients) -> None:
    """kill -9 leaves the merge lease held: the next run is refused, changing nothing, until it expires."""
    ctx = fresh_context(stack)
    clock = [1_000_000.0]
    names = stack.settings.names
    ctx.store = StateStore(stack.dynamodb, names.state_table, names.runs_table, clock=lambda: clock[0])
    register_tables(ctx.registry, scenario.tables)
    for table in scenario.evolve_before_run:
        register_evolution(ctx.registry, scenario.tables[table])
    for delivery in scenario.deliveries:
        land(ctx.lake, ctx.registry, delivery)
    ttl = float(ctx.store.settings()["lock_lease_seconds"])
    for table in scenario.tables:
        ctx.store.acquire(f"merge#{table}", owner="killed-run", ttl_seconds=ttl)
        tally.fault("merge lease held by a killed run")
        with pytest.raises(LeaseHeldError):
            run_merge(ctx, table, engine="duckdb", now=dt.datetime.fromtimestamp(clock[0], dt.UTC))
        assert ctx.store.watermark(table).version == 0
        assert iceberg.load(iceberg.catalog(ctx.clients, ctx.lake), iceberg.identifier(ctx.clients, table)) is None
    clock[0] += ttl + 1
    for table in scenario.tables:
        run_merge(ctx, table, engine="duckdb")
    check_curated(ctx, scenario, list(scenario.tables), 0)
    tally.add("examples_faults")
