"""The PySpark kernel: the same merge SQL on a Spark session, for runs one machine cannot hold.

The session is passed in (on Glue the job's own, locally the caller's); the
settings the kernel needs are set for the run and put back afterwards. Inputs are
read with ``spark.read.parquet`` from the lake's URIs, the live partitions in one
scan (see ``partitions_source``); relations become temp views, materialised ones
as eager local checkpoints (see ``define``), released at the end; a run's counts
are observed on the decision pass itself (see ``observe``). The output is
shuffled by partition so each partition's rows are written by one task into
files capped at ``rows_per_file`` rows (``maxRecordsPerFile``): compaction toward
the target size without a second pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import pyarrow.fs as pafs
from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from glue_jobs.kernel import FileGroup, KernelJob, KernelResult, Partition, PartitionWrites, run_kernel
from glue_jobs.merge_sql import Dialect
from hybrid_ingest import layout
from hybrid_ingest.lake import Lake

SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    # A run's counts are observed on the decision pass (``observe``). When that pass has no rows, this AQE
    # rule swaps the empty shuffle stage holding the observation for an empty LocalTableScan, so Spark
    # reports no metrics for it and ``Observation.get`` is ``{}`` (issue #15: an empty first extract).
    "spark.sql.adaptive.optimizer.excludedRules":
        "org.apache.spark.sql.execution.adaptive.AQEPropagateEmptyRelation",
}

_SAFE = re.compile(r"[A-Za-z0-9._-]+")
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _folder_keys(parts: Sequence[Partition], columns: set[str]) -> tuple[str, str] | None:
    """(base folder, partition key) when every file is ``<base>/<key>=<value>/v=<run>/<file>`` for its own value.

    Only then does Spark's partition discovery give back each partition value unchanged.
    """
    version_key = layout.VERSION_PREFIX.rstrip("=")
    found: set[tuple[str, str]] = set()
    for p in parts:
        if not _SAFE.fullmatch(p.value) or p.value == _HIVE_NULL:
            return None
        for rel in p.files.rels:
            segments = rel.split("/")
            if len(segments) < 4 or not segments[-2].startswith(layout.VERSION_PREFIX):
                return None
            key, sep, value = segments[-3].partition("=")
            if not sep or value != p.value:
                return None
            found.add(("/".join(segments[:-3]), key))
    if len(found) != 1:
        return None
    base, key = found.pop()
    if not _SAFE.fullmatch(key) or {key, version_key} & columns or key == version_key:
        return None
    return base, key


def _release_checkpoint(frame: DataFrame) -> None:
    """Free a local checkpoint's blocks now; PySpark has no call for it, and a Glue job merges many tables.

    Without this they would stay until the driver's garbage collector lets Spark's
    cleaner find them.
    """
    plan = frame._jdf.queryExecution().logical()
    if plan.getClass().getSimpleName() == "LogicalRDD":
        plan.rdd().unpersist(False)


@dataclass
class SparkEngine:
    spark: Any
    dialect: Dialect = field(default_factory=lambda: Dialect("spark"))
    narrow_stored: bool = False

    def __post_init__(self) -> None:
        self._saved = {key: self.spark.conf.get(key, None) for key in SESSION_CONF}
        for key, value in SESSION_CONF.items():
            self.spark.conf.set(key, value)
        self._views: dict[tuple[str, ...], str] = {}
        self._checkpoints: list[DataFrame] = []

    def source(self, lake: Lake, group: FileGroup) -> str:
        """A temp view over the files; the schema is given, so Spark reads no footers to plan it."""
        name = self._views.get(group.rels)
        if name is None:
            name = self._view(self._read(lake, group), group.rels)
        return name

    def partitions_source(self, lake: Lake, parts: Sequence[Partition]) -> str:
        """One scan of every partition's files, ``_part`` taken from the partition folder names.

        A union with a branch per partition made plans grow with the partition
        count (megabytes of plan text at 24 partitions, re-optimised by every
        statement that reads it) and let Spark push the output's anti-join into
        each branch, one broadcast per partition. Spark's own partition discovery
        turns ``<key>=<value>/v=<run>`` folders into constant columns, free per row
        (a regular expression over ``_metadata.file_path`` cost 25 s per million
        rows here). It is used only when every folder value is exactly the
        partition value (``layout.safe`` changed nothing) and the folder keys
        collide with no column; otherwise the union is the exact fallback.
        """
        rels = tuple(r for p in parts for r in p.files.rels)
        name = self._views.get(rels)
        if name is not None:
            return name
        schema = parts[0].files.schema
        if len(parts) == 1:
            frame = self._read(lake, FileGroup(rels, schema)).withColumn("_part", F.lit(parts[0].value))
        elif (layout_keys := _folder_keys(parts, set(schema.names) | {"_part"})) is not None:
            base, key = layout_keys
            frame = (self._read(lake, FileGroup(rels, schema), base_path=lake.uri(base))
                     .withColumnRenamed(key, "_part").drop(layout.VERSION_PREFIX.rstrip("=")))
        else:
            frame = reduce(DataFrame.unionAll, [
                self._read(lake, FileGroup(p.files.rels, schema)).withColumn("_part", F.lit(p.value))
                for p in parts])
        return self._view(frame, rels)

    def _read(self, lake: Lake, group: FileGroup, base_path: str | None = None) -> DataFrame:
        ddl = ", ".join(f"`{f.name}` {self.dialect.type(f.type)}" for f in group.schema)
        reader = self.spark.read.schema(ddl)
        if base_path is not None:
            reader = reader.option("basePath", base_path)
        frame: DataFrame = reader.parquet(*[lake.uri(r) for r in group.rels])
        return frame

    def _view(self, frame: DataFrame, rels: tuple[str, ...]) -> str:
        name = f"_src{len(self._views) + 1}"
        frame.createOrReplaceTempView(name)
        self._views[rels] = name
        return name

    def define(self, name: str, sql: str, materialize: bool) -> None:
        """Materialised relations are local checkpoints, computed now, with their lineage cut.

        ``cache()`` kept every upstream plan inside each later statement (each one
        re-planned and re-matched the whole chain, and materialised it lazily in
        extra jobs); a checkpoint is a plain scan of stored rows. Its blocks live on
        the executors like cached ones: losing an executor fails the run, which
        the workflow retries, rather than changing a result.
        """
        frame = self.spark.sql(sql)
        if materialize:
            frame = frame.localCheckpoint(eager=True)
            self._checkpoints.append(frame)
        frame.createOrReplaceTempView(name)

    def observe(self, name: str, sql: str, metrics: Sequence[tuple[str, str]], reused: bool
                ) -> Callable[[], dict[str, Any]]:
        """Spark's ``observe``: the aggregates ride along the pass that computes ``name``, no scan of their own.

        A reused relation is checkpointed now (its metrics come with that job);
        otherwise they come with the one statement that reads it.
        """
        observation = Observation()
        frame = self.spark.sql(sql).observe(observation, *[F.expr(expr).alias(alias) for alias, expr in metrics])
        if reused:
            frame = frame.localCheckpoint(eager=True)
            self._checkpoints.append(frame)
        frame.createOrReplaceTempView(name)
        return lambda: dict(observation.get)

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.spark.sql(sql).collect()]

    def write(self, sql: str, lake: Lake, staging_rel: str, partition_column: str | None,
              rows_per_file: int, compression: str) -> tuple[pafs.FileSystem, str]:
        frame = self.spark.sql(sql)
        writer_frame = frame.repartition(partition_column) if partition_column else frame.coalesce(1)
        writer = (writer_frame.write.mode("overwrite").option("compression", compression)
                  .option("maxRecordsPerFile", rows_per_file))
        if partition_column:
            writer = writer.partitionBy(partition_column)
        writer.parquet(lake.uri(staging_rel))
        return lake.fs, lake.path(staging_rel)

    def write_partitions(self, writes: PartitionWrites, lake: Lake, staging_rel: str, rows_per_file: int,
                         compression: str) -> tuple[pafs.FileSystem, str]:
        """One partitioned write: a statement per partition would be a scan, plan and job each."""
        return self.write(writes.combined(), lake, staging_rel, "_pdir", rows_per_file, compression)

    def close(self) -> None:
        for frame in self._checkpoints:
            _release_checkpoint(frame)
        for name in self.spark.catalog.listTables():
            if name.isTemporary:
                self.spark.catalog.dropTempView(name.name)
        for key, value in self._saved.items():
            if value is None:
                self.spark.conf.unset(key)
            else:
                self.spark.conf.set(key, value)


def merge_spark(spark: Any, lake: Lake, job: KernelJob) -> KernelResult:
    engine = SparkEngine(spark)
    try:
        return run_kernel(engine, lake, job)
    finally:
        engine.close()
