"""The batch workflow: render the one ASL template, deploy it on the local stack, run it and wait.

``terraform/workflow.asl.json.tpl`` is the single source of the state machine: terraform
renders it with ``templatefile()`` for AWS, and ``render`` below renders the very same
file for the local stack. To keep both renderers equivalent the template uses nothing
but plain ``${name}`` placeholders (no ``%{}`` directives, no expressions), so a regex
substitution is a faithful templatefile(); an unknown or missing name is an error, not
an empty string.

Locally, ``deploy`` creates what terraform creates on AWS (alerts topic, the plan and
merge Glue jobs pointing at ``glue_jobs/*.py`` as ``file://`` scripts, the state
machine) idempotently. ``start_and_wait`` then starts an execution on moto's real
interpreter, where the Glue job runner (``hybrid_ingest.local.glue_runner``) executes
the job scripts for real, and polls DescribeExecution until it ends.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from hybrid_ingest import quarantine
from hybrid_ingest.aws import Clients
from hybrid_ingest.config import Names
from hybrid_ingest.errors import ConfigError, WorkflowError
from hybrid_ingest.lake import Lake
from hybrid_ingest.layout import DLQ
from hybrid_ingest.state import DEFAULT_SETTINGS, StateStore

if TYPE_CHECKING:
    from mypy_boto3_glue.type_defs import JobUpdateTypeDef

LOCAL_ACCOUNT = "123456789012"
TEMPLATE_NAME = "workflow.asl.json.tpl"
LOCK_NAME = "batch"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_REPO = Path(__file__).resolve().parent.parent


def template_path() -> Path:
    """The template in the source tree (terraform/ is not part of the installed package)."""
    path = _REPO / "terraform" / TEMPLATE_NAME
    if not path.exists():
        raise ConfigError(f"workflow template not found at {path}: run from a source checkout")
    return path


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def render(template: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Substitute ``${name}`` like terraform's templatefile and parse the result as JSON.

    Strings are substituted raw (the template quotes them), numbers as their literal,
    exactly what templatefile does with string and number variables.
    """
    missing = placeholders(template) - set(values)
    if missing:
        raise ConfigError(f"workflow template needs values for: {', '.join(sorted(missing))}")
    if "%{" in template:
        raise ConfigError("workflow template must not use template directives (%{...}): keep it renderable by both")

    def value(match: re.Match[str]) -> str:
        raw = values[match.group(1)]
        return str(raw).lower() if isinstance(raw, bool) else str(raw)

    text = _PLACEHOLDER.sub(value, template)
    try:
        doc: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"rendered workflow is not valid JSON: {exc}") from exc
    return doc


@dataclass(frozen=True)
class WorkflowValues:
    """The template's variables; terraform passes the same names in stepfunctions.tf."""

    state_table: str
    runs_table: str
    plan_job: str
    merge_job: str
    alerts_topic_arn: str
    map_concurrency: int = int(DEFAULT_SETTINGS["map_concurrency"])
    poll_seconds: int = 1
    retry_interval_seconds: int = 1
    retry_max_attempts: int = 6

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def local_values(names: Names, region: str, map_concurrency: int) -> WorkflowValues:
    return WorkflowValues(
        state_table=names.state_table,
        runs_table=names.runs_table,
        plan_job=names.plan_job,
        merge_job=names.merge_job,
        alerts_topic_arn=f"arn:aws:sns:{region}:{LOCAL_ACCOUNT}:{names.alerts_topic}",
        map_concurrency=map_concurrency,
    )


def glue_jobs_dir() -> Path:
    """Where the job scripts are: the ``glue_jobs`` package, wherever it is installed."""
    spec = importlib.util.find_spec("glue_jobs")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else _REPO / "glue_jobs"


@dataclass(frozen=True)
class JobScripts:
    plan: Path
    merge: Path

    @classmethod
    def default(cls) -> JobScripts:
        base = glue_jobs_dir()
        return cls(plan=base / "plan_job.py", merge=base / "merge_job.py")


@dataclass(frozen=True)
class Deployment:
    state_machine_arn: str
    topic_arn: str
    values: WorkflowValues


def _ensure_job(clients: Clients, name: str, script: Path, default_arguments: dict[str, str],
                max_concurrent_runs: int) -> None:
    job: JobUpdateTypeDef = {
        "Role": f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{clients.settings.names.prefix}-glue-merge",
        "Command": {"Name": "glueetl", "ScriptLocation": script.resolve().as_uri(), "PythonVersion": "3"},
        "DefaultArguments": default_arguments,
        "ExecutionProperty": {"MaxConcurrentRuns": max_concurrent_runs},
        "GlueVersion": "5.0",
        "WorkerType": "G.1X",
        "NumberOfWorkers": 2,
        "MaxRetries": 0,
    }
    try:
        current = clients.glue.get_job(JobName=name)["Job"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "EntityNotFoundException":
            raise
        clients.glue.create_job(Name=name, **job)
        return
    if all(current.get(key) == value for key, value in job.items()):
        return
    # moto has no UpdateJob: replace the job, but never under a run that is still going
    runs = clients.glue.get_job_runs(JobName=name).get("JobRuns", [])
    if any(r.get("JobRunState") in ("STARTING", "RUNNING", "WAITING", "STOPPING") for r in runs):
        raise ConfigError(f"Glue job {name} has runs in progress: redeploy once they have ended")
    clients.glue.delete_job(JobName=name)
    clients.glue.create_job(Name=name, **job)


def deploy(clients: Clients, scripts: JobScripts | None = None, map_concurrency: int | None = None,
           merge_max_concurrent_runs: int | None = None) -> Deployment:
    """Create or update the workflow and everything it calls on the local stack; idempotent.

    ``map_concurrency`` defaults to the stored job setting; the merge job admits at
    least that many concurrent runs (tests lower it to provoke ConcurrentRunsExceeded).
    """
    settings = clients.settings
    if not settings.is_local:
        raise ConfigError("the workflow is deployed by terraform on AWS; local deploy needs the local stack")
    names = settings.names
    scripts = scripts or JobScripts.default()
    if map_concurrency is None:
        store = StateStore(clients.dynamodb, names.state_table, names.runs_table)
        map_concurrency = int(store.settings()["map_concurrency"])
    topic_arn = clients.sns.create_topic(Name=names.alerts_topic)["TopicArn"]
    common = {"--lake_uri": settings.lake_uri, "--name_prefix": names.prefix, "--region": settings.region}
    _ensure_job(clients, names.plan_job, scripts.plan, common, 2)
    _ensure_job(clients, names.merge_job, scripts.merge, {**common, "--engine": "auto"},
                merge_max_concurrent_runs or max(map_concurrency, 1))
    values = local_values(names, settings.region, map_concurrency)
    values = WorkflowValues(**{**values.as_dict(), "alerts_topic_arn": topic_arn})
    definition = json.dumps(render(template_path().read_text(), values.as_dict()))
    role = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{names.prefix}-workflow"
    arn = f"arn:aws:states:{settings.region}:{LOCAL_ACCOUNT}:stateMachine:{names.state_machine}"
    try:
        clients.sfn.describe_state_machine(stateMachineArn=arn)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "StateMachineDoesNotExist":
            raise
        arn = clients.sfn.create_state_machine(name=names.state_machine, definition=definition,
                                               roleArn=role, type="STANDARD")["stateMachineArn"]
    else:
        clients.sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role)
    return Deployment(arn, topic_arn, values)


@dataclass
class ExecutionResult:
    """How an execution ended; ``tables`` are the per-table outcomes from the run history."""

    name: str
    arn: str
    status: str
    output: dict[str, Any] | None = None
    error: str | None = None
    cause: str | None = None
    tables: list[dict[str, Any]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    @property
    def already_running(self) -> bool:
        return bool(self.output and self.output.get("status") == "already-running")


def execution_name(now: dt.datetime | None = None) -> str:
    """Unique, sortable and valid as a Step Functions name and as a lock owner / run id."""
    now = now or dt.datetime.now(dt.UTC)
    return f"batch-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def state_machine_arn(clients: Clients) -> str:
    names = clients.settings.names
    for page in clients.sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == names.state_machine:
                return machine["stateMachineArn"]
    raise ConfigError(f"state machine {names.state_machine!r} not found: run `hybrid-ingest init` "
                      "(locally) or terraform apply (AWS)")


def job_error(cause: str) -> str:
    """A failed Glue run's own message when ``cause`` is its JobRun JSON, else ``cause`` itself."""
    try:
        doc = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(doc, dict) and "JobRunState" in doc:
        return str(doc.get("ErrorMessage") or f"job run ended {doc['JobRunState']}")
    return cause


def table_outcomes(store: StateStore, tables: list[str], run_id: str) -> list[dict[str, Any]]:
    """The per-table records this execution wrote into the run history."""
    out: list[dict[str, Any]] = []
    for table in tables:
        mine = [r for r in store.runs(table, limit=20) if r.get("run_id") == run_id]
        # the workflow's own record carries the Glue run's outcome even when the job died early, so it wins;
        # the merge's record adds what only the job knows (the extracts it held, say)
        mine.sort(key=lambda r: r.get("source") == "workflow")
        if mine:
            out.append({"table": table, **{k: v for record in mine for k, v in record.items()}})
    return out


def start_and_wait(clients: Clients, engine_override: str | None = None, timeout: float = 3600.0,
                   tables: list[str] | None = None, poll_interval: float = 0.5,
                   name: str | None = None) -> ExecutionResult:
    """Start one execution of the batch state machine and wait for its end.

    ``tables`` (the registered table names) lets the result carry per-table outcomes
    read back from the run history, which also exist when the execution failed and has
    no output.
    """
    arn = state_machine_arn(clients)
    name = name or execution_name()
    payload: dict[str, Any] = {"trigger": "cli"}
    if engine_override and engine_override != "auto":
        payload["engine"] = engine_override
    execution_arn = clients.sfn.start_execution(stateMachineArn=arn, name=name,
                                                input=json.dumps(payload))["executionArn"]
    deadline = time.monotonic() + timeout
    while True:
        described = clients.sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            break
        if time.monotonic() > deadline:
            raise WorkflowError(f"execution {name} still running after {timeout:.0f} s ({execution_arn})")
        time.sleep(poll_interval)
    output = json.loads(described["output"]) if described.get("output") else None
    result = ExecutionResult(name=name, arn=execution_arn, status=described["status"], output=output,
                             error=described.get("error"), cause=described.get("cause"))
    if tables:
        names = clients.settings.names
        store = StateStore(clients.dynamodb, names.state_table, names.runs_table)
        result.tables = table_outcomes(store, tables, name)
    return result


# -- operations: what `hybrid-ingest status` shows ----------------------------------------------


@dataclass(frozen=True)
class TableStatus:
    table: str
    last_run: dict[str, Any] | None
    shards: dict[str, str]
    extracts: int
    version: int
    freshness_s: float | None
    snapshot_id: int | None = None  # the curated table's current Iceberg snapshot
    snapshot_age_s: float | None = None
    held: int = 0  # extracts the merge holds (``hybrid_ingest.quarantine``)

    @property
    def outcome(self) -> str:
        if self.last_run is None:
            return "never merged"
        return str(self.last_run.get("status") or self.last_run.get("outcome") or "unknown")

    @property
    def error(self) -> str:
        if self.last_run is None or self.outcome == "SUCCEEDED":
            return ""
        return job_error(str(self.last_run.get("cause") or self.last_run.get("error") or ""))


@dataclass(frozen=True)
class StatusReport:
    tables: list[TableStatus]
    workflow_run: dict[str, Any] | None
    lock_holder: str | None
    shards: dict[str, dict[str, Any]]
    dlq: dict[tuple[str, str], int]
    held: list[quarantine.HeldExtract] = field(default_factory=list)
    released: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # released, not merged yet


def dlq_counts(lake: Lake) -> dict[tuple[str, str], int]:
    """Dead-lettered files per (stage, reason), from the ``dlq/<stage>/<reason>/...`` layout."""
    counts: dict[tuple[str, str], int] = {}
    for info in lake.files(DLQ):
        parts = lake.rel(info.path).split("/")
        if len(parts) >= 4:
            key = (parts[1], parts[2])
            counts[key] = counts.get(key, 0) + 1
    return counts


def shard_status(store: StateStore, stream: str) -> dict[str, dict[str, Any]]:
    """Per shard: the consumer's own figures (lag, owner) merged over its durable checkpoint."""
    out: dict[str, dict[str, Any]] = {
        shard: {"checkpoint": str(position)} for shard, position in store.checkpoints(stream).items()
    }
    for shard, stats in store.consumer_stats(stream).items():
        out.setdefault(shard, {}).update(stats)
    for shard in store.finished_shards(stream):
        out.setdefault(shard, {})["finished"] = True
    return out


def collect_status(store: StateStore, tables: list[str], lake: Lake, stream: str,
                   now: float | None = None,
                   snapshot: Callable[[str], tuple[int, float] | None] | None = None) -> StatusReport:
    """``snapshot(table)``: the curated table's current snapshot id and its commit time (epoch seconds)."""
    now = time.time() if now is None else now
    rows: list[TableStatus] = []
    held = quarantine.held(lake)
    released: list[tuple[str, str, dict[str, Any]]] = []
    for table in tables:
        runs = store.runs(table, limit=1)
        mark = store.watermark(table)
        holding = {h.extract_id for h in held if h.table == table}
        released += [(table, extract_id, doc) for extract_id, doc in sorted(store.releases(table).items())
                     if extract_id not in mark.extracts and extract_id not in holding]
        current = snapshot(table) if snapshot is not None else None
        rows.append(TableStatus(
            table=table,
            last_run=runs[0] if runs else None,
            shards={shard: str(position) for shard, position in sorted(mark.shards.items())},
            extracts=len(mark.extracts),
            version=mark.version,
            freshness_s=(now - mark.newest_op_ts) if mark.newest_op_ts is not None else None,
            snapshot_id=current[0] if current else None,
            snapshot_age_s=(now - current[1]) if current else None,
            held=len(holding),
        ))
    workflow_runs = store.runs("workflow", limit=1)
    lock = store.lease(LOCK_NAME)
    holder = lock.owner if lock is not None and lock.expires > now else None
    return StatusReport(rows, workflow_runs[0] if workflow_runs else None, holder,
                        shard_status(store, stream), dlq_counts(lake), held, released)
