"""The fast tier: generated histories through the real merge core, curated == oracle after every run.

Both kernels run the same scenarios: DuckDB with more examples, Spark (the one
session-wide session) with a few, since every Spark merge costs a second or more.
Each example gets emptied service tables and catalog and a new lake folder. The
``slow`` variants are the soak: the same bodies with many more examples.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from hybrid_ingest.aws import Clients
from tests.reliability import tally
from tests.reliability.contexts import fresh_context
from tests.reliability.driver import replay
from tests.reliability.history import Scenario, scenarios

QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


def run_duckdb(scenario: Scenario, stack: Clients) -> None:
    replay(fresh_context(stack), scenario, "duckdb")
    tally.add("examples_duckdb")


def run_spark(scenario: Scenario, stack: Clients, spark: Any) -> None:
    replay(fresh_context(stack, spark), scenario, "spark")
    tally.add("examples_spark")


@settings(max_examples=30, deadline=None, suppress_health_check=QUIET)
@given(scenario=scenarios())
def test_duckdb_merge_equals_oracle(scenario: Scenario, stack: Clients) -> None:
    run_duckdb(scenario, stack)


@pytest.mark.spark
@settings(max_examples=4, deadline=None, suppress_health_check=QUIET)
@given(scenario=scenarios(max_steps=14, max_runs=2))
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
