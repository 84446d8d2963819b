"""The DuckDB kernel: the merge in-process on one machine (the Glue driver, or a laptop).

DuckDB runs the shared merge SQL with a memory limit and a temp directory, so
joins and windows larger than memory spill to disk instead of failing. A
``file://`` lake is read and written by DuckDB directly (its parallel Parquet
writer does the partitioned, size-capped output); an ``s3://`` lake is read
through ``pyarrow.dataset`` over the Lake's filesystem (DuckDB's httpfs cannot be
installed offline, and one filesystem adapter is simpler than two credentials
paths) and written to a local staging folder that ``publish`` uploads.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from glue_jobs.kernel import FileGroup, KernelJob, KernelResult, Partition, run_kernel
from glue_jobs.merge_sql import Dialect
from hybrid_ingest.lake import Lake

ROW_GROUP_SIZE = 122_880


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join("'" + i.replace("'", "''") + "'" for i in items) + "]"


@dataclass
class DuckDBEngine:
    """One DuckDB connection configured to spill; ``temp_dir`` also hosts staging for remote lakes."""

    memory_limit: str = "4GB"
    threads: int | None = None
    con: duckdb.DuckDBPyConnection | None = None
    temp_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="hybrid-ingest-duckdb-"))
    dialect: Dialect = field(default_factory=lambda: Dialect("duckdb"))
    narrow_stored: bool = True

    def __post_init__(self) -> None:
        if self.con is None:
            self.con = duckdb.connect()
        self.db.execute(f"SET memory_limit = '{self.memory_limit}'")
        self.db.execute(f"SET temp_directory = '{self.temp_dir}'")
        self.db.execute("SET TimeZone = 'UTC'")
        self.db.execute("SET preserve_insertion_order = false")
        if self.threads:
            self.db.execute(f"SET threads = {int(self.threads)}")
        self._datasets = 0

    def source(self, lake: Lake, group: FileGroup) -> str:
        rels = group.rels
        if lake.scheme == "file":
            return f"read_parquet({_sql_list([lake.path(r) for r in rels])}, hive_partitioning = false)"
        self._datasets += 1
        name = f"_ds{self._datasets}"
        self.db.register(name, pads.dataset([lake.path(r) for r in rels], format="parquet", filesystem=lake.fs))
        return name

    def partitions_source(self, lake: Lake, parts: Sequence[Partition]) -> str:
        """A union with a literal ``_part`` per branch: DuckDB plans such unions cheaply, and it is exact."""
        branches = [f"SELECT *, {self.dialect.string(p.value)} AS _part FROM {self.source(lake, p.files)}"
                    for p in parts]
        return f"({' UNION ALL '.join(branches)}) _parts"

    def define(self, name: str, sql: str, materialize: bool) -> None:
        kind = "TABLE" if materialize else "VIEW"
        self.db.execute(f"CREATE OR REPLACE TEMP {kind} {name} AS {sql}")

    def observe(self, name: str, sql: str, metrics: Sequence[tuple[str, str]], reused: bool
                ) -> Callable[[], dict[str, Any]]:
        """Materialise ``name`` (DuckDB's write reads it as a table), then aggregate it on demand."""
        self.define(name, sql, True)
        query = f"SELECT {', '.join(f'{expr} AS {alias}' for alias, expr in metrics)} FROM {name}"
        return lambda: dict(zip([alias for alias, _ in metrics], self.fetch(query)[0], strict=True))

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        # through Arrow: DuckDB's own conversion of TIMESTAMPTZ to Python needs pytz
        return [tuple(row.values()) for row in self.db.sql(sql).to_arrow_table().to_pylist()]

    def write(self, sql: str, lake: Lake, staging_rel: str, partition_column: str | None,
              rows_per_file: int, target_file_bytes: int, compression: str) -> tuple[pafs.FileSystem, str]:
        if lake.scheme == "file":
            fs, base = lake.fs, lake.path(staging_rel)
        else:
            fs, base = pafs.LocalFileSystem(), str(Path(self.temp_dir) / Path(staging_rel).name)
        if fs.get_file_info(base).type == pafs.FileType.Directory:
            fs.delete_dir(base)
        fs.create_dir(base.rsplit("/", 1)[0], recursive=True)
        options = ["FORMAT parquet", f"COMPRESSION {compression}", f"ROW_GROUP_SIZE {ROW_GROUP_SIZE}"]
        if partition_column:
            # a folder per partition; a file is cut at the target size or the row cap (in row groups)
            options += [f"PARTITION_BY ({partition_column})", f"FILE_SIZE_BYTES {int(target_file_bytes)}",
                        f"ROW_GROUPS_PER_FILE {max(1, rows_per_file // ROW_GROUP_SIZE)}",
                        "FILENAME_PATTERN 'part-{i}'"]
            target = base
        else:
            fs.create_dir(base, recursive=True)
            target = f"{base}/part-0.parquet"
        quoted = target.replace("'", "''")
        self.db.execute(f"COPY ({sql}) TO '{quoted}' ({', '.join(options)})")
        return fs, base

    @property
    def db(self) -> duckdb.DuckDBPyConnection:
        assert self.con is not None
        return self.con

    def close(self) -> None:
        self.db.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def merge_duckdb(lake: Lake, job: KernelJob, memory_limit: str = "4GB", threads: int | None = None) -> KernelResult:
    engine = DuckDBEngine(memory_limit=memory_limit, threads=threads)
    try:
        return run_kernel(engine, lake, job)
    finally:
        engine.close()
