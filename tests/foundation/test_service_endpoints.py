"""Per-service endpoints the AWS SDKs' way: ``AWS_ENDPOINT_URL_<SERVICE>`` ahead of ``AWS_ENDPOINT_URL``."""

from __future__ import annotations

from pathlib import Path

from hybrid_ingest.aws import Clients
from hybrid_ingest.config import Settings


def test_only_the_named_services_move(tmp_path: Path) -> None:
    env = {"HYBRID_INGEST_HOME": str(tmp_path), "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
           "AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:4568", "AWS_ENDPOINT_URL_SFN": "http://127.0.0.1:8083"}
    settings = Settings.from_env(env)
    assert settings.service_endpoints == {"kinesis": "http://127.0.0.1:4568", "stepfunctions": "http://127.0.0.1:8083"}
    clients = Clients(settings)
    assert clients.kinesis.meta.endpoint_url == "http://127.0.0.1:4568"
    assert clients.sfn.meta.endpoint_url == "http://127.0.0.1:8083"
    assert clients.dynamodb.meta.endpoint_url == "http://127.0.0.1:5000"


def test_without_service_variables_everything_uses_the_one_endpoint(tmp_path: Path) -> None:
    settings = Settings.from_env({"HYBRID_INGEST_HOME": str(tmp_path), "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"})
    assert settings.service_endpoints == {}
    assert Clients(settings).kinesis.meta.endpoint_url == "http://127.0.0.1:5000"
