"""Fixtures of the merge tests: every scenario runs once per engine kernel and kernel plan."""

from __future__ import annotations

from typing import Any

import pytest

from glue_jobs.merge import MergeContext
from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from tests.merge.helpers import RawWriter


@pytest.fixture(params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["keys_first", "one_pass"])
def plan(request: pytest.FixtureRequest) -> str:
    """Both kernel plans, whatever the change/table ratio of the scenario would pick."""
    return str(request.param)


@pytest.fixture
def ctx(initialized: Clients, lake: Lake, registry: Registry, store: StateStore, engine: str, plan: str,
        request: pytest.FixtureRequest) -> MergeContext:
    spark: Any = request.getfixturevalue("spark") if engine == "spark" else None
    return MergeContext(clients=initialized, lake=lake, registry=registry, store=store, spark=spark, plan=plan)


@pytest.fixture
def raw(lake: Lake, registry: Registry) -> RawWriter:
    return RawWriter(lake, registry)
