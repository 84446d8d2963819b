"""A pgoutput relation message matched against the table's registered schema.

A relation message lists the table's columns (name, type OID, modifier) as the
change stream sees them at that point of the history. Against the latest
registered version it is one of:

* the same columns -> events are encoded with that version;
* a prefix of them (a change written before a column was added, re-read after a
  restart) -> the later columns are null, as they were in the database then;
* the registered columns plus new ones at the end -> a schema evolution, taken
  only when every new column is nullable and has no default (so rows written
  before it read null, exactly as the database has them); the caller registers
  it through the registry, which checks the table's compatibility mode;
* anything else (a column dropped, renamed, retyped, reordered) -> refused: the
  source stops with a one-line error rather than guess what old rows mean.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hybrid_ingest.errors import SourceError
from hybrid_ingest.registry import SchemaVersion
from producers.postgres import pgoutput as pg
from producers.postgres.catalog import SourceTable, TableRef, check_column_names
from producers.postgres.pgtypes import ColumnType, column_type, parse_value


@dataclass(frozen=True)
class PlanColumn:
    name: str
    mapped: ColumnType
    where: str


@dataclass
class RelationPlan:
    """How one relation's tuples become rows of one schema version."""

    ref: TableRef
    version: SchemaVersion
    columns: tuple[PlanColumn, ...]
    missing: tuple[str, ...] = ()
    key_positions: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        absent = [k for k in self.version.spec.primary_key if k not in names]
        if absent:
            raise SourceError(f"table {self.ref.qualified}: the change stream lacks primary key column(s) {absent}")
        self.key_positions = tuple(names.index(k) for k in self.version.spec.primary_key)

    def _check_width(self, values: pg.Tuple) -> None:
        if len(values) != len(self.columns):
            raise SourceError(f"table {self.ref.qualified}: a tuple of {len(values)} columns for a relation of "
                              f"{len(self.columns)}")

    def row(self, values: pg.Tuple, old: pg.Tuple | None) -> dict[str, Any]:
        """A full row; an unchanged TOASTed value is taken from ``old`` (the old row), or refused."""
        self._check_width(values)
        if old is None and pg.UNCHANGED not in values:
            row: dict[str, Any] = dict.fromkeys(self.missing)
            try:  # the common case in one tight loop; any problem is reported by the careful path below
                for column, value in zip(self.columns, values, strict=True):
                    row[column.name] = None if value is None else column.mapped.parse(value)  # type: ignore[arg-type]
                return row
            except (ValueError, ArithmeticError):
                pass
        return self._careful_row(values, old)

    def _careful_row(self, values: pg.Tuple, old: pg.Tuple | None) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(self.missing)
        for index, column in enumerate(self.columns):
            value = values[index]
            if isinstance(value, pg.Unchanged):
                value = old[index] if old is not None else value
                if isinstance(value, pg.Unchanged):
                    raise SourceError(
                        f"{column.where}: an update left this TOASTed value unchanged and the change does not "
                        f"carry it; set ALTER TABLE {self.ref.qualified} REPLICA IDENTITY FULL and retire and "
                        "restart the source (a new snapshot)")
            row[column.name] = None if value is None else parse_value(column.mapped, value, column.where)
        return row

    def key_row(self, values: pg.Tuple) -> dict[str, Any]:
        """The primary key of an old key or old row (a delete, or an update that moved the key)."""
        self._check_width(values)
        row: dict[str, Any] = {}
        for index in self.key_positions:
            column, value = self.columns[index], values[index]
            if not isinstance(value, str):
                raise SourceError(f"{column.where}: the replica identity sent no value for this key column")
            row[column.name] = parse_value(column.mapped, value, column.where)
        return row

    def key(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(row[k] for k in self.version.spec.primary_key)


def relation_columns(ref: TableRef, relation: pg.Relation, type_names: Mapping[int, str]) -> tuple[PlanColumn, ...]:
    check_column_names(ref, [c.name for c in relation.columns])
    columns = []
    for c in relation.columns:
        where = f"table {ref.qualified} column {c.name!r}"
        columns.append(PlanColumn(c.name, column_type(c.type_oid, c.typmod, where, type_names.get(c.type_oid)),
                                  where))
    return tuple(columns)


def base_type(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        return branches[0] if len(branches) == 1 else avro_type
    return avro_type


def added_columns(ref: TableRef, version: SchemaVersion, columns: tuple[PlanColumn, ...]) -> tuple[PlanColumn, ...]:
    """Columns the stream has beyond the registered schema ((): same or older); refuses any other change."""
    fields = version.spec.schema["fields"]
    for f, c in zip(fields, columns, strict=False):
        if f["name"] != c.name:
            raise SourceError(f"table {ref.qualified}: incompatible schema change: column {c.name!r} is where "
                              f"{f['name']!r} was (a column was dropped, renamed or reordered); stopping")
        if base_type(f["type"]) != c.mapped.avro:
            raise SourceError(f"{c.where}: incompatible schema change: its type changed from "
                              f"{base_type(f['type'])} to {c.mapped.avro}; stopping")
    return columns[len(fields):]


def evolved_schema(version: SchemaVersion, added: tuple[PlanColumn, ...], now: SourceTable) -> dict[str, Any]:
    """The registered schema plus ``added`` as nullable fields, if the catalog shows them safe to add."""
    schema = copy.deepcopy(version.spec.schema)
    for column in added:
        current = now.column(column.name)
        if current is None:
            raise SourceError(f"{column.where}: added in the change stream but no longer in the catalog, so "
                              "whether old rows read null cannot be checked; stopping")
        if current.not_null or current.defaulted:
            why = "NOT NULL" if current.not_null else "a default, identity or generation expression"
            raise SourceError(f"{column.where}: incompatible schema change: added with {why}, so rows written "
                              "before it do not read null; stopping")
        if current.mapped.avro != column.mapped.avro:
            raise SourceError(f"{column.where}: its type changed again since it was added; stopping")
        schema["fields"].append({"name": column.name, "type": ["null", column.mapped.avro], "default": None})
    return schema


def plan_for(ref: TableRef, version: SchemaVersion, columns: tuple[PlanColumn, ...]) -> RelationPlan:
    """The plan of a relation whose columns are the version's or a prefix of them."""
    names = [f["name"] for f in version.spec.schema["fields"]]
    if len(columns) > len(names):
        raise SourceError(f"table {ref.qualified}: the stream has columns the schema lacks")
    return RelationPlan(ref, version, columns, tuple(names[len(columns):]))
