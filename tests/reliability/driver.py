"""Replay a scenario through the real merge core and compare what readers see with the oracle.

Each merge run lands that run's deliveries, merges every table with the chosen
kernel and reads the curated table back through the query path (the current
Iceberg snapshot's data files, as Athena users see it). After every run curated must equal the
oracle over what has been delivered so far; after the last run that is the
source's final state. An optional ``hook`` gets the merge's crash points.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest.errors import HybridIngestError
from hybrid_ingest.query.local import LocalQuery
from hybrid_ingest.state import StateStore
from tests.reliability import tally
from tests.reliability.history import Scenario
from tests.reliability.landing import land, register_evolution, register_tables
from tests.reliability.oracle import Key, Row


def normalise(value: Any) -> Any:
    """A value read back from curated, spelled as the JSON the scenario's rows use."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def read_tables(ctx: MergeContext, tables: list[str]) -> dict[str, list[dict[str, Any]]]:
    """``SELECT *`` of each table through one query session (one catalog read for all of them)."""
    local = LocalQuery(ctx.clients, ctx.lake, ctx.registry, ctx.store)
    out: dict[str, list[dict[str, Any]]] = {}
    for table in tables:
        result = local.run(f"SELECT * FROM {table}")
        out[table] = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    return out


def compare(rows: list[dict[str, Any]], expected: dict[Key, tuple[int, Row]], keys: tuple[str, ...],
            columns: list[str], where: str) -> None:
    """Row for row, with ``_seq``; a key twice is a half-merged or leaked partition version."""
    got: dict[Key, dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        assert key not in got, f"{where}: key {key} appears twice"
        got[key] = row
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    assert not missing, f"{where}: keys missing from curated: {sorted(missing)}"
    assert not extra, f"{where}: keys in curated the oracle does not have: {sorted(extra)}"
    for key, (seq, want) in expected.items():
        have = got[key]
        assert have["_seq"] == seq, f"{where}: {key} has _seq {have['_seq']}, the oracle says {seq}"
        for column in columns:
            assert normalise(have[column]) == want.get(column), (
                f"{where}: {key}.{column} is {have[column]!r}, the oracle says {want.get(column)!r}")


def check_curated(ctx: MergeContext, scenario: Scenario, tables: list[str], run: int) -> None:
    """Every table in ``tables`` equals the oracle over what was delivered through ``run``."""
    for table, rows in read_tables(ctx, tables).items():
        spec = scenario.spec_at(table, run)
        compare(rows, scenario.expected(table, run), spec.primary_key, spec.field_names,
                f"{table} after run {run}")


@dataclass
class Replay:
    merges: int = 0
    crashes: int = 0


def replay(ctx: MergeContext, scenario: Scenario, engine: str,
           fault_for: Callable[[int, str], Fault | None] | None = None) -> Replay:
    """Land, merge and check run by run; ``fault_for(run, table)`` may return a fault for that merge.

    A merge that a fault broke is retried at once without it, as the workflow's
    retry would; what readers saw in between is checked before the retry: the
    previous run's state if the fault struck before the commit, this run's
    complete state if after it (the watermark has not moved: the retry repairs
    it from the snapshot summary and must merge nothing twice).
    """
    register_tables(ctx.registry, scenario.tables)
    done = Replay()
    for run in range(scenario.runs):
        for table, due in scenario.evolve_before_run.items():
            if due == run:
                register_evolution(ctx.registry, scenario.tables[table])
        for delivery in scenario.deliveries:
            if delivery.run == run:
                land(ctx.lake, ctx.registry, delivery)
        for table in scenario.tables:
            fault = fault_for(run, table) if fault_for else None
            if fault is not None:
                try:
                    run_merge(ctx, table, engine=engine, hook=fault)
                except (InjectedCrash, HybridIngestError):
                    if fault.fired is None:
                        raise
                    done.crashes += 1
                    tally.fault(f"merge {fault.kind} {fault.fired}")
                    check_curated(ctx, scenario, [table], run - 1 if fault.fired == "after_write" else run)
                else:
                    assert fault.fired is None, f"the merge survived {fault.kind} at {fault.fired}"
            run_merge(ctx, table, engine=engine)
            done.merges += 1
        check_curated(ctx, scenario, list(scenario.tables), run)
    tally.add("merge_runs", done.merges)
    tally.add("events_replayed", scenario.counts()["events"])
    return done


class InjectedCrash(BaseException):
    """The process died here: a BaseException, so no ``except Exception`` in the code under test
    can turn it into a graceful failure (only ``finally`` blocks run, as they would not on kill -9)."""

    def __init__(self, point: str) -> None:
        super().__init__(f"injected crash at {point}")
        self.point = point


@dataclass
class Fault:
    """A merge hook that strikes once at ``point``: ``kind`` is ``crash`` or ``concurrent-commit``.

    ``concurrent-commit`` moves the table's watermark from outside (another run
    committing first), so the run's own conditional write must lose.
    """

    point: str
    kind: str = "crash"
    store: StateStore | None = None
    table: str = ""
    fired: str | None = None

    def __call__(self, reached: str) -> None:
        if reached != self.point or self.fired:
            return
        self.fired = reached
        if self.kind == "crash":
            raise InjectedCrash(reached)
        if self.store is None:
            raise ValueError("a concurrent-commit fault needs the state store")
        current = self.store.watermark(self.table)
        self.store.commit_watermark(current, current.version)
