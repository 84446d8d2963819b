"""Glue job: the first step of the batch workflow. Take the run lock, size every table, write the plan.

Step Functions cannot compute "now + lease" as a number, so the lock (a DynamoDB
conditional put with a lease and a fencing token, ``StateStore.acquire``) is taken
here, owned by the execution name (``--run_id``). The plan is one item in the state
table, ``pk = plan#<run_id>``, ``sk = plan``, attribute ``plan`` = JSON:

* ``{"status": "planned", "run_id", "lock_token", "engine_override", "tables": [<per-table plan>]}``
  where each table plan comes from ``glue_jobs.sizing.plan_table`` (``table``, ``engine``,
  ``reason``, ``worker_type``, ``workers``, ``execution_class``) and feeds the Map's
  StartJobRun directly;
* ``{"status": "already-running", "holder": <owner>, "tables": []}`` when another run
  holds the lock: this job still succeeds, and the workflow ends cleanly.

If anything fails after the lock was taken, the lock is released before the job
fails, so a broken plan never blocks the next scheduled run for a whole lease. A
failure prints ``ERROR: <message>`` as its last line (GetJobRun's ErrorMessage locally).

Arguments (Glue style ``--key value``): ``--run_id``, ``--input`` (the execution input
as JSON; ``engine`` in it overrides the sizing's choice), ``--lake_uri``,
``--name_prefix``, ``--region``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from glue_jobs.job_args import job_parser, parse_job_args
from hybrid_ingest.aws import Clients
from hybrid_ingest.config import Settings
from hybrid_ingest.errors import LeaseHeldError, MergeError
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LOCK_NAME = "batch"
PLAN_TTL_SECONDS = 7 * 86400
ENGINES = ("duckdb", "spark")
REQUIRED_KEYS = ("table", "engine", "worker_type", "workers", "execution_class")

# (table, job settings, engine override or None) -> the table's plan
Planner = Callable[[str, dict[str, Any], str | None], dict[str, Any]]
PlannerFactory = Callable[[Clients, Lake, StateStore, Registry], Planner]


def sizing_planner(clients: Clients, lake: Lake, store: StateStore, registry: Registry) -> Planner:
    """The merge engineer's sizing: estimate each table's pending input, then pick engine and capacity."""
    from glue_jobs.sizing import estimate_inputs, plan_table, snapshot_bytes

    table_bytes = snapshot_bytes(clients, lake)

    def plan(table: str, settings: dict[str, Any], override: str | None) -> dict[str, Any]:
        return dict(plan_table(estimate_inputs(lake, store, registry, table, table_bytes), settings, override))

    return plan


def engine_override(execution_input: str) -> str | None:
    """``engine`` from the execution input; triggers (schedule, manifest) send none, meaning auto."""
    try:
        doc = json.loads(execution_input) if execution_input else {}
    except ValueError as exc:
        raise MergeError(f"execution input is not JSON: {execution_input[:200]!r}") from exc
    engine = doc.get("engine") if isinstance(doc, dict) else None
    if engine in (None, "", "auto"):
        return None
    if engine not in ENGINES:
        raise MergeError(f"unknown engine {engine!r} in the execution input (auto, duckdb or spark)")
    return str(engine)


def checked(table_plan: dict[str, Any], table: str) -> dict[str, Any]:
    missing = [k for k in REQUIRED_KEYS if table_plan.get(k) in (None, "")]
    if missing:
        raise MergeError(f"plan of {table!r} lacks {', '.join(missing)}: {table_plan}")
    if table_plan["engine"] not in ENGINES:
        raise MergeError(f"plan of {table!r} has unknown engine {table_plan['engine']!r}")
    return {**table_plan, "workers": int(table_plan["workers"]), "table": table}


def make_plan(store: StateStore, tables: Sequence[str], planner: Planner, run_id: str,
              override: str | None) -> tuple[dict[str, Any], Callable[[], bool]]:
    """Take the lock and size every table; returns the plan and how to give the lock back.

    The lock is released here already if sizing fails; the caller releases it if
    writing the plan fails.
    """
    settings = store.settings()
    try:
        lease = store.acquire(LOCK_NAME, owner=run_id, ttl_seconds=float(settings["lock_lease_seconds"]))
    except LeaseHeldError:
        holder = store.lease(LOCK_NAME)
        return {"status": "already-running", "holder": holder.owner if holder else "unknown",
                "run_id": run_id, "tables": []}, lambda: False
    try:
        plans = [checked(planner(table, settings, override), table) for table in tables]
    except BaseException:
        store.release(lease)
        raise
    doc = {"status": "planned", "run_id": run_id, "lock_token": lease.token, "engine_override": override,
           "tables": plans}
    return doc, lambda: store.release(lease)


def write_plan(dynamodb: DynamoDBClient, state_table: str, run_id: str, plan: dict[str, Any],
               now: float | None = None) -> None:
    now = time.time() if now is None else now
    dynamodb.put_item(
        TableName=state_table,
        Item={
            "pk": {"S": f"plan#{run_id}"}, "sk": {"S": "plan"},
            "plan": {"S": json.dumps(plan, sort_keys=True, default=str)},
            "created": {"N": repr(now)},
            "ttl": {"N": str(int(now) + PLAN_TTL_SECONDS)},
        },
    )


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, Settings]:
    parser = job_parser("hybrid-ingest batch plan job")
    parser.add_argument("--run_id", required=True)
    parser.add_argument("--input", default="{}")
    return parse_job_args(parser, argv)


def run(argv: Sequence[str], make_planner: PlannerFactory = sizing_planner) -> dict[str, Any]:
    args, settings = parse_args(argv)
    clients = Clients(settings)
    names = settings.names
    store = StateStore(clients.dynamodb, names.state_table, names.runs_table)
    registry = Registry(clients.dynamodb, names.registry_table)
    lake = Lake.from_uri(settings.lake_uri, settings.endpoint_url, settings.region)
    override = engine_override(args.input)
    plan, release = make_plan(store, registry.tables(), make_planner(clients, lake, store, registry), args.run_id, override)
    try:
        write_plan(clients.dynamodb, names.state_table, args.run_id, plan)
    except BaseException:
        release()
        raise
    return plan


def main(argv: Sequence[str] | None = None, make_planner: PlannerFactory = sizing_planner) -> int:
    try:
        plan = run(sys.argv[1:] if argv is None else argv, make_planner)
    except Exception as exc:
        print(f"ERROR: {type(exc).__name__}: {exc}", flush=True)
        return 1
    print(json.dumps({"status": plan["status"], "tables": [t["table"] for t in plan["tables"]]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
