"""Writing a run's files: the affected partitions' data files and the next tombstones.

Every path comes from ``layout``: a keys-first run writes each partition into
``data/<key>=<encoded value>/<run>-<index>-<n>.parquet`` (or, for an engine's
own partitioned write, ``data/<run>/_pdir=<token>/``), so no partition value can
make two files collide or a file leave the table's folder. Output folders are
named by a *token* per partition (its index among the partitions the run
knows, ``n`` for null, ``x`` + a hash for the one pass's new partitions; see
``merge_output_sql.folder``) and mapped back to partition values here. Nothing is
visible before the driver's commit; files the run does not keep are deleted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow.parquet as pq

from glue_jobs.engine import Engine, PartitionWrite, PartitionWrites
from glue_jobs.kernel_inputs import current_rows
from glue_jobs.kernel_model import KernelJob, KernelResult, Partition, WrittenFile
from glue_jobs.merge_output_sql import NULL_FOLDER, TOMB_FOLDER, folder, output, partition_output
from glue_jobs.merge_sql import MergeSql
from hybrid_ingest import iceberg, layout
from hybrid_ingest.lake import Lake

Files = Mapping[str, list[tuple[str, int]]]


def tokens(engine: Engine, sql: MergeSql, known: Sequence[Any], new: Sequence[Any]) -> dict[str, Any]:
    """Output folder token -> partition value, for ``known`` (by index) and ``new`` values (hashed by the engine).

    The hash is the engine's own (``merge_output_sql.folder``), so it is asked of the
    engine for each new value once, in one small query.
    """
    out: dict[str, Any] = {str(i): v for i, v in enumerate(known)}
    if None not in known:
        out[NULL_FOLDER] = None
    fresh = [v for v in new if v is not None]
    if fresh:
        columns = ", ".join(f"{folder(sql, sql.part_literal(v), known)} AS c{i}" for i, v in enumerate(fresh))
        (row,) = engine.fetch(f"SELECT {columns}")
        out.update({str(token): value for token, value in zip(row, fresh, strict=True)})
    return out


def _text(job: KernelJob, value: Any) -> str | None:
    """A partition value's text for its folder name (Iceberg's human form, e.g. ``2026-01`` for a month)."""
    return None if value is None else iceberg.human(job.spec, value)


def write_affected(engine: Engine, lake: Lake, job: KernelJob, sql: MergeSql, result: KernelResult) -> None:
    """Keys first: write the affected partitions (stored rows that stay plus inserted rows)."""
    written = engine.write_partitions(partition_writes(engine, lake, job, sql, result.affected), lake,
                                      layout.run_data_dir(job.spec.table, job.run_id), job.field_ids,
                                      job.rows_per_file, job.compression)
    keep_affected(lake, written, {str(i): v for i, v in enumerate(result.affected)}, result)


def partition_writes(engine: Engine, lake: Lake, job: KernelJob, sql: MergeSql, affected: Sequence[Any]
                     ) -> PartitionWrites:
    """The keys-first output of ``affected``, both ways (see ``PartitionWrites``)."""
    current = {p.value: p for p in job.current}
    parts = [current[v] for v in affected if v in current]
    key = job.spec.partition.key if job.spec.partition else None

    def combined() -> str:
        engine.define("cur_rows", current_rows(engine, lake, job, sql, parts), False)
        return output(sql, affected)

    def each() -> list[PartitionWrite]:
        out = []
        order = sorted(range(len(affected)), key=lambda i: -_rows(current.get(affected[i])))
        for i in order:
            value = affected[i]
            stored = f"({current_rows(engine, lake, job, sql, [current[value]])})" if value in current else None
            out.append(PartitionWrite(str(i), layout.partition_data_dir(job.spec.table, key, _text(job, value)),
                                      layout.data_file_prefix(job.run_id, i), partition_output(sql, value, stored)))
        return out

    return PartitionWrites(combined, each)


def _rows(partition: Partition | None) -> int:
    return partition.files.rows if partition is not None else 0


def keep_affected(lake: Lake, written: Files, tokens: Mapping[str, Any], result: KernelResult) -> None:
    """Keep the written files of the affected partitions in ``result.written``; delete the rest.

    An affected partition with no file is emptied by the commit.
    """
    affected = set(result.affected)
    for token, files in written.items():
        if token == TOMB_FOLDER:
            continue
        value = tokens[token]
        if value in affected:
            result.written.setdefault(value, []).extend(WrittenFile(rel, size) for rel, size in files)
        else:
            delete(lake, files)


def delete(lake: Lake, files: Sequence[tuple[str, int]]) -> None:
    for rel, _ in files:
        lake.delete_file(rel)


def footers(lake: Lake, written: Files) -> dict[str, list[pq.FileMetaData]]:
    """The footers of a one-pass write's data files (not the tombstones'), by output folder token."""
    return {token: [pq.read_metadata(lake.path(rel), filesystem=lake.fs) for rel, _ in files]
            for token, files in written.items() if token != TOMB_FOLDER}


def changed_partitions(footers: Mapping[str, list[pq.FileMetaData]], job: KernelJob, tokens: Mapping[str, Any]
                       ) -> list[Any]:
    """The live partitions a one-pass write changed, from the written files' footers.

    A partition changed if its rows are not as many as before (rows removed or
    added) or one of them carries this run's merge time (an upsert: every other
    row keeps the time of the run that wrote it). A footer without statistics
    counts as changed: replacing an unchanged partition is harmless.
    """
    by_value = {v: t for t, v in tokens.items()}
    changed: list[Any] = []
    for p in job.current:
        metas = footers.get(by_value.get(p.value, ""), [])
        if sum(m.num_rows for m in metas) != p.files.rows or any(_stamped(m, job.params.merged_at) for m in metas):
            changed.append(p.value)
    return changed


def _stamped(meta: pq.FileMetaData, merged_at: dt.datetime) -> bool:
    """Whether a file may hold a row merged at ``merged_at`` (its ``_merged_at`` maximum reaches it)."""
    column = meta.schema.names.index("_merged_at")
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        if not group.num_rows:
            continue
        stats = group.column(column).statistics
        if stats is None or not stats.has_min_max or not isinstance(stats.max, dt.datetime):
            return True
        if stats.max.replace(tzinfo=stats.max.tzinfo or dt.UTC) >= merged_at:
            return True
    return False


def write_tombstones(engine: Engine, lake: Lake, job: KernelJob) -> list[WrittenFile]:
    written = engine.write("SELECT * FROM tomb_next", lake, layout.tombstone_dir(job.spec.table, job.run_id), None,
                           {}, job.rows_per_file, job.compression)
    return [WrittenFile(rel, size) for files in written.values() for rel, size in files]


def rewrite_tombstones(lake: Lake, files: Sequence[tuple[str, int]], job: KernelJob) -> list[WrittenFile]:
    """Tombstone files from the one-pass output's ``t`` folder: the key, ``_seq``, and the time as ``deleted_at``.

    A file at a time, so the driver holds one file's three columns at most.
    """
    columns = [*job.spec.primary_key, "_seq", "_merged_at"]
    written: list[WrittenFile] = []
    for i, (path, _) in enumerate(files):
        table = pq.read_table(lake.path(path), columns=columns, filesystem=lake.fs, partitioning=None)
        table = table.rename_columns([*job.spec.primary_key, "_seq", "deleted_at"])
        rel = layout.tombstone_file(job.spec.table, job.run_id, i)
        written.append(WrittenFile(rel, lake.write_parquet(rel, table, compression=job.compression)))
    return written
