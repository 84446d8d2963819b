"""``hybrid-ingest query``: Athena (Trino) SQL over the curated tables, and the ``<table>_live`` views.

Locally the SQL is transpiled from Trino to DuckDB with sqlglot and runs over
exactly the data files of each Iceberg table's current snapshot (copy-on-write:
no delete files), one view per table, so what a local query sees is what Athena
would see. Partitioning is hidden: the partition column is a real column.
Unqualified names resolve to the curated database; the database name also
works as a schema qualifier.

``<table>_live`` is the curated table plus the raw changes above the watermark,
merged with the same statements the merge runs (``merge_sql``) and the DuckDB
kernel's input registration, so users see a change seconds after the consumer
lands it. Pending bulk extracts are not included (they are big and land nightly).

On AWS (no endpoint configured) the SQL goes to Athena in the terraform
workgroup, is polled to completion, and the result pages are fetched.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import sqlglot
import sqlglot.errors
from pyiceberg.table import Table

from glue_jobs import inputs
from glue_jobs.kernel_duckdb import DuckDBEngine
from glue_jobs.kernel_inputs import register_inputs
from glue_jobs.kernel_model import FileGroup, KernelJob, Partition
from glue_jobs.merge_sql import MergeParams, MergeSql
from hybrid_ingest import iceberg, sqltext
from hybrid_ingest.aws import Clients
from hybrid_ingest.convert import to_json_value
from hybrid_ingest.errors import QueryError, UnknownTableError
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore

if TYPE_CHECKING:
    from mypy_boto3_athena import AthenaClient

LIVE_SUFFIX = "_live"
ATHENA_POLL_SECONDS = 0.5


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def to_duckdb(sql: str) -> str:
    """Trino SQL as DuckDB SQL; a parse error is the user's, so it becomes a QueryError."""
    try:
        statements = sqlglot.transpile(sql, read="trino", write="duckdb")
    except sqlglot.errors.SqlglotError as exc:  # ParseError, and TokenError (e.g. an unterminated string)
        # the first line says what and where; the next ones repeat the SQL with terminal underlining
        raise QueryError(f"cannot parse the SQL as Trino/Athena SQL: {(str(exc).splitlines() or [''])[0]}") from exc
    if len(statements) != 1:
        raise QueryError(f"expected one SQL statement, got {len(statements)}")
    return statements[0]


def _ident(name: str) -> str:
    return sqltext.ident(name, "duckdb")


class LocalQuery:
    """DuckDB over the current snapshots' data files; one connection per command invocation."""

    def __init__(self, clients: Clients, lake: Lake, registry: Registry, store: StateStore,
                 memory_limit: str = "2GB") -> None:
        self.clients, self.lake, self.registry, self.store = clients, lake, registry, store
        self.database = clients.settings.names.curated_database
        self.engine = DuckDBEngine(memory_limit=memory_limit, con=duckdb.connect())
        self.con = self.engine.db
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(self.database)}")
        self.catalog = iceberg.catalog(clients, lake)
        self.tables: dict[str, Table] = {}
        for name in self._catalog_tables():
            table = iceberg.load(self.catalog, (self.database, name))
            if table is not None:
                self.tables[name] = table
                self._define_curated(name, table)

    def _catalog_tables(self) -> list[str]:
        """The curated database's Iceberg tables (a table of the layout before Iceberg is not one)."""
        names: list[str] = []
        for page in self.clients.glue.get_paginator("get_tables").paginate(DatabaseName=self.database):
            names.extend(t["Name"] for t in page.get("TableList", [])
                         if t.get("Parameters", {}).get("table_type", "").upper() == "ICEBERG")
        return sorted(names)

    def _define_curated(self, name: str, table: Table) -> None:
        """The view of ``name``: exactly its current snapshot's data files, typed as the table's schema."""
        schema = iceberg.arrow_schema(table.schema())
        d = self.engine.dialect
        files = tuple(iceberg.lake_rel(self.lake, f.uri) for f in iceberg.snapshot_files(table, None))
        if files:
            source = self.engine.source(self.lake, FileGroup(files, schema))
            typed = ", ".join(f"CAST({_ident(f.name)} AS {d.type(f.type)}) AS {_ident(f.name)}" for f in schema)
            sql = f"SELECT {typed} FROM {source}"
        else:
            nulls = ", ".join(f"{d.literal(None, f.type)} AS {_ident(f.name)}" for f in schema)
            sql = f"SELECT {nulls} WHERE 1 = 0"
        self._view(name, sql)

    def _view(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS {sql}")
        self.con.execute(f"CREATE OR REPLACE VIEW {_ident(self.database)}.{_ident(name)} AS "
                         f"SELECT * FROM main.{_ident(name)}")

    def define_live(self, table: str) -> None:
        """``<table>_live``: the curated rows minus those the pending raw changes replace, plus theirs."""
        current = self.tables.get(table)
        if current is None:
            raise QueryError(f"no curated table {table!r} in {self.database} (has it been merged yet?)")
        try:
            spec = self.registry.latest(table).spec
        except UnknownTableError as exc:
            raise QueryError(str(exc)) from exc
        watermark = self.store.watermark(table)
        pending = inputs.gather(self.lake, table, watermark, verify=False)
        state = iceberg.merge_state(current)
        schema = iceberg.arrow_schema(current.schema())
        groups: dict[object, list[str]] = {}
        for f in iceberg.snapshot_files(current, spec):
            groups.setdefault(f.partition, []).append(iceberg.lake_rel(self.lake, f.uri))
        partitions = tuple(Partition(value, FileGroup(tuple(rels), schema)) for value, rels in groups.items())
        tomb_rels = [f"{iceberg.lake_rel(self.lake, iceberg.table_uri(current))}/{rel}"
                     for rel in (state.tombstones if state else ())]
        tomb = next(iter(inputs.group_by_schema([inputs.file_facts(self.lake, r) for r in tomb_rels])), None)
        now = dt.datetime.now(dt.UTC)
        params = MergeParams(
            watermark={s: str(p) for s, p in watermark.shards.items()},
            floor=state.floor if state else -1, full_rank=-1, merged_at=now,
            tombstone_cutoff=now - dt.timedelta(days=36500))
        job = KernelJob(spec=spec, raw=tuple(pending.raw), extracts=(), current=partitions,
                        tombstones=tomb, params=params, rewrite_all=False, run_id="live", field_ids={},
                        rows_per_file=1)
        merge = MergeSql(spec, self.engine.dialect, params, narrow_stored=self.engine.narrow_stored)
        register_inputs(self.engine, self.lake, job, merge)
        for name, statement, materialize in merge.stage1():
            self.engine.define(name, statement, materialize)
        keys = " AND ".join(f"r.{k} = c.{k}" for k in merge.keys)
        same_part = self.engine.dialect.same("r._part", merge.partition_expr("c"))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {_ident(table + '__removed')} AS SELECT * FROM removed")
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {_ident(table + '__inserted')} AS SELECT * FROM inserted")
        cols = ", ".join(_ident(f.name) for f in schema if f.name != "_merged_at")
        sql = (
            f"SELECT * FROM {_ident(table)} c WHERE NOT EXISTS (SELECT 1 FROM {_ident(table + '__removed')} r"
            f" WHERE {keys} AND {same_part}) UNION ALL BY NAME"
            f" SELECT {cols}, CAST(NULL AS TIMESTAMPTZ) AS _merged_at FROM {_ident(table + '__inserted')}"
        )
        self._view(table + LIVE_SUFFIX, sql)

    def run(self, sql: str) -> QueryResult:
        duck_sql = to_duckdb(sql)
        for table in self.tables:
            if re.search(rf"\b{re.escape(table + LIVE_SUFFIX)}\b", duck_sql):
                self.define_live(table)
        try:
            relation = self.con.sql(duck_sql)
            table = relation.to_arrow_table() if relation is not None else None
        except duckdb.Error as exc:
            raise QueryError(f"query failed: {exc}") from exc
        if table is None:
            return QueryResult([], [])
        # through Arrow: DuckDB's own conversion of TIMESTAMPTZ to Python needs pytz
        columns = [c.to_pylist() for c in table.columns]
        return QueryResult(table.column_names, list(zip(*columns, strict=True)) if columns else [])

    def close(self) -> None:
        self.engine.close()


def athena_query(athena: AthenaClient, sql: str, database: str, workgroup: str,
                 timeout_s: float = 600.0) -> QueryResult:
    """Run SQL in Athena and fetch every result page; a failed query raises QueryError with Athena's reason."""
    started = athena.start_query_execution(QueryString=sql, QueryExecutionContext={"Database": database},
                                           WorkGroup=workgroup)
    qid = started["QueryExecutionId"]
    deadline = time.monotonic() + timeout_s
    while True:
        status = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
        state = status["State"]
        if state == "SUCCEEDED":
            break
        if state in ("FAILED", "CANCELLED"):
            raise QueryError(f"Athena query {state.lower()}: {status.get('StateChangeReason', 'no reason given')}")
        if time.monotonic() > deadline:
            athena.stop_query_execution(QueryExecutionId=qid)
            raise QueryError(f"Athena query {qid} did not finish within {timeout_s:.0f} s")
        time.sleep(ATHENA_POLL_SECONDS)
    columns: list[str] = []
    rows: list[tuple[Any, ...]] = []
    for page_no, page in enumerate(athena.get_paginator("get_query_results").paginate(QueryExecutionId=qid)):
        result_set = page["ResultSet"]
        if not columns:
            columns = [c["Name"] for c in result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])]
        data = result_set.get("Rows", [])
        if page_no == 0 and data:
            data = data[1:]  # Athena repeats the header as the first row of the first page
        rows.extend(tuple(cell.get("VarCharValue") for cell in row["Data"]) for row in data)
    return QueryResult(columns, rows)


def render(result: QueryResult, fmt: str) -> str:
    """The result as an aligned text table, CSV with a header, or one JSON object a line."""
    if fmt == "jsonl":
        return "".join(json.dumps({c: to_json_value(v) for c, v in zip(result.columns, row, strict=True)},
                                  default=str) + "\n" for row in result.rows)
    cells = [[_cell(v) for v in row] for row in result.rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(cells)
        return buf.getvalue()
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(cells)} row{'s' if len(cells) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    converted = to_json_value(value)
    return "" if converted is None else str(converted)
