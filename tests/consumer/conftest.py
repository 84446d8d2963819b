"""Fixtures of the consumer tests: a second Kinesis (kinesis-mock) beside moto, for the shard lifecycle.

``kinesis`` runs a test once per implementation. Only Kinesis moves: the stack's
Settings get a Kinesis endpoint of its own (what ``AWS_ENDPOINT_URL_KINESIS`` sets),
so DynamoDB, Glue and the rest stay on moto's server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from hybrid_ingest.aws import Clients
from hybrid_ingest.bootstrap import init
from hybrid_ingest.config import Names, Settings
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from tests.conftest import SCHEMAS
from tests.consumer import kinesis_mock

BACKENDS = ["moto", "kinesis-mock"]


@pytest.fixture(scope="session")
def kinesis_mock_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = kinesis_mock.start(tmp_path_factory.mktemp("kinesis-mock"))
    yield server.endpoint
    server.stop()


@pytest.fixture(params=BACKENDS)
def kinesis(request: pytest.FixtureRequest) -> str:
    """Which Kinesis the test runs against: ``moto`` or ``kinesis-mock``."""
    return str(request.param)


@pytest.fixture
def stack(kinesis: str, settings: Settings, lake: Lake, request: pytest.FixtureRequest) -> Iterator[Clients]:
    """The initialised local stack with Kinesis on the chosen implementation.

    kinesis-mock is not reset between tests, so each test gets its own name prefix
    (its own streams), and its streams are deleted afterwards.
    """
    if kinesis == "moto":
        clients = Clients(settings)
    else:
        endpoint = request.getfixturevalue("kinesis_mock_endpoint")
        names = Names(prefix=f"hi-{uuid.uuid4().hex[:10]}")
        clients = Clients(replace(settings, names=names, service_endpoints={"kinesis": endpoint}))
    init(clients, lake, [SCHEMAS])
    yield clients
    if kinesis != "moto":
        prefix = clients.settings.names.prefix
        for name in clients.kinesis.list_streams()["StreamNames"]:
            if name.startswith(prefix):
                clients.kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


@pytest.fixture
def stack_registry(stack: Clients) -> Registry:
    return Registry(stack.dynamodb, stack.settings.names.registry_table)
