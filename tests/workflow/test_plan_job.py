"""The plan job's lock and plan logic, in process against moto (the workflow tests run it as a Glue job)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from glue_jobs import plan_job
from hybrid_ingest.aws import Clients
from hybrid_ingest.errors import MergeError
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from tests.workflow.jobs.fake_plan import fixed_planner


def planner(table: str, settings: dict[str, Any], override: str | None) -> dict[str, Any]:
    return {"table": table, "engine": override or "duckdb", "reason": "t", "worker_type": "G.1X",
            "workers": "3", "execution_class": "FLEX"}


def test_plan_takes_the_lock_and_sizes_every_table(store: StateStore) -> None:
    plan, release = plan_job.make_plan(store, ["a", "b"], planner, "run-1", "spark")
    assert plan["status"] == "planned"
    assert [(t["table"], t["engine"], t["workers"]) for t in plan["tables"]] == [("a", "spark", 3), ("b", "spark", 3)]
    lease = store.lease("batch")
    assert lease is not None
    assert lease.owner == "run-1"
    assert plan["lock_token"] == lease.token
    assert release() is True
    assert store.lease("batch") is None


def test_plan_reports_already_running_without_touching_the_lock(store: StateStore) -> None:
    held = store.acquire("batch", owner="run-0", ttl_seconds=600)
    plan, release = plan_job.make_plan(store, ["a"], planner, "run-1", None)
    assert plan == {"status": "already-running", "holder": "run-0", "run_id": "run-1", "tables": []}
    assert release() is False
    assert store.lease("batch") == held


def test_failed_sizing_releases_the_lock(store: StateStore) -> None:
    def broken(table: str, settings: dict[str, Any], override: str | None) -> dict[str, Any]:
        raise RuntimeError("no estimate")

    with pytest.raises(RuntimeError, match="no estimate"):
        plan_job.make_plan(store, ["a"], broken, "run-1", None)
    assert store.lease("batch") is None


def test_incomplete_table_plan_is_refused(store: StateStore) -> None:
    def partial(table: str, settings: dict[str, Any], override: str | None) -> dict[str, Any]:
        return {"table": table, "engine": "duckdb"}

    with pytest.raises(MergeError, match="worker_type"):
        plan_job.make_plan(store, ["a"], partial, "run-1", None)
    assert store.lease("batch") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("{}", None), ('{"trigger": "schedule"}', None), ('{"engine": "auto"}', None), ('{"engine": "spark"}', "spark"),
])
def test_engine_override_from_execution_input(text: str, expected: str | None) -> None:
    assert plan_job.engine_override(text) == expected


def test_engine_override_rejects_unknown_engine() -> None:
    with pytest.raises(MergeError, match="unknown engine"):
        plan_job.engine_override('{"engine": "pandas"}')


def test_main_writes_the_plan_item(initialized: Clients, registry: Registry, lake: Lake,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = initialized.settings
    monkeypatch.setenv("AWS_ENDPOINT_URL", str(settings.endpoint_url))
    code = plan_job.main(["--JOB_NAME", "x", "--run_id", "run-9", "--input", '{"engine": "spark"}',
                          "--lake_uri", settings.lake_uri, "--name_prefix", settings.names.prefix,
                          "--region", settings.region], make_planner=fixed_planner)
    assert code == 0
    item = initialized.dynamodb.get_item(TableName=settings.names.state_table,
                                         Key={"pk": {"S": "plan#run-9"}, "sk": {"S": "plan"}})["Item"]
    plan = json.loads(item["plan"]["S"])
    assert [t["table"] for t in plan["tables"]] == registry.tables()
    assert {t["engine"] for t in plan["tables"]} == {"spark"}
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "planned"


def test_main_prints_error_line_and_exits_1(initialized: Clients, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    settings = initialized.settings
    monkeypatch.setenv("AWS_ENDPOINT_URL", str(settings.endpoint_url))
    code = plan_job.main(["--run_id", "run-9", "--input", '{"engine": "pandas"}', "--lake_uri", settings.lake_uri,
                          "--name_prefix", settings.names.prefix, "--region", settings.region],
                         make_planner=fixed_planner)
    assert code == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("ERROR: MergeError: unknown engine")
