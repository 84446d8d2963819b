"""The local query engine: one checked read statement on DuckDB over the views it names, locked down.

Each statement runs on a connection of its own: ``statement.parse`` checks it
(before anything is read), ``resolve.Catalog`` turns each name into a source (a
snapshot, a metadata table, a live view), exactly those views are defined, the
connection is locked down (``sandbox.lock_down``) with the snapshots' data files
as its only readable paths, and then the statement runs. The session keeps the
catalog's view of each table it has read, so the statements of one session see
one state of each table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from glue_jobs.kernel_duckdb import DuckDBEngine
from hybrid_ingest.errors import QueryError
from hybrid_ingest.lake import Lake
from hybrid_ingest.query import metadata, views
from hybrid_ingest.query.live import define_live
from hybrid_ingest.query.render import QueryResult
from hybrid_ingest.query.resolve import Catalog, Source
from hybrid_ingest.query.sandbox import lock_down
from hybrid_ingest.query.statement import ReadStatement, parse
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore

if TYPE_CHECKING:
    from hybrid_ingest.aws import Clients


class LocalQuery:
    """Athena (Trino) SQL over the curated tables, locally; ``run`` as many statements as you like."""

    def __init__(self, clients: Clients, lake: Lake, registry: Registry, store: StateStore,
                 memory_limit: str = "2GB") -> None:
        self.lake, self.registry, self.store = lake, registry, store
        self.catalog = Catalog(clients, lake, registry)
        self.memory_limit = memory_limit

    def run(self, sql: str | ReadStatement) -> QueryResult:
        statement = parse(sql) if isinstance(sql, str) else sql
        sources = [self.catalog.resolve(ref) for ref in statement.references]
        engine = DuckDBEngine(memory_limit=self.memory_limit)
        try:
            readable = self._define(engine, sources)
            lock_down(engine.db, readable)
            return execute(engine.db, statement.to_duckdb(dict(enumerate(s.view for s in sources)),
                                                          self.catalog.database))
        finally:
            engine.close()

    def _define(self, engine: DuckDBEngine, sources: list[Source]) -> list[str]:
        """Define each source's view once; returns the files they read."""
        readable: list[str] = []
        defined: set[str] = set()

        def define(source: Source) -> None:
            if source.view in defined:
                return
            defined.add(source.view)
            table = self.catalog.table(source.table)
            if source.kind == "table":
                readable.extend(views.define_table(engine, self.lake, source.view, self.catalog.files(source),
                                                   self.catalog.schema(source)))
            elif source.kind == "live":
                snapshot = table.current_snapshot()
                current = Source("table", source.table, snapshot.snapshot_id if snapshot else None)
                define(current)
                define_live(engine, self.lake, self.registry, self.store, table, source.table, current.view,
                            source.view)
            else:
                views.define_arrow(engine, source.view, metadata.BUILDERS[source.kind](table))

        for source in sources:
            define(source)
        return readable


def execute(con: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
    """Run ``sql`` and fetch its rows through Arrow (DuckDB's own TIMESTAMPTZ conversion needs pytz)."""
    try:
        relation = con.sql(sql)
        data = relation.to_arrow_table() if relation is not None else None
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {exc}") from exc
    if data is None:
        return QueryResult([], [])
    columns = [_python(column) for column in data.columns]
    return QueryResult(data.column_names, list(zip(*columns, strict=True)) if columns else [])


def _python(column: pa.ChunkedArray) -> list[Any]:
    values: list[Any] = column.to_pylist()
    if pa.types.is_map(column.type):  # Arrow gives a map as (key, value) pairs
        return [dict(v) if v is not None else None for v in values]
    return values
