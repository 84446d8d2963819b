"""State store on DynamoDB: checkpoints, leases, run locks, watermarks, job settings, run history.

Every move of shared state is a conditional write (compare-and-set) so that two
workers, two batch runs or a worker that lost its lease can never both succeed.
Items in the state table (``pk``, ``sk``):

* ``checkpoint#<stream>`` / ``<shard>``  last durable Kinesis position of a shard
* ``lease#<name>``        / ``lease``    owner + expiry (shard leases, the batch run lock)
* ``watermark#<table>``   / ``current``  per-shard merged positions, merged extracts, version
* ``settings``            / ``merge``    job settings (engine thresholds, sizes, retention)
* ``source``              / ``<name>``   a change-data source's setup phase, position and lag
* ``release#<table>``     / ``<extract>`` an operator's release of a held extract (``hybrid_ingest.quarantine``)

Run history lives in its own table: ``pk`` = table name (or ``workflow``), ``sk`` =
``<started_at ISO>#<run_id>``, so the newest runs of a table are one query.

Checkpoints and consumer stats are ``state_stream``'s, leases ``state_leases``';
``StateStore`` is all of them over one table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from hybrid_ingest.errors import ConditionFailedError
from hybrid_ingest.position import Position
from hybrid_ingest.state_leases import LeaseState
from hybrid_ingest.state_stream import StreamState
from hybrid_ingest.state_table import Clock, condition_failed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_SETTINGS: dict[str, Any] = {
    "target_file_bytes": 128 * 1024 * 1024,
    "max_rows_per_file": 5_000_000,
    "tombstone_retention_hours": 168,
    "version_retention_hours": 24,
    "engine": "auto",
    "spark_threshold_bytes": 2 * 1024**3,
    "one_pass_change_fraction": 0.1,
    "spark_broadcast_rows": 5_000_000,
    "duckdb_memory_limit": "4GB",
    "map_concurrency": 4,
    "lock_lease_seconds": 3600,
    "parquet_compression": "snappy",
    # the extract guard (glue_jobs/guard.py; README, Security model): a full extract that would delete more
    # than this fraction of its table's live rows is held until released
    "max_full_extract_delete_fraction": 0.5,
    # ... as is an extract whose as_of_seq is further than this past the highest seq its table has seen:
    # 2^44 is 16 TiB of PostgreSQL WAL (an LSN counts bytes) or years of an Oracle SCN, yet far below the
    # 2^63 where a table freezes for good; a source whose seq counts changes one by one may set it far lower
    "max_as_of_seq_ahead": 2**44,
}


@dataclass(frozen=True)
class Watermark:
    """What a table's curated state already contains; ``version`` guards the compare-and-set."""

    table: str
    shards: dict[str, Position] = field(default_factory=dict)
    extracts: frozenset[str] = frozenset()
    version: int = 0
    newest_op_ts: float | None = None
    last_run: str | None = None

    def merged(self, shard: str, position: Position) -> bool:
        done = self.shards.get(shard)
        return done is not None and position <= done


class StateStore(StreamState, LeaseState):
    """Adapter over the state and runs tables; clients and names passed in, clock injectable for tests."""

    def __init__(self, dynamodb: DynamoDBClient, state_table: str, runs_table: str,
                 clock: Clock = time.time) -> None:
        super().__init__(dynamodb, state_table, clock)
        self._runs = runs_table

    # -- watermarks    # -- watermarks ----------------------------------------------------------------------------

    def watermark(self, table: str) -> Watermark:
        item = self._ddb.get_item(
            TableName=self._state, Key={"pk": {"S": f"watermark#{table}"}, "sk": {"S": "current"}},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            return Watermark(table)
        doc = json.loads(item["doc"]["S"])
        return Watermark(
            table=table,
            shards={s: Position.parse(p) for s, p in doc["shards"].items()},
            extracts=frozenset(doc["extracts"]),
            version=int(item["version"]["N"]),
            newest_op_ts=doc.get("newest_op_ts"),
            last_run=doc.get("last_run"),
        )

    def commit_watermark(self, new: Watermark, expected_version: int) -> Watermark:
        """Advance a table's watermark iff nobody moved it since ``expected_version`` was read."""
        doc = {
            "shards": {s: str(p) for s, p in sorted(new.shards.items())},
            "extracts": sorted(new.extracts),
            "newest_op_ts": new.newest_op_ts,
            "last_run": new.last_run,
        }
        version = expected_version + 1
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if expected_version:
            condition = {
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
            }
        try:
            self._ddb.put_item(
                TableName=self._state,
                Item={
                    "pk": {"S": f"watermark#{new.table}"}, "sk": {"S": "current"},
                    "doc": {"S": json.dumps(doc)}, "version": {"N": str(version)},
                    "updated": {"N": repr(self._clock())},
                },
                **condition,
            )
        except ClientError as exc:
            if condition_failed(exc):
                raise ConditionFailedError(
                    f"watermark of {new.table!r} moved since version {expected_version}: a concurrent run committed"
                ) from exc
            raise
        return Watermark(new.table, dict(new.shards), frozenset(new.extracts), version, new.newest_op_ts,
                         new.last_run)

    # -- job settings ----------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        item = self._ddb.get_item(
            TableName=self._state, Key={"pk": {"S": "settings"}, "sk": {"S": "merge"}}, ConsistentRead=True
        ).get("Item")
        stored = json.loads(item["doc"]["S"]) if item else {}
        return {**DEFAULT_SETTINGS, **stored}

    def put_settings(self, settings: Mapping[str, Any]) -> None:
        unknown = set(settings) - set(DEFAULT_SETTINGS)
        if unknown:
            raise ValueError(f"unknown job settings: {sorted(unknown)}")
        merged = {**self.settings(), **settings}
        self._ddb.put_item(
            TableName=self._state,
            Item={"pk": {"S": "settings"}, "sk": {"S": "merge"}, "doc": {"S": json.dumps(merged, sort_keys=True)},
                  "settings_json": {"S": json.dumps(merged, sort_keys=True)}},
        )

    # -- releases of held extracts (``hybrid_ingest.quarantine``) ----------------------------------

    def put_release(self, table: str, extract_id: str, doc: Mapping[str, Any]) -> None:
        """Record (or replace) an operator's release of a held extract; the merge reads it (``releases``)."""
        self._ddb.put_item(
            TableName=self._state,
            Item={"pk": {"S": f"release#{table}"}, "sk": {"S": extract_id},
                  "doc": {"S": json.dumps(dict(doc), sort_keys=True)}, "updated": {"N": repr(self._clock())}},
        )

    def releases(self, table: str) -> dict[str, dict[str, Any]]:
        """Every release recorded for ``table``'s extracts, by extract id."""
        kwargs: dict[str, Any] = {
            "TableName": self._state, "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"release#{table}"}}, "ConsistentRead": True,
        }
        return {item["sk"]["S"]: json.loads(item["doc"]["S"]) for item in self._query(kwargs)}

    # -- run history -----------------------------------------------------------------------------

    def record_run(self, subject: str, run_id: str, started_at: str, record: Mapping[str, Any]) -> None:
        """Store (or update) one run of a table or of the workflow; ``record`` must be JSON-serialisable."""
        self._ddb.put_item(
            TableName=self._runs,
            Item={
                "pk": {"S": subject}, "sk": {"S": f"{started_at}#{run_id}"},
                "run_id": {"S": run_id}, "doc": {"S": json.dumps(dict(record), sort_keys=True, default=str)},
            },
        )

    def runs(self, subject: str, limit: int = 10) -> list[dict[str, Any]]:
        """The newest runs first; items written by Step Functions directly carry flat attributes."""
        page = self._ddb.query(
            TableName=self._runs,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": subject}},
            ScanIndexForward=False,
            Limit=limit,
            ConsistentRead=True,
        )
        out: list[dict[str, Any]] = []
        for item in page.get("Items", []):
            record: dict[str, Any] = json.loads(item["doc"]["S"]) if "doc" in item else {}
            for key, value in item.items():
                if key not in ("doc", "pk", "sk") and "S" in value:
                    record.setdefault(key, value["S"])
            record.setdefault("sk", item["sk"]["S"])
            out.append(record)
        return out

    # -- change-data sources (each source's own record; ``status`` reads them) -------------------

    def source(self, name: str) -> tuple[dict[str, Any], int] | None:
        """A source's record and its version (for ``put_source``), or None if it never started."""
        item = self._ddb.get_item(
            TableName=self._state, Key={"pk": {"S": "source"}, "sk": {"S": name}}, ConsistentRead=True,
        ).get("Item")
        if item is None:
            return None
        return json.loads(item["doc"]["S"]), int(item["version"]["N"])

    def put_source(self, name: str, doc: Mapping[str, Any], expected_version: int) -> int:
        """Replace a source's record iff nobody wrote it since ``expected_version`` (0: create); the new version."""
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if expected_version:
            condition = {"ConditionExpression": "version = :expected",
                         "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}}}
        try:
            self._ddb.put_item(
                TableName=self._state,
                Item={"pk": {"S": "source"}, "sk": {"S": name}, "doc": {"S": json.dumps(dict(doc), sort_keys=True)},
                      "version": {"N": str(expected_version + 1)}, "updated": {"N": repr(self._clock())}},
                **condition,
            )
        except ClientError as exc:
            if condition_failed(exc):
                raise ConditionFailedError(
                    f"source {name!r} was changed by another process since version {expected_version}"
                ) from exc
            raise
        return expected_version + 1

    def delete_source(self, name: str) -> None:
        self._ddb.delete_item(TableName=self._state, Key={"pk": {"S": "source"}, "sk": {"S": name}})

    def sources(self) -> dict[str, dict[str, Any]]:
        """Every source's record (with ``updated``, epoch seconds of its last write), by name."""
        result: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._state, "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": "source"}}, "ConsistentRead": True,
        }
        for item in self._query(kwargs):
            result[item["sk"]["S"]] = json.loads(item["doc"]["S"]) | {"updated": float(item["updated"]["N"])}
        return result
