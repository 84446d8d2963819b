"""The query path end to end: CLI formats and Trino SQL, the live view, bad SQL, rendering, the Athena path."""

from __future__ import annotations

import json
import urllib.request

import pytest
from click.testing import CliRunner

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest.aws import Clients
from hybrid_ingest.cli import cli
from hybrid_ingest.errors import QueryError
from hybrid_ingest.query import statement
from hybrid_ingest.query.athena import athena_query
from hybrid_ingest.query.local import LocalQuery
from hybrid_ingest.query.render import QueryResult, render
from tests.merge.helpers import Oracle, RawWriter, assert_matches, ev, key_only, order


def test_live_view_shows_unmerged_changes_with_the_merge_rules(duck: MergeContext, raw: RawWriter) -> None:
    merged = [ev("c", 1, order(1)), ev("c", 2, order(2)), ev("c", 3, order(3, day="2026-02-01"))]
    raw.write("orders", merged)
    run_merge(duck, "orders", engine="duckdb")
    pending = [ev("u", 5, order(1, status="live", day="2026-04-01")), ev("d", 6, key_only("orders", order(2))),
               ev("u", 2, order(3, status="stale")), ev("c", 7, order(4))]
    raw.write("orders", pending)
    oracle = Oracle("orders", ("order_id",))
    oracle.stream(merged + pending)
    rows = assert_matches(duck, oracle, table="orders_live")
    assert {r["order_id"]: r["order_date"].isoformat()[:7] for r in rows} == {1: "2026-04", 3: "2026-02", 4: "2026-01"}
    curated = Oracle("orders", ("order_id",))
    curated.stream(merged)
    assert_matches(duck, curated)  # the curated table itself is untouched until the merge


def test_query_cli_formats_and_trino_sql(duck: MergeContext, raw: RawWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    raw.write("orders", [ev("c", 1, order(1, amount="12.50")), ev("c", 2, order(2, day="2026-02-02"))])
    run_merge(duck, "orders", engine="duckdb")
    settings = duck.clients.settings
    monkeypatch.setenv("AWS_ENDPOINT_URL", str(settings.endpoint_url))
    monkeypatch.setenv("HYBRID_INGEST_HOME", str(settings.home))
    monkeypatch.setenv("HYBRID_INGEST_LAKE_URI", settings.lake_uri)
    runner = CliRunner()
    sql = ("SELECT order_id, total_amount, date_format(placed_at, '%Y-%m-%d') AS day, order_date "
           "FROM hybrid_ingest_curated.orders ORDER BY order_id")
    out = runner.invoke(cli, ["query", sql, "--format", "jsonl"])
    assert out.exit_code == 0, out.output
    assert [json.loads(line) for line in out.output.splitlines()] == [
        {"order_id": 1, "total_amount": "12.50", "day": "2026-01-15", "order_date": "2026-01-15"},
        {"order_id": 2, "total_amount": "10.00", "day": "2026-02-02", "order_date": "2026-02-02"},
    ]
    csv_out = runner.invoke(cli, ["query", "SELECT count(*) AS n FROM orders", "--format", "csv"])
    assert csv_out.output == "n\n2\n"
    table_out = runner.invoke(cli, ["query", "SELECT order_id FROM orders WHERE order_id = 2"])
    assert table_out.output.splitlines()[-1] == "(1 row)"


def test_bad_sql_is_a_query_error(duck: MergeContext, raw: RawWriter) -> None:
    with pytest.raises(QueryError, match="parse"):
        statement.parse("SELEC oops FROM")
    raw.write("orders", [ev("c", 1, order(1))])
    run_merge(duck, "orders", engine="duckdb")
    with pytest.raises(QueryError, match="query failed"):
        LocalQuery(duck.clients, duck.lake, duck.registry, duck.store).run("SELECT no_such_column FROM orders")


def test_render_table_aligns_and_counts() -> None:
    text = render(QueryResult(["a", "bb"], [(1, None), (22, "x")]), "table")
    assert text.splitlines() == ["a  | bb", "---+---", "1  |   ", "22 | x ", "(2 rows)"]


def test_athena_path_polls_and_fetches(initialized: Clients) -> None:
    athena = initialized.client("athena")
    names = initialized.settings.names
    athena.create_work_group(Name=names.athena_workgroup,
                             Configuration={"ResultConfiguration": {"OutputLocation": "s3://results/"}})
    queued = {"account_id": "123456789012", "region": initialized.settings.region, "results": [{
        "rows": [{"Data": [{"VarCharValue": "n"}]}, {"Data": [{"VarCharValue": "42"}]}],
        "column_info": [{"Name": "n", "Type": "bigint", "CatalogName": "", "SchemaName": "", "TableName": "",
                         "Label": "n", "Precision": 19, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": False}],
    }]}
    request = urllib.request.Request(f"{initialized.settings.endpoint_url}/moto-api/static/athena/query-results",
                                     data=json.dumps(queued).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    result = athena_query(athena, "SELECT count(*) AS n FROM orders", names.curated_database,
                          names.athena_workgroup)
    assert (result.columns, result.rows) == (["n"], [("42",)])  # the header row Athena repeats is dropped
