"""Fixtures of the query tests: a merge context on the DuckDB kernel and a raw writer."""

from __future__ import annotations

import pytest

from glue_jobs.merge import MergeContext
from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from tests.merge.helpers import RawWriter


@pytest.fixture
def duck(initialized: Clients, lake: Lake, registry: Registry, store: StateStore) -> MergeContext:
    return MergeContext(clients=initialized, lake=lake, registry=registry, store=store)


@pytest.fixture
def raw(lake: Lake, registry: Registry) -> RawWriter:
    return RawWriter(lake, registry)
