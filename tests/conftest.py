"""Shared fixtures: one moto server and one Spark session for the whole run, fresh state per test.

Everything binds to loopback and writes under pytest's temporary folders.

Hypothesis runs derandomized by default (profile ``default``), so ``make test``
tries the same examples on every clone and every run; ``make fuzz`` explores
with the ``fuzz`` profile. An example that ever failed is pinned with
``@example`` on the test that found it.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from hybrid_ingest.aws import Clients
from hybrid_ingest.bootstrap import init
from hybrid_ingest.cli import main
from hybrid_ingest.config import Settings
from hybrid_ingest.lake import Lake
from hybrid_ingest.local.stack import start_server
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore

# No deadline or timing health check in either profile: a loaded machine must not turn a pass red.
hypothesis_settings.register_profile(
    "default", derandomize=True, database=None, print_blob=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
# Random seeds, failures kept in .hypothesis/ and replayed first next time; the example counts are the
# ``slow`` soak tests' own (many more than the default run's).
hypothesis_settings.register_profile(
    "fuzz", derandomize=False, print_blob=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("default")  # ``--hypothesis-profile fuzz`` loads after this

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "schemas"

Runner = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(var, "testing")
    server, endpoint = start_server()
    yield endpoint
    server.stop()


def reset_moto(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    # a reset also forgets the Step Functions execution switch
    config = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(config, timeout=10) as response:
        response.read()


@pytest.fixture
def settings(moto_endpoint: str, tmp_path: Path) -> Settings:
    """Settings for an empty local stack and an empty lake under tmp_path."""
    reset_moto(moto_endpoint)
    home = tmp_path / "home"
    home.mkdir()
    return Settings(home=home, lake_uri=(tmp_path / "lake").as_uri(), endpoint_url=moto_endpoint)


@pytest.fixture
def clients(settings: Settings) -> Clients:
    return Clients(settings)


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake.from_uri(settings.lake_uri)


@pytest.fixture
def initialized(clients: Clients, lake: Lake) -> Clients:
    """A local stack with the stream, tables and databases created and schemas/ registered."""
    init(clients, lake, [SCHEMAS])
    return clients


@pytest.fixture
def registry(initialized: Clients) -> Registry:
    return Registry(initialized.dynamodb, initialized.settings.names.registry_table)


@pytest.fixture
def store(initialized: Clients) -> StateStore:
    names = initialized.settings.names
    return StateStore(initialized.dynamodb, names.state_table, names.runs_table)


@pytest.fixture
def cli(initialized: Clients, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Runner:
    """The CLI in process against the initialised stack: ``cli(*args) -> (exit code, stdout, stderr)``."""
    settings = initialized.settings
    monkeypatch.setenv("HYBRID_INGEST_HOME", str(settings.home))
    monkeypatch.setenv("HYBRID_INGEST_LAKE_URI", settings.lake_uri)
    monkeypatch.setenv("AWS_ENDPOINT_URL", settings.endpoint_url or "")

    def run(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main([*args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The one local Spark session of the run (starting one costs ~4 s)."""
    from pyspark.sql import SparkSession

    # Python UDFs and RDD functions run in worker processes: make them use this venv's Python
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("hybrid-ingest-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    yield session
    session.stop()
