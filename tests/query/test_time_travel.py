"""Athena's time travel and metadata tables, locally, through the CLI (issue #16's acceptance for query).

Three merge runs give three snapshots of ``orders`` (3, 5 and 4 rows). Every
expectation comes from the runs themselves or from the table's metadata as
pyiceberg loads it, never from the query path.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
from dataclasses import dataclass
from typing import Any

import pytest

from glue_jobs.merge import MergeContext, run_merge
from glue_jobs.retention import retain
from hybrid_ingest import iceberg
from tests.conftest import Runner
from tests.merge.helpers import RawWriter, ev, key_only, load_table, order, table_rows

COUNTS = (3, 5, 4)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def at(ms: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def iso(ms: int) -> str:
    """How ``--format jsonl`` writes a timestamp with time zone."""
    return at(ms).isoformat().replace("+00:00", "Z")


@dataclass
class Runs:
    snapshots: list[int]
    run_ids: list[str]

    def committed_ms(self, ctx: MergeContext) -> list[int]:
        table = load_table(ctx, "orders")
        return [snapshot.timestamp_ms for s in self.snapshots if (snapshot := table.snapshot_by_id(s))]


@pytest.fixture
def runs(duck: MergeContext, raw: RawWriter) -> Runs:
    """Run 1 inserts orders 1-3, run 2 adds 4 and 5, run 3 deletes 1 and updates 2."""
    batches = [
        [ev("c", 1, order(1)), ev("c", 2, order(2)), ev("c", 3, order(3, day="2026-02-01"))],
        [ev("c", 4, order(4)), ev("c", 5, order(5, day="2026-03-01"))],
        [ev("d", 6, key_only("orders", order(1))), ev("u", 7, order(2, status="paid"))],
    ]
    snapshots, run_ids = [], []
    for i, batch in enumerate(batches, start=1):
        raw.write("orders", batch)
        result = run_merge(duck, "orders", engine="duckdb", run_id=f"run-{i}")
        assert result.snapshot_id is not None
        snapshots.append(result.snapshot_id)
        run_ids.append(result.run_id)
    return Runs(snapshots, run_ids)


def jsonl(cli: Runner, sql: str) -> list[dict[str, Any]]:
    code, out, err = cli("query", sql, "--format", "jsonl")
    assert (code, err) == (0, ""), err
    return [json.loads(line) for line in out.splitlines()]


def refused(cli: Runner, sql: str, *needles: str) -> str:
    """Exit 1, nothing on stdout, one line on stderr naming the problem."""
    code, out, err = cli("query", sql)
    assert code == 1, f"exit {code}: {out}{err}"
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def utc(ms: int) -> str:
    """A Trino timestamp literal with its zone, at millisecond precision."""
    return f"TIMESTAMP '{at(ms).strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} UTC'"


def test_version_travel_returns_each_runs_state(cli: Runner, runs: Runs) -> None:
    for snapshot, count in zip(runs.snapshots, COUNTS, strict=True):
        code, out, err = cli("query", f"SELECT count(*) AS n FROM orders FOR VERSION AS OF {snapshot}",
                             "--format", "csv")
        assert (code, out, err) == (0, f"n\n{count}\n", "")
    assert jsonl(cli, "SELECT count(*) AS n FROM orders") == [{"n": COUNTS[-1]}]


def test_version_travel_with_qualifier_alias_and_join(cli: Runner, runs: Runs) -> None:
    first = runs.snapshots[0]
    assert jsonl(cli, f"SELECT count(*) AS n FROM hybrid_ingest_curated.ORDERS FOR VERSION AS OF {first}") == [
        {"n": 3}]
    rows = jsonl(cli, f"SELECT o.order_id, o.status AS was, c.status AS now FROM orders c "
                      f"JOIN orders FOR VERSION AS OF {first} AS o ON o.order_id = c.order_id ORDER BY 1")
    assert rows == [{"order_id": 2, "was": "new", "now": "paid"}, {"order_id": 3, "was": "new", "now": "new"}]
    assert jsonl(cli, "SELECT hybrid_ingest_curated.orders.order_id FROM hybrid_ingest_curated.orders "
                      "WHERE order_id = 5") == [{"order_id": 5}]


def test_timestamp_travel_returns_the_state_current_then(cli: Runner, duck: MergeContext, runs: Runs) -> None:
    t1, t2, t3 = runs.committed_ms(duck)
    between = t1 + (t2 - t1) // 2
    assert jsonl(cli, f"SELECT count(*) AS n FROM orders FOR TIMESTAMP AS OF {utc(between)}") == [{"n": 3}]
    assert jsonl(cli, f"SELECT count(*) AS n FROM orders FOR TIMESTAMP AS OF {utc(t2)}") == [{"n": 5}]  # inclusive
    naive = utc(t3).replace(" UTC'", "'")  # a timestamp without a zone is UTC, as Athena takes it
    assert jsonl(cli, f"SELECT count(*) AS n FROM orders FOR TIMESTAMP AS OF {naive}") == [{"n": 4}]
    assert jsonl(cli, "SELECT count(*) AS n FROM orders FOR TIMESTAMP AS OF current_timestamp") == [{"n": 4}]


def test_snapshots_table_lists_the_runs(cli: Runner, duck: MergeContext, runs: Runs) -> None:
    rows = jsonl(cli, "SELECT snapshot_id, parent_id, operation, committed_at, manifest_list, "
                      "summary['hybrid-ingest.run-id'] AS run_id, summary['total-records'] AS total "
                      'FROM "orders$snapshots" ORDER BY committed_at')
    table = load_table(duck, "orders")
    expected = []
    for snapshot_id, run_id, count in zip(runs.snapshots, runs.run_ids, COUNTS, strict=True):
        snapshot = table.snapshot_by_id(snapshot_id)
        assert snapshot is not None
        assert snapshot.summary is not None
        expected.append({"snapshot_id": snapshot_id, "parent_id": snapshot.parent_snapshot_id,
                         "operation": snapshot.summary.operation.value,
                         "committed_at": iso(snapshot.timestamp_ms),
                         "manifest_list": snapshot.manifest_list, "run_id": run_id, "total": str(count)})
    assert rows == expected
    assert [r["parent_id"] for r in rows[1:]] == runs.snapshots[:-1]
    whole = jsonl(cli, 'SELECT * FROM hybrid_ingest_curated."orders$snapshots" ORDER BY committed_at')
    assert list(whole[0]) == ["committed_at", "snapshot_id", "parent_id", "operation", "manifest_list", "summary"]
    assert whole[0]["summary"][iceberg.RUN_ID] == "run-1"


def test_history_follows_retention(cli: Runner, duck: MergeContext, runs: Runs) -> None:
    t1, t2, t3 = runs.committed_ms(duck)
    before = jsonl(cli, 'SELECT * FROM "orders$history" ORDER BY made_current_at')
    assert [(r["snapshot_id"], r["parent_id"], r["is_current_ancestor"]) for r in before] == [
        (runs.snapshots[0], None, True), (runs.snapshots[1], runs.snapshots[0], True),
        (runs.snapshots[2], runs.snapshots[1], True)]
    assert list(before[0]) == ["made_current_at", "snapshot_id", "parent_id", "is_current_ancestor"]
    cutoff = at(t1 + (t2 - t1) // 2)  # the first run's snapshot only
    expired, _ = retain(load_table(duck, "orders"), duck.lake, "orders", now=cutoff, hours=0)
    assert expired == 1
    table = load_table(duck, "orders")
    after = jsonl(cli, 'SELECT * FROM "orders$history" ORDER BY made_current_at')
    expected = []
    for entry in table.metadata.snapshot_log:
        snapshot = table.snapshot_by_id(entry.snapshot_id)
        expected.append({"made_current_at": iso(entry.timestamp_ms), "snapshot_id": entry.snapshot_id,
                         "parent_id": snapshot.parent_snapshot_id if snapshot else None, "is_current_ancestor": True})
    assert after == expected
    assert [r["snapshot_id"] for r in after] == runs.snapshots[1:]
    assert after[1]["parent_id"] == runs.snapshots[1]
    # what Athena answers for the expired snapshot and for a time before the oldest one left
    refused(cli, f"SELECT count(*) FROM orders FOR VERSION AS OF {runs.snapshots[0]}",
            "snapshot", str(runs.snapshots[0]))
    refused(cli, f"SELECT count(*) FROM orders FOR TIMESTAMP AS OF {utc(t1)}", "No version history", "orders")
    assert jsonl(cli, f"SELECT count(*) AS n FROM orders FOR TIMESTAMP AS OF {utc(t3)}") == [{"n": 4}]


def test_pyiceberg_scan_of_each_snapshot_equals_query_of_that_version(duck: MergeContext, raw: RawWriter,
                                                                      runs: Runs) -> None:
    """Also across a schema evolution: an older snapshot reads with the schema it was written with."""
    spec = duck.registry.latest("orders").spec
    schema = json.loads(json.dumps(spec.schema))
    schema["fields"].append({"name": "loyalty", "type": ["null", "long"], "default": None})
    duck.registry.register(spec.with_schema(schema))
    raw.write("orders", [ev("u", 8, {**order(3, status="vip"), "loyalty": 7})])
    evolved = run_merge(duck, "orders", engine="duckdb")
    assert evolved.snapshot_id is not None
    table = load_table(duck, "orders")
    for snapshot_id in [*runs.snapshots, evolved.snapshot_id]:
        scanned = table.scan(snapshot_id=snapshot_id).to_arrow()
        queried = table_rows(duck, f"SELECT * FROM orders FOR VERSION AS OF {snapshot_id}")
        if queried:
            assert list(queried[0]) == scanned.column_names, snapshot_id
        by_key = operator.itemgetter("order_id")
        assert sorted(queried, key=by_key) == sorted(scanned.to_pylist(), key=by_key), snapshot_id
    assert "loyalty" not in table_rows(duck, f"SELECT * FROM orders FOR VERSION AS OF {runs.snapshots[0]}")[0]


def test_refusals_name_the_table_and_the_version(cli: Runner, runs: Runs) -> None:
    refused(cli, "SELECT count(*) FROM orders FOR VERSION AS OF 42", "snapshot", "42")
    refused(cli, "SELECT * FROM orders FOR TIMESTAMP AS OF TIMESTAMP '2000-01-01 00:00:00 UTC'",
            "No version history", "orders", "2000-01-01T00:00:00Z")
    refused(cli, f"SELECT * FROM orders_live FOR VERSION AS OF {runs.snapshots[0]}", "orders_live")
    refused(cli, f'SELECT * FROM "orders$snapshots" FOR VERSION AS OF {runs.snapshots[0]}', "orders$snapshots")
    refused(cli, "SELECT * FROM orders FOR VERSION AS OF 'no-such-branch'", "no-such-branch")
    refused(cli, 'SELECT * FROM "orders$files"', "$files")
    refused(cli, "WITH o AS (SELECT 1 AS x) SELECT * FROM o FOR VERSION AS OF 1", "o")


def test_a_table_never_merged_is_one_clear_line(cli: Runner, runs: Runs) -> None:
    for sql in ("SELECT count(*) FROM customers", "SELECT * FROM customers FOR VERSION AS OF 1",
                'SELECT * FROM "customers$snapshots"', 'SELECT * FROM "customers$history"',
                "SELECT * FROM customers_live"):
        refused(cli, sql, "customers", "merged")
    refused(cli, "SELECT * FROM no_such_table", "no_such_table", "does not exist")
    refused(cli, "SELECT * FROM other_db.orders", "other_db.orders")
