"""The installed ``hybrid-ingest source postgres`` against a real PostgreSQL, through to the curated tables.

One full round trip: a snapshot taken while transactions are open (one of them
starts before the slot's consistent point and commits after it), a concurrent
workload from two connections (key changes, deletes, several changes of a key
in one transaction, TOASTed values), the source SIGKILLed mid-workload and
restarted, stopped by SIGTERM, caught up with ``--until-idle``; then the stream
consumer and the DuckDB merge; then every curated row and column must equal the
database's own tables.
"""

from __future__ import annotations

import signal
from typing import Any

import psycopg2

from producers.postgres.lsn import parse_lsn
from producers.postgres.record import load
from tests.sources.helpers import Env, assert_tables_equal, fetch, start_source, wait_for
from tests.sources.workload import TABLES, Workload, run_concurrently, seed


class Session:
    """One open transaction on its own connection."""

    def __init__(self, dsn: str) -> None:
        self.con = psycopg2.connect(dsn)

    def run(self, sql: str) -> Any:
        with self.con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone() if cur.description else None

    def xid(self) -> int:
        return int(self.run("SELECT txid_current()")[0])

    def commit(self) -> None:
        self.con.commit()
        self.con.close()


def waiting_on(dsn: str, xid: int) -> bool:
    """Is someone (the walsender building the slot's snapshot) waiting for transaction ``xid`` to end?"""
    return bool(fetch(dsn, "SELECT 1 FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted "
                           "AND transactionid::text = %s", (str(xid),)))


def test_snapshot_workload_kill_restart_and_curated_equals_database(env: Env, pg_dsn: str, slot: str) -> None:
    seed(pg_dsn, accounts=400, orders=200)
    # T1 runs when the slot is created: creation waits for it, then for T2 (begun meanwhile); T3 begins
    # while it waits for T2, so T3 starts before the consistent point and commits after it.
    t1 = Session(pg_dsn)
    t1.run("UPDATE accounts SET name = 'before the slot' WHERE id = 1")
    source = start_source(env, pg_dsn, slot, TABLES)
    wait_for("slot creation to wait for T1", lambda: waiting_on(pg_dsn, t1.xid()), source)
    t2 = Session(pg_dsn)
    t2.run("UPDATE accounts SET name = 'while building' WHERE id = 2")
    t1.commit()
    wait_for("slot creation to wait for T2", lambda: waiting_on(pg_dsn, t2.xid()), source)
    t3 = Session(pg_dsn)
    t3.run("UPDATE accounts SET name = 'spanning', balance = 0.01 WHERE id = 3")
    t3.run("INSERT INTO accounts (id, balance, name, active, changed_at) VALUES (-1, 1, 'spanning', true, now())")
    t3_changes_end = parse_lsn(t3.run("SELECT pg_current_wal_lsn()::text")[0])
    t2.commit()
    consistent = wait_for("the slot's consistent point", lambda: fetch(
        pg_dsn, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s "
                "AND confirmed_flush_lsn IS NOT NULL", (slot,)), source)
    consistent_point = parse_lsn(consistent[0][0])
    assert t3_changes_end < consistent_point, "T3's changes must be written before the consistent point"
    wait_for("the snapshot to be landed", lambda: (rec := load(env.store, slot)) and rec.phase == "streaming", source)
    t3.commit()

    workloads = [Workload(pg_dsn, seed=1, transactions=150, progress_at=60), Workload(pg_dsn, seed=2,
                                                                                       transactions=150)]
    threads = run_concurrently(workloads)
    assert workloads[0].progress.wait(60)
    source.send_signal(signal.SIGKILL)
    source.wait()
    restarted = start_source(env, pg_dsn, slot, TABLES)
    for t in threads:
        t.join()
    assert sum(w.committed for w in workloads) > 200
    wait_for("the restarted source to stream", lambda: fetch(
        pg_dsn, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active", (slot,)), restarted)
    restarted.send_signal(signal.SIGTERM)
    out, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, err
    assert "signal 15" in err
    final = start_source(env, pg_dsn, slot, TABLES, "--until-idle")
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert "transaction(s)" in out

    record = load(env.store, slot)
    assert record is not None
    assert record.consistent_point == consistent_point
    assert record.as_of_seq == consistent_point - 1
    env.consume()
    env.merge("accounts", "sales_orders")
    assert assert_tables_equal(pg_dsn, "public.accounts", env) > 300
    assert assert_tables_equal(pg_dsn, "sales.Orders=sales_orders", env) > 100
    _, rows = env.query("SELECT id, name, _seq FROM accounts WHERE id IN (-1, 1, 2, 3) ORDER BY id")
    by_id = {r[0]: r for r in rows}
    assert by_id[-1][1] == "spanning"
    assert by_id[-1][2] > record.as_of_seq, "T3 arrived through the stream, above the snapshot"
