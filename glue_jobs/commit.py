"""The run's commit point: one Iceberg snapshot per table per run, optimistic and fenced.

A run opens a pyiceberg transaction on the table as it read it at its start
(``open_run``), stages any schema evolution in it before the kernel writes (so
the files carry the evolved field IDs), and at the end stages one overwrite
that deletes exactly the affected partitions' data files and adds the new ones
(``commit``). Everything lands in one catalog update or not at all: readers see
the table before the run or after it, a key that moved partitions never twice
or missing.

The fence: the overwrite requires the branch to still point at the snapshot the
run read, and the table's ``commit.retry.num-retries`` is 0 (``open_table``
repairs it if someone changed it), so pyiceberg never rebuilds the overwrite
on newer metadata. If anyone committed since (a concurrent writer, or a
successor while this run stalled past its lease), the commit raises
``CommitConflictError``, nothing is published, and this run's files are
deleted; the next run redoes the work.

Only a conflict the catalog reported is taken as "not landed": the run's Glue
client does not retry (``iceberg.catalog(..., commit=True)``), because a retried
call whose first attempt landed would come back as a conflict, and pyiceberg
would then delete the manifests of a committed snapshot. Any other failure of
the commit call leaves everything in place: if it landed, the next run finds
its snapshot and repairs the watermark from it; if not, retention removes the
files later.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.exceptions import CommitFailedException, TableAlreadyExistsError
from pyiceberg.io.pyarrow import (
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.schema import Schema
from pyiceberg.table import Table, Transaction
from pyiceberg.typedef import Record

from glue_jobs.kernel_model import KernelResult, WrittenFile
from hybrid_ingest import iceberg, layout
from hybrid_ingest.errors import CommitConflictError, MergeError
from hybrid_ingest.lake import Lake
from hybrid_ingest.tables import TableSpec

RETRIES = "commit.retry.num-retries"


def open_table(cat: GlueCatalog, ident: tuple[str, str], spec: TableSpec, lake: Lake, compression: str) -> Table:
    """The curated table, created empty on its first run; its commit retries pinned to 0 (the fence)."""
    table = iceberg.load(cat, ident)
    if table is None:
        schema = iceberg.schema_of(spec)
        try:
            table = cat.create_table(ident, schema, location=lake.uri(layout.curated_table_dir(spec.table)),
                                     partition_spec=iceberg.partition_spec(spec, schema),
                                     properties=iceberg.properties(compression))
        except TableAlreadyExistsError:
            table = cat.load_table(ident)
    if table.metadata.properties.get(RETRIES) != "0":
        with table.transaction() as tx:
            tx.set_properties({RETRIES: "0"})
        table = cat.load_table(ident)
    return table


@dataclass
class OpenRun:
    """A run's view of its table: the transaction based on the snapshot it read, and that snapshot's files."""

    table: Table
    tx: Transaction
    base_snapshot: int | None
    state: iceberg.MergeState | None
    files: list[iceberg.SnapshotFile]

    @property
    def field_ids(self) -> dict[str, int]:
        return {f.name: f.field_id for f in self.tx.table_metadata.schema().fields}


def open_run(table: Table, spec: TableSpec) -> OpenRun:
    snapshot = table.current_snapshot()
    return OpenRun(table, table.transaction(), snapshot.snapshot_id if snapshot else None,
                   iceberg.merge_state(table), iceberg.snapshot_files(table, spec))


def evolve(run: OpenRun, spec: TableSpec) -> Schema:
    """Stage the table's schema update to ``spec`` in the run's transaction: new fields get new IDs,
    promotions (int -> long, float -> double) keep theirs, dropped fields are deleted.

    A change Iceberg cannot make in place (another type change) is refused with
    the field's name: such a table is rebuilt by replay from raw.
    """
    target = iceberg.schema_of(spec)
    current = run.tx.table_metadata.schema()
    names = {f.name for f in target.fields}
    try:
        with run.tx.update_schema() as update:
            for f in current.fields:
                if f.name not in names:
                    update.delete_column(f.name)
            update.union_by_name(target)
    except ValueError as exc:
        raise MergeError(f"table {spec.table!r}: Iceberg cannot evolve the schema in place ({exc}); "
                         "rebuild the table by replay from raw") from exc
    return run.tx.table_metadata.schema()


def commit(run: OpenRun, lake: Lake, spec: TableSpec, kernel: KernelResult, state: iceberg.MergeState) -> int:
    """One overwrite: the affected partitions' old files out, the new ones in, ``state`` in the summary.

    Returns the new snapshot's id. Raises ``CommitConflictError`` (after
    deleting this run's files) if the table moved since the run read it.
    """
    affected = set(kernel.affected)
    try:
        with run.tx.update_snapshot(snapshot_properties=state.summary()).overwrite() as overwrite:
            for old in run.files:
                if old.partition in affected:
                    overwrite.delete_data_file(old.entry)
            for new in data_files(run.tx, lake, spec, kernel.written):
                overwrite.append_data_file(new)
        table = run.tx.commit_transaction()
    except CommitFailedException as exc:
        discard(lake, kernel.files())
        raise CommitConflictError(
            f"table {spec.table!r} changed since this run read snapshot {run.base_snapshot} "
            f"(a concurrent run, or a successor while this one was paused): nothing was published, "
            f"the next run merges again ({exc})") from exc
    snapshot = table.current_snapshot()
    if snapshot is None:
        raise MergeError(f"table {spec.table!r} has no current snapshot after its commit")
    return snapshot.snapshot_id


def data_files(tx: Transaction, lake: Lake, spec: TableSpec, written: Mapping[Any, Sequence[WrittenFile]]
               ) -> Iterator[DataFile]:
    """A DataFile per written Parquet file: the partition the kernel knows, the metrics from its footer.

    The partition tuple is never inferred from column statistics (long strings
    are truncated there). The table's statistics plan and column mapping are
    worked out once: pyiceberg rebuilds a transaction's metadata on each read.
    """
    metadata = tx.table_metadata
    schema = metadata.schema()
    plan = compute_statistics_plan(schema, metadata.properties)
    mapping = parquet_path_to_id_mapping(schema)
    for value, files in written.items():
        partition = Record(iceberg.to_iceberg(value, iceberg.partition_type(spec))) if spec.partition else Record()
        for file in files:
            footer = pq.read_metadata(lake.path(file.rel), filesystem=lake.fs)
            statistics = data_file_statistics_from_parquet_metadata(
                parquet_metadata=footer, stats_columns=plan, parquet_column_mapping=mapping)
            yield DataFile.from_args(
                content=DataFileContent.DATA, file_path=lake.uri(file.rel), file_format=FileFormat.PARQUET,
                partition=partition, file_size_in_bytes=file.bytes, sort_order_id=None,
                spec_id=metadata.default_spec_id, equality_ids=None, key_metadata=None,
                **statistics.to_serialized_dict())


def discard(lake: Lake, files: Sequence[WrittenFile]) -> None:
    """Delete files no snapshot will name (a refused or abandoned run's); retention would find them later."""
    for written in files:
        lake.delete_file(written.rel)


def tombstone_rels(table: Table, lake: Lake, state: iceberg.MergeState | None) -> list[str]:
    """The lake-relative paths of the tombstone files a merge state names (relative to the table location)."""
    if state is None:
        return []
    base = iceberg.lake_rel(lake, iceberg.table_uri(table))
    return [f"{base}/{rel}" for rel in state.tombstones]


def relative_tombstones(table: Table, lake: Lake, files: Sequence[WrittenFile]) -> tuple[str, ...]:
    """Tombstone files as the summary names them: relative to the table location."""
    return tuple(iceberg.relative(table, lake.uri(f.rel)) for f in files)


def partition_files(run: OpenRun) -> Mapping[Any, list[iceberg.SnapshotFile]]:
    out: dict[Any, list[iceberg.SnapshotFile]] = {}
    for f in run.files:
        out.setdefault(f.partition, []).append(f)
    return out
