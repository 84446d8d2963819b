"""The curated tables as Apache Iceberg tables: the contracts the merge (writer) and readers share.

A curated table is an Iceberg format v2 table in the Glue Data Catalog, written
and read through pyiceberg's ``GlueCatalog`` (locally on moto's server, its
warehouse in the lake folder; on AWS the same code against Glue and S3). This
module is the one place that knows:

* how the catalog is built from ``Clients`` and the ``Lake`` (``catalog``);
* how a table spec maps to an Iceberg schema (the Avro fields plus ``_seq``,
  ``_op_ts``, ``_merged_at``, each with a field ID) and partition spec (the
  spec's partition becomes the identity/day/month/year transform on the column
  itself: hidden partitioning, no derived column);
* which table properties a curated table carries (what Athena expects of a
  Parquet Iceberg table, no commit retries: see ``PROPERTIES``);
* what the merge records in each snapshot's summary (``MergeState``) and how a
  reader finds the data files of a snapshot (``snapshot_files``).

Partition values are handled in one Python form, the one the engines return
(``date``, UTC ``datetime``, ``Decimal``, ``str``, ``int`` ...; ``None`` for a
null partition), and converted to Iceberg's internal form only here.

Writing (the commit, retention) lives in ``glue_jobs``; pyiceberg's own
``io``/``catalog``/``table`` separation is followed in spirit: this module holds
pure mappings plus thin calls into the catalog passed in.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow as pa
from botocore.config import Config
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import NoSuchIcebergTableError, NoSuchTableError
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.transforms import DayTransform, IdentityTransform, MonthTransform, Transform, YearTransform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from hybrid_ingest import layout
from hybrid_ingest.errors import MergeError
from hybrid_ingest.lake import Lake
from hybrid_ingest.position import Position
from hybrid_ingest.rawformat import curated_schema
from hybrid_ingest.tables import TableSpec

if TYPE_CHECKING:
    from hybrid_ingest.aws import Clients

SINGLE_ATTEMPT = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60)
PARTITION_FIELD_ID = 1000  # Iceberg's convention: partition field IDs start at 1000
EPOCH = dt.date(1970, 1, 1)
EPOCH_TS = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# snapshot summary keys written by the merge (values are strings, as Iceberg requires)
RUN_ID = "hybrid-ingest.run-id"
POSITIONS = "hybrid-ingest.positions"  # JSON {shard: str(Position)}, cumulative: everything merged so far
EXTRACTS = "hybrid-ingest.extracts"  # JSON [extract id], the extracts this run merged
FLOOR = "hybrid-ingest.floor"  # the full-extract floor after this run (-1: none)
TOMBSTONES = "hybrid-ingest.tombstones"  # JSON [file path relative to the table location]
SCHEMA_VERSION = "hybrid-ingest.schema-version"  # the registry version the data files follow
NEWEST_OP_TS = "hybrid-ingest.newest-op-ts"  # epoch seconds of the newest merged change ("" if none)

_TRANSFORMS: dict[str, Transform[Any, Any]] = {
    "identity": IdentityTransform(), "day": DayTransform(), "month": MonthTransform(), "year": YearTransform(),
}


def properties(compression: str, previous_versions: int = 100) -> dict[str, str]:
    """Table properties of every curated table.

    ``commit.retry.num-retries=0``: pyiceberg retries a conflicting commit by
    rebuilding the snapshot on the newer metadata, which would re-apply an
    overwrite computed from a snapshot that is no longer current. The merge is
    only right on the snapshot it read, so a conflict must fail (and the next
    run redo the work). Metadata files beyond ``previous_versions`` are removed
    at commit, so the metadata folder does not grow without bound.
    """
    return {
        "format-version": "2",
        "write.format.default": "parquet",
        "write.parquet.compression-codec": compression,
        "commit.retry.num-retries": "0",
        "write.metadata.delete-after-commit.enabled": "true",
        "write.metadata.previous-versions-max": str(previous_versions),
    }


def catalog(clients: Clients, lake: Lake, commit: bool = False) -> GlueCatalog:
    """pyiceberg's Glue catalog on the clients' Glue (moto's server locally), the lake's curated zone as warehouse.

    ``commit``: for a writer. Its Glue client makes every call once: botocore
    would retry an UpdateTable whose response was lost, and the retry's version
    conflict would read as "not committed" although the first attempt was.
    """
    props: dict[str, str] = {"warehouse": lake.uri(layout.CURATED)}
    settings = clients.settings
    if lake.scheme == "s3":
        props["s3.region"] = settings.region
        if settings.endpoint_url:
            props.update({"s3.endpoint": settings.endpoint_url, "s3.access-key-id": "testing",
                          "s3.secret-access-key": "testing"})
    glue = clients.client("glue", config=SINGLE_ATTEMPT) if commit else clients.glue
    return GlueCatalog("glue", client=glue, **props)


def identifier(clients: Clients, table: str) -> tuple[str, str]:
    return (clients.settings.names.curated_database, table)


def iceberg_type(t: pa.DataType) -> IcebergType:
    """The Iceberg type of a curated column's Arrow type (``hybrid_ingest.convert``'s types)."""
    if pa.types.is_int64(t):
        return LongType()
    if pa.types.is_int32(t):
        return IntegerType()
    if pa.types.is_float32(t):
        return FloatType()
    if pa.types.is_float64(t):
        return DoubleType()
    if pa.types.is_boolean(t):
        return BooleanType()
    if pa.types.is_string(t):
        return StringType()
    if pa.types.is_binary(t):
        return BinaryType()
    if pa.types.is_decimal(t):
        return DecimalType(t.precision, t.scale)
    if pa.types.is_date32(t):
        return DateType()
    if pa.types.is_timestamp(t):
        return TimestamptzType()
    raise MergeError(f"no Iceberg type for Arrow type {t}")


def schema_of(spec: TableSpec) -> Schema:
    """The curated columns as a fresh Iceberg schema (IDs 1..n in column order).

    Primary key fields are required and the table's identifier fields; every
    other field is optional, so a schema evolution that adds a field never needs
    an incompatible change. An existing table keeps its IDs: the merge evolves it
    with ``union_by_name`` against this schema (``glue_jobs.commit``).
    """
    fields = [NestedField(i, f.name, iceberg_type(f.type), required=f.name in spec.primary_key)
              for i, f in enumerate(curated_schema(spec), start=1)]
    ids = [f.field_id for f in fields if f.name in spec.primary_key]
    return Schema(*fields, identifier_field_ids=ids)


def partition_spec(spec: TableSpec, schema: Schema) -> PartitionSpec:
    """The spec's partition as an Iceberg transform of the column itself, named ``<column>_<granularity>``."""
    part = spec.partition
    if part is None:
        return UNPARTITIONED_PARTITION_SPEC
    source = schema.find_field(part.column)
    return PartitionSpec(PartitionField(source_id=source.field_id, field_id=PARTITION_FIELD_ID,
                                        transform=_TRANSFORMS[part.granularity], name=part.key))


def partition_type(spec: TableSpec) -> pa.DataType | None:
    """The Arrow type of a row's partition value (``None``: unpartitioned).

    Identity keeps the column's type; day gives a date; month and year give the
    months or years since 1970 as an int, as Iceberg stores them.
    """
    part = spec.partition
    if part is None:
        return None
    if part.granularity == "identity":
        return curated_schema(spec).field(part.column).type
    return pa.date32() if part.granularity == "day" else pa.int32()


def human(spec: TableSpec, value: Any) -> str:
    """A (non-null) partition value's text as Iceberg writes it in paths: ``2026-01`` for a month, a date's ISO form."""
    part = spec.partition
    if part is None:
        return ""
    source = iceberg_type(curated_schema(spec).field(part.column).type)
    transform = _TRANSFORMS[part.granularity]
    return str(transform.to_human_string(transform.result_type(source), to_iceberg(value, partition_type(spec))))


def to_iceberg(value: Any, t: pa.DataType | None) -> Any:
    """A partition value in Iceberg's internal form (days, microseconds) for a DataFile's partition tuple."""
    if value is None or t is None:
        return value
    if pa.types.is_date32(t):
        return (value - EPOCH).days
    if pa.types.is_timestamp(t):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        delta = stamp - EPOCH_TS
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return value


def from_iceberg(value: Any, t: pa.DataType | None) -> Any:
    """The inverse of ``to_iceberg``: the form the engines return."""
    if value is None or t is None:
        return value
    if pa.types.is_date32(t):
        return value if isinstance(value, dt.date) else EPOCH + dt.timedelta(days=int(value))
    if pa.types.is_timestamp(t):
        return value if isinstance(value, dt.datetime) else EPOCH_TS + dt.timedelta(microseconds=int(value))
    return value


def from_text(text: str, t: pa.DataType) -> Any:
    """A partition value from the text an engine gave for it (Spark's ``CAST(... AS STRING)``, hex for binary)."""
    if pa.types.is_integer(t):
        return int(text)
    if pa.types.is_floating(t):
        return float(text)
    if pa.types.is_boolean(t):
        return text.lower() == "true"
    if pa.types.is_decimal(t):
        return decimal.Decimal(text)
    if pa.types.is_date32(t):
        return dt.date.fromisoformat(text)
    if pa.types.is_timestamp(t):
        stamp = dt.datetime.fromisoformat(text.replace(" ", "T"))
        return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)
    if pa.types.is_binary(t):
        return bytes.fromhex(text)
    return text


def normalise_partition(value: Any, t: pa.DataType | None) -> Any:
    """One Python form per partition value whichever engine returned it (Spark gives naive UTC datetimes)."""
    if isinstance(value, dt.datetime) and t is not None and pa.types.is_timestamp(t):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value


def load(cat: GlueCatalog, ident: tuple[str, str]) -> Table | None:
    """The curated table, or None if it does not exist yet; a table of the old layout is refused."""
    try:
        return cat.load_table(ident)
    except NoSuchIcebergTableError as exc:
        raise MergeError(
            f"curated table {'.'.join(ident)} is not an Iceberg table (the layout before Iceberg): delete it and "
            "its watermark item to rebuild it by replay from raw (README, Operations)") from exc
    except NoSuchTableError:
        return None


def current_snapshots(clients: Clients, lake: Lake) -> Callable[[str], tuple[int, float] | None]:
    """A lookup of a curated table's current snapshot: (id, commit time in epoch seconds), None if it has none."""
    cat = catalog(clients, lake)

    def current(table: str) -> tuple[int, float] | None:
        try:
            loaded = load(cat, identifier(clients, table))
        except MergeError:  # a table of the layout before Iceberg has no snapshot
            return None
        snap = loaded.current_snapshot() if loaded is not None else None
        return (snap.snapshot_id, snap.timestamp_ms / 1000) if snap is not None else None

    return current


@dataclass(frozen=True)
class MergeState:
    """What the merge recorded in the newest snapshot it committed (see the summary keys above)."""

    snapshot_id: int
    run_id: str
    positions: dict[str, Position] = field(default_factory=dict)
    extracts: tuple[str, ...] = ()
    floor: int = -1
    tombstones: tuple[str, ...] = ()
    schema_version: int = 0
    newest_op_ts: float | None = None

    def summary(self) -> dict[str, str]:
        return {
            RUN_ID: self.run_id,
            POSITIONS: json.dumps({s: str(p) for s, p in sorted(self.positions.items())}),
            EXTRACTS: json.dumps(sorted(self.extracts)),
            FLOOR: str(self.floor),
            TOMBSTONES: json.dumps(list(self.tombstones)),
            SCHEMA_VERSION: str(self.schema_version),
            NEWEST_OP_TS: "" if self.newest_op_ts is None else repr(self.newest_op_ts),
        }


def merge_state(table: Table, snapshot: Snapshot | None = None) -> MergeState | None:
    """The merge's record in ``snapshot`` (default: current) or its nearest ancestor that has one.

    Snapshots written by others (Athena's OPTIMIZE, say) carry no record; the
    merge's state is then the last one it wrote.
    """
    current = snapshot if snapshot is not None else table.current_snapshot()
    while current is not None:
        summary = summary_of(current)
        if summary.get(RUN_ID):
            newest = summary.get(NEWEST_OP_TS) or ""
            return MergeState(
                snapshot_id=current.snapshot_id, run_id=str(summary[RUN_ID]),
                positions={s: Position.parse(p) for s, p in json.loads(summary.get(POSITIONS) or "{}").items()},
                extracts=tuple(json.loads(summary.get(EXTRACTS) or "[]")),
                floor=int(summary.get(FLOOR) or -1),
                tombstones=tuple(json.loads(summary.get(TOMBSTONES) or "[]")),
                schema_version=int(summary.get(SCHEMA_VERSION) or 0),
                newest_op_ts=float(newest) if newest else None,
            )
        parent = current.parent_snapshot_id
        current = table.metadata.snapshot_by_id(parent) if parent is not None else None
    return None


@dataclass(frozen=True)
class SnapshotFile:
    """One data file of a snapshot: its URI, partition value (engine form), size and row count."""

    uri: str
    partition: Any
    bytes: int
    rows: int
    entry: Any = field(default=None, compare=False, repr=False)  # pyiceberg's DataFile, for an overwrite


def snapshot_files(table: Table, spec: TableSpec | None, snapshot_id: int | None = None) -> list[SnapshotFile]:
    """The data files of snapshot ``snapshot_id`` (default: current) of ``table``, from its manifests.

    Copy-on-write tables have no delete files, so these files are exactly the
    snapshot's rows. ``spec`` gives the partition value's type (None: return
    Iceberg's internal form).
    """
    snap = table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(snapshot_id)
    if snap is None:
        return []
    t = partition_type(spec) if spec is not None else None
    out: list[SnapshotFile] = []
    for entry in _live_entries(table, snap):
        partition = entry.partition[0] if len(entry.partition) else None
        out.append(SnapshotFile(entry.file_path, from_iceberg(partition, t), entry.file_size_in_bytes,
                                entry.record_count, entry))
    return sorted(out, key=lambda f: f.uri)


def seq_upper_bound(table: Table, files: Sequence[SnapshotFile]) -> tuple[int | None, list[SnapshotFile]]:
    """The highest ``_seq`` of ``files`` per their manifests' column statistics, and the files that have none.

    Exact for a long column (Iceberg truncates only string and binary bounds).
    """
    field_id = table.schema().find_field("_seq").field_id
    highest: int | None = None
    missing: list[SnapshotFile] = []
    for f in files:
        bound = (getattr(f.entry, "upper_bounds", None) or {}).get(field_id)
        if bound is None:
            if f.rows:
                missing.append(f)
            continue
        value = int(from_bytes(LongType(), bound))
        highest = value if highest is None else max(highest, value)
    return highest, missing


def _live_entries(table: Table, snap: Snapshot) -> Iterator[Any]:
    for manifest in snap.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            yield entry.data_file


def arrow_schema(schema: Schema) -> pa.Schema:
    """An Iceberg schema as the Arrow schema of its data files (regular, not large, strings and binaries)."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    fields = []
    for f in schema_to_pyarrow(schema, include_field_ids=False):
        t = pa.string() if pa.types.is_large_string(f.type) else pa.binary() if pa.types.is_large_binary(f.type) \
            else f.type
        fields.append(pa.field(f.name, t, f.nullable))
    return pa.schema(fields)


def table_uri(table: Table) -> str:
    return table.metadata.location.rstrip("/")


def relative(table: Table, uri: str) -> str:
    """A file's path relative to the table location (how the summary names tombstone files)."""
    return uri.removeprefix(table_uri(table)).lstrip("/")


def lake_rel(lake: Lake, uri: str) -> str:
    """A URI under the lake as a lake-relative path (``Lake.path``'s inverse for URIs)."""
    parsed = urlparse(uri)
    path = f"{parsed.netloc}{parsed.path}" if parsed.scheme == "s3" else parsed.path
    return lake.rel(path)


def summary_of(snapshot: Snapshot) -> Mapping[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot.summary is not None else {}
