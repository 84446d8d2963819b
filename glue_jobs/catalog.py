"""The curated tables in the Glue Data Catalog: what is live, and the switch to new versions.

The catalog is the one place that says which version folder of each partition
readers see. A run switches partitions with batch_create/batch_update/
batch_delete_partition and then updates the table (schema, the tombstone
version, the full-extract floor, the committed version). On AWS these calls are
not atomic across partitions: between two batches a reader can see some
partitions at the new version and others at the old one, but never a partially
written partition, because each version folder is complete before its switch.
Unpartitioned tables switch their table Location, which is atomic.

Table parameters kept here (``hybrid_ingest.*``): ``schema_version`` the registry
version the files follow, ``version`` the last switched version id, ``tombstones``
the live tombstone folder, ``floor`` the highest full-extract ``as_of_seq`` merged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from botocore.exceptions import ClientError

from hybrid_ingest import layout
from hybrid_ingest.errors import MergeError
from hybrid_ingest.lake import Lake
from hybrid_ingest.rawformat import curated_schema
from hybrid_ingest.tables import TableSpec

if TYPE_CHECKING:
    from mypy_boto3_glue import GlueClient

PARAM_SCHEMA_VERSION = "hybrid_ingest.schema_version"
PARAM_VERSION = "hybrid_ingest.version"
PARAM_TOMBSTONES = "hybrid_ingest.tombstones"
PARAM_FLOOR = "hybrid_ingest.floor"
PARQUET_SD: dict[str, Any] = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}
CREATE_BATCH = 100
DELETE_BATCH = 25


def hive_type(t: pa.DataType) -> str:
    """Athena/Hive column type of an Arrow type (the types the curated files hold)."""
    if pa.types.is_int64(t):
        return "bigint"
    if pa.types.is_int32(t):
        return "int"
    if pa.types.is_float32(t):
        return "float"
    if pa.types.is_float64(t):
        return "double"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_string(t):
        return "string"
    if pa.types.is_binary(t):
        return "binary"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_date32(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    raise MergeError(f"no catalog type for Arrow type {t}")


def columns(spec: TableSpec) -> list[dict[str, str]]:
    return [{"Name": f.name, "Type": hive_type(f.type)} for f in curated_schema(spec)]


@dataclass
class CatalogTable:
    """The live state of one curated table: partition value -> version folder (relative to the lake)."""

    name: str
    exists: bool = False
    location: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    columns: list[dict[str, str]] = field(default_factory=list)
    partition_keys: list[str] = field(default_factory=list)
    partitions: dict[str, str] = field(default_factory=dict)

    def param_int(self, key: str, default: int) -> int:
        value = self.parameters.get(key)
        return int(value) if value not in (None, "") else default


def read_table(glue: GlueClient, lake: Lake, database: str, name: str) -> CatalogTable:
    """The catalog's view of a table (locations made relative to the lake)."""
    try:
        table = glue.get_table(DatabaseName=database, Name=name)["Table"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "EntityNotFoundException":
            return CatalogTable(name)
        raise
    sd = table.get("StorageDescriptor", {})
    out = CatalogTable(
        name=name, exists=True, parameters=dict(table.get("Parameters", {})),
        columns=[{"Name": c["Name"], "Type": c["Type"]} for c in sd.get("Columns", [])],
        partition_keys=[k["Name"] for k in table.get("PartitionKeys", [])],
    )
    prefix = lake.uri()
    location = sd.get("Location", "")
    out.location = location.removeprefix(prefix).lstrip("/") if location.startswith(prefix) else None
    if out.partition_keys:
        for part in _partitions(glue, database, name):
            loc = part["StorageDescriptor"]["Location"]
            if loc.startswith(prefix):
                out.partitions[part["Values"][0]] = loc.removeprefix(prefix).lstrip("/")
    elif out.location and f"/{layout.VERSION_PREFIX}" in f"/{out.location}":
        out.partitions[""] = out.location
    return out


def _partitions(glue: GlueClient, database: str, name: str) -> Iterable[dict[str, Any]]:
    kwargs: dict[str, Any] = {"DatabaseName": database, "TableName": name}
    while True:
        page = glue.get_partitions(**kwargs)
        yield from page.get("Partitions", [])  # type: ignore[misc]
        token = page.get("NextToken")
        if not token:
            return
        kwargs["NextToken"] = token


def _table_input(spec: TableSpec, lake: Lake, location: str, parameters: Mapping[str, str]) -> dict[str, Any]:
    return {
        "Name": spec.table,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", **parameters},
        "PartitionKeys": [{"Name": spec.partition.key, "Type": "string"}] if spec.partition else [],
        "StorageDescriptor": {**PARQUET_SD, "Columns": columns(spec), "Location": lake.uri(location)},
    }


def ensure_table(glue: GlueClient, lake: Lake, database: str, spec: TableSpec) -> CatalogTable:
    """Create the table (empty, no partitions) on a table's first run; return its live state."""
    current = read_table(glue, lake, database, spec.table)
    if current.exists:
        return current
    try:
        glue.create_table(DatabaseName=database,
                          TableInput=_table_input(spec, lake, layout.curated_table_dir(spec.table), {}))  # type: ignore[arg-type]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "AlreadyExistsException":
            raise
    return read_table(glue, lake, database, spec.table)


def _check(response: Mapping[str, Any], what: str) -> None:
    errors = response.get("Errors") or []
    if errors:
        raise MergeError(f"catalog {what} failed for {len(errors)} partitions: {errors[:3]}")


def switch_partitions(glue: GlueClient, lake: Lake, database: str, spec: TableSpec, current: CatalogTable,
                      new: Mapping[str, str], emptied: Iterable[str]) -> None:
    """Point partitions at their new version folders; create new ones; drop emptied ones."""
    cols = columns(spec)

    def partition_input(value: str, rel: str) -> Any:
        return {"Values": [value], "StorageDescriptor": {**PARQUET_SD, "Columns": cols, "Location": lake.uri(rel)}}

    created = [(v, r) for v, r in sorted(new.items()) if v not in current.partitions]
    updated = [(v, r) for v, r in sorted(new.items()) if v in current.partitions]
    for start in range(0, len(created), CREATE_BATCH):
        chunk = created[start:start + CREATE_BATCH]
        _check(glue.batch_create_partition(
            DatabaseName=database, TableName=spec.table,
            PartitionInputList=[partition_input(v, r) for v, r in chunk]), "create")
    for start in range(0, len(updated), CREATE_BATCH):
        chunk = updated[start:start + CREATE_BATCH]
        _check(glue.batch_update_partition(
            DatabaseName=database, TableName=spec.table,
            Entries=[{"PartitionValueList": [v], "PartitionInput": partition_input(v, r)}
                     for v, r in chunk]), "update")
    gone = sorted(v for v in emptied if v in current.partitions)
    for start in range(0, len(gone), DELETE_BATCH):
        values = gone[start:start + DELETE_BATCH]
        _check(glue.batch_delete_partition(
            DatabaseName=database, TableName=spec.table,
            PartitionsToDelete=[{"Values": [v]} for v in values]), "delete")


def update_table(glue: GlueClient, lake: Lake, database: str, spec: TableSpec, location: str,
                 parameters: Mapping[str, str]) -> None:
    """Set the table's schema, location (the live version when unpartitioned) and run parameters."""
    glue.update_table(DatabaseName=database,
                      TableInput=_table_input(spec, lake, location, parameters))  # type: ignore[arg-type]
