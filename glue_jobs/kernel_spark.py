"""The PySpark kernel: the same merge SQL on a Spark session, for runs one machine cannot hold.

The session is passed in (on Glue the job's own, locally the caller's). Inputs
are read with ``spark.read.parquet`` from the lake's URIs, relations become temp
views (materialised ones cached, and unpersisted at the end), and the output is
shuffled by partition so each partition's rows are written by one task into
files capped at ``rows_per_file`` rows (``maxRecordsPerFile``): compaction toward
the target size without a second pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from glue_jobs.kernel import FileGroup, KernelJob, KernelResult, run_kernel
from glue_jobs.merge_sql import Dialect
from hybrid_ingest.lake import Lake

SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
}


@dataclass
class SparkEngine:
    spark: Any
    dialect: Dialect = field(default_factory=lambda: Dialect("spark"))

    def __post_init__(self) -> None:
        for key, value in SESSION_CONF.items():
            self.spark.conf.set(key, value)
        self._views: dict[tuple[str, ...], str] = {}
        self._cached: list[Any] = []

    def source(self, lake: Lake, group: FileGroup) -> str:
        """A temp view over the files; the schema is given, so Spark reads no footers to plan it."""
        name = self._views.get(group.rels)
        if name is None:
            name = f"_src{len(self._views) + 1}"
            ddl = ", ".join(f"`{f.name}` {self.dialect.type(f.type)}" for f in group.schema)
            self.spark.read.schema(ddl).parquet(*[lake.uri(r) for r in group.rels]).createOrReplaceTempView(name)
            self._views[group.rels] = name
        return name

    def define(self, name: str, sql: str, materialize: bool) -> None:
        frame = self.spark.sql(sql)
        if materialize:
            frame = frame.cache()
            self._cached.append(frame)
        frame.createOrReplaceTempView(name)

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.spark.sql(sql).collect()]

    def write(self, sql: str, lake: Lake, staging_rel: str, partition_column: str | None,
              rows_per_file: int, target_file_bytes: int, compression: str) -> tuple[pafs.FileSystem, str]:
        frame = self.spark.sql(sql)
        writer_frame = frame.repartition(partition_column) if partition_column else frame.coalesce(1)
        writer = (writer_frame.write.mode("overwrite").option("compression", compression)
                  .option("maxRecordsPerFile", rows_per_file))
        if partition_column:
            writer = writer.partitionBy(partition_column)
        writer.parquet(lake.uri(staging_rel))
        return lake.fs, lake.path(staging_rel)

    def close(self) -> None:
        for frame in self._cached:
            frame.unpersist()
        for name in self.spark.catalog.listTables():
            if name.isTemporary:
                self.spark.catalog.dropTempView(name.name)


def merge_spark(spark: Any, lake: Lake, job: KernelJob) -> KernelResult:
    engine = SparkEngine(spark)
    try:
        return run_kernel(engine, lake, job)
    finally:
        engine.close()
