"""The engine kernel: (current partition rows, tombstones, incoming changes) -> new partition files.

Everything engine-specific sits behind ``Engine`` (how to read a list of Parquet
files, define a relation, fetch a few rows, write a relation as partitioned
Parquet). ``run_kernel`` drives any engine through the same statements from
``merge_sql``, in one of two plans with the same result:

* keys first (the default): the decisions from the stored rows' keys only, then
  only the affected partitions are read in full and rewritten. Cheap when the
  changes touch few partitions.
* one pass (``KernelJob.one_pass``): every stored row is read whole into the
  decision pass, which then yields every partition's new rows and the next
  tombstones in the same scan; only the affected partitions are published. When
  most partitions change anyway this saves reading them twice and a join (on
  Spark, two shuffles and a job).

Files are staged hive-style in a folder per partition (``_pdir``, see
``MergeSql.folder``), then published under their final names
``<version dir>/part-00000.parquet`` ...; nothing here touches the catalog, so
staged and published files stay invisible until the switch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from glue_jobs.merge_sql import (
    EXT_META_TYPES,
    FULL,
    INCREMENTAL,
    RAW_META,
    RAW_META_TYPES,
    TOMB_META_TYPES,
    Dialect,
    MergeParams,
    MergeSql,
    empty_relation,
    projection,
)
from hybrid_ingest import layout
from hybrid_ingest.lake import Lake
from hybrid_ingest.tables import TableSpec

_PDIR = re.compile(r"_pdir=(\d+|x[0-9a-f]{32}|t)$")
TOMB_FOLDER = "t"


@dataclass(frozen=True)
class FileGroup:
    """Parquet files (lake-relative) that share one schema."""

    rels: tuple[str, ...]
    schema: pa.Schema
    bytes: int = 0
    rows: int = 0


@dataclass(frozen=True)
class ExtractInput:
    extract_id: str
    mode: str
    as_of_seq: int
    rank: int
    files: FileGroup


@dataclass(frozen=True)
class Partition:
    """One live partition: its value (``""`` when unpartitioned) and the files of its live version."""

    value: str
    location: str
    files: FileGroup


@dataclass(frozen=True)
class KernelJob:
    """Everything a kernel needs, decided by the engine-independent core; plain data only."""

    spec: TableSpec
    raw: tuple[FileGroup, ...]
    extracts: tuple[ExtractInput, ...]
    current: tuple[Partition, ...]
    tombstones: FileGroup | None
    params: MergeParams
    rewrite_all: bool
    version: str
    rows_per_file: int  # the file cap: max_rows_per_file, or fewer when target_file_bytes is reached first
    compression: str = "snappy"
    one_pass: bool = False
    # shard -> (highest position, newest source time) of the raw input when its footers tell; None: ask the rows
    positions: Mapping[str, tuple[str, dt.datetime | None]] | None = None


@dataclass(frozen=True)
class PartitionWrites:
    """The affected partitions' new rows, described two ways, so each engine writes them its fastest way.

    ``combined()``: one select of every affected partition's rows with their
    staging folder in ``_pdir``, for one partitioned write. ``each()``:
    ``(folder, select)`` per partition, largest first, for writes side by side.
    Each call defines the relations its selects read.
    """

    combined: Callable[[], str]
    each: Callable[[], list[tuple[str, str]]]


@dataclass
class KernelResult:
    written: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # value -> [(rel, bytes)]
    affected: list[str] = field(default_factory=list)
    tombstones: list[tuple[str, int]] | None = None  # None: the current tombstone version stays
    stats: dict[str, int] = field(default_factory=dict)
    positions: dict[str, str] = field(default_factory=dict)  # shard -> the text of the highest merged position
    newest_op_ts: dt.datetime | None = None


class Engine(Protocol):
    dialect: Dialect
    narrow_stored: bool  # MergeSql.narrow_stored: worth it where a semi-join is a cheap hash probe

    def source(self, lake: Lake, group: FileGroup) -> str:
        """A FROM-clause expression reading these Parquet files (all of ``group.schema``)."""

    def partitions_source(self, lake: Lake, parts: Sequence[Partition]) -> str:
        """A FROM-clause expression reading these partitions' files (one schema) plus a ``_part`` column.

        One relation for many partitions keeps the plans small: an engine may read
        them all in one scan instead of a union with a branch per partition.
        """

    def define(self, name: str, sql: str, materialize: bool) -> None:
        """Make ``name`` a relation of the session (materialised when it is read more than once)."""

    def observe(self, name: str, sql: str, metrics: Sequence[tuple[str, str]], reused: bool
                ) -> Callable[[], dict[str, Any]]:
        """Define ``name`` like ``define`` and return a getter of aggregates over all its rows.

        The getter is called after the last statement that reads ``name``; an engine
        may compute the aggregates in that statement's own pass. ``reused``: more
        than one statement reads ``name``.
        """

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a query with a small result and return its rows."""

    def write(self, sql: str, lake: Lake, staging_rel: str, partition_column: str | None,
              rows_per_file: int, compression: str) -> tuple[pafs.FileSystem, str]:
        """Write a query's rows as Parquet under a staging folder (hive folders by ``partition_column``).

        Returns the filesystem and path where the staged files are, for ``publish``.
        """

    def write_partitions(self, writes: PartitionWrites, lake: Lake, staging_rel: str, rows_per_file: int,
                         compression: str) -> tuple[pafs.FileSystem, str]:
        """Write the affected partitions' rows under ``staging_rel/_pdir=<folder>/``, like ``write``.

        An empty partition leaves no folder.
        """


def _union(selects: list[str], empty: str) -> str:
    return " UNION ALL ".join(f"SELECT * FROM ({s}) u{i}" for i, s in enumerate(selects)) if selects else empty


def partition_reads(engine: Engine, lake: Lake, parts: Sequence[Partition], select: Callable[[pa.Schema, str], str]
                    ) -> list[str]:
    """``select(schema, source)`` once per schema among the partitions, each over all of its partitions."""
    groups: dict[str, list[Partition]] = {}
    for p in parts:
        if p.files.rels:
            groups.setdefault(p.files.schema.to_string(show_field_metadata=False), []).append(p)
    return [select(group[0].files.schema, engine.partitions_source(lake, group)) for group in groups.values()]


def register_inputs(engine: Engine, lake: Lake, job: KernelJob) -> None:
    """Define raw_in, ext_in, cur_keys and tomb from the job's files, each projected on the newest schema."""
    spec, d = job.spec, engine.dialect
    raw = [projection(spec, d, g.schema, engine.source(lake, g), RAW_META) for g in job.raw if g.rels]
    engine.define("raw_in", _union(raw, empty_relation(spec, d, RAW_META_TYPES)), False)
    ext = [
        projection(spec, d, x.files.schema, engine.source(lake, x.files), (),
                   {"_seq": f"CAST({x.as_of_seq} AS BIGINT)",
                    "_src": str(FULL if x.mode == "full" else INCREMENTAL), "_xrank": str(x.rank)})
        for x in job.extracts if x.files.rels
    ]
    engine.define("ext_in", _union(ext, empty_relation(spec, d, EXT_META_TYPES)), bool(ext))
    keys = ", ".join(spec.primary_key)
    cur = partition_reads(engine, lake, job.current, lambda _schema, source: f"SELECT {keys}, _seq, _part FROM {source}")
    empty_keys = empty_relation(spec, d, {"_seq": pa.int64(), "_part": pa.string()}, spec.primary_key)
    engine.define("cur_keys", _union(cur, empty_keys), False)
    if job.tombstones is not None and job.tombstones.rels:
        tomb = f"SELECT {keys}, _seq, deleted_at FROM {engine.source(lake, job.tombstones)}"
    else:
        tomb = empty_relation(spec, d, TOMB_META_TYPES, spec.primary_key)
    engine.define("tomb", tomb, False)


def run_kernel(engine: Engine, lake: Lake, job: KernelJob) -> KernelResult:
    """Merge and write: decisions, affected partitions, new partition versions, new tombstones."""
    sql = MergeSql(job.spec, engine.dialect, job.params, narrow_stored=engine.narrow_stored)
    register_inputs(engine, lake, job)
    if job.one_pass:
        engine.define("cur_all", _current_rows(engine, lake, job, job.current), False)
    for name, statement, materialize in sql.prelude(job.one_pass):
        engine.define(name, statement, materialize)
    known = [p.value for p in job.current]
    metrics = engine.observe("k", sql.decisions(job.one_pass), sql.metrics(known if job.one_pass else None),
                             reused=not job.one_pass)
    result = KernelResult()
    positions = job.positions.items() if job.positions is not None else (
        (shard, (position, newest)) for shard, position, newest in engine.fetch(sql.positions()))
    for shard, (position, newest) in positions:
        result.positions[str(shard)] = str(position)
        if isinstance(newest, dt.datetime) and (result.newest_op_ts is None or newest > result.newest_op_ts):
            result.newest_op_ts = newest
    staging = f"{layout.curated_table_dir(job.spec.table)}/.staging-{job.version}"
    if job.one_pass:
        fs, base = engine.write(sql.output_one_pass(known), lake, staging, "_pdir", job.rows_per_file,
                                job.compression)
        staged = staged_files(fs, base)
        _decide(result, job, metrics(), changed_partitions(fs, staged, job))
        _publish_partitions(result, job, fs, staged, lake, known)
        if _tombstones_changed(result):
            result.tombstones = _rewrite_tombstones(fs, staged.get(TOMB_FOLDER, []), lake, job)
        _drop_staging(fs, base)
        return result
    for name, statement, materialize in sql.views():
        engine.define(name, statement, materialize)
    _decide(result, job, metrics())
    if result.affected:
        writes = _partition_writes(engine, lake, job, sql, result.affected)
        fs, base = engine.write_partitions(writes, lake, staging, job.rows_per_file, job.compression)
        _publish_partitions(result, job, fs, staged_files(fs, base), lake, result.affected)
        _drop_staging(fs, base)
    if _tombstones_changed(result):
        result.tombstones = _write_tombstones(engine, lake, job)
    return result


def _partition_writes(engine: Engine, lake: Lake, job: KernelJob, sql: MergeSql, affected: Sequence[str]
                      ) -> PartitionWrites:
    """The keys-first output of ``affected``, both ways (see ``PartitionWrites``)."""
    current = {p.value: p for p in job.current}
    parts = [current[v] for v in affected if v in current]

    def combined() -> str:
        engine.define("cur_rows", _current_rows(engine, lake, job, parts), False)
        return sql.output(affected)

    def each() -> list[tuple[str, str]]:
        # every partition's statement reads these two: computed once, and in partition order so that
        # each statement's filter on ``_part`` skips the other partitions' blocks (DuckDB's zone maps)
        for name, statement, _ in sql.views():
            if name in ("removed", "inserted"):
                engine.define(name, f"SELECT * FROM ({statement}) v ORDER BY _part", True)
        folders = staging_folders(affected, affected)
        out = []
        for value in sorted(affected, key=lambda v: -current[v].files.rows if v in current else 0):
            stored = f"({_current_rows(engine, lake, job, [current[value]])})" if value in current else None
            out.append((folders[value], sql.partition_output(value, stored)))
        return out

    return PartitionWrites(combined, each)


def changed_partitions(fs: pafs.FileSystem, staged: Mapping[str, list[str]], job: KernelJob) -> list[str]:
    """The live partitions a one-pass write changed, from the staged files' footers.

    A partition changed if its rows are not as many as before (rows removed or
    added) or one of them carries this run's merge time (an upsert: every other
    row keeps the time of the run that wrote it). A footer without statistics
    counts as changed: publishing an unchanged partition again is harmless.
    """
    known = [p.value for p in job.current]
    folders = staging_folders(known, known)
    changed: list[str] = []
    for p in job.current:
        files = staged.get(folders[p.value], [])
        metas = [pq.read_metadata(path, filesystem=fs) for path in files]
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


def _decide(result: KernelResult, job: KernelJob, metrics: dict[str, Any], changed: Sequence[str] = ()) -> None:
    """The run's counts and affected partitions from the decision metrics (and ``changed``, see above)."""
    counts = {name: int(value) for name, value in metrics.items() if name != "affected"}
    kept = counts.pop("tombstones_kept")
    result.stats = {
        **counts,
        "extract_rows": sum(x.files.rows for x in job.extracts),
        "full_extract_deletes": counts.get("full_extract_deletes", 0),
        "tombstones_before": job.tombstones.rows if job.tombstones is not None else 0,
        "tombstones_after": counts["deletes"] + kept,
    }
    affected = set(json.loads(metrics["affected"])) | set(changed)
    if job.rewrite_all:
        affected |= {p.value for p in job.current}
    result.affected = sorted(affected)


def _tombstones_changed(result: KernelResult) -> bool:
    s = result.stats
    return bool(s["deletes"] or s["tombstones_before"] != s["tombstones_after"])


def _current_rows(engine: Engine, lake: Lake, job: KernelJob, parts: Sequence[Partition]) -> str:
    """The stored rows of ``parts``, whole, on the newest schema, with ``_part``."""
    spec, d = job.spec, engine.dialect
    reads = partition_reads(engine, lake, parts,
                            lambda schema, source: projection(spec, d, schema, source,
                                                              ("_seq", "_op_ts", "_merged_at", "_part")))
    empty = empty_relation(spec, d, {"_seq": pa.int64(), "_op_ts": RAW_META_TYPES["_op_ts"],
                                     "_merged_at": RAW_META_TYPES["_op_ts"], "_part": pa.string()})
    return _union(reads, empty)


def _publish_partitions(result: KernelResult, job: KernelJob, fs: pafs.FileSystem, staged: dict[str, list[str]],
                        lake: Lake, known: Sequence[str]) -> None:
    """Publish the staged folders of the affected partitions; an affected partition with none is emptied."""
    spec = job.spec
    for value, folder in staging_folders(result.affected, known).items():
        files = staged.get(folder)
        if files:
            target = layout.curated_version_dir(spec.table, spec.partition, value if spec.partition else None,
                                                job.version)
            result.written[value] = publish(fs, files, lake, target)


def staging_folders(values: Sequence[str], known: Sequence[str]) -> dict[str, str]:
    """The staging folder of each partition value, as ``MergeSql.folder`` names it in SQL."""
    index = {value: str(i) for i, value in enumerate(known)}
    return {v: index.get(v) or "x" + hashlib.md5(v.encode(), usedforsecurity=False).hexdigest() for v in values}


def _write_tombstones(engine: Engine, lake: Lake, job: KernelJob) -> list[tuple[str, int]]:
    staging = f"{layout.curated_table_dir(job.spec.table)}/.staging-{job.version}-tombstones"
    fs, base = engine.write("SELECT * FROM tomb_next", lake, staging, None, job.rows_per_file, job.compression)
    files = staged_files(fs, base).get("", [])
    written = publish(fs, files, lake, layout.tombstone_dir(job.spec.table, job.version))
    _drop_staging(fs, base)
    return written


def _rewrite_tombstones(fs: pafs.FileSystem, files: list[str], lake: Lake, job: KernelJob) -> list[tuple[str, int]]:
    """Tombstone files from the one-pass output's ``t`` folder: the key, ``_seq``, and the time as ``deleted_at``.

    A file at a time, so the driver holds one staged file's three columns at most.
    """
    target = layout.tombstone_dir(job.spec.table, job.version)
    lake.ensure_dir(target)
    columns = [*job.spec.primary_key, "_seq", "_merged_at"]
    written: list[tuple[str, int]] = []
    for i, path in enumerate(files):
        table = pq.read_table(path, columns=columns, filesystem=fs, partitioning=None)
        table = table.rename_columns([*job.spec.primary_key, "_seq", "deleted_at"])
        rel = f"{target}/part-{i:05d}.parquet"
        written.append((rel, lake.write_parquet(rel, table, compression=job.compression)))
    return written


def staged_files(fs: pafs.FileSystem, base: str) -> dict[str, list[str]]:
    """Staged Parquet files by ``_pdir`` folder (``""`` when the write was not partitioned)."""
    out: dict[str, list[str]] = {}
    for info in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=True)):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet"):
            continue
        if info.base_name.startswith((".", "_")):
            continue
        match = _PDIR.search(info.path.rsplit("/", 1)[0])
        out.setdefault(match.group(1) if match else "", []).append(info.path)
    return {k: sorted(v) for k, v in out.items()}


def publish(fs: pafs.FileSystem, files: list[str], lake: Lake, target_dir: str) -> list[tuple[str, int]]:
    """Move staged files to ``target_dir/part-NNNNN.parquet`` (a rename on one filesystem, else a copy)."""
    lake.ensure_dir(target_dir)
    written: list[tuple[str, int]] = []
    for i, path in enumerate(files):
        rel = f"{target_dir}/part-{i:05d}.parquet"
        size = fs.get_file_info(path).size or 0
        if fs.type_name == lake.fs.type_name:
            fs.move(path, lake.path(rel))
        else:
            pafs.copy_files(path, lake.path(rel), source_filesystem=fs, destination_filesystem=lake.fs)
            fs.delete_file(path)
        written.append((rel, int(size)))
    return written


def _drop_staging(fs: pafs.FileSystem, base: str) -> None:
    if fs.get_file_info(base).type == pafs.FileType.Directory:
        fs.delete_dir(base)
