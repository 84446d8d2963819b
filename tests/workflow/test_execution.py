"""The real ASL definition executed by moto's interpreter, Glue runs executing real (stand-in) job scripts."""

from __future__ import annotations

import json

import pytest

from hybrid_ingest import workflow
from hybrid_ingest.aws import Clients
from hybrid_ingest.state import StateStore
from tests.workflow.conftest import FAKE_SCRIPTS, Alerts, merged_markers

TABLES = ["customers", "order_items", "orders"]


def run(clients: Clients, **kwargs: object) -> workflow.ExecutionResult:
    return workflow.start_and_wait(clients, tables=TABLES, timeout=120, **kwargs)  # type: ignore[arg-type]


def history_errors(clients: Clients, execution_arn: str) -> list[str]:
    events = clients.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["taskFailedEventDetails"]["error"] for e in events if e["type"] == "TaskFailed"]


def test_clean_run_merges_three_tables_records_history_and_unlocks(
        initialized: Clients, store: StateStore, deployed: workflow.Deployment, alerts: Alerts) -> None:
    result = run(initialized)

    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output is not None
    assert sorted(r["table"] for r in result.output["results"]) == TABLES
    markers = merged_markers(initialized.settings.lake_uri, result.name)
    assert sorted(markers) == TABLES
    assert {m["run_id"] for m in markers.values()} == {result.name}
    assert {m["engine"] for m in markers.values()} == {"duckdb"}
    assert store.lease("batch") is None
    assert [t["status"] for t in result.tables] == ["SUCCEEDED"] * 3
    last = store.runs("workflow", limit=1)[0]
    assert (last["run_id"], last["status"]) == (result.name, "SUCCEEDED")
    assert alerts.messages() == []


def test_engine_override_reaches_every_merge_job(initialized: Clients, deployed: workflow.Deployment) -> None:
    result = run(initialized, engine_override="spark")
    assert result.succeeded
    assert {m["engine"] for m in merged_markers(initialized.settings.lake_uri, result.name).values()} == {"spark"}


def test_run_while_another_holds_the_lock_ends_cleanly(
        initialized: Clients, store: StateStore, deployed: workflow.Deployment) -> None:
    held = store.acquire("batch", owner="batch-other-run", ttl_seconds=600)

    result = run(initialized)

    assert result.status == "SUCCEEDED"
    assert result.already_running
    assert result.output == {"status": "already-running", "holder": "batch-other-run"}
    assert merged_markers(initialized.settings.lake_uri, result.name) == {}
    assert store.lease("batch") == held  # untouched
    assert result.tables == []


def test_failing_table_fails_run_others_merge_lock_released_alert_sent(
        initialized: Clients, store: StateStore, deployed: workflow.Deployment, alerts: Alerts,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MERGE_FAIL", "orders")

    result = run(initialized)

    assert result.status == "FAILED"
    assert result.error == "MergeFailed"
    assert "orders" in (result.cause or "")
    assert sorted(merged_markers(initialized.settings.lake_uri, result.name)) == ["customers", "order_items"]
    outcomes = {t["table"]: t for t in result.tables}
    assert outcomes["orders"]["status"] == "FAILED"
    assert workflow.job_error(outcomes["orders"]["cause"]) == "MergeError: boom on orders"
    assert outcomes["customers"]["status"] == outcomes["order_items"]["status"] == "SUCCEEDED"
    assert store.lease("batch") is None
    last = store.runs("workflow", limit=1)[0]
    assert (last["status"], json.loads(last["failed_tables"])) == ("FAILED", ["orders"])
    [note] = alerts.messages()
    message = json.loads(note["Message"])
    assert message["execution"] == result.name
    assert message["failed_tables"] == ["orders"]


def test_failing_plan_fails_run_releases_lock_and_alerts(
        initialized: Clients, store: StateStore, deployed: workflow.Deployment, alerts: Alerts,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PLAN_FAIL", "1")

    result = run(initialized)

    assert (result.status, result.error) == ("FAILED", "PlanJobFailed")
    assert "sizing exploded on" in (result.cause or "")
    assert store.lease("batch") is None
    assert merged_markers(initialized.settings.lake_uri, result.name) == {}
    assert len(alerts.messages()) == 1


def test_start_job_run_retried_after_concurrent_runs_exceeded(
        initialized: Clients, store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """MaxConcurrentRuns=1 and a run already going: the first StartJobRun is refused, the Retry succeeds."""
    workflow.deploy(initialized, FAKE_SCRIPTS, map_concurrency=1, merge_max_concurrent_runs=1)
    monkeypatch.setenv("FAKE_MERGE_AFTER_PLAN_blocker", "1")  # still running when the Map starts its jobs
    monkeypatch.setenv("FAKE_MERGE_UNTIL_REFUSED_blocker", "1")  # and until one of them was refused
    names = initialized.settings.names
    initialized.glue.start_job_run(JobName=names.merge_job, Arguments={
        "--table": "blocker", "--engine": "duckdb", "--run_id": "blocker"})

    result = run(initialized)

    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert "Glue.ConcurrentRunsExceededException" in history_errors(initialized, result.arn)
    assert sorted(merged_markers(initialized.settings.lake_uri, result.name)) == TABLES
    assert store.lease("batch") is None
