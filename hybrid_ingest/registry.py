"""Schema registry on DynamoDB: tables, schema versions and fingerprint lookups.

Items in the registry table (``pk``, ``sk``):

* ``table#<t>`` / ``spec``      the table spec and ``latest_version``
* ``table#<t>`` / ``v#000042``  one schema version: row schema, envelope schema, fingerprint
* ``fp#<hex>``  / ``fp``        which table and version an envelope fingerprint belongs to

Compatibility is checked on the *row* schemas with Apache Avro's own
schema-resolution checker (``avro.compatibility``): the merge reads old rows with
the newest schema, so that is the resolution that has to work. AWS Glue's
registry would do this on AWS, but moto's does no checking at all, and one code
path for both worlds is worth more than the managed feature.

A new version is written in one DynamoDB transaction conditioned on the previous
``latest_version``, so two concurrent registrations cannot both win.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from botocore.exceptions import ClientError

from hybrid_ingest.convert import check_storable
from hybrid_ingest.errors import (
    ConditionFailedError,
    SchemaIncompatibleError,
    SpecError,
    UnknownFingerprintError,
    UnknownTableError,
)
from hybrid_ingest.json_reader import JsonReader, compile_reader
from hybrid_ingest.send_checks import RowChecks, row_checks
from hybrid_ingest.tables import AvroSchema, TableSpec, envelope_schema, spec_from_documents
from hybrid_ingest.wire import Codec, canonical_form, fingerprint

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class SchemaVersion:
    """One registered version of a table: its spec at that version and the envelope on the wire."""

    spec: TableSpec
    version: int
    fingerprint: bytes
    registered_at: float = 0.0
    envelope: AvroSchema = field(default_factory=dict)

    @property
    def table(self) -> str:
        return self.spec.table

    @cached_property
    def codec(self) -> Codec:
        return Codec(self.envelope or envelope_schema(self.spec))

    @cached_property
    def row_checks(self) -> RowChecks:
        """What ``send()`` checks beyond the codec (see ``send_checks.RowChecks``), built once per version."""
        return row_checks(self.spec)

    @cached_property
    def json_reader(self) -> JsonReader:
        """JSON change events to codec-ready events, compiled once per version (``json_reader``)."""
        return compile_reader(self.spec)


@dataclass(frozen=True)
class Registration:
    version: SchemaVersion
    created: bool


def _parse(schema: AvroSchema) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(schema))


def compatibility_problems(mode: str, new: AvroSchema, older: list[AvroSchema]) -> list[str]:
    """Why ``new`` breaks ``mode`` against the previous versions (oldest first); empty if it does not."""
    if mode == "NONE" or not older:
        return []
    against = older if mode.endswith("_TRANSITIVE") else older[-1:]
    base = mode.removesuffix("_TRANSITIVE")
    checks: list[tuple[str, bool]] = []
    if base in ("BACKWARD", "FULL"):
        checks.append(("BACKWARD", True))
    if base in ("FORWARD", "FULL"):
        checks.append(("FORWARD", False))
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    problems: list[str] = []
    parsed_new = _parse(new)
    for index, old in enumerate(against):
        parsed_old = _parse(old)
        label = f"version {len(older) - len(against) + index + 1}"
        for rule, new_reads_old in checks:
            reader, writer = (parsed_new, parsed_old) if new_reads_old else (parsed_old, parsed_new)
            result = checker.get_compatibility(reader=reader, writer=writer)
            if result.compatibility is SchemaCompatibilityType.compatible:
                continue
            kinds = ", ".join(sorted(i.value for i in result.incompatibilities))
            where = ", ".join(sorted(result.locations))
            what = ", ".join(sorted(str(m) for m in result.messages))
            direction = f"new schema cannot read data of {label}" if new_reads_old else (
                f"{label} readers cannot read data of the new schema")
            problems.append(f"{rule}: {kinds} at {where} (field/symbol: {what}); {direction}")
    return problems


class Registry:
    """Registry adapter; the DynamoDB client and table name are passed in."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._ddb = dynamodb
        self._table = table_name
        self._by_fp: dict[bytes, SchemaVersion] = {}
        self._lock = threading.Lock()

    # -- reads ---------------------------------------------------------------------------------

    def tables(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :spec",
            "ExpressionAttributeValues": {":spec": {"S": "spec"}},
            "ConsistentRead": True,
        }
        while True:
            page = self._ddb.scan(**kwargs)
            names.extend(item["pk"]["S"].removeprefix("table#") for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return sorted(names)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _spec_item(self, table: str) -> dict[str, Any] | None:
        item = self._ddb.get_item(
            TableName=self._table, Key={"pk": {"S": f"table#{table}"}, "sk": {"S": "spec"}}, ConsistentRead=True
        ).get("Item")
        return item

    def _version_item(self, table: str, version: int) -> dict[str, Any]:
        item = self._ddb.get_item(
            TableName=self._table,
            Key={"pk": {"S": f"table#{table}"}, "sk": {"S": f"v#{version:06d}"}},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            raise UnknownTableError(f"table {table!r} has no schema version {version}")
        return item

    def _from_items(self, spec_item: dict[str, Any], version_item: dict[str, Any]) -> SchemaVersion:
        spec_doc = json.loads(spec_item["spec"]["S"])
        spec = spec_from_documents(spec_doc, json.loads(version_item["schema"]["S"]))
        return SchemaVersion(
            spec=spec,
            version=int(version_item["version"]["N"]),
            fingerprint=bytes.fromhex(version_item["fingerprint"]["S"]),
            registered_at=float(version_item["registered_at"]["N"]),
            envelope=json.loads(version_item["envelope"]["S"]),
        )

    def latest(self, table: str) -> SchemaVersion:
        spec_item = self._spec_item(table)
        if spec_item is None:
            raise UnknownTableError(f"table {table!r} is not registered (run `hybrid-ingest schemas register`)")
        return self._from_items(spec_item, self._version_item(table, int(spec_item["latest_version"]["N"])))

    def version(self, table: str, version: int) -> SchemaVersion:
        spec_item = self._spec_item(table)
        if spec_item is None:
            raise UnknownTableError(f"table {table!r} is not registered")
        return self._from_items(spec_item, self._version_item(table, version))

    def versions(self, table: str) -> list[SchemaVersion]:
        latest = self.latest(table)
        return [self.version(table, v) for v in range(1, latest.version)] + [latest]

    def by_fingerprint(self, fp: bytes) -> SchemaVersion:
        """The schema version behind a wire fingerprint; cached, since versions never change."""
        cached = self._by_fp.get(fp)
        if cached is not None:
            return cached
        item = self._ddb.get_item(
            TableName=self._table, Key={"pk": {"S": f"fp#{fp.hex()}"}, "sk": {"S": "fp"}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            raise UnknownFingerprintError(f"no registered schema has fingerprint {fp.hex()}")
        found = self.version(item["table"]["S"], int(item["version"]["N"]))
        with self._lock:
            self._by_fp[fp] = found
        return found

    # -- writes --------------------------------------------------------------------------------

    def register(self, spec: TableSpec) -> Registration:
        """Register a table or a new version of it; refuse what breaks its compatibility mode."""
        check_storable(spec)
        spec_item = self._spec_item(spec.table)
        if spec_item is None:
            return Registration(self._write_version(spec, 1, previous=None), created=True)
        latest = self.latest(spec.table)
        old = latest.spec
        if old.primary_key != spec.primary_key:
            raise SpecError(
                f"{spec.table}: primary key cannot change ({list(old.primary_key)} -> {list(spec.primary_key)}); "
                "create a new table and backfill it from raw"
            )
        if old.partition != spec.partition:
            raise SpecError(
                f"{spec.table}: partitioning cannot change in place ({old.partition} -> {spec.partition}); "
                "create a new table and backfill it from raw"
            )
        same_schema = canonical_form(old.schema) == canonical_form(spec.schema) and old.schema == spec.schema
        if same_schema and old.spec_json() == spec.spec_json():
            return Registration(latest, created=False)
        older = [v.spec.schema for v in self.versions(spec.table)]
        problems = compatibility_problems(spec.compatibility, spec.schema, older)
        if problems:
            raise SchemaIncompatibleError(spec.table, spec.compatibility, problems)
        return Registration(self._write_version(spec, latest.version + 1, previous=latest.version), created=True)

    def _write_version(self, spec: TableSpec, version: int, previous: int | None) -> SchemaVersion:
        envelope = envelope_schema(spec)
        fp = fingerprint(envelope)
        now = time.time()
        table_pk = {"S": f"table#{spec.table}"}
        spec_put: dict[str, Any] = {
            "TableName": self._table,
            "Item": {
                "pk": table_pk,
                "sk": {"S": "spec"},
                "spec": {"S": json.dumps(spec.spec_json(), sort_keys=True)},
                "latest_version": {"N": str(version)},
            },
        }
        if previous is None:
            spec_put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            spec_put["ConditionExpression"] = "latest_version = :prev"
            spec_put["ExpressionAttributeValues"] = {":prev": {"N": str(previous)}}
        items: list[Any] = [
            {"Put": spec_put},
            {"Put": {
                "TableName": self._table,
                "Item": {
                    "pk": table_pk,
                    "sk": {"S": f"v#{version:06d}"},
                    "version": {"N": str(version)},
                    "schema": {"S": json.dumps(spec.schema, sort_keys=True)},
                    "envelope": {"S": json.dumps(envelope, sort_keys=True)},
                    "fingerprint": {"S": fp.hex()},
                    "registered_at": {"N": repr(now)},
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }},
            {"Put": {
                "TableName": self._table,
                "Item": {"pk": {"S": f"fp#{fp.hex()}"}, "sk": {"S": "fp"},
                         "table": {"S": spec.table}, "version": {"N": str(version)}},
            }},
        ]
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise ConditionFailedError(
                    f"{spec.table}: another registration of version {version} won the race; retry"
                ) from exc
            raise
        return SchemaVersion(spec=spec, version=version, fingerprint=fp, registered_at=now, envelope=envelope)
