"""``hybrid-ingest query``: Athena (Trino) SQL over the curated tables, and the ``<table>_live`` views.

Locally the SQL is transpiled from Trino to DuckDB with sqlglot and runs over
exactly the files of the catalog's current locations: one view per table, the
partition key added as a constant per partition, so what a local query sees is
what Athena would see. Unqualified names resolve to the curated database; the
database name also works as a schema qualifier.

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
import pyarrow as pa
import sqlglot
import sqlglot.errors

from glue_jobs import catalog, inputs
from glue_jobs.kernel import FileGroup, KernelJob, register_inputs
from glue_jobs.kernel_duckdb import DuckDBEngine
from glue_jobs.merge_sql import MergeParams, MergeSql
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
_DUCK_TYPES = {"bigint": "BIGINT", "int": "INTEGER", "float": "FLOAT", "double": "DOUBLE",
               "boolean": "BOOLEAN", "string": "VARCHAR", "binary": "BLOB", "date": "DATE",
               "timestamp": "TIMESTAMPTZ"}


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def duck_type(hive: str) -> str:
    if hive.startswith("decimal"):
        return hive.upper()
    return _DUCK_TYPES.get(hive, "VARCHAR")


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
    return '"' + name.replace('"', '""') + '"'


class LocalQuery:
    """DuckDB over the catalog's live files; one connection per command invocation."""

    def __init__(self, clients: Clients, lake: Lake, registry: Registry, store: StateStore,
                 memory_limit: str = "2GB") -> None:
        self.clients, self.lake, self.registry, self.store = clients, lake, registry, store
        self.database = clients.settings.names.curated_database
        self.engine = DuckDBEngine(memory_limit=memory_limit, con=duckdb.connect())
        self.con = self.engine.db
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(self.database)}")
        self.tables: dict[str, catalog.CatalogTable] = {}
        for table in self._catalog_tables():
            state = catalog.read_table(clients.glue, lake, self.database, table)
            self.tables[table] = state
            self._define_curated(state)

    def _catalog_tables(self) -> list[str]:
        names: list[str] = []
        for page in self.clients.glue.get_paginator("get_tables").paginate(DatabaseName=self.database):
            names.extend(t["Name"] for t in page.get("TableList", []))
        return sorted(names)

    def _define_curated(self, state: catalog.CatalogTable) -> None:
        key = state.partition_keys[0] if state.partition_keys else None
        selects: list[str] = []
        for value, rel in sorted(state.partitions.items()):
            files = tuple(self.lake.rel(i.path) for i in self.lake.files(rel, ".parquet"))
            if not files:
                continue
            extra = f", {self._str(value)} AS {_ident(key)}" if key else ""
            source = self.engine.source(self.lake, FileGroup(files, pa.schema([])))  # DuckDB reads the footers
            selects.append(f"SELECT *{extra} FROM {source}")
        typed = ", ".join(f"CAST({_ident(c['Name'])} AS {duck_type(c['Type'])}) AS {_ident(c['Name'])}"
                          for c in state.columns)
        if key:
            typed += f", CAST({_ident(key)} AS VARCHAR) AS {_ident(key)}"
        if selects:
            body = " UNION ALL BY NAME ".join(f"({s})" for s in selects)
            sql = f"SELECT {typed} FROM ({body}) t"
        else:
            nulls = ", ".join(f"CAST(NULL AS {duck_type(c['Type'])}) AS {_ident(c['Name'])}" for c in state.columns)
            sql = f"SELECT {nulls}{f', CAST(NULL AS VARCHAR) AS {_ident(key)}' if key else ''} WHERE 1 = 0"
        self._view(state.name, sql)

    def _view(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS {sql}")
        self.con.execute(f"CREATE OR REPLACE VIEW {_ident(self.database)}.{_ident(name)} AS "
                         f"SELECT * FROM main.{_ident(name)}")

    @staticmethod
    def _str(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    def define_live(self, table: str) -> None:
        """``<table>_live``: the curated rows minus those the pending raw changes replace, plus theirs."""
        state = self.tables.get(table)
        if state is None:
            raise QueryError(f"no curated table {table!r} in {self.database} (has it been merged yet?)")
        try:
            spec = self.registry.latest(table).spec
        except UnknownTableError as exc:
            raise QueryError(str(exc)) from exc
        watermark = self.store.watermark(table)
        pending = inputs.gather(self.lake, table, watermark, verify=False)
        partitions, _, _ = inputs.live_partitions(self.lake, state.partitions)
        tomb_rel = state.parameters.get(catalog.PARAM_TOMBSTONES) or ""
        tomb = None
        if tomb_rel:
            facts = [inputs.file_facts(self.lake, self.lake.rel(i.path)) for i in self.lake.files(tomb_rel, ".parquet")]
            tomb = next(iter(inputs.group_by_schema(facts)), None)
        now = dt.datetime.now(dt.UTC)
        params = MergeParams(
            watermark={s: str(p) for s, p in watermark.shards.items()},
            floor=state.param_int(catalog.PARAM_FLOOR, -1), full_rank=-1, merged_at=now,
            tombstone_cutoff=now - dt.timedelta(days=36500))
        job = KernelJob(spec=spec, raw=tuple(pending.raw), extracts=(), current=tuple(partitions),
                        tombstones=tomb, params=params, rewrite_all=False, version="live",
                        rows_per_file=1)
        register_inputs(self.engine, self.lake, job)
        merge = MergeSql(spec, self.engine.dialect, params, narrow_stored=self.engine.narrow_stored)
        for name, statement, materialize in merge.stage1():
            self.engine.define(name, statement, materialize)
        key = spec.partition.key if spec.partition else None
        keys = " AND ".join(f"r.{k} = c.{k}" for k in spec.primary_key)
        part_match = f" AND r._part = c.{_ident(key)}" if key else ""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {_ident(table + '__removed')} AS SELECT * FROM removed")
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {_ident(table + '__inserted')} AS SELECT * FROM inserted")
        cols = ", ".join(_ident(c["Name"]) for c in state.columns if c["Name"] != "_merged_at")
        part_col = f", _part AS {_ident(key)}" if key else ""
        sql = (
            f"SELECT * FROM {_ident(table)} c WHERE NOT EXISTS (SELECT 1 FROM {_ident(table + '__removed')} r"
            f" WHERE {keys}{part_match}) UNION ALL BY NAME"
            f" SELECT {cols}, CAST(NULL AS TIMESTAMPTZ) AS _merged_at{part_col}"
            f" FROM {_ident(table + '__inserted')}"
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
