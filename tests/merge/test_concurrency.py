"""Concurrency: the Iceberg commit fences a run that stalled past its lease, and readers see whole runs only."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest import iceberg
from hybrid_ingest.aws import Clients
from hybrid_ingest.errors import CommitConflictError, MergeError
from hybrid_ingest.query.local import LocalQuery
from hybrid_ingest.state import StateStore
from tests.merge.helpers import (
    Oracle,
    RawWriter,
    assert_matches,
    ev,
    load_table,
    order,
    unreferenced_files,
)

MONTHS = ("2026-01-10", "2026-02-10", "2026-03-10")


# The fence is the commit's, the same for both plans: Spark runs it with keys first.
@pytest.mark.parametrize(("engine", "plan"), [("duckdb", "keys_first"), ("duckdb", "one_pass"),
                                              pytest.param("spark", "keys_first", marks=pytest.mark.spark)])
def test_a_run_paused_past_its_lease_cannot_publish_after_its_successor(ctx: MergeContext, raw: RawWriter,
                                                                       engine: str, plan: str) -> None:
    """Run A stalls after writing its files; its lease expires, run B takes it and commits; A resumes.

    A's commit is refused (it read a snapshot that is no longer current), nothing
    of A is published or left behind, and the next run brings curated to the oracle.
    """
    clock = [1_000_000.0]
    names = ctx.clients.settings.names
    ctx.store = StateStore(ctx.clients.dynamodb, names.state_table, names.runs_table, clock=lambda: clock[0])
    oracle = Oracle("orders", ("order_id",))
    base = [ev("c", 1, order(1)), ev("c", 2, order(2, day="2026-02-01"))]
    raw.write("orders", base)
    oracle.stream(base)
    run_merge(ctx, "orders", engine=engine)
    stalled = [ev("u", 3, order(1, status="A", day="2026-04-01")), ev("c", 4, order(5, day="2026-05-05"))]
    raw.write("orders", stalled)
    oracle.stream(stalled)
    successor: dict[str, Any] = {}

    def pause(point: str) -> None:
        if point != "after_write" or successor:
            return
        clock[0] += float(ctx.store.settings()["lock_lease_seconds"]) + 1  # A's lease runs out while it waits
        more = [ev("u", 5, order(2, status="B"))]
        raw.write("orders", more)
        oracle.stream(more)
        successor["run"] = run_merge(ctx, "orders", engine=engine)

    with pytest.raises(CommitConflictError, match="changed since this run read"):
        run_merge(ctx, "orders", engine=engine, hook=pause)
    table = load_table(ctx, "orders")
    current = table.current_snapshot()
    assert current is not None
    assert current.snapshot_id == successor["run"].snapshot_id  # A published nothing
    assert unreferenced_files(ctx, "orders") == set()  # and left no file behind
    assert_matches(ctx, oracle)  # B merged everything pending, A's changes included: no key twice
    assert ctx.store.watermark("orders").last_run == successor["run"].run_id
    again = run_merge(ctx, "orders", engine=engine)
    assert again.stats["rows_in"] == 0
    assert_matches(ctx, oracle)


# Visibility is the commit's, not the kernel's: the DuckDB runs cover it.
@pytest.mark.parametrize(("engine", "plan"), [("duckdb", "keys_first"), ("duckdb", "one_pass")])
def test_a_reader_never_sees_a_moving_key_twice_or_missing(ctx: MergeContext, raw: RawWriter, engine: str,
                                                           plan: str) -> None:
    """A reader querying in a loop while runs move every key to another month sees each key exactly once."""
    keys = list(range(1, 13))
    first = [ev("c", k, order(k, day=MONTHS[k % 3])) for k in keys]
    raw.write("orders", first)
    oracle = Oracle("orders", ("order_id",))
    oracle.stream(first)
    run_merge(ctx, "orders", engine=engine)
    stop = threading.Event()
    seen: list[list[int]] = []
    errors: list[BaseException] = []
    reader_clients = Clients(ctx.clients.settings)

    def read() -> None:
        try:
            while not stop.is_set():
                result = LocalQuery(reader_clients, ctx.lake, ctx.registry, ctx.store).run("SELECT order_id FROM orders")
                seen.append(sorted(row[0] for row in result.rows))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seq = 100
    for run in range(1, 5):
        moves = []
        for k in keys:
            seq += 1
            moves.append(ev("u", seq, order(k, day=MONTHS[(k + run) % 3], status=f"r{run}")))
        raw.write("orders", moves)
        oracle.stream(moves)
        run_merge(ctx, "orders", engine=engine)
    while len(seen) < 3 and not errors:  # at least a few reads, whatever the machine's speed
        stop.wait(0.05)
    stop.set()
    reader.join(timeout=120)
    assert not errors, errors
    assert seen
    bad = [s for s in seen if s != keys]
    assert not bad, f"{len(bad)} of {len(seen)} reads saw keys twice or missing, e.g. {bad[0]}"
    assert_matches(ctx, oracle)


# The catalog call is the same for every kernel and plan.
@pytest.mark.parametrize(("engine", "plan"), [("duckdb", "keys_first")])
def test_a_commit_whose_response_was_lost_is_found_by_the_next_run(ctx: MergeContext, raw: RawWriter, engine: str,
                                                                   plan: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit lands but its response is lost: the run fails, deletes nothing (its snapshot names its
    files), and the next run finds the snapshot, repairs the watermark and merges nothing twice."""
    from botocore.exceptions import ReadTimeoutError
    from pyiceberg.catalog.glue import GlueCatalog

    real = GlueCatalog.commit_table
    calls: list[int] = []

    def lost_response(self: GlueCatalog, *args: Any, **kwargs: Any) -> Any:
        response = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise ReadTimeoutError(endpoint_url="glue")
        return response

    monkeypatch.setattr(GlueCatalog, "commit_table", lost_response)
    events = [ev("c", 1, order(1)), ev("c", 2, order(2, day="2026-02-02"))]
    raw.write("orders", events)
    oracle = Oracle("orders", ("order_id",))
    oracle.stream(events)
    with pytest.raises(MergeError, match="ReadTimeoutError"):
        run_merge(ctx, "orders", engine=engine)
    assert_matches(ctx, oracle)  # it landed, and every file its snapshot names is there
    again = run_merge(ctx, "orders", engine=engine)
    assert again.stats["rows_in"] == 0
    assert_matches(ctx, oracle)
    assert len(load_table(ctx, "orders").snapshots()) == 1
    # and the writer's Glue calls are never retried by botocore: a retry of a landed commit would read as a
    # conflict, after which pyiceberg deletes the manifests of the committed snapshot
    writer = iceberg.catalog(ctx.clients, ctx.lake, commit=True)
    assert writer.glue.meta.config.retries["total_max_attempts"] == 1  # type: ignore[attr-defined]
