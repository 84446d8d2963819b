"""What each name in a statement reads: a curated table at a snapshot, a metadata table, or a live view.

Names resolve as on Athena: case-insensitively, unqualified or qualified with
the curated database (or ``awsdatacatalog.<database>``); ``"<table>$snapshots"``
and ``"<table>$history"`` are the table's metadata tables; ``<table>_live`` is
the live view of a curated table (local only). Versions follow Athena's
(Trino's Iceberg connector's) rules:

* ``FOR VERSION AS OF <bigint>`` names a snapshot the metadata still keeps;
  a string names a branch or tag (``'main'``).
* ``FOR TIMESTAMP AS OF <t>`` picks the snapshot-log entry made current last at
  or before ``t`` (millisecond precision); a timestamp without a zone, and a
  date (its midnight), are UTC, Athena's session zone; before the first entry
  there is no version.

A version clause is a constant expression (``current_timestamp - interval '1'
day`` is fine); it is evaluated by DuckDB on a sealed connection.

Each table's metadata is loaded from the catalog the first time a statement of
this session names it, so one session reads one state of each table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import pyarrow as pa
import sqlglot.errors
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from sqlglot import exp

from hybrid_ingest import iceberg
from hybrid_ingest.errors import QueryError
from hybrid_ingest.lake import Lake
from hybrid_ingest.query import metadata, sandbox
from hybrid_ingest.query.statement import Reference
from hybrid_ingest.registry import Registry

if TYPE_CHECKING:
    from hybrid_ingest.aws import Clients

LIVE_SUFFIX = "_live"
Kind = Literal["table", "snapshots", "history", "live"]


@dataclass(frozen=True)
class Source:
    """What a reference reads: ``kind`` of curated ``table``, at ``snapshot_id`` for a table (None: no snapshot)."""

    kind: Kind
    table: str
    snapshot_id: int | None = None
    travelled: bool = False  # named with FOR VERSION/TIMESTAMP AS OF

    @property
    def view(self) -> str:
        """The name of the DuckDB view that holds it (any text: it is always quoted)."""
        if self.kind == "table":
            return f"{self.table}@{self.snapshot_id}" if self.travelled else self.table
        return f"{self.table}{LIVE_SUFFIX}" if self.kind == "live" else f"{self.table}${self.kind}"


class Catalog:
    """The curated database's Iceberg tables as one session sees them."""

    def __init__(self, clients: Clients, lake: Lake, registry: Registry) -> None:
        self.clients, self.lake, self.registry = clients, lake, registry
        self.database = clients.settings.names.curated_database
        self._names: set[str] | None = None
        self._tables: dict[str, Table] = {}
        self._files: dict[tuple[str, int], list[iceberg.SnapshotFile]] = {}
        self._catalog = iceberg.catalog(clients, lake)

    def names(self) -> set[str]:
        """The curated database's Iceberg tables (a table of the layout before Iceberg is not one)."""
        if self._names is None:
            names: set[str] = set()
            paginator = self.clients.glue.get_paginator("get_tables")
            for page in paginator.paginate(DatabaseName=self.database):
                names.update(t["Name"].lower() for t in page.get("TableList", [])
                             if t.get("Parameters", {}).get("table_type", "").upper() == "ICEBERG")
            self._names = names
        return self._names

    def table(self, name: str) -> Table:
        if name not in self._tables:
            loaded = iceberg.load(self._catalog, (self.database, name))
            if loaded is None:  # dropped since it was listed
                raise QueryError(f"Table '{self.database}.{name}' does not exist")
            self._tables[name] = loaded
        return self._tables[name]

    def resolve(self, ref: Reference) -> Source:
        """The source ``ref`` names, or a QueryError saying which name or version does not exist."""
        if ref.database not in (None, self.database):
            raise QueryError(f"Table '{ref.text}' does not exist: query reads the curated database "
                             f"{self.database}{ref.where}")
        name, kind = _split(ref.name, self.names())
        if name not in self.names():
            raise self._missing(name, ref)
        if kind != "table":
            if ref.version is not None:
                raise QueryError(f"{ref.name} has no versions: FOR VERSION/TIMESTAMP AS OF reads a curated "
                                 f"table (here {name}){ref.where}")
            return Source(kind, name)
        table = self.table(name)
        if ref.version is None:
            current = table.current_snapshot()
            return Source("table", name, current.snapshot_id if current else None)
        return Source("table", name, self._version(table, name, ref), travelled=True)

    def files(self, source: Source) -> list[iceberg.SnapshotFile]:
        """The data files of a table source's snapshot (none without one), read from its manifests once."""
        if source.snapshot_id is None:
            return []
        key = (source.table, source.snapshot_id)
        if key not in self._files:
            self._files[key] = iceberg.snapshot_files(self.table(source.table), None, source.snapshot_id)
        return self._files[key]

    def schema(self, source: Source) -> Schema:
        """The schema a table source reads with: the table's, or with time travel the snapshot's, as Trino
        (so Athena) does since trinodb/trino#12786 (and pyiceberg's scan of a snapshot)."""
        table = self.table(source.table)
        travelled = source.snapshot_id if source.travelled else None
        snapshot = table.snapshot_by_id(travelled) if travelled is not None else None
        if snapshot is not None and snapshot.schema_id is not None:
            found = table.metadata.schema_by_id(snapshot.schema_id)
            if found is not None:
                return found
        return table.schema()

    def _missing(self, name: str, ref: Reference) -> QueryError:
        if name in self.registry.tables():
            return QueryError(f"table {name!r} has not been merged yet: {self.database} has no curated table "
                              f"{name} (run `hybrid-ingest batch run`){ref.where}")
        return QueryError(f"Table '{self.database}.{ref.name}' does not exist{ref.where}")

    def _version(self, table: Table, name: str, ref: Reference) -> int:
        assert ref.version is not None
        value = _evaluate(ref.version.expression, ref)
        qualified = f"{self.database}.{name}"
        if ref.version.name.upper() == "VERSION":
            if isinstance(value, str):
                snapshot = table.snapshot_by_name(value)
                if snapshot is None:
                    raise QueryError(f"table {qualified} has no branch or tag {value!r}{ref.where}")
                return snapshot.snapshot_id
            if not isinstance(value, int) or isinstance(value, bool):
                raise QueryError(f"FOR VERSION AS OF takes a snapshot id (bigint) or a branch or tag name, "
                                 f"not {value!r}{ref.where}")
            return _kept(table, qualified, value, ref)
        at_ms = _epoch_ms(value, ref)
        snapshot = table.snapshot_as_of_timestamp(at_ms)  # the snapshot-log entry made current last at or before
        if snapshot is None:
            raise QueryError(f"No version history table {qualified} at or before {_instant(at_ms)} "
                             f"({_oldest(table)}){ref.where}")
        return snapshot.snapshot_id


def _split(name: str, tables: set[str]) -> tuple[str, Kind]:
    """(curated table, kind) of a name: ``t``, ``t$snapshots``, ``t$history`` or ``t_live``."""
    if "$" in name:
        base, suffix = name.split("$", 1)
        if suffix not in metadata.KINDS:
            raise QueryError(f"metadata table ${suffix} is not available locally (Athena has it): "
                             f"{' and '.join('$' + k for k in metadata.KINDS)} are")
        return base, "snapshots" if suffix == "snapshots" else "history"
    if name not in tables and name.endswith(LIVE_SUFFIX):
        return name.removesuffix(LIVE_SUFFIX), "live"
    return name, "table"


def _kept(table: Table, qualified: str, snapshot_id: int, ref: Reference) -> int:
    if table.snapshot_by_id(snapshot_id) is None:
        raise QueryError(f"table {qualified} has no snapshot {snapshot_id}: it never existed or retention "
                         f"expired it (\"{ref.name}$snapshots\" lists those kept){ref.where}")
    return snapshot_id


def _evaluate(expression: exp.Expression, ref: Reference) -> Any:
    """The value of a version clause's constant expression, computed by DuckDB in UTC."""
    if any(isinstance(n, exp.Column | exp.Table | exp.Query | exp.Star | exp.Placeholder)
           for n in expression.walk()):
        raise QueryError(f"a version in FOR ... AS OF must be a constant{ref.where}")
    try:
        sql = exp.select(expression.copy().as_("v")).sql(dialect="duckdb")
    except sqlglot.errors.SqlglotError as exc:
        raise QueryError(f"cannot evaluate the version of {ref.name}: {exc}") from exc
    con = sandbox.sealed()
    try:
        result = con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(f"cannot evaluate the version of {ref.name}: {' '.join(str(exc).split())}") from exc
    finally:
        con.close()
    value = result.column(0)[0]
    if pa.types.is_decimal(value.type) or pa.types.is_floating(value.type):
        raise QueryError(f"FOR VERSION AS OF takes a bigint snapshot id, not {value.as_py()}{ref.where}")
    return value.as_py()


def _epoch_ms(value: Any, ref: Reference) -> int:
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        stamp = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    else:
        raise QueryError(f"FOR TIMESTAMP AS OF takes a timestamp or a date, not {value!r}{ref.where}")
    delta = stamp - iceberg.EPOCH_TS
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _instant(ms: int) -> str:
    """An instant as Athena (Java's ``Instant``) prints it: seconds always, milliseconds when not zero."""
    stamp = iceberg.EPOCH_TS + dt.timedelta(milliseconds=ms)
    millis = f".{stamp.microsecond // 1000:03d}" if stamp.microsecond else ""
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + millis + "Z"


def _oldest(table: Table) -> str:
    log = table.metadata.snapshot_log
    if not log:
        return "it has no snapshot"
    return f"its oldest snapshot kept was made current at {_instant(min(e.timestamp_ms for e in log))}"
