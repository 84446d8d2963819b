"""Duplicate primary keys within one bulk extract: found by a query over the key columns, named by row.

A full or incremental extract is the source table as of one seq, so a key can
appear in it once. Two rows of one key have the same seq and the same source, and
no merge rule can say which is the source's: ``bulk push`` refuses them and the
merge dead-letters them (``glue_jobs.guard``). Both ask the same query
(``duplicate_query``), ``bulk push`` through DuckDB over the parts it has just
written, the merge through its engine.

The parts are read again rather than the keys kept while they were written:
DuckDB reads only the key columns, aggregates them within a memory limit and
spills past it, so the check never holds the extract (nor all its keys) in
memory. Keeping each batch's keys while writing and grouping them with Arrow
would: measured on 4M rows, that doubled the push's peak RSS, where this query
left it unchanged (README, Security model). Only when a key repeats are the parts
scanned once more, key columns only, to name the rows it is on (``key_rows``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from hybrid_ingest import sqltext
from hybrid_ingest.lake import Lake

MEMORY_LIMIT = "64MB"  # the check's own budget on a producer's host; DuckDB spills to a temporary folder past it
THREADS = 4  # enough to read the parts in parallel; each thread takes its share of the budget
SHOWN_ROWS = 10


@dataclass(frozen=True)
class Duplicate:
    """The first repeated key (in key order), the extract's rows that hold it, and how many keys repeat."""

    key: dict[str, Any]
    rows: tuple[int, ...]  # 1-based, counted across the parts in order: the input file's data rows for bulk push
    keys_repeated: int

    def message(self) -> str:
        shown = [str(r) for r in self.rows[:SHOWN_ROWS]]
        more = f" and {len(self.rows) - SHOWN_ROWS} more" if len(self.rows) > SHOWN_ROWS else ""
        rows = f"{', '.join(shown[:-1])} and {shown[-1]}" if len(shown) > 1 else shown[0]
        others = f"; {self.keys_repeated} keys repeated" if self.keys_repeated > 1 else ""
        return (f"duplicate primary key {describe(self.key)} at rows {rows}{more}{others}: "
                "an extract holds each key once")

    def figures(self) -> dict[str, Any]:
        return {"key": self.key, "rows": list(self.rows), "keys_repeated": self.keys_repeated}


def describe(key: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in key.items())


def duplicate_query(keys: Sequence[str], source: str) -> str:
    """The first repeated key (smallest first) and the number of keys that repeat, or no row.

    ``keys`` are quoted for the engine; the text runs unchanged on DuckDB and Spark.
    """
    cols = ", ".join(keys)
    return (f"SELECT {cols}, count(*) OVER () AS _repeated FROM (SELECT {cols} FROM {source}"
            f" GROUP BY {cols} HAVING count(*) > 1) d ORDER BY {cols} LIMIT 1")


def key_rows(lake: Lake, rels: Sequence[str], schema: pa.Schema, key: Mapping[str, Any]) -> tuple[int, ...]:
    """The 1-based rows (across ``rels`` in order) whose key columns equal ``key``; key columns read only."""
    out: list[int] = []
    offset = 0
    for rel in rels:
        with lake.fs.open_input_file(lake.path(rel)) as f:
            parquet = pq.ParquetFile(f)
            for batch in parquet.iter_batches(columns=list(key)):
                mask = None
                for name, value in key.items():
                    test = pc.equal(batch.column(name), pa.scalar(value, schema.field(name).type))
                    mask = test if mask is None else pc.and_(mask, test)
                if mask is not None:
                    out.extend(offset + int(i) + 1 for i in pc.indices_nonzero(mask).to_pylist())
                offset += batch.num_rows
    return tuple(out)


def first_duplicate(lake: Lake, rels: Sequence[str], keys: Sequence[str], schema: pa.Schema) -> Duplicate | None:
    """The first repeated key among Parquet files of one extract (DuckDB, key columns only), or None."""
    if not rels:
        return None
    pa.default_memory_pool().release_unused()  # what writing the parts freed goes back before DuckDB takes its own
    temp = tempfile.mkdtemp(prefix="hybrid-ingest-keys-")
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        con.execute(f"SET temp_directory = {sqltext.string(temp, 'duckdb')}")
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"SET threads = {THREADS}")
        if lake.scheme == "file":
            paths = ", ".join(sqltext.string(lake.path(r), "duckdb") for r in rels)
            source = f"read_parquet([{paths}])"
        else:  # DuckDB's httpfs cannot be installed offline: read S3 through the lake's own filesystem
            con.register("_parts", pads.dataset([lake.path(r) for r in rels], format="parquet", filesystem=lake.fs))
            source = "_parts"
        quoted = [sqltext.ident(k, "duckdb") for k in keys]
        found = con.sql(duplicate_query(quoted, source)).to_arrow_table().to_pylist()
    finally:
        con.close()
        shutil.rmtree(temp, ignore_errors=True)
    if not found:
        return None
    key = {k: found[0][k] for k in keys}
    return Duplicate(key, key_rows(lake, rels, schema, key), int(found[0]["_repeated"]))
