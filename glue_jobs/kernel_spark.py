"""The PySpark kernel: the same merge SQL on a Spark session, for runs one machine cannot hold.

The session is passed in (on Glue the job's own, locally the caller's); the
settings the kernel needs are set for the run and put back afterwards. Inputs are
read with ``spark.read.parquet`` from the lake's URIs, each group of files in one
scan; relations become temp views, materialised ones
as eager local checkpoints (see ``define``), released at the end; a run's counts
are observed on the decisions themselves (see ``observe``). The per-key
decisions (``merge_sql.DECISIONS``) are broadcast to the joins that read them
when the run's bound on their rows fits ``broadcast_rows``: then the stored rows
and the changes are never shuffled to meet them, only the narrow records that
decide are, and the output once. The output is
shuffled by partition so each partition's rows are written by one task into
files capped at ``rows_per_file`` rows (``maxRecordsPerFile``): compaction toward
the target size without a second pass. Every column carries its Iceberg field ID
(``parquet.field.id`` metadata, written by Spark's Parquet writer) and
timestamps are written as TIMESTAMP_MICROS (Iceberg's type; never INT96).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs
from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from glue_jobs.engine import PartitionWrites
from glue_jobs.kernel import run_kernel
from glue_jobs.kernel_model import FileGroup, KernelJob, KernelResult
from glue_jobs.merge_dialect import Dialect
from glue_jobs.merge_sql import DECISIONS
from hybrid_ingest.lake import Lake, hidden

SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.parquet.fieldId.write.enabled": "true",
    # A run's counts are observed on the decision pass (``observe``). When that pass has no rows, this AQE
    # rule swaps the empty shuffle stage holding the observation for an empty LocalTableScan, so Spark
    # reports no metrics for it and ``Observation.get`` is ``{}`` (issue #15: an empty first extract).
    "spark.sql.adaptive.optimizer.excludedRules":
        "org.apache.spark.sql.execution.adaptive.AQEPropagateEmptyRelation",
}


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
    broadcast: bool = False  # broadcast the DECISIONS relations
    # read only the stored keys that changed: a semi-join against the broadcast change keys (see ``merge_spark``)
    narrow_stored: bool = False
    aggregate_apart: bool = False  # one shuffle of the decision's records, not one per input and join
    dialect: Dialect = field(default_factory=lambda: Dialect("spark"))
    clustered_writes: bool = False

    def __post_init__(self) -> None:
        self._saved = {key: self.spark.conf.get(key, None) for key in SESSION_CONF}
        for key, value in SESSION_CONF.items():
            self.spark.conf.set(key, value)
        self._views: dict[tuple[str, ...], str] = {}
        self._names: set[str] = set()  # every temp view this run defined, dropped by ``close``
        self._checkpoints: list[DataFrame] = []

    def source(self, lake: Lake, group: FileGroup) -> str:
        """A temp view over the files; the schema is given, so Spark reads no footers to plan it."""
        name = self._views.get(group.rels)
        if name is None:
            name = self._view(self._read(lake, group), group.rels)
        return name

    def _read(self, lake: Lake, group: FileGroup) -> DataFrame:
        ddl = ", ".join(f"{self.dialect.ident(f.name)} {self.dialect.type(f.type)}" for f in group.schema)
        frame: DataFrame = self.spark.read.schema(ddl).parquet(*[lake.uri(r) for r in group.rels])
        return frame

    def _view(self, frame: DataFrame, rels: tuple[str, ...]) -> str:
        name = f"_src{len(self._views) + 1}"
        frame.createOrReplaceTempView(name)
        self._names.add(name)
        self._views[rels] = name
        return name

    def row_ids(self, lake: Lake, groups: Sequence[FileGroup]) -> list[str] | None:
        """None: a file's row index is no column Spark can join on cheaply (its path is a string in a form Spark
        chooses), so the changes of keys with several changes are numbered and checkpointed."""
        return None

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
        self._register(name, frame)

    def _register(self, name: str, frame: DataFrame) -> None:
        if self.broadcast and name in DECISIONS:
            frame = F.broadcast(frame)
        frame.createOrReplaceTempView(name)
        self._names.add(name)

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
        self._register(name, frame)
        return lambda: dict(observation.get)

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.spark.sql(sql).collect()]

    def write(self, sql: str, lake: Lake, folder: str, partition_column: str | None, field_ids: Mapping[str, int],
              rows_per_file: int, compression: str) -> dict[str, list[tuple[str, int]]]:
        frame = self.spark.sql(sql)
        frame = frame.select(*[
            F.col(self.dialect.ident(c)).alias(c, metadata={"parquet.field.id": field_ids[c]}) if c in field_ids
            else F.col(self.dialect.ident(c)) for c in frame.columns])
        writer_frame = frame.repartition(partition_column) if partition_column else frame.coalesce(1)
        writer = (writer_frame.write.mode("overwrite").option("compression", compression)
                  .option("maxRecordsPerFile", rows_per_file))
        if partition_column:
            writer = writer.partitionBy(partition_column)
        writer.parquet(lake.uri(folder))
        out: dict[str, list[tuple[str, int]]] = {}
        selector = pafs.FileSelector(lake.path(folder), allow_not_found=True, recursive=True)
        for info in lake.fs.get_file_info(selector):  # the ``_pdir=`` folders are hidden to ``Lake.files``
            if info.type != pafs.FileType.File or hidden(info.base_name) or not info.base_name.endswith(".parquet"):
                continue
            rel = lake.rel(info.path)
            token = rel.removeprefix(folder).strip("/").split("/", 1)[0].partition("=")[2] if partition_column else ""
            out.setdefault(token, []).append((rel, int(info.size or 0)))
        return out

    def write_partitions(self, writes: PartitionWrites, lake: Lake, run_folder: str, field_ids: Mapping[str, int],
                         rows_per_file: int, compression: str) -> dict[str, list[tuple[str, int]]]:
        """One partitioned write: a statement per partition would be a scan, plan and job each."""
        return self.write(writes.combined(), lake, run_folder, "_pdir", field_ids, rows_per_file, compression)

    def close(self) -> None:
        for frame in self._checkpoints:
            _release_checkpoint(frame)
        for name in self._names:  # its own views only: listing the catalog costs a job, and others' views stay
            self.spark.catalog.dropTempView(name)
        for key, value in self._saved.items():
            if value is None:
                self.spark.conf.unset(key)
            else:
                self.spark.conf.set(key, value)


# Narrowing the stored keys pays when it leaves most of them out of the decision's shuffle; when the changes
# touch a large share of the table it only adds the change keys' broadcast.
NARROW_STORED_RATIO = 4


def merge_spark(spark: Any, lake: Lake, job: KernelJob, broadcast_rows: int) -> KernelResult:
    broadcast = job.decision_rows() <= broadcast_rows
    narrow = broadcast and job.change_rows() * NARROW_STORED_RATIO <= job.stored_rows()
    engine = SparkEngine(spark, broadcast=broadcast, narrow_stored=narrow)
    try:
        return run_kernel(engine, lake, job)
    finally:
        engine.close()
