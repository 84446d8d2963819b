"""Slow: the installed source SIGKILLed mid-snapshot and again and again mid-workload; curated == database."""

from __future__ import annotations

import random
import signal
import time

import pytest

from producers.postgres.record import load
from tests.sources.helpers import Env, assert_tables_equal, execute, start_source, wait_for
from tests.sources.workload import TABLES, Workload, run_concurrently, seed


@pytest.mark.slow
def test_kills_mid_snapshot_and_mid_stream(env: Env, pg_dsn: str, slot: str) -> None:
    seed(pg_dsn, accounts=400, orders=200)
    execute(pg_dsn, "INSERT INTO accounts (id, balance, name, active, changed_at, doc) SELECT g, g, 'bulk ' || g, "
                    "true, now(), '{\"bulk\": true}' FROM generate_series(100000, 300000) g")
    source = start_source(env, pg_dsn, slot, TABLES)
    wait_for("the snapshot to start", lambda: (rec := load(env.store, slot)) and rec.phase == "snapshot", source,
             timeout=120)
    source.send_signal(signal.SIGKILL)
    source.wait()
    first = load(env.store, slot)
    assert first is not None
    assert first.phase == "snapshot"

    workloads = [Workload(pg_dsn, seed=s, transactions=800) for s in (11, 12, 13)]
    threads = run_concurrently(workloads)
    rng = random.Random(5)
    for _ in range(4):
        source = start_source(env, pg_dsn, slot, TABLES)
        time.sleep(rng.uniform(2.0, 6.0))
        source.send_signal(signal.SIGKILL)
        source.wait()
    for t in threads:
        t.join()
    final = start_source(env, pg_dsn, slot, TABLES, "--until-idle")
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err
    record = load(env.store, slot)
    assert record is not None
    assert record.phase == "streaming"
    assert record.consistent_point > first.consistent_point, "the interrupted snapshot was redone on a new slot"
    env.consume()
    env.merge("accounts", "sales_orders")
    assert assert_tables_equal(pg_dsn, "public.accounts", env) > 200_000
    assert assert_tables_equal(pg_dsn, "sales.Orders=sales_orders", env) > 100
