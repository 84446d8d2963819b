"""Fixtures of the reliability tests, and the session hook that hands their counts to the report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hybrid_ingest.aws import Clients
from hybrid_ingest.bootstrap import init
from hybrid_ingest.config import Settings
from hybrid_ingest.lake import Lake
from tests.conftest import reset_moto
from tests.reliability import tally


@pytest.fixture
def stack(moto_endpoint: str, tmp_path: Path) -> Clients:
    """One empty stack per test function; examples inside it are separated by ``contexts.fresh_context``."""
    reset_moto(moto_endpoint)
    clients = Clients(Settings(home=tmp_path, lake_uri=(tmp_path / "lake").as_uri(), endpoint_url=moto_endpoint))
    init(clients, Lake.from_uri(clients.settings.lake_uri), [])
    return clients


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get(tally.TALLY_ENV)
    if target:
        tally.dump(Path(target))
