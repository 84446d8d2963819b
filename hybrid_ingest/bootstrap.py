"""``init``: create what the service needs, idempotently, under the terraform default names.

On AWS terraform owns these resources and ``init`` only registers schemas and job
settings into them; against the local stack it creates them too. Every step
tolerates "already exists", so ``init`` can be run again at any time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.layout import ZONES
from hybrid_ingest.registry import Registration, Registry
from hybrid_ingest.state import StateStore
from hybrid_ingest.tables import load_specs

LOCAL_SHARDS = 2


@dataclass
class InitReport:
    created: list[str] = field(default_factory=list)
    registered: list[Registration] = field(default_factory=list)


def _exists_error(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in (
        "ResourceInUseException", "AlreadyExistsException", "ResourceAlreadyExistsException",
    )


def ensure_stream(clients: Clients, name: str, shards: int) -> bool:
    try:
        clients.kinesis.create_stream(StreamName=name, ShardCount=shards)
    except ClientError as exc:
        if _exists_error(exc):
            return False
        raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = clients.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if status["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.2)
    return True


def ensure_kv_table(clients: Clients, name: str, ttl_attribute: str | None = None) -> bool:
    """A pk/sk string-keyed, on-demand table (the shape of all three service tables)."""
    try:
        clients.dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as exc:
        if _exists_error(exc):
            return False
        raise
    clients.dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    if ttl_attribute:
        clients.dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
        )
    return True


def ensure_database(clients: Clients, name: str, description: str) -> bool:
    try:
        clients.glue.create_database(DatabaseInput={"Name": name, "Description": description})
    except ClientError as exc:
        if _exists_error(exc):
            return False
        raise
    return True


def init(clients: Clients, lake: Lake, schema_paths: list[Path], create_resources: bool = True,
         shards: int = LOCAL_SHARDS) -> InitReport:
    """Create stream, tables, catalog databases and lake zones; register every table found."""
    names = clients.settings.names
    report = InitReport()
    if create_resources:
        if ensure_stream(clients, names.stream, shards):
            report.created.append(f"kinesis stream {names.stream} ({shards} shards)")
        for table, ttl in ((names.registry_table, None), (names.state_table, "ttl"), (names.runs_table, None)):
            if ensure_kv_table(clients, table, ttl):
                report.created.append(f"dynamodb table {table}")
        for database, what in ((names.curated_database, "curated tables (query these)"),
                               (names.raw_database, "raw change records")):
            if ensure_database(clients, database, what):
                report.created.append(f"glue database {database}")
        for zone in ZONES:
            lake.ensure_dir(zone)
    store = StateStore(clients.dynamodb, names.state_table, names.runs_table)
    store.put_settings({})
    registry = Registry(clients.dynamodb, names.registry_table)
    for spec in load_specs(schema_paths):
        report.registered.append(registry.register(spec))
    return report
