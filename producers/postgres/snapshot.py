"""A table's rows as seen by an exported snapshot, as Arrow batches in the lake table's schema.

The caller opens ``BEGIN ISOLATION LEVEL REPEATABLE READ`` and ``SET TRANSACTION
SNAPSHOT`` on a plain connection; here each table is read through a server-side
cursor (bounded memory). psycopg2's own conversions are switched off for the
mapped types on the reading cursor (``RAW_TEXT``), so every value arrives in its output function's
text form, exactly as pgoutput sends it, and is parsed by the same functions
(``pgtypes``). A ``::text`` cast would not do: it spells booleans ``true`` and
trims ``char(n)`` padding, where the output functions do neither.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg2.extensions
import pyarrow as pa

from hybrid_ingest.convert import arrow_schema
from hybrid_ingest.registry import SchemaVersion
from hybrid_ingest.sqltext import ident
from producers.bulk import conform
from producers.postgres.catalog import SourceTable
from producers.postgres.pgtypes import NAMES, parse_value

DEFAULT_BATCH_ROWS = 20_000


RAW_TEXT = psycopg2.extensions.new_type(tuple(NAMES), "HYBRID_INGEST_TEXT", lambda value, cursor: value)


def select_all(table: SourceTable) -> str:
    columns = ", ".join(ident(c.name, "postgres") for c in table.columns)
    return f"SELECT {columns} FROM {ident(table.ref.schema, 'postgres')}.{ident(table.ref.name, 'postgres')}"


def rows_to_batch(table: SourceTable, version: SchemaVersion, rows: Sequence[Sequence[str | None]],
                  first_row: int) -> pa.RecordBatch:
    """Parse text rows into a batch of the version's curated schema (columns the table lacks are null)."""
    target = arrow_schema(version.spec)
    arrays = []
    by_name = {c.name: i for i, c in enumerate(table.columns)}
    for f in target:
        index = by_name.get(f.name)
        if index is None:
            arrays.append(pa.nulls(len(rows), f.type))
            continue
        column = table.columns[index]
        where = f"table {table.ref.qualified} column {column.name!r}"
        texts: list[str | None] = [r[index] for r in rows]
        values: list[Any] = [None if t is None else parse_value(column.mapped, t, where) for t in texts]
        arrays.append(pa.array(values, type=f.type))
    return conform(version.spec, target, pa.RecordBatch.from_arrays(arrays, schema=target), first_row)


def read_batches(connection: Any, table: SourceTable, version: SchemaVersion,
                 batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The table's rows in the connection's open transaction, ``batch_rows`` at a time."""
    with connection.cursor(name=f"snapshot_{table.oid}") as cur:
        psycopg2.extensions.register_type(RAW_TEXT, cur)
        cur.itersize = batch_rows
        cur.execute(select_all(table))
        seen = 0
        while rows := cur.fetchmany(batch_rows):
            yield rows_to_batch(table, version, rows, seen)
            seen += len(rows)
