"""Workflow fixtures: the real ASL on moto's interpreter, with stand-in job scripts that really run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hybrid_ingest import workflow
from hybrid_ingest.aws import Clients
from hybrid_ingest.local import glue_runner

JOBS = Path(__file__).resolve().parent / "jobs"
FAKE_SCRIPTS = workflow.JobScripts(plan=JOBS / "fake_plan.py", merge=JOBS / "fake_merge.py")


@pytest.fixture(autouse=True)
def stand_in_jobs_may_run(moto_endpoint: str) -> Iterator[None]:
    """The in-process stack runs the stand-in job scripts of these tests too, and only for these tests."""
    glue_runner.install(moto_endpoint, (*glue_runner.project_script_roots(), JOBS))
    yield
    glue_runner.install(moto_endpoint)


@dataclass
class Alerts:
    """An SQS queue subscribed to the alerts topic: what SNS published, observable over the server."""

    clients: Clients
    queue_url: str

    def messages(self) -> list[dict[str, Any]]:
        sqs = self.clients.client("sqs")
        out = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [json.loads(m["Body"]) for m in out.get("Messages", [])]


@pytest.fixture
def deployed(initialized: Clients) -> workflow.Deployment:
    return workflow.deploy(initialized, FAKE_SCRIPTS)


@pytest.fixture
def alerts(initialized: Clients, deployed: workflow.Deployment) -> Alerts:
    sqs = initialized.client("sqs")
    url = sqs.create_queue(QueueName="alerts-probe")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    initialized.sns.subscribe(TopicArn=deployed.topic_arn, Protocol="sqs", Endpoint=arn)
    return Alerts(initialized, url)


def merged_markers(lake_uri: str, run_id: str) -> dict[str, dict[str, str]]:
    folder = Path(lake_uri.removeprefix("file://")) / "fake-merged" / run_id
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")} if folder.exists() else {}
