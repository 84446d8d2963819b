"""The query on AWS: the statement goes to Athena in the terraform workgroup, as the user wrote it.

The workgroup enforces its result location and encryption; the statement has
passed the same read-only check as a local one (``statement.parse``) before it
is sent. boto3 has no waiter for Athena queries, so the polling is ours.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hybrid_ingest.errors import QueryError
from hybrid_ingest.query.render import QueryResult

if TYPE_CHECKING:
    from mypy_boto3_athena import AthenaClient

POLL_SECONDS = 0.5


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
        time.sleep(POLL_SECONDS)
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
