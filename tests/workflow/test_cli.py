"""``batch run`` and ``status`` through the command line, against the local stack."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from hybrid_ingest import workflow
from hybrid_ingest.aws import Clients
from hybrid_ingest.cli import cli
from hybrid_ingest.cli.batch import aligned, duration
from hybrid_ingest.lake import Lake
from hybrid_ingest.position import Position
from hybrid_ingest.state import StateStore, Watermark


@pytest.fixture
def env(initialized: Clients) -> dict[str, str]:
    s = initialized.settings
    return {"HYBRID_INGEST_HOME": str(s.home), "AWS_ENDPOINT_URL": str(s.endpoint_url),
            "HYBRID_INGEST_LAKE_URI": s.lake_uri, "AWS_REGION": s.region, "HYBRID_INGEST_PREFIX": s.names.prefix}


def test_batch_run_prints_outcomes_and_exits_1_on_failure(
        env: dict[str, str], deployed: workflow.Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = CliRunner().invoke(cli, ["batch", "run"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "SUCCEEDED in" in ok.output
    assert sum(1 for line in ok.output.splitlines() if "duckdb  SUCCEEDED" in line) == 3

    monkeypatch.setenv("FAKE_MERGE_FAIL", "customers")
    bad = CliRunner().invoke(cli, ["batch", "run", "--engine", "spark"], env=env)
    assert bad.exit_code == 1
    [line] = [line for line in bad.output.splitlines() if line.startswith("customers")]
    assert line.split()[:3] == ["customers", "spark", "FAILED"]
    assert "boom on customers" in line
    assert "MergeFailed" in bad.output


def test_batch_run_reports_already_running(env: dict[str, str], store: StateStore,
                                           deployed: workflow.Deployment) -> None:
    store.acquire("batch", owner="batch-elsewhere", ttl_seconds=600)
    result = CliRunner().invoke(cli, ["batch", "run"], env=env)
    assert result.exit_code == 0, result.output
    assert "another batch run holds the lock (batch-elsewhere)" in result.output


def test_batch_run_without_deployment_says_how_to_fix(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["batch", "run"], env=env)
    assert result.exit_code != 0
    assert "hybrid-ingest init" in str(result.exception)


def test_init_deploys_the_workflow_locally(env: dict[str, str], initialized: Clients) -> None:
    result = CliRunner().invoke(cli, ["init", "--schemas", "schemas"], env=env)
    assert result.exit_code == 0, result.output
    assert "stateMachine:hybrid-ingest-batch" in result.output
    assert initialized.glue.get_job(JobName="hybrid-ingest-plan")["Job"]["Command"]["ScriptLocation"].endswith(
        "glue_jobs/plan_job.py")
    again = CliRunner().invoke(cli, ["init", "--schemas", "schemas"], env=env)
    assert again.exit_code == 0, again.output


def test_status_shows_runs_watermarks_freshness_dlq_and_shards(
        env: dict[str, str], store: StateStore, lake: Lake, deployed: workflow.Deployment,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MERGE_FAIL", "orders")
    CliRunner().invoke(cli, ["batch", "run"], env=env)
    store.commit_watermark(Watermark("customers", {"shardId-000000000000": Position(4900, 2)},
                                     frozenset({"x1"}), newest_op_ts=time.time() - 575), 0)
    store.set_checkpoint("hybrid-ingest-changes", "shardId-000000000000", Position(4900, 2))
    lake.write_bytes("dlq/consumer/bad-wire-format/a.bin", b"x")
    lake.write_bytes("dlq/consumer/bad-wire-format/b.bin", b"x")
    lake.write_bytes("dlq/merge/invalid-row/c.json", b"x")

    result = CliRunner().invoke(cli, ["status"], env=env)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    [customers] = [line for line in lines if line.startswith("customers ")]
    assert "SUCCEEDED" in customers
    assert f"shardId-000000000000@{Position(4900, 2)}" in customers
    assert customers.split()[3] == "-"  # no curated snapshot: the fake merge job commits none
    # freshness: the newest merged change is 575 s old, shown as 10m until 630 s (room for a slow machine)
    assert customers.split()[7] == "0"  # no extract held
    assert customers.split()[8] == "10m"
    [orders] = [line for line in lines if line.startswith("orders ")]
    assert "FAILED" in orders
    assert "MergeError: boom on orders" in orders
    assert any(line.startswith("workflow: last run batch-") and "FAILED" in line for line in lines)
    assert "run lock: free" in lines
    assert any(line.split() == ["consumer", "bad-wire-format", "2"] for line in lines)
    assert any(line.split() == ["merge", "invalid-row", "1"] for line in lines)
    assert any(line.startswith(f"shardId-000000000000  {Position(4900, 2)}") for line in lines)


def test_aligned_and_duration_formatting() -> None:
    assert aligned(["a", "bb"], [["xxx", "y"], ["z", ""]]).splitlines() == ["a    bb", "xxx  y", "z"]
    assert [duration(s) for s in (None, 5, 600, 10800, 259200)] == ["-", "5s", "10m", "3.0h", "3.0d"]
