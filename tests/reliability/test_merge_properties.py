"""The fast tier: generated histories through the real merge core, curated == oracle after every run.

Both kernels run the same scenarios: DuckDB with more examples, Spark (the one
session-wide session) with a few, since every Spark merge costs a second or more.
Each example gets emptied service tables and catalog and a new lake folder. The
``slow`` variants are the soak: the same bodies with many more examples.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from hybrid_ingest.aws import Clients
from tests.reliability import tally
from tests.reliability.contexts import fresh_context
from tests.reliability.driver import replay
from tests.reliability.history import TEST_SPECS, Delivery, Scenario, TableHistory, scenarios
from tests.reliability.oracle import Extract

QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


def empty_full_extract() -> Scenario:
    """Issue #15, found by hypothesis on the Spark kernel: one run, an empty full extract at seq 1, rel_plain."""
    extract = Extract("full", 1, ())
    history = TableHistory(TEST_SPECS["rel_plain"], extracts=[(extract, 1)])
    return Scenario({"rel_plain": history}, [Delivery(0, "rel_plain", 1, extract=extract)], 1, {})


def run_duckdb(scenario: Scenario, stack: Clients) -> None:
    replay(fresh_context(stack), scenario, "duckdb")
    tally.add("examples_duckdb")


def run_spark(scenario: Scenario, stack: Clients, spark: Any) -> None:
    replay(fresh_context(stack, spark), scenario, "spark")
    tally.add("examples_spark")


@settings(max_examples=30, deadline=None, suppress_health_check=QUIET)
@given(scenario=scenarios())
@example(scenario=empty_full_extract())
def test_duckdb_merge_equals_oracle(scenario: Scenario, stack: Clients) -> None:
    run_duckdb(scenario, stack)


@pytest.mark.spark
@settings(max_examples=4, deadline=None, suppress_health_check=QUIET)
@given(scenario=scenarios(max_steps=14, max_runs=2))
@example(scenario=empty_full_extract())
def test_spark_merge_equals_oracle(scenario: Scenario, stack: Clients, spark: Any) -> None:
    run_spark(scenario, stack, spark)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=QUIET)
@given(scenario=scenarios(max_steps=40, max_runs=6))
def test_duckdb_merge_equals_oracle_soak(scenario: Scenario, stack: Clients) -> None:
    run_duckdb(scenario, stack)


@pytest.mark.slow
@pytest.mark.spark
@settings(max_examples=20, deadline=None, suppress_health_check=QUIET)
@given(scenario=scenarios())
def test_spark_merge_equals_oracle_soak(scenario: Scenario, stack: Clients, spark: Any) -> None:
    run_spark(scenario, stack, spark)
