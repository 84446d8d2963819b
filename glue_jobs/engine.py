"""What a kernel asks of an engine (DuckDB, Spark): read Parquet, define relations, fetch, write.

``kernel.run_kernel`` drives any engine through the same statements from
``merge_sql`` and ``merge_output_sql``; everything engine-specific sits behind ``Engine``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from glue_jobs.kernel_model import FileGroup
from glue_jobs.merge_dialect import Dialect
from hybrid_ingest.lake import Lake


@dataclass(frozen=True)
class PartitionWrite:
    """One affected partition's rows: ``select`` into ``folder`` (lake-relative), files named ``prefix-<n>``.

    ``token`` names the partition in the kernel's results, as ``_pdir`` does in ``combined()``.
    """

    token: str
    folder: str
    prefix: str
    select: str


@dataclass(frozen=True)
class PartitionWrites:
    """The affected partitions' new rows, described two ways, so each engine writes them its fastest way.

    ``combined()``: one select of every affected partition's rows with their
    output folder name in ``_pdir``, for one partitioned write. ``each()``: a
    ``PartitionWrite`` per partition, largest first, for writes side by side.
    Each call defines the relations its selects read.
    """

    combined: Callable[[], str]
    each: Callable[[], list[PartitionWrite]]


class Engine(Protocol):
    dialect: Dialect
    clustered_writes: bool  # write_partitions filters ``removed`` and ``inserted`` by ``_part``: cluster them by it

    @property
    def narrow_stored(self) -> bool:
        """``MergeSql.narrow_stored``: worth it where a semi-join is a cheap hash probe."""

    @property
    def aggregate_apart(self) -> bool:
        """``MergeSql.aggregate_apart``: worth it where an aggregate or a join costs no shuffle."""

    def source(self, lake: Lake, group: FileGroup) -> str:
        """A FROM-clause expression reading these Parquet files (all of ``group.schema``) in one scan."""

    def row_ids(self, lake: Lake, groups: Sequence[FileGroup]) -> list[str] | None:
        """Per group, an expression over ``source(lake, group)`` numbering its rows uniquely among all the groups
        and identically on every read; None when the engine cannot (then only the changes of keys with several
        changes are numbered, as they are materialised: ``MergeSql.multi``).
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

    def write(self, sql: str, lake: Lake, folder: str, partition_column: str | None, field_ids: Mapping[str, int],
              rows_per_file: int, compression: str) -> dict[str, list[tuple[str, int]]]:
        """Write a query's rows as Parquet files carrying Iceberg field IDs under ``folder`` (lake-relative).

        With ``partition_column`` the rows go to ``<folder>/<column>=<value>/``
        hive-style, the column itself not written. Returns the files by that
        value (``""`` without a partition column): lake-relative path and bytes.
        """

    def write_partitions(self, writes: PartitionWrites, lake: Lake, run_folder: str, field_ids: Mapping[str, int],
                         rows_per_file: int, compression: str) -> dict[str, list[tuple[str, int]]]:
        """Write the affected partitions' rows; returns the files by partition token.

        Either one partitioned ``write`` of ``combined()`` under ``run_folder`` or
        the ``each()`` writes; both are keyed by the same tokens. An empty
        partition leaves no file.
        """


@contextmanager
def opened(name: str, spark: Any = None, memory_limit: str = "4GB") -> Iterator[Engine]:
    """An engine of the kind a run chose (``spark`` or ``duckdb``), closed on leaving (Spark's settings put back)."""
    engine: Any
    if name == "spark":
        from glue_jobs.kernel_spark import SparkEngine

        engine = SparkEngine(spark)
    else:
        from glue_jobs.kernel_duckdb import DuckDBEngine

        engine = DuckDBEngine(memory_limit=memory_limit)
    try:
        yield engine
    finally:
        engine.close()
