"""The DuckDB views a statement reads: a curated table at a snapshot, or a metadata table.

A snapshot's view reads exactly that snapshot's data files (copy-on-write: no
delete files, so the files are the rows), each column cast to the snapshot's
schema, so a local query sees what Athena sees at that version. Partitioning is
hidden: the partition column is a real column.
"""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.schema import Schema

from glue_jobs.kernel_duckdb import DuckDBEngine
from glue_jobs.kernel_model import FileGroup
from hybrid_ingest import iceberg, sqltext
from hybrid_ingest.lake import Lake


def define_table(engine: DuckDBEngine, lake: Lake, view: str, files: list[iceberg.SnapshotFile],
                 schema: Schema) -> list[str]:
    """View ``view`` of a snapshot's data ``files`` read with ``schema``; returns the paths it reads."""
    columns = iceberg.arrow_schema(schema)
    d = engine.dialect
    rels = tuple(iceberg.lake_rel(lake, f.uri) for f in files)
    if rels:
        source = engine.source(lake, FileGroup(rels, columns))
        typed = ", ".join(f"CAST({d.ident(f.name)} AS {d.type(f.type)}) AS {d.ident(f.name)}" for f in columns)
        sql = f"SELECT {typed} FROM {source}"
    else:
        nulls = ", ".join(f"{d.literal(None, f.type)} AS {d.ident(f.name)}" for f in columns)
        sql = f"SELECT {nulls} WHERE 1 = 0"
    engine.db.execute(f"CREATE VIEW {sqltext.ident(view, 'duckdb')} AS {sql}")
    return [lake.path(rel) for rel in rels] if lake.scheme == "file" else []


def define_arrow(engine: DuckDBEngine, view: str, data: pa.Table) -> None:
    """View ``view`` of rows built in Python (a metadata table): DuckDB scans the Arrow table in memory."""
    engine.db.register(view, data)
