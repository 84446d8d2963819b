"""Which tables a source captures, read from the database's catalog and turned into table specs.

A table is refused, in one line naming it (and the column), when its changes
could not be captured exactly: no primary key; a replica identity that does not
give a delete's primary key (``NOTHING``, or an index without every key
column); a column type that is not mapped (``pgtypes``); a column name that is
not an Avro field name, starts with ``_`` (reserved for lineage) or repeats
another ignoring case; a lake table name that breaks DESIGN.md's rule (map it
with ``--table schema.Name=name``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_ingest.errors import SourceError
from hybrid_ingest.tables import TABLE_NAME, TableSpec
from producers.postgres.pgtypes import ColumnType, column_type

AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NAMESPACE = "hybrid_ingest.postgres"

COLUMNS_SQL = """
SELECT c.oid, c.relkind, c.relreplident, a.attname, a.atttypid, a.atttypmod, a.attnotnull,
       format_type(a.atttypid, a.atttypmod), a.atthasdef OR a.atthasmissing OR a.attidentity <> ''
           OR a.attgenerated <> ''
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = %s AND c.relname = %s
ORDER BY a.attnum
"""
INDEX_SQL = """
SELECT i.indisprimary, i.indisreplident, a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND (i.indisprimary OR i.indisreplident)
ORDER BY i.indisprimary DESC, k.ord
"""


@dataclass(frozen=True)
class TableRef:
    """A source table (schema and name, exactly as in the catalog) and the lake table it feeds."""

    schema: str
    name: str
    table: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def to_json(self) -> dict[str, str]:
        return {"schema": self.schema, "name": self.name, "table": self.table}

    @classmethod
    def from_json(cls, doc: dict[str, str]) -> TableRef:
        return cls(doc["schema"], doc["name"], doc["table"])


def parse_table_ref(text: str) -> TableRef:
    """``SCHEMA.TABLE[=LAKE_TABLE]``; the schema defaults to ``public``, the lake name to the table's."""
    source, _, target = text.partition("=")
    schema, dot, name = source.partition(".")
    if not dot:
        schema, name = "public", source
    if not schema or not name:
        raise ValueError(f"{text!r} is not SCHEMA.TABLE[=TABLE]")
    table = target or name
    if not TABLE_NAME.fullmatch(table):
        raise ValueError(f"lake table name {table!r} (from {text!r}) does not match [a-z][a-z0-9_]{{0,62}}; "
                         f"map it: --table {schema}.{name}=<name>")
    return TableRef(schema, name, table)


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type_oid: int
    typmod: int
    not_null: bool
    type_name: str
    defaulted: bool          # has a default, a missing value for old rows, identity or generation
    mapped: ColumnType


@dataclass(frozen=True)
class SourceTable:
    ref: TableRef
    oid: int
    columns: tuple[SourceColumn, ...]
    primary_key: tuple[str, ...]

    def column(self, name: str) -> SourceColumn | None:
        return next((c for c in self.columns if c.name == name), None)


def avro_field(column: SourceColumn) -> dict[str, Any]:
    if column.not_null:
        return {"name": column.name, "type": column.mapped.avro}
    return {"name": column.name, "type": ["null", column.mapped.avro], "default": None}


def check_column_names(ref: TableRef, names: Sequence[str]) -> None:
    seen: dict[str, str] = {}
    for name in names:
        where = f"table {ref.qualified} column {name!r}"
        if not AVRO_NAME.fullmatch(name):
            raise SourceError(f"{where}: not a valid Avro field name ([A-Za-z_][A-Za-z0-9_]*)")
        if name.startswith("_"):
            raise SourceError(f"{where}: names starting with '_' are reserved for lineage columns")
        if name.lower() in seen:
            raise SourceError(f"{where}: repeats column {seen[name.lower()]!r} ignoring case")
        seen[name.lower()] = name


def read_table(cur: Any, ref: TableRef) -> SourceTable:
    """The table's columns, key and replica identity from the catalog; refused in one line if not capturable."""
    cur.execute(COLUMNS_SQL, (ref.schema, ref.name))
    rows = cur.fetchall()
    if not rows:
        raise SourceError(f"table {ref.qualified} does not exist (names are exact and case-sensitive)")
    oid, relkind, identity = int(rows[0][0]), rows[0][1], rows[0][2]
    if relkind not in ("r", "p"):
        raise SourceError(f"{ref.qualified} is not a table (relkind {relkind!r})")
    if rows[0][3] is None:
        raise SourceError(f"table {ref.qualified} has no columns")
    check_column_names(ref, [r[3] for r in rows])
    columns = tuple(
        SourceColumn(name, int(typ), int(mod), bool(notnull), fmt, bool(defaulted),
                     column_type(int(typ), int(mod), f"table {ref.qualified} column {name!r}", fmt))
        for _, _, _, name, typ, mod, notnull, fmt, defaulted in rows
    )
    cur.execute(INDEX_SQL, (oid,))
    primary = tuple(name for is_pk, _, name in cur.fetchall() if is_pk)
    if not primary:
        raise SourceError(f"table {ref.qualified} has no primary key: its changes cannot be merged by key")
    cur.execute(INDEX_SQL, (oid,))
    identity_columns = {name for _, is_identity, name in cur.fetchall() if is_identity}
    if identity == "n":
        raise SourceError(f"table {ref.qualified} has REPLICA IDENTITY NOTHING: a delete would not carry its key "
                          "(use DEFAULT or FULL)")
    if identity == "i" and not set(primary) <= identity_columns:
        raise SourceError(f"table {ref.qualified}: its replica identity index lacks primary key column(s) "
                          f"{sorted(set(primary) - identity_columns)}, so a delete would not carry its key "
                          "(use DEFAULT or FULL)")
    return SourceTable(ref, oid, columns, primary)


def table_spec(source: SourceTable, existing: TableSpec | None = None) -> TableSpec:
    """The lake table's spec; an existing registration keeps its partitioning, mode and namespace."""
    schema: dict[str, Any] = {
        "type": "record", "name": source.ref.table,
        "namespace": NAMESPACE if existing is None else existing.schema.get("namespace", NAMESPACE),
        "doc": f"PostgreSQL table {source.ref.qualified}",
        "fields": [avro_field(c) for c in source.columns],
    }
    if existing is None:
        return TableSpec(source.ref.table, source.primary_key, schema)
    if "doc" in existing.schema:
        schema["doc"] = existing.schema["doc"]
    else:
        del schema["doc"]
    return TableSpec(source.ref.table, source.primary_key, schema, existing.partition, existing.compatibility,
                     existing.extra)
