"""The source in process: schema changes, truncates, TOAST, big transactions, restarts, status and retirement."""

from __future__ import annotations

import json
import re
import threading

import pytest

from hybrid_ingest import quarantine
from hybrid_ingest.errors import SourceError
from hybrid_ingest.metrics import Metrics
from producers.postgres.lsn import parse_lsn
from producers.postgres.record import load
from tests.conftest import Runner
from tests.sources.helpers import Env, assert_tables_equal, execute, fetch

ITEMS = "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2))"


def confirmed(dsn: str, slot: str) -> int:
    return parse_lsn(fetch(dsn, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                           (slot,))[0][0])


def test_added_nullable_column_evolves_the_schema_and_goes_on(env: Env, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, ITEMS, "INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 20) g")
    env.capture(pg_dsn, slot, ["public.items"])
    execute(pg_dsn, "UPDATE items SET price = 0 WHERE id = 1",
            "ALTER TABLE items ADD COLUMN color text",
            "INSERT INTO items VALUES (21, 'new', 1.5, 'red')", "UPDATE items SET color = 'blue' WHERE id = 2")
    env.capture(pg_dsn, slot, ["public.items"])
    latest = env.registry.latest("items")
    assert latest.version == 2
    assert latest.spec.field("color") == {"name": "color", "type": ["null", "string"], "default": None}
    env.consume()
    env.merge("items")
    assert assert_tables_equal(pg_dsn, "public.items", env) == 21


@pytest.mark.parametrize(("ddl", "error"), [
    ("ALTER TABLE items ADD COLUMN qty int NOT NULL DEFAULT 0", "column 'qty': incompatible schema change: "
                                                                 "added with NOT NULL"),
    ("ALTER TABLE items ADD COLUMN qty int DEFAULT 5", "added with a default"),
    ("ALTER TABLE items DROP COLUMN price", "incompatible schema change: column(s) ['price'] were dropped"),
    ("ALTER TABLE items RENAME COLUMN price TO cost", "column 'cost' is where 'price' was"),
    ("ALTER TABLE items ALTER COLUMN price TYPE numeric(10,2)", "column 'price': incompatible schema change: its "
                                                                "type changed"),
])
def test_incompatible_schema_change_stops_the_source(env: Env, pg_dsn: str, slot: str, ddl: str, error: str) -> None:
    execute(pg_dsn, ITEMS, "INSERT INTO items VALUES (1, 'a', 1)")
    env.capture(pg_dsn, slot, ["public.items"])
    before = confirmed(pg_dsn, slot)
    execute(pg_dsn, ddl, "INSERT INTO items (id, name) VALUES (2, 'b')")
    with pytest.raises(SourceError, match=re.escape(error)):
        env.capture(pg_dsn, slot, ["public.items"])
    assert confirmed(pg_dsn, slot) == before, "the refused change must stay in the slot"
    assert env.registry.latest("items").version == 1


def test_evolutions_keep_the_tables_compatibility_mode(env: Env, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, ITEMS, "INSERT INTO items VALUES (1, 'a', 1)")
    env.capture(pg_dsn, slot, ["public.items"])
    spec = env.registry.latest("items").spec
    env.registry.register(type(spec)(spec.table, spec.primary_key, spec.schema, spec.partition, "FULL_TRANSITIVE"))
    execute(pg_dsn, "ALTER TABLE items ADD COLUMN color text", "INSERT INTO items VALUES (2, 'b', 2, 'red')")
    env.capture(pg_dsn, slot, ["public.items"])
    latest = env.registry.latest("items")
    assert (latest.version, latest.spec.compatibility) == (3, "FULL_TRANSITIVE")
    assert latest.spec.field_names[-1] == "color"


def test_truncate_empties_the_table_as_of_its_commit(env: Env, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, ITEMS, "INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 30) g")
    env.capture(pg_dsn, slot, ["public.items"])
    execute(pg_dsn, "UPDATE items SET name = 'gone soon' WHERE id < 5",
            "BEGIN", "UPDATE items SET name = 'also gone' WHERE id = 7", "TRUNCATE items",
            "INSERT INTO items VALUES (100, 'after', 1), (101, 'deleted again', 2)",
            "UPDATE items SET name = 'after, changed' WHERE id = 100", "DELETE FROM items WHERE id = 101", "COMMIT",
            "INSERT INTO items VALUES (102, 'later', 3)")
    stats = env.capture(pg_dsn, slot, ["public.items"])
    assert stats.truncates == 1
    env.consume()
    env.merge("items")
    assert assert_tables_equal(pg_dsn, "public.items", env) == 2


def test_truncate_of_a_merged_table_passes_the_extract_guard(env: Env, pg_dsn: str, slot: str) -> None:
    """A truncate deletes (nearly) every row by intent: its full extract says so (``allow_mass_delete``), so the
    merge's guard does not hold it as a mass delete; the first snapshot, into a new table, deletes nothing."""
    execute(pg_dsn, ITEMS, "INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 30) g")
    env.capture(pg_dsn, slot, ["public.items"])
    env.merge("items")
    assert assert_tables_equal(pg_dsn, "public.items", env) == 30
    execute(pg_dsn, "BEGIN", "TRUNCATE items", "INSERT INTO items VALUES (100, 'after', 1)", "COMMIT")
    env.capture(pg_dsn, slot, ["public.items"])
    env.consume()
    env.merge("items")
    assert assert_tables_equal(pg_dsn, "public.items", env) == 1
    assert quarantine.held(env.lake) == []


def test_unchanged_toast_value_needs_full_replica_identity(env: Env, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, "CREATE TABLE docs (id int PRIMARY KEY, body text, n int)",
            "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL",
            "INSERT INTO docs VALUES (1, repeat('z', 5000), 0)")
    env.capture(pg_dsn, slot, ["public.docs"])
    execute(pg_dsn, "UPDATE docs SET n = 1")
    with pytest.raises(SourceError, match=r"table public\.docs column 'body': an update left this TOASTed value "
                                          r"unchanged .* REPLICA IDENTITY FULL"):
        env.capture(pg_dsn, slot, ["public.docs"])


def test_big_transaction_spills_to_disk_and_keeps_the_last_change(env: Env, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, ITEMS, "INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 50) g")
    env.capture(pg_dsn, slot, ["public.items"])
    execute(pg_dsn, "BEGIN", "UPDATE items SET price = price + 1", "UPDATE items SET id = id + 1000 WHERE id <= 10",
            "DELETE FROM items WHERE id BETWEEN 20 AND 25", "UPDATE items SET name = 'last' WHERE id % 2 = 0",
            "INSERT INTO items VALUES (25, 'back', 0)", "COMMIT")
    source = env.source(pg_dsn, slot, ["public.items"], max_txn_keys=7, batch_events=4)
    try:
        source.run(until_idle=True)
    finally:
        assert source.producer.close(60)
    assert source.stats.events == 50 + 10  # one event per key touched: ids 1-50 and the moved keys 1001-1010
    assert (source.stats.transactions, source.stats.spilled) == (1, 1)
    env.consume()
    env.merge("items")
    assert assert_tables_equal(pg_dsn, "public.items", env) == 45


def test_interrupted_snapshot_is_redone_on_a_new_slot(env: Env, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, ITEMS, "CREATE TABLE bad (id int PRIMARY KEY, x numeric(5,1))",
            "INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 10) g",
            "INSERT INTO bad VALUES (1, 'NaN')")
    with pytest.raises(SourceError, match=r"table public.bad column 'x': value 'NaN' cannot be captured"):
        env.capture(pg_dsn, slot, ["public.items", "public.bad"])
    record = load(env.store, slot)
    assert record is not None
    assert record.phase == "snapshot"
    first_point = record.consistent_point
    execute(pg_dsn, "UPDATE bad SET x = 1.5", "DELETE FROM items WHERE id = 3")
    stats = env.capture(pg_dsn, slot, ["public.items", "public.bad"])
    assert [(t.table, t.rows) for t in stats.landed] == [("items", 9), ("bad", 1)]
    record = load(env.store, slot)
    assert record is not None
    assert record.phase == "streaming"
    assert record.consistent_point > first_point
    env.consume()
    env.merge("items", "bad")
    assert assert_tables_equal(pg_dsn, "public.items", env) == 9
    assert assert_tables_equal(pg_dsn, "public.bad", env) == 1


def test_table_list_is_fixed_once_streaming(env: Env, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, ITEMS, "CREATE TABLE other (id int PRIMARY KEY)")
    env.capture(pg_dsn, slot, ["public.items"])
    with pytest.raises(SourceError, match=re.escape("captures public.items=items; to change the table list, retire it")):
        env.capture(pg_dsn, slot, ["public.items", "public.other"])


def test_stop_confirms_only_spooled_transactions(env: Env, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, ITEMS)
    env.capture(pg_dsn, slot, ["public.items"])
    execute(pg_dsn, "INSERT INTO items VALUES (1, 'a', 1)")
    last = parse_lsn(fetch(pg_dsn, "SELECT pg_current_wal_lsn()::text")[0][0])
    stop = threading.Event()
    source = env.source(pg_dsn, slot, ["public.items"])
    runner = threading.Thread(target=source.run, kwargs={"stop": stop})
    runner.start()
    try:
        deadline = 200
        while source.stats.events == 0 and deadline:
            threading.Event().wait(0.05)
            deadline -= 1
    finally:
        stop.set()
        runner.join()
        assert source.producer.close(60)
    assert source.stats.events == 1
    assert source.producer.spool.pending_count == 0
    assert confirmed(pg_dsn, slot) >= last


def test_status_shows_the_slot_and_retire_drops_it(cli: Runner, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, ITEMS, "INSERT INTO items VALUES (1, 'a', 1)")
    code, out, err = cli("source", "postgres", "--dsn", pg_dsn, "--slot", slot, "--table", "public.items",
                         "--until-idle")
    assert code == 0, err
    assert "snapshot: landed 1 row(s) of items as full extract" in out
    code, out, _ = cli("status")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith(f"postgres:{slot}"))
    position = fetch(pg_dsn, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                     (slot,))[0][0]
    assert "streaming" in line
    assert position in line
    code, out, _ = cli("source", "postgres", "--dsn", pg_dsn, "--slot", slot, "--retire")
    assert code == 0
    assert f"retired slot {slot}" in out
    assert fetch(pg_dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == [(0,)]
    assert fetch(pg_dsn, "SELECT count(*) FROM pg_publication") == [(0,)]
    code, out, _ = cli("status")
    assert "sources: none" in out
    code, _, err = cli("source", "postgres", "--dsn", pg_dsn, "--slot", slot, "--retire")
    assert code == 1
    assert "nothing retired" in err


def test_stop_during_the_snapshot_leaves_it_to_the_next_start(env: Env, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, ITEMS, "INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 100) g")
    stop = threading.Event()
    stop.set()  # asked for before the first batch of the snapshot is landed
    stats = env.capture(pg_dsn, slot, ["public.items"], stop=stop)
    assert stats.snapshot_stopped
    assert not stats.landed
    record = load(env.store, slot)
    assert record is not None
    assert record.phase == "snapshot"
    assert not list(env.lake.files("landing/items", ".parquet")), "the stopped extract's parts are removed"
    stats = env.capture(pg_dsn, slot, ["public.items"])
    assert [(t.table, t.rows) for t in stats.landed] == [("items", 100)]
    env.consume()
    env.merge("items")
    assert assert_tables_equal(pg_dsn, "public.items", env) == 100


def test_progress_goes_to_the_record_and_to_metrics(env: Env, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, ITEMS)
    env.capture(pg_dsn, slot, ["public.items"])
    execute(pg_dsn, "INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 30) g",
            "UPDATE items SET price = 0 WHERE id < 10")
    lines: list[str] = []
    source = env.source(pg_dsn, slot, ["public.items"], progress_seconds=0.0)
    source.metrics = Metrics("HybridIngest", sink=lines.append)
    try:
        source.run(until_idle=True)
    finally:
        assert source.producer.close(60)
    docs = [json.loads(line) for line in lines]
    assert {d["Slot"] for d in docs} == {slot}
    assert sum(d["Changes"] for d in docs) == 39
    assert sum(d["Transactions"] for d in docs) == 2
    assert docs[-1]["LagBytes"] >= 0
    record = load(env.store, slot)
    assert record is not None
    assert record.progress.events == 39
    assert record.progress.confirmed_lsn == fetch(
        pg_dsn, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,))[0][0]
